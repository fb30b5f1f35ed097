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

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::deliver::external_account::normalize_audience;
use crate::deliver::server::AllowedHost;
use crate::duration::{DurationError, Seconds};
use crate::exchange::aws_chain::RoleChain;
use crate::exchange::aws_sts::{RetryPolicy, RoleArn, SessionName, StsEndpoint};
use crate::exchange::google_iam::Impersonation;
use crate::exchange::google_sts::{CLOUD_PLATFORM_SCOPE, DEFAULT_TOKEN_URL};
use crate::refresh::gcp_token::{
    default_token_audience, parse_token_source, GcpSubject, AWS_TOKEN_SOURCE,
};
use crate::refresh::{AwsRoleProfile, GcpTokenProfile};
use crate::source::aws::{AwsIdentitySource, AwsSourceError, AwsSourceOptions};
use crate::source::google::{DEFAULT_AWS_AUDIENCE, DEFAULT_IAMCREDENTIALS_URL};
use crate::source::SourceError;
use crate::source::{SharedTokenSource, SourceContext};
use crate::types::{
    ExternalId, Region, SessionTag, SourceIdentity, SpecError, TagKey, TokenSourceSpec, UpstreamUrl,
};

/// The file `keyless serve` reads when told nothing else.
pub const DEFAULT_CONFIG_FILE: &str = "keyless.toml";

/// A validated `keyless.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where `/healthz` and `/metrics` are served; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How log lines look, unless `--log-format` says otherwise.
    pub log_format: Option<LogFormat>,
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

/// GCP → AWS: the `keyless aws` flags, as keys.
#[derive(Clone, Debug, PartialEq)]
pub struct GcpToAwsProfile {
    pub role_arn: RoleArn,
    pub audience: String,
    /// `metadata`, `impersonate:EMAIL`, `file:PATH` (made absolute) or `command:CMD`.
    pub token_source: TokenSourceSpec,
    pub session_name: Option<SessionName>,
    pub duration: Option<u32>,
    pub region: Option<Region>,
    /// The session policy, read at load so that editing the policy file counts as a change.
    pub policy: Option<SessionPolicy>,
    pub policy_arns: Vec<String>,
    pub iamcredentials_url: Option<UpstreamUrl>,
    pub sts_endpoint: Option<UpstreamUrl>,
    /// `chain_roles` (or `chain_role`): roles assumed in turn after `role_arn`, with
    /// `external_id`, `source_identity`, `tags = {K = "V"}` and `transitive_tag_keys`.
    pub chain: RoleChain,
    /// Names its endpoints accept in `Host` besides their own (`allowed_hosts`).
    pub allowed_hosts: Vec<AllowedHost>,
    pub channels: Vec<Channel>,
}

/// A session policy file and the JSON it held when the configuration was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    pub path: PathBuf,
    pub text: String,
}

/// AWS → GCP: the `keyless gcp` flags, as keys.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsToGcpProfile {
    /// Normalised to `//iam.googleapis.com/projects/N/locations/global/...`.
    pub audience: String,
    /// `aws` (the AWS identity; the default) or a JWT source (`file:` paths made absolute).
    pub token_source: TokenSourceSpec,
    /// The audience a JWT source mints for (default: the provider's https:// name).
    pub token_audience: Option<String>,
    pub service_account: Option<String>,
    pub scopes: Vec<String>,
    pub lifetime: Option<u32>,
    pub delegates: Vec<String>,
    pub aws_profile: Option<String>,
    pub aws_region: Option<Region>,
    pub assume_role: Option<String>,
    pub token_url: Option<UpstreamUrl>,
    pub iamcredentials_url: Option<UpstreamUrl>,
    /// Names its endpoint accepts in `Host` besides its own (`allowed_hosts`).
    pub allowed_hosts: Vec<AllowedHost>,
    pub channels: Vec<Channel>,
}

/// A way of handing a profile's credentials to programs.
///
/// The daemon starts one task (or server) per channel; which channels a build can run is the
/// daemon's business, the configuration only says what was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    /// GCP → AWS: the ECS container-credentials endpoint (`ecs_listen`, `auth_token_file`).
    EcsServer {
        listen: SocketAddr,
        auth_token_file: Option<PathBuf>,
    },
    /// GCP → AWS: the IMDSv2-style endpoint (`imds_listen`).
    ImdsServer { listen: SocketAddr },
    /// GCP → AWS: the Google ID token, for `AWS_WEB_IDENTITY_TOKEN_FILE` (`token_file`).
    TokenFile { path: PathBuf },
    /// GCP → AWS: a profile of the shared credentials file (`credentials_file`,
    /// `credentials_profile`); `path: None` is the SDKs' default file.
    CredentialsFile {
        path: Option<PathBuf>,
        profile: String,
    },
    /// AWS → GCP: the GCE-metadata-style endpoint (`gce_metadata_listen`).
    GceMetadataServer { listen: SocketAddr },
}

impl Channel {
    /// The key that asks for this channel.
    pub fn key(&self) -> &'static str {
        match self {
            Self::EcsServer { .. } => "ecs_listen",
            Self::ImdsServer { .. } => "imds_listen",
            Self::TokenFile { .. } => "token_file",
            Self::CredentialsFile { .. } => "credentials_file",
            Self::GceMetadataServer { .. } => "gce_metadata_listen",
        }
    }

    /// The address this channel listens on, if it is a server.
    pub fn listen(&self) -> Option<SocketAddr> {
        match self {
            Self::EcsServer { listen, .. }
            | Self::ImdsServer { listen }
            | Self::GceMetadataServer { listen } => Some(*listen),
            Self::TokenFile { .. } | Self::CredentialsFile { .. } => None,
        }
    }
}

impl GcpToAwsProfile {
    /// The role whose credentials the profile delivers: the last of `chain_roles`, else
    /// `role_arn`.
    pub fn final_role_arn(&self) -> &RoleArn {
        self.chain.roles().last().unwrap_or(&self.role_arn)
    }

    /// The Google token source, with endpoints from the environment as the CLI reads them.
    pub fn google_token_source(&self) -> Result<SharedTokenSource, ProfileBuildError> {
        let iam = match &self.iamcredentials_url {
            Some(url) => Some(url.clone()),
            None => UpstreamUrl::from_env("KEYLESS_IAMCREDENTIALS_URL")?,
        };
        Ok(crate::source::registry::build(
            &self.token_source,
            &SourceContext {
                iamcredentials_url: iam,
                aws: crate::source::aws::AwsSourceOptions {
                    region: match &self.region {
                        Some(region) => Some(region.clone()),
                        None => Region::from_env()?,
                    },
                    ..Default::default()
                },
                sts_endpoint: match &self.sts_endpoint {
                    Some(url) => Some(url.clone()),
                    None => UpstreamUrl::from_env("KEYLESS_STS_ENDPOINT")?,
                },
                ..SourceContext::default()
            },
        )?)
    }

    /// The library's profile; the same one `keyless aws credentials` builds from its flags.
    /// Endpoints the file leaves out come from `KEYLESS_STS_ENDPOINT`, `AWS_ENDPOINT_URL_STS`,
    /// `AWS_REGION`..., as they do for the CLI: they describe the machine, not the profile.
    pub fn role_profile(&self) -> Result<AwsRoleProfile, ProfileBuildError> {
        let region = match &self.region {
            Some(region) => Some(region.clone()),
            None => Region::from_env()?,
        };
        let sts = match &self.sts_endpoint {
            Some(url) => Some(url.clone()),
            None => UpstreamUrl::from_env("KEYLESS_STS_ENDPOINT")?,
        };
        Ok(AwsRoleProfile {
            token_source: self.google_token_source()?,
            audience: self.audience.clone(),
            request: crate::exchange::aws_sts::WebIdentityRequest {
                role_arn: self.role_arn.clone(),
                session_name: self.session_name.clone(),
                duration_seconds: self.duration,
                policy: self.policy.as_ref().map(|p| p.text.clone()),
                policy_arns: self.policy_arns.clone(),
            },
            endpoint: StsEndpoint::resolve(sts.as_ref(), region.as_ref())?,
            retry: RetryPolicy::default(),
            chain: self.chain.clone(),
        })
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

impl AwsToGcpProfile {
    /// The library's profile; the same one `keyless gcp token` builds from its flags. Google
    /// endpoints the file leaves out come from `KEYLESS_TOKEN_URL` and
    /// `KEYLESS_IAMCREDENTIALS_URL`, else Google's.
    pub async fn token_profile(&self) -> Result<GcpTokenProfile, ProfileBuildError> {
        let iamcredentials_url = match &self.iamcredentials_url {
            Some(url) => url.clone(),
            None => UpstreamUrl::from_env("KEYLESS_IAMCREDENTIALS_URL")?
                .unwrap_or_else(|| UpstreamUrl::builtin(DEFAULT_IAMCREDENTIALS_URL)),
        };
        let subject = if self.token_source.name() == AWS_TOKEN_SOURCE {
            GcpSubject::Aws(
                AwsIdentitySource::resolve(AwsSourceOptions {
                    profile: self.aws_profile.clone(),
                    region: self.aws_region.clone(),
                    assume_role: self.assume_role.clone(),
                    assume_role_session_name: None,
                })
                .await?,
            )
        } else {
            GcpSubject::Jwt {
                source: crate::source::registry::build(
                    &self.token_source,
                    &SourceContext {
                        iamcredentials_url: Some(iamcredentials_url.clone()),
                        ..SourceContext::default()
                    },
                )?,
                audience: self
                    .token_audience
                    .clone()
                    .unwrap_or_else(|| default_token_audience(&self.audience)),
            }
        };
        Ok(GcpTokenProfile {
            subject,
            audience: self.audience.clone(),
            scopes: self.scopes.clone(),
            token_url: match &self.token_url {
                Some(url) => url.clone(),
                None => UpstreamUrl::from_env("KEYLESS_TOKEN_URL")?
                    .unwrap_or_else(|| UpstreamUrl::builtin(DEFAULT_TOKEN_URL)),
            },
            iamcredentials_url,
            impersonation: self.service_account.as_ref().map(|sa| Impersonation {
                service_account: sa.clone(),
                scopes: self.scopes.clone(),
                lifetime: self.lifetime,
                delegates: self.delegates.clone(),
            }),
            retry: RetryPolicy::default(),
        })
    }
}

/// Why a configuration was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("could not read the configuration {}: {cause}\n  hint: pass the file with --config PATH", path.display())]
    Read { path: PathBuf, cause: String },
    /// The file can run commands or redirect tokens, yet someone else could change it.
    #[error("{} {power}, but {problem}\n  hint: make it yours (or root's) and writable only by its owner: {fix}", path.display())]
    Unprotected {
        path: PathBuf,
        /// What the file can make keyless do, naming the key.
        power: String,
        problem: String,
        fix: String,
    },
    /// The file was read but is wrong; every problem found is listed.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found (empty for an unreadable file).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Read { .. } | Self::Unprotected { .. } => &[],
            Self::Invalid { problems, .. } => problems,
        }
    }
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{} has {} problem{}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!(
            "\n{}:{}:{}: {}",
            path.display(),
            p.line,
            p.column,
            p.message
        ));
        if let Some(hint) = &p.hint {
            out.push_str(&format!("\n  hint: {hint}"));
        }
    }
    out
}

