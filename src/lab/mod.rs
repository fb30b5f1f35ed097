//! The offline lab: faithful emulations of the Google and AWS endpoints keyless talks to.
//!
//! A fake that accepts anything proves nothing, so the lab checks what the real services check:
//! the metadata server's headers, IAM's impersonation permissions, STS's token verification,
//! trust-policy evaluation and SigV4. Four listeners on 127.0.0.1 — the GCE metadata server,
//! Google APIs (IAM Credentials, OAuth, JWKS, Google STS, a Cloud Storage stand-in), AWS STS,
//! and AWS's instance (IMDSv2) and container credential endpoints — run in-process on tokio;
//! tests point keyless at them with [`Lab::env`], break them on purpose with [`Lab::faults`] and
//! count upstream calls with [`Lab::stats`].
//!
//! The clouds' audit trails are emulated too: CloudTrail records of the STS calls, served by
//! `LookupEvents` ([`Lab::cloudtrail_events`]), and Cloud Audit Logs of Google STS and IAM
//! Credentials, served by Cloud Logging `entries.list` ([`Lab::audit_log_entries`]).
//!
//! Both directions are covered: Google identities become AWS credentials
//! (AssumeRoleWithWebIdentity), and AWS identities — static IAM user keys, AssumeRole sessions,
//! IMDS and container credentials — become Google tokens through Google STS's AWS provider
//! ([`Lab::workload_identity_audience`]) and `generateAccessToken` for a bound service account.

mod aws_auth;
mod aws_metadata;
mod aws_outbound;
pub(crate) mod aws_sts;
mod cloud_logging;
mod cloudtrail;
mod config;
mod error;
mod faults;
mod google_apis;
mod google_keys;
mod google_sts;
mod ids;
mod issuers;
mod logging_filter;
mod metadata;
pub mod sigv4;
pub(crate) mod state;
pub(crate) mod sts_xml;
mod tls;
mod upstream_load;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    google_trust_policy, partner_trust_policy, LabAccount, LabAwsProvider, LabBucket, LabConfig,
    LabEc2Instance, LabIamUser, LabOidcProvider, LabPoolOidcProvider, LabRole, LabServiceAccount,
    LabUser, LabWorkloadIdentityPool, LabWorkloadIdentityUser, DEMO_ACCOUNT_ID, DEMO_AWS_PROVIDER,
    DEMO_DATA_ACCESS_SERVICES, DEMO_OIDC_ISSUER, DEMO_OIDC_PROVIDER, DEMO_PARTNER_ACCOUNT_ID,
    DEMO_PARTNER_EXTERNAL_ID, DEMO_PARTNER_ROLE, DEMO_POOL, DEMO_PROJECT_NUMBER,
};
pub use config::{
    oidc_trust_policy, DEMO_GITHUB_ISSUER, DEMO_GITHUB_REPOSITORY, DEMO_KUBERNETES_ISSUER,
};
pub use config::{
    DEMO_AWS_OIDC_PROVIDER, DEMO_GITHUB_PROVIDER, DEMO_GOOGLE_PROVIDER, DEMO_KUBERNETES_PROVIDER,
};
pub use error::LabError;
pub use faults::{Fault, FaultKind, Faults, LabService};
pub use google_keys::{GoogleSigningKey, GOOGLE_ISSUER};
pub use issuers::{LabGithubActions, LabKubernetes};
pub use state::LabStats;

use crate::credentials::AwsCredentials;
use crate::secret::Secret;
use state::LabState;

/// Ports to listen on; 0 picks a free one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabPorts {
    /// The GCE metadata server.
    pub metadata: u16,
    /// IAM Credentials, OAuth token endpoint, JWKS, discovery, Cloud Logging.
    pub google_apis: u16,
    /// AWS STS, CloudTrail `LookupEvents` (and the `/_lab/` admin API).
    pub aws_sts: u16,
    /// The EC2 IMDSv2 and container-credentials endpoints.
    pub aws_metadata: u16,
}

