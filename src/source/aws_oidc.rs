//! AWS outbound identity federation (`aws-oidc`): AWS STS signs a JWT for the caller's IAM
//! identity (`GetWebIdentityToken`), which any OIDC relying party can verify against the
//! account's issuer (`https://ID.tokens.sts.global.api.aws`, discovery and JWKS under it).
//!
//! The call is SigV4-signed with the credentials an AWS SDK would find where keyless runs (the
//! chain of [`super::aws::AwsIdentitySource`]) and goes to the *regional* STS endpoint: there
//! is no global one for this action. Finding the credentials is async and may touch instance
//! metadata, while building a source is not, so the identity is resolved on the first fetch
//! and kept. The token itself is never cached (it lives 5 minutes by default); what it buys is.
//!
//! The wire shape follows botocore's STS model (query protocol): `Audience.member.N` (1–10),
//! `SigningAlgorithm` (`RS256` or `ES384`, required), `DurationSeconds` (60–3600, default 300)
//! and `Tags.member.N.Key`/`.Value`; the answer is `WebIdentityToken` and `Expiration`.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::secret::Secret;
use crate::source::aws::{AwsIdentitySource, AwsSourceError, AwsSourceOptions};
use crate::source::registry::{Argument, Registration, SourceContext};
use crate::source::{IdToken, SourceError, TokenFuture, TokenSource};
use crate::types::{SpecError, UpstreamUrl};
use crate::wire::http::{content_type_of, read_body};
use crate::wire::sigv4::{sign_request, SigningError};
use crate::wire::{error_chain, truncate};

/// `aws-oidc`: a JWT from STS `GetWebIdentityToken`.
pub const AWS_OIDC: Registration = Registration {
    name: "aws-oidc",
    argument: Argument::None,
    summary: "a JWT from AWS STS GetWebIdentityToken (outbound identity federation), signed with the AWS SDKs' credentials",
    build: |_, context| Ok(Arc::new(AwsOidcSource::new(context)?)),
};

/// The STS API version.
const STS_VERSION: &str = "2011-06-15";
/// How long a token lives unless told otherwise (STS's own default).
pub const DEFAULT_DURATION_SECONDS: u32 = 300;
/// What STS accepts for `DurationSeconds`.
pub const DURATION_RANGE: std::ops::RangeInclusive<u32> = 60..=3600;
/// At most this many audiences per token.
pub const MAX_AUDIENCES: usize = 10;
/// At most this many request tags per token.
pub const MAX_TAGS: usize = 50;
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// How STS signs the token: `SigningAlgorithm`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSA with SHA-256: what every relying party accepts (AWS STS, Google, Entra).
    #[default]
    Rs256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
}

impl SigningAlgorithm {
    /// The value on the wire and in the JWT header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es384 => "ES384",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SigningAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "RS256" => Ok(Self::Rs256),
            "ES384" => Ok(Self::Es384),
            _ => Err(format!(
                "{s:?} is not a signing algorithm GetWebIdentityToken offers (RS256 or ES384)"
            )),
        }
    }
}

/// What to ask `GetWebIdentityToken` for besides the audience.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsOidcSettings {
    pub signing_algorithm: SigningAlgorithm,
    /// 60 to 3600; the token may not outlive the calling session.
    pub duration_seconds: u32,
    /// Request tags: claims under `https://sts.amazonaws.com/` → `request_tags` (needs
    /// `sts:TagGetWebIdentityToken`).
    pub tags: Vec<(String, String)>,
}

impl Default for AwsOidcSettings {
    fn default() -> Self {
        Self {
            signing_algorithm: SigningAlgorithm::default(),
            duration_seconds: DEFAULT_DURATION_SECONDS,
            tags: Vec::new(),
        }
    }
}

