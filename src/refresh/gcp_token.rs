//! Any subject → GCP: the flow's steps in order — the subject (AWS credentials proven by a
//! signed `GetCallerIdentity`, or an OIDC token from any registered source), Google STS, and the
//! optional impersonation — with errors that say which step failed.

use crate::credentials::{AwsCredentials, GoogleAccessToken};
use crate::exchange::aws_sts::{fetch_caller_identity, ExchangeError, RetryPolicy, StsEndpoint};
use crate::exchange::google_iam::{
    generate_access_token, generate_id_token, IamError, Impersonation,
};
use crate::exchange::google_sts::{
    build_subject_token, exchange_subject_token, GoogleStsError, SubjectToken, TokenExchange,
};
use crate::secret::Secret;
use crate::source::aws::{AwsIdentitySource, AwsSourceError};
use crate::source::{IdTokenClaims, SharedTokenSource, SourceError};
use crate::types::{TokenSourceSpec, UpstreamUrl};

/// What Google STS is given: which identity, and so which kind of provider must accept it.
#[derive(Clone, Debug)]
pub enum GcpSubject {
    /// AWS credentials (the aws-config chain), proven by a signed `GetCallerIdentity`: for an
    /// AWS provider (`--token-source aws`, the default).
    Aws(AwsIdentitySource),
    /// An OIDC token from a registered source, minted (where the source can choose) for
    /// `audience`: for an OIDC provider.
    Jwt {
        source: SharedTokenSource,
        /// The token's audience (`--token-audience`; default [`default_token_audience`]).
        audience: String,
    },
}

impl GcpSubject {
    /// Where the subject comes from, for messages (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Self::Aws(aws) => aws.describe(),
            Self::Jwt { source, .. } => source.describe(),
        }
    }

    /// The identity behind the subject as far as it can be known without the network: part of
    /// every refresh engine's key, so one profile's tokens never stand for another identity.
    /// `None` when it cannot be known now.
    pub fn cached_identity(&self) -> Option<String> {
        match self {
            Self::Aws(aws) => Some(aws.describe()),
            Self::Jwt { source, audience } => source
                .cached_identity()
                .map(|identity| format!("{} aud={audience} {identity}", source.describe())),
        }
    }
}

/// The `--token-source` (`token_source`) that proves the AWS identity: not a JWT source of the
/// registry, and the default for every `gcp` command and AWS → GCP profile.
pub const AWS_TOKEN_SOURCE: &str = "aws";

/// Parses a token source for Google as written (clap's `value_parser`, keyless.toml): `aws`, or
/// a registered JWT source.
pub fn parse_token_source(value: &str) -> Result<TokenSourceSpec, SourceError> {
    if value.trim() == AWS_TOKEN_SOURCE {
        return Ok(TokenSourceSpec::new(AWS_TOKEN_SOURCE, None).expect("a valid spec"));
    }
    crate::source::registry::parse(value).map_err(|e| match e {
        SourceError::UnknownTokenSource {
            spec,
            reason,
            spellings,
        } => SourceError::UnknownTokenSource {
            spec,
            reason,
            spellings: format!("{spellings}, {AWS_TOKEN_SOURCE}"),
        },
        other => other,
    })
}

/// The audience a JWT minted for Google gets unless `--token-audience` says otherwise: the
/// provider's `https://iam.googleapis.com/projects/.../providers/X` name, which an OIDC provider
/// without `allowedAudiences` accepts.
pub fn default_token_audience(provider: &str) -> String {
    let name = provider
        .trim()
        .trim_start_matches("https:")
        .trim_start_matches("//iam.googleapis.com/")
        .trim_start_matches('/');
    format!("https://iam.googleapis.com/{name}")
}

/// Everything that decides which Google token a subject is traded for.
#[derive(Clone, Debug)]
pub struct GcpTokenProfile {
    pub subject: GcpSubject,
    /// The workload identity provider, `//iam.googleapis.com/projects/N/.../providers/X`.
    pub audience: String,
    pub scopes: Vec<String>,
    pub token_url: UpstreamUrl,
    pub iamcredentials_url: UpstreamUrl,
    /// `None`: the federated token itself (direct resource access).
    pub impersonation: Option<Impersonation>,
    pub retry: RetryPolicy,
    /// The profile and channel this profile's audit events name.
    pub audit: crate::audit::AuditContext,
}

