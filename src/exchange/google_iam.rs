//! IAM Credentials: a federated (or any) Google token becomes a service account's access token
//! or ID token.
//!
//! Federation alone gives a principal that many Google APIs do not accept directly; impersonating
//! a service account bound with `roles/iam.workloadIdentityUser` gives a token every API takes.

use serde::Deserialize;
use time::OffsetDateTime;

use crate::credentials::GoogleAccessToken;
use crate::exchange::clock_skew;
use crate::exchange::retry::TimedOut;
use crate::exchange::throttle;
use crate::secret::Secret;
use crate::wire::iam_credentials::{
    call_iam_credentials, delegate_resource_names, fetch_generated_id_token, IamAnswer,
    IamCallError,
};

/// What to ask `generateAccessToken` for.
#[derive(Clone, Debug)]
pub struct Impersonation {
    pub service_account: String,
    pub scopes: Vec<String>,
    /// Seconds; above 3600 needs the org policy
    /// `constraints/iam.allowServiceAccountCredentialLifetimeExtension`.
    pub lifetime: Option<u32>,
    /// Intermediate service accounts of a delegation chain, in order.
    pub delegates: Vec<String>,
}

/// What went wrong at IAM Credentials, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// IAM refused (missing binding, unknown account, lifetime policy).
    #[error("IAM Credentials refused to {action} for {service_account} ({status}): {message}\n  hint: {hint}")]
    Refused {
        action: &'static str,
        service_account: String,
        status: u16,
        message: String,
        hint: String,
    },
    /// IAM Credentials could not be reached or kept failing (5xx, 429, no answer in time).
    #[error(
        "IAM Credentials at {url} is unavailable after {}: {cause}\n  \
             hint: this may pass, try again later; if it persists, check that this machine reaches \
             {url} (proxy, firewall, DNS) and --iamcredentials-url; --attempt-timeout and \
             --deadline allow more time",
        crate::exchange::retry::count_attempts(.attempts)
    )]
    Unavailable {
        url: String,
        attempts: u32,
        cause: String,
    },
    /// IAM Credentials answered something that is not its answer.
    #[error(
        "IAM Credentials at {url} answered {status} with something unexpected: {detail}\n  \
             hint: check that --iamcredentials-url names IAM Credentials \
             (https://iamcredentials.googleapis.com); a proxy or captive portal between here and \
             Google answers like this too"
    )]
    UnexpectedAnswer {
        url: String,
        status: u16,
        detail: String,
    },
}

impl IamError {
    /// Retrying later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Refused { status, .. } => *status >= 500 || *status == 429,
            Self::UnexpectedAnswer { .. } => false,
        }
    }

    /// The error for an attempt that got no answer in time.
    pub fn timed_out(url: &str, timed_out: TimedOut) -> Self {
        Self::Unavailable {
            url: url.to_string(),
            attempts: 1,
            cause: timed_out.to_string(),
        }
    }

    /// The same error, saying how many attempts were made in all.
    pub fn after_attempts(self, attempts: u32) -> Self {
        match self {
            Self::Unavailable { url, cause, .. } => Self::Unavailable {
                url,
                attempts,
                cause,
            },
            other => other,
        }
    }

    fn from_call(
        action: &'static str,
        service_account: &str,
        principal: &str,
        e: IamCallError,
    ) -> Self {
        match e.status {
            None => Self::Unavailable {
                url: e.url,
                attempts: 1,
                cause: e.message,
            },
            // Throttled or failing: worth retrying, and nothing to do with bindings.
            Some(status) if status >= 500 || status == 429 => Self::Unavailable {
                url: e.url,
                attempts: 1,
                cause: format!("HTTP {status}: {}", e.message),
            },
            Some(status) if e.unreadable => Self::UnexpectedAnswer {
                url: e.url,
                status,
                detail: e.message,
            },
            Some(status) => {
                let hint = if e
                    .message
                    .contains("allowServiceAccountCredentialLifetimeExtension")
                    || e.message.to_ascii_lowercase().contains("lifetime")
                {
                    "lifetimes above 3600 s need the org policy constraints/iam.allowServiceAccountCredentialLifetimeExtension to list this service account; or ask for --lifetime 3600".to_string()
                } else {
                    format!(
                        "{principal} needs roles/iam.workloadIdentityUser (federated principals) or roles/iam.serviceAccountTokenCreator on {service_account}; for a pool, bind principalSet://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/attribute.aws_role/ROLE_ARN"
                    )
                };
                Self::Refused {
                    action,
                    service_account: service_account.to_string(),
                    status,
                    message: e.message,
                    hint,
                }
            }
        }
    }
}

/// Reports an IAM Credentials call of the target flow to the running exchange's audit scope
/// (the `impersonate:` source's own generateIdToken is the source's, not reported). Google sends
/// no request id; a refusal is recorded with the canonical code its HTTP status stands for.
fn audit_call(action: &str, failed: Option<&IamCallError>) {
    let (status, error_code) = match failed {
        None => (Some(200), None),
        Some(e) => (
            e.status,
            Some(
                match e.status {
                    None => "network",
                    Some(400) => "INVALID_ARGUMENT",
                    Some(401) => "UNAUTHENTICATED",
                    Some(403) => "PERMISSION_DENIED",
                    Some(404) => "NOT_FOUND",
                    Some(429) => "RESOURCE_EXHAUSTED",
                    Some(503) => "UNAVAILABLE",
                    Some(_) if e.unreadable => "unreadable",
                    Some(_) => "INTERNAL",
                }
                .to_string(),
            ),
        ),
    };
    crate::audit::recorder::record_call(crate::audit::UpstreamCall {
        service: crate::audit::event::IAM_CREDENTIALS.into(),
        action: action.into(),
        request_id: None,
        status,
        error_code,
    });
}

