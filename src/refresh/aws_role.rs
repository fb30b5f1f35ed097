//! Any JWT → AWS: a token source's identity traded for an AWS role, through the on-disk cache while the
//! cached answer has life left.
//!
//! A profile is everything that determines *which* credential we want (role, audience, token
//! source, session options, endpoint); the same profile always maps to the same cache entry, so
//! repeated `credential_process` runs share one exchange until the entry runs low.

use time::OffsetDateTime;

use crate::audit::{AuditContext, AuditTarget};
use crate::cache::{CacheError, CredentialCache};
use crate::exchange::aws_chain::{assume_chain, RoleChain};
use crate::exchange::aws_sts::{
    exchange_web_identity, AssumedRole, ExchangeError, RetryPolicy, RoleArn, SessionName,
    StsEndpoint, WebIdentityRequest,
};
use crate::source::SharedTokenSource;

/// Everything that decides which AWS credential a token source's identity is traded for.
#[derive(Clone, Debug)]
pub struct AwsRoleProfile {
    pub token_source: SharedTokenSource,
    pub audience: String,
    pub request: WebIdentityRequest,
    pub endpoint: StsEndpoint,
    pub retry: RetryPolicy,
    /// Roles assumed after the web identity one (`--chain-role`), signed with the previous
    /// session's credentials; empty: the web identity role's credentials are the answer.
    pub chain: RoleChain,
    /// The profile and channel this profile's audit events name.
    pub audit: AuditContext,
}

impl AwsRoleProfile {
    /// The role whose credentials this profile hands out: the last of the chain, else the
    /// web identity role.
    pub fn final_role(&self) -> &RoleArn {
        self.chain.roles().last().unwrap_or(&self.request.role_arn)
    }

    /// The parts that identify this profile's cache entry: what is asked for and the identity
    /// behind the token source ([`crate::source::TokenSource::cached_identity`]); no secrets. `None`
    /// when that identity cannot be known now: then the cache is neither read nor written.
    pub fn cache_key(&self) -> Option<Vec<String>> {
        let mut key = self.web_identity_cache_key()?;
        key.extend(self.chain.cache_parts());
        Some(key)
    }

    /// The web identity step's part of [`AwsRoleProfile::cache_key`] (the whole key without a
    /// chain, so those entries keep their names).
    fn web_identity_cache_key(&self) -> Option<Vec<String>> {
        let r = &self.request;
        let identity = self.token_source.cached_identity()?;
        Some(vec![
            "aws-web-identity-v2".into(),
            r.role_arn.to_string(),
            self.audience.clone(),
            self.token_source.describe(),
            identity,
            r.session_name
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            r.duration_seconds
                .map(|d| d.to_string())
                .unwrap_or_default(),
            r.policy.clone().unwrap_or_default(),
            r.policy_arns.join(","),
            self.endpoint.url.clone(),
        ])
    }

    /// Always exchanges: mints a token and calls STS (with retries and one re-mint), then
    /// assumes the chain's roles in turn. With a chain, the session policy narrows the final
    /// role (the one handed out), not the web identity one. Emits the exchange's one audit
    /// event ([`crate::audit`]), whatever the outcome.
    pub async fn fetch(&self, http: &reqwest::Client) -> Result<AssumedRole, ExchangeError> {
        let exchange = crate::audit::Exchange {
            context: &self.audit,
            source_kind: crate::audit::source_kind(&self.token_source.describe()),
            target: AuditTarget {
                chain: self.chain.roles().iter().map(ToString::to_string).collect(),
                ..AuditTarget::aws(self.request.role_arn.to_string())
            },
            requested_duration_secs: self.request.duration_seconds.map(u64::from),
            started: std::time::Instant::now(),
        };
        exchange
            .run(
                self.exchange(http),
                |role| {
                    role.credentials
                        .expiration
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
                },
                ExchangeError::audit_word,
            )
            .await
    }

    /// The exchange itself: the web identity role, then the chain.
    async fn exchange(&self, http: &reqwest::Client) -> Result<AssumedRole, ExchangeError> {
        let started = std::time::Instant::now();
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let first_request = match self.chain.is_empty() {
            true => std::borrow::Cow::Borrowed(&self.request),
            false => std::borrow::Cow::Owned(WebIdentityRequest {
                policy: None,
                policy_arns: Vec::new(),
                ..self.request.clone()
            }),
        };
        let first = exchange_web_identity(
            http,
            &self.endpoint,
            &first_request,
            &self.retry,
            &host,
            &self.token_source.describe(),
            || self.token_source.fetch_for(http, &self.audience),
        )
        .await?;
        if self.chain.is_empty() {
            return Ok(first);
        }
        // The chained sessions carry the first session's name (given or derived), as STS
        // answered it in the assumed-role ARN.
        let session = match &self.request.session_name {
            Some(name) => name.clone(),
            None => first
                .assumed_role_arn
                .rsplit('/')
                .next()
                .and_then(|s| SessionName::parse(s).ok())
                .unwrap_or_else(|| SessionName::parse("keyless").expect("a valid session name")),
        };
        assume_chain(
            http,
            &self.endpoint,
            &self.chain,
            first,
            &session,
            self.request.policy.as_deref(),
            &self.request.policy_arns,
            &self.retry.with_time_spent(started.elapsed()),
        )
        .await
    }

