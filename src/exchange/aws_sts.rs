//! AWS STS: `AssumeRoleWithWebIdentity` (a Google ID token becomes AWS credentials) and
//! `GetCallerIdentity` (prove who the credentials are).
//!
//! STS speaks the query protocol: a form-encoded POST, an XML answer. Errors are classified the
//! way DESIGN.md says, because the right reaction differs: an IdP hiccup or throttling is
//! retried with backoff, a rejected token is re-minted once (it may simply have expired on the
//! way), and a refusal by the trust policy fails at once with the claims AWS compared.

use std::future::Future;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::credentials::{format_expiration, AwsCredentials};
use crate::exchange::clock_skew;
use crate::exchange::retry::Budget;
pub use crate::exchange::retry::RetryPolicy;
use crate::policy::issuer::Issuer;
use crate::secret::Secret;
use crate::source::{IdToken, IdTokenClaims, SourceError};
use crate::types::{Region, SpecError, UpstreamUrl};
use crate::wire::{error_chain, truncate};

/// The STS API version every request names.
const STS_API_VERSION: &str = "2011-06-15";

/// An IAM role ARN, checked before it goes on the wire so a typo fails here, not at STS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleArn(String);

impl RoleArn {
    /// Accepts `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
    pub fn parse(text: &str) -> Result<Self, ExchangeError> {
        let invalid = |why: &str| ExchangeError::InvalidRoleArn {
            arn: text.to_string(),
            why: why.to_string(),
        };
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") {
            return Err(invalid(
                "it must look like arn:aws:iam::123456789012:role/NAME",
            ));
        }
        if parts[2] != "iam" {
            return Err(invalid("the service must be iam"));
        }
        if parts[4].len() != 12 || !parts[4].bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the account must be 12 digits"));
        }
        match parts[5].strip_prefix("role/") {
            Some(name) if !name.is_empty() && !name.ends_with('/') => Ok(Self(text.to_string())),
            _ => Err(invalid("the resource must be role/NAME")),
        }
    }

    /// The ARN as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `assumed` (`arn:PARTITION:sts::ACCOUNT:assumed-role/NAME/SESSION`, what STS
    /// answers) is a session of this role: same partition, account and name.
    pub fn is_assumed_by(&self, assumed: &str) -> bool {
        let partition = self.0.split(':').nth(1).unwrap_or_default();
        let prefix = format!(
            "arn:{partition}:sts::{}:assumed-role/{}/",
            self.account(),
            self.name()
        );
        assumed
            .strip_prefix(&prefix)
            .is_some_and(|session| !session.is_empty() && !session.contains('/'))
    }

    /// The account the role lives in.
    pub fn account(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or_default()
    }

    /// The role's name without its path.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl std::fmt::Display for RoleArn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role session name: shows up in CloudTrail and in the assumed-role ARN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionName(String);

impl SessionName {
    /// Checks a name the user chose: at least 2 characters of `[\w+=,.@-]`, as STS demands. A
    /// name longer than STS's 64 is shortened in the middle to `HEAD..TAIL` (31 + 2 + 31), so
    /// `$(POD_NAMESPACE).$(POD_NAME)` from a pod's downward API keeps the namespace and the pod's
    /// unique suffix instead of failing for a long namespace or workload name.
    pub fn parse(text: &str) -> Result<Self, ExchangeError> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() < 2 || !chars.iter().copied().all(is_session_char) {
            return Err(ExchangeError::InvalidSessionName {
                name: text.to_string(),
            });
        }
        if chars.len() <= SESSION_NAME_MAX {
            return Ok(Self(text.to_string()));
        }
        let keep = (SESSION_NAME_MAX - 2) / 2;
        let head: String = chars[..keep].iter().collect();
        let tail: String = chars[chars.len() - keep..].iter().collect();
        Ok(Self(format!("{head}..{tail}")))
    }

    /// Derives a name that says who and where: `LOCALPART@HOST` from the token's email (or
    /// its `sub`) and this machine's host name, with what STS does not allow replaced by `-`.
    pub fn derive(claims: &IdTokenClaims, host: &str) -> Self {
        let who = claims
            .email
            .as_deref()
            .and_then(|e| e.split('@').next())
            .filter(|w| !w.is_empty())
            .unwrap_or(&claims.sub);
        let host = host.split('.').next().unwrap_or(host);
        let raw = if host.is_empty() {
            who.to_string()
        } else {
            format!("{who}@{host}")
        };
        let mut name: String = raw
            .chars()
            .map(|c| if is_session_char(c) { c } else { '-' })
            .take(64)
            .collect();
        while name.chars().count() < 2 {
            name.push_str("-keyless");
            name.truncate(64);
        }
        Self(name)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// STS's limit on `RoleSessionName`.
const SESSION_NAME_MAX: usize = 64;

fn is_session_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// Where STS is, resolved the way the AWS SDKs resolve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsEndpoint {
    /// The base URL requests go to.
    pub url: String,
    /// The region used for SigV4 (`us-east-1` for the global endpoint).
    pub signing_region: String,
}

impl StsEndpoint {
    /// Resolves, first match wins: an explicit URL (flag), `AWS_ENDPOINT_URL_STS`,
    /// `AWS_ENDPOINT_URL` (both ignored when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`; each
    /// named in a warning when it is used), the regional endpoint of `region`, else the global
    /// endpoint. A variable that is not a usable endpoint is an error naming it.
    pub fn resolve(
        explicit: Option<&UpstreamUrl>,
        region: Option<&Region>,
    ) -> Result<Self, SpecError> {
        let ignore_env = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(false);
        let configured = match explicit {
            Some(url) => Some(url.clone()),
            None if ignore_env => None,
            None => match UpstreamUrl::from_env("AWS_ENDPOINT_URL_STS")? {
                Some(url) => Some(url),
                None => UpstreamUrl::from_env("AWS_ENDPOINT_URL")?,
            },
        };
        Ok(Self::from_parts(configured, region))
    }