impl AwsOidcSettings {
    /// The form STS receives, field for field as botocore serialises it.
    pub fn form(&self, audiences: &[&str]) -> Vec<(String, String)> {
        let mut form = vec![
            ("Action".to_string(), "GetWebIdentityToken".to_string()),
            ("Version".to_string(), STS_VERSION.to_string()),
        ];
        for (n, audience) in audiences.iter().enumerate() {
            form.push((format!("Audience.member.{}", n + 1), audience.to_string()));
        }
        form.push((
            "SigningAlgorithm".into(),
            self.signing_algorithm.as_str().into(),
        ));
        form.push(("DurationSeconds".into(), self.duration_seconds.to_string()));
        for (n, (key, value)) in self.tags.iter().enumerate() {
            form.push((format!("Tags.member.{}.Key", n + 1), key.clone()));
            form.push((format!("Tags.member.{}.Value", n + 1), value.clone()));
        }
        form
    }

    /// STS's limits, checked before anything goes on the wire.
    fn check(&self) -> Result<(), String> {
        if !DURATION_RANGE.contains(&self.duration_seconds) {
            return Err(format!(
                "the token duration must be 60 to 3600 seconds, not {}",
                self.duration_seconds
            ));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(format!(
                "GetWebIdentityToken takes at most {MAX_TAGS} tags, not {}",
                self.tags.len()
            ));
        }
        Ok(())
    }
}

/// What can go wrong while asking AWS STS for an outbound token, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum AwsOidcError {
    /// No AWS credentials to sign with (or their source failed).
    #[error("aws-oidc needs AWS credentials to sign GetWebIdentityToken: {0}")]
    Credentials(#[from] AwsSourceError),

    /// `AWS_ENDPOINT_URL_STS` or `AWS_ENDPOINT_URL` is not a usable endpoint.
    #[error("{0}")]
    Endpoint(#[from] SpecError),

    /// aws-sigv4 could not sign the request.
    #[error("{0}")]
    Signing(#[from] SigningError),

    /// STS could not be reached.
    #[error("could not reach AWS STS at {url} for GetWebIdentityToken: {cause}")]
    Unreachable { url: String, cause: String },

    /// The account has not turned outbound identity federation on.
    #[error("AWS STS refused GetWebIdentityToken: outbound identity federation is disabled for this AWS account ({message})\n  \
             hint: enable it once per account: `aws iam enable-outbound-web-identity-federation` (needs iam:EnableOutboundWebIdentityFederation); it prints the account's issuer URL for the relying party's trust configuration")]
    FederationDisabled { message: String },

    /// The token would outlive the session whose credentials signed the request.
    #[error("AWS STS refused a {duration_seconds} s token: it would outlive the calling session ({message})\n  \
             hint: the AWS credentials that signed expire within a minute; let their source renew them (or ask for a shorter token), then retry")]
    SessionDurationEscalation {
        duration_seconds: u32,
        message: String,
    },

    /// The claims would be too large (usually: too many or too long request tags).
    #[error(
        "AWS STS refused GetWebIdentityToken: the token would be too large ({message})\n  \
             hint: pass fewer or shorter tags"
    )]
    PayloadTooLarge { message: String },

    /// Any other refusal (`AccessDenied`, `ValidationError`, ...).
    #[error("AWS STS at {url} refused GetWebIdentityToken ({status} {code}: {message}){}", refusal_hint(.code))]
    Refused {
        url: String,
        status: u16,
        code: String,
        message: String,
    },

    /// Throttling or a server error: worth retrying.
    #[error(
        "AWS STS at {url} could not answer GetWebIdentityToken now ({status} {code}: {message})"
    )]
    Unavailable {
        url: String,
        status: u16,
        code: String,
        message: String,
    },

    /// The answer is not STS's.
    #[error("AWS STS at {url} answered GetWebIdentityToken with something unreadable ({status}, {content_type}): {detail}\n  hint: check that AWS_ENDPOINT_URL_STS / --sts-endpoint names STS")]
    Unreadable {
        url: String,
        status: u16,
        content_type: String,
        detail: String,
    },
}

