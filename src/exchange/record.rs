//! The one line an exchange leaves behind: who was traded for what, until when, and under which
//! upstream request id.
//!
//! Every successful exchange, in either direction and whoever called it (a one-shot command,
//! `serve`, the SDK provider), logs exactly one info line built here, so `-v` answers "which
//! identity became which role, and where is it in CloudTrail?" without a debugger. The fields are
//! names and times only: the record holds no token, key or secret, and has nowhere to put one.
//!
//! AWS STS names each answer with `x-amzn-RequestId`, which CloudTrail records as `requestID`;
//! Google's STS and IAM Credentials answers carry no request id by default, so theirs is `none`.

use std::time::Duration;

use time::OffsetDateTime;

/// Which upstream did the trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeTarget {
    /// AWS STS `AssumeRoleWithWebIdentity`.
    AwsSts,
    /// Google STS token exchange (a federated token).
    GoogleSts,
    /// Google STS, then IAM Credentials `generateAccessToken` / `generateIdToken`.
    GoogleImpersonation,
}

impl ExchangeTarget {
    fn as_str(self) -> &'static str {
        match self {
            Self::AwsSts => "aws-sts",
            Self::GoogleSts => "google-sts",
            Self::GoogleImpersonation => "google-sts+iamcredentials",
        }
    }
}

/// One successful exchange, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeRecord {
    pub target: ExchangeTarget,
    /// The identity presented, one word of comma-separated `key=value`s: `iss=…,sub=…,email=…`
    /// of a Google ID token, or `profile=…,region=…,access_key_id=…` of AWS credentials.
    pub identity: String,
    /// What it became: the role ARN, the service account, or the workload identity provider.
    pub role: String,
    /// The role session name (AWS only).
    pub session: Option<String>,
    pub expires_at: OffsetDateTime,
    /// The upstream's request id (`x-amzn-RequestId`), when it sends one.
    pub request_id: Option<String>,
    /// From the first step (minting or finding the identity) to the answer, retries included.
    pub elapsed: Duration,
}

impl ExchangeRecord {
    /// The identity of a JWT as the target matches it: issuer, subject and (Google's) email.
    pub fn token_identity(claims: &crate::source::IdTokenClaims) -> String {
        let mut text = format!("iss={},sub={}", claims.iss, claims.sub);
        if let Some(email) = &claims.email {
            text.push_str(&format!(",email={email}"));
        }
        text
    }

    /// Emits the info line (`exchanged`, with every field named).
    pub fn log(&self) {
        tracing::info!(
            upstream = %self.target.as_str(),
            identity = %self.identity,
            role = %self.role,
            session = %self.session.as_deref().unwrap_or("none"),
            expires_at = %crate::credentials::format_expiration(self.expires_at),
            request_id = %self.request_id.as_deref().unwrap_or("none"),
            duration_ms = u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
            "exchanged"
        );
    }
}