    /// The pure part of [`StsEndpoint::resolve`]: a configured URL wins, else the region's
    /// (always an AWS host: a [`Region`] is one host label).
    pub fn from_parts(configured: Option<UpstreamUrl>, region: Option<&Region>) -> Self {
        let url = match (configured, region) {
            (Some(url), _) => url.as_str().to_string(),
            (None, Some(r)) => format!("https://{}", r.sts_host()),
            (None, None) => "https://sts.amazonaws.com".to_string(),
        };
        Self {
            url: url.trim_end_matches('/').to_string() + "/",
            signing_region: region.map_or("us-east-1", Region::as_str).to_string(),
        }
    }
}

/// What to ask STS for besides the token.
#[derive(Clone, Debug)]
pub struct WebIdentityRequest {
    pub role_arn: RoleArn,
    /// `None`: derive one from the token and the host name.
    pub session_name: Option<SessionName>,
    pub duration_seconds: Option<u32>,
    /// An inline session policy (JSON) that narrows the role's permissions.
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
}

/// STS's answer: the credentials and who they belong to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssumedRole {
    pub credentials: AwsCredentials,
    pub assumed_role_arn: String,
    pub assumed_role_id: String,
    pub subject_from_web_identity_token: Option<String>,
    pub audience: Option<String>,
    pub provider: Option<String>,
    pub packed_policy_size: Option<u32>,
}

/// Who a set of credentials is, as `GetCallerIdentity` says.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CallerIdentity {
    pub user_id: String,
    pub account: String,
    pub arn: String,
}

/// What went wrong trading a token for credentials, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The role ARN is malformed.
    #[error("{arn:?} is not a role ARN: {why}")]
    InvalidRoleArn { arn: String, why: String },

    /// The session name breaks STS's rules.
    #[error("{name:?} is not a valid role session name\n  hint: use at least 2 characters of letters, digits and _+=,.@- (a name longer than 64 is shortened in the middle)")]
    InvalidSessionName { name: String },

    /// The trust policy (or the IdP's claims check) refused this identity.
    #[error("AWS refused to let this identity assume {role} ({code}: {message})\n  the token: {token}\n  hint: {hint}")]
    Refused {
        role: RoleArn,
        code: String,
        message: String,
        token: String,
        /// Which condition keys hold which claims, for the token's issuer (boxed: it keeps
        /// the error as small as its largest variant).
        hint: Box<str>,
    },

    /// A role of `--chain-role` refused the previous session (STS `AssumeRole` `AccessDenied`):
    /// its trust policy does not name the previous role, or a condition such as
    /// `sts:ExternalId` did not hold.
    #[error("AWS refused to let {caller} assume {role} ({code}: {message})\n  the request: {sent}\n  hint: {hint}")]
    ChainRefused {
        role: RoleArn,
        /// The session that asked (`arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`).
        caller: Box<str>,
        code: Box<str>,
        message: String,
        /// Which condition keys the request set, without their values.
        sent: Box<str>,
        hint: Box<str>,
    },

    /// STS did not accept the token itself, even after minting a fresh one.
    #[error("AWS STS rejected the identity token for {role} ({code}: {message})\n  the token: {token}\n  hint: {hint}")]
    TokenRejected {
        role: RoleArn,
        code: String,
        message: String,
        token: String,
        hint: String,
    },

    /// The request itself is wrong (duration, policy, session name, region).
    #[error("AWS STS refused the request for {role} ({code}): {message}")]
    InvalidRequest {
        role: String,
        code: String,
        message: String,
    },

    /// STS kept failing in a way that may pass; every attempt (or the deadline) was used.
    #[error(
        "AWS STS at {endpoint} is unavailable after {}: {last}\n  \
             hint: this may pass, try again later; if it persists, check that this machine reaches \
             {endpoint} (proxy, firewall, DNS) and that --sts-endpoint or AWS_ENDPOINT_URL_STS is \
             right; --attempt-timeout and --deadline allow more time",
        crate::exchange::retry::count_attempts(.attempts)
    )]
    Unavailable {
        endpoint: String,
        attempts: u32,
        last: String,
    },

    /// STS answered something we cannot read: not STS, or something in between rewrote it.
    #[error(
        "AWS STS at {endpoint} answered {status} ({content_type}) with something that is not \
             an STS answer: {detail}\n  hint: check that --sts-endpoint or AWS_ENDPOINT_URL_STS \
             names an STS endpoint (https://sts.REGION.amazonaws.com); a proxy or captive portal \
             between here and AWS answers like this too"
    )]
    UnexpectedAnswer {
        endpoint: String,
        status: u16,
        content_type: String,
        detail: String,
    },

    /// `GetCallerIdentity` refused the credentials.
    #[error("AWS STS at {endpoint} refused the credentials ({code}): {message}")]
    CallerIdentityRefused {
        endpoint: String,
        code: String,
        message: String,
    },

    /// The credentials could not be signed with (a malformed key).
    #[error("could not sign the request: {0}")]
    Signing(String),

    /// The Google side failed before STS was asked.
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl ExchangeError {
    /// keyless's word for this failure in an audit event, when STS gave no error code of its
    /// own (`source`, `network`, `unreadable`, `configuration`, `failure`).
    pub fn audit_word(&self) -> &'static str {
        match self {
            Self::Source(_) => "source",
            Self::Unavailable { .. } => "network",
            Self::UnexpectedAnswer { .. } => "unreadable",
            Self::InvalidRoleArn { .. } | Self::InvalidSessionName { .. } => "configuration",
            Self::Refused { .. }
            | Self::ChainRefused { .. }
            | Self::TokenRejected { .. }
            | Self::InvalidRequest { .. }
            | Self::CallerIdentityRefused { .. } => "refused",
            Self::Signing(_) => "failure",
        }
    }

    /// Retrying later may help (network, throttling, IdP hiccups); a refusal will not change by itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Source(e) => e.is_transient(),
            _ => false,
        }
    }

    /// The trust configuration refused the identity (as opposed to a broken request or outage).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. } | Self::TokenRejected { .. } | Self::ChainRefused { .. }
        )
    }
}