/// Who a federated token stands for: what was proven to Google STS.
#[derive(Clone, Debug)]
pub enum FederatedSubject {
    /// The AWS credentials whose identity was federated (to name it without fetching again:
    /// a profile with `role_arn` would assume the role a second time).
    Aws(AwsCredentials),
    /// The claims of the OIDC token that was traded (never the token itself).
    Jwt(IdTokenClaims),
}

/// A Google token and who it stands for.
#[derive(Clone, Debug)]
pub struct GcpToken {
    pub token: GoogleAccessToken,
    /// The service account impersonated, if any.
    pub service_account: Option<String>,
    /// The identity that was federated.
    pub subject: FederatedSubject,
}

/// Which step of the flow to Google failed; each variant's message says why and what to do.
///
/// The step's error is part of the message and deliberately not a `source()`: printed as a
/// chain (`{:#}`), it would otherwise appear twice.
#[derive(Debug, thiserror::Error)]
pub enum GcpFlowError {
    /// No AWS identity could be found.
    #[error("finding the AWS identity: {0}")]
    AwsSource(AwsSourceError),
    /// The token source gave no token.
    #[error("getting the token from {origin}: {error}")]
    TokenSource { origin: String, error: SourceError },
    /// The subject token could not be signed.
    #[error("signing the subject token: {0}")]
    Signing(ExchangeError),
    /// Google STS refused or failed.
    #[error("exchanging at Google STS: {0}")]
    GoogleSts(GoogleStsError),
    /// IAM Credentials refused or failed.
    #[error("impersonating the service account: {0}")]
    Iam(IamError),
    /// An ID token needs a service account to be minted for.
    #[error("an ID token needs --service-account (a federated principal cannot have one)")]
    NeedsServiceAccount,
    /// Settings that do not go together (an AWS-only flag with a JWT source...); says which.
    #[error("{0}")]
    InvalidSettings(String),
}

impl From<AwsSourceError> for GcpFlowError {
    fn from(e: AwsSourceError) -> Self {
        Self::AwsSource(e)
    }
}

impl From<ExchangeError> for GcpFlowError {
    fn from(e: ExchangeError) -> Self {
        Self::Signing(e)
    }
}

impl From<GoogleStsError> for GcpFlowError {
    fn from(e: GoogleStsError) -> Self {
        Self::GoogleSts(e)
    }
}

impl From<IamError> for GcpFlowError {
    fn from(e: IamError) -> Self {
        Self::Iam(e)
    }
}

impl GcpFlowError {
    /// Retrying later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::AwsSource(e) => e.is_transient(),
            Self::TokenSource { error, .. } => error.is_transient(),
            Self::GoogleSts(e) => e.is_transient(),
            Self::Iam(e) => e.is_transient(),
            Self::Signing(_) | Self::NeedsServiceAccount | Self::InvalidSettings(_) => false,
        }
    }

    /// keyless's word for this failure in an audit event, when Google gave no error code of its
    /// own (`source`, `network`, `refused`, `configuration`, `failure`).
    pub fn audit_word(&self) -> &'static str {
        match self {
            Self::AwsSource(_) | Self::TokenSource { .. } => "source",
            Self::NeedsServiceAccount | Self::InvalidSettings(_) => "configuration",
            Self::Signing(_) => "failure",
            _ if self.is_transient() => "network",
            _ if self.is_refusal() => "refused",
            _ => "unreadable",
        }
    }

    /// The other cloud refused the identity.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::GoogleSts(e) => e.is_refusal(),
            Self::Iam(IamError::Refused { status, .. }) => *status < 500 && *status != 429,
            _ => false,
        }
    }
}

