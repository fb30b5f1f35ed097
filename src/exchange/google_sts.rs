//! Google STS: a subject — AWS credentials or an OIDC token — becomes a federated Google access
//! token.
//!
//! A JWT (Kubernetes, GitHub Actions, AWS outbound federation, a file or a command) is sent as
//! it is, with the subject token type `urn:ietf:params:oauth:token-type:jwt`; the provider's
//! issuer, allowed audiences, attribute mapping and condition decide. The AWS identity is proven the way Google's own libraries prove it: a SigV4-signed
//! `GetCallerIdentity` request that Google STS replays against AWS. We sign the
//! `x-goog-cloud-target-resource` header (as the Go and Rust libraries do; google-auth-python
//! adds it after signing) so the request cannot be replayed against another pool, and serialise
//! the request exactly as google-auth-python does (sorted keys, `urllib.parse.quote`), so the
//! bytes can be compared with the reference library's.

use std::time::SystemTime;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::credentials::{AwsCredentials, GoogleAccessToken};
use crate::exchange::aws_sts::{sign_request, ExchangeError};
use crate::exchange::retry::RetryPolicy;
use crate::secret::Secret;
use crate::source::IdToken;
use crate::types::Region;
use crate::wire::{error_chain, truncate};

/// Where Google STS lives when no flag or config says otherwise.
pub const DEFAULT_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";
/// The subject token type of a signed GetCallerIdentity request.
pub const AWS_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
/// The subject token type of an OIDC token (RFC 8693): what an OIDC provider accepts.
pub const JWT_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 token exchange.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// We ask for an OAuth access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The scope most Google APIs accept; the default for `--scopes`.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The header that binds the signed request to one workload identity provider.
pub const TARGET_RESOURCE_HEADER: &str = "x-goog-cloud-target-resource";

/// What Python's `urllib.parse.quote` leaves alone: letters, digits, `_.-~` and `/`.
const PYTHON_QUOTE_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// The URL Google STS replays: GetCallerIdentity at the caller's regional AWS STS endpoint.
/// It always names the real AWS host (Google calls AWS, not us), whatever endpoint overrides
/// the local tools use.
pub fn regional_verification_url(region: &Region) -> String {
    format!(
        "https://{}?Action=GetCallerIdentity&Version=2011-06-15",
        region.sts_host()
    )
}

/// What Google STS is given to trade, and so which `subject_token_type` it is sent with.
#[derive(Clone, Debug)]
pub enum SubjectToken {
    /// A serialised, signed GetCallerIdentity request: proof of an AWS identity (an AWS
    /// provider; `urn:ietf:params:aws:token-type:aws4_request`).
    Aws4Request(Secret),
    /// An OIDC token, sent as it is (an OIDC provider; `urn:ietf:params:oauth:token-type:jwt`).
    Jwt(IdToken),
}

impl SubjectToken {
    /// What goes into the `subject_token` form field (the URL-encoded JSON, or the JWT).
    pub fn secret(&self) -> &Secret {
        match self {
            Self::Aws4Request(secret) => secret,
            Self::Jwt(token) => token.secret(),
        }
    }

    /// The `subject_token_type` that goes with it.
    pub fn token_type(&self) -> &'static str {
        match self {
            Self::Aws4Request(_) => AWS_SUBJECT_TOKEN_TYPE,
            Self::Jwt(_) => JWT_SUBJECT_TOKEN_TYPE,
        }
    }
}