impl crate::classify::Classify for ExchangeError {
    fn class(&self) -> crate::classify::Class {
        use crate::classify::Class;
        match self {
            Self::Source(source) => source.class(),
            _ if self.is_refusal() => Class::Refused,
            _ if self.is_transient() => Class::Unavailable,
            Self::InvalidRoleArn { .. } | Self::InvalidSessionName { .. } => Class::Usage,
            Self::CallerIdentityRefused { .. } => Class::Refused,
            _ => Class::Failure,
        }
    }
}

/// One STS error answer, before we decide what it means.
#[derive(Clone, Debug)]
pub(crate) struct StsFault {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
}

/// What to do about a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reaction {
    Retry,
    Remint,
    Fail,
}

impl StsFault {
    /// AWS says the account sends too much: `Throttling` (STS's query protocol),
    /// `ThrottlingException` (JSON protocols), `RequestLimitExceeded` (EC2-style), or HTTP 429.
    /// Every exchange of the process to this endpoint backs off together (`throttle`).
    pub(crate) fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_str(),
            "Throttling" | "ThrottlingException" | "RequestLimitExceeded"
        ) || self.status == 429
    }

    pub(crate) fn reaction(&self) -> Reaction {
        match self.code.as_str() {
            "IDPCommunicationError"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "ServiceUnavailable"
            | "InternalFailure"
            | "InternalError" => Reaction::Retry,
            "InvalidIdentityToken" | "ExpiredTokenException" => Reaction::Remint,
            _ if self.status >= 500 || self.status == 429 => Reaction::Retry,
            _ => Reaction::Fail,
        }
    }
}

/// Mints a token and trades it for credentials, retrying what is retryable and re-minting a
/// rejected token once. `mint` is called for each token needed; `host` names this machine in
/// derived session names. Each STS call is bounded by the policy's attempt timeout, and the
/// whole exchange (minting included) by its deadline.
pub async fn exchange_web_identity<F, Fut>(
    http: &reqwest::Client,
    endpoint: &StsEndpoint,
    request: &WebIdentityRequest,
    retry: &RetryPolicy,
    host: &str,
    source_name: &str,
    mut mint: F,
) -> Result<AssumedRole, ExchangeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<IdToken, SourceError>>,
{
    let budget = retry.budget();
    let mut delays = retry.delays();
    let mut attempts = 0u32;
    let mut reminted = false;
    let mut token: Option<IdToken> = None;
    loop {
        attempts += 1;
        // Another exchange of this process was throttled: wait with it (see `throttle`).
        crate::exchange::throttle::wait(&endpoint.url, budget.left()).await;
        let outcome = match &token {
            Some(t) => call_assume_role(&budget, http, endpoint, request, t, host, attempts).await,
            // The token source has timeouts of its own; the deadline bounds it too.
            None => match budget.within_deadline(mint()).await {
                Ok(Ok(t)) => {
                    crate::audit::recorder::note_source(crate::audit::jwt_source(t.claims()));
                    tracing::debug!(identity = %crate::audit::source_identity(&crate::audit::jwt_source(t.claims())),
                        expires_at = %format_expiration(t.claims().expires_at()),
                        "token source: fetched an ID token");
                    let result =
                        call_assume_role(&budget, http, endpoint, request, &t, host, attempts)
                            .await;
                    token = Some(t);
                    result
                }
                Ok(Err(e)) => Err(Attempt::Source(e)),
                Err(timed_out) => Err(Attempt::Source(SourceError::TimedOut {
                    source_name: source_name.to_string(),
                    seconds: timed_out.after.as_secs_f64(),
                })),
            },
        };
        let failure = match outcome {
            Ok(role) => {
                crate::exchange::throttle::answered(&endpoint.url);
                return Ok(role);
            }
            Err(f) => f,
        };
        if let Attempt::Fault(fault) = &failure {
            if fault.is_throttling() {
                crate::exchange::throttle::throttled(&endpoint.url);
            } else {
                crate::exchange::throttle::answered(&endpoint.url);
            }
        }
        let (reaction, last) = match &failure {
            Attempt::Fault(f) => (f.reaction(), format!("{} ({})", f.code, f.message)),
            Attempt::Network(cause) => (Reaction::Retry, cause.clone()),
            Attempt::Source(e) if e.is_transient() => (Reaction::Retry, e.to_string()),
            Attempt::Source(_) => (Reaction::Fail, String::new()),
            Attempt::Unreadable { .. } => (Reaction::Fail, String::new()),
        };
        match reaction {
            Reaction::Remint if !reminted => {
                tracing::info!(%last, "STS rejected the token; minting a fresh one once");
                reminted = true;
                token = None;
                continue;
            }
            Reaction::Retry => match delays.next() {
                Some(delay) if budget.allows_wait(delay) => {
                    tracing::warn!(attempt = attempts, ?delay, %last, "transient STS failure; retrying");
                    // A transient token-source failure means no token was minted; keep the
                    // token we have otherwise (it is still valid).
                    tokio::time::sleep(delay).await;
                    continue;
                }
                _ => {
                    if let Attempt::Source(e) = failure {
                        return Err(ExchangeError::Source(e));
                    }
                    return Err(ExchangeError::Unavailable {
                        endpoint: endpoint.url.clone(),
                        attempts,
                        last,
                    });
                }
            },
            _ => {}
        }
        return Err(match failure {
            Attempt::Source(e) => ExchangeError::Source(e),
            Attempt::Unreadable {
                status,
                content_type,
                detail,
            } => ExchangeError::UnexpectedAnswer {
                endpoint: endpoint.url.clone(),
                status,
                content_type,
                detail,
            },
            Attempt::Network(cause) => ExchangeError::Unavailable {
                endpoint: endpoint.url.clone(),
                attempts,
                last: cause,
            },
            Attempt::Fault(f) => {
                classify_final(f, &request.role_arn, token.as_ref().map(IdToken::claims))
            }
        });
    }
}

