//! keyless's own audit trail: one event per exchange, whoever asked for it.
//!
//! Federation replaces keys, and an auditor then asks which workload used which role or service
//! account, when, and whether that was intended. The clouds record their side (CloudTrail,
//! Cloud Audit Logs: `keyless audit` reads them); this module records keyless's side, with the
//! upstream request ids that tie the two together.
//!
//! The contract:
//! - **Exactly one event per exchange** ([`event`] says what an exchange is): the code that
//!   starts one (`refresh::AwsRoleProfile::fetch`, `refresh::GcpTokenProfile::fetch` and
//!   `fetch_id_token`) runs it inside [`recorder::collect`] and [`emit`]s what came back, ok or
//!   not. Every channel and the daemon go through those functions; cache hits are not exchanges.
//! - **Three destinations**, all from [`emit`]: an info line on target `keyless::audit` (the log,
//!   and the systemd journal with one field per value when keyless runs under systemd: the CLI
//!   adds a journald layer for that target), the JSON-lines file of `--audit-log`
//!   ([`AuditLog`]), and the counters behind `keyless_exchanges_total` on `/metrics`
//!   ([`exchange_counts`]).
//! - **Never a secret**: the event type has no field that could hold a token or key, and the
//!   error text is keyless's own secret-free `Display`.

pub mod event;
mod log_file;
pub mod recorder;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

pub use event::{AuditEvent, AuditSource, AuditTarget, Outcome, TargetKind, UpstreamCall};
pub use log_file::{AuditLog, AuditLogError};

/// The tracing target of the audit lines (the journal layer selects it).
pub const LOG_TARGET: &str = "keyless::audit";

/// The process's audit log, when `--audit-log` named one.
static LOG: RwLock<Option<Arc<AuditLog>>> = RwLock::new(None);

/// Sends every later event to `log` as well (replacing an earlier one).
pub fn install_log(log: AuditLog) {
    *LOG.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(log));
}

/// The installed audit log, if any.
pub fn installed_log() -> Option<Arc<AuditLog>> {
    LOG.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Reopens the installed audit log's path (SIGHUP after logrotate); nothing to do without one.
pub fn reopen_log() -> Result<(), AuditLogError> {
    match installed_log() {
        Some(log) => log.reopen(),
        None => Ok(()),
    }
}

/// The keyless.toml profile the whole process runs with (`--config-profile`), named by events
/// whose profile did not name one.
static PROCESS_PROFILE: RwLock<Option<String>> = RwLock::new(None);

/// Sets the profile every event of this process names unless its own context names one.
pub fn set_process_profile(profile: Option<String>) {
    *PROCESS_PROFILE.write().unwrap_or_else(|e| e.into_inner()) = profile;
}

fn process_profile() -> Option<String> {
    PROCESS_PROFILE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// This machine's name, once: every event carries it.
pub fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| gethostname::gethostname().to_string_lossy().into_owned())
}

/// Records one exchange: the log line, the audit log file, the counters. A file that cannot be
/// written is reported in the log (the credential is good either way; the line says what is
/// missing from the trail).
pub fn emit(event: &AuditEvent) {
    log_line(event);
    count(event);
    if let Some(log) = installed_log() {
        if let Err(e) = log.append(event) {
            tracing::error!(target: LOG_TARGET, "{e}; this exchange is missing from the audit log");
        }
    }
}

/// The info line, with one field per value so the JSON log
/// format and the journal keep them apart.
fn log_line(event: &AuditEvent) {
    let requests = event
        .upstream
        .iter()
        .filter_map(|c| c.request_id.as_deref())
        .collect::<Vec<_>>()
        .join(",");
    let identity = source_identity(&event.source);
    let role = event
        .target
        .service_account
        .as_deref()
        .or(event.target.chain.last().map(String::as_str))
        .or(event.target.role_arn.as_deref())
        .or(event.target.provider.as_deref())
        .unwrap_or("none");
    let expires_at = event
        .expires_at
        .map(crate::credentials::format_expiration)
        .unwrap_or_else(|| "none".into());
    macro_rules! line {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                target: LOG_TARGET,
                upstream = %event.target.kind.as_str(),
                outcome = %event.outcome.as_str(),
                error_class = %event.error_class.as_deref().unwrap_or("none"),
                identity = %identity,
                source = %event.source.kind,
                role = %role,
                provider = %event.target.provider.as_deref().unwrap_or("none"),
                session = %event.session_name.as_deref().unwrap_or("none"),
                expires_at = %expires_at,
                request_id = %if requests.is_empty() { "none" } else { &requests },
                profile = %event.profile.as_deref().unwrap_or("none"),
                channel = %event.channel.as_deref().unwrap_or("none"),
                duration_ms = event.latency_ms,
                $message
            )
        };
    }
    // Info whatever the outcome: a failure's own error is what the user sees at the default
    // level; this line is the record.
    match event.outcome {
        Outcome::Ok => line!(info, "exchanged"),
        _ => line!(info, "exchange failed"),
    }
}

