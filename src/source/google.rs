//! Google ID tokens: the identity a GCE VM, GKE pod or Cloud Run service already has.
//!
//! The metadata server mints a fresh token per request, so we never cache the token itself,
//! only what it buys (the AWS credentials): AWS checks `exp` when the token is used, and a
//! token from a file or a command is re-read on every use for the same reason.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::secret::Secret;
use base64::Engine;
use serde::Deserialize;

use crate::private_file::{read_capped, MAX_SMALL_FILE_BYTES};
use crate::types::UpstreamUrl;

/// The audience AWS STS expects by default for web identity federation.
pub const DEFAULT_AWS_AUDIENCE: &str = "sts.amazonaws.com";

/// Where the metadata server lives when `GCE_METADATA_HOST` does not say otherwise.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// Where IAM Credentials lives when no flag or config says otherwise.
pub const DEFAULT_IAMCREDENTIALS_URL: &str = "https://iamcredentials.googleapis.com";

/// Google's OAuth2 token endpoint, used to refresh `authorized_user` ADC when the file names none.
pub const DEFAULT_OAUTH_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// What can go wrong while obtaining a Google ID token, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `--token-source` did not parse.
    #[error("unknown token source {spec:?}\n  hint: use metadata, impersonate:EMAIL, file:PATH or command:CMD")]
    UnknownTokenSource { spec: String },

    /// The metadata server could not be reached (not on GCE, or `GCE_METADATA_HOST` is wrong).
    #[error("could not reach the Google metadata server at {url}: {cause}\n  hint: outside GCE/GKE/Cloud Run use --token-source impersonate:EMAIL, file:PATH or command:CMD, or set GCE_METADATA_HOST")]
    MetadataUnreachable { url: String, cause: String },

    /// The metadata server answered, but not with a token.
    #[error("the Google metadata server at {url} answered {status}: {body}")]
    MetadataRefused {
        url: String,
        status: u16,
        body: String,
    },

    /// IAM Credentials refused to mint a token for the service account.
    #[error("IAM Credentials refused to mint a token for {service_account} ({status}): {message}\n  hint: the caller ({caller}) needs roles/iam.serviceAccountTokenCreator on {service_account}")]
    ImpersonationRefused {
        service_account: String,
        caller: String,
        status: u16,
        message: String,
    },

    /// IAM Credentials could not be reached.
    #[error("could not reach IAM Credentials at {url}: {cause}")]
    IamCredentialsUnreachable { url: String, cause: String },

    /// Application Default Credentials exist but cannot authorise impersonation.
    #[error("the application default credentials in {path} cannot be used: {reason}")]
    AdcUnusable { path: PathBuf, reason: String },

    /// The token file could not be read.
    #[error("could not read the token file {path}: {cause}")]
    FileUnreadable { path: PathBuf, cause: String },

    /// The token command failed or printed nothing.
    #[error("the token command `{command}` failed ({status}){stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },

    /// What we got does not look like a JWT, so AWS would refuse it anyway.
    #[error("the token from {origin} is not a JWT ({reason})")]
    NotAJwt { origin: String, reason: String },

    /// The token source gave no token within what was left of the overall deadline.
    #[error("the Google token source gave no ID token within {seconds:.1} s\n  hint: check that it answers (the metadata server, IAM Credentials, the token command); --deadline allows more time")]
    TimedOut { seconds: f64 },
}