/// The final error for a fault STS answered about the token with `claims` (when one was sent):
/// the hints name the condition keys of the token's issuer (Google's unless its `iss` says
/// otherwise).
pub(crate) fn classify_final(
    fault: StsFault,
    role: &RoleArn,
    claims: Option<&IdTokenClaims>,
) -> ExchangeError {
    let token = claims.map(IdTokenClaims::summary).unwrap_or_default();
    let issuer = claims.map_or(Issuer::Google, IdTokenClaims::issuer);
    match fault.code.as_str() {
        "AccessDenied" | "IDPRejectedClaim" => ExchangeError::Refused {
            role: role.clone(),
            code: fault.code,
            message: fault.message,
            token,
            hint: claims
                .map_or_else(|| issuer.keys_hint(), IdTokenClaims::trust_hint)
                .into(),
        },
        "InvalidIdentityToken" | "ExpiredTokenException" => {
            let hint = if fault.code == "ExpiredTokenException" {
                "the token had expired even after minting a new one: check this machine's clock, or the token file/command is serving a stale token".to_string()
            } else if claims.is_some_and(|c| crate::source::aws_oidc::is_outbound_issuer(&c.iss)) {
                crate::source::aws_oidc::NOT_FOR_AWS_STS.to_string()
            } else {
                issuer.verification_hint()
            };
            ExchangeError::TokenRejected {
                role: role.clone(),
                code: fault.code,
                message: fault.message,
                token,
                hint,
            }
        }
        _ => ExchangeError::InvalidRequest {
            role: role.to_string(),
            code: fault.code,
            message: fault.message,
        },
    }
}

/// The outcome of one attempt, before the retry loop decides.
pub(crate) enum Attempt {
    Fault(StsFault),
    Network(String),
    Source(SourceError),
    Unreadable {
        status: u16,
        content_type: String,
        detail: String,
    },
}

/// One `AssumeRoleWithWebIdentity` call, bounded by the attempt timeout (or the deadline).
async fn call_assume_role(
    budget: &Budget,
    http: &reqwest::Client,
    endpoint: &StsEndpoint,
    request: &WebIdentityRequest,
    token: &IdToken,
    host: &str,
    attempt: u32,
) -> Result<AssumedRole, Attempt> {
    let call = async {
        let session = request
            .session_name
            .clone()
            .unwrap_or_else(|| SessionName::derive(token.claims(), host));
        tracing::debug!(endpoint = %endpoint.url, role = %request.role_arn,
            session = session.as_str(), attempt, "AWS STS: sending AssumeRoleWithWebIdentity");
        let duration = request.duration_seconds.map(|d| d.to_string());
        let mut form: Vec<(String, &str)> = vec![
            ("Action".into(), "AssumeRoleWithWebIdentity"),
            ("Version".into(), STS_API_VERSION),
            ("RoleArn".into(), request.role_arn.as_str()),
            ("RoleSessionName".into(), session.as_str()),
            ("WebIdentityToken".into(), token.secret().expose()),
        ];
        if let Some(d) = &duration {
            form.push(("DurationSeconds".into(), d));
        }
        if let Some(p) = &request.policy {
            form.push(("Policy".into(), p));
        }
        for (i, arn) in request.policy_arns.iter().enumerate() {
            form.push((format!("PolicyArns.member.{}.arn", i + 1), arn));
        }
        crate::audit::recorder::note_session(session.as_str());
        let reply = post_form(http, &endpoint.url, &form).await;
        audit_call("AssumeRoleWithWebIdentity", &reply);
        let reply = reply?;
        tracing::debug!(
            status = reply.status,
            request_id = reply.request_id.as_deref().unwrap_or("none"),
            "AWS STS: answered"
        );
        if reply.status != 200 {
            return Err(parse_fault(&reply));
        }
        let mut role = parse_assume_role(&reply.body).map_err(|detail| Attempt::Unreadable {
            status: reply.status,
            content_type: reply.content_type.clone(),
            detail,
        })?;
        // STS states the expiry on its clock; everything downstream compares it with ours.
        role.credentials.expiration = role.credentials.expiration.map(|expires_at| {
            clock_skew::local_expiry(expires_at, reply.date, reply.sent_at, "AWS STS")
        });
        Ok(role)
    };
    budget
        .attempt(call)
        .await
        .unwrap_or_else(|timed_out| Err(Attempt::Network(timed_out.to_string())))
}

