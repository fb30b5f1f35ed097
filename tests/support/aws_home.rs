//! A throwaway user: home, `~/.aws/config`, credentials file and cache, in which the real
//! `keyless` binary and the real AWS clients run with nothing inherited from the developer's
//! machine (no AWS_*, KEYLESS_*, GCE_* variables, no real ~/.aws, no real cache).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::venv;

/// The `keyless` binary cargo built for this test run.
pub fn keyless_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_keyless"))
}

/// A temporary home pointed at one AWS endpoint (moto).
pub struct AwsHome {
    root: tempfile::TempDir,
    endpoint: String,
}

impl AwsHome {
    /// An empty home whose AWS clients (and keyless) talk to `endpoint`.
    pub fn new(endpoint: &str) -> Self {
        let root = tempfile::tempdir().expect("temp home");
        for dir in ["home/.aws", "cache", "config", "tokens"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("home layout");
        }
        Self {
            root,
            endpoint: endpoint.to_string(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn config_file(&self) -> PathBuf {
        self.home().join(".aws/config")
    }

    pub fn credentials_file(&self) -> PathBuf {
        self.home().join(".aws/credentials")
    }

    /// `XDG_CACHE_HOME`: keyless keeps its credential cache under `keyless/aws/` here.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// The audit log every keyless run against the lab writes (`KEYLESS_AUDIT_LOG`).
    pub fn audit_log(&self) -> PathBuf {
        self.root.path().join("audit.jsonl")
    }

    /// Writes `token` to a file for `--token-source file:PATH` and returns the path.
    pub fn write_token(&self, name: &str, token: &str) -> PathBuf {
        let path = self.root.path().join("tokens").join(name);
        std::fs::write(&path, token).expect("token file");
        path
    }

    /// Appends a `[profile NAME]` whose credentials come from
    /// `credential_process = /abs/path/keyless KEYLESS_ARGS...`, as a user would configure it.
    pub fn add_credential_process_profile(&self, profile: &str, keyless_args: &[String]) {
        let line = std::iter::once(keyless_bin().to_string_lossy().into_owned())
            .chain(keyless_args.iter().cloned())
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ");
        self.append_config(&format!(
            "[profile {profile}]\ncredential_process = {line}\nregion = us-east-1\n"
        ));
    }

    /// Appends a profile with static keys to the shared credentials file.
    pub fn add_static_profile(&self, profile: &str, key_id: &str, secret: &str, token: &str) {
        let mut text = format!(
            "[{profile}]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
        );
        if !token.is_empty() {
            writeln!(text, "aws_session_token = {token}").unwrap();
        }
        append(&self.credentials_file(), &text);
        self.append_config(&format!("[profile {profile}]\nregion = us-east-1\n"));
    }

    /// Appends raw text to `~/.aws/config`.
    pub fn append_config(&self, text: &str) {
        append(&self.config_file(), text);
    }

    /// `program` with this home's clean environment: the venv's bin first on PATH (so `aws`
    /// is the pinned CLI, in children too), HOME, XDG dirs, AWS_CONFIG_FILE,
    /// AWS_SHARED_CREDENTIALS_FILE, AWS_ENDPOINT_URL and a region; nothing else inherited.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(venv::dir().join("bin")).chain(std::env::split_paths(&inherited)),
        )
        .expect("PATH");
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", path)
            .env("LANG", "C.UTF-8")
            .env("HOME", self.home())
            .env("XDG_CACHE_HOME", self.cache_dir())
            .env("XDG_CONFIG_HOME", self.root.path().join("config"))
            .env("AWS_CONFIG_FILE", self.config_file())
            .env("AWS_SHARED_CREDENTIALS_FILE", self.credentials_file())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            // Fail fast instead of probing instance metadata when no credentials resolve.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Never reach a real Google metadata server, whatever keyless is asked.
            .env("GCE_METADATA_HOST", "127.0.0.1:9")
            .current_dir(self.home());
        command
    }

    /// The real `keyless` binary with `args`.
    pub fn keyless<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(keyless_bin());
        command.args(args);
        command
    }

    /// The pinned aws CLI with `args` (JSON output).
    pub fn aws<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(venv::bin("aws"));
        command.args(["--output", "json"]).args(args);
        command
    }

    /// The venv's Python running `tests/python/SCRIPT` with `args`.
    pub fn python<I, S>(&self, script: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(venv::bin("python"));
        command.arg(venv::script(script)).args(args);
        command
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    writeln!(file, "{text}").expect("append");
}

/// Quotes `arg` for the POSIX-shell-like splitting botocore applies to `credential_process`.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