/// `generateAccessToken` for the service account, authorised by `bearer` (e.g. the federated
/// token). `principal` names the caller in a refusal.
pub async fn generate_access_token(
    http: &reqwest::Client,
    iamcredentials_url: &str,
    bearer: &Secret,
    request: &Impersonation,
    principal: &str,
) -> Result<GoogleAccessToken, IamError> {
    let mut body = serde_json::json!({ "scope": request.scopes });
    if let Some(lifetime) = request.lifetime {
        body["lifetime"] = serde_json::json!(format!("{lifetime}s"));
    }
    if !request.delegates.is_empty() {
        body["delegates"] = serde_json::json!(delegate_resource_names(&request.delegates));
    }
    let from_call = |e| {
        IamError::from_call(
            "mint an access token",
            &request.service_account,
            principal,
            e,
        )
    };
    throttle::wait(iamcredentials_url, throttle::MOST_BACKOFF * 2).await;
    let answer: Result<IamAnswer<AccessTokenAnswer>, _> = call_iam_credentials(
        http,
        iamcredentials_url,
        bearer,
        &request.service_account,
        "generateAccessToken",
        &body,
    )
    .await;
    note_throttling(iamcredentials_url, answer.as_ref().err());
    audit_call("GenerateAccessToken", answer.as_ref().err());
    let answer = answer.map_err(from_call)?;
    let token = answer
        .value
        .into_token()
        .map_err(|detail| IamError::UnexpectedAnswer {
            url: iamcredentials_url.to_string(),
            status: 200,
            detail,
        })?;
    Ok(GoogleAccessToken {
        access_token: token.access_token,
        // Google states the expiry on its clock; everything downstream compares it with ours.
        expires_at: clock_skew::local_expiry(
            token.expires_at,
            answer.date,
            answer.sent_at,
            "IAM Credentials",
        ),
    })
}

/// `generateAccessToken`'s answer: `{"accessToken", "expireTime"}` (RFC 3339).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccessTokenAnswer {
    access_token: Secret,
    expire_time: String,
}

impl AccessTokenAnswer {
    /// The token and its expiry; an error message when `expireTime` is not a time.
    pub(crate) fn into_token(self) -> Result<GoogleAccessToken, String> {
        let expires_at = OffsetDateTime::parse(
            &self.expire_time,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| format!("unreadable expireTime: {e}"))?;
        Ok(GoogleAccessToken {
            access_token: self.access_token,
            expires_at,
        })
    }
}

/// `generateIdToken` for the service account (the same call the `impersonate:` token source
/// makes), authorised by `bearer`.
pub async fn generate_id_token(
    http: &reqwest::Client,
    iamcredentials_url: &str,
    bearer: &Secret,
    service_account: &str,
    audience: &str,
    delegates: &[String],
    principal: &str,
) -> Result<Secret, IamError> {
    throttle::wait(iamcredentials_url, throttle::MOST_BACKOFF * 2).await;
    let token = fetch_generated_id_token(
        http,
        iamcredentials_url,
        bearer,
        service_account,
        audience,
        true,
        delegates,
    )
    .await;
    note_throttling(iamcredentials_url, token.as_ref().err());
    audit_call("GenerateIdToken", token.as_ref().err());
    token.map_err(|e| IamError::from_call("mint an ID token", service_account, principal, e))
}

/// A 429 (`RESOURCE_EXHAUSTED`) makes every call of the process to IAM Credentials back off
/// together (`throttle`); any other answer resets the growth; no answer says nothing.
fn note_throttling(url: &str, failed: Option<&IamCallError>) {
    match failed.map(|e| e.status) {
        Some(Some(429)) => throttle::throttled(url),
        None | Some(Some(_)) => throttle::answered(url),
        Some(None) => {}
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// generateAccessToken's answer for any token and time of years 0 to 9999 reads back.
        #[test]
        fn access_token_answers_read_back(
            token in any::<String>(),
            at in -62_167_219_200i64..=253_402_300_799i64,
            nanos in 0u32..1_000_000_000,
        ) {
            let expires_at = OffsetDateTime::from_unix_timestamp(at).unwrap().replace_nanosecond(nanos).unwrap();
            let written = expires_at.format(&time::format_description::well_known::Rfc3339).unwrap();
            let body = serde_json::json!({"accessToken": token, "expireTime": written}).to_string();
            let answer: AccessTokenAnswer = serde_json::from_str(&body).unwrap();
            let read = answer.into_token().unwrap();
            prop_assert_eq!(read.access_token.expose(), token.as_str());
            prop_assert_eq!(read.expires_at, expires_at);
        }

        /// Any JSON that has the two fields: a token or a message, never a panic.
        #[test]
        fn any_expire_time_is_read_or_refused(token in any::<String>(), expire in any::<String>()) {
            let body = serde_json::json!({"accessToken": token, "expireTime": expire}).to_string();
            let answer: AccessTokenAnswer = serde_json::from_str(&body).unwrap();
            let _ = answer.into_token();
        }
    }
}
