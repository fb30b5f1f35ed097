//! The on-disk cache of `gcp token`, `gcp exec` and `gcp id-token`: scripts and tools that run
//! them again and again pay one exchange per token lifetime instead of one per call.
//!
//! A cold call signs a subject token, calls Google STS and IAM Credentials (~7 ms of CPU and
//! two round trips against the lab); a hit reads one 0600 file and starts no HTTP client:
//! 2.4 ms median for the whole process, as warm `aws credentials` (2.3 ms on the same loaded
//! 2-core machine), against 165 ms for a google-auth process doing the refresh (67×; one-off
//! run of `bench/run`'s AWS → GCP section, release build). The entries live in
//! [`CredentialCache`] (`$XDG_CACHE_HOME/keyless/gcp/`, the same rules as `aws credentials`':
//! 0700 directory, 0600 files replaced atomically, opened without following links, each
//! carrying its key's hash). The key is everything that decides which token is handed out —
//! provider, scopes, service account, delegates, lifetime, token and IAM Credentials URLs, the
//! subject's description **and the identity behind it**, and for ID tokens the target audience
//! — never a token. The identity behind the AWS subject is
//! [`AwsIdentitySource::cached_identity`](crate::source::aws::AwsIdentitySource::cached_identity)
//! (profile, region, assumed role, a fingerprint of the access key id and of the shared files);
//! a JWT source's is its [`cached_identity`](crate::source::TokenSource::cached_identity), and
//! when that cannot be known offline the cache is neither read nor written.
//!
//! Freshness: an entry is served only while more than [`MIN_REMAINING`] (10 minutes) is left.
//! The consumers of a printed token refresh on their own margin: google-auth (Python, Java,
//! Node) treats a token as expired 3m45s before its end, gcloud and the Go client's
//! `oauth2.ReuseTokenSource` callers up to 5 minutes; a token handed out with less than that
//! left would be refused or re-asked at once. The other 5 minutes are for the caller's own
//! command (`gcp exec -- gsutil cp ...`) to run on it. Google's tokens last 1 hour by default,
//! so an entry serves 50 minutes, one exchange per 50 minutes per key; a `--lifetime` of 10
//! minutes or less is never served from the cache.
//!
//! A hit emits no audit event: it is not an exchange ([`crate::audit`] counts one event per
//! exchange).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::cache::CredentialCache;
use crate::credentials::GoogleAccessToken;
use crate::refresh::gcp_token::{FederatedSubject, GcpSubject, GcpToken, GcpTokenProfile};
use crate::secret::Secret;

/// Cached Google tokens are handed out only while more than this is left (see the module doc).
pub const MIN_REMAINING: Duration = Duration::minutes(10);

/// An access token as the cache keeps it: what every output format of `gcp token` prints, so a
/// hit prints exactly what the exchange that stored it would have.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedGcpToken {
    pub token: GoogleAccessToken,
    /// The service account impersonated, if any.
    pub service_account: Option<String>,
    /// Who the token stands for.
    pub subject: CachedSubject,
}

/// The federated identity, without the credentials that proved it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CachedSubject {
    /// The AWS identity; the caller's ARN once asked for (`--format json` asks STS for it).
    Aws { caller_arn: Option<String> },
    /// The OIDC token's issuer and subject.
    Jwt { iss: String, sub: String },
}

impl CachedGcpToken {
    /// What the cache keeps of a fresh token (the AWS caller's ARN is not known yet).
    pub fn from_fresh(token: &GcpToken) -> Self {
        Self {
            token: token.token.clone(),
            service_account: token.service_account.clone(),
            subject: match &token.subject {
                FederatedSubject::Aws(_) => CachedSubject::Aws { caller_arn: None },
                FederatedSubject::Jwt(claims) => CachedSubject::Jwt {
                    iss: claims.iss.clone(),
                    sub: claims.sub.clone(),
                },
            },
        }
    }
}