impl crate::classify::Classify for GcpFlowError {
    fn class(&self) -> crate::classify::Class {
        use crate::classify::Class;
        match self {
            Self::AwsSource(source) => source.class(),
            Self::TokenSource { error, .. } => error.class(),
            _ if self.is_refusal() => Class::Refused,
            _ if self.is_transient() => Class::Unavailable,
            Self::NeedsServiceAccount | Self::InvalidSettings(_) => Class::Usage,
            _ => Class::Failure,
        }
    }
}

impl GcpTokenProfile {
    /// What Google STS would be given: the serialised, signed GetCallerIdentity request, or
    /// the JWT from the token source.
    pub async fn subject_token(
        &self,
        http: &reqwest::Client,
    ) -> Result<SubjectToken, GcpFlowError> {
        Ok(self.fetch_subject(http).await?.0)
    }

    /// The subject token and who it proves.
    async fn fetch_subject(
        &self,
        http: &reqwest::Client,
    ) -> Result<(SubjectToken, FederatedSubject), GcpFlowError> {
        match &self.subject {
            GcpSubject::Aws(aws) => {
                let credentials = aws.fetch_credentials().await?;
                crate::audit::recorder::note_source(crate::audit::AuditSource {
                    access_key_id: Some(credentials.access_key_id.clone()),
                    ..Default::default()
                });
                let token = build_subject_token(
                    &credentials,
                    aws.region(),
                    &self.audience,
                    std::time::SystemTime::now(),
                )?;
                Ok((token, FederatedSubject::Aws(credentials)))
            }
            GcpSubject::Jwt { source, audience } => {
                let failed = |error| GcpFlowError::TokenSource {
                    origin: source.describe(),
                    error,
                };
                // The token source has timeouts of its own; the deadline bounds it too.
                let token = self
                    .retry
                    .budget()
                    .within_deadline(self.fetch_jwt(source, http, audience))
                    .await
                    .map_err(|timed_out| {
                        failed(SourceError::TimedOut {
                            source_name: source.describe(),
                            seconds: timed_out.after.as_secs_f64(),
                        })
                    })?
                    .map_err(failed)?;
                let identity = crate::audit::jwt_source(token.claims());
                tracing::debug!(identity = %crate::audit::source_identity(&identity),
                    "token source: fetched a token for Google STS");
                crate::audit::recorder::note_source(identity);
                let claims = token.claims().clone();
                Ok((SubjectToken::Jwt(token), FederatedSubject::Jwt(claims)))
            }
        }
    }