impl SourceError {
    /// Worth retrying: the metadata server or IAM Credentials may come back.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::MetadataUnreachable { .. }
            | Self::IamCredentialsUnreachable { .. }
            | Self::TimedOut { .. } => true,
            Self::MetadataRefused { status, .. } => *status >= 500 || *status == 429,
            Self::ImpersonationRefused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl crate::classify::Classify for SourceError {
    fn class(&self) -> crate::classify::Class {
        use crate::classify::Class;
        match self {
            Self::UnknownTokenSource { .. } => Class::Usage,
            Self::ImpersonationRefused { status, .. } if *status < 500 && *status != 429 => {
                Class::Refused
            }
            _ if self.is_transient() => Class::Unavailable,
            _ => Class::Failure,
        }
    }
}

pub use crate::policy::issuer::{Audience, IdTokenClaims};

/// An ID token (Google's, or any OIDC issuer's): the secret JWT and its (unverified) claims.
#[derive(Clone, Debug)]
pub struct IdToken {
    raw: Secret,
    claims: IdTokenClaims,
}

impl IdToken {
    /// Decodes the claims so that errors and session names can name the identity; `origin`
    /// says where the token came from in the error.
    pub fn parse(raw: Secret, origin: &str) -> Result<Self, SourceError> {
        let not_a_jwt = |reason: &str| SourceError::NotAJwt {
            origin: origin.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = raw.expose().split('.');
        let (Some(_header), Some(payload), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(not_a_jwt("expected three dot-separated parts"));
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| not_a_jwt("the payload is not base64url"))?;
        let claims: IdTokenClaims = serde_json::from_slice(&bytes)
            .map_err(|e| not_a_jwt(&format!("the payload lacks a claim AWS needs: {e}")))?;
        Ok(Self { raw, claims })
    }

    /// The claims, for messages and session names.
    pub fn claims(&self) -> &IdTokenClaims {
        &self.claims
    }

    /// The JWT itself; read only to put it on the wire.
    pub fn secret(&self) -> &Secret {
        &self.raw
    }
}

/// Where the Google ID token comes from (`--token-source`).
#[derive(Clone, Debug)]
pub enum GoogleTokenSource {
    /// The metadata server of GCE, GKE or Cloud Run.
    Metadata(MetadataServer),
    /// IAM Credentials `generateIdToken` for another service account.
    Impersonate(Impersonation),
    /// A file holding the token, re-read on every use (a token another tool keeps fresh).
    File(PathBuf),
    /// A shell command whose standard output is the token.
    Command(String),
}

impl GoogleTokenSource {
    /// Parses `metadata`, `impersonate:EMAIL`, `file:PATH` or `command:CMD`, with endpoints from
    /// the environment the way Google's SDKs read them.
    pub fn parse(
        spec: &str,
        iamcredentials_url: Option<&UpstreamUrl>,
    ) -> Result<Self, SourceError> {
        let spec_trimmed = spec.trim();
        if spec_trimmed == "metadata" {
            return Ok(Self::Metadata(MetadataServer::from_env()));
        }
        if let Some(email) = spec_trimmed.strip_prefix("impersonate:") {
            if !email.contains('@') {
                return Err(SourceError::UnknownTokenSource { spec: spec.into() });
            }
            return Ok(Self::Impersonate(Impersonation {
                service_account: email.to_string(),
                iamcredentials_url: iamcredentials_url
                    .map_or(DEFAULT_IAMCREDENTIALS_URL, UpstreamUrl::as_str)
                    .to_string(),
                metadata: MetadataServer::from_env(),
            }));
        }
        if let Some(path) = spec_trimmed.strip_prefix("file:") {
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some(cmd) = spec_trimmed.strip_prefix("command:") {
            return Ok(Self::Command(cmd.to_string()));
        }
        Err(SourceError::UnknownTokenSource { spec: spec.into() })
    }

    /// A stable description (no secrets), part of the cache key and of messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Metadata(m) => format!("metadata({})", m.host),
            Self::Impersonate(i) => {
                format!("impersonate:{}@{}", i.service_account, i.iamcredentials_url)
            }
            Self::File(p) => format!("file:{}", p.display()),
            Self::Command(c) => format!("command:{c}"),
        }
    }

