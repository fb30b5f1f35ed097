//! Credentials as environment variables: `export` lines for a shell, or the environment of a
//! child process (`keyless aws exec -- CMD`).
//!
//! The child gets exactly the variables the SDKs read first, and loses `AWS_PROFILE`: botocore
//! ignores environment credentials when a profile is named explicitly, so a stale profile in the
//! parent's environment would silently win over the credentials we just obtained.

use std::ffi::OsString;

use crate::credentials::{format_expiration, AwsCredentials};

/// Variables removed from a child's environment because they would override ours.
pub const OVERRIDING_VARS: &[&str] = &["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"];

/// The variables that carry `credentials` (and the region, when known) to an SDK.
pub fn aws_env_vars(credentials: &AwsCredentials, region: Option<&str>) -> Vec<(String, String)> {
    let mut vars = vec![
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            credentials.access_key_id.clone(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            credentials.secret_access_key.expose().to_string(),
        ),
    ];
    if let Some(token) = &credentials.session_token {
        vars.push(("AWS_SESSION_TOKEN".into(), token.expose().to_string()));
    }
    if let Some(exp) = credentials.expiration {
        vars.push(("AWS_CREDENTIAL_EXPIRATION".into(), format_expiration(exp)));
    }
    if let Some(region) = region {
        vars.push(("AWS_REGION".into(), region.to_string()));
        vars.push(("AWS_DEFAULT_REGION".into(), region.to_string()));
    }
    vars
}

/// `export NAME='value'` lines for `eval "$(keyless aws credentials --format env ...)"`.
pub fn export_lines(vars: &[(String, String)]) -> String {
    vars.iter()
        .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
        .collect()
}

/// Single-quotes a value for POSIX shells unless it is plainly safe.
pub fn shell_quote(value: &str) -> String {
    let safe = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=+@%,".contains(&b));
    if safe {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Why a command could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Nothing to run.
    #[error("no command given\n  hint: keyless ... exec -- COMMAND [ARGS...]")]
    NoCommand,
    /// The program could not be started.
    #[error("could not run {program:?}: {cause}")]
    Spawn { program: String, cause: String },
}

/// Runs `command` with `vars` added and [`OVERRIDING_VARS`] removed. On Unix the current process
/// is replaced (as aws-vault does), so the exit code and every signal reach the command
/// directly; this returns only on failure. Elsewhere the child is awaited and its code returned.
pub fn exec_with_env(command: &[OsString], vars: &[(String, String)]) -> Result<i32, ExecError> {
    let (program, args) = command.split_first().ok_or(ExecError::NoCommand)?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    for name in OVERRIDING_VARS {
        cmd.env_remove(name);
    }
    cmd.envs(vars.iter().map(|(k, v)| (k, v)));
    let spawn_error = |e: std::io::Error| ExecError::Spawn {
        program: program.to_string_lossy().into_owned(),
        cause: e.to_string(),
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        Err(spawn_error(cmd.exec()))
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().map_err(spawn_error)?;
        Ok(status.code().unwrap_or(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_shell() {
        assert_eq!(shell_quote("ASIA123"), "ASIA123");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        let line = export_lines(&[("X".into(), "a'b c".into())]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{line}printf %s \"$X\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "a'b c");
    }
}