    /// The source's token for `audience`; like [`crate::source::TokenSource::fetch_for`], warns
    /// when a source that cannot choose its audience gives a token Google will refuse. A
    /// provider without allowedAudiences accepts its name with `https://iam.googleapis.com/` or
    /// `//iam.googleapis.com/` in front, so the default audience stands for both.
    async fn fetch_jwt(
        &self,
        source: &SharedTokenSource,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<crate::source::IdToken, SourceError> {
        let token = source.fetch(http, audience).await?;
        let aud = &token.claims().aud;
        let default = audience == default_token_audience(&self.audience);
        let accepted = aud.contains(audience) || (default && aud.contains(&self.audience));
        if !source.chooses_audience() && !accepted {
            tracing::warn!(
                source = %source.describe(),
                token_audience = %aud,
                expected = %audience,
                "the token's audience is not one the provider accepts by default; Google STS will refuse it unless the provider lists it in allowedAudiences (mint the token for the expected audience, or pass --token-audience)"
            );
        }
        Ok(token)
    }

    /// The federated token (the subject as a principal of the pool) and who it stands for.
    pub async fn fetch_federated(
        &self,
        http: &reqwest::Client,
    ) -> Result<(GoogleAccessToken, FederatedSubject), GcpFlowError> {
        let (subject_token, subject) = self.fetch_subject(http).await?;
        let exchange = TokenExchange {
            audience: self.audience.clone(),
            scopes: self.scopes.clone(),
            subject_token,
        };
        let described = self.subject.describe();
        tracing::debug!(token_url = %self.token_url, audience = %self.audience,
            "Google STS: sending the token exchange");
        match exchange_subject_token(
            http,
            self.token_url.as_str(),
            &exchange,
            &described,
            &self.retry,
        )
        .await
        {
            Err(GoogleStsError::Refused {
                audience,
                code,
                description,
                ..
            }) => {
                // Name the ARN Google saw: that is what the attribute condition was tested on.
                let principal = match &subject {
                    FederatedSubject::Aws(credentials) => self
                        .caller_arn(http, credentials)
                        .await
                        .unwrap_or(described),
                    FederatedSubject::Jwt(_) => described,
                };
                Err(GoogleStsError::Refused {
                    audience,
                    principal,
                    code,
                    description,
                }
                .into())
            }
            other => Ok((other?, subject)),
        }
    }

    /// The federated token, then the service account's token when impersonation is asked for.
    /// Both steps share the profile's one deadline. Emits the exchange's one audit event
    /// ([`crate::audit`]), whatever the outcome.
    pub async fn fetch(&self, http: &reqwest::Client) -> Result<GcpToken, GcpFlowError> {
        self.audited(self.exchange_token(http), |t| t.token.expires_at)
            .await
    }

    /// Runs `exchange` in an audit scope and emits its event; `expiry` reads a success.
    async fn audited<T>(
        &self,
        exchange: impl std::future::Future<Output = Result<T, GcpFlowError>>,
        expiry: impl FnOnce(&T) -> time::OffsetDateTime,
    ) -> Result<T, GcpFlowError> {
        let audit = crate::audit::Exchange {
            context: &self.audit,
            source_kind: match &self.subject {
                GcpSubject::Aws(_) => "aws".to_string(),
                GcpSubject::Jwt { source, .. } => crate::audit::source_kind(&source.describe()),
            },
            target: crate::audit::AuditTarget::google(
                self.audience.clone(),
                self.impersonation
                    .as_ref()
                    .map(|i| i.service_account.clone()),
            ),
            requested_duration_secs: self
                .impersonation
                .as_ref()
                .and_then(|i| i.lifetime)
                .map(u64::from),
            started: std::time::Instant::now(),
        };
        audit.run(exchange, expiry, GcpFlowError::audit_word).await
    }

    async fn exchange_token(&self, http: &reqwest::Client) -> Result<GcpToken, GcpFlowError> {
        let started = std::time::Instant::now();
        let (federated, subject) = self.fetch_federated(http).await?;
        let Some(impersonation) = &self.impersonation else {
            return Ok(GcpToken {
                token: federated,
                service_account: None,
                subject,
            });
        };
        tracing::debug!(service_account = %impersonation.service_account,
            "IAM Credentials: sending generateAccessToken");
        let token = self
            .retry
            .with_time_spent(started.elapsed())
            .run(
                || {
                    generate_access_token(
                        http,
                        self.iamcredentials_url.as_str(),
                        &federated.access_token,
                        impersonation,
                        self.federated_name(),
                    )
                },
                IamError::is_transient,
                |timed_out| IamError::timed_out(self.iamcredentials_url.as_str(), timed_out),
            )
            .await
            .map_err(|(e, attempts)| e.after_attempts(attempts))?;
        Ok(GcpToken {
            token,
            service_account: Some(impersonation.service_account.clone()),
            subject,
        })
    }

    /// An ID token for `target_audience`, minted for the impersonated service account; one
    /// audit event, as for [`GcpTokenProfile::fetch`].
    pub async fn fetch_id_token(
        &self,
        http: &reqwest::Client,
        target_audience: &str,
    ) -> Result<Secret, GcpFlowError> {
        self.audited(self.exchange_id_token(http, target_audience), |token| {
            crate::source::IdToken::parse(token.clone(), "generateIdToken")
                .map(|t| t.claims().expires_at())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        })
        .await
    }

    async fn exchange_id_token(
        &self,
        http: &reqwest::Client,
        target_audience: &str,
    ) -> Result<Secret, GcpFlowError> {
        let impersonation = self
            .impersonation
            .as_ref()
            .ok_or(GcpFlowError::NeedsServiceAccount)?;
        let started = std::time::Instant::now();
        let (federated, _subject) = self.fetch_federated(http).await?;
        // The audience may come from a caller of the GCE-style endpoint: Debug keeps it on one line.
        tracing::debug!(service_account = %impersonation.service_account, ?target_audience,
            "IAM Credentials: sending generateIdToken");
        let token = self
            .retry
            .with_time_spent(started.elapsed())
            .run(
                || {
                    generate_id_token(
                        http,
                        self.iamcredentials_url.as_str(),
                        &federated.access_token,
                        &impersonation.service_account,
                        target_audience,
                        &impersonation.delegates,
                        self.federated_name(),
                    )
                },
                IamError::is_transient,
                |timed_out| IamError::timed_out(self.iamcredentials_url.as_str(), timed_out),
            )
            .await
            .map_err(|(e, attempts)| e.after_attempts(attempts))?;
        Ok(token)
    }

    /// How IAM Credentials' refusals name the caller.
    fn federated_name(&self) -> &'static str {
        match self.subject {
            GcpSubject::Aws(_) => "the federated AWS identity",
            GcpSubject::Jwt { .. } => "the federated OIDC identity",
        }
    }