/// The identity of a source as one word of `key=value`s: `iss=…,sub=…,email=…` of a JWT,
/// `arn=…`/`access_key_id=…` of AWS credentials.
pub fn source_identity(source: &AuditSource) -> String {
    let parts = [
        ("iss", &source.issuer),
        ("sub", &source.subject),
        ("email", &source.email),
        ("arn", &source.aws_arn),
        ("access_key_id", &source.access_key_id),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if text.is_empty() {
        source.kind.clone()
    } else {
        text.join(",")
    }
}

/// `(target, outcome, error class)` → exchanges, for `/metrics`.
type Counts = BTreeMap<(TargetKind, Outcome, &'static str), u64>;

static COUNTS: Mutex<Counts> = Mutex::new(BTreeMap::new());

/// Error classes `/metrics` names; any other is counted as `other`, so a misbehaving upstream
/// cannot grow the label set without bound.
const METRIC_ERROR_CLASSES: &[&str] = &[
    "AccessDenied",
    "InvalidIdentityToken",
    "ExpiredTokenException",
    "IDPRejectedClaim",
    "IDPCommunicationError",
    "Throttling",
    "RegionDisabledException",
    "MalformedPolicyDocument",
    "invalid_grant",
    "invalid_request",
    "invalid_target",
    "unauthorized_client",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "source",
    "timeout",
    "network",
    "unreadable",
    "configuration",
    "failure",
];

fn count(event: &AuditEvent) {
    let class = match event.error_class.as_deref() {
        None => "none",
        Some(class) => METRIC_ERROR_CLASSES
            .iter()
            .find(|known| **known == class)
            .copied()
            .unwrap_or("other"),
    };
    *COUNTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((event.target.kind, event.outcome, class))
        .or_default() += 1;
}

/// Exchanges so far, by target, outcome and error class (`none` when ok).
pub fn exchange_counts() -> Vec<(TargetKind, Outcome, &'static str, u64)> {
    COUNTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|((t, o, c), n)| (*t, *o, *c, *n))
        .collect()
}

/// Who started an exchange: the profile and channel its event names. Set by the command line
/// and the daemon on the profile they build; a library caller's events say `library`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditContext {
    /// The keyless.toml profile (or `serve`'s profile name).
    pub profile: Option<String>,
    /// `credential-process`, `env`, `json`, `exec`, `write-profile`, `serve:ecs`, `token`…
    pub channel: Option<String>,
}

impl AuditContext {
    /// The context of `channel` for `profile`.
    pub fn new(profile: Option<&str>, channel: &str) -> Self {
        Self {
            profile: profile.map(str::to_string),
            channel: Some(channel.to_string()),
        }
    }
}

/// Why an exchange failed, as its event records it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub class: crate::classify::Class,
    /// keyless's word when no upstream gave an error code: `source`, `network`, `unreadable`,
    /// `configuration`, `failure`.
    pub word: &'static str,
    pub message: String,
}

impl Failure {
    /// The failure `error` is, with keyless's `word` for it.
    pub fn of<E: crate::classify::Classify + std::fmt::Display>(
        error: &E,
        word: &'static str,
    ) -> Self {
        Self {
            class: error.class(),
            word,
            message: error.to_string(),
        }
    }
}

/// What an exchange is about, known before it runs.
#[derive(Clone, Debug)]
pub struct Exchange<'a> {
    pub context: &'a AuditContext,
    /// The `--token-source` kind (`metadata`, `github`, `aws`…).
    pub source_kind: String,
    pub target: AuditTarget,
    pub requested_duration_secs: Option<u64>,
    pub started: std::time::Instant,
}

