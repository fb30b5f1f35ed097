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
    /// Set for tokens from the Google STS token exchange: who, in which pool.
    pub federation: Option<Federation>,
}

/// The federated identity behind a token from Google STS (for principalSet matching).
#[derive(Debug, Clone)]
pub(crate) struct Federation {
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL`.
    pub pool_resource: String,
    /// `google.subject`.
    pub subject: String,
    /// Mapped attributes, without the `attribute.` prefix.
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// AWS credentials the lab knows: temporary ones it issued, or an IAM user's long-lived key.
#[derive(Debug, Clone)]
pub(crate) struct IssuedAwsCredentials {
    pub secret_access_key: Secret,
    /// `None` for long-lived keys, which must be sent without one.
    pub session_token: Option<Secret>,
    /// `None` for long-lived keys.
    pub expiration: Option<OffsetDateTime>,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` or `arn:aws:iam::ACCOUNT:user/NAME`.
    pub arn: String,
    /// `AROA...:SESSION` or `AIDA...`.
    pub user_id: String,
    /// Session tags, transitive keys and source identity (role sessions from `AssumeRole`).
    pub session: LabSessionContext,
}

/// What a role session carries into the requests it signs: its session tags
/// (`aws:PrincipalTag/K`), which of them pass to chained sessions, and its source identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabSessionContext {
    /// `(key, value)`, keys compared without regard to case as STS does.
    pub tags: Vec<(String, String)>,
    /// Keys of `tags` that chained sessions inherit.
    pub transitive_tag_keys: Vec<String>,
    /// Set once in a chain; every later session keeps it.
    pub source_identity: Option<String>,
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
    /// Google access tokens issued (metadata, OAuth refresh, generateAccessToken, Google STS).
    pub access_tokens_issued: u64,
    /// Google STS token exchanges that returned a federated token.
    pub google_sts_exchanges: u64,
    /// Google STS token exchanges refused (any OAuth error).
    pub google_sts_refusals: u64,
    /// AssumeRole requests received (including refused ones).
    pub assume_role_calls: u64,
    /// Credentials handed out by the IMDS and container-credentials emulations.
    pub aws_metadata_credentials_served: u64,
    /// Upstream calls (AWS STS, Google STS, IAM Credentials) in flight now.
    pub upstream_calls_in_flight: u64,
    /// The most upstream calls that were in flight at once.
    pub most_upstream_calls_in_flight: u64,
    /// Upstream calls answered with a throttling error because more than `throttle_above` were
    /// in flight (queued `throttled` faults are not counted here).
    pub throttled_calls: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub assume_calls: AtomicU64,
    pub assume_successes: AtomicU64,
    pub id_tokens: AtomicU64,
    pub caller_identity_calls: AtomicU64,
    pub access_tokens: AtomicU64,
    pub google_sts_exchanges: AtomicU64,
    pub google_sts_refusals: AtomicU64,
    pub assume_role_calls: AtomicU64,
    pub aws_metadata_credentials: AtomicU64,
    pub throttled: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, load: &super::upstream_load::UpstreamLoad) -> LabStats {
        LabStats {
            upstream_calls_in_flight: load.in_flight(),
            most_upstream_calls_in_flight: load.most_in_flight(),
            throttled_calls: self.throttled.load(Ordering::Relaxed),
            assume_role_with_web_identity_calls: self.assume_calls.load(Ordering::Relaxed),
            assume_role_with_web_identity_successes: self.assume_successes.load(Ordering::Relaxed),
            id_tokens_minted: self.id_tokens.load(Ordering::Relaxed),
            get_caller_identity_calls: self.caller_identity_calls.load(Ordering::Relaxed),
            access_tokens_issued: self.access_tokens.load(Ordering::Relaxed),
            google_sts_exchanges: self.google_sts_exchanges.load(Ordering::Relaxed),
            google_sts_refusals: self.google_sts_refusals.load(Ordering::Relaxed),
            assume_role_calls: self.assume_role_calls.load(Ordering::Relaxed),
            aws_metadata_credentials_served: self.aws_metadata_credentials.load(Ordering::Relaxed),
        }
    }
}

