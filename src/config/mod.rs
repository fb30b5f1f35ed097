//! `keyless.toml`: the daemon's named profiles, checked completely before anything starts.
//!
//! `keyless serve --config keyless.toml` runs many profiles of both directions at once and
//! re-reads the file on SIGHUP. A typo found at 3 a.m. by a reload must not take credentials away
//! from running programs, so the whole file is validated up front and every problem names the
//! file, line, column and key, and says how to fix it. Keys are the command-line flags' names in
//! snake_case, so what works as `--role-arn` works as `role_arn`.
//!
//! The typed result is plain data with `PartialEq`: a reload compares each profile's old and new
//! [`ProfileConfig`] and restarts only those that differ.
//!
//! One concern per module: `reader` reads the file (size cap, protection), `checker` walks
//! the document and decides each profile's direction, `to_aws` and `to_google` hold one
//! direction each, `channels` where credentials go, `defaults` the `[defaults]` table, `values`
//! the typed values keys take, `problems` what is reported and `suggestions` the likely fix.

mod channels;
mod checker;
mod defaults;
mod problems;
mod reader;
mod suggestions;
#[cfg(test)]
mod testing;
mod to_aws;
mod to_google;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::deliver::server::AllowedHost;
use crate::source::aws::AwsSourceError;
use crate::source::SourceError;
use crate::types::SpecError;

use checker::Checker;

pub use channels::Channel;
pub use problems::{ConfigError, Problem, ProblemKind};
pub use reader::{read_config_file, MAX_CONFIG_FILE_BYTES};
pub use to_aws::{GcpToAwsProfile, SessionPolicy};
pub use to_google::AwsToGcpProfile;

/// The file `keyless serve` reads when told nothing else.
pub const DEFAULT_CONFIG_FILE: &str = "keyless.toml";

/// A validated `keyless.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where `/healthz` and `/metrics` are served; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How log lines look, unless `--log-format` says otherwise.
    pub log_format: Option<LogFormat>,
    /// Where `keyless serve` appends its audit events, unless `--audit-log` says otherwise
    /// (relative to the file's directory).
    pub audit_log: Option<PathBuf>,
    /// `allow_remote = true`: the endpoints may listen on non-loopback addresses, like
    /// `--allow-remote` (each listener still checks `Host` for its own address).
    pub allow_remote: bool,
    /// `allowed_hosts = [...]` at the top: names every profile's endpoints accept in `Host`
    /// besides their own, like `--allowed-host`.
    pub allowed_hosts: Vec<AllowedHost>,
    /// The profiles by name.
    pub profiles: BTreeMap<String, ProfileConfig>,
}

/// Log line format (the file's `log_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which way a profile trades identities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A Google identity becomes AWS credentials.
    GcpToAws,
    /// An AWS identity becomes Google tokens.
    AwsToGcp,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GcpToAws => "GCP → AWS",
            Self::AwsToGcp => "AWS → GCP",
        })
    }
}

/// One named profile: what to fetch and where to deliver it.
#[derive(Clone, Debug, PartialEq)]
pub enum ProfileConfig {
    GcpToAws(GcpToAwsProfile),
    AwsToGcp(AwsToGcpProfile),
}

impl ProfileConfig {
    /// The profile's direction.
    pub fn direction(&self) -> Direction {
        match self {
            Self::GcpToAws(_) => Direction::GcpToAws,
            Self::AwsToGcp(_) => Direction::AwsToGcp,
        }
    }

    /// The profile's own `allowed_hosts` (the file's top-level ones are added by the daemon).
    pub fn allowed_hosts(&self) -> &[AllowedHost] {
        match self {
            Self::GcpToAws(p) => &p.allowed_hosts,
            Self::AwsToGcp(p) => &p.allowed_hosts,
        }
    }

    /// Where the profile's credentials go (never empty in a validated config).
    pub fn channels(&self) -> &[Channel] {
        match self {
            Self::GcpToAws(p) => &p.channels,
            Self::AwsToGcp(p) => &p.channels,
        }
    }
}

/// Why a profile that passed validation still cannot become the library's profile: something
/// it takes from the environment is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ProfileBuildError {
    /// The token source is unusable.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A region or endpoint from the environment is invalid.
    #[error(transparent)]
    Setting(#[from] SpecError),
    /// The AWS identity could not be found.
    #[error(transparent)]
    Aws(#[from] AwsSourceError),
}

/// Who reads the file, which decides what it must contain.
#[derive(Clone, Debug, Default)]
pub struct ReadFor {
    /// One-shot commands (`aws credentials --config-profile NAME`) need no channel and no
    /// profile; the daemon needs both.
    pub one_shot: bool,
    /// The flag names `[defaults]` may set (every command's, snake_case); `None` accepts any.
    pub known_flags: Option<Vec<String>>,
    /// `--allow-remote` (or `KEYLESS_ALLOW_REMOTE`): non-loopback listen addresses are accepted
    /// even without `allow_remote = true` in the file.
    pub allow_remote: bool,
}

/// Reads and validates `path` for the daemon. Relative paths inside are relative to the file's
/// directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_for(path, &ReadFor::default())
}