/// The lab's HTTPS endpoints ([`Lab::serve_https`]) and the CA that signed their certificate.
#[derive(Debug, Clone)]
pub struct LabHttps {
    /// The CA certificate, PEM (public): what `SSL_CERT_FILE` should hold.
    pub ca_pem: String,
    /// `https://localhost:PORT` of AWS STS.
    pub aws_sts_url: String,
    /// `https://localhost:PORT` of IAM Credentials, Google STS (`/v1/token`) and OAuth.
    pub google_apis_url: String,
}

impl LabHttps {
    /// The variables of [`Lab::env`] these endpoints replace, and `SSL_CERT_FILE` (the CA
    /// written to `ca_file`).
    pub fn env(&self, ca_file: &Path) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL_STS", self.aws_sts_url.clone()),
            ("AWS_ENDPOINT_URL_CLOUDTRAIL", self.aws_sts_url.clone()),
            ("KEYLESS_IAMCREDENTIALS_URL", self.google_apis_url.clone()),
            (
                "KEYLESS_TOKEN_URL",
                format!("{}/v1/token", self.google_apis_url),
            ),
            ("SSL_CERT_FILE", ca_file.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A running lab. Dropping it stops the listeners; [`Lab::shutdown`] also waits for them.
pub struct Lab {
    state: Arc<LabState>,
    ports: LabPorts,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Lab {
    /// Starts the lab on random loopback ports.
    pub async fn start(config: LabConfig) -> Result<Lab, LabError> {
        Self::start_on(config, LabPorts::default()).await
    }

    /// Starts the lab on the given loopback ports (0 = random).
    pub async fn start_on(config: LabConfig, ports: LabPorts) -> Result<Lab, LabError> {
        Self::start_with_key(config, ports, GoogleSigningKey::shared()).await
    }

    /// Starts the lab with a specific Google signing key (tests that need two distinct Googles).
    pub async fn start_with_key(
        config: LabConfig,
        ports: LabPorts,
        key: Arc<GoogleSigningKey>,
    ) -> Result<Lab, LabError> {
        validate(&config)?;
        let state = Arc::new(LabState::new(config, key));
        let metadata = bind("metadata server", ports.metadata).await?;
        let google = bind("Google APIs", ports.google_apis).await?;
        let sts = bind("AWS STS", ports.aws_sts).await?;
        let aws_metadata = bind("AWS instance and container metadata", ports.aws_metadata).await?;
        let actual = LabPorts {
            metadata: port(&metadata),
            google_apis: port(&google),
            aws_sts: port(&sts),
            aws_metadata: port(&aws_metadata),
        };
        *state
            .google_apis_url
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            format!("http://127.0.0.1:{}", actual.google_apis);
        let mut lab = Lab {
            state: state.clone(),
            ports: actual,
            stop: Vec::new(),
            tasks: Vec::new(),
        };
        lab.serve(metadata, metadata::router(state.clone()));
        lab.serve(google, google_apis::router(state.clone()));
        lab.serve(sts, aws_sts::router(state.clone()));
        lab.serve(aws_metadata, aws_metadata::router(state));
        tracing::info!(
            metadata = actual.metadata,
            google_apis = actual.google_apis,
            aws_sts = actual.aws_sts,
            aws_metadata = actual.aws_metadata,
            "lab started"
        );
        Ok(lab)
    }

    /// Also serves AWS STS and the Google APIs over HTTPS, on two more loopback ports, with a
    /// certificate from a CA made now (src/lab/tls.rs): the same state, so what one side
    /// issues the other knows. [`LabHttps::env`] points keyless at them.
    pub async fn serve_https(&mut self) -> Result<LabHttps, LabError> {
        let tls = tls::LabTls::generate()?;
        let sts = bind("AWS STS over HTTPS", 0).await?;
        let google = bind("Google APIs over HTTPS", 0).await?;
        let https = LabHttps {
            ca_pem: tls.ca_pem().to_string(),
            aws_sts_url: format!("https://localhost:{}", port(&sts)),
            google_apis_url: format!("https://localhost:{}", port(&google)),
        };
        self.serve_on(tls.listener(sts), aws_sts::router(self.state.clone()));
        self.serve_on(
            tls.listener(google),
            google_apis::router(self.state.clone()),
        );
        tracing::info!(sts = %https.aws_sts_url, google_apis = %https.google_apis_url, "lab serves HTTPS");
        Ok(https)
    }

    fn serve(&mut self, listener: TcpListener, router: axum::Router) {
        self.serve_on(listener, router)
    }

    fn serve_on<L>(&mut self, listener: L, router: axum::Router)
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        use axum::serve::ListenerExt;
        // `tap_io` makes any listener's peer address available as `ConnectInfo`.
        let listener = listener.tap_io(|_| {});
        let (tx, rx) = oneshot::channel::<()>();
        self.stop.push(tx);
        self.tasks.push(tokio::spawn(async move {
            // The peer address is CloudTrail's `sourceIPAddress` and Cloud Audit Logs' `callerIp`.
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let served = axum::serve(listener, service).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = served.await {
                tracing::warn!(error = %e, "lab listener stopped with an error");
            }
        }));
    }

    /// `127.0.0.1:PORT`: the value for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        format!("127.0.0.1:{}", self.ports.metadata)
    }

    /// `http://127.0.0.1:PORT` of the Google APIs listener.
    pub fn google_apis_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.google_apis)
    }

    /// `http://127.0.0.1:PORT`: the value for `AWS_ENDPOINT_URL_STS`.
    pub fn aws_sts_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.aws_sts)
    }

    /// `http://127.0.0.1:PORT`: the value for `AWS_ENDPOINT_URL_CLOUDTRAIL` (`LookupEvents` is
    /// served on the STS listener).
    pub fn cloudtrail_url(&self) -> String {
        self.aws_sts_url()
    }

    /// What CloudTrail recorded, oldest first: one record per `AssumeRoleWithWebIdentity`,
    /// `AssumeRole` and `GetWebIdentityToken` answered, plus any seeded ones (also
    /// `GET /_lab/cloudtrail`).
    pub fn cloudtrail_events(&self) -> Vec<serde_json::Value> {
        self.state.cloudtrail.records()
    }

    /// Adds a CloudTrail record as if AWS had recorded it (an event from last week, another
    /// account's call); it needs `eventTime` (RFC 3339) and `eventName`, and gets an `eventID`
    /// if it has none. Also `POST /_lab/cloudtrail`.
    pub fn record_cloudtrail_event(&self, record: serde_json::Value) -> Result<(), String> {
        self.state.cloudtrail.push(record)
    }

    /// `http://127.0.0.1:PORT` of the Google APIs listener, which also serves Cloud Logging
    /// `entries.list` and Resource Manager `getIamPolicy`: the value for `--logging-url`.
    pub fn logging_url(&self) -> String {
        self.google_apis_url()
    }

    /// The project's Cloud Audit Log entries, oldest first: one per Google STS token exchange
    /// and IAM Credentials `generateAccessToken` / `generateIdToken` answered while the
    /// service's Data Access logs were on, plus any seeded ones.
    pub fn audit_log_entries(&self) -> Vec<serde_json::Value> {
        self.state.audit_logs.entries()
    }

    /// Adds a log entry as if Google had recorded it (from before the lab started); it needs
    /// `timestamp` (RFC 3339) and `logName` (`projects/PROJECT/logs/...`) to be listed, and
    /// gets an `insertId` if it has none. Also `POST /_lab/audit-log` on the STS listener.
    pub fn record_audit_log_entry(&self, entry: serde_json::Value) -> Result<(), String> {
        self.state.audit_logs.push(entry)
    }

    /// Turns the project's Data Access audit logs for `service` (`sts.googleapis.com`,
    /// `iamcredentials.googleapis.com`) on or off, as editing the project's `auditConfigs`
    /// does. Also `POST /_lab/data-access` with `{"service": ..., "enabled": bool}`.
    pub fn set_data_access_logs(&self, service: &str, enabled: bool) {
        self.state.audit_logs.set_data_access(service, enabled);
    }

    /// The audience of the demo AWS provider:
    /// `//iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/providers/aws-lab`
    /// (from the config's project number and first pool's first provider).
    pub fn workload_identity_audience(&self) -> String {
        let config = &self.state.config;
        let (pool, provider) = config
            .workload_identity_pools
            .iter()
            .find_map(|p| {
                p.providers
                    .first()
                    .map(|v| (p.pool_id.as_str(), v.provider_id.as_str()))
            })
            .unwrap_or((DEMO_POOL, DEMO_AWS_PROVIDER));
        format!(
            "{}/providers/{provider}",
            crate::policy::workload_identity::pool_resource(&config.project_number, pool)
        )
    }

    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/providers/P`
    /// for a provider of the lab's project (whether or not it exists: tests need unknown ones).
    pub fn provider_audience(&self, pool: &str, provider: &str) -> String {
        format!(
            "{}/providers/{provider}",
            crate::policy::workload_identity::pool_resource(
                &self.state.config.project_number,
                pool
            )
        )
    }

    /// `{google_apis_url}/v1/token`: the Google STS token endpoint (`--token-url`, `token_url`).
    pub fn google_sts_url(&self) -> String {
        format!("{}/v1/token", self.google_apis_url())
    }

    /// `http://127.0.0.1:PORT`: the value for `AWS_EC2_METADATA_SERVICE_ENDPOINT` (IMDSv2).
    pub fn imds_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.aws_metadata)
    }

    /// The value for `AWS_CONTAINER_CREDENTIALS_FULL_URI` that serves sessions of `role` (as
    /// ECS or EKS Pod Identity would for the task's or pod's role).
    pub fn container_credentials_uri(&self, role: &str) -> String {
        format!(
            "http://127.0.0.1:{}{}{role}",
            self.ports.aws_metadata,
            aws_metadata::CONTAINER_PATH
        )
    }

    /// The value for `AWS_CONTAINER_AUTHORIZATION_TOKEN` (random per lab; the endpoint refuses
    /// requests without it).
    pub fn container_authorization_token(&self) -> String {
        self.state
            .container_authorization_token
            .expose()
            .to_string()
    }

    /// An IAM user's long-lived key (no session token, no expiry), for env or profile tests.
    ///
    /// # Panics
    /// If the user is not in the lab's configuration (a test bug).
    pub fn aws_user_credentials(&self, user: &str) -> AwsCredentials {
        let user = self
            .state
            .config
            .iam_user(user)
            .unwrap_or_else(|| panic!("the lab has no IAM user {user}"));
        AwsCredentials {
            access_key_id: user.access_key_id.clone(),
            secret_access_key: Secret::new(user.secret_access_key.clone()),
            session_token: None,
            expiration: None,
        }
    }

    /// Temporary credentials for `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`, issued and
    /// remembered by the lab (so its STS and Google STS accept them) without any trust check or
    /// STS call. A zero lifetime gives credentials that are already expired.
    ///
    /// # Panics
    /// If the role is not in the lab's configuration (a test bug).
    pub fn issue_role_credentials(
        &self,
        role: &str,
        session: &str,
        lifetime: Duration,
    ) -> AwsCredentials {
        assert!(
            self.state.config.role(role).is_some(),
            "the lab has no role {role}"
        );
        let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let (access_key_id, issued) = self.state.issue_role_session(role, session, lifetime);
        AwsCredentials {
            access_key_id,
            secret_access_key: issued.secret_access_key,
            session_token: issued.session_token,
            expiration: issued.expiration,
        }
    }

    /// The ports actually bound.
    pub fn ports(&self) -> LabPorts {
        self.ports
    }

    /// The lab's AWS account id.
    pub fn account_id(&self) -> &str {
        &self.state.config.account_id
    }

    /// The lab's configuration.
    pub fn config(&self) -> &LabConfig {
        &self.state.config
    }

    /// `arn:aws:iam::ACCOUNT:role/NAME` (whether or not the role exists: tests need unknown ones).
    pub fn role_arn(&self, role_name: &str) -> String {
        format!("arn:aws:iam::{}:role/{role_name}", self.account_id())
    }

    /// The environment that points keyless and the SDKs at the lab.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("GCE_METADATA_HOST", self.metadata_host()),
            ("GCE_METADATA_IP", self.metadata_host()),
            ("AWS_ENDPOINT_URL_STS", self.aws_sts_url()),
            ("AWS_ENDPOINT_URL_CLOUDTRAIL", self.cloudtrail_url()),
            ("KEYLESS_IAMCREDENTIALS_URL", self.google_apis_url()),
            ("KEYLESS_TOKEN_URL", self.google_sts_url()),
            ("AWS_REGION", "us-east-1".to_string()),
            // botocore (aws CLI v1, boto3) reads only this one.
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Writes an `authorized_user` ADC file for a lab user (0600, atomically), as
    /// `gcloud auth application-default login` would, refreshing against the lab.
    pub fn write_authorized_user_adc(&self, path: &Path, user_email: &str) -> std::io::Result<()> {
        let user = self
            .state
            .config
            .users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(user_email))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("the lab has no user {user_email}"),
                )
            })?;
        let doc = serde_json::json!({
            "type": "authorized_user",
            "client_id": user.client_id,
            "client_secret": user.client_secret,
            "refresh_token": user.refresh_token,
            "token_uri": format!("{}/token", self.google_apis_url()),
        });
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // NamedTempFile is created 0600; rename makes the write atomic.
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(serde_json::to_string_pretty(&doc)?.as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Mints a Google ID token for a lab service account directly (no HTTP), with email claims.
    /// A zero lifetime gives a token that is already expired (STS requires `exp` in the future).
    /// Not counted in [`LabStats::id_tokens_minted`], which counts upstream (HTTP) mints only.
    ///
    /// # Panics
    /// If the service account is not in the lab's configuration (a test bug).
    pub fn mint_id_token(
        &self,
        service_account_email: &str,
        audience: &str,
        lifetime: Duration,
    ) -> String {
        let sa = self
            .state
            .config
            .service_account(service_account_email)
            .unwrap_or_else(|| panic!("the lab has no service account {service_account_email}"));
        let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        self.state.sign_id_token(sa, audience, true, lifetime, None)
    }

    /// Signs any claims as an RS256 JWT: with the key of the issuer named in `iss` when the lab
    /// runs it (GitHub Actions, the Kubernetes cluster), else with the lab's key (the tokens of
    /// an EKS cluster registered in [`LabConfig::oidc_providers`], or odd Google ones).
    pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
        // An issuer the lab runs (GitHub Actions, the Kubernetes cluster) signs with its own key.
        let token = self
            .state
            .signing_key_for(claims.get("iss").and_then(|i| i.as_str()))
            .sign(claims);
        self.state.record(&token);
        token
    }

    /// The runner's variables of a job with `permissions: id-token: write`, pointing at the
    /// lab's GitHub Actions token service (empty when the lab has none).
    pub fn github_actions_env(&self) -> Vec<(String, String)> {
        let Some(github) = &self.state.config.github_actions else {
            return Vec::new();
        };
        [
            (
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                format!(
                    "{}{}/idtoken?api-version=2.0",
                    self.google_apis_url(),
                    issuers::GITHUB_PREFIX
                ),
            ),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                self.state.issuers.github_request_token.expose().to_string(),
            ),
            ("GITHUB_ACTIONS", "true".to_string()),
            ("GITHUB_REPOSITORY", github.repository.clone()),
            ("GITHUB_RUN_ID", github.run_id.clone()),
            ("GITHUB_RUN_ATTEMPT", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// GitHub Actions tokens the token service has minted.
    pub fn github_tokens_minted(&self) -> u64 {
        self.state
            .issuers
            .github_tokens_minted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes the next `n` GitHub Actions tokens come out already expired (as a token kept
    /// past its five minutes would be).
    pub fn expire_next_github_tokens(&self, n: u32) {
        self.state
            .issuers
            .github_expire_next
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// A GitHub Actions token for `audience`, minted directly (no HTTP, not counted).
    ///
    /// # Panics
    /// If the lab has no GitHub Actions token service (a test bug).
    pub fn mint_github_token(&self, audience: &str) -> String {
        let token = self
            .state
            .mint_github_token(Some(audience))
            .expect("the lab has a GitHub Actions token service");
        self.state
            .issuers
            .github_tokens_minted
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        token
    }

    /// Writes a projected service-account token of the lab's Kubernetes cluster for
    /// `system:serviceaccount:NAMESPACE:NAME` to `path`, atomically (a temp file renamed, as the
    /// kubelet does); call it again to rotate the file.
    ///
    /// # Panics
    /// If the lab has no Kubernetes cluster (a test bug).
    pub fn write_kubernetes_token(
        &self,
        path: &Path,
        namespace: &str,
        name: &str,
    ) -> std::io::Result<()> {
        let token = self
            .state
            .mint_kubernetes_token(namespace, name)
            .expect("the lab has a Kubernetes cluster");
        issuers::write_atomically(path, &token)
    }

    /// Keeps a projected token for `NAMESPACE:NAME` at `path`, rewritten at 80% of its lifetime
    /// as the kubelet does, until the returned task is aborted (or the runtime stops).
    pub fn project_kubernetes_token(
        &self,
        path: &Path,
        namespace: &str,
        name: &str,
    ) -> std::io::Result<JoinHandle<()>> {
        self.write_kubernetes_token(path, namespace, name)?;
        let lifetime = self
            .state
            .config
            .kubernetes
            .as_ref()
            .map_or(Duration::from_secs(3600), |k| k.token_lifetime);
        let (state, path) = (self.state.clone(), path.to_path_buf());
        let (namespace, name) = (namespace.to_string(), name.to_string());
        Ok(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lifetime.mul_f64(0.8)).await;
                let written = state
                    .mint_kubernetes_token(&namespace, &name)
                    .map(|token| issuers::write_atomically(&path, &token));
                if let Some(Err(e)) = written {
                    tracing::warn!(path = %path.display(), "lab kubernetes: could not rotate the token: {e}");
                }
            }
        }))
    }

    /// Turns on outbound identity federation for the account, as IAM's
    /// `EnableOutboundWebIdentityFederation` does, and returns the account's issuer
    /// (`https://ID.tokens.sts.global.api.aws`). Also `POST /_lab/outbound-federation`.
    pub fn enable_outbound_federation(&self) -> String {
        self.state.outbound.enable()
    }

    /// The account's outbound issuer (whether or not the feature is enabled yet).
    pub fn outbound_issuer(&self) -> String {
        self.state.outbound.issuer().to_string()
    }

    /// The public keys of the outbound issuer, RS256 and ES384 (also served, once enabled, at
    /// `{aws_sts_url}/.well-known/jwks.json`).
    pub fn outbound_jwks(&self) -> serde_json::Value {
        aws_outbound::jwks()
    }

    /// Verifies an outbound token as a relying party would (the issuer's key, `iss`, `exp`)
    /// and returns its claims.
    pub fn verify_outbound_token(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        aws_outbound::verify(&self.state, token, now).map_err(|e| format!("{e:?}"))
    }

    /// Faults to inject into the next requests.
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LabStats {
        self.state.counters.snapshot(&self.state.upstream_load)
    }

    /// Why the last request was refused, as the clouds never say: the trust-policy evaluation of
    /// the last STS `AccessDenied`, or which attribute made a Google STS exchange fail the
    /// provider's condition (or why else it was refused), or which binding an impersonation or
    /// storage request lacked.
    pub fn last_denial(&self) -> Option<String> {
        self.state.last_denial()
    }

    /// Every secret the lab has issued so far (ID tokens, access tokens, AWS secret keys and
    /// session tokens, IMDS session tokens) or holds (the container authorization token, the
    /// IAM users' secret keys, the users' OAuth client secrets and refresh tokens): what a leak
    /// test looks for.
    pub fn issued_secrets(&self) -> Vec<Secret> {
        self.state.issued_secrets()
    }

    /// Appends every secret issued so far, and each new one, to `path` (0600, one a line): the
    /// leak test's view into a lab that runs in another process (`keyless demo`, `keyless lab`).
    pub fn record_issued_secrets_to(&self, path: &Path) -> std::io::Result<()> {
        self.state.record_secrets_to(path)
    }

    /// The public JWKS the Google side publishes (for tests that verify tokens themselves).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [self.state.key.jwk()]})
    }

    /// Stops the listeners and waits until they have.
    pub async fn shutdown(mut self) {
        for tx in self.stop.drain(..) {
            let _ = tx.send(());
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn validate(config: &LabConfig) -> Result<(), LabError> {
    if config
        .service_account(&config.metadata_service_account)
        .is_none()
    {
        return Err(LabError::Config(format!(
            "metadata_service_account {} is not one of service_accounts; add it there",
            config.metadata_service_account
        )));
    }
    let served = [
        config.github_actions.as_ref().map(|g| &g.issuer),
        config.kubernetes.as_ref().map(|k| &k.issuer),
    ];
    for issuer in served.into_iter().flatten() {
        if !issuer.starts_with("https://") {
            return Err(LabError::Config(format!(
                "the issuer {issuer} needs an https:// URL, as IAM OIDC providers do"
            )));
        }
    }
    for provider in &config.oidc_providers {
        if !provider.issuer.starts_with("https://") || provider.client_ids.is_empty() {
            return Err(LabError::Config(format!(
                "the OIDC provider {} needs an https:// issuer URL and at least one client ID, as IAM does",
                provider.issuer
            )));
        }
    }
    for account in &config.other_accounts {
        if account.account_id.len() != 12
            || !account.account_id.bytes().all(|b| b.is_ascii_digit())
            || account.account_id == config.account_id
        {
            return Err(LabError::Config(format!(
                "other account {:?} must be 12 digits and not the lab account",
                account.account_id
            )));
        }
    }
    let other_roles = config.other_accounts.iter().flat_map(|a| &a.roles);
    for role in config.roles.iter().chain(other_roles) {
        if let Err(e) = crate::policy::PolicyDocument::parse(&role.trust_policy) {
            return Err(LabError::Config(format!(
                "the trust policy of role {} is invalid: {e}",
                role.name
            )));
        }
    }
    for pool in &config.workload_identity_pools {
        for provider in &pool.providers {
            if let Some(condition) = &provider.attribute_condition {
                crate::policy::cel::CelExpression::parse(condition).map_err(|e| {
                    LabError::Config(format!(
                        "the attribute condition of provider {}/{} is not usable: {e}",
                        pool.pool_id, provider.provider_id
                    ))
                })?;
            }
        }
    }
    for pool in &config.workload_identity_pools {
        for provider in &pool.oidc_providers {
            let name = format!("{}/{}", pool.pool_id, provider.provider_id);
            if !provider.issuer_uri.starts_with("https://") {
                return Err(LabError::Config(format!(
                    "the OIDC provider {name} needs an https:// issuer URI, as Google does"
                )));
            }
            provider.mapping().map_err(|e| {
                LabError::Config(format!("the attribute mapping of provider {name}: {e}"))
            })?;
            if let Some(condition) = &provider.attribute_condition {
                crate::policy::cel::CelExpression::parse(condition).map_err(|e| {
                    LabError::Config(format!(
                        "the attribute condition of provider {name} is not usable: {e}"
                    ))
                })?;
            }
            if let Some(jwks) = &provider.jwks_json {
                serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(jwks).map_err(|e| {
                    LabError::Config(format!(
                        "the jwksJson of provider {name} is not a JWKS: {e}"
                    ))
                })?;
            }
        }
    }
    for binding in &config.workload_identity_users {
        if config.service_account(&binding.service_account).is_none() {
            return Err(LabError::Config(format!(
                "workload_identity_users binds {} on {}, which is not one of service_accounts; add it there",
                binding.member, binding.service_account
            )));
        }
    }
    if let Some(instance) = &config.ec2_instance {
        if config.role(&instance.role).is_none() {
            return Err(LabError::Config(format!(
                "ec2_instance.role {} is not one of roles; add it there",
                instance.role
            )));
        }
    }
    Ok(())
}

async fn bind(service: &'static str, port: u16) -> Result<TcpListener, LabError> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(|source| LabError::Bind {
            service,
            port,
            source,
        })
}

fn port(listener: &TcpListener) -> u16 {
    listener.local_addr().map(|a| a.port()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_audit;
#[cfg(test)]
mod tests_aws_to_gcp;