/// Everything the three listeners share. `Debug` shows the configuration and counters only:
/// the issued tokens and credentials are keys and values of the maps.
pub(crate) struct LabState {
    pub config: LabConfig,
    pub key: Arc<GoogleSigningKey>,
    pub faults: Faults,
    pub counters: Counters,
    /// Upstream calls in flight (latency and throttling: `upstream_latency`, `throttle_above`).
    pub upstream_load: super::upstream_load::UpstreamLoad,
    /// Filled in once the Google APIs listener is bound (the discovery doc points at it).
    pub google_apis_url: Mutex<String>,
    access_tokens: Mutex<HashMap<String, AccessGrant>>,
    aws_credentials: Mutex<HashMap<String, IssuedAwsCredentials>>,
    last_denial: Mutex<Option<String>>,
    /// What the container-credentials endpoint requires in `Authorization`.
    pub container_authorization_token: Secret,
    /// IMDSv2 session tokens and when they expire.
    imds_tokens: Mutex<HashMap<String, OffsetDateTime>>,
    /// Role sessions handed out by IMDS and the container endpoint, reused until close to
    /// expiry as the real endpoints do (keyed by `ROLE/SESSION`).
    role_sessions: Mutex<HashMap<String, (String, IssuedAwsCredentials)>>,
    /// Every secret the lab has issued or holds (see [`LabState::record`]).
    issued: Mutex<IssuedSecrets>,
    /// The GitHub Actions and Kubernetes issuers' keys and state.
    pub issuers: super::issuers::IssuersState,
    /// AWS outbound identity federation: enabled or not, the account's issuer.
    pub outbound: super::aws_outbound::OutboundFederation,
    /// What CloudTrail recorded of the STS calls.
    pub cloudtrail: super::cloudtrail::Trail,
    /// The project's Cloud Audit Logs and its Data Access switch.
    pub audit_logs: super::cloud_logging::AuditLogs,
}

/// The secrets the lab issued, for leak tests: kept in memory, and appended to a file when one
/// is set (for a lab inside another process: `keyless demo`, `keyless lab`).
#[derive(Default)]
struct IssuedSecrets {
    all: Vec<Secret>,
    file: Option<std::fs::File>,
}

impl IssuedSecrets {
    fn push(&mut self, secret: &str) {
        if let Some(file) = &mut self.file {
            use std::io::Write as _;
            if let Err(e) = writeln!(file, "{secret}") {
                tracing::warn!("could not record an issued secret: {e}");
            }
        }
        self.all.push(Secret::new(secret));
    }
}