    /// Who a token from this source would be, as far as can be known without the network or
    /// running anything: part of the credential cache's key, so credentials obtained for one
    /// identity are never served to another that the same source stands for later. `None` when
    /// it cannot be known now (an unreadable token file, unusable ADC): then the cache is not
    /// used and the exchange reports the problem.
    ///
    /// - `file:`: the token's `iss` and `sub`, decoded from the file (not verified: AWS verifies,
    ///   and a forged token buys nothing from STS).
    /// - `impersonate:`: the caller: the ADC file's account and a fingerprint of its refresh
    ///   token (another `gcloud auth application-default login` is another identity), or the
    ///   metadata server; the service account impersonated is in [`Self::describe`].
    /// - `metadata`: the metadata server's host only. Asking it for the default account would
    ///   cost a request on every cache hit; the residual risk is a VM whose service account is
    ///   changed (it must be stopped for that) within the lifetime of a cached entry.
    /// - `command:`: the command's text only. Who the command's token names cannot be known
    ///   without running it; a command whose identity changes (`gcloud auth
    ///   print-identity-token` after `gcloud config set account`) needs `--no-cache`.
    pub fn cached_identity(&self) -> Option<String> {
        match self {
            Self::Metadata(m) => Some(format!("metadata-default-account@{}", m.host)),
            Self::Impersonate(i) => match find_authorized_user_adc() {
                Ok(Some((_, adc))) => Some(format!("adc:{}", adc.fingerprint())),
                Ok(None) => Some(format!("metadata-default-account@{}", i.metadata.host)),
                Err(_) => None,
            },
            Self::File(path) => read_token_file(path).ok().map(|token| {
                let claims = token.claims();
                format!("iss={} sub={}", claims.iss, claims.sub)
            }),
            Self::Command(_) => Some("command".to_string()),
        }
    }

    /// Fetches a fresh token for `audience`. Each call may go to the network or run a command.
    pub async fn fetch_id_token(
        &self,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<IdToken, SourceError> {
        match self {
            Self::Metadata(m) => m.fetch_id_token(http, audience).await,
            Self::Impersonate(i) => i.fetch_id_token(http, audience).await,
            Self::File(path) => read_token_file(path),
            Self::Command(cmd) => run_token_command(cmd).await,
        }
    }
}

/// The GCE metadata server, found the way Google's SDKs find it.
#[derive(Clone, Debug)]
pub struct MetadataServer {
    host: String,
}

impl MetadataServer {
    /// `GCE_METADATA_HOST` (host or host:port), else `metadata.google.internal`.
    pub fn from_env() -> Self {
        let host = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_string());
        Self::new(host)
    }

    /// A metadata server at `host` (host or host:port, no scheme).
    pub fn new(host: impl Into<String>) -> Self {
        let host = host.into();
        let host = host
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Self { host }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/computeMetadata/v1/{path}", self.host)
    }