impl Exchange<'_> {
    /// Runs `exchange` inside an audit scope and emits its one event, ok or not: `expiry` reads
    /// a success, `word` names a failure no upstream gave a code for.
    pub async fn run<T, E>(
        self,
        exchange: impl std::future::Future<Output = Result<T, E>>,
        expiry: impl FnOnce(&T) -> time::OffsetDateTime,
        word: impl FnOnce(&E) -> &'static str,
    ) -> Result<T, E>
    where
        E: crate::classify::Classify + std::fmt::Display,
    {
        let (result, recorded) = recorder::collect(exchange).await;
        let ended = match &result {
            Ok(value) => Ok(expiry(value)),
            Err(e) => Err(Failure::of(e, word(e))),
        };
        emit(&self.event(recorded, ended));
        result
    }

    /// The event of this exchange, from what it reported and how it ended.
    pub fn event(
        self,
        recorded: recorder::Recorded,
        ended: Result<time::OffsetDateTime, Failure>,
    ) -> AuditEvent {
        let now = time::OffsetDateTime::now_utc();
        let mut source = recorded.source.unwrap_or_default();
        source.kind = self.source_kind;
        let (outcome, expires_at, error_class, error) = match ended {
            Ok(expires_at) => (Outcome::Ok, Some(expires_at), None, None),
            Err(failure) => {
                let upstream_code = recorded
                    .calls
                    .iter()
                    .rev()
                    .find_map(|c| c.error_code.clone());
                (
                    Outcome::of(failure.class),
                    None,
                    Some(upstream_code.unwrap_or_else(|| failure.word.to_string())),
                    Some(failure.message),
                )
            }
        };
        AuditEvent {
            time: now,
            keyless_version: env!("CARGO_PKG_VERSION").to_string(),
            host: host().to_string(),
            pid: std::process::id(),
            profile: self.context.profile.clone().or_else(process_profile),
            channel: Some(
                self.context
                    .channel
                    .clone()
                    .unwrap_or_else(|| "library".into()),
            ),
            source,
            target: self.target,
            session_name: recorded.session_name,
            requested_duration_secs: self.requested_duration_secs,
            granted_duration_secs: expires_at.map(|at| (at - now).whole_seconds().max(0) as u64),
            expires_at,
            upstream: recorded.calls,
            outcome,
            error_class,
            error,
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The kind of a source from its description (`github(…)` → `github`, `k8s:/path` → `k8s`,
/// `aws profile=…` → `aws`): the registry's spelling, never a path or command.
pub fn source_kind(description: &str) -> String {
    description
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The identity of a JWT as the target matches it.
pub fn jwt_source(claims: &crate::policy::issuer::IdTokenClaims) -> AuditSource {
    AuditSource {
        issuer: Some(claims.iss.clone()),
        subject: Some(claims.sub.clone()),
        email: claims.email.clone(),
        audience: Some(claims.aud.to_string()),
        ..AuditSource::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_kinds_are_the_registry_spellings_never_a_path_or_command() {
        for (described, kind) in [
            ("metadata(169.254.169.254)", "metadata"),
            (
                "impersonate:sa@p.iam.gserviceaccount.com@http://x",
                "impersonate",
            ),
            ("file:/var/run/token", "file"),
            ("command:gcloud auth print-identity-token", "command"),
            ("k8s:/var/run/secrets/token", "k8s"),
            ("github(token.actions.githubusercontent.com)", "github"),
            ("aws-oidc(profile=default region=us-east-1", "aws-oidc"),
            ("aws profile=default region=us-east-1", "aws"),
        ] {
            assert_eq!(source_kind(described), kind, "{described}");
        }
    }

    #[test]
    fn the_json_shape_is_the_documented_contract() {
        let event = Exchange {
            context: &AuditContext::new(Some("ci"), "credential-process"),
            source_kind: "github".into(),
            target: AuditTarget::aws("arn:aws:iam::123456789012:role/deploy"),
            requested_duration_secs: Some(900),
            started: std::time::Instant::now(),
        }
        .event(
            recorder::Recorded {
                calls: vec![UpstreamCall {
                    service: event::AWS_STS.into(),
                    action: "AssumeRoleWithWebIdentity".into(),
                    request_id: Some("r-1".into()),
                    status: Some(403),
                    error_code: Some("AccessDenied".into()),
                }],
                source: None,
                session_name: Some("s".into()),
            },
            Err(Failure {
                class: crate::classify::Class::Refused,
                word: "refused",
                message: "AWS refused".into(),
            }),
        );
        let json = serde_json::to_value(&event).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "channel",
                "error",
                "error_class",
                "expires_at",
                "granted_duration_secs",
                "host",
                "keyless_version",
                "latency_ms",
                "outcome",
                "pid",
                "profile",
                "requested_duration_secs",
                "session_name",
                "source",
                "target",
                "time",
                "upstream"
            ]
        );
        assert_eq!(json["outcome"], "refused");
        assert_eq!(
            json["error_class"], "AccessDenied",
            "the upstream's code wins"
        );
        assert_eq!(json["target"]["kind"], "aws-sts");
        assert_eq!(json["source"]["kind"], "github");
        assert_eq!(json["upstream"][0]["request_id"], "r-1");
        let back: AuditEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn metrics_error_classes_stay_a_fixed_set() {
        let mut event = log_file_sample();
        event.outcome = Outcome::Refused;
        event.error_class = Some("SomethingNew-123".into());
        count(&event);
        event.error_class = Some("AccessDenied".into());
        count(&event);
        let counts = exchange_counts();
        assert!(counts
            .iter()
            .any(|(_, o, c, _)| *o == Outcome::Refused && *c == "other"));
        assert!(counts
            .iter()
            .any(|(_, o, c, _)| *o == Outcome::Refused && *c == "AccessDenied"));
        assert!(!counts.iter().any(|(_, _, c, _)| c.contains("SomethingNew")));
    }

    fn log_file_sample() -> AuditEvent {
        Exchange {
            context: &AuditContext::default(),
            source_kind: "metadata".into(),
            target: AuditTarget::google("//iam.googleapis.com/x", None),
            requested_duration_secs: None,
            started: std::time::Instant::now(),
        }
        .event(
            recorder::Recorded::default(),
            Ok(time::OffsetDateTime::now_utc()),
        )
    }
}