fn refusal_hint(code: &str) -> &'static str {
    match code {
        "AccessDenied" | "AccessDeniedException" => "\n  hint: the caller needs sts:GetWebIdentityToken (and sts:TagGetWebIdentityToken with tags), allowed for this audience: sts:IdentityTokenAudience with ForAllValues:StringEquals",
        "InvalidAction" | "UnknownOperationException" => "\n  hint: GetWebIdentityToken exists only on the regional STS endpoints (sts.REGION.amazonaws.com); check --region / AWS_REGION and AWS_ENDPOINT_URL_STS",
        "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" | "IncompleteSignature" => "\n  hint: the AWS credentials the SDKs' chain found are not accepted; `aws sts get-caller-identity` shows the same",
        _ => "",
    }
}

impl AwsOidcError {
    /// Worth retrying: the network, throttling, STS 5xx, a credential source that may recover.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Credentials(e) => e.is_transient(),
            Self::Unreachable { .. } | Self::Unavailable { .. } => true,
            Self::Unreadable { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// AWS (or the account's configuration) said no: retrying will not change it.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::FederationDisabled { .. }
                | Self::SessionDurationEscalation { .. }
                | Self::PayloadTooLarge { .. }
                | Self::Refused { .. }
        )
    }

    /// Reads STS's error document (or, failing that, the status) into the error it means.
    pub(crate) fn from_answer(url: &str, status: u16, content_type: String, body: &str) -> Self {
        let parsed = quick_xml::de::from_str::<ErrorResponse>(body).ok();
        let Some(ErrorResponse { error }) = parsed else {
            return if status >= 500 || status == 429 {
                Self::Unavailable {
                    url: url.to_string(),
                    status,
                    code: format!("HTTP {status}"),
                    message: truncate(body.trim(), 200),
                }
            } else {
                Self::Unreadable {
                    url: url.to_string(),
                    status,
                    content_type,
                    detail: truncate(body.trim(), 300),
                }
            };
        };
        let message = truncate(&error.message, 500);
        match error.code.as_str() {
            "OutboundWebIdentityFederationDisabledException" => {
                Self::FederationDisabled { message }
            }
            "SessionDurationEscalationException" => Self::SessionDurationEscalation {
                duration_seconds: 0,
                message,
            },
            "JWTPayloadSizeExceededException" => Self::PayloadTooLarge { message },
            code if status >= 500
                || status == 429
                || matches!(
                    code,
                    "Throttling" | "ThrottlingException" | "RequestLimitExceeded"
                ) =>
            {
                Self::Unavailable {
                    url: url.to_string(),
                    status,
                    code: error.code,
                    message,
                }
            }
            _ => Self::Refused {
                url: url.to_string(),
                status,
                code: error.code,
                message,
            },
        }
    }
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

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetWebIdentityTokenResponse {
    get_web_identity_token_result: GetWebIdentityTokenResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetWebIdentityTokenResult {
    web_identity_token: Secret,
    #[serde(default)]
    expiration: Option<String>,
}

/// Reads STS's `GetWebIdentityToken` answer: the token and, when present, its stated expiry.
pub(crate) fn parse_answer(body: &str) -> Result<(Secret, Option<String>), String> {
    let parsed: GetWebIdentityTokenResponse = quick_xml::de::from_str(body)
        .map_err(|e| format!("not a GetWebIdentityToken answer: {e}"))?;
    let result = parsed.get_web_identity_token_result;
    Ok((result.web_identity_token, result.expiration))
}

/// Whether `iss` is an AWS outbound issuer (`https://ID.tokens.sts.global.api.aws`).
pub fn is_outbound_issuer(iss: &str) -> bool {
    iss.strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|host| host.ends_with(".tokens.sts.global.api.aws"))
}