impl std::fmt::Debug for LabState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabState")
            .field("config", &self.config)
            .field("counters", &self.counters)
            .field("access_tokens", &lock(&self.access_tokens).len())
            .field("aws_credentials", &lock(&self.aws_credentials).len())
            .field("imds_tokens", &lock(&self.imds_tokens).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single insert or lookup: a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LabState {
    pub fn new(config: LabConfig, key: Arc<GoogleSigningKey>) -> Self {
        let outbound = super::aws_outbound::OutboundFederation::new(
            &config.account_id,
            config.outbound_federation,
        );
        let audit_logs = super::cloud_logging::AuditLogs::new(&config.data_access_logs);
        let state = Self {
            config,
            key,
            faults: Faults::default(),
            counters: Counters::default(),
            upstream_load: Default::default(),
            google_apis_url: Mutex::new(String::new()),
            access_tokens: Mutex::new(HashMap::new()),
            aws_credentials: Mutex::new(HashMap::new()),
            last_denial: Mutex::new(None),
            container_authorization_token: Secret::new(ids::container_authorization_token()),
            imds_tokens: Mutex::new(HashMap::new()),
            outbound,
            role_sessions: Mutex::new(HashMap::new()),
            issued: Mutex::new(IssuedSecrets::default()),
            issuers: super::issuers::IssuersState::new(),
            cloudtrail: super::cloudtrail::Trail::default(),
            audit_logs,
        };
        state.record(state.container_authorization_token.expose());
        state.record(state.issuers.github_request_token.expose());
        for user in &state.config.iam_users {
            state.record(&user.secret_access_key);
        }
        for user in &state.config.users {
            state.record(&user.client_secret);
            state.record(&user.refresh_token);
        }
        state
    }

    /// Remembers a secret the lab issued (or holds from its configuration), so a test can check
    /// that none of them leaked where it should not be.
    pub fn record(&self, secret: &str) {
        lock(&self.issued).push(secret);
    }

    /// Every secret recorded so far.
    pub fn issued_secrets(&self) -> Vec<Secret> {
        lock(&self.issued).all.clone()
    }

    /// Appends every secret recorded so far, and from now on each new one, to `path` (created
    /// 0600), one a line.
    pub fn record_secrets_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        let mut issued = lock(&self.issued);
        for secret in &issued.all {
            writeln!(file, "{}", secret.expose())?;
        }
        issued.file = Some(file);
        Ok(())
    }

    /// Issues and remembers a Google access token.
    pub fn issue_access_token(
        &self,
        principal: &str,
        scopes: Vec<String>,
        lifetime_secs: i64,
    ) -> (String, AccessGrant) {
        self.issue_grant(AccessGrant {
            principal: principal.to_string(),
            scopes,
            expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(lifetime_secs),
            federation: None,
        })
    }

    /// A lifetime after the configured cap (see `LabConfig::credential_lifetime_cap`).
    pub fn capped_lifetime(&self, lifetime_secs: i64) -> i64 {
        match self.config.credential_lifetime_cap {
            Some(cap) => lifetime_secs.min(i64::try_from(cap.as_secs()).unwrap_or(i64::MAX)),
            None => lifetime_secs,
        }
    }

    /// Issues and remembers a Google access token for a prepared grant.
    pub fn issue_grant(&self, mut grant: AccessGrant) -> (String, AccessGrant) {
        if let Some(cap) = self.config.credential_lifetime_cap {
            grant.expires_at = grant.expires_at.min(OffsetDateTime::now_utc() + cap);
        }
        let token = ids::google_access_token();
        self.record(&token);
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

    /// The credentials behind an access key id: issued by the lab, or an IAM user's key.
    pub fn aws_credentials(&self, access_key_id: &str) -> Option<IssuedAwsCredentials> {
        if let Some(issued) = lock(&self.aws_credentials).get(access_key_id).cloned() {
            return Some(issued);
        }
        let user = self
            .config
            .iam_users
            .iter()
            .find(|u| u.access_key_id == access_key_id)?;
        Some(IssuedAwsCredentials {
            secret_access_key: Secret::new(user.secret_access_key.clone()),
            session_token: None,
            expiration: None,
            arn: format!("arn:aws:iam::{}:user/{}", self.config.account_id, user.name),
            user_id: ids::user_unique_id(&self.config.account_id, &user.name),
            session: LabSessionContext::default(),
        })
    }

    /// Issues, remembers and returns temporary credentials for a session of `role` (no trust
    /// check: callers check the trust that applies to them). Returns the access key id too.
    pub fn issue_role_session(
        &self,
        role: &str,
        session: &str,
        lifetime_secs: i64,
    ) -> (String, IssuedAwsCredentials) {
        let account = self.config.account_id.clone();
        self.issue_role_session_in(
            &account,
            role,
            session,
            lifetime_secs,
            LabSessionContext::default(),
        )
    }

    /// [`LabState::issue_role_session`] for a role of `account` (the lab's or another one),
    /// carrying `context` (tags, source identity).
    pub fn issue_role_session_in(
        &self,
        account: &str,
        role: &str,
        session: &str,
        lifetime_secs: i64,
        context: LabSessionContext,
    ) -> (String, IssuedAwsCredentials) {
        let lifetime_secs = self.capped_lifetime(lifetime_secs);
        let access_key_id = ids::temporary_access_key_id();
        let creds = IssuedAwsCredentials {
            secret_access_key: Secret::new(ids::secret_access_key()),
            session_token: Some(Secret::new(ids::session_token())),
            expiration: Some(OffsetDateTime::now_utc() + time::Duration::seconds(lifetime_secs)),
            arn: format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
            user_id: format!("{}:{session}", ids::role_unique_id(account, role)),
            session: context,
        };
        self.record(creds.secret_access_key.expose());
        if let Some(token) = &creds.session_token {
            self.record(token.expose());
        }
        self.remember_aws_credentials(&access_key_id, creds.clone());
        (access_key_id, creds)
    }

    /// A role session for the instance or container endpoint: the same one until it has less
    /// than 15 minutes left (the real endpoints rotate ahead of expiry), then a fresh one.
    pub fn role_session_for_endpoint(
        &self,
        role: &str,
        session: &str,
    ) -> (String, IssuedAwsCredentials) {
        let key = format!("{role}/{session}");
        let fresh_enough = |c: &IssuedAwsCredentials| {
            c.expiration
                .is_some_and(|e| e - OffsetDateTime::now_utc() > time::Duration::minutes(15))
        };
        let mut sessions = lock(&self.role_sessions);
        if let Some(existing) = sessions.get(&key).filter(|(_, c)| fresh_enough(c)) {
            return existing.clone();
        }
        let issued = self.issue_role_session(role, session, 6 * 3600);
        sessions.insert(key, issued.clone());
        issued
    }

    /// Remembers an IMDSv2 session token.
    pub fn remember_imds_token(&self, token: &str, expires_at: OffsetDateTime) {
        self.record(token);
        let mut tokens = lock(&self.imds_tokens);
        let now = OffsetDateTime::now_utc();
        tokens.retain(|_, e| *e > now);
        tokens.insert(token.to_string(), expires_at);
    }

    /// Whether an IMDSv2 session token is known and unexpired.
    pub fn imds_token_is_valid(&self, token: &str) -> bool {
        lock(&self.imds_tokens)
            .get(token)
            .is_some_and(|e| *e > OffsetDateTime::now_utc())
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
        let token = self.key.sign(&claims.to_json());
        self.record(&token);
        token
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `Debug` of the lab's state and of the credentials it issued shows no secret, though the
    /// state holds every one of them.
    #[test]
    fn debug_shows_no_issued_secret() {
        let state = LabState::new(LabConfig::demo(), GoogleSigningKey::shared());
        let (_, grant) = state.issue_access_token("a@b", vec![], 60);
        let (_, issued) = state.issue_role_session("gcp-deploy", "s", 3600);
        state.remember_imds_token("imds-session-token-0123456789", OffsetDateTime::now_utc());
        let account = state.config.service_accounts[0].clone();
        state.sign_id_token(&account, "sts.amazonaws.com", true, 60, None);
        let debug = format!("{state:?} {grant:?} {issued:?} {:?}", state.config);
        let secrets = state.issued_secrets();
        assert!(secrets.len() >= 7, "{}", secrets.len());
        for secret in secrets {
            assert!(
                !debug.contains(secret.expose()),
                "Debug shows {}:\n{debug}",
                secret.expose()
            );
        }
    }
}