/// An ID token from IAM Credentials and when it ends (its `exp`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedIdToken {
    pub token: Secret,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl GcpTokenProfile {
    /// The identity behind the subject for the disk cache: for AWS, more than
    /// [`GcpSubject::cached_identity`] (which the servers' engines use once per request) — the
    /// access key id and the shared files, read now. `None` when it cannot be known offline.
    fn disk_cache_identity(&self) -> Option<String> {
        match &self.subject {
            GcpSubject::Aws(aws) => Some(aws.cached_identity()),
            GcpSubject::Jwt { .. } => self.subject.cached_identity(),
        }
    }

    /// The parts shared by both kinds of entry; `None`: do not cache.
    fn cache_key_for(&self, kind: &str) -> Option<Vec<String>> {
        let identity = self.disk_cache_identity()?;
        let (service_account, lifetime, delegates, sa_scopes) = match &self.impersonation {
            Some(i) => (
                i.service_account.clone(),
                i.lifetime.map(|l| l.to_string()).unwrap_or_default(),
                i.delegates.join(","),
                i.scopes.join(","),
            ),
            None => Default::default(),
        };
        Some(vec![
            kind.to_string(),
            self.audience.clone(),
            self.scopes.join(","),
            service_account,
            sa_scopes,
            lifetime,
            delegates,
            self.token_url.to_string(),
            self.iamcredentials_url.to_string(),
            self.subject.describe(),
            identity,
        ])
    }

    /// The key of this profile's access token entry: what is asked for and who asks; no
    /// secrets. `None` when the identity cannot be known now: no cache then.
    pub fn token_cache_key(&self) -> Option<Vec<String>> {
        self.cache_key_for("gcp-token-v1")
    }

    /// The key of this profile's ID token entry for `target_audience`.
    pub fn id_token_cache_key(&self, target_audience: &str) -> Option<Vec<String>> {
        let mut key = self.cache_key_for("gcp-id-token-v1")?;
        key.push(target_audience.to_string());
        Some(key)
    }

    /// The cached access token under `key`, if it has more than [`MIN_REMAINING`] left and is
    /// for the service account asked for. Needs no HTTP client.
    pub fn load_cached_token(
        &self,
        cache: &CredentialCache,
        key: &[String],
    ) -> Option<CachedGcpToken> {
        let hit: CachedGcpToken = load(cache, key, |t: &CachedGcpToken| t.token.expires_at)?;
        let asked = self.impersonation.as_ref().map(|i| &i.service_account);
        if hit.service_account.as_ref() != asked {
            tracing::warn!("ignoring a cache entry for another service account");
            return None;
        }
        tracing::debug!(expires_at = %crate::credentials::format_expiration(hit.token.expires_at),
            "cache hit: the Google access token from the cache");
        Some(hit)
    }

    /// The cached ID token under `key`, if it has more than [`MIN_REMAINING`] left.
    pub fn load_cached_id_token(
        &self,
        cache: &CredentialCache,
        key: &[String],
    ) -> Option<CachedIdToken> {
        let hit = load(cache, key, |t: &CachedIdToken| t.expires_at)?;
        tracing::debug!(expires_at = %crate::credentials::format_expiration(hit.expires_at),
            "cache hit: the ID token from the cache");
        Some(hit)
    }
}

fn load<T: serde::de::DeserializeOwned>(
    cache: &CredentialCache,
    key: &[String],
    expiration: impl Fn(&T) -> OffsetDateTime,
) -> Option<T> {
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    let hit = cache.load_with_margin(&key, OffsetDateTime::now_utc(), MIN_REMAINING, |t| {
        Some(expiration(t))
    });
    if hit.is_none() {
        tracing::debug!("cache miss: no entry with more than ten minutes left; exchanging");
    }
    hit
}

