//! The lab (in-process) plus a throwaway home in which the real binary and the real clients run
//! pointed at it: what the lab integration tests of both directions share.

use std::path::PathBuf;
use std::time::Duration;

use keyless::lab::{Lab, LabConfig};

use super::{AwsHome, CommandOutput};

/// A lab plus a throwaway home (see `support::AwsHome`) in which the binary runs with nothing
/// but the lab's environment.
pub struct LabWorld {
    pub lab: Lab,
    pub home: AwsHome,
}

impl LabWorld {
    pub async fn start() -> Self {
        Self::start_with(LabConfig::demo()).await
    }

    /// A lab with a custom configuration (e.g. `credential_lifetime_cap` for refresh tests).
    pub async fn start_with(config: LabConfig) -> Self {
        let lab = Lab::start(config).await.expect("lab starts");
        let home = AwsHome::new(&lab.aws_sts_url());
        Self { lab, home }
    }

    pub fn role(&self, name: &str) -> String {
        self.lab.role_arn(name)
    }

    /// Runs `keyless ARGS` against the lab.
    pub async fn keyless(&self, args: &[&str]) -> CommandOutput {
        self.keyless_env(args, &[]).await
    }

    pub async fn keyless_env(&self, args: &[&str], extra: &[(&str, &str)]) -> CommandOutput {
        let mut cmd = self.home.keyless(args);
        self.point_at_lab(&mut cmd, extra);
        // The lab serves from this process's runtime: wait for the child off the runtime.
        tokio::task::spawn_blocking(move || super::process::run(&mut cmd))
            .await
            .unwrap()
    }

    /// The lab's environment, and an audit log in the world's home: every keyless run against
    /// the lab leaves its audit events there ([`LabWorld::audit_events`]), also when a client
    /// (the aws CLI, boto3) runs keyless through credential_process.
    pub fn point_at_lab(&self, cmd: &mut std::process::Command, extra: &[(&str, &str)]) {
        for (k, v) in self.lab.env() {
            cmd.env(k, v);
        }
        cmd.env("KEYLESS_AUDIT_LOG", self.home.audit_log());
        for (k, v) in extra {
            cmd.env(k, v);
        }
    }

    /// Every audit event keyless wrote in this world so far, in order.
    pub fn audit_events(&self) -> Vec<keyless::audit::AuditEvent> {
        match std::fs::read_to_string(self.home.audit_log()) {
            Ok(text) => text
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line ({e}): {l}"))
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("audit log: {e}"),
        }
    }

    /// The audit trail of this world holds exactly the exchanges `expected` lists, as
    /// `(source kind, target kind, outcome)` in any order, and none of the secrets the lab
    /// issued (tokens, keys, session tokens, request tokens) appears anywhere in it.
    pub fn assert_audit_trail(&self, expected: &[(&str, &str, &str)]) {
        let text = std::fs::read_to_string(self.home.audit_log()).unwrap_or_default();
        for secret in self.lab.issued_secrets() {
            assert!(
                !text.contains(secret.expose()),
                "the audit log holds a secret the lab issued"
            );
        }
        let mut seen: Vec<(String, String, String)> = self
            .audit_events()
            .iter()
            .map(|e| {
                (
                    e.source.kind.clone(),
                    e.target.kind.as_str().to_string(),
                    e.outcome.as_str().to_string(),
                )
            })
            .collect();
        let mut want: Vec<(String, String, String)> = expected
            .iter()
            .map(|(s, t, o)| (s.to_string(), t.to_string(), o.to_string()))
            .collect();
        seen.sort();
        want.sort();
        assert_eq!(seen, want, "one audit event per exchange:\n{text}");
    }

    pub fn write_token(&self, name: &str, email: &str, lifetime: Duration) -> PathBuf {
        self.home.write_token(
            name,
            &self.lab.mint_id_token(email, "sts.amazonaws.com", lifetime),
        )
    }
}

impl LabWorld {
    /// Starts `keyless ARGS` against the lab in the background (a server, the token file).
    pub fn spawn_keyless(&self, args: &[&str], extra: &[(&str, &str)]) -> super::Background {
        let mut cmd = self.home.keyless(args);
        self.point_at_lab(&mut cmd, extra);
        super::Background::spawn(cmd)
    }

    /// Runs `keyless ARGS` with extra environment for every `(ARGS, ENV)` of `runs` at the
    /// same time (independent commands: a table of cases stays as fast as its slowest), off the
    /// runtime; the outputs in the order of `runs`.
    pub async fn keyless_all(&self, runs: Vec<KeylessRun>) -> Vec<CommandOutput> {
        let commands: Vec<std::process::Command> = runs
            .iter()
            .map(|(args, env)| {
                let mut cmd = self.home.keyless(args);
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                self.point_at_lab(&mut cmd, &env);
                cmd
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            std::thread::scope(|scope| {
                let running: Vec<_> = commands
                    .into_iter()
                    .map(|mut cmd| scope.spawn(move || super::process::run(&mut cmd)))
                    .collect();
                running
                    .into_iter()
                    .map(|run| run.join().expect("the command's thread"))
                    .collect()
            })
        })
        .await
        .unwrap()
    }

    /// Runs any prepared command (aws CLI, Python) against the lab, off the runtime.
    pub async fn run(&self, mut cmd: std::process::Command) -> CommandOutput {
        self.point_at_lab(&mut cmd, &[]);
        tokio::task::spawn_blocking(move || super::process::run(&mut cmd))
            .await
            .unwrap()
    }
}

/// One `keyless` run of [`LabWorld::keyless_all`]: its arguments and extra environment.
pub type KeylessRun = (Vec<String>, Vec<(String, String)>);

/// The environment variables that hand `credentials` to a child (the SDKs' first source).
pub fn aws_env(credentials: &keyless::credentials::AwsCredentials) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            credentials.secret_access_key.expose().to_string(),
        ),
    ];
    if let Some(token) = &credentials.session_token {
        env.push(("AWS_SESSION_TOKEN", token.expose().to_string()));
    }
    env
}