    /// Answers from `cache` while the entry has more than twenty minutes left; otherwise
    /// exchanges and stores the answer. A cache that cannot be written is reported but does not
    /// fail the call: the credentials are good either way.
    pub async fn fetch_cached(
        &self,
        http: &reqwest::Client,
        cache: Option<&CredentialCache>,
    ) -> Result<AssumedRole, ExchangeError> {
        if let Some(hit) = cache.and_then(|c| self.load_cached(c)) {
            return Ok(hit);
        }
        self.fetch_and_store(http, cache).await
    }

    /// The cached answer, if it has more than twenty minutes left. Needs no HTTP client, so a
    /// `credential_process` run that hits the cache never starts the TLS stack.
    pub fn load_cached(&self, cache: &CredentialCache) -> Option<AssumedRole> {
        let key = self.cache_key()?;
        let key: Vec<&str> = key.iter().map(String::as_str).collect();
        let hit = cache.load::<AssumedRole>(&key, OffsetDateTime::now_utc(), |r| {
            r.credentials.expiration
        });
        let Some(hit) = hit else {
            tracing::debug!(role = %self.final_role(),
                "cache miss: no entry with more than twenty minutes left; exchanging");
            return None;
        };
        // The entry must be a session of the role asked for, whatever its file name says.
        if !self.final_role().is_assumed_by(&hit.assumed_role_arn) {
            tracing::warn!(role = %self.final_role(), cached = %hit.assumed_role_arn, "ignoring a cache entry for another role");
            return None;
        }
        tracing::debug!(role = %self.final_role(),
            expires_at = %hit.credentials.expiration.map(crate::credentials::format_expiration).unwrap_or_default(),
            "cache hit: credentials from the cache");
        Some(hit)
    }

    /// Exchanges and stores the answer in `cache` (a write failure is only reported).
    pub async fn fetch_and_store(
        &self,
        http: &reqwest::Client,
        cache: Option<&CredentialCache>,
    ) -> Result<AssumedRole, ExchangeError> {
        // The key is taken before the exchange: an entry is stored under the identity the
        // source stood for when it was asked.
        let key = cache.and_then(|_| self.cache_key());
        let role = self.fetch(http).await?;
        if let (Some(cache), Some(key)) = (cache, key) {
            let key: Vec<&str> = key.iter().map(String::as_str).collect();
            if let Err(e) = cache.store(&key, &role) {
                report_cache_error(&e);
            }
        }
        Ok(role)
    }
}

fn report_cache_error(error: &CacheError) {
    tracing::warn!("{error}");
}

/// The engine's view of an [`AwsRoleProfile`]: each fetch is a fresh exchange (the servers keep
/// the answer in memory; the disk cache is for short-lived `credential_process` runs).
#[derive(Clone, Debug)]
pub struct AwsRoleUpstream {
    pub profile: AwsRoleProfile,
    pub http: reqwest::Client,
}

impl crate::refresh::engine::Upstream for AwsRoleUpstream {
    type Value = AssumedRole;

    async fn fetch(
        &self,
    ) -> Result<(AssumedRole, OffsetDateTime), crate::refresh::engine::RefreshError> {
        let _turn = crate::refresh::in_flight::turn(&self.profile.endpoint.url).await;
        let role =
            self.profile.fetch(&self.http).await.map_err(|e| {
                crate::refresh::engine::RefreshError::from_error(&e, e.is_transient())
            })?;
        let expires_at =
            role.credentials
                .expiration
                .ok_or_else(|| crate::refresh::engine::RefreshError {
                    message: "STS answered credentials without an expiration".into(),
                    transient: false,
                })?;
        Ok((role, expires_at))
    }
}

/// An ID token kept fresh (for the web-identity token file).
#[derive(Clone, Debug)]
pub struct GoogleIdTokenUpstream {
    pub source: SharedTokenSource,
    pub audience: String,
    pub http: reqwest::Client,
}

impl crate::refresh::engine::Upstream for GoogleIdTokenUpstream {
    type Value = crate::source::IdToken;

    async fn fetch(
        &self,
    ) -> Result<(Self::Value, OffsetDateTime), crate::refresh::engine::RefreshError> {
        let token = self
            .source
            .fetch_for(&self.http, &self.audience)
            .await
            .map_err(|e| crate::refresh::engine::RefreshError::from_error(&e, e.is_transient()))?;
        let expires_at = token.claims().expires_at();
        Ok((token, expires_at))
    }
}