    async fn get(&self, http: &reqwest::Client, url: &str) -> Result<String, SourceError> {
        let response = http
            .get(url)
            .header("Metadata-Flavor", "Google")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| SourceError::MetadataUnreachable {
                url: url.to_string(),
                cause: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        let body =
            crate::http_client::read_body(response)
                .await
                .map_err(|e| match e.is_transient() {
                    true => SourceError::MetadataUnreachable {
                        url: url.to_string(),
                        cause: e.to_string(),
                    },
                    false => SourceError::MetadataRefused {
                        url: url.to_string(),
                        status,
                        body: e.to_string(),
                    },
                })?;
        if status != 200 {
            return Err(SourceError::MetadataRefused {
                url: url.to_string(),
                status,
                body: truncate(&body, 300),
            });
        }
        Ok(body)
    }

    /// An ID token for the instance's default service account.
    pub async fn fetch_id_token(
        &self,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<IdToken, SourceError> {
        let url = format!(
            "{}?audience={}&format=full",
            self.url("instance/service-accounts/default/identity"),
            percent_encoding::utf8_percent_encode(audience, percent_encoding::NON_ALPHANUMERIC)
        );
        let body = self.get(http, &url).await?;
        IdToken::parse(Secret::new(body.trim()), "the metadata server")
    }

    /// An OAuth access token for the default service account (authorises impersonation).
    pub async fn fetch_access_token(
        &self,
        http: &reqwest::Client,
    ) -> Result<(Secret, String), SourceError> {
        let url = format!(
            "{}?scopes=https://www.googleapis.com/auth/cloud-platform",
            self.url("instance/service-accounts/default/token")
        );
        let body = self.get(http, &url).await?;
        let token: AccessTokenResponse =
            serde_json::from_str(&body).map_err(|e| SourceError::MetadataRefused {
                url: url.clone(),
                status: 200,
                body: format!("not an access token answer: {e}"),
            })?;
        let email_url = self.url("instance/service-accounts/default/email");
        let email = self
            .get(http, &email_url)
            .await
            .map(|e| e.trim().to_string())
            .unwrap_or_else(|_| "the instance's service account".into());
        Ok((token.access_token, email))
    }
}

/// The metadata server's and OAuth's access-token answer (only the token is read).
#[derive(Deserialize)]
pub(crate) struct AccessTokenResponse {
    pub(crate) access_token: Secret,
}

/// IAM Credentials' `generateIdToken` answer.
#[derive(Deserialize)]
pub(crate) struct GenerateIdTokenResponse {
    pub(crate) token: Secret,
}

/// `generateIdToken` for a service account, authorised by ADC or the metadata server.
#[derive(Clone, Debug)]
pub struct Impersonation {
    pub service_account: String,
    pub iamcredentials_url: String,
    metadata: MetadataServer,
}

impl Impersonation {
    async fn fetch_id_token(
        &self,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<IdToken, SourceError> {
        let (access_token, caller) = match find_authorized_user_adc()? {
            Some((path, adc)) => (adc.fetch_access_token(http, &path).await?, adc.describe()),
            None => self.metadata.fetch_access_token(http).await?,
        };
        let token = fetch_generated_id_token(
            http,
            &self.iamcredentials_url,
            &access_token,
            &self.service_account,
            audience,
            true,
            &[],
        )
        .await
        .map_err(|e| match (e.status, e.unreadable) {
            (Some(status), true) if status < 500 && status != 429 => SourceError::NotAJwt {
                origin: format!("IAM Credentials at {}", e.url),
                reason: e.message,
            },
            (Some(status), _) => SourceError::ImpersonationRefused {
                service_account: self.service_account.clone(),
                caller,
                status,
                message: e.message,
            },
            (None, _) => SourceError::IamCredentialsUnreachable {
                url: e.url,
                cause: e.message,
            },
        })?;
        IdToken::parse(token, "IAM Credentials generateIdToken")
    }
}

/// A failed IAM Credentials call: `status` is `None` when no (whole) answer came at all;
/// `unreadable` when the answer was not the document asked for (a 200 that is not IAM's).
#[derive(Debug)]
pub struct IamCallError {
    pub url: String,
    pub status: Option<u16>,
    pub message: String,
    pub unreadable: bool,
}

/// An IAM Credentials answer with its `Date` header and the time the request left, so that an
/// expiry stated on Google's clock can be converted to ours.
#[derive(Debug)]
pub struct IamAnswer<T> {
    pub value: T,
    pub date: Option<time::OffsetDateTime>,
    pub sent_at: time::OffsetDateTime,
}

/// IAM Credentials names delegates as `projects/-/serviceAccounts/EMAIL`.
pub fn delegate_resource_names(delegates: &[String]) -> Vec<String> {
    delegates
        .iter()
        .map(|d| format!("projects/-/serviceAccounts/{d}"))
        .collect()
}

/// IAM Credentials `generateIdToken` for `service_account`, authorised by `bearer`. Shared by the
/// `impersonate:` token source and `keyless gcp id-token`.
pub async fn fetch_generated_id_token(
    http: &reqwest::Client,
    iamcredentials_url: &str,
    bearer: &Secret,
    service_account: &str,
    audience: &str,
    include_email: bool,
    delegates: &[String],
) -> Result<Secret, IamCallError> {
    let mut body = serde_json::json!({ "audience": audience, "includeEmail": include_email });
    if !delegates.is_empty() {
        body["delegates"] = serde_json::json!(delegate_resource_names(delegates));
    }
    let answer: IamAnswer<GenerateIdTokenResponse> = call_iam_credentials(
        http,
        iamcredentials_url,
        bearer,
        service_account,
        "generateIdToken",
        &body,
    )
    .await?;
    Ok(answer.value.token)
}

/// POSTs `body` to IAM Credentials `METHOD` for `service_account` and reads the JSON answer;
/// every IAM Credentials call fails the same ways (unreachable, refused with Google's error
/// document, an unreadable answer).
pub async fn call_iam_credentials<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    iamcredentials_url: &str,
    bearer: &Secret,
    service_account: &str,
    method: &str,
    body: &serde_json::Value,
) -> Result<IamAnswer<T>, IamCallError> {
    let url = format!(
        "{}/v1/projects/-/serviceAccounts/{service_account}:{method}",
        iamcredentials_url.trim_end_matches('/')
    );
    let failed = |status, message| IamCallError {
        url: url.clone(),
        status,
        message,
        unreadable: false,
    };
    let sent_at = time::OffsetDateTime::now_utc();
    let response = http
        .post(&url)
        .bearer_auth(bearer.expose())
        .json(body)
        .send()
        .await
        .map_err(|e| failed(None, error_chain(&e)))?;
    let status = response.status().as_u16();
    let content_type = crate::http_client::content_type_of(response.headers());
    let date = crate::http_client::date_header(response.headers());
    // A body cut short (the connection dropped mid-answer) is no answer: retried; one larger
    // than IAM Credentials ever sends is not IAM Credentials.
    let text =
        crate::http_client::read_body(response)
            .await
            .map_err(|e| match e.is_transient() {
                true => failed(None, e.to_string()),
                false => IamCallError {
                    unreadable: true,
                    ..failed(Some(status), e.to_string())
                },
            })?;
    if status != 200 {
        // Google's errors are JSON documents; anything else came from something in between.
        let is_error_document = serde_json::from_str::<serde_json::Value>(&text)
            .is_ok_and(|v| v.get("error").is_some());
        return Err(IamCallError {
            unreadable: !is_error_document,
            ..failed(Some(status), google_error_message(&text))
        });
    }
    // Never quote a 200 answer: what it holds may be (part of) a token.
    let value = serde_json::from_str(&text).map_err(|e| IamCallError {
        unreadable: true,
        ..failed(
            Some(status),
            format!(
                "not an IAM Credentials answer ({content_type}, {} bytes: {e})",
                text.len()
            ),
        )
    })?;
    Ok(IamAnswer {
        value,
        date,
        sent_at,
    })
}

/// An `authorized_user` Application Default Credentials file (a developer's laptop after
/// `gcloud auth application-default login`).
#[derive(Deserialize)]
pub(crate) struct AuthorizedUser {
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    /// Where the refresh token is sent; checked by [`parse_adc`] like every endpoint override.
    #[serde(default)]
    token_uri: Option<String>,
    #[serde(default)]
    account: Option<String>,
}

impl AuthorizedUser {
    /// Who this ADC file is, for the cache key: its account (or client id) and the first bytes
    /// of its refresh token's SHA-256, which cannot be turned back into the token.
    fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.refresh_token.expose().as_bytes());
        format!(
            "{} {} {}",
            self.account.as_deref().unwrap_or_default(),
            self.client_id,
            hex::encode(&digest[..16])
        )
    }