/// Stores `value` under `key`; a cache that cannot be written is reported, not fatal: the token
/// is good either way.
pub fn store<T: Serialize>(cache: &CredentialCache, key: &[String], value: &T) {
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    if let Err(e) = cache.store(&key, value) {
        tracing::warn!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::google_iam::Impersonation;
    use crate::source::aws::{AwsIdentitySource, AwsSourceOptions};

    async fn profile() -> GcpTokenProfile {
        let aws = AwsIdentitySource::resolve(AwsSourceOptions {
            profile: Some("p".into()),
            region: Some(crate::types::Region::parse("us-east-1").unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
        GcpTokenProfile {
            subject: GcpSubject::Aws(aws),
            audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/a".into(),
            scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
            token_url: crate::types::UpstreamUrl::parse("https://sts.googleapis.com/v1/token").unwrap(),
            iamcredentials_url: crate::types::UpstreamUrl::parse("https://iamcredentials.googleapis.com").unwrap(),
            impersonation: Some(Impersonation {
                service_account: "a@p.iam.gserviceaccount.com".into(),
                scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
                lifetime: None,
                delegates: vec![],
            }),
            retry: Default::default(),
            audit: Default::default(),
        }
    }

    /// Every setting that decides the token changes the key; the same settings give the same
    /// key; no key part is a secret.
    #[tokio::test]
    async fn the_key_names_everything_that_decides_the_token() {
        let base = profile().await;
        let key = base.token_cache_key().unwrap();
        assert_eq!(key, profile().await.token_cache_key().unwrap());
        let mut variants: Vec<GcpTokenProfile> = Vec::new();
        let mut p = profile().await;
        p.impersonation.as_mut().unwrap().service_account = "b@p.iam.gserviceaccount.com".into();
        variants.push(p);
        let mut p = profile().await;
        p.impersonation.as_mut().unwrap().scopes = vec!["x".into()];
        variants.push(p);
        let mut p = profile().await;
        p.scopes = vec!["x".into()];
        variants.push(p);
        let mut p = profile().await;
        p.impersonation.as_mut().unwrap().lifetime = Some(1800);
        variants.push(p);
        let mut p = profile().await;
        p.impersonation.as_mut().unwrap().delegates = vec!["d@p.iam.gserviceaccount.com".into()];
        variants.push(p);
        let mut p = profile().await;
        p.impersonation = None;
        variants.push(p);
        let mut p = profile().await;
        p.audience.push('2');
        variants.push(p);
        let mut p = profile().await;
        p.token_url = crate::types::UpstreamUrl::parse("http://127.0.0.1:1/v1/token").unwrap();
        variants.push(p);
        let mut p = profile().await;
        p.iamcredentials_url = crate::types::UpstreamUrl::parse("http://127.0.0.1:1").unwrap();
        variants.push(p);
        let mut p = profile().await;
        p.subject = GcpSubject::Aws(
            AwsIdentitySource::resolve(AwsSourceOptions {
                profile: Some("other".into()),
                region: Some(crate::types::Region::parse("us-east-1").unwrap()),
                ..Default::default()
            })
            .await
            .unwrap(),
        );
        variants.push(p);
        for variant in &variants {
            assert_ne!(variant.token_cache_key().unwrap(), key, "{variant:?}");
        }
        let id_a = base.id_token_cache_key("https://a.example").unwrap();
        assert_ne!(id_a, base.id_token_cache_key("https://b.example").unwrap());
        assert_ne!(id_a[..id_a.len() - 1], key[..]);
    }

    /// An entry for another service account under this key's name is not served.
    #[tokio::test]
    async fn a_hit_must_be_for_the_service_account_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::at(dir.path().join("gcp"));
        let profile = profile().await;
        let key = profile.token_cache_key().unwrap();
        let mut entry = CachedGcpToken {
            token: GoogleAccessToken {
                access_token: Secret::new("ya29.t"),
                expires_at: OffsetDateTime::now_utc() + Duration::hours(1),
            },
            service_account: Some("a@p.iam.gserviceaccount.com".into()),
            subject: CachedSubject::Aws { caller_arn: None },
        };
        store(&cache, &key, &entry);
        assert_eq!(profile.load_cached_token(&cache, &key), Some(entry.clone()));
        entry.service_account = Some("b@p.iam.gserviceaccount.com".into());
        store(&cache, &key, &entry);
        assert_eq!(profile.load_cached_token(&cache, &key), None);
    }

    /// Served with more than ten minutes left, not with less.
    #[tokio::test]
    async fn entries_near_their_end_are_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::at(dir.path().join("gcp"));
        let profile = profile().await;
        let key = profile.id_token_cache_key("https://a.example").unwrap();
        let now = OffsetDateTime::now_utc();
        for (left, served) in [(Duration::minutes(11), true), (Duration::minutes(9), false)] {
            let entry = CachedIdToken {
                token: Secret::new("eyJ.x.y"),
                expires_at: now + left,
            };
            store(&cache, &key, &entry);
            assert_eq!(profile.load_cached_id_token(&cache, &key).is_some(), served);
        }
    }
}
