//! GCP → AWS inside a Rust program: a credentials provider for the AWS SDK for Rust.
//!
//! A Rust service on GKE or Cloud Run that calls AWS needs neither a sidecar nor a
//! `credential_process`: it hands this provider to `aws_config` and every client built from that
//! configuration gets credentials that the refresh engine keeps fresh (refreshed ahead of expiry,
//! one exchange however many clients ask, never an expired credential).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = keyless::deliver::aws_sdk::GoogleFederatedProvider::builder(
//!     "arn:aws:iam::123456789012:role/DeploymentRole",
//! )
//! .build()?;
//! let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
//!     .credentials_provider(provider) // the one line
//!     .load()
//!     .await;
//! # let _ = config; Ok(()) }
//! ```

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;

use crate::exchange::aws_chain::RoleChain;
use crate::exchange::aws_sts::{
    ExchangeError, RetryPolicy, RoleArn, SessionName, StsEndpoint, WebIdentityRequest,
};
use crate::refresh::{AwsRoleProfile, AwsRoleUpstream, Clock, RefreshPolicy, Refresher};
use crate::source::google::DEFAULT_AWS_AUDIENCE;
use crate::source::SourceError;
use crate::types::{
    ExternalId, Region, SessionTag, SourceIdentity, SpecError, TagKey, UpstreamUrl,
};