/// What STS answered, with what is needed to read it: the status, the content type (named when
/// the answer is not STS's), and the `Date` header with the time the request left (clock skew).
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) date: Option<OffsetDateTime>,
    pub(crate) sent_at: OffsetDateTime,
    /// `x-amzn-RequestId`: what CloudTrail records as `requestID`.
    pub(crate) request_id: Option<String>,
    pub(crate) body: String,
}

impl Reply {
    /// An XML answer with no `Date` header, for tests and fuzz targets that only have a body.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn xml(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/xml".into(),
            date: None,
            sent_at: OffsetDateTime::UNIX_EPOCH,
            request_id: None,
            body: body.into(),
        }
    }
}

/// Reports an STS call to the running exchange's audit scope ([`crate::audit::recorder`]): its
/// request id (CloudTrail's `requestID`) and, when STS refused, its error code.
pub(crate) fn audit_call(action: &str, reply: &Result<Reply, Attempt>) {
    let (request_id, status, error_code) = match reply {
        Ok(r) => (
            r.request_id.clone(),
            Some(r.status),
            (r.status != 200).then(|| match parse_fault(r) {
                Attempt::Fault(f) => f.code,
                _ => "unreadable".to_string(),
            }),
        ),
        Err(_) => (None, None, Some("network".to_string())),
    };
    crate::audit::recorder::record_call(crate::audit::UpstreamCall {
        service: crate::audit::event::AWS_STS.into(),
        action: action.into(),
        request_id,
        status,
        error_code,
    });
}

async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(String, &str)],
) -> Result<Reply, Attempt> {
    send_and_read(http.post(url).form(form)).await
}

/// Sends an STS request and reads its answer with what the exchanges need of it (status, `Date`
/// against the time it left, request id); shared by every STS call (AssumeRoleWithWebIdentity,
/// AssumeRole for chains).
pub(crate) async fn send_and_read(request: reqwest::RequestBuilder) -> Result<Reply, Attempt> {
    let sent_at = OffsetDateTime::now_utc();
    let response = request
        .send()
        .await
        .map_err(|e| Attempt::Network(error_chain(&e)))?;
    let status = response.status().as_u16();
    let content_type = content_type_of(response.headers());
    let date = clock_skew::date_header(response.headers());
    let request_id = request_id_of(response.headers());
    // A body cut short (the connection dropped mid-answer) is a network failure: retried; one
    // larger than STS ever sends is not STS.
    let body =
        crate::wire::http::read_body(response)
            .await
            .map_err(|e| match e.is_transient() {
                true => Attempt::Network(e.to_string()),
                false => Attempt::Unreadable {
                    status,
                    content_type: content_type.clone(),
                    detail: e.to_string(),
                },
            })?;
    Ok(Reply {
        status,
        content_type,
        date,
        sent_at,
        request_id,
        body,
    })
}

/// The `x-amzn-RequestId` of an answer (CloudTrail's `requestID`), when present and printable.
pub(crate) fn request_id_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
}