    pub(crate) fn describe(&self) -> String {
        self.account
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "the application-default user".into())
    }

    async fn fetch_access_token(
        &self,
        http: &reqwest::Client,
        path: &Path,
    ) -> Result<Secret, SourceError> {
        let url = self
            .token_uri
            .clone()
            .unwrap_or_else(|| DEFAULT_OAUTH_TOKEN_URL.to_string());
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("refresh_token", self.refresh_token.expose()),
        ];
        let response = http.post(&url).form(&form).send().await.map_err(|e| {
            SourceError::IamCredentialsUnreachable {
                url: url.clone(),
                cause: error_chain(&e),
            }
        })?;
        let status = response.status().as_u16();
        let body = crate::http_client::read_body(response).await.map_err(|e| {
            SourceError::AdcUnusable {
                path: path.to_path_buf(),
                reason: format!("refreshing at {url}: {e}"),
            }
        })?;
        if status != 200 {
            return Err(SourceError::AdcUnusable {
                path: path.to_path_buf(),
                reason: format!(
                    "refreshing at {url} failed ({status}: {}); run `gcloud auth application-default login` again",
                    google_error_message(&body)
                ),
            });
        }
        let token: AccessTokenResponse =
            serde_json::from_str(&body).map_err(|e| SourceError::AdcUnusable {
                path: path.to_path_buf(),
                reason: format!("{url} answered without an access token: {e}"),
            })?;
        Ok(token.access_token)
    }
}