/// Why the provider could not be built: the same mistakes the command line reports.
#[derive(Debug, thiserror::Error)]
pub enum ProviderBuildError {
    /// The role ARN or session name is malformed.
    #[error(transparent)]
    Request(#[from] ExchangeError),
    /// The token source is not one the registry knows (`metadata`, `impersonate:EMAIL`, ...).
    #[error(transparent)]
    TokenSource(#[from] SourceError),
    /// A region or endpoint cannot be used (from the builder or the environment).
    #[error(transparent)]
    Setting(#[from] SpecError),
    /// The HTTP client could not be set up (TLS roots).
    #[error("could not set up the HTTP client: {0}")]
    Http(String),
}

/// Builds a [`GoogleFederatedProvider`]; defaults match `keyless aws credentials`.
#[derive(Clone, Debug)]
pub struct Builder {
    role_arn: String,
    audience: String,
    token_source: String,
    iamcredentials_url: Option<String>,
    session_name: Option<String>,
    duration_seconds: Option<u32>,
    sts_endpoint: Option<String>,
    region: Option<String>,
    chain_roles: Vec<String>,
    external_id: Option<String>,
    source_identity: Option<String>,
    tags: Vec<(String, String)>,
    transitive_tag_keys: Vec<String>,
}

impl Builder {
    /// Then assumes this role with the previous role's credentials, as `--chain-role` (call
    /// again for each further role, in order); the provider hands out the last role's
    /// credentials. AWS limits chained sessions to one hour.
    pub fn chain_role(mut self, role_arn: impl Into<String>) -> Self {
        self.chain_roles.push(role_arn.into());
        self
    }

    /// The `ExternalId` the chained roles require, as `--external-id`.
    pub fn external_id(mut self, id: impl Into<String>) -> Self {
        self.external_id = Some(id.into());
        self
    }

    /// The source identity of the first chained session, as `--source-identity`.
    pub fn source_identity(mut self, id: impl Into<String>) -> Self {
        self.source_identity = Some(id.into());
        self
    }

    /// A session tag of the chained sessions, as `--tag KEY=VALUE`.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Makes the tag `key` transitive, as `--transitive-tag-key`.
    pub fn transitive_tag_key(mut self, key: impl Into<String>) -> Self {
        self.transitive_tag_keys.push(key.into());
        self
    }

    /// The ID token's audience, i.e. the trust policy's `accounts.google.com:oaud`
    /// (default `sts.amazonaws.com`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Where the ID token comes from, as `--token-source` (default `metadata`).
    pub fn token_source(mut self, spec: impl Into<String>) -> Self {
        self.token_source = spec.into();
        self
    }

    /// The IAM Credentials base URL for `impersonate:` sources.
    pub fn iamcredentials_url(mut self, url: impl Into<String>) -> Self {
        self.iamcredentials_url = Some(url.into());
        self
    }

    /// The role session name that CloudTrail shows (default: derived from the token).
    pub fn session_name(mut self, name: impl Into<String>) -> Self {
        self.session_name = Some(name.into());
        self
    }

    /// How long each set of credentials lasts, 900–43200 seconds.
    pub fn duration_seconds(mut self, seconds: u32) -> Self {
        self.duration_seconds = Some(seconds);
        self
    }

    /// How long each set of credentials lasts, as the flags spell it (`"1h".parse()?`; see
    /// [`crate::duration`]), 15m to 12h.
    pub fn duration(self, duration: crate::duration::Seconds) -> Self {
        self.duration_seconds(duration.as_secs_u32())
    }

    /// The STS endpoint (default: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else by region):
    /// `https://`, or `http://` to loopback only; checked by [`Builder::build`].
    pub fn sts_endpoint(mut self, url: impl Into<String>) -> Self {
        self.sts_endpoint = Some(url.into());
        self
    }

    /// The region whose STS endpoint to use (default: `AWS_REGION`, `AWS_DEFAULT_REGION`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Checks the settings and returns the provider. Nothing is fetched yet: the first
    /// `provide_credentials` call does the exchange. Inside a Tokio runtime a background task
    /// also keeps the credentials fresh ahead of expiry.
    pub fn build(self) -> Result<GoogleFederatedProvider, ProviderBuildError> {
        let role_arn = RoleArn::parse(&self.role_arn)?;
        let session_name = self
            .session_name
            .as_deref()
            .map(SessionName::parse)
            .transpose()?;
        let region = match self.region {
            Some(region) => Some(Region::parse(&region)?),
            None => Region::from_env()?,
        };
        let iamcredentials_url = self
            .iamcredentials_url
            .as_deref()
            .map(UpstreamUrl::parse)
            .transpose()?;
        let sts_endpoint = self
            .sts_endpoint
            .as_deref()
            .map(UpstreamUrl::parse)
            .transpose()?;
        let chain = RoleChain::new(
            self.chain_roles
                .iter()
                .map(|arn| RoleArn::parse(arn))
                .collect::<Result<_, _>>()?,
            self.external_id
                .as_deref()
                .map(ExternalId::parse)
                .transpose()?,
            self.source_identity
                .as_deref()
                .map(SourceIdentity::parse)
                .transpose()?,
            self.tags
                .iter()
                .map(|(k, v)| SessionTag::new(k, v))
                .collect::<Result<_, _>>()?,
            self.transitive_tag_keys
                .iter()
                .map(|k| TagKey::parse(k))
                .collect::<Result<_, _>>()?,
            self.duration_seconds,
        )?;
        let profile = AwsRoleProfile {
            audit: Default::default(),
            token_source: crate::source::registry::build(
                &crate::source::registry::parse(&self.token_source)?,
                &crate::source::SourceContext {
                    iamcredentials_url,
                    aws: crate::source::aws::AwsSourceOptions {
                        region: region.clone(),
                        ..Default::default()
                    },
                    sts_endpoint: sts_endpoint.clone(),
                    ..Default::default()
                },
            )?,
            audience: self.audience,
            request: WebIdentityRequest {
                role_arn: role_arn.clone(),
                session_name,
                duration_seconds: self.duration_seconds,
                policy: None,
                policy_arns: Vec::new(),
            },
            endpoint: StsEndpoint::resolve(sts_endpoint.as_ref(), region.as_ref())?,
            retry: RetryPolicy::default(),
            chain,
        };
        let final_role = profile.final_role().clone();
        let http =
            crate::wire::http::build().map_err(|e| ProviderBuildError::Http(e.to_string()))?;
        let refresher = Refresher::new(
            final_role.as_str(),
            AwsRoleUpstream { profile, http },
            RefreshPolicy::default(),
            Clock::System,
        );
        let keeper = tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| Arc::new(AbortOnDrop(refresher.spawn_keeper())));
        Ok(GoogleFederatedProvider { refresher, keeper })
    }
}

/// Stops the background refresh when the last clone of the provider goes away.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// AWS credentials for a role, obtained with this workload's Google identity and kept fresh;
/// implements the AWS SDK's [`ProvideCredentials`]. Cheap to clone: clones share one credential.
#[derive(Clone)]
pub struct GoogleFederatedProvider {
    refresher: Refresher<AwsRoleUpstream>,
    keeper: Option<Arc<AbortOnDrop>>,
}

impl std::fmt::Debug for GoogleFederatedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleFederatedProvider")
            .field("role", &self.refresher.name())
            .field("background_refresh", &self.keeper.is_some())
            .finish()
    }
}

