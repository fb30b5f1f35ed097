//! Google ID tokens: the identity a GCE VM, GKE pod or Cloud Run service already has
//! (`metadata`), or another service account's through IAM Credentials (`impersonate:EMAIL`).
//!
//! The metadata server mints a fresh token per request, so we never cache the token itself,
//! only what it buys: the target checks `exp` when the token is used.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::private_file::{read_capped, MAX_SMALL_FILE_BYTES};
use crate::secret::Secret;
use crate::source::registry::{Argument, Registration};
use crate::source::{TokenFuture, TokenSource};
use crate::types::UpstreamUrl;
use crate::wire::iam_credentials::fetch_generated_id_token;
use crate::wire::{error_chain, google_error_message, truncate};

/// The audience AWS STS expects by default for web identity federation.
pub const DEFAULT_AWS_AUDIENCE: &str = "sts.amazonaws.com";

/// Old paths of what moved to [`crate::source`], kept while the daemon moves out of `cli/`.
pub use crate::source::{IdToken, SourceError};

/// Where the metadata server lives when `GCE_METADATA_HOST` does not say otherwise.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// Where IAM Credentials lives when no flag or config says otherwise.
pub const DEFAULT_IAMCREDENTIALS_URL: &str = "https://iamcredentials.googleapis.com";

/// Google's OAuth2 token endpoint, used to refresh `authorized_user` ADC when the file names none.
pub const DEFAULT_OAUTH_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// `metadata`: the instance's default service account, from the metadata server.
pub const METADATA: Registration = Registration {
    name: "metadata",
    argument: Argument::None,
    summary: "a Google ID token from the metadata server of GCE, GKE or Cloud Run",
    build: |_, _| Ok(std::sync::Arc::new(MetadataServer::from_env())),
};

/// `impersonate:EMAIL`: another service account's ID token, minted by IAM Credentials for the
/// caller that ADC or the metadata server stands for.
pub const IMPERSONATE: Registration = Registration {
    name: "impersonate",
    argument: Argument::Required("EMAIL"),
    summary: "a Google ID token for another service account (IAM Credentials generateIdToken)",
    build: |email, context| {
        let email = email.unwrap_or_default();
        if !email.contains('@') {
            return Err(context.invalid(
                "impersonate",
                "impersonate: takes a service account's email (impersonate:NAME@PROJECT.iam.gserviceaccount.com)",
            ));
        }
        Ok(std::sync::Arc::new(Impersonation {
            service_account: email.to_string(),
            iamcredentials_url: context.iamcredentials_url().to_string(),
            metadata: MetadataServer::from_env(),
        }))
    },
};

/// The GCE metadata server, found the way Google's SDKs find it.
#[derive(Clone, Debug)]
pub struct MetadataServer {
    host: String,
}

impl TokenSource for MetadataServer {
    fn describe(&self) -> String {
        format!("metadata({})", self.host)
    }

    /// The metadata server's host only. Asking it for the default account would cost a request
    /// on every cache hit; the residual risk is a VM whose service account is changed (it must
    /// be stopped for that) within the lifetime of a cached entry.
    fn cached_identity(&self) -> Option<String> {
        Some(format!("metadata-default-account@{}", self.host))
    }

    fn fetch<'a>(&'a self, http: &'a reqwest::Client, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(self.fetch_id_token(http, audience))
    }
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
            crate::wire::http::read_body(response)
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

/// `generateIdToken` for a service account, authorised by ADC or the metadata server.
#[derive(Clone, Debug)]
pub struct Impersonation {
    pub service_account: String,
    pub iamcredentials_url: String,
    metadata: MetadataServer,
}

impl TokenSource for Impersonation {
    fn describe(&self) -> String {
        format!(
            "impersonate:{}@{}",
            self.service_account, self.iamcredentials_url
        )
    }

    /// The caller: the ADC file's account and a fingerprint of its refresh token (another
    /// `gcloud auth application-default login` is another identity), or the metadata server;
    /// the service account impersonated is in [`TokenSource::describe`].
    fn cached_identity(&self) -> Option<String> {
        match find_authorized_user_adc() {
            Ok(Some((_, adc))) => Some(format!("adc:{}", adc.fingerprint())),
            Ok(None) => Some(format!("metadata-default-account@{}", self.metadata.host)),
            Err(_) => None,
        }
    }

    fn fetch<'a>(&'a self, http: &'a reqwest::Client, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(self.fetch_id_token(http, audience))
    }
}

impl Impersonation {
    async fn fetch_id_token(
        &self,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<IdToken, SourceError> {
        let (access_token, caller) = fetch_caller_access_token(http, &self.metadata).await?;
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

/// An access token for the Google caller keyless runs as, and who that is: the
/// `authorized_user` Application Default Credentials file when there is one (a developer's
/// laptop), else the metadata server's default service account. What `impersonate:` calls IAM
/// Credentials with, and what `keyless audit gcp` reads Cloud Logging with.
pub async fn fetch_caller_access_token(
    http: &reqwest::Client,
    metadata: &MetadataServer,
) -> Result<(Secret, String), SourceError> {
    match find_authorized_user_adc()? {
        Some((path, adc)) => Ok((adc.fetch_access_token(http, &path).await?, adc.describe())),
        None => metadata.fetch_access_token(http).await,
    }
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
        let body =
            crate::wire::http::read_body(response)
                .await
                .map_err(|e| SourceError::AdcUnusable {
                    path: path.to_path_buf(),
                    reason: format!("refreshing at {url}: {e}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

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
}