/// Finds ADC as google-auth does: `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's well-known
/// file. Only `authorized_user` is used; other types are refused with the reason, and no file
/// at all means "use the metadata server".
fn find_authorized_user_adc() -> Result<Option<(PathBuf, AuthorizedUser)>, SourceError> {
    let explicit = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from);
    let well_known = std::env::var_os("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| dirs::config_dir().map(|d| d.join("gcloud")))
        .map(|d| d.join("application_default_credentials.json"));
    let path = match (explicit, well_known) {
        (Some(p), _) => p,
        (None, Some(p)) if p.exists() => p,
        _ => return Ok(None),
    };
    let text = read_capped(&path, MAX_SMALL_FILE_BYTES).map_err(|e| SourceError::AdcUnusable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let adc = parse_adc(&path, &text)?;
    Ok(Some((path, adc)))
}

/// Reads an ADC file's `text` (from `path`, named in errors): only `authorized_user` is usable.
pub(crate) fn parse_adc(path: &Path, text: &str) -> Result<AuthorizedUser, SourceError> {
    let unusable = |reason: String| SourceError::AdcUnusable {
        path: path.to_path_buf(),
        reason,
    };
    let kind: serde_json::Value =
        serde_json::from_str(text).map_err(|e| unusable(format!("not JSON: {e}")))?;
    match kind.get("type").and_then(|t| t.as_str()) {
        Some("authorized_user") => {
            let adc: AuthorizedUser = serde_json::from_value(kind)
                .map_err(|e| unusable(format!("an authorized_user file needs {e}")))?;
            if let Some(uri) = &adc.token_uri {
                UpstreamUrl::parse(uri)
                    .map_err(|e| unusable(format!("its token_uri (the refresh token goes there): {e}")))?;
            }
            Ok(adc)
        }
        other => Err(unusable(format!(
            "type {:?} is not supported for impersonation; use `gcloud auth application-default login` (authorized_user) or run on GCP with the metadata server",
            other.unwrap_or("(missing)")
        ))),
    }
}

fn read_token_file(path: &Path) -> Result<IdToken, SourceError> {
    let text =
        read_capped(path, MAX_SMALL_FILE_BYTES).map_err(|e| SourceError::FileUnreadable {
            path: path.to_path_buf(),
            cause: e.to_string(),
        })?;
    IdToken::parse(
        Secret::new(text.trim()),
        &format!("the file {}", path.display()),
    )
}

async fn run_token_command(command: &str) -> Result<IdToken, SourceError> {
    let failed = |status: String, stderr: String| SourceError::CommandFailed {
        command: command.to_string(),
        status,
        stderr,
    };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("could not start: {e}"), String::new()))?;
    let output = tokio::time::timeout(Duration::from_secs(60), capped_output(&mut child))
        .await
        .map_err(|_| failed("timed out after 60 s".into(), String::new()))?
        .map_err(|e| failed(e.to_string(), String::new()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let stderr = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {}", truncate(stderr, 500))
        };
        return Err(failed(output.status.to_string(), stderr));
    }
    token_from_command_output(command, &output.stdout)
}

/// Waits for `child`, keeping at most [`MAX_SMALL_FILE_BYTES`] of each of its outputs: more on
/// standard output is an error (the child is killed when dropped), more on standard error is
/// read and dropped so the child never blocks on it.
async fn capped_output(child: &mut tokio::process::Child) -> std::io::Result<std::process::Output> {
    use tokio::io::AsyncReadExt;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("the command's output is not piped"));
    };
    let stderr = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut limited = stderr.take(MAX_SMALL_FILE_BYTES);
        limited.read_to_end(&mut kept).await?;
        tokio::io::copy(&mut limited.into_inner(), &mut tokio::io::sink()).await?;
        Ok::<_, std::io::Error>(kept)
    });
    let mut out = Vec::new();
    stdout
        .take(MAX_SMALL_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .await?;
    if out.len() as u64 > MAX_SMALL_FILE_BYTES {
        stderr.abort();
        return Err(std::io::Error::other(format!(
            "it printed more than {} KiB, more than any token",
            MAX_SMALL_FILE_BYTES / 1024
        )));
    }
    let status = child.wait().await?;
    let stderr = stderr
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)?;
    Ok(std::process::Output {
        status,
        stdout: out,
        stderr,
    })
}