/// What kind of mistake a [`Problem`] is (for tests and tools; the message is for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not TOML.
    Syntax,
    UnknownKey,
    WrongType,
    InvalidValue,
    MissingKey,
    /// Neither `role_arn` nor a workload identity provider audience.
    NoDirection,
    /// Keys of both directions in one profile.
    MixedDirections,
    /// A channel that delivers the other direction's credentials.
    WrongDirectionChannel,
    NoChannel,
    NoProfiles,
    /// Two listeners on one address.
    DuplicateListen,
    /// Two channels writing one file (or one credentials profile).
    DuplicateFile,
}

/// One mistake in the file: where, which key, what is wrong, and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// Dotted: `profile.deploy.role_arn`.
    pub key: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
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
fn powers(table: &DeTable<'_>, prefix: &str) -> Option<String> {
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
            DeValue::String(v) if key == "token_source" && v.trim().starts_with("command:") => {
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

const TOP_KEYS: &[&str] = &[
    "metrics_listen",
    "log_format",
    "allow_remote",
    "allowed_hosts",
    "defaults",
    "profile",
];

/// Keys both directions have.
const COMMON_KEYS: &[&str] = &["audience", "iamcredentials_url", "token_source"];
/// Keys about the profile's endpoints, either direction; never inherited from `[defaults]`.
const LISTENER_KEYS: &[&str] = &["allowed_hosts"];
/// GCP → AWS keys (flags of `keyless aws`) and its channels.
const GCP_TO_AWS_KEYS: &[&str] = &[
    "role_arn",
    "session_name",
    "duration",
    "region",
    "policy",
    "policy_arn",
    "policy_arns",
    "sts_endpoint",
    "no_cache",
    "chain_role",
    "chain_roles",
    "external_id",
    "source_identity",
    "tag",
    "tags",
    "transitive_tag_key",
    "transitive_tag_keys",
];
const GCP_TO_AWS_CHANNELS: &[&str] = &[
    "ecs_listen",
    "auth_token_file",
    "imds_listen",
    "token_file",
    "credentials_file",
    "credentials_profile",
];
/// AWS → GCP keys (flags of `keyless gcp`) and its channels.
const AWS_TO_GCP_KEYS: &[&str] = &[
    "service_account",
    "scopes",
    "lifetime",
    "delegates",
    "aws_profile",
    "aws_region",
    "assume_role",
    "token_url",
    "token_audience",
];
const AWS_TO_GCP_CHANNELS: &[&str] = &["gce_metadata_listen"];

/// Flags whose key has another name in the file, with the hint to give.
const RENAMED_FLAGS: &[(&str, &str)] = &[
    ("listen", "a channel names what listens: ecs_listen, imds_listen (GCP → AWS) or gce_metadata_listen (AWS → GCP)"),
    ("imds", "use imds_listen = \"127.0.0.1:PORT\""),
    ("path", "use token_file = \"PATH\""),
    ("profile", "use credentials_profile = \"NAME\" (with credentials_file)"),
    ("format", "the daemon delivers through channels, not standard output; remove it"),
];

fn all_profile_keys() -> impl Iterator<Item = &'static str> {
    COMMON_KEYS
        .iter()
        .chain(LISTENER_KEYS)
        .chain(GCP_TO_AWS_KEYS)
        .chain(GCP_TO_AWS_CHANNELS)
        .chain(AWS_TO_GCP_KEYS)
        .chain(AWS_TO_GCP_CHANNELS)
        .copied()
}

type Entry<'a, 'i> = (
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
);

/// Walks the parsed document, collecting every problem rather than stopping at the first.
struct Checker<'t> {
    text: &'t str,
    base: PathBuf,
    problems: Vec<Problem>,
    reader: &'t ReadFor,
}

/// A listener or file claimed by a channel, to find two claims on one resource.
struct Claim {
    resource: ClaimedResource,
    key: String,
    span: Range<usize>,
}

#[derive(PartialEq)]
enum ClaimedResource {
    Listen(SocketAddr),
    File(PathBuf),
    CredentialsProfile(Option<PathBuf>, String),
}