impl GoogleFederatedProvider {
    /// A builder for `role_arn` with the command line's defaults.
    pub fn builder(role_arn: impl Into<String>) -> Builder {
        Builder {
            role_arn: role_arn.into(),
            audience: DEFAULT_AWS_AUDIENCE.to_string(),
            token_source: "metadata".into(),
            iamcredentials_url: None,
            session_name: None,
            duration_seconds: None,
            sts_endpoint: None,
            region: None,
            chain_roles: Vec::new(),
            external_id: None,
            source_identity: None,
            tags: Vec::new(),
            transitive_tag_keys: Vec::new(),
        }
    }

    /// The current credentials, in the SDK's type.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let (role, expires_at) = self
            .refresher
            .get()
            .await
            .map_err(CredentialsError::provider_error)?;
        let creds = role.credentials;
        Ok(Credentials::new(
            creds.access_key_id,
            creds.secret_access_key.expose(),
            creds.session_token.map(|t| t.expose().to_string()),
            Some(SystemTime::from(expires_at)),
            "keyless",
        ))
    }
}

impl ProvideCredentials for GoogleFederatedProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.credentials())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_are_caught_when_building() {
        let err = GoogleFederatedProvider::builder("not-an-arn")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("not-an-arn"), "{err}");
        let err = GoogleFederatedProvider::builder("arn:aws:iam::123456789012:role/R")
            .token_source("somewhere")
            .build()
            .unwrap_err();
        assert!(matches!(err, ProviderBuildError::TokenSource(_)), "{err}");
        // The region becomes the STS host name: one that would move the host is refused.
        let err = GoogleFederatedProvider::builder("arn:aws:iam::123456789012:role/R")
            .region("x.evil.example/#")
            .build()
            .unwrap_err();
        assert!(matches!(err, ProviderBuildError::Setting(_)), "{err}");
        assert!(err.to_string().contains("is not an AWS region"), "{err}");
        // The ID token never goes over plain http to another machine.
        let err = GoogleFederatedProvider::builder("arn:aws:iam::123456789012:role/R")
            .sts_endpoint("http://example.com")
            .build()
            .unwrap_err();
        assert!(matches!(err, ProviderBuildError::Setting(_)), "{err}");
        assert!(err.to_string().contains("http://example.com"), "{err}");
        // Role chaining follows AWS's rules here too.
        let err = GoogleFederatedProvider::builder("arn:aws:iam::123456789012:role/R")
            .chain_role("arn:aws:iam::210987654321:role/B")
            .duration_seconds(7200)
            .build()
            .unwrap_err();
        assert!(matches!(err, ProviderBuildError::Setting(_)), "{err}");
        assert!(err.to_string().contains("1 hour"), "{err}");
        let err = GoogleFederatedProvider::builder("arn:aws:iam::123456789012:role/R")
            .chain_role("arn:aws:iam::210987654321:role/B")
            .tag("team", "a;b")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("is not a session tag"), "{err}");
    }

    #[test]
    fn debug_shows_the_role_and_nothing_secret() {
        let provider = GoogleFederatedProvider::builder("arn:aws:iam::123456789012:role/R")
            .build()
            .unwrap();
        let text = format!("{provider:?}");
        assert!(text.contains("role/R"), "{text}");
        assert!(
            text.contains("background_refresh: false"),
            "outside a runtime: {text}"
        );
    }
}
