//! AWS → GCP: the flow's steps in order — the AWS identity, the signed subject token, Google
//! STS, and the optional impersonation — with errors that say which step failed.

use crate::credentials::{AwsCredentials, GoogleAccessToken};
use crate::exchange::aws_sts::{fetch_caller_identity, ExchangeError, RetryPolicy, StsEndpoint};
use crate::exchange::google_iam::{
    generate_access_token, generate_id_token, IamError, Impersonation,
};
use crate::exchange::google_sts::{
    build_subject_token, exchange_subject_token, GoogleStsError, SubjectToken, TokenExchange,
};
use crate::exchange::record::{ExchangeRecord, ExchangeTarget};
use crate::secret::Secret;
use crate::source::aws::{AwsIdentitySource, AwsSourceError};
use crate::types::UpstreamUrl;

/// Everything that decides which Google token an AWS identity is traded for.
#[derive(Clone, Debug)]
pub struct GcpTokenProfile {
    pub aws: AwsIdentitySource,
    /// The workload identity provider, `//iam.googleapis.com/projects/N/.../providers/X`.
    pub audience: String,
    pub scopes: Vec<String>,
    pub token_url: UpstreamUrl,
    pub iamcredentials_url: UpstreamUrl,
    /// `None`: the federated token itself (direct resource access).
    pub impersonation: Option<Impersonation>,
    pub retry: RetryPolicy,
}

/// A Google token and who it stands for.
#[derive(Clone, Debug)]
pub struct GcpToken {
    pub token: GoogleAccessToken,
    /// The service account impersonated, if any.
    pub service_account: Option<String>,
    /// The AWS credentials whose identity was federated (to name it without fetching again:
    /// a profile with `role_arn` would assume the role a second time).
    pub aws_credentials: AwsCredentials,
}

/// Which step of the AWS → GCP flow failed; each variant's message says why and what to do.
///
/// The step's error is part of the message and deliberately not a `source()`: printed as a
/// chain (`{:#}`), it would otherwise appear twice.
#[derive(Debug, thiserror::Error)]
pub enum GcpFlowError {
    /// No AWS identity could be found.
    #[error("finding the AWS identity: {0}")]
    AwsSource(AwsSourceError),
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
            Self::GoogleSts(e) => e.is_transient(),
            Self::Iam(e) => e.is_transient(),
            Self::Signing(_) | Self::NeedsServiceAccount => false,
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
            _ if self.is_refusal() => Class::Refused,
            _ if self.is_transient() => Class::Unavailable,
            Self::NeedsServiceAccount => Class::Usage,
            _ => Class::Failure,
        }
    }
}

impl GcpTokenProfile {
    /// The signed GetCallerIdentity request, serialised: proof of the AWS identity.
    pub async fn subject_token(&self) -> Result<SubjectToken, GcpFlowError> {
        let credentials = self.aws.fetch_credentials().await?;
        Ok(build_subject_token(
            &credentials,
            self.aws.region(),
            &self.audience,
            std::time::SystemTime::now(),
        )?)
    }

    /// The federated token (the AWS identity as a principal of the pool) and the AWS
    /// credentials it was proven with.
    pub async fn fetch_federated(
        &self,
        http: &reqwest::Client,
    ) -> Result<(GoogleAccessToken, AwsCredentials), GcpFlowError> {
        let credentials = self.aws.fetch_credentials().await?;
        let subject_token = build_subject_token(
            &credentials,
            self.aws.region(),
            &self.audience,
            std::time::SystemTime::now(),
        )?;
        let exchange = TokenExchange {
            audience: self.audience.clone(),
            scopes: self.scopes.clone(),
            subject_token,
        };
        let described = self.aws.describe();
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
                let principal = self
                    .caller_arn(http, &credentials)
                    .await
                    .unwrap_or(described);
                Err(GoogleStsError::Refused {
                    audience,
                    principal,
                    code,
                    description,
                }
                .into())
            }
            other => Ok((other?, credentials)),
        }
    }

    /// The federated token, then the service account's token when impersonation is asked for.
    /// Both steps share the profile's one deadline.
    pub async fn fetch(&self, http: &reqwest::Client) -> Result<GcpToken, GcpFlowError> {
        let started = std::time::Instant::now();
        let (federated, aws_credentials) = self.fetch_federated(http).await?;
        let Some(impersonation) = &self.impersonation else {
            self.record(
                ExchangeTarget::GoogleSts,
                &aws_credentials,
                self.audience.clone(),
                federated.expires_at,
                started,
            )
            .log();
            return Ok(GcpToken {
                token: federated,
                service_account: None,
                aws_credentials,
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
                        "the federated AWS identity",
                    )
                },
                IamError::is_transient,
                |timed_out| IamError::timed_out(self.iamcredentials_url.as_str(), timed_out),
            )
            .await
            .map_err(|(e, attempts)| e.after_attempts(attempts))?;
        self.record(
            ExchangeTarget::GoogleImpersonation,
            &aws_credentials,
            impersonation.service_account.clone(),
            token.expires_at,
            started,
        )
        .log();
        Ok(GcpToken {
            token,
            service_account: Some(impersonation.service_account.clone()),
            aws_credentials,
        })
    }

    /// An ID token for `target_audience`, minted for the impersonated service account.
    pub async fn fetch_id_token(
        &self,
        http: &reqwest::Client,
        target_audience: &str,
    ) -> Result<Secret, GcpFlowError> {
        let impersonation = self
            .impersonation
            .as_ref()
            .ok_or(GcpFlowError::NeedsServiceAccount)?;
        let started = std::time::Instant::now();
        let (federated, aws_credentials) = self.fetch_federated(http).await?;
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
                        "the federated AWS identity",
                    )
                },
                IamError::is_transient,
                |timed_out| IamError::timed_out(self.iamcredentials_url.as_str(), timed_out),
            )
            .await
            .map_err(|(e, attempts)| e.after_attempts(attempts))?;
        let expires_at = crate::source::IdToken::parse(token.clone(), "generateIdToken")
            .map(|t| t.claims().expires_at())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        self.record(
            ExchangeTarget::GoogleImpersonation,
            &aws_credentials,
            impersonation.service_account.clone(),
            expires_at,
            started,
        )
        .log();
        Ok(token)
    }

    /// The log line of one exchange of this profile: the AWS identity (where it came from and
    /// its access key id, never the secret) and what it became. Google sends no request id.
    fn record(
        &self,
        target: ExchangeTarget,
        aws: &AwsCredentials,
        role: String,
        expires_at: time::OffsetDateTime,
        started: std::time::Instant,
    ) -> ExchangeRecord {
        ExchangeRecord {
            target,
            identity: format!(
                "{},access_key_id={}",
                self.aws
                    .describe()
                    .trim_start_matches("aws ")
                    .replace(' ', ","),
                aws.access_key_id
            ),
            role,
            session: None,
            expires_at,
            request_id: None,
            elapsed: started.elapsed(),
        }
    }

    /// The ARN these credentials sign as (GetCallerIdentity at the region's STS endpoint).
    pub async fn caller_arn(
        &self,
        http: &reqwest::Client,
        credentials: &AwsCredentials,
    ) -> Option<String> {
        let endpoint = StsEndpoint::resolve(None, Some(self.aws.region())).ok()?;
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