/// What a successful token command printed: the JWT, surrounded by white space at most.
pub(crate) fn token_from_command_output(
    command: &str,
    stdout: &[u8],
) -> Result<IdToken, SourceError> {
    let token = String::from_utf8_lossy(stdout).trim().to_string();
    if token.is_empty() {
        return Err(SourceError::CommandFailed {
            command: command.to_string(),
            status: "printed nothing".into(),
            stderr: String::new(),
        });
    }
    IdToken::parse(Secret::new(token), &format!("the command `{command}`"))
}

/// Google APIs answer `{"error": {"message": ...}}`; OAuth answers `{"error_description": ...}`.
pub(crate) fn google_error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error_description"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    });
    message.unwrap_or_else(|| truncate(body, 300))
}

/// The error and its causes on one line: reqwest's top-level message alone hides the reason.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A one-line excerpt of what an upstream said (an HTML error page, a command's stderr), at
/// most `max` bytes, so messages and log lines stay readable.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(
            truncate("<html>\n  <h1>502</h1>\n</html>", 100),
            "<html> <h1>502</h1> </html>"
        );
        assert_eq!(truncate("ééé", 3), "é…");
    }

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.c2ln",
            enc(&serde_json::json!({"alg":"RS256"})),
            enc(&claims)
        )
    }

    #[test]
    fn parses_the_claims_aws_matches() {
        let raw = jwt(serde_json::json!({
            "iss": "https://accounts.google.com", "aud": "sts.amazonaws.com",
            "azp": "1001", "sub": "1001", "email": "a@b.iam.gserviceaccount.com",
            "exp": 2000000000, "iat": 1999996400
        }));
        let token = IdToken::parse(Secret::new(raw), "test").unwrap();
        assert_eq!(token.claims().azp.as_deref(), Some("1001"));
        assert_eq!(
            token.claims().summary(),
            "iss=https://accounts.google.com aud=sts.amazonaws.com azp=1001 sub=1001 email=a@b.iam.gserviceaccount.com"
        );
    }

    /// Kubernetes projected service-account tokens (EKS IRSA) carry `aud` as an array.
    #[test]
    fn an_array_aud_is_a_jwt_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(
            &path,
            jwt(serde_json::json!({
                "iss": "https://oidc.eks.us-east-1.amazonaws.com/id/ABC", "aud": ["sts.amazonaws.com"],
                "sub": "system:serviceaccount:default:deployer", "exp": 2000000000,
                "kubernetes.io": {"namespace": "default"}
            })),
        )
        .unwrap();
        let token = read_token_file(&path).unwrap();
        assert!(token.claims().aud.contains("sts.amazonaws.com"));
        assert_eq!(
            token.claims().summary(),
            "iss=https://oidc.eks.us-east-1.amazonaws.com/id/ABC aud=[sts.amazonaws.com] azp=(none) sub=system:serviceaccount:default:deployer"
        );
        let printed = std::fs::read(&path).unwrap();
        assert!(token_from_command_output("cat token", &printed).is_ok());
    }

    #[test]
    fn rejects_what_is_not_a_jwt_without_echoing_it() {
        let err = IdToken::parse(Secret::new("not-a-token-secret"), "the file x").unwrap_err();
        assert!(matches!(err, SourceError::NotAJwt { .. }));
        assert!(!err.to_string().contains("not-a-token-secret"));
    }

    /// The refresh token goes to the ADC file's `token_uri`: over TLS, or to loopback only.
    #[test]
    fn an_adc_token_uri_must_not_send_the_refresh_token_in_clear() {
        let adc = |uri: &str| {
            format!(
                r#"{{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"rt-secret","token_uri":"{uri}"}}"#
            )
        };
        let path = Path::new("/adc.json");
        let err = parse_adc(path, &adc("http://oauth.example/token"))
            .err()
            .expect("plain http to another host is refused");
        let message = err.to_string();
        assert!(message.contains("token_uri"), "{message}");
        assert!(!message.contains("rt-secret"), "{message}");
        assert!(parse_adc(path, &adc("https://oauth2.googleapis.com/token")).is_ok());
        assert!(parse_adc(path, &adc("http://127.0.0.1:8080/token")).is_ok());
    }

    #[test]
    fn token_source_specs_parse() {
        assert!(matches!(
            GoogleTokenSource::parse("metadata", None).unwrap(),
            GoogleTokenSource::Metadata(_)
        ));
        match GoogleTokenSource::parse(
            "impersonate:sa@p.iam.gserviceaccount.com",
            Some(&UpstreamUrl::parse("http://127.0.0.1:9/").unwrap()),
        )
        .unwrap()
        {
            GoogleTokenSource::Impersonate(i) => {
                assert_eq!(i.iamcredentials_url, "http://127.0.0.1:9")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            GoogleTokenSource::parse("file:/tmp/t", None).unwrap(),
            GoogleTokenSource::File(_)
        ));
        assert!(GoogleTokenSource::parse("gcloud", None).is_err());
        assert!(GoogleTokenSource::parse("impersonate:nobody", None).is_err());
    }

    #[tokio::test]
    async fn command_source_reports_stderr_and_exit_status() {
        let err = run_token_command("echo boom >&2; exit 3")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("boom") && text.contains('3'), "{text}");
    }

    /// A command that never stops printing is stopped at the cap, not read into memory; one
    /// that floods standard error still has its token read.
    #[tokio::test]
    async fn command_output_is_capped() {
        let err = run_token_command("yes").await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("more than 64 KiB"), "{text}");
        let err = run_token_command("head -c 1000000 /dev/zero >&2; echo not-a-jwt")
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::NotAJwt { .. }), "{err}");
    }

    /// A token file that is a device (or far too large) is refused, not read whole.
    #[cfg(unix)]
    #[test]
    fn an_endless_token_file_is_refused() {
        let err = read_token_file(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, SourceError::FileUnreadable { .. }), "{err}");
        assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn encode(value: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn claims() -> impl Strategy<Value = IdTokenClaims> {
        (
            any::<String>(),
            prop_oneof![
                any::<String>().prop_map(Audience::One),
                proptest::collection::vec(any::<String>(), 0..4).prop_map(Audience::Many),
            ],
            proptest::option::of(any::<String>()),
            any::<String>(),
            proptest::option::of(any::<String>()),
            any::<i64>(),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(iss, aud, azp, sub, email, exp, iat)| IdTokenClaims {
                iss,
                aud,
                azp,
                sub,
                email,
                exp,
                iat,
            })
    }

    proptest! {
        /// Encode the claims as a JWT, decode them: the same claims, whatever their text.
        #[test]
        fn claims_round_trip_through_a_jwt(claims in claims(), extra in any::<bool>()) {
            let mut json = serde_json::json!({
                "iss": claims.iss, "aud": serde_json::to_value(&claims.aud).unwrap(), "sub": claims.sub, "exp": claims.exp,
            });
            if let Some(azp) = &claims.azp { json["azp"] = azp.clone().into(); }
            if let Some(email) = &claims.email { json["email"] = email.clone().into(); }
            if let Some(iat) = claims.iat { json["iat"] = iat.into(); }
            if extra { json["google"] = serde_json::json!({"compute_engine": {"zone": "z"}}); }
            let token = format!("{}.{}.c2lnbmF0dXJl", encode(&serde_json::json!({"alg": "RS256"})), encode(&json));
            let parsed = IdToken::parse(Secret::new(token.clone()), "test").unwrap();
            prop_assert_eq!(parsed.claims(), &claims);
            prop_assert_eq!(parsed.secret().expose(), token.as_str());
            let _ = parsed.claims().expires_at();
        }

        /// Any text, any bytes from a command: a token or an error, never a panic, and the
        /// error never repeats the text.
        #[test]
        fn any_text_is_a_token_or_an_error(text in any::<String>(), bytes in any::<Vec<u8>>()) {
            if let Err(e) = IdToken::parse(Secret::new(text.clone()), "the file x") {
                if text.trim().len() >= 8 {
                    prop_assert!(!e.to_string().contains(text.trim()));
                }
            }
            let _ = token_from_command_output("cmd", &bytes);
        }
    }
}