pub(crate) use crate::wire::http::content_type_of;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleWithWebIdentityResponse {
    assume_role_with_web_identity_result: AssumeRoleResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResult {
    subject_from_web_identity_token: Option<String>,
    audience: Option<String>,
    assumed_role_user: AssumedRoleUser,
    credentials: XmlCredentials,
    provider: Option<String>,
    packed_policy_size: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AssumedRoleUser {
    pub(crate) arn: String,
    pub(crate) assumed_role_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct XmlCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: Secret,
    pub(crate) session_token: Secret,
    pub(crate) expiration: String,
}

/// Reads STS's `AssumeRoleWithWebIdentity` XML answer (public for `benches/micro.rs`).
pub fn parse_assume_role(body: &str) -> Result<AssumedRole, String> {
    let parsed: AssumeRoleWithWebIdentityResponse = quick_xml::de::from_str(body)
        .map_err(|e| format!("not an AssumeRoleWithWebIdentity answer: {e}"))?;
    let r = parsed.assume_role_with_web_identity_result;
    let expiration = parse_timestamp(&r.credentials.expiration)?;
    Ok(AssumedRole {
        credentials: AwsCredentials {
            access_key_id: r.credentials.access_key_id,
            secret_access_key: r.credentials.secret_access_key,
            session_token: Some(r.credentials.session_token),
            expiration: Some(expiration),
        },
        assumed_role_arn: r.assumed_role_user.arn,
        assumed_role_id: r.assumed_role_user.assumed_role_id,
        subject_from_web_identity_token: r.subject_from_web_identity_token,
        audience: r.audience,
        provider: r.provider,
        packed_policy_size: r.packed_policy_size,
    })
}

/// STS writes `2026-11-23T10:00:00Z`, sometimes with fractional seconds; both are RFC 3339.
pub(crate) fn parse_timestamp(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("unreadable expiration {text:?}: {e}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponse {
    error: XmlError,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlError {
    code: String,
    #[serde(default)]
    message: String,
}

/// `<ErrorResponse><Errors><Error>`: the shape moto (and IAM-style emulators) answer STS
/// errors with, besides STS's own `<ErrorResponse><Error>`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NestedErrorResponse {
    errors: ErrorResponse,
}

pub(crate) fn parse_fault(reply: &Reply) -> Attempt {
    let (status, body) = (reply.status, reply.body.as_str());
    let parsed = quick_xml::de::from_str::<ErrorResponse>(body).or_else(|e| {
        quick_xml::de::from_str::<NestedErrorResponse>(body)
            .map(|n| n.errors)
            .map_err(|_| e)
    });
    match parsed {
        Ok(e) => Attempt::Fault(StsFault {
            status,
            code: e.error.code,
            message: e.error.message,
        }),
        Err(_) if status >= 500 || status == 429 => Attempt::Fault(StsFault {
            status,
            code: format!("HTTP {status}"),
            message: truncate(body.trim(), 200),
        }),
        Err(_) => Attempt::Unreadable {
            status,
            content_type: reply.content_type.clone(),
            detail: truncate(body.trim(), 300),
        },
    }
}

/// Asks STS who `credentials` are, signing the request with SigV4.
pub async fn fetch_caller_identity(
    http: &reqwest::Client,
    endpoint: &StsEndpoint,
    credentials: &AwsCredentials,
) -> Result<CallerIdentity, ExchangeError> {
    let body = format!("Action=GetCallerIdentity&Version={STS_API_VERSION}");
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let headers = sign_request(
        "POST",
        &endpoint.url,
        &[("content-type", content_type)],
        body.as_bytes(),
        credentials,
        &endpoint.signing_region,
        "sts",
        SystemTime::now(),
    )?;
    let mut builder = http
        .post(&endpoint.url)
        .header("content-type", content_type);
    for (name, value) in &headers {
        builder = builder.header(name.as_str(), value.expose());
    }
    let sent_at = OffsetDateTime::now_utc();
    let unavailable = |last: String| ExchangeError::Unavailable {
        endpoint: endpoint.url.clone(),
        attempts: 1,
        last,
    };
    let response = builder
        .body(body)
        .send()
        .await
        .map_err(|e| unavailable(error_chain(&e)))?;
    let status = response.status().as_u16();
    let content_type = content_type_of(response.headers());
    let date = clock_skew::date_header(response.headers());
    let request_id = request_id_of(response.headers());
    let text =
        crate::wire::http::read_body(response)
            .await
            .map_err(|e| match e.is_transient() {
                true => unavailable(e.to_string()),
                false => ExchangeError::UnexpectedAnswer {
                    endpoint: endpoint.url.clone(),
                    status,
                    content_type: content_type.clone(),
                    detail: e.to_string(),
                },
            })?;
    let reply = Reply {
        status,
        content_type,
        date,
        sent_at,
        request_id,
        body: text,
    };
    let unexpected = |detail: String| ExchangeError::UnexpectedAnswer {
        endpoint: endpoint.url.clone(),
        status,
        content_type: reply.content_type.clone(),
        detail,
    };
    if status != 200 {
        return Err(match parse_fault(&reply) {
            Attempt::Fault(f) if f.reaction() == Reaction::Retry => {
                unavailable(format!("{} ({})", f.code, f.message))
            }
            Attempt::Fault(f) => ExchangeError::CallerIdentityRefused {
                endpoint: endpoint.url.clone(),
                code: f.code,
                message: f.message,
            },
            _ => unexpected(truncate(&reply.body, 300)),
        });
    }
    parse_caller_identity(&reply.body).map_err(unexpected)
}

/// `<GetCallerIdentityResponse><GetCallerIdentityResult>...`: who the credentials are.
pub(crate) fn parse_caller_identity(body: &str) -> Result<CallerIdentity, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response {
        get_caller_identity_result: CallerIdentity,
    }
    quick_xml::de::from_str::<Response>(body)
        .map(|r| r.get_caller_identity_result)
        .map_err(|e| format!("not a GetCallerIdentity answer: {e}"))
}

/// Signs a request with SigV4 ([`crate::wire::sigv4::sign_request`]) and returns the headers
/// to add: `authorization`, `x-amz-date`, `x-amz-security-token` when present. The values are
/// secrets because the security token is one.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, Secret)>, ExchangeError> {
    crate::wire::sigv4::sign_request(
        method,
        url,
        headers,
        body,
        credentials,
        region,
        service,
        time,
    )
    .map_err(|e| ExchangeError::Signing(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked() {
        let arn = RoleArn::parse("arn:aws:iam::123456789012:role/path/Deploy").unwrap();
        assert_eq!(arn.account(), "123456789012");
        assert_eq!(arn.name(), "Deploy");
        assert!(RoleArn::parse("arn:aws:iam::12345:role/x").is_err());
        assert!(RoleArn::parse("arn:aws:s3:::bucket").is_err());
        assert!(RoleArn::parse("Deploy").is_err());
        assert!(arn.is_assumed_by("arn:aws:sts::123456789012:assumed-role/Deploy/me@host"));
        assert!(!arn.is_assumed_by("arn:aws:sts::123456789012:assumed-role/Deployer/me"));
        assert!(!arn.is_assumed_by("arn:aws:sts::210987654321:assumed-role/Deploy/me"));
        assert!(!arn.is_assumed_by("arn:aws-cn:sts::123456789012:assumed-role/Deploy/me"));
        assert!(!arn.is_assumed_by("arn:aws:sts::123456789012:assumed-role/Deploy/"));
    }

    fn claims(email: Option<&str>, sub: &str) -> IdTokenClaims {
        IdTokenClaims {
            iss: "https://accounts.google.com".into(),
            aud: "sts.amazonaws.com".into(),
            azp: Some(sub.into()),
            sub: sub.into(),
            email: email.map(str::to_string),
            exp: 0,
            iat: None,
        }
    }

    /// A refusal's hint names the keys of the token's issuer: Google's `accounts.google.com:*`
    /// only for Google tokens, `HOST/PATH:aud`/`:sub` for an EKS cluster's.
    #[test]
    fn refusal_hints_follow_the_tokens_issuer() {
        use crate::policy::issuer::Audience;
        let role = RoleArn::parse("arn:aws:iam::123456789012:role/Deploy").unwrap();
        let denied = || StsFault {
            status: 403,
            code: "AccessDenied".into(),
            message: "Not authorized".into(),
        };
        let google = classify_final(denied(), &role, Some(&claims(None, "1"))).to_string();
        assert!(google.contains("accounts.google.com:oaud"), "{google}");
        let eks = IdTokenClaims {
            iss: "https://oidc.eks.us-east-1.amazonaws.com/id/ABC".into(),
            aud: Audience::Many(vec!["sts.amazonaws.com".into()]),
            azp: None,
            ..claims(None, "system:serviceaccount:default:deployer")
        };
        let text = classify_final(denied(), &role, Some(&eks)).to_string();
        assert!(
            text.contains("oidc.eks.us-east-1.amazonaws.com/id/ABC:sub"),
            "{text}"
        );
        assert!(text.contains("aud=[sts.amazonaws.com]"), "{text}");
        assert!(!text.contains("accounts.google.com"), "{text}");
        let invalid = StsFault {
            status: 400,
            code: "InvalidIdentityToken".into(),
            message: "bad".into(),
        };
        let text = classify_final(invalid, &role, Some(&eks)).to_string();
        assert!(
            text.contains("IAM OIDC provider for https://oidc.eks"),
            "{text}"
        );
        assert!(!text.contains("accounts.google.com"), "{text}");
    }

    #[test]
    fn derived_session_names_say_who_and_where_within_sts_rules() {
        let c = claims(Some("deployer@p.iam.gserviceaccount.com"), "1");
        assert_eq!(
            SessionName::derive(&c, "build-7.internal").as_str(),
            "deployer@build-7"
        );
        let c = claims(None, "1234567890");
        assert_eq!(
            SessionName::derive(&c, "h o/st").as_str(),
            "1234567890@h-o-st"
        );
        let long = claims(Some(&format!("{}@x", "a".repeat(100))), "1");
        let name = SessionName::derive(&long, "host");
        assert_eq!(name.as_str().len(), 64);
        assert!(SessionName::parse(name.as_str()).is_ok());
        assert_eq!(
            SessionName::derive(&claims(None, "7"), "").as_str(),
            "7-keyless"
        );
    }

    #[test]
    fn user_session_names_are_validated() {
        assert!(SessionName::parse("ok-name").is_ok());
        assert!(SessionName::parse("x").is_err());
        assert!(SessionName::parse("has space").is_err());
    }

    #[test]
    fn long_session_names_keep_their_start_and_end() {
        let pod = "payments-production-eu-west-1.checkout-api-worker-7d9c8b6f5d-x2k9f";
        let name = SessionName::parse(pod).unwrap();
        assert_eq!(
            name.as_str(),
            "payments-production-eu-west-1.c..out-api-worker-7d9c8b6f5d-x2k9f"
        );
        assert_eq!(name.as_str().len(), 64);
        assert_eq!(
            SessionName::parse(&"a".repeat(64)).unwrap().as_str(),
            "a".repeat(64)
        );
        let long = SessionName::parse(&format!("{}.{}", "n".repeat(63), "p".repeat(253))).unwrap();
        assert_eq!(
            long.as_str(),
            format!("{}..{}", "n".repeat(31), "p".repeat(31))
        );
        assert!(SessionName::parse(&"a b".repeat(30)).is_err());
    }

    #[test]
    fn endpoint_prefers_configured_then_region_then_global() {
        let region = |r: &str| Region::parse(r).unwrap();
        let e = StsEndpoint::from_parts(
            Some(UpstreamUrl::parse("http://127.0.0.1:5000").unwrap()),
            Some(&region("eu-west-1")),
        );
        assert_eq!(e.url, "http://127.0.0.1:5000/");
        assert_eq!(e.signing_region, "eu-west-1");
        let e = StsEndpoint::from_parts(None, Some(&region("eu-west-1")));
        assert_eq!(e.url, "https://sts.eu-west-1.amazonaws.com/");
        let e = StsEndpoint::from_parts(None, Some(&region("cn-north-1")));
        assert_eq!(e.url, "https://sts.cn-north-1.amazonaws.com.cn/");
        let e = StsEndpoint::from_parts(None, None);
        assert_eq!(e.url, "https://sts.amazonaws.com/");
        assert_eq!(e.signing_region, "us-east-1");
    }

    #[test]
    fn faults_are_classified_as_design_says() {
        let f = |status, code: &str| StsFault {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(f(400, "IDPCommunicationError").reaction(), Reaction::Retry);
        assert_eq!(f(400, "Throttling").reaction(), Reaction::Retry);
        assert_eq!(f(503, "Whatever").reaction(), Reaction::Retry);
        assert_eq!(f(400, "InvalidIdentityToken").reaction(), Reaction::Remint);
        assert_eq!(f(400, "ExpiredTokenException").reaction(), Reaction::Remint);
        assert_eq!(f(403, "AccessDenied").reaction(), Reaction::Fail);
        assert_eq!(f(403, "IDPRejectedClaim").reaction(), Reaction::Fail);
        assert_eq!(f(400, "MalformedPolicyDocument").reaction(), Reaction::Fail);
    }

    #[test]
    fn parses_the_aws_documented_answer() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</SubjectFromWebIdentityToken>
    <Audience>client.5498841531868486423.1548@apps.example.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app1</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2014-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <SourceIdentity>SourceIdentityValue</SourceIdentity>
    <Provider>www.amazon.com</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;
        let role = parse_assume_role(xml).unwrap();
        assert_eq!(role.credentials.access_key_id, "ASgeIAIOSFODNN7EXAMPLE");
        assert_eq!(
            role.assumed_role_arn,
            "arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1"
        );
        assert_eq!(
            crate::credentials::format_expiration(role.credentials.expiration.unwrap()),
            "2014-10-24T23:00:23Z"
        );
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/xml".into(),
            date: None,
            sent_at: OffsetDateTime::now_utc(),
            request_id: None,
            body: body.into(),
        }
    }

    #[test]
    fn parses_error_answers() {
        let xml = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error>
  <RequestId>r</RequestId></ErrorResponse>"#;
        match parse_fault(&reply(403, xml)) {
            Attempt::Fault(f) => {
                assert_eq!(f.code, "AccessDenied");
                assert!(f.message.starts_with("Not authorized"));
            }
            _ => panic!("expected a fault"),
        }
        assert!(
            matches!(parse_fault(&reply(502, "<html>bad gateway")), Attempt::Fault(f) if f.reaction() == Reaction::Retry)
        );
        let moto = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: x is not authorized to perform: sts:AssumeRole</Message><Type>Sender</Type></Error></Errors></ErrorResponse>";
        match parse_fault(&reply(403, moto)) {
            Attempt::Fault(f) => assert_eq!(f.code, "AccessDenied"),
            _ => panic!("moto's error shape is a fault"),
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::lab::aws_sts::assumed_role_xml;
    use crate::lab::state::IssuedAwsCredentials;
    use crate::lab::sts_xml::{element, error_body, success_body};
    use proptest::prelude::*;

    /// Text STS could put in an element: any characters but control ones (XML 1.0 cannot
    /// carry most of them), not starting or ending with white space (readers trim it).
    fn xml_text() -> impl Strategy<Value = String> {
        "[^\\p{Cc}\\s]([^\\p{Cc}]{0,40}[^\\p{Cc}\\s])?"
    }

    fn expiration() -> impl Strategy<Value = OffsetDateTime> {
        // Years 0000 to 9999: what RFC 3339 (and so STS's answer) can say.
        (-62_167_219_200i64..=253_402_300_799i64)
            .prop_map(|t| OffsetDateTime::from_unix_timestamp(t).unwrap())
    }

    proptest! {
        /// The lab writes an AssumeRoleWithWebIdentity answer for generated credentials; we
        /// read back exactly those credentials, escaping included.
        #[test]
        fn our_sts_answers_parse_back_to_the_same_values(
            key in "[A-Z0-9]{16,32}",
            secret in xml_text(),
            token in xml_text(),
            expiration in expiration(),
            arn in xml_text(),
            user_id in xml_text(),
            subject in xml_text(),
            audience in xml_text(),
        ) {
            let issued = IssuedAwsCredentials {
                secret_access_key: Secret::new(secret.clone()),
                // AssumeRoleWithWebIdentity always answers with a session token.
                session_token: Some(Secret::new(token.clone())),
                expiration: Some(expiration),
                arn: arn.clone(),
                user_id: user_id.clone(),
                session: crate::lab::state::LabSessionContext::default(),
            };
            let mut result = element(4, "SubjectFromWebIdentityToken", &subject);
            result.push_str(&element(4, "Audience", &audience));
            result.push_str(&assumed_role_xml(&key, &issued));
            result.push_str(&element(4, "Provider", "accounts.google.com"));
            let body = success_body("AssumeRoleWithWebIdentity", &result, "req-1");
            let role = parse_assume_role(&body).unwrap();
            prop_assert_eq!(role.credentials.access_key_id, key);
            prop_assert_eq!(role.credentials.secret_access_key.expose(), secret.as_str());
            prop_assert_eq!(role.credentials.session_token.as_ref().map(|t| t.expose().to_string()), Some(token));
            prop_assert_eq!(role.credentials.expiration, Some(expiration));
            prop_assert_eq!(role.assumed_role_arn, arn);
            prop_assert_eq!(role.assumed_role_id, user_id);
            prop_assert_eq!(role.subject_from_web_identity_token, Some(subject));
            prop_assert_eq!(role.audience, Some(audience));
        }

        /// The lab's error answers read back as the same code and message.
        #[test]
        fn our_error_answers_parse_back(status in 400u16..600, code in xml_text(), message in xml_text()) {
            match parse_fault(&Reply::xml(status, error_body(status, &code, &message, "req-1"))) {
                Attempt::Fault(f) => {
                    prop_assert_eq!(f.code, code);
                    prop_assert_eq!(f.message, message);
                    prop_assert_eq!(f.status, status);
                }
                _ => prop_assert!(false, "not read as a fault"),
            }
        }

        /// Any answer body: credentials, a fault or an explanation, never a panic.
        #[test]
        fn any_answer_is_read_without_panicking(body in any::<String>(), status in 100u16..600) {
            let _ = parse_assume_role(&body);
            let _ = parse_fault(&Reply::xml(status, body.clone()));
            let _ = parse_caller_identity(&body);
        }
    }
}
