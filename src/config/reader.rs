//! Reading a keyless.toml: a size cap, and a file that can run commands or redirect tokens must
//! be protected.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::ConfigError;

/// Keys whose value sends tokens elsewhere (endpoint overrides).
const REDIRECTING_KEYS: &[&str] = &["sts_endpoint", "iamcredentials_url", "token_url"];

/// The most of a keyless.toml that is read: far more than a thousand profiles take, and a bound
/// on what a wrong path (`/dev/zero`, a log file) can make keyless read.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a configuration file the one way every reader does. A file that can run commands
/// (`token_source = "command:..."`) or redirect tokens (an endpoint override) is refused unless
/// it belongs to this user or root and only its owner may write it: whoever can change it could
/// otherwise run code as this user or collect its tokens. Checked on the open descriptor, so
/// the file checked is the file read.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| ConfigError::Read {
        path: path.to_path_buf(),
        cause: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    let mut text = String::new();
    (&mut file)
        .take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(unreadable(std::io::Error::other(format!(
            "larger than {} KiB; a keyless.toml is a few kilobytes (is this the right file?)",
            MAX_CONFIG_FILE_BYTES / 1024
        ))));
    }
    let Some(power) = DeTable::parse(&text)
        .ok()
        .and_then(|doc| powers(doc.get_ref(), ""))
    else {
        return Ok(text);
    };
    match crate::private_file::tampering_of(&meta).first() {
        None => Ok(text),
        Some(problem) => Err(ConfigError::Unprotected {
            path: path.to_path_buf(),
            power,
            problem: problem.problem(),
            fix: format!("run: {}", problem.fix(path)),
        }),
    }
}

/// The first key of `table` (at `prefix`) that runs a command or redirects tokens, described.
pub(super) fn powers(table: &DeTable<'_>, prefix: &str) -> Option<String> {
    for (key, value) in table.iter() {
        let key = key.get_ref().as_ref();
        let dotted = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        match value.get_ref() {
            DeValue::Table(inner) => {
                if let Some(found) = powers(inner, &dotted) {
                    return Some(found);
                }
            }
            DeValue::String(v)
                if matches!(key, "source" | "token_source") && v.trim().starts_with("command:") =>
            {
                return Some(format!("runs a command (`{dotted}`)"));
            }
            _ if REDIRECTING_KEYS.contains(&key) => {
                return Some(format!("redirects tokens (`{dotted}`)"));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyless.toml is read with a size cap: a wrong path such as `/dev/zero` is refused
    /// instead of read forever.
    #[cfg(unix)]
    #[test]
    fn an_endless_config_file_is_refused() {
        let err = read_config_file(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("larger than 1024 KiB"), "{err}");
    }

    /// Only a file that can run commands or redirect tokens must be protected; then group or
    /// world write, or an owner other than this user or root, is refused with the fix.
    #[cfg(unix)]
    #[test]
    fn a_file_with_commands_or_endpoints_must_be_protected() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyless.toml");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("[profile.a]\nrole_arn = \"x\"\n", 0o666);
        assert!(read_config_file(&path).is_ok(), "nothing to protect");

        write(
            "[defaults]\nsts_endpoint = \"http://evil.example\"\n",
            0o646,
        );
        let err = read_config_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("redirects tokens (`defaults.sts_endpoint`)"),
            "{err}"
        );
        assert!(err.contains("chmod go-w"), "{err}");
        write(
            "[defaults]\nsts_endpoint = \"http://evil.example\"\n",
            0o644,
        );
        assert!(read_config_file(&path).is_ok());

        write("[profile.p]\ntoken_source = \" command:id\"\n", 0o620);
        let err = read_config_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("runs a command (`profile.p.token_source`)"),
            "{err}"
        );
        write("[profile.p]\nsource = \"command:id\"\n", 0o620);
        let err = read_config_file(&path).unwrap_err().to_string();
        assert!(err.contains("runs a command (`profile.p.source`)"), "{err}");
        write("[profile.p]\ntoken_source = \"file:/t\"\n", 0o666);
        assert!(read_config_file(&path).is_ok(), "file: runs nothing");

        // Only root can give a file away: another user's file is refused, root's is fine.
        if crate::private_file::effective_uid() == 0 {
            write("[profile.p]\ntoken_url = \"http://x\"\n", 0o644);
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            let err = read_config_file(&path).unwrap_err().to_string();
            assert!(err.contains("belongs to user id 65534"), "{err}");
            assert!(err.contains("chown"), "{err}");
            std::os::unix::fs::chown(&path, Some(0), None).unwrap();
            assert!(read_config_file(&path).is_ok());
        }
    }
}