    /// The ARN these credentials sign as (GetCallerIdentity at the region's STS endpoint).
    pub async fn caller_arn(
        &self,
        http: &reqwest::Client,
        credentials: &AwsCredentials,
    ) -> Option<String> {
        let GcpSubject::Aws(aws) = &self.subject else {
            return None;
        };
        let endpoint = StsEndpoint::resolve(None, Some(aws.region())).ok()?;
        fetch_caller_identity(http, &endpoint, credentials)
            .await
            .ok()
            .map(|identity| identity.arn)
    }
}

/// The engine's view of a [`GcpTokenProfile`]: an access token for its scopes.
#[derive(Clone, Debug)]
pub struct GcpTokenUpstream {
    pub profile: GcpTokenProfile,
    pub http: reqwest::Client,
}

impl crate::refresh::engine::Upstream for GcpTokenUpstream {
    type Value = GcpToken;

    async fn fetch(
        &self,
    ) -> Result<(GcpToken, time::OffsetDateTime), crate::refresh::engine::RefreshError> {
        let _turn = crate::refresh::in_flight::turn(self.profile.token_url.as_str()).await;
        let token =
            self.profile.fetch(&self.http).await.map_err(|e| {
                crate::refresh::engine::RefreshError::from_error(&e, e.is_transient())
            })?;
        let expires_at = token.token.expires_at;
        Ok((token, expires_at))
    }
}

/// The engine's view of ID tokens for one audience, minted for the profile's service account.
#[derive(Clone, Debug)]
pub struct GcpIdTokenUpstream {
    pub profile: GcpTokenProfile,
    pub target_audience: String,
    pub http: reqwest::Client,
}

impl crate::refresh::engine::Upstream for GcpIdTokenUpstream {
    type Value = Secret;

    async fn fetch(
        &self,
    ) -> Result<(Secret, time::OffsetDateTime), crate::refresh::engine::RefreshError> {
        let _turn = crate::refresh::in_flight::turn(self.profile.token_url.as_str()).await;
        let token = self
            .profile
            .fetch_id_token(&self.http, &self.target_audience)
            .await
            .map_err(|e| crate::refresh::engine::RefreshError::from_error(&e, e.is_transient()))?;
        let parsed = crate::source::IdToken::parse(token.clone(), "generateIdToken")
            .map_err(|e| crate::refresh::engine::RefreshError::from_error(&e, false))?;
        Ok((token, parsed.claims().expires_at()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_for_google_defaults_to_the_providers_https_name() {
        let https = "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";
        for provider in [
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
            "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
        ] {
            assert_eq!(default_token_audience(provider), https);
        }
    }

    #[test]
    fn token_sources_for_google_are_aws_or_the_registrys() {
        assert_eq!(parse_token_source(" aws ").unwrap().to_string(), "aws");
        assert_eq!(
            parse_token_source("file:/t").unwrap().to_string(),
            "file:/t"
        );
        let error = parse_token_source("gcloud").unwrap_err().to_string();
        assert!(error.contains("aws-oidc, aws"), "{error}");
        assert!(parse_token_source("aws:x").is_err());
    }
}