impl Checker<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn problem(
        &mut self,
        kind: ProblemKind,
        span: Range<usize>,
        key: &str,
        message: String,
        hint: Option<String>,
    ) {
        let (line, column) = self.position(span.start);
        self.problems.push(Problem {
            kind,
            key: key.to_string(),
            line,
            column,
            message,
            hint,
        });
    }

    fn config(&mut self, doc: &DeTable<'_>) -> Option<Config> {
        let mut metrics_listen = None;
        let mut log_format = None;
        let mut allow_remote = false;
        let mut allowed_hosts = Vec::new();
        let mut profiles = BTreeMap::new();
        let mut claims = Vec::new();
        let mut saw_profiles = false;
        let mut defaults = None;
        if let Some(value) = doc.get("defaults") {
            defaults = self.table(value, "defaults");
            if let Some(table) = defaults {
                self.defaults(table);
            }
        }
        for (key, value) in sorted(doc) {
            let name = key.get_ref().as_ref();
            match name {
                "defaults" => {}
                "metrics_listen" => {
                    metrics_listen = self.addr(value, "metrics_listen");
                    if let Some(addr) = metrics_listen {
                        claims.push(Claim {
                            resource: ClaimedResource::Listen(addr),
                            key: "metrics_listen".into(),
                            span: value.span(),
                        });
                    }
                }
                "log_format" => {
                    log_format = match self.string(value, "log_format").as_deref() {
                        Some("text") => Some(LogFormat::Text),
                        Some("json") => Some(LogFormat::Json),
                        Some(other) => {
                            self.problem(
                                ProblemKind::InvalidValue,
                                value.span(),
                                "log_format",
                                format!("log_format is {other:?}"),
                                Some("use \"text\" or \"json\"".into()),
                            );
                            None
                        }
                        None => None,
                    }
                }
                "allow_remote" => {
                    allow_remote = self.boolean(value, "allow_remote").unwrap_or(false);
                }
                "allowed_hosts" => allowed_hosts = self.allowed_hosts(value, "allowed_hosts"),
                "profile" => {
                    saw_profiles = true;
                    let Some(table) = self.table(value, "profile") else {
                        continue;
                    };
                    for (pkey, pvalue) in sorted(table) {
                        let pname = pkey.get_ref().to_string();
                        if let Some(p) =
                            self.profile(&pname, pkey.span(), pvalue, defaults, &mut claims)
                        {
                            profiles.insert(pname, p);
                        }
                    }
                }
                _ => {
                    let hint = if all_profile_keys().any(|k| k == name) {
                        Some(format!(
                            "`{name}` belongs to a profile: put it under a [profile.NAME] table"
                        ))
                    } else {
                        suggestion(name, TOP_KEYS.iter().copied())
                    };
                    self.problem(
                        ProblemKind::UnknownKey,
                        key.span(),
                        name,
                        format!("unknown key `{name}` at the top level"),
                        hint,
                    );
                }
            }
        }
        if profiles.is_empty() && !saw_profiles && !self.reader.one_shot {
            self.problem(
                ProblemKind::NoProfiles,
                0..0,
                "profile",
                "no profiles: the daemon would have nothing to serve".into(),
                Some("add a [profile.NAME] table with role_arn (GCP → AWS) or a workload identity provider audience (AWS → GCP)".into()),
            );
        }
        self.duplicates(&claims);
        if !(allow_remote || self.reader.allow_remote) {
            self.remote_listens(&claims);
        }
        Some(Config {
            metrics_listen,
            log_format,
            allow_remote,
            allowed_hosts,
            profiles,
        })
    }

    /// A credential endpoint on a non-loopback address without `allow_remote` (`/metrics` holds
    /// no credential and may listen anywhere).
    fn remote_listens(&mut self, claims: &[Claim]) {
        for claim in claims {
            let ClaimedResource::Listen(addr) = claim.resource else {
                continue;
            };
            if addr.ip().is_loopback() || claim.key == "metrics_listen" {
                continue;
            }
            self.problem(
                ProblemKind::InvalidValue,
                claim.span.clone(),
                &claim.key,
                format!(
                    "{} = \"{addr}\" is not a loopback address: anything that can reach it could \
                     take the credentials it hands out",
                    claim.key
                ),
                Some(
                    "listen on 127.0.0.1:PORT, or put allow_remote = true at the top of the file \
                     (or pass --allow-remote) if other hosts or containers must reach it"
                        .into(),
                ),
            );
        }
    }

    fn duplicates(&mut self, claims: &[Claim]) {
        for (i, claim) in claims.iter().enumerate() {
            let Some(first) = claims[..i]
                .iter()
                .find(|c| conflicts(&c.resource, &claim.resource))
            else {
                continue;
            };
            let (line, column) = self.position(first.span.start);
            let (kind, what, hint) = match &claim.resource {
                ClaimedResource::Listen(addr) => (
                    ProblemKind::DuplicateListen,
                    format!("listen address {addr}"),
                    "give each listener its own port",
                ),
                ClaimedResource::File(path) => (
                    ProblemKind::DuplicateFile,
                    format!("file {}", path.display()),
                    "give each channel its own file",
                ),
                ClaimedResource::CredentialsProfile(_, profile) => (
                    ProblemKind::DuplicateFile,
                    format!("credentials profile [{profile}] of the same file"),
                    "give each one its own credentials_profile",
                ),
            };
            self.problem(
                kind,
                claim.span.clone(),
                &claim.key,
                format!(
                    "{} uses the {what}, already used by {} at line {line}, column {column}",
                    claim.key, first.key
                ),
                Some(hint.into()),
            );
        }
    }

    /// `[defaults]`: flag names of any command. Only the names are checked here; each value is
    /// checked by the command that uses it (clap), or by a profile that inherits it.
    fn defaults(&mut self, table: &DeTable<'_>) {
        let Some(known) = &self.reader.known_flags else {
            return;
        };
        let known = known.clone();
        for (key, value) in sorted(table) {
            let k = key.get_ref().as_ref();
            if !known.iter().any(|f| f == k) {
                let hint = suggestion(k, known.iter().map(String::as_str));
                self.problem(
                    ProblemKind::UnknownKey,
                    key.span(),
                    &format!("defaults.{k}"),
                    format!(
                        "unknown key `{k}` in [defaults]: no command has a --{} flag",
                        k.replace('_', "-")
                    ),
                    hint,
                );
            } else if matches!(value.get_ref(), DeValue::Table(_)) {
                self.wrong_type(
                    value,
                    &format!("defaults.{k}"),
                    "a string, number, boolean or array",
                );
            }
        }
    }

    fn profile<'a, 'i>(
        &mut self,
        name: &str,
        header: Range<usize>,
        value: &'a Spanned<DeValue<'i>>,
        defaults: Option<&'a DeTable<'i>>,
        claims: &mut Vec<Claim>,
    ) -> Option<ProfileConfig> {
        let table_key = format!("profile.{name}");
        let table = self.table(value, &table_key)?;
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.problem(
                ProblemKind::InvalidValue,
                header.clone(),
                &table_key,
                format!("profile name {name:?} has spaces or control characters"),
                Some("use letters, digits, `-`, `_` and `.`".into()),
            );
        }
        let mut keys: BTreeMap<&'static str, Entry<'_, '_>> = BTreeMap::new();
        for (key, value) in sorted(table) {
            let k = key.get_ref().as_ref();
            match all_profile_keys().find(|known| *known == k) {
                Some(known) => {
                    keys.insert(known, (key, value));
                }
                None => {
                    let hint = RENAMED_FLAGS
                        .iter()
                        .find(|(flag, _)| *flag == k)
                        .map(|(_, hint)| hint.to_string())
                        .or_else(|| suggestion(k, all_profile_keys()));
                    self.problem(
                        ProblemKind::UnknownKey,
                        key.span(),
                        &format!("{table_key}.{k}"),
                        format!("unknown key `{k}` in [{table_key}]"),
                        hint,
                    );
                }
            }
        }
        let wif_audience = keys
            .get("audience")
            .and_then(|(_, v)| v.get_ref().as_str())
            .is_some_and(|a| is_provider_name(&normalize_audience(a)));
        let has_any = |set: &[&str]| set.iter().any(|k| keys.contains_key(k));
        let direction = if keys.contains_key("role_arn") {
            Direction::GcpToAws
        } else if wif_audience || has_any(AWS_TO_GCP_KEYS) || has_any(AWS_TO_GCP_CHANNELS) {
            Direction::AwsToGcp
        } else if has_any(GCP_TO_AWS_KEYS) || has_any(GCP_TO_AWS_CHANNELS) {
            Direction::GcpToAws
        } else {
            self.problem(
                ProblemKind::NoDirection,
                header,
                &table_key,
                format!("[{table_key}] is neither direction"),
                Some("add role_arn = \"arn:aws:iam::ACCOUNT:role/NAME\" (GCP → AWS), or audience = \"//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER\" (AWS → GCP)".into()),
            );
            return None;
        };
        let (other_keys, other_channels, own_channels) = match direction {
            Direction::GcpToAws => (AWS_TO_GCP_KEYS, AWS_TO_GCP_CHANNELS, GCP_TO_AWS_CHANNELS),
            Direction::AwsToGcp => (GCP_TO_AWS_KEYS, GCP_TO_AWS_CHANNELS, AWS_TO_GCP_CHANNELS),
        };
        let why = match direction {
            Direction::GcpToAws => "it has role_arn",
            Direction::AwsToGcp if wif_audience => {
                "its audience is a workload identity provider and it has no role_arn"
            }
            Direction::AwsToGcp => "it has no role_arn",
        };
        let mut mixed = false;
        for (k, (key, _)) in &keys {
            let dotted = format!("{table_key}.{k}");
            if other_channels.contains(k) {
                mixed = true;
                self.problem(
                    ProblemKind::WrongDirectionChannel,
                    key.span(),
                    &dotted,
                    format!(
                        "`{k}` delivers {} credentials, but [{table_key}] is {direction} ({why})",
                        match direction {
                            Direction::GcpToAws => "Google",
                            Direction::AwsToGcp => "AWS",
                        }
                    ),
                    Some(format!(
                        "{direction} profiles deliver through {}; put `{k}` in its own profile of the other direction",
                        own_channels.join(", ")
                    )),
                );
            } else if other_keys.contains(k) {
                mixed = true;
                self.problem(
                    ProblemKind::MixedDirections,
                    key.span(),
                    &dotted,
                    format!(
                        "`{k}` belongs to the other direction, but [{table_key}] is {direction} ({why})"
                    ),
                    Some("one profile trades one way: split it into two profiles".into()),
                );
            }
        }
        if mixed {
            return None;
        }
        // `[defaults]` fills what the profile leaves out, for the keys of its own direction
        // (never channels: where credentials go is each profile's own decision).
        let inherited = COMMON_KEYS.iter().chain(match direction {
            Direction::GcpToAws => GCP_TO_AWS_KEYS,
            Direction::AwsToGcp => AWS_TO_GCP_KEYS,
        });
        for known in inherited {
            if keys.contains_key(known) {
                continue;
            }
            if let Some(entry) = defaults.and_then(|d| d.get_key_value(*known)) {
                keys.insert(known, entry);
            }
        }
        let mut ctx = ProfileCtx {
            name,
            table_key: &table_key,
            header,
            keys,
        };
        match direction {
            Direction::GcpToAws => self
                .gcp_to_aws(&mut ctx, claims)
                .map(ProfileConfig::GcpToAws),
            Direction::AwsToGcp => self
                .aws_to_gcp(&mut ctx, claims)
                .map(ProfileConfig::AwsToGcp),
        }
    }

    fn gcp_to_aws(
        &mut self,
        ctx: &mut ProfileCtx<'_, '_, '_>,
        claims: &mut Vec<Claim>,
    ) -> Option<GcpToAwsProfile> {
        let before = self.problems.len();
        let role_arn = match ctx.keys.get("role_arn") {
            Some((_, v)) => self.string(v, &ctx.dotted("role_arn")).and_then(|arn| {
                RoleArn::parse(&arn)
                    .map_err(|e| {
                        self.problem(
                            ProblemKind::InvalidValue,
                            v.span(),
                            &ctx.dotted("role_arn"),
                            format!("role_arn: {e}"),
                            Some("copy the role's ARN from `aws iam get-role --role-name NAME --query Role.Arn`".into()),
                        )
                    })
                    .ok()
            }),
            None => {
                self.problem(
                    ProblemKind::MissingKey,
                    ctx.header.clone(),
                    &ctx.dotted("role_arn"),
                    format!("[{}] has GCP → AWS keys but no role_arn", ctx.table_key),
                    Some("add role_arn = \"arn:aws:iam::ACCOUNT:role/NAME\"".into()),
                );
                None
            }
        };
        let audience = match ctx.keys.get("audience") {
            Some((_, v)) => {
                let audience = self.string(v, &ctx.dotted("audience"));
                if let Some(a) = &audience {
                    if a.trim().is_empty() || a.trim() != a {
                        self.invalid(v, &ctx.dotted("audience"), "audience is empty or has surrounding spaces".into(), "the audience your role's trust policy expects, e.g. \"sts.amazonaws.com\"");
                    } else if is_provider_name(&normalize_audience(a)) {
                        self.invalid(v, &ctx.dotted("audience"), "audience is a workload identity provider, the audience of an AWS → GCP profile, but this profile has role_arn (GCP → AWS)".into(), "for GCP → AWS use the audience the role's trust policy expects (default \"sts.amazonaws.com\"); for AWS → GCP remove role_arn");
                    }
                }
                audience
            }
            None => Some(DEFAULT_AWS_AUDIENCE.to_string()),
        };
        let iamcredentials_url = self.opt_url(ctx, "iamcredentials_url");
        let token_source = match ctx.keys.get("token_source") {
            Some((_, v)) => self
                .string(v, &ctx.dotted("token_source"))
                .and_then(|text| {
                    let spec = match crate::source::registry::parse(&text) {
                        Ok(spec) => spec,
                        Err(e) => {
                            self.invalid(
                                v,
                                &ctx.dotted("token_source"),
                                format!("token_source {text:?} is not a token source: {e}"),
                                &format!("use one of {}", crate::source::registry::spellings()),
                            );
                            return None;
                        }
                    };
                    // A relative `file:` path is relative to keyless.toml, not the working directory.
                    match (spec.name(), spec.argument()) {
                        ("file", Some(path)) => {
                            Some(spec.with_argument(self.resolve(path).display().to_string()))
                        }
                        _ => Some(spec),
                    }
                }),
            None => Some(TokenSourceSpec::new("metadata", None).expect("a valid spec")),
        };
        let session_name = ctx.keys.get("session_name").and_then(|(_, v)| {
            let s = self.string(v, &ctx.dotted("session_name"))?;
            SessionName::parse(&s)
                .map_err(|_| {
                    self.invalid(
                        v,
                        &ctx.dotted("session_name"),
                        format!("session_name {s:?} breaks STS's rules"),
                        "at least 2 characters of letters, digits and _+=,.@- (longer than 64 is shortened in the middle)",
                    )
                })
                .ok()
        });
        let duration = ctx
            .keys
            .get("duration")
            .and_then(|(_, v)| self.duration(v, &ctx.dotted("duration"), 900..=43200));
        let region = ctx
            .keys
            .get("region")
            .and_then(|(_, v)| self.region(v, &ctx.dotted("region")));
        let policy = ctx.keys.get("policy").and_then(|(_, v)| {
            let path = self.path(v, &ctx.dotted("policy"))?;
            let text = match read_session_policy(&path) {
                Ok(t) => t,
                Err(e) => {
                    self.invalid(
                        v,
                        &ctx.dotted("policy"),
                        format!("could not read the session policy {}: {e}", path.display()),
                        "policy is the path of a JSON session policy (relative to this file)",
                    );
                    return None;
                }
            };
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                self.invalid(
                    v,
                    &ctx.dotted("policy"),
                    format!("the session policy {} is not JSON: {e}", path.display()),
                    "fix the policy file, or remove `policy`",
                );
                return None;
            }
            Some(SessionPolicy {
                path,
                text: text.trim().to_string(),
            })
        });
        let mut policy_arns = Vec::new();
        for key in ["policy_arn", "policy_arns"] {
            if let Some((_, v)) = ctx.keys.get(key) {
                let dotted = ctx.dotted(key);
                for arn in self.string_list(v, &dotted).unwrap_or_default() {
                    if !arn.starts_with("arn:") || !arn.contains(":policy/") {
                        self.invalid(
                            v,
                            &dotted,
                            format!("{key}: {arn:?} is not a managed policy ARN"),
                            "e.g. \"arn:aws:iam::aws:policy/ReadOnlyAccess\"",
                        );
                    }
                    policy_arns.push(arn);
                }
                if policy_arns.len() > 10 {
                    self.invalid(
                        v,
                        &dotted,
                        format!(
                            "STS accepts at most 10 policy ARNs, got {}",
                            policy_arns.len()
                        ),
                        "combine them into fewer managed policies",
                    );
                }
            }
        }
        let sts_endpoint = self.opt_url(ctx, "sts_endpoint");
        let chain = self.role_chain(ctx, duration);
        if let Some((_, v)) = ctx.keys.get("no_cache") {
            self.boolean(v, &ctx.dotted("no_cache"));
        }

        // Channels.
        let mut channels = Vec::new();
        let auth_token_file = ctx
            .keys
            .get("auth_token_file")
            .and_then(|(_, v)| self.path(v, &ctx.dotted("auth_token_file")));
        match ctx.keys.get("ecs_listen") {
            Some((_, v)) => {
                if let Some(listen) = self.listen(v, ctx, "ecs_listen", claims) {
                    channels.push(Channel::EcsServer {
                        listen,
                        auth_token_file,
                    });
                }
            }
            None => {
                if let Some((k, _)) = ctx.keys.get("auth_token_file") {
                    self.problem(
                        ProblemKind::InvalidValue,
                        k.span(),
                        &ctx.dotted("auth_token_file"),
                        "auth_token_file protects the ECS-style endpoint, but there is no ecs_listen".into(),
                        Some("add ecs_listen = \"127.0.0.1:PORT\", or remove auth_token_file".into()),
                    );
                }
            }
        }
        if let Some((_, v)) = ctx.keys.get("imds_listen") {
            if let Some(listen) = self.listen(v, ctx, "imds_listen", claims) {
                channels.push(Channel::ImdsServer { listen });
            }
        }
        if let Some((_, v)) = ctx.keys.get("token_file") {
            if let Some(path) = self.path(v, &ctx.dotted("token_file")) {
                claims.push(Claim {
                    resource: ClaimedResource::File(path.clone()),
                    key: ctx.dotted("token_file"),
                    span: v.span(),
                });
                channels.push(Channel::TokenFile { path });
            }
        }
        let file = ctx.keys.get("credentials_file");
        let profile = ctx.keys.get("credentials_profile");
        if file.is_some() || profile.is_some() {
            let path = file.and_then(|(_, v)| self.path(v, &ctx.dotted("credentials_file")));
            let name = match profile {
                Some((_, v)) => self.string(v, &ctx.dotted("credentials_profile")),
                None => Some(ctx.name.to_string()),
            };
            if let Some(name) = name {
                let span = profile.or(file).map(|(_, v)| v.span()).unwrap_or_default();
                if let Err(e) = crate::deliver::aws_files::validate_profile_name(&name) {
                    self.problem(
                        ProblemKind::InvalidValue,
                        span.clone(),
                        &ctx.dotted("credentials_profile"),
                        format!("credentials_profile: {e}"),
                        Some("set credentials_profile to a plain name such as \"deploy\"".into()),
                    );
                }
                claims.push(Claim {
                    resource: ClaimedResource::CredentialsProfile(path.clone(), name.clone()),
                    key: ctx.dotted(if profile.is_some() {
                        "credentials_profile"
                    } else {
                        "credentials_file"
                    }),
                    span,
                });
                channels.push(Channel::CredentialsFile {
                    path: path.clone(),
                    profile: name,
                });
            }
        }
        let allowed_hosts = self.profile_allowed_hosts(ctx);
        self.require_channel(ctx, &channels, GCP_TO_AWS_CHANNELS);
        if self.problems.len() != before {
            return None;
        }
        Some(GcpToAwsProfile {
            role_arn: role_arn?,
            audience: audience?,
            token_source: token_source?,
            session_name,
            duration,
            region,
            policy,
            policy_arns,
            iamcredentials_url,
            sts_endpoint,
            chain: chain?,
            allowed_hosts,
            channels,
        })
    }

    /// `chain_roles`, `external_id`, `source_identity`, `tags` and `transitive_tag_keys`, each
    /// parsed as its flag is, then checked together ([`RoleChain::new`]).
    fn role_chain(
        &mut self,
        ctx: &ProfileCtx<'_, '_, '_>,
        duration: Option<u32>,
    ) -> Option<RoleChain> {
        let before = self.problems.len();
        let mut roles = Vec::new();
        for key in ["chain_role", "chain_roles"] {
            let Some((_, v)) = ctx.keys.get(key) else {
                continue;
            };
            let dotted = ctx.dotted(key);
            for arn in self.string_list(v, &dotted).unwrap_or_default() {
                match RoleArn::parse(&arn) {
                    Ok(arn) => roles.push(arn),
                    Err(e) => self.invalid(
                        v,
                        &dotted,
                        format!("{key}: {e}"),
                        "each chained role is an ARN, e.g. \"arn:aws:iam::210987654321:role/partner-access\"",
                    ),
                }
            }
        }
        let external_id = self.parsed(ctx, "external_id", ExternalId::parse);
        let source_identity = self.parsed(ctx, "source_identity", SourceIdentity::parse);
        let mut tags = Vec::new();
        for key in ["tag", "tags"] {
            let Some((_, v)) = ctx.keys.get(key) else {
                continue;
            };
            let dotted = ctx.dotted(key);
            let parsed: Vec<Result<SessionTag, SpecError>> = match v.get_ref() {
                DeValue::Table(table) => {
                    let mut parsed = Vec::new();
                    for (k, value) in table.iter() {
                        match value.get_ref() {
                            DeValue::String(text) => {
                                parsed.push(SessionTag::new(k.get_ref(), text))
                            }
                            _ => self.wrong_type(value, &dotted, "a string"),
                        }
                    }
                    parsed
                }
                _ => self
                    .string_list(v, &dotted)
                    .unwrap_or_default()
                    .iter()
                    .map(|t| SessionTag::parse(t))
                    .collect(),
            };
            for tag in parsed {
                match tag {
                    Ok(tag) => tags.push(tag),
                    Err(e) => self.invalid(
                        v,
                        &dotted,
                        format!("{key}: {}", first_line(&e.to_string())),
                        "tags = { team = \"payments\" }: keys of 1 to 128 and values of at most 256 letters, digits, spaces and _.:/=+-@",
                    ),
                }
            }
        }
        let mut transitive = Vec::new();
        for key in ["transitive_tag_key", "transitive_tag_keys"] {
            let Some((_, v)) = ctx.keys.get(key) else {
                continue;
            };
            let dotted = ctx.dotted(key);
            for text in self.string_list(v, &dotted).unwrap_or_default() {
                match TagKey::parse(&text) {
                    Ok(k) => transitive.push(k),
                    Err(e) => self.invalid(
                        v,
                        &dotted,
                        format!("{key}: {}", first_line(&e.to_string())),
                        "a key of one of the tags",
                    ),
                }
            }
        }
        if self.problems.len() != before {
            return None;
        }
        match RoleChain::new(
            roles,
            external_id,
            source_identity,
            tags,
            transitive,
            duration,
        ) {
            Ok(chain) => Some(chain),
            Err(e) => {
                let (problem, hint) = match &e {
                    SpecError::InvalidRoleChain { problem, hint } => {
                        (problem.clone(), hint.to_string())
                    }
                    other => (other.to_string(), String::new()),
                };
                // Name the file's keys rather than the flags.
                let problem = problem
                    .replace("--chain-role", "chain_roles")
                    .replace("--duration ", "duration = ")
                    .replace("--external-id", "external_id")
                    .replace("--source-identity", "source_identity")
                    .replace("--transitive-tag-key", "transitive_tag_keys")
                    .replace("--tag", "tags");
                let at = ["chain_roles", "chain_role", "duration", "tags", "tag"]
                    .iter()
                    .find_map(|k| ctx.keys.get(k).map(|(key, _)| (k, key.span())))
                    .or_else(|| {
                        ["external_id", "source_identity", "transitive_tag_keys"]
                            .iter()
                            .find_map(|k| ctx.keys.get(k).map(|(key, _)| (k, key.span())))
                    });
                let (key, span) = at.unwrap_or((&"chain_roles", ctx.header.clone()));
                self.problem(
                    ProblemKind::InvalidValue,
                    span,
                    &ctx.dotted(key),
                    problem,
                    Some(hint),
                );
                None
            }
        }
    }

    /// A string key parsed with `parse`; a problem naming the key when it does not parse.
    fn parsed<T>(
        &mut self,
        ctx: &ProfileCtx<'_, '_, '_>,
        key: &str,
        parse: fn(&str) -> Result<T, SpecError>,
    ) -> Option<T> {
        let (_, v) = ctx.keys.get(key)?;
        let dotted = ctx.dotted(key);
        let text = self.string(v, &dotted)?;
        match parse(&text) {
            Ok(value) => Some(value),
            Err(e) => {
                let message = e.to_string();
                let (message, hint) = message
                    .split_once("\n  hint: ")
                    .map_or((message.as_str(), ""), |(m, h)| (m, h));
                self.invalid(v, &dotted, format!("{key}: {message}"), hint);
                None
            }
        }
    }

    fn aws_to_gcp(
        &mut self,
        ctx: &mut ProfileCtx<'_, '_, '_>,
        claims: &mut Vec<Claim>,
    ) -> Option<AwsToGcpProfile> {
        let before = self.problems.len();
        let audience = match ctx.keys.get("audience") {
            Some((_, v)) => self.string(v, &ctx.dotted("audience")).and_then(|a| {
                let normalized = normalize_audience(&a);
                if is_provider_name(&normalized) {
                    Some(normalized)
                } else {
                    self.invalid(v, &ctx.dotted("audience"), format!("audience {a:?} is not a workload identity provider"), "//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER (`gcloud iam workload-identity-pools providers describe PROVIDER --workload-identity-pool POOL --location global --format 'value(name)'` prints it)");
                    None
                }
            }),
            None => {
                self.problem(
                    ProblemKind::MissingKey,
                    ctx.header.clone(),
                    &ctx.dotted("audience"),
                    format!("[{}] has AWS → GCP keys but no audience", ctx.table_key),
                    Some("add audience = \"//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER\"".into()),
                );
                None
            }
        };
        let service_account = ctx.keys.get("service_account").and_then(|(_, v)| {
            let sa = self.string(v, &ctx.dotted("service_account"))?;
            if sa.contains('@') && !sa.contains(char::is_whitespace) {
                Some(sa)
            } else {
                self.invalid(
                    v,
                    &ctx.dotted("service_account"),
                    format!("service_account {sa:?} is not an email"),
                    "e.g. \"NAME@PROJECT.iam.gserviceaccount.com\"",
                );
                None
            }
        });
        let scopes = match ctx.keys.get("scopes") {
            Some((_, v)) => self
                .string_list(v, &ctx.dotted("scopes"))
                .unwrap_or_default(),
            None => vec![CLOUD_PLATFORM_SCOPE.to_string()],
        };
        let lifetime = ctx
            .keys
            .get("lifetime")
            .and_then(|(_, v)| self.duration(v, &ctx.dotted("lifetime"), 1..=43200));
        let delegates = match ctx.keys.get("delegates") {
            Some((_, v)) => self
                .string_list(v, &ctx.dotted("delegates"))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        if service_account.is_none() && !ctx.keys.contains_key("service_account") {
            for key in ["lifetime", "delegates"] {
                if let Some((k, _)) = ctx.keys.get(key) {
                    self.problem(
                        ProblemKind::InvalidValue,
                        k.span(),
                        &ctx.dotted(key),
                        format!("{key} applies to service account impersonation, but [{}] has no service_account", ctx.table_key),
                        Some(format!("add service_account = \"EMAIL\", or remove {key}")),
                    );
                }
            }
        }
        let aws_profile = ctx
            .keys
            .get("aws_profile")
            .and_then(|(_, v)| self.string(v, &ctx.dotted("aws_profile")));
        let aws_region = ctx
            .keys
            .get("aws_region")
            .and_then(|(_, v)| self.region(v, &ctx.dotted("aws_region")));
        let assume_role = ctx.keys.get("assume_role").and_then(|(_, v)| {
            let arn = self.string(v, &ctx.dotted("assume_role"))?;
            match RoleArn::parse(&arn) {
                Ok(_) => Some(arn),
                Err(e) => {
                    self.invalid(
                        v,
                        &ctx.dotted("assume_role"),
                        format!("assume_role: {e}"),
                        "the ARN of the AWS role to assume before federating",
                    );
                    None
                }
            }
        });
        let token_url = self.opt_url(ctx, "token_url");
        let iamcredentials_url = self.opt_url(ctx, "iamcredentials_url");
        let token_source = match ctx.keys.get("token_source") {
            Some((_, v)) => self
                .string(v, &ctx.dotted("token_source"))
                .and_then(|text| match parse_token_source(&text) {
                    // A relative `file:` path is relative to keyless.toml.
                    Ok(spec) => match (spec.name(), spec.argument()) {
                        ("file", Some(path)) => {
                            Some(spec.with_argument(self.resolve(path).display().to_string()))
                        }
                        _ => Some(spec),
                    },
                    Err(e) => {
                        self.invalid(
                            v,
                            &ctx.dotted("token_source"),
                            format!("token_source {text:?} is not a token source: {e}"),
                            &format!(
                                "use {AWS_TOKEN_SOURCE} (the default) or one of {}",
                                crate::source::registry::spellings()
                            ),
                        );
                        None
                    }
                }),
            None => Some(TokenSourceSpec::new(AWS_TOKEN_SOURCE, None).expect("a valid spec")),
        };
        let token_audience = ctx
            .keys
            .get("token_audience")
            .and_then(|(_, v)| self.string(v, &ctx.dotted("token_audience")));
        if let Some(spec) = token_source.as_ref() {
            let aws_keys: &[&str] = if spec.name() == AWS_TOKEN_SOURCE {
                &["token_audience"]
            } else {
                &["aws_profile", "aws_region", "assume_role"]
            };
            for key in aws_keys {
                if let Some((k, _)) = ctx.keys.get(key) {
                    self.problem(
                        ProblemKind::InvalidValue,
                        k.span(),
                        &ctx.dotted(key),
                        format!("{key} does not apply to token_source = {:?}", spec.to_string()),
                        Some(match spec.name() {
                            AWS_TOKEN_SOURCE => "token_audience is the audience of a JWT source's token; the AWS identity is bound to audience itself: remove it".into(),
                            _ => format!("{key} applies to token_source = \"aws\" (the AWS identity): remove it"),
                        }),
                    );
                }
            }
        }
        let mut channels = Vec::new();
        if let Some((_, v)) = ctx.keys.get("gce_metadata_listen") {
            if let Some(listen) = self.listen(v, ctx, "gce_metadata_listen", claims) {
                channels.push(Channel::GceMetadataServer { listen });
            }
        }
        let allowed_hosts = self.profile_allowed_hosts(ctx);
        self.require_channel(ctx, &channels, AWS_TO_GCP_CHANNELS);
        if self.problems.len() != before {
            return None;
        }
        Some(AwsToGcpProfile {
            audience: audience?,
            token_source: token_source?,
            token_audience,
            service_account,
            scopes,
            lifetime,
            delegates,
            aws_profile,
            aws_region,
            assume_role,
            token_url,
            iamcredentials_url,
            allowed_hosts,
            channels,
        })
    }

    fn require_channel(
        &mut self,
        ctx: &ProfileCtx<'_, '_, '_>,
        channels: &[Channel],
        keys: &[&str],
    ) {
        let asked = keys
            .iter()
            .any(|k| *k != "auth_token_file" && ctx.keys.contains_key(k));
        if channels.is_empty() && !asked && !self.reader.one_shot {
            let offered: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| *k != "auth_token_file")
                .collect();
            self.problem(
                ProblemKind::NoChannel,
                ctx.header.clone(),
                ctx.table_key,
                format!("[{}] delivers its credentials nowhere", ctx.table_key),
                Some(format!("add at least one of {}", offered.join(", "))),
            );
        }
    }

    fn listen(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        ctx: &ProfileCtx<'_, '_, '_>,
        key: &str,
        claims: &mut Vec<Claim>,
    ) -> Option<SocketAddr> {
        let dotted = ctx.dotted(key);
        let addr = self.addr(value, &dotted)?;
        claims.push(Claim {
            resource: ClaimedResource::Listen(addr),
            key: dotted,
            span: value.span(),
        });
        Some(addr)
    }

    fn invalid(&mut self, value: &Spanned<DeValue<'_>>, key: &str, message: String, hint: &str) {
        self.problem(
            ProblemKind::InvalidValue,
            value.span(),
            key,
            message,
            Some(hint.to_string()),
        );
    }

    fn wrong_type(&mut self, value: &Spanned<DeValue<'_>>, key: &str, expected: &str) {
        let last = key.rsplit('.').next().unwrap_or(key);
        self.problem(
            ProblemKind::WrongType,
            value.span(),
            key,
            format!(
                "`{last}` must be {expected}, not a{} {}",
                if value.get_ref().type_str().starts_with(['a', 'i']) {
                    "n"
                } else {
                    ""
                },
                value.get_ref().type_str()
            ),
            Some(format!("write {last} = {}", example_of(expected))),
        );
    }

    fn string(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(value, key, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(value, key, "a boolean");
                None
            }
        }
    }

    fn table<'a, 'i>(
        &mut self,
        value: &'a Spanned<DeValue<'i>>,
        key: &str,
    ) -> Option<&'a DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(value, key, "a table");
                None
            }
        }
    }

    /// A duration: seconds as an integer (`3600`) or a string in the flags' grammar (`"1h"`,
    /// `"90s"`, `"15m"`, `"1h30m"`; see [`crate::duration`]), inside `range` seconds.
    fn duration(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u32> {
        let text = match value.get_ref() {
            DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n.to_string(),
                // Negative or too large: out of any range.
                Err(_) => i.as_str().to_string(),
            },
            DeValue::String(s) => s.to_string(),
            _ => {
                self.wrong_type(value, key, "a duration");
                return None;
            }
        };
        let last = key.rsplit('.').next().unwrap_or(key);
        match Seconds::parser_within(range.clone())(&text) {
            Ok(d) => Some(d.as_secs_u32()),
            Err(DurationError::Malformed { .. }) => {
                self.invalid(
                    value,
                    key,
                    format!("`{last}` is {text:?}, not a duration"),
                    "write seconds (3600) or a number with a unit: \"90s\", \"15m\", \"1h\", \"1h30m\"",
                );
                None
            }
            Err(DurationError::OutOfRange { .. }) => {
                let (min, max) = (Seconds::new(*range.start()), Seconds::new(*range.end()));
                self.invalid(
                    value,
                    key,
                    format!(
                        "`{last}` is {text}, outside {}..={} seconds",
                        range.start(),
                        range.end()
                    ),
                    &format!("pick a value from {min} to {max}"),
                );
                None
            }
        }
    }

    /// An array of strings, or one string of comma-separated values (as the flags take them).
    fn string_list(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<Vec<String>> {
        match value.get_ref() {
            DeValue::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(s.to_string()),
                        _ => {
                            self.wrong_type(item, key, "an array of strings");
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.wrong_type(value, key, "an array of strings");
                None
            }
        }
    }

    /// `allowed_hosts`: names or addresses, each parsed as `--allowed-host` parses it.
    fn allowed_hosts(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Vec<AllowedHost> {
        let mut hosts = Vec::new();
        for text in self.string_list(value, key).unwrap_or_default() {
            match text.parse::<AllowedHost>() {
                Ok(host) => hosts.push(host),
                Err(e) => {
                    let message = e.to_string();
                    let (message, hint) = message
                        .split_once("\n  hint: ")
                        .map_or((message.as_str(), None), |(m, h)| (m, Some(h)));
                    self.invalid(
                        value,
                        key,
                        format!("{key}: {message}"),
                        hint.unwrap_or("e.g. allowed_hosts = [\"host.docker.internal\"]"),
                    );
                }
            }
        }
        hosts
    }

    fn profile_allowed_hosts(&mut self, ctx: &ProfileCtx<'_, '_, '_>) -> Vec<AllowedHost> {
        match ctx.keys.get("allowed_hosts") {
            Some((_, v)) => self.allowed_hosts(v, &ctx.dotted("allowed_hosts")),
            None => Vec::new(),
        }
    }

    fn addr(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<SocketAddr> {
        let text = self.string(value, key)?;
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.invalid(
                    value,
                    key,
                    format!("{text:?} is not an IP address and port"),
                    "e.g. \"127.0.0.1:9911\" (names such as localhost are not accepted; port 0 picks any free port)",
                );
                None
            }
        }
    }

    fn path(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<PathBuf> {
        let text = self.string(value, key)?;
        if text.trim().is_empty() {
            self.invalid(
                value,
                key,
                format!("`{}` is empty", key.rsplit('.').next().unwrap_or(key)),
                "give a file path (relative paths are relative to this file)",
            );
            return None;
        }
        Some(self.resolve(&text))
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    fn region(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<Region> {
        let text = self.string(value, key)?;
        match Region::parse(&text) {
            Ok(region) => Some(region),
            Err(SpecError::InvalidRegion { why, .. }) => {
                self.invalid(
                    value,
                    key,
                    format!("{text:?} is not an AWS region: {why}"),
                    "e.g. \"us-east-1\"",
                );
                None
            }
            Err(other) => {
                self.invalid(value, key, other.to_string(), "e.g. \"us-east-1\"");
                None
            }
        }
    }

    fn opt_url(&mut self, ctx: &ProfileCtx<'_, '_, '_>, key: &str) -> Option<UpstreamUrl> {
        let (_, value) = ctx.keys.get(key)?;
        let dotted = ctx.dotted(key);
        let text = self.string(value, &dotted)?;
        match UpstreamUrl::parse(&text) {
            Ok(url) => Some(url),
            Err(e) => {
                let why = match e {
                    SpecError::InvalidEndpoint { why, .. } => why,
                    _ => "it is not a usable endpoint",
                };
                self.invalid(
                    value,
                    &dotted,
                    format!("{key} {text:?} is not a usable endpoint: {why}"),
                    "use \"https://...\"; plain http:// only to 127.0.0.1, [::1] or localhost (tokens are sent there)",
                );
                None
            }
        }
    }
}

/// The first line of a message (the part before its hint).
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

struct ProfileCtx<'n, 'a, 'i> {
    name: &'n str,
    table_key: &'n str,
    header: Range<usize>,
    keys: BTreeMap<&'static str, Entry<'a, 'i>>,
}

impl ProfileCtx<'_, '_, '_> {
    fn dotted(&self, key: &str) -> String {
        format!("{}.{key}", self.table_key)
    }
}

/// The most of a session policy file keyless reads: AWS accepts policies of at most 2,048
/// characters, so anything much larger is a mistake (a wrong path, a device such as /dev/zero
/// that would never end).
const MAX_SESSION_POLICY_BYTES: u64 = crate::private_file::MAX_SMALL_FILE_BYTES;

fn read_session_policy(path: &Path) -> std::io::Result<String> {
    crate::private_file::read_capped(path, MAX_SESSION_POLICY_BYTES)
}

/// Entries in document order, so problems are reported top to bottom.
fn sorted<'a, 'i>(table: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

fn conflicts(a: &ClaimedResource, b: &ClaimedResource) -> bool {
    match (a, b) {
        (ClaimedResource::Listen(x), ClaimedResource::Listen(y)) => {
            x.port() != 0
                && x.port() == y.port()
                && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
        }
        (ClaimedResource::File(x), ClaimedResource::File(y)) => x == y,
        (ClaimedResource::File(x), ClaimedResource::CredentialsProfile(Some(y), _))
        | (ClaimedResource::CredentialsProfile(Some(y), _), ClaimedResource::File(x)) => x == y,
        (
            ClaimedResource::CredentialsProfile(f1, p1),
            ClaimedResource::CredentialsProfile(f2, p2),
        ) => f1 == f2 && p1 == p2,
        _ => false,
    }
}

/// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`
fn is_provider_name(audience: &str) -> bool {
    let Some(rest) = audience.strip_prefix("//iam.googleapis.com/projects/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let id = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    matches!(
        parts.as_slice(),
        [number, "locations", "global", "workloadIdentityPools", pool, "providers", provider]
            if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) && id(pool) && id(provider)
    )
}

fn example_of(expected: &str) -> &'static str {
    match expected {
        "a string" => "\"...\"",
        "a boolean" => "true",
        "an integer" => "3600",
        "a duration" => "\"1h\" (or 3600, in seconds)",
        "an array of strings" => "[\"...\", \"...\"]",
        _ => "{ ... } (or a [section])",
    }
}