/// Reads and validates `path` for `reader`.
pub fn load_for(path: &Path, reader: &ReadFor) -> Result<Config, ConfigError> {
    let text = read_config_file(path)?;
    parse_for(&text, path, reader)
}

/// Validates `text`, the content of `path` (named in messages; its directory anchors relative
/// paths), for the daemon.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    parse_for(text, path, &ReadFor::default())
}

/// Validates `text` for `reader`.
pub fn parse_for(text: &str, path: &Path, reader: &ReadFor) -> Result<Config, ConfigError> {
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::path::absolute(&base).unwrap_or(base);
    let mut checker = Checker {
        text,
        base,
        problems: Vec::new(),
        reader,
    };
    let config = match DeTable::parse(text) {
        Ok(doc) => checker.config(doc.get_ref()),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            checker.problem(
                ProblemKind::Syntax,
                span,
                "",
                format!("not valid TOML: {}", e.message().trim_end()),
                Some("see https://toml.io for the syntax".into()),
            );
            None
        }
    };
    match config {
        Some(config) if checker.problems.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: checker.problems,
        }),
    }
}

/// Reads only `log_format`, for the logger that must start before the full load (which reports
/// any error in the file itself).
pub fn peek_log_format(path: &Path) -> Option<LogFormat> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc = DeTable::parse(&text).ok()?;
    match doc.get_ref().get("log_format")?.get_ref().as_str()? {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;
    use crate::exchange::google_sts::CLOUD_PLATFORM_SCOPE;

    #[test]
    fn audit_log_is_a_path_relative_to_the_file() {
        let text = "audit_log = \"audit/keyless.jsonl\"\n[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ncredentials_profile = \"a\"\n";
        let config = parse(text, Path::new("/etc/keyless/keyless.toml")).unwrap();
        assert_eq!(
            config.audit_log.as_deref(),
            Some(Path::new("/etc/keyless/audit/keyless.jsonl"))
        );
        let (p, _) = problem("audit_log = \"\"\n[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ncredentials_profile = \"a\"\n");
        assert_eq!(p.kind, ProblemKind::InvalidValue, "{p:?}");
    }

    #[test]
    fn one_shot_readers_need_no_channel_and_no_profile() {
        let reader = ReadFor {
            one_shot: true,
            known_flags: None,
            allow_remote: false,
        };
        let text = "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\n";
        assert!(parse_for(text, Path::new("k.toml"), &reader).is_ok());
        assert!(parse_for("", Path::new("k.toml"), &reader).is_ok());
        let (p, _) = problem(text);
        assert_eq!(p.kind, ProblemKind::NoChannel, "the daemon still needs one");
    }

    #[test]
    fn the_example_round_trips_into_typed_profiles() {
        let config = parse_at(EXAMPLE).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(config.log_format, Some(LogFormat::Json));
        let ProfileConfig::GcpToAws(deploy) = &config.profiles["deploy"] else {
            panic!("deploy is GCP → AWS");
        };
        assert_eq!(
            deploy.role_arn.as_str(),
            "arn:aws:iam::123456789012:role/DeploymentRole"
        );
        assert_eq!(deploy.audience, "sts.amazonaws.com");
        assert_eq!(deploy.token_source.to_string(), "metadata");
        assert_eq!(
            deploy.channels,
            vec![
                Channel::EcsServer {
                    listen: "127.0.0.1:9911".parse().unwrap(),
                    auth_token_file: None
                },
                Channel::TokenFile {
                    path: "/var/run/keyless/deploy.jwt".into()
                },
            ]
        );
        let ProfileConfig::AwsToGcp(copycat) = &config.profiles["copycat"] else {
            panic!("copycat is AWS → GCP");
        };
        assert_eq!(copycat.scopes, vec![CLOUD_PLATFORM_SCOPE.to_string()]);
        assert_eq!(
            copycat.service_account.as_deref(),
            Some("copycat@proj.iam.gserviceaccount.com")
        );
        assert_eq!(
            copycat.channels,
            vec![Channel::GceMetadataServer {
                listen: "127.0.0.1:9912".parse().unwrap()
            }]
        );
        // Equal text, equal config: what lets a reload leave a profile alone.
        assert_eq!(parse_at(EXAMPLE).unwrap(), config);
    }
}