/// What to say when AWS STS refuses such a token in `AssumeRoleWithWebIdentity`.
pub const NOT_FOR_AWS_STS: &str = "AWS documents that tokens from GetWebIdentityToken (--token-source aws-oidc) cannot be used with AssumeRoleWithWebIdentity: present them to Google, Azure or another relying party; to reach a role in another AWS account, let it trust this role for sts:AssumeRole instead";

/// The configured STS endpoint, as the AWS SDKs find it: `explicit` (a flag or keyless.toml),
/// else `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL` (both ignored when
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`; each named in a warning when used). `None`: the
/// region's own endpoint.
pub fn configured_sts_endpoint(
    explicit: Option<&UpstreamUrl>,
) -> Result<Option<UpstreamUrl>, SpecError> {
    if let Some(url) = explicit {
        return Ok(Some(url.clone()));
    }
    let ignore_env = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if ignore_env {
        return Ok(None);
    }
    match UpstreamUrl::from_env("AWS_ENDPOINT_URL_STS")? {
        Some(url) => Ok(Some(url)),
        None => UpstreamUrl::from_env("AWS_ENDPOINT_URL"),
    }
}

/// Tokens from `GetWebIdentityToken`, signed with the AWS SDKs' credentials.
pub struct AwsOidcSource {
    options: AwsSourceOptions,
    /// The profile the chain reads (flag, `AWS_PROFILE`, `default`), for messages and keys.
    profile: String,
    endpoint: Option<UpstreamUrl>,
    settings: AwsOidcSettings,
    aws: OnceCell<AwsIdentitySource>,
}

impl fmt::Debug for AwsOidcSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsOidcSource")
            .field("describe", &self.describe())
            .finish_non_exhaustive()
    }
}

impl AwsOidcSource {
    /// The source `context` describes: the AWS identity options, the STS endpoint override and
    /// the token settings. Reads the endpoint variables now, so a bad one fails at once.
    pub fn new(context: &SourceContext) -> Result<Self, SourceError> {
        context
            .aws_oidc
            .check()
            .map_err(|why| context.invalid(AWS_OIDC.name, &why))?;
        let endpoint =
            configured_sts_endpoint(context.sts_endpoint.as_ref()).map_err(AwsOidcError::from)?;
        let profile = context
            .aws
            .profile
            .clone()
            .filter(|p| !p.is_empty())
            .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
            .unwrap_or_else(|| "default".to_string());
        Ok(Self {
            options: context.aws.clone(),
            profile,
            endpoint,
            settings: context.aws_oidc.clone(),
            aws: OnceCell::new(),
        })
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<IdToken, AwsOidcError> {
        let aws = self
            .aws
            .get_or_try_init(|| AwsIdentitySource::resolve(self.options.clone()))
            .await?;
        let credentials = aws.fetch_credentials().await?;
        let region = aws.region();
        let url = match &self.endpoint {
            Some(url) => format!("{}/", url.as_str()),
            None => format!("https://{}/", region.sts_host()),
        };
        // STS refuses a token that would outlive the signing session: ask for no more than
        // what the session has left (while that is at least STS's minimum).
        let mut settings = self.settings.clone();
        if let Some(expiration) = credentials.expiration {
            let left = (expiration - time::OffsetDateTime::now_utc()).whole_seconds() - 5;
            if let Ok(left) = u32::try_from(left) {
                if left < settings.duration_seconds && DURATION_RANGE.contains(&left) {
                    tracing::debug!(
                        asked = settings.duration_seconds,
                        left,
                        "the signing session ends sooner: asking for a shorter token"
                    );
                    settings.duration_seconds = left;
                }
            }
        }
        let body = serde_urlencoded::to_string(settings.form(&[audience]))
            .map_err(|e| SigningError(e.to_string()))?;
        let signed = sign_request(
            "POST",
            &url,
            &[("content-type", FORM_CONTENT_TYPE)],
            body.as_bytes(),
            &credentials,
            region.as_str(),
            "sts",
            SystemTime::now(),
        )?;
        let mut request = http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(body);
        for (name, value) in &signed {
            request = request.header(name.as_str(), value.expose());
        }
        let unreachable = |cause: String| AwsOidcError::Unreachable {
            url: url.clone(),
            cause,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let content_type = content_type_of(response.headers());
        let text = read_body(response)
            .await
            .map_err(|e| match e.is_transient() {
                true => unreachable(e.to_string()),
                false => AwsOidcError::Unreadable {
                    url: url.clone(),
                    status,
                    content_type: content_type.clone(),
                    detail: e.to_string(),
                },
            })?;
        if !(200..300).contains(&status) {
            return Err(
                match AwsOidcError::from_answer(&url, status, content_type, &text) {
                    AwsOidcError::SessionDurationEscalation { message, .. } => {
                        AwsOidcError::SessionDurationEscalation {
                            duration_seconds: settings.duration_seconds,
                            message,
                        }
                    }
                    other => other,
                },
            );
        }
        let (token, expiration) =
            parse_answer(&text).map_err(|detail| AwsOidcError::Unreadable {
                url: url.clone(),
                status,
                content_type,
                detail,
            })?;
        tracing::debug!(url = %url, expiration = ?expiration, "AWS STS issued an outbound web identity token");
        IdToken::parse(token, "AWS STS GetWebIdentityToken").map_err(|e| AwsOidcError::Unreadable {
            url,
            status,
            content_type: "text/xml".into(),
            detail: e.to_string(),
        })
    }
}

impl TokenSource for AwsOidcSource {
    fn describe(&self) -> String {
        let region = self.options.region.as_ref().map_or("(sdk)", |r| r.as_str());
        let mut text = format!(
            "aws-oidc(profile={} region={region} alg={} duration={}s",
            self.profile, self.settings.signing_algorithm, self.settings.duration_seconds
        );
        if let Some(role) = &self.options.assume_role {
            text.push_str(&format!(" assume-role={role}"));
        }
        if let Some(url) = &self.endpoint {
            text.push_str(&format!(" sts={}", url.as_str()));
        }
        for (key, value) in &self.settings.tags {
            text.push_str(&format!(" tag:{key}={value}"));
        }
        text.push(')');
        text
    }

    /// Who would sign, as far as known without the network: the profile, and a fingerprint of
    /// the access key id the environment holds and of the role the web identity or container
    /// variables name (never a secret). Switching keys or roles changes the cache entry.
    fn cached_identity(&self) -> Option<String> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for variable in [
            "AWS_ACCESS_KEY_ID",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ] {
            hasher.update(variable.as_bytes());
            hasher.update(b"=");
            hasher.update(std::env::var(variable).unwrap_or_default().as_bytes());
            hasher.update(b"\n");
        }
        Some(format!(
            "aws profile={} callers={}",
            self.profile,
            hex::encode(&hasher.finalize()[..12])
        ))
    }

    fn fetch<'a>(&'a self, http: &'a reqwest::Client, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(async move { Ok(self.fetch_token(http, audience).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What botocore 1.44's query serializer produces for
    /// `Audience=['https://a.example','b c'], SigningAlgorithm='RS256', DurationSeconds=900,
    /// Tags=[{'Key':'team','Value':'a/b'}]` (urlencoded as botocore sends it).
    const BOTOCORE_BODY: &str = "Action=GetWebIdentityToken&Version=2011-06-15&Audience.member.1=https%3A%2F%2Fa.example&Audience.member.2=b+c&SigningAlgorithm=RS256&DurationSeconds=900&Tags.member.1.Key=team&Tags.member.1.Value=a%2Fb";

    #[test]
    fn the_form_is_serialised_as_botocore_does() {
        let settings = AwsOidcSettings {
            signing_algorithm: SigningAlgorithm::Rs256,
            duration_seconds: 900,
            tags: vec![("team".into(), "a/b".into())],
        };
        let body =
            serde_urlencoded::to_string(settings.form(&["https://a.example", "b c"])).unwrap();
        assert_eq!(body, BOTOCORE_BODY);
        let default = serde_urlencoded::to_string(AwsOidcSettings::default().form(&["x"])).unwrap();
        assert_eq!(
            default,
            "Action=GetWebIdentityToken&Version=2011-06-15&Audience.member.1=x&SigningAlgorithm=RS256&DurationSeconds=300"
        );
    }

    #[test]
    fn settings_outside_stss_limits_are_refused_before_the_call() {
        let check = |duration_seconds, tags: usize| {
            AwsOidcSettings {
                duration_seconds,
                tags: (0..tags).map(|n| (n.to_string(), "v".into())).collect(),
                ..AwsOidcSettings::default()
            }
            .check()
        };
        assert!(check(60, 50).is_ok() && check(3600, 0).is_ok());
        assert!(check(59, 0).unwrap_err().contains("60 to 3600"));
        assert!(check(3601, 0).is_err());
        assert!(check(300, 51).unwrap_err().contains("at most 50"));
        assert_eq!("es384".parse(), Ok(SigningAlgorithm::Es384));
        assert!("HS256".parse::<SigningAlgorithm>().is_err());
    }

    fn error_doc(status: u16, code: &str) -> AwsOidcError {
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{code}</Code>\n    <Message>said {code}</Message>\n  </Error>\n  <RequestId>r</RequestId>\n</ErrorResponse>"
        );
        AwsOidcError::from_answer(
            "https://sts.eu-west-1.amazonaws.com/",
            status,
            "text/xml".into(),
            &body,
        )
    }

    #[test]
    fn the_named_exceptions_are_explained_and_classified() {
        let disabled = error_doc(403, "OutboundWebIdentityFederationDisabledException");
        let text = disabled.to_string();
        assert!(
            text.contains("aws iam enable-outbound-web-identity-federation")
                && text.contains("said OutboundWebIdentityFederationDisabledException"),
            "{text}"
        );
        assert!(!disabled.is_transient());
        let escalation = error_doc(403, "SessionDurationEscalationException");
        assert!(matches!(
            escalation,
            AwsOidcError::SessionDurationEscalation { .. }
        ));
        assert!(
            escalation.to_string().contains("shorter token"),
            "{escalation}"
        );
        assert!(escalation.is_refusal() && disabled.is_refusal());
        let large = error_doc(400, "JWTPayloadSizeExceededException");
        assert!(
            large.to_string().contains("fewer or shorter tags"),
            "{large}"
        );
        let denied = error_doc(403, "AccessDenied");
        assert!(
            denied.to_string().contains("sts:IdentityTokenAudience") && !denied.is_transient(),
            "{denied}"
        );
        for (status, code) in [
            (400, "Throttling"),
            (503, "ServiceUnavailable"),
            (500, "InternalFailure"),
        ] {
            assert!(error_doc(status, code).is_transient(), "{code}");
        }
        let html =
            AwsOidcError::from_answer("u", 502, "text/html".into(), "<html>bad gateway</html>");
        assert!(html.is_transient());
        let page = AwsOidcError::from_answer("u", 404, "text/html".into(), "<html>nope</html>");
        assert!(matches!(page, AwsOidcError::Unreadable { .. }) && !page.is_transient());
    }

    #[test]
    fn the_answer_is_read_and_the_token_stays_secret() {
        let body = "<GetWebIdentityTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetWebIdentityTokenResult>\n    <WebIdentityToken>a.b.c</WebIdentityToken>\n    <Expiration>2026-12-04T22:05:00Z</Expiration>\n  </GetWebIdentityTokenResult>\n  <ResponseMetadata>\n    <RequestId>r</RequestId>\n  </ResponseMetadata>\n</GetWebIdentityTokenResponse>";
        let (token, expiration) = parse_answer(body).unwrap();
        assert_eq!(token.expose(), "a.b.c");
        assert_eq!(expiration.as_deref(), Some("2026-12-04T22:05:00Z"));
        assert!(!format!("{token:?}").contains("a.b.c"));
        assert!(parse_answer("<AssumeRoleResponse/>").is_err());
    }

    #[test]
    fn describe_and_identity_name_no_secret_and_follow_the_settings() {
        let context = SourceContext {
            aws: AwsSourceOptions {
                profile: Some("ops".into()),
                region: Some("eu-west-1".parse().unwrap()),
                ..AwsSourceOptions::default()
            },
            sts_endpoint: Some(UpstreamUrl::parse("http://127.0.0.1:9").unwrap()),
            ..SourceContext::default()
        };
        let source = AwsOidcSource::new(&context).unwrap();
        assert_eq!(
            source.describe(),
            "aws-oidc(profile=ops region=eu-west-1 alg=RS256 duration=300s sts=http://127.0.0.1:9)"
        );
        assert!(source.chooses_audience());
        let identity = source.cached_identity().unwrap();
        assert!(
            identity.starts_with("aws profile=ops callers="),
            "{identity}"
        );
        let bad = SourceContext {
            aws_oidc: AwsOidcSettings {
                duration_seconds: 30,
                ..AwsOidcSettings::default()
            },
            ..context
        };
        let err = AwsOidcSource::new(&bad).unwrap_err().to_string();
        assert!(err.contains("60 to 3600"), "{err}");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn xml_escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    proptest! {
        /// Any status and body: one error, never both transient and a refusal; STS's own code
        /// and the status decide which.
        #[test]
        fn any_error_answer_is_classified_once(
            status in 300u16..600,
            code in prop_oneof![
                Just("AccessDenied".to_string()), Just("Throttling".to_string()),
                Just("OutboundWebIdentityFederationDisabledException".to_string()),
                Just("JWTPayloadSizeExceededException".to_string()), "[A-Za-z]{1,20}",
            ],
            message in any::<String>(),
            raw in any::<String>(),
            as_document in any::<bool>(),
        ) {
            let body = if as_document {
                format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>r</RequestId></ErrorResponse>", xml_escape(&message))
            } else {
                raw
            };
            let error = AwsOidcError::from_answer("https://sts.us-east-1.amazonaws.com", status, "text/xml".into(), &body);
            prop_assert!(!(error.is_transient() && error.is_refusal()), "{}", error);
            if status >= 500 || status == 429 {
                prop_assert!(error.is_transient() || matches!(error, AwsOidcError::FederationDisabled { .. } | AwsOidcError::PayloadTooLarge { .. } | AwsOidcError::SessionDurationEscalation { .. }), "{}", error);
            }
            if as_document && code == "AccessDenied" && status < 500 && status != 429 {
                prop_assert!(error.is_refusal() && error.to_string().contains("sts:GetWebIdentityToken"), "{}", error);
            }
        }

        /// Any token text STS could answer reads back exactly and stays out of `Debug`; any
        /// other body is an error, never a panic.
        #[test]
        fn any_token_in_an_answer_reads_back_exactly(
            token in "[A-Za-z0-9._&<>'-]{1,200}",
            body in any::<String>(),
        ) {
            let answer = format!("<GetWebIdentityTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetWebIdentityTokenResult><WebIdentityToken>{}</WebIdentityToken><Expiration>2026-12-04T22:05:00Z</Expiration></GetWebIdentityTokenResult></GetWebIdentityTokenResponse>", xml_escape(&token));
            let (read, expiration) = parse_answer(&answer).unwrap();
            prop_assert_eq!(read.expose(), token.as_str());
            prop_assert_eq!(expiration.as_deref(), Some("2026-12-04T22:05:00Z"));
            if token.len() >= 8 {
                let debug = format!("{read:?}");
                prop_assert!(!debug.contains(&token));
            }
            let _ = parse_answer(&body);
        }
    }
}
