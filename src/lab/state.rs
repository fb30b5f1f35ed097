//! What the lab remembers between requests: the tokens and credentials it issued (so it can check
//! them later, as the clouds do), counters, the last trust-policy denial, and the fault queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use time::OffsetDateTime;

use super::config::{LabConfig, LabServiceAccount};
use super::faults::Faults;
use super::google_keys::{GoogleSigningKey, IdTokenClaims};
use super::ids;
use crate::secret::Secret;

/// A Google access token the lab issued.
#[derive(Debug, Clone)]
pub(crate) struct AccessGrant {
    /// The email of the user or service account it acts as.
    pub principal: String,
    /// Granted OAuth scopes.
    pub scopes: Vec<String>,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

/// AWS temporary credentials the lab issued.
#[derive(Debug, Clone)]
pub(crate) struct IssuedAwsCredentials {
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expiration: OffsetDateTime,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub assumed_role_arn: String,
    /// `AROA...:SESSION`.
    pub assumed_role_id: String,
}

/// A snapshot of the lab's counters; tests use them to prove a cache made no upstream call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LabStats {
    /// AssumeRoleWithWebIdentity requests received (including refused and faulted ones).
    pub assume_role_with_web_identity_calls: u64,
    /// AssumeRoleWithWebIdentity requests that returned credentials.
    pub assume_role_with_web_identity_successes: u64,
    /// ID tokens minted (metadata server and generateIdToken).
    pub id_tokens_minted: u64,
    /// GetCallerIdentity requests received.
    pub get_caller_identity_calls: u64,
    /// Google access tokens issued (metadata, OAuth refresh, generateAccessToken).
    pub access_tokens_issued: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub assume_calls: AtomicU64,
    pub assume_successes: AtomicU64,
    pub id_tokens: AtomicU64,
    pub caller_identity_calls: AtomicU64,
    pub access_tokens: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LabStats {
        LabStats {
            assume_role_with_web_identity_calls: self.assume_calls.load(Ordering::Relaxed),
            assume_role_with_web_identity_successes: self.assume_successes.load(Ordering::Relaxed),
            id_tokens_minted: self.id_tokens.load(Ordering::Relaxed),
            get_caller_identity_calls: self.caller_identity_calls.load(Ordering::Relaxed),
            access_tokens_issued: self.access_tokens.load(Ordering::Relaxed),
        }
    }
}

/// Everything the three listeners share.
#[derive(Debug)]
pub(crate) struct LabState {
    pub config: LabConfig,
    pub key: Arc<GoogleSigningKey>,
    pub faults: Faults,
    pub counters: Counters,
    /// Filled in once the Google APIs listener is bound (the discovery doc points at it).
    pub google_apis_url: Mutex<String>,
    access_tokens: Mutex<HashMap<String, AccessGrant>>,
    aws_credentials: Mutex<HashMap<String, IssuedAwsCredentials>>,
    last_denial: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single insert or lookup: a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LabState {
    pub fn new(config: LabConfig, key: Arc<GoogleSigningKey>) -> Self {
        Self {
            config,
            key,
            faults: Faults::default(),
            counters: Counters::default(),
            google_apis_url: Mutex::new(String::new()),
            access_tokens: Mutex::new(HashMap::new()),
            aws_credentials: Mutex::new(HashMap::new()),
            last_denial: Mutex::new(None),
        }
    }

    /// Issues and remembers a Google access token.
    pub fn issue_access_token(
        &self,
        principal: &str,
        scopes: Vec<String>,
        lifetime_secs: i64,
    ) -> (String, AccessGrant) {
        let token = ids::google_access_token();
        let grant = AccessGrant {
            principal: principal.to_string(),
            scopes,
            expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(lifetime_secs),
        };
        lock(&self.access_tokens).insert(token.clone(), grant.clone());
        Counters::bump(&self.counters.access_tokens);
        (token, grant)
    }

    /// The grant behind an access token, if the lab issued it (expired ones included).
    pub fn access_grant(&self, token: &str) -> Option<AccessGrant> {
        lock(&self.access_tokens).get(token).cloned()
    }

    /// Remembers AWS credentials under their access key id.
    pub fn remember_aws_credentials(&self, access_key_id: &str, creds: IssuedAwsCredentials) {
        lock(&self.aws_credentials).insert(access_key_id.to_string(), creds);
    }

    /// The credentials behind an access key id, if the lab issued them.
    pub fn aws_credentials(&self, access_key_id: &str) -> Option<IssuedAwsCredentials> {
        lock(&self.aws_credentials).get(access_key_id).cloned()
    }

    pub fn set_last_denial(&self, explanation: String) {
        *lock(&self.last_denial) = Some(explanation);
    }

    pub fn last_denial(&self) -> Option<String> {
        lock(&self.last_denial).clone()
    }

    /// Mints an ID token for a lab service account without counting it (the test-side shortcut
    /// [`super::Lab::mint_id_token`] is not an upstream call).
    pub fn sign_id_token(
        &self,
        account: &LabServiceAccount,
        audience: &str,
        include_email: bool,
        lifetime_secs: i64,
        compute_engine: Option<serde_json::Value>,
    ) -> String {
        let claims = IdTokenClaims {
            audience,
            unique_id: &account.unique_id,
            email: include_email.then_some(account.email.as_str()),
            issued_at: OffsetDateTime::now_utc().unix_timestamp(),
            lifetime: lifetime_secs,
            compute_engine,
        };
        self.key.sign(&claims.to_json())
    }

    /// Mints an ID token over HTTP (metadata server, generateIdToken) and counts it.
    pub fn mint_id_token(
        &self,
        account: &LabServiceAccount,
        audience: &str,
        include_email: bool,
        lifetime_secs: i64,
        compute_engine: Option<serde_json::Value>,
    ) -> String {
        Counters::bump(&self.counters.id_tokens);
        self.sign_id_token(
            account,
            audience,
            include_email,
            lifetime_secs,
            compute_engine,
        )
    }

    /// The configured ID token lifetime in seconds.
    pub fn id_token_lifetime_secs(&self) -> i64 {
        i64::try_from(self.config.id_token_lifetime.as_secs()).unwrap_or(i64::MAX / 2)
    }

    pub fn google_apis_url(&self) -> String {
        lock(&self.google_apis_url).clone()
    }
}
