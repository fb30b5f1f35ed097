//! One audit event per exchange: who crossed which cloud boundary, when, as whom, and where the
//! cloud recorded it.
//!
//! An *exchange* is one attempt by keyless to obtain one credential for a caller: a one-shot
//! command, a daemon refresh, an SDK provider call (cache hits are not exchanges). Its event
//! names the identity presented (issuer and subject, or the AWS caller), what it became (role
//! ARN and chain, workload identity provider and service account), the session, the durations,
//! every call made to the target with the upstream's request id (AWS `x-amzn-RequestId`, which
//! CloudTrail records as `requestID`; Google sends none), the outcome with its error class, and
//! the latency. The type has no field that could hold a token, key or secret: identities are
//! names, and error messages are keyless's own secret-free `Display`s.
//!
//! The JSON shape (one object per line in `--audit-log`) is a contract: `keyless audit --local`
//! and users' log pipelines read it. Add fields; never rename or remove one.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::classify::Class;

/// One exchange, as the audit trail keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When the exchange ended (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub keyless_version: String,
    pub host: String,
    pub pid: u32,
    /// The keyless.toml profile (or the daemon's profile name); `None` for a plain command.
    pub profile: Option<String>,
    /// Who asked: `credential-process`, `env`, `exec`, `serve:ecs`, `token-file`, `library`…
    pub channel: Option<String>,
    pub source: AuditSource,
    pub target: AuditTarget,
    /// The role session name (AWS targets).
    pub session_name: Option<String>,
    pub requested_duration_secs: Option<u64>,
    /// From the answer: expiry minus the time it came back.
    pub granted_duration_secs: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Every call made to the target, retries included, in order.
    pub upstream: Vec<UpstreamCall>,
    pub outcome: Outcome,
    /// The upstream's error code (`AccessDenied`, `InvalidIdentityToken`, `invalid_grant`,
    /// `PERMISSION_DENIED`…) or keyless's own word (`source`, `timeout`, `network`,
    /// `unreadable`) when the exchange did not succeed.
    pub error_class: Option<String>,
    /// What went wrong, as keyless explains it (secret-free by construction of its errors).
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// The identity keyless presented.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSource {
    /// The `--token-source` spelling's kind: `metadata`, `impersonate`, `file`, `command`,
    /// `k8s`, `github`, `aws-oidc`, `aws`.
    pub kind: String,
    /// The JWT's `iss` (JWT sources).
    pub issuer: Option<String>,
    /// The JWT's `sub` (JWT sources).
    pub subject: Option<String>,
    /// Google's `email` claim, when the token has one.
    pub email: Option<String>,
    /// The JWT's audience, as the target saw it.
    pub audience: Option<String>,
    /// The AWS caller (`aws` source): its ARN when known, else the access key id's profile.
    pub aws_arn: Option<String>,
    /// The AWS access key id presented (`aws` source). An id, not a secret: CloudTrail records it.
    pub access_key_id: Option<String>,
}

/// What the identity was traded for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTarget {
    pub kind: TargetKind,
    /// The role assumed with the web identity (AWS).
    pub role_arn: Option<String>,
    /// Roles assumed after it, in order (`--chain-role`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// The workload identity provider (Google STS audience).
    pub provider: Option<String>,
    /// The service account impersonated (IAM Credentials).
    pub service_account: Option<String>,
}

impl AuditTarget {
    /// An AWS role, assumed with a web identity.
    pub fn aws(role_arn: impl Into<String>) -> Self {
        Self {
            kind: TargetKind::AwsSts,
            role_arn: Some(role_arn.into()),
            chain: Vec::new(),
            provider: None,
            service_account: None,
        }
    }

    /// A Google workload identity provider, and the service account when impersonated.
    pub fn google(provider: impl Into<String>, service_account: Option<String>) -> Self {
        Self {
            kind: if service_account.is_some() {
                TargetKind::GoogleIamCredentials
            } else {
                TargetKind::GoogleSts
            },
            role_arn: None,
            chain: Vec::new(),
            provider: Some(provider.into()),
            service_account,
        }
    }
}

/// Which upstream did the trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TargetKind {
    /// AWS STS `AssumeRoleWithWebIdentity` (and `AssumeRole` hops).
    #[serde(rename = "aws-sts")]
    AwsSts,
    /// Google STS token exchange (a federated token).
    #[serde(rename = "google-sts")]
    GoogleSts,
    /// Google STS, then IAM Credentials `generateAccessToken` / `generateIdToken`.
    #[serde(rename = "google-sts+iamcredentials")]
    GoogleIamCredentials,
}

impl TargetKind {
    /// The label used in logs and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwsSts => "aws-sts",
            Self::GoogleSts => "google-sts",
            Self::GoogleIamCredentials => "google-sts+iamcredentials",
        }
    }
}

/// One call keyless made to the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamCall {
    /// `sts.amazonaws.com`, `sts.googleapis.com`, `iamcredentials.googleapis.com`: the
    /// CloudTrail `eventSource` / Cloud Audit Logs `serviceName` it will be recorded under.
    pub service: String,
    /// `AssumeRoleWithWebIdentity`, `AssumeRole`, `ExchangeToken`, `GenerateAccessToken`,
    /// `GenerateIdToken`.
    pub action: String,
    /// AWS `x-amzn-RequestId` (CloudTrail `requestID`); Google sends none.
    pub request_id: Option<String>,
    /// The HTTP status, when an answer came back.
    pub status: Option<u16>,
    /// The upstream's error code, when it refused or failed.
    pub error_code: Option<String>,
}

/// The CloudTrail `eventSource` of AWS STS.
pub const AWS_STS: &str = "sts.amazonaws.com";
/// The Cloud Audit Logs `serviceName` of Google STS.
pub const GOOGLE_STS: &str = "sts.googleapis.com";
/// The Cloud Audit Logs `serviceName` of IAM Credentials.
pub const IAM_CREDENTIALS: &str = "iamcredentials.googleapis.com";

/// How the exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// The cloud refused the identity (trust policy, token rejected): exit 3.
    Refused,
    /// An endpoint was unreachable or kept failing: exit 4.
    Unavailable,
    /// Anything else (configuration, unreadable answers).
    Failed,
}

impl Outcome {
    /// The outcome of a failure of this class.
    pub fn of(class: Class) -> Self {
        match class {
            Class::Refused => Self::Refused,
            Class::Unavailable => Self::Unavailable,
            Class::Usage | Class::Failure => Self::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
            Self::Failed => "failed",
        }
    }
}