/// The closest known key, if it is close enough to be a typo.
fn suggestion<'k>(unknown: &str, known: impl Iterator<Item = &'k str>) -> Option<String> {
    known
        .map(|k| (edit_distance(unknown, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
metrics_listen = "127.0.0.1:9090"
log_format = "json"

[profile.deploy]            # GCP -> AWS (has role_arn)
role_arn = "arn:aws:iam::123456789012:role/DeploymentRole"
audience = "sts.amazonaws.com"
token_source = "metadata"
ecs_listen = "127.0.0.1:9911"
token_file = "/var/run/keyless/deploy.jwt"

[profile.copycat]           # AWS -> GCP (has audience //iam.googleapis.com/... and no role_arn)
audience = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws"
service_account = "copycat@proj.iam.gserviceaccount.com"
gce_metadata_listen = "127.0.0.1:9912"
"#;

    fn parse_at(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/etc/keyless/keyless.toml"))
    }

    /// The single problem of `text`; panics (showing the message) if there is not exactly one.
    fn problem(text: &str) -> (Problem, String) {
        let error = parse_at(text).expect_err("the file is invalid");
        let message = error.to_string();
        let problems = error.problems();
        assert_eq!(problems.len(), 1, "{message}");
        (problems[0].clone(), message)
    }

    fn assert_at(p: &Problem, kind: ProblemKind, key: &str, line: usize, column: usize) {
        assert_eq!(
            (p.kind, p.key.as_str(), p.line, p.column),
            (kind, key, line, column),
            "{p:?}"
        );
    }

    /// The chaining keys become the profile's chain; AWS's one-hour limit and a bad value are
    /// problems at the key, in the file's words.
    #[test]
    fn chain_keys_build_the_role_chain_and_its_limits_are_problems() {
        let base = "[profile.p]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"\n\
                    chain_roles = [\"arn:aws:iam::210987654321:role/B\"]\n";
        let text = format!(
            "{base}external_id = \"partner-1\"\nsource_identity = \"alice\"\n\
             tags = {{ team = \"payments\", \"Cost Center\" = \"42\" }}\ntransitive_tag_keys = [\"team\"]\n"
        );
        let config = parse_at(&text).unwrap();
        let ProfileConfig::GcpToAws(p) = &config.profiles["p"] else {
            panic!("GCP → AWS")
        };
        assert_eq!(
            p.final_role_arn().as_str(),
            "arn:aws:iam::210987654321:role/B"
        );
        let parts = p.chain.cache_parts().join("|");
        assert!(parts.contains("team=payments"), "{parts}");
        assert!(parts.contains("Cost Center=42"), "{parts}");
        assert!(parts.contains("|alice|"), "{parts}");
        assert_eq!(p.role_profile().unwrap().final_role().name(), "B");

        let (p, message) = problem(&format!("{base}duration = \"2h\"\n"));
        assert_eq!(p.kind, ProblemKind::InvalidValue);
        assert_eq!(p.key, "profile.p.chain_roles");
        assert!(message.contains("1 hour session limit"), "{message}");
        assert!(message.contains("duration = 7200s"), "{message}");

        let (p, message) = problem(&format!("{base}external_id = \"x\"\n"));
        assert_eq!(p.key, "profile.p.external_id");
        assert!(message.contains("is not an external ID"), "{message}");

        let text = "[profile.p]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"\ntags = { team = \"x\" }\n";
        let (_, message) = problem(text);
        assert!(
            message.contains("tags applies to the roles of chain_roles"),
            "{message}"
        );
    }

    #[test]
    fn defaults_fill_what_each_profile_leaves_out_for_its_own_direction() {
        let text = "[defaults]\nsts_endpoint = \"http://127.0.0.1:5000\"\nregion = \"eu-west-1\"\n\
                    service_account = \"sa@p.iam.gserviceaccount.com\"\nfail_on = \"medium\"\n\n\
                    [profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"\n\n\
                    [profile.b]\nrole_arn = \"arn:aws:iam::123456789012:role/B\"\nregion = \"us-east-2\"\ntoken_file = \"b.jwt\"\n";
        let config = parse_at(text).unwrap();
        let ProfileConfig::GcpToAws(a) = &config.profiles["a"] else {
            panic!("a is GCP → AWS");
        };
        let ProfileConfig::GcpToAws(b) = &config.profiles["b"] else {
            panic!("b is GCP → AWS");
        };
        assert_eq!(
            a.sts_endpoint.as_ref().map(UpstreamUrl::as_str),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(a.region.as_ref().map(Region::as_str), Some("eu-west-1"));
        assert_eq!(
            b.region.as_ref().map(Region::as_str),
            Some("us-east-2"),
            "the profile's own value wins"
        );
    }

    /// AWS → GCP profiles take `token_source` (default `aws`) and `token_audience`; a JWT
    /// source's `file:` path is relative to the file, and AWS-only keys do not go with it.
    #[test]
    fn aws_to_gcp_profiles_name_their_token_source() {
        let provider =
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";
        let text = format!(
            "[profile.ci]\naudience = \"{provider}\"\ntoken_source = \"file:tokens/ci.jwt\"\n\
             token_audience = \"gcp\"\ngce_metadata_listen = \"127.0.0.1:9912\"\n\n\
             [profile.aws]\naudience = \"{provider}\"\ngce_metadata_listen = \"127.0.0.1:9913\"\n"
        );
        let config = parse_at(&text).unwrap();
        let ProfileConfig::AwsToGcp(ci) = &config.profiles["ci"] else {
            panic!("ci is AWS → GCP");
        };
        assert_eq!(
            ci.token_source.to_string(),
            "file:/etc/keyless/tokens/ci.jwt"
        );
        assert_eq!(ci.token_audience.as_deref(), Some("gcp"));
        let ProfileConfig::AwsToGcp(aws) = &config.profiles["aws"] else {
            panic!("aws is AWS → GCP");
        };
        assert_eq!(aws.token_source.to_string(), "aws");

        let (p, message) = problem(&format!(
            "[profile.ci]\naudience = \"{provider}\"\ntoken_source = \"file:/t\"\n\
             aws_profile = \"x\"\ngce_metadata_listen = \"127.0.0.1:9912\"\n"
        ));
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.ci.aws_profile",
            4,
            1,
        );
        assert!(
            message.contains("applies to token_source = \"aws\""),
            "{message}"
        );
        let (p, message) = problem(&format!(
            "[profile.ci]\naudience = \"{provider}\"\ntoken_source = \"gcloud\"\n\
             gce_metadata_listen = \"127.0.0.1:9912\"\n"
        ));
        assert_eq!(p.key, "profile.ci.token_source", "{message}");
        assert!(
            message.contains("use aws (the default) or one of metadata"),
            "{message}"
        );
    }

    /// `region` and `aws_region` become STS host names: only a host label passes.
    #[test]
    fn a_region_that_would_move_the_sts_host_is_a_problem() {
        let gcp_to_aws = "role_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"";
        let aws_to_gcp = "audience = \"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x\"\ngce_metadata_listen = \"127.0.0.1:9912\"";
        for (key, profile) in [("region", gcp_to_aws), ("aws_region", aws_to_gcp)] {
            let (p, message) = problem(&format!(
                "[defaults]\n{key} = \"x.evil.example/#\"\n\n[profile.a]\n{profile}\n"
            ));
            assert_eq!(
                (p.kind, p.key.as_str(), p.line),
                (
                    ProblemKind::InvalidValue,
                    format!("profile.a.{key}").as_str(),
                    2
                ),
                "{message}"
            );
            assert!(message.contains("is not an AWS region"), "{message}");
        }
    }

    #[test]
    fn defaults_keys_are_checked_against_the_flags_when_known() {
        let reader = ReadFor {
            one_shot: true,
            known_flags: Some(vec!["sts_endpoint".into(), "fail_on".into()]),
            allow_remote: false,
        };
        let err = parse_for(
            "[defaults]\nsts_endpont = \"x\"\n",
            Path::new("k.toml"),
            &reader,
        )
        .unwrap_err();
        let p = &err.problems()[0];
        assert_at(p, ProblemKind::UnknownKey, "defaults.sts_endpont", 2, 1);
        assert!(
            err.to_string().contains("did you mean `sts_endpoint`"),
            "{err}"
        );
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

    #[test]
    fn defaults_relative_paths_and_flag_spellings() {
        let config = parse_at(
            r#"
[profile.ci]
role_arn = "arn:aws:iam::123456789012:role/ci"
token_source = "file:tokens/google.jwt"
token_file = "ci.jwt"
credentials_profile = "ci-creds"
policy_arn = "arn:aws:iam::aws:policy/ReadOnlyAccess"
duration = 900
"#,
        )
        .unwrap();
        let ProfileConfig::GcpToAws(ci) = &config.profiles["ci"] else {
            panic!()
        };
        assert_eq!(ci.audience, DEFAULT_AWS_AUDIENCE);
        assert_eq!(
            ci.token_source.to_string(),
            "file:/etc/keyless/tokens/google.jwt"
        );
        assert_eq!(
            ci.policy_arns,
            vec!["arn:aws:iam::aws:policy/ReadOnlyAccess"]
        );
        assert_eq!(ci.duration, Some(900));
        assert!(ci.channels.contains(&Channel::TokenFile {
            path: "/etc/keyless/ci.jwt".into()
        }));
        assert!(ci.channels.contains(&Channel::CredentialsFile {
            path: None,
            profile: "ci-creds".into()
        }));
    }

    #[test]
    fn a_changed_key_or_policy_file_makes_the_profile_unequal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyless.toml");
        std::fs::write(
            dir.path().join("policy.json"),
            r#"{"Version":"2012-10-17"}"#,
        )
        .unwrap();
        let text = |session: &str| {
            format!(
                "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\ntoken_file = \"a.jwt\"\n\
                 [profile.b]\nrole_arn = \"arn:aws:iam::123456789012:role/b\"\nsession_name = \"{session}\"\n\
                 policy = \"policy.json\"\ntoken_file = \"b.jwt\"\n"
            )
        };
        let first = parse(&text("one"), &path).unwrap();
        let second = parse(&text("two"), &path).unwrap();
        assert_eq!(first.profiles["a"], second.profiles["a"]);
        assert_ne!(first.profiles["b"], second.profiles["b"]);
        std::fs::write(
            dir.path().join("policy.json"),
            r#"{"Version":"2012-10-17","Statement":[]}"#,
        )
        .unwrap();
        let third = parse(&text("one"), &path).unwrap();
        assert_ne!(
            first.profiles["b"], third.profiles["b"],
            "policy content counts"
        );
    }

    /// Found reviewing what the keyless_toml fuzz target can reach: a policy path naming a
    /// device that never ends (or a huge file) made the load read forever.
    #[test]
    fn a_policy_file_that_never_ends_is_refused() {
        let text = "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\n\
                    policy = \"/dev/zero\"\ntoken_file = \"a.jwt\"\n";
        let (p, _) = problem(text);
        assert_eq!(p.kind, ProblemKind::InvalidValue);
        assert!(p.message.contains("larger than 64 KiB"), "{}", p.message);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_place_and_the_likely_key() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nsesion_name = \"x\"\n",
        );
        assert_at(
            &p,
            ProblemKind::UnknownKey,
            "profile.deploy.sesion_name",
            4,
            1,
        );
        assert!(
            message.contains(
                "/etc/keyless/keyless.toml:4:1: unknown key `sesion_name` in [profile.deploy]"
            ),
            "{message}"
        );
        assert!(
            message.contains("did you mean `session_name`?"),
            "{message}"
        );
    }

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

    #[test]
    fn a_flag_name_that_is_a_channel_here_says_which_key_to_use() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nlisten = \"127.0.0.1:1\"\n",
        );
        assert_at(&p, ProblemKind::UnknownKey, "profile.deploy.listen", 4, 1);
        assert!(message.contains("ecs_listen, imds_listen"), "{message}");
    }

    #[test]
    fn a_profile_key_at_the_top_level_says_where_it_belongs() {
        let error = parse_at("role_arn = \"x\"\n").unwrap_err().to_string();
        assert!(
            error.contains("keyless.toml:1:1: unknown key `role_arn` at the top level"),
            "{error}"
        );
        assert!(error.contains("under a [profile.NAME] table"), "{error}");
    }

    #[test]
    fn a_wrong_type_names_the_expected_one() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = true\n",
        );
        assert_at(&p, ProblemKind::WrongType, "profile.deploy.duration", 4, 12);
        assert!(
            message.contains("`duration` must be a duration, not a boolean"),
            "{message}"
        );
        let (p, _) = problem("metrics_listen = 9090\n[profile.d]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\n");
        assert_at(&p, ProblemKind::WrongType, "metrics_listen", 1, 18);
    }

    /// `duration` and `lifetime` take the flags' grammar as a string, and plain seconds.
    #[test]
    fn durations_take_units_as_the_flags_do() {
        let config = parse_at(
            "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = \"1h30m\"\n\
             [profile.g]\naudience = \"projects/1/locations/global/workloadIdentityPools/p/providers/x\"\n\
             service_account = \"sa@p.iam.gserviceaccount.com\"\nlifetime = \"15m\"\ngce_metadata_listen = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let (ProfileConfig::GcpToAws(a), ProfileConfig::AwsToGcp(g)) =
            (&config.profiles["a"], &config.profiles["g"])
        else {
            panic!("{config:?}")
        };
        assert_eq!(a.duration, Some(5400));
        assert_eq!(g.lifetime, Some(900));
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = \"1 hour\"\n",
        );
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.deploy.duration",
            4,
            12,
        );
        assert!(message.contains("\"90s\", \"15m\", \"1h\""), "{message}");
        let (_, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = \"10m\"\n",
        );
        assert!(
            message.contains("900..=43200") && message.contains("15m to 12h"),
            "{message}"
        );
    }

    #[test]
    fn out_of_range_values_give_the_range() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = 60\n",
        );
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.deploy.duration",
            4,
            12,
        );
        assert!(message.contains("900..=43200"), "{message}");
    }

    #[test]
    fn a_profile_of_neither_direction_points_at_its_header() {
        let (p, message) = problem("\n[profile.lost]\naudience = \"sts.amazonaws.com\"\n");
        assert_at(&p, ProblemKind::NoDirection, "profile.lost", 2, 10);
        assert!(message.contains("add role_arn"), "{message}");
    }

    #[test]
    fn a_profile_mixing_directions_names_the_foreign_key() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nservice_account = \"sa@p.iam.gserviceaccount.com\"\n",
        );
        assert_at(
            &p,
            ProblemKind::MixedDirections,
            "profile.deploy.service_account",
            4,
            1,
        );
        assert!(message.contains("split it into two profiles"), "{message}");
    }

    #[test]
    fn a_channel_of_the_other_direction_is_refused() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ngce_metadata_listen = \"127.0.0.1:9912\"\n",
        );
        assert_at(
            &p,
            ProblemKind::WrongDirectionChannel,
            "profile.deploy.gce_metadata_listen",
            3,
            1,
        );
        assert!(message.contains("GCP → AWS (it has role_arn)"), "{message}");
        assert!(message.contains("ecs_listen"), "{message}");
    }

    #[test]
    fn a_non_loopback_endpoint_needs_allow_remote() {
        let text = r#"metrics_listen = "0.0.0.0:9090"
[profile.a]
role_arn = "arn:aws:iam::123456789012:role/a"
imds_listen = "0.0.0.0:9911"
"#;
        let (p, message) = problem(text);
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.a.imds_listen",
            4,
            15,
        );
        assert!(message.contains("not a loopback address"), "{message}");
        assert!(message.contains("allow_remote = true"), "{message}");
        assert!(message.contains("--allow-remote"), "{message}");
        // The file's key or the flag accepts it; /metrics alone never needs it.
        let config = parse_at(&format!("allow_remote = true\n{text}")).unwrap();
        assert!(config.allow_remote);
        let reader = ReadFor {
            allow_remote: true,
            ..ReadFor::default()
        };
        let config = parse_for(text, Path::new("/etc/keyless/keyless.toml"), &reader).unwrap();
        assert!(!config.allow_remote);
        parse_at(&text.replace("0.0.0.0:9911", "127.0.0.1:9911")).unwrap();
    }

    #[test]
    fn allowed_hosts_at_the_top_and_per_profile_are_parsed_and_placed() {
        let text = r#"allowed_hosts = ["Host.Docker.Internal", "10.0.0.5"]
[profile.a]
role_arn = "arn:aws:iam::123456789012:role/a"
imds_listen = "127.0.0.1:9911"
allowed_hosts = "keyless.internal"
[profile.b]
audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x"
gce_metadata_listen = "127.0.0.1:9912"
"#;
        let config = parse_at(text).unwrap();
        let names = |hosts: &[AllowedHost]| hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(&config.allowed_hosts),
            ["host.docker.internal", "10.0.0.5"]
        );
        assert_eq!(
            names(config.profiles["a"].allowed_hosts()),
            ["keyless.internal"]
        );
        assert!(config.profiles["b"].allowed_hosts().is_empty());
        let (p, message) = problem(&text.replace("\"keyless.internal\"", "[\"*.internal\"]"));
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.a.allowed_hosts",
            5,
            17,
        );
        assert!(message.contains("wildcard"), "{message}");
        let (p, message) = problem(&text.replace("\"10.0.0.5\"", "\"a.b:80\""));
        assert_at(&p, ProblemKind::InvalidValue, "allowed_hosts", 1, 17);
        assert!(message.contains("has a port"), "{message}");
    }

    #[test]
    fn duplicate_listen_addresses_across_profiles_name_both_places() {
        let text = r#"allow_remote = true
[profile.a]
role_arn = "arn:aws:iam::123456789012:role/a"
ecs_listen = "127.0.0.1:9911"
[profile.b]
audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x"
gce_metadata_listen = "0.0.0.0:9911"
"#;
        let (p, message) = problem(text);
        assert_at(
            &p,
            ProblemKind::DuplicateListen,
            "profile.b.gce_metadata_listen",
            7,
            23,
        );
        assert!(
            message.contains("already used by profile.a.ecs_listen at line 4, column 14"),
            "{message}"
        );
        // Port 0 means "any free port": never a clash.
        let text = text.replace(":9911", ":0");
        parse_at(&text).unwrap();
    }

    #[test]
    fn two_channels_writing_one_file_are_refused() {
        let (p, _) = problem(
            "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\ntoken_file = \"t.jwt\"\n\
             [profile.b]\nrole_arn = \"arn:aws:iam::123456789012:role/b\"\ntoken_file = \"./t.jwt\"\n",
        );
        assert_at(
            &p,
            ProblemKind::DuplicateFile,
            "profile.b.token_file",
            6,
            14,
        );
        let (p, message) = problem(
            "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\ncredentials_profile = \"x\"\n\
             [profile.b]\nrole_arn = \"arn:aws:iam::123456789012:role/b\"\ncredentials_profile = \"x\"\n",
        );
        assert_at(
            &p,
            ProblemKind::DuplicateFile,
            "profile.b.credentials_profile",
            6,
            23,
        );
        assert!(message.contains("credentials profile [x]"), "{message}");
    }

    #[test]
    fn bad_arns_and_audiences_are_refused_with_the_fix() {
        let (p, message) =
            problem("[profile.d]\nrole_arn = \"arn:aws:iam::12345:role/R\"\ntoken_file = \"t\"\n");
        assert_at(&p, ProblemKind::InvalidValue, "profile.d.role_arn", 2, 12);
        assert!(message.contains("12 digits"), "{message}");
        let (p, message) = problem(
            "[profile.c]\naudience = \"//iam.googleapis.com/projects/x/pools\"\nservice_account = \"a@b\"\ngce_metadata_listen = \"127.0.0.1:1\"\n",
        );
        assert_at(&p, ProblemKind::InvalidValue, "profile.c.audience", 2, 12);
        assert!(
            message.contains("workloadIdentityPools/POOL/providers/PROVIDER"),
            "{message}"
        );
        let (p, _) = problem("[profile.d]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\naudience = \"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x\"\ntoken_file = \"t\"\n");
        assert_at(&p, ProblemKind::InvalidValue, "profile.d.audience", 3, 12);
    }

    #[test]
    fn a_profile_without_a_channel_says_which_to_add() {
        let (p, message) =
            problem("[profile.d]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n");
        assert_at(&p, ProblemKind::NoChannel, "profile.d", 1, 10);
        assert!(message.contains("token_file"), "{message}");
    }

    #[test]
    fn keys_that_need_another_key_say_so() {
        let (p, _) = problem("[profile.d]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nauth_token_file = \"a\"\n");
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.d.auth_token_file",
            4,
            1,
        );
        let (p, _) = problem("[profile.c]\naudience = \"projects/1/locations/global/workloadIdentityPools/p/providers/x\"\nlifetime = 600\ngce_metadata_listen = \"127.0.0.1:1\"\n");
        assert_at(&p, ProblemKind::InvalidValue, "profile.c.lifetime", 3, 1);
    }

    #[test]
    fn not_toml_is_reported_at_its_position() {
        let (p, message) = problem("[profile.d]\nrole_arn = \n");
        assert_eq!((p.kind, p.line), (ProblemKind::Syntax, 2), "{p:?}");
        assert!(message.contains("not valid TOML"), "{message}");
    }

    #[test]
    fn an_empty_file_has_no_profiles() {
        let (p, _) = problem("");
        assert_eq!(p.kind, ProblemKind::NoProfiles);
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(edit_distance("rol_arn", "role_arn"), 1);
        assert_eq!(
            suggestion("rol_arn", all_profile_keys()).as_deref(),
            Some("did you mean `role_arn`?")
        );
        assert_eq!(suggestion("colour", all_profile_keys()), None);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// A TOML value of any type, often one a key expects.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "\"arn:aws:iam::123456789012:role/R\"",
                "\"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x\"",
                "\"127.0.0.1:9911\"",
                "\"0.0.0.0:0\"",
                "\"[::1]:80\"",
                "\"localhost:1\"",
                "\"metadata\"",
                "\"file:t\"",
                "\"impersonate:a@b\"",
                "\"https://x\"",
                "\"eu-west-1\"",
                "\"a@b.iam.gserviceaccount.com\"",
                "\"\"",
                "\"é\\u0000\"",
                "3600",
                "-1",
                "0x7fffffffffffffff",
                "1e3",
                "true",
                "[\"a\", \"b\"]",
                "[1, \"a\"]",
                "{ a = 1 }",
                "2024-01-01T00:00:00Z",
            ])
            .prop_map(String::from),
            "\"[ -~]{0,12}\"",
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(
                all_profile_keys()
                    .chain(TOP_KEYS.iter().copied())
                    .chain(["listen", "path", "rol_arn"])
                    .collect::<Vec<_>>()
            )
            .prop_map(String::from),
            "[a-z_]{1,8}",
        ]
    }

    /// A plausible keyless.toml: top-level keys, then profiles of random keys and values.
    fn config_text() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((key(), value()), 0..3),
            prop::collection::vec(
                ("[a-z]{1,3}", prop::collection::vec((key(), value()), 0..8)),
                0..4,
            ),
        )
            .prop_map(|(top, profiles)| {
                let mut text = String::new();
                for (k, v) in top {
                    text.push_str(&format!("{k} = {v}\n"));
                }
                for (name, entries) in profiles {
                    text.push_str(&format!("\n[profile.{name}]\n"));
                    for (k, v) in entries {
                        text.push_str(&format!("{k} = {v}\n"));
                    }
                }
                text
            })
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        let path = Path::new("/nonexistent/keyless.toml");
        match parse(text, path) {
            Ok(config) => prop_assert!(!config.profiles.is_empty()),
            Err(e) => {
                let lines = text.split('\n').count();
                let message = e.to_string();
                prop_assert!(!e.problems().is_empty());
                for p in e.problems() {
                    prop_assert!(
                        (1..=lines).contains(&p.line) && p.column >= 1,
                        "{:?} in {} lines",
                        p,
                        lines
                    );
                    let place = format!("/nonexistent/keyless.toml:{}:{}", p.line, p.column);
                    prop_assert!(message.contains(&place));
                }
            }
        }
        Ok(())
    }

    proptest! {
        /// Any text: a configuration, or problems with a line and column inside the file.
        #[test]
        fn any_text_is_a_config_or_placed_problems(text in any::<String>()) {
            check(&text)?;
        }

        /// Configurations made of the real keys with values of every type: the same promise,
        /// deep inside the checker.
        #[test]
        fn generated_configs_are_valid_or_placed_problems(text in config_text()) {
            check(&text)?;
        }
    }
}