/// Signs GetCallerIdentity for `region` with `credentials` at `time`, bound to `audience`, and
/// serialises it as `{"headers":[{"key","value"}...],"method":"POST","url":...}`.
pub fn build_subject_token(
    credentials: &AwsCredentials,
    region: &Region,
    audience: &str,
    time: SystemTime,
) -> Result<SubjectToken, ExchangeError> {
    let url = regional_verification_url(region);
    let signed = sign_request(
        "POST",
        &url,
        &[(TARGET_RESOURCE_HEADER, audience)],
        b"",
        credentials,
        region.as_str(),
        "sts",
        time,
    )?;
    let host = url
        .trim_start_matches("https://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .to_string();
    let mut headers: Vec<(String, String)> = signed
        .iter()
        .map(|(name, value)| {
            let key = if name.eq_ignore_ascii_case("authorization") {
                "Authorization".to_string()
            } else {
                name.to_ascii_lowercase()
            };
            (key, value.expose().to_string())
        })
        .collect();
    headers.push(("host".into(), host));
    headers.push((TARGET_RESOURCE_HEADER.into(), audience.to_string()));
    // Python's sorted(): byte order, so "Authorization" comes before the lower-case names.
    headers.sort();
    let headers: Vec<serde_json::Value> = headers
        .into_iter()
        .map(|(key, value)| serde_json::json!({ "key": key, "value": value }))
        .collect();
    // Keys in sorted order, as json.dumps(sort_keys=True) writes them.
    let json = format!(
        "{{\"headers\":{},\"method\":\"POST\",\"url\":{}}}",
        serde_json::Value::Array(headers),
        serde_json::Value::String(url)
    );
    Ok(SubjectToken::Aws4Request(Secret::new(quote_like_python(
        &json,
    ))))
}

/// Percent-encodes as Python's `urllib.parse.quote` does (the reference libraries' encoding).
pub fn quote_like_python(text: &str) -> String {
    utf8_percent_encode(text, PYTHON_QUOTE_SAFE).to_string()
}

/// What Google STS is asked for.
#[derive(Clone, Debug)]
pub struct TokenExchange {
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`.
    pub audience: String,
    pub scopes: Vec<String>,
    pub subject_token: SubjectToken,
}

impl TokenExchange {
    /// The form google-auth sends, field for field (empty fields left out, as it does).
    pub fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT.to_string()),
            ("audience", self.audience.clone()),
            ("scope", self.scopes.join(" ")),
            ("requested_token_type", ACCESS_TOKEN_TYPE.to_string()),
            (
                "subject_token",
                self.subject_token.secret().expose().to_string(),
            ),
            (
                "subject_token_type",
                self.subject_token.token_type().to_string(),
            ),
        ];
        form.retain(|(_, v)| !v.is_empty());
        form
    }
}

/// What went wrong at Google STS, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GoogleStsError {
    /// Google refused the AWS identity (attribute condition, provider, account).
    #[error("Google STS refused the AWS identity {principal} for {audience} ({code}: {description})\n  hint: the usual causes are the provider's attribute condition (it must admit this ARN; assumed roles appear without the session name as attribute.aws_role), the provider's AWS account id, or a subject token signed for another region or audience")]
    Refused {
        audience: String,
        principal: String,
        code: String,
        description: String,
    },

    /// Google refused an OIDC token: the provider's issuer, allowed audiences, attribute mapping
    /// or condition did not accept it.
    #[error("Google STS refused the token from {origin} ({token}) for {audience} ({code}: {description})\n  \
             hint: the OIDC provider must name the token's iss as its issuer URI (oidc.issuerUri) and list one of the token's audiences in allowedAudiences (left empty, it accepts the provider's own name, https://iam.googleapis.com/projects/N/.../providers/X or //iam.googleapis.com/projects/N/.../providers/X: keyless asks for the former unless --token-audience says otherwise); its attribute condition must be true for the token's claims, and google.subject (default assertion.sub) must be at most 127 bytes")]
    RefusedJwt {
        audience: String,
        origin: String,
        /// The claims Google matched: `iss=... aud=... sub=...`.
        token: String,
        code: String,
        description: String,
    },

    /// The pool or provider in the audience does not exist (or is disabled).
    #[error("Google STS does not know the audience {audience} ({code}: {description})\n  hint: the audience is //iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER, with the project *number*")]
    UnknownAudience {
        audience: String,
        code: String,
        description: String,
    },

    /// Google STS kept failing in a way that may pass; every attempt (or the deadline) was used.
    #[error(
        "Google STS at {url} is unavailable after {}: {last}\n  \
             hint: this may pass, try again later; if it persists, check that this machine reaches \
             {url} (proxy, firewall, DNS) and --token-url; --attempt-timeout and --deadline allow \
             more time",
        crate::exchange::retry::count_attempts(.attempts)
    )]
    Unavailable {
        url: String,
        attempts: u32,
        last: String,
    },

    /// Google STS answered something we cannot read: not Google STS, or something in between
    /// rewrote it.
    #[error(
        "Google STS at {url} answered {status} ({content_type}) with something that is not \
             a token exchange answer: {detail}\n  hint: check that --token-url names Google STS \
             (https://sts.googleapis.com/v1/token); a proxy or captive portal between here and \
             Google answers like this too"
    )]
    UnexpectedAnswer {
        url: String,
        status: u16,
        content_type: String,
        detail: String,
    },
}

impl GoogleStsError {
    /// Retrying later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The other cloud refused the identity.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. } | Self::RefusedJwt { .. } | Self::UnknownAudience { .. }
        )
    }
}

/// One failed attempt, before the retry loop decides.
pub(crate) enum StsAttempt {
    Transient(String),
    Final(GoogleStsError),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Exchanges the subject token at `token_url`, retrying what may pass. `principal` names the
/// AWS identity (or the token's source) in a refusal (the caller may look it up; pass what is
/// known).
pub async fn exchange_subject_token(
    http: &reqwest::Client,
    token_url: &str,
    request: &TokenExchange,
    principal: &str,
    retry: &RetryPolicy,
) -> Result<GoogleAccessToken, GoogleStsError> {
    let form = request.form();
    let outcome = retry
        .run(
            || post_exchange(http, token_url, &form, request, principal),
            |e| matches!(e, StsAttempt::Transient(_)),
            |timed_out| StsAttempt::Transient(timed_out.to_string()),
        )
        .await;
    outcome.map_err(|(error, attempts)| match error {
        StsAttempt::Final(GoogleStsError::Refused {
            audience,
            principal,
            code,
            description,
        }) => match &request.subject_token {
            SubjectToken::Jwt(token) => GoogleStsError::RefusedJwt {
                audience,
                origin: principal,
                token: format!(
                    "iss={} aud={} sub={}",
                    token.claims().iss,
                    token.claims().aud,
                    token.claims().sub
                ),
                code,
                description,
            },
            SubjectToken::Aws4Request(_) => GoogleStsError::Refused {
                audience,
                principal,
                code,
                description,
            },
        },
        StsAttempt::Final(e) => e,
        StsAttempt::Transient(last) => GoogleStsError::Unavailable {
            url: token_url.to_string(),
            attempts,
            last,
        },
    })
}

async fn post_exchange(
    http: &reqwest::Client,
    token_url: &str,
    form: &[(&'static str, String)],
    request: &TokenExchange,
    principal: &str,
) -> Result<GoogleAccessToken, StsAttempt> {
    // Another exchange of this process was throttled: wait with it (within this attempt's
    // timeout; see `throttle`).
    crate::exchange::throttle::wait(token_url, crate::exchange::throttle::MOST_BACKOFF * 2).await;
    let response = http.post(token_url).form(form).send().await.map_err(|e| {
        audit_call(None, None);
        StsAttempt::Transient(error_chain(&e))
    })?;
    let status = response.status().as_u16();
    // 429 is Google's RESOURCE_EXHAUSTED: every exchange of the process to it backs off.
    if status == 429 {
        crate::exchange::throttle::throttled(token_url);
    } else {
        crate::exchange::throttle::answered(token_url);
    }
    let content_type = crate::exchange::aws_sts::content_type_of(response.headers());
    // A body cut short (the connection dropped mid-answer) is no answer: retried; one larger
    // than Google STS ever sends is not Google STS.
    let body =
        crate::wire::http::read_body(response)
            .await
            .map_err(|e| match e.is_transient() {
                true => StsAttempt::Transient(e.to_string()),
                false => StsAttempt::Final(GoogleStsError::UnexpectedAnswer {
                    url: token_url.to_string(),
                    status,
                    content_type: content_type.clone(),
                    detail: e.to_string(),
                }),
            })?;
    audit_call(
        Some(status),
        (status != 200).then(|| oauth_error_code(&body)),
    );
    read_exchange_answer(
        status,
        &content_type,
        &body,
        token_url,
        &request.audience,
        principal,
        OffsetDateTime::now_utc(),
    )
}

/// Reports a token exchange call to the running exchange's audit scope: Google sends no request
/// id, so the status and the OAuth error code are what there is to record.
fn audit_call(status: Option<u16>, error_code: Option<String>) {
    crate::audit::recorder::record_call(crate::audit::UpstreamCall {
        service: crate::audit::event::GOOGLE_STS.into(),
        action: "ExchangeToken".into(),
        request_id: None,
        status,
        error_code: error_code.or_else(|| status.is_none().then(|| "network".to_string())),
    });
}

/// The OAuth `error` of a refusal (`invalid_grant`, `unauthorized_client`…), else `HTTP n`.
fn oauth_error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .filter(|code| {
            code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .unwrap_or_else(|| "unreadable".to_string())
}

/// What Google STS's answer (`status`, `content_type`, `body`) means, at `now`: the token, a
/// refusal to pass on, or a failure worth retrying.
pub(crate) fn read_exchange_answer(
    status: u16,
    content_type: &str,
    body: &str,
    token_url: &str,
    audience: &str,
    principal: &str,
    now: OffsetDateTime,
) -> Result<GoogleAccessToken, StsAttempt> {
    let unexpected = |detail: String| {
        StsAttempt::Final(GoogleStsError::UnexpectedAnswer {
            url: token_url.to_string(),
            status,
            content_type: content_type.to_string(),
            detail,
        })
    };
    if status == 200 {
        // Never quote a 200 answer: what it holds may be (part of) a token.
        let parsed: TokenResponse = serde_json::from_str(body).map_err(|e| {
            unexpected(format!(
                "no access token in the {} bytes answered ({e})",
                body.len()
            ))
        })?;
        let lifetime = parsed.expires_in.unwrap_or(3600);
        // An absurd lifetime (past year 9999) is an answer we cannot use, not a crash.
        let expires_at = now
            .checked_add(time::Duration::seconds(lifetime))
            .ok_or_else(|| unexpected(format!("expires_in {lifetime} is not a token lifetime")))?;
        return Ok(GoogleAccessToken {
            access_token: parsed.access_token,
            expires_at,
        });
    }
    if status >= 500 || status == 429 {
        return Err(StsAttempt::Transient(format!(
            "HTTP {status}: {}",
            truncate(body, 200)
        )));
    }
    let Ok(oauth) = serde_json::from_str::<OAuthError>(body) else {
        return Err(unexpected(truncate(body, 300)));
    };
    Err(StsAttempt::Final(match oauth.error.as_str() {
        "invalid_target" => GoogleStsError::UnknownAudience {
            audience: audience.to_string(),
            code: oauth.error,
            description: oauth.error_description,
        },
        _ => GoogleStsError::Refused {
            audience: audience.to_string(),
            principal: principal.to_string(),
            code: oauth.error,
            description: oauth.error_description,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn region(r: &str) -> Region {
        Region::parse(r).unwrap()
    }

    const TOKEN: &str = "AQoEXAMPLEH4aoAH0gNCAPyJxz4BlCFFxWNE1OPTgk5TthT+FvwqnKwRcOIfrRh3c/LTo6UDdyJwOOvEVPvLXCrrrUtdnniCEXAMPLE/IvU1dYUg2RVAJBanLiHb4IgRmpRV3zrkuWJOgQs8IZZaIv2BXIa2R4OlgkBN9bkUDNCJiBeb/AXlzBBko7b15fjrBs2+cTQtpZ3CYWFXG8C5zqx37wnOE49mRl/+OtkIKGO7fAE";

    fn credentials() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: Some(Secret::new(TOKEN)),
            expiration: None,
        }
    }

    fn frozen() -> SystemTime {
        // 2020-08-11T06:55:22Z, the time of google-auth's fixtures.
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_597_128_922)
    }

    #[test]
    fn verification_url_names_the_regional_aws_host() {
        assert_eq!(
            regional_verification_url(&region("us-east-2")),
            "https://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        );
        assert!(regional_verification_url(&region("cn-north-1")).contains("amazonaws.com.cn"));
    }

    #[test]
    fn subject_token_has_google_auth_shape_and_signs_the_target_resource() {
        let audience = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/POOL_ID/providers/PROVIDER_ID";
        let token =
            build_subject_token(&credentials(), &region("us-east-2"), audience, frozen()).unwrap();
        let encoded = token.secret().expose();
        assert!(!encoded.contains('{') && !encoded.contains(' '));
        let json = percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(
            json.starts_with("{\"headers\":[{\"key\":\"Authorization\""),
            "{json}"
        );
        assert_eq!(doc["method"], "POST");
        let keys: Vec<&str> = doc["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "Authorization",
                "host",
                "x-amz-date",
                "x-amz-security-token",
                "x-goog-cloud-target-resource"
            ]
        );
        let auth = doc["headers"][0]["value"].as_str().unwrap();
        assert!(
            auth.contains(
                "SignedHeaders=host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource,"
            ),
            "{auth}"
        );
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200811/us-east-2/sts/aws4_request"
        ));
    }

    #[test]
    fn form_matches_google_auth_fields() {
        let exchange = TokenExchange {
            audience: "//aud".into(),
            scopes: vec![CLOUD_PLATFORM_SCOPE.into(), "x".into()],
            subject_token: SubjectToken::Aws4Request(Secret::new("tok")),
        };
        let form = exchange.form();
        let get = |k: &str| form.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some(TOKEN_EXCHANGE_GRANT));
        assert_eq!(
            get("scope"),
            Some("https://www.googleapis.com/auth/cloud-platform x")
        );
        assert_eq!(get("subject_token_type"), Some(AWS_SUBJECT_TOKEN_TYPE));
        assert_eq!(get("requested_token_type"), Some(ACCESS_TOKEN_TYPE));
    }

    /// An OIDC token goes on the wire as it is, typed `urn:ietf:params:oauth:token-type:jwt`.
    #[test]
    fn a_jwt_subject_is_sent_as_is_with_the_jwt_type() {
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = format!(
            "{}.{}.sig",
            b64(serde_json::json!({"alg": "RS256"})),
            b64(
                serde_json::json!({"iss": "https://issuer.example", "aud": "a", "sub": "s", "exp": 1})
            )
        );
        let token = IdToken::parse(Secret::new(jwt.clone()), "test").unwrap();
        let exchange = TokenExchange {
            audience: "//aud".into(),
            scopes: vec![CLOUD_PLATFORM_SCOPE.into()],
            subject_token: SubjectToken::Jwt(token),
        };
        let form = exchange.form();
        let get = |k: &str| form.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("subject_token_type"), Some(JWT_SUBJECT_TOKEN_TYPE));
        assert_eq!(get("subject_token"), Some(jwt.as_str()));
        assert_eq!(get("audience"), Some("//aud"));
        assert_eq!(get("grant_type"), Some(TOKEN_EXCHANGE_GRANT));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    const AUDIENCE: &str =
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";

    fn read(status: u16, body: &str, now: OffsetDateTime) -> Result<GoogleAccessToken, StsAttempt> {
        read_exchange_answer(
            status,
            "application/json",
            body,
            "http://sts",
            AUDIENCE,
            "me",
            now,
        )
    }

    proptest! {
        /// A token answer with any lifetime: the token, expiring that many seconds from now.
        #[test]
        fn token_answers_read_back(token in "[!-~]{1,64}", expires_in in proptest::option::of(any::<i64>())) {
            let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
            let mut body = serde_json::json!({"access_token": token, "token_type": "Bearer"});
            if let Some(e) = expires_in { body["expires_in"] = e.into(); }
            match read(200, &body.to_string(), now) {
                Ok(answer) => {
                    prop_assert_eq!(answer.access_token.expose(), token.as_str());
                    let lifetime = expires_in.unwrap_or(3600);
                    prop_assert_eq!((answer.expires_at - now).whole_seconds(), lifetime);
                }
                Err(StsAttempt::Final(GoogleStsError::UnexpectedAnswer { detail, .. })) => {
                    prop_assert!(detail.contains("expires_in"), "{}", detail);
                }
                Err(_) => prop_assert!(false, "a token answer was not read"),
            }
        }

        /// OAuth errors keep their code and description.
        #[test]
        fn oauth_errors_read_back(code in any::<String>(), description in any::<String>(), status in 400u16..429) {
            let body = serde_json::json!({"error": code, "error_description": description}).to_string();
            match read(status, &body, OffsetDateTime::UNIX_EPOCH) {
                Err(StsAttempt::Final(GoogleStsError::Refused { code: c, description: d, .. }))
                | Err(StsAttempt::Final(GoogleStsError::UnknownAudience { code: c, description: d, .. })) => {
                    prop_assert_eq!(c, code);
                    prop_assert_eq!(d, description);
                }
                _ => prop_assert!(false, "an OAuth error was not read"),
            }
        }

        /// Any body with any status: a token or an error, never a panic.
        #[test]
        fn any_answer_is_read_without_panicking(body in any::<String>(), status in 100u16..600) {
            let _ = read(status, &body, OffsetDateTime::now_utc());
        }
    }
}
