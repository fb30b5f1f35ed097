//! The AWS identity a workload already has: the credentials an AWS SDK would find where it runs.
//!
//! For AWS → GCP keyless signs a GetCallerIdentity request with these credentials, so they must
//! be exactly the ones the workload's own SDK would use: same sources, same order, same profile
//! semantics. We therefore wire aws-config's own providers (environment, shared profiles with
//! `role_arn`/`credential_process`/SSO, web identity, container endpoint, IMDSv2) in the SDK's
//! order instead of re-implementing them, and add only what aws-config lacks for a CLI: an error
//! that says which sources were tried and what to set, a region that is required up front, an
//! HTTPS client on the ring crypto provider (we ship no aws-lc), and an optional AssumeRole on
//! top.
//!
//! Every CLI call builds one of these, often only to find its credentials already cached, so
//! [`AwsIdentitySource::resolve`] does no network I/O unless the region can only come from
//! instance metadata, and the providers (with their STS and IMDS clients) are built on the first
//! fetch.
//!
//! The STS clients inside aws-config's providers (AssumeRole for `role_arn` profiles,
//! AssumeRoleWithWebIdentity) honour `AWS_ENDPOINT_URL_STS` and `AWS_ENDPOINT_URL` on their own:
//! aws-config hands them a service config that reads those variables (and the profile's
//! `endpoint_url`). The `--assume-role` client gets the same through aws-config's `ConfigLoader`.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::imds;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::imds::region::ImdsRegionProvider;
use aws_config::meta::region::ProvideRegion;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::provider_config::ProviderConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::credentials::AwsCredentials;
use crate::secret::Secret;

/// The session name `--assume-role` uses when none is given: stable, so the assumed-role ARN
/// (`assumed-role/ROLE/keyless`) is predictable for trust policies, CloudTrail searches and
/// cache keys.
pub const DEFAULT_ASSUME_ROLE_SESSION_NAME: &str = "keyless";

/// The variables that decide whose credentials the chain finds (besides the profile): part of
/// [`AwsIdentitySource::cached_identity`].
const IDENTITY_VARIABLES: [&str; 7] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
];

/// The profile aws-config reads when neither `--aws-profile` nor `AWS_PROFILE` names one.
const DEFAULT_PROFILE: &str = "default";

/// How long a connection to STS may take before the chain gives up (aws-config's own default),
/// and how long a whole STS call may take: an SDK waiting on `credential_process` must not hang.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the user asked for: `--aws-profile`, `--aws-region`, `--assume-role` and its session name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSourceOptions {
    /// The shared-config profile; `None` means `AWS_PROFILE`, else `default`, as the SDKs do.
    pub profile: Option<String>,
    /// The region; `None` means the SDK region chain (env, profile, instance metadata).
    pub region: Option<crate::types::Region>,
    /// A role to assume with the resolved credentials before using them.
    pub assume_role: Option<String>,
    /// The session name for `assume_role`; [`DEFAULT_ASSUME_ROLE_SESSION_NAME`] when `None`.
    pub assume_role_session_name: Option<String>,
}

/// One source of the SDK default credential chain, in the chain's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
    Environment,
    /// `~/.aws/config` and `~/.aws/credentials`: keys, `role_arn`, `credential_process`, SSO.
    Profile,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (EKS IRSA).
    WebIdentity,
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI` (ECS, Fargate, EKS Pod Identity).
    Container,
    /// EC2 instance metadata (IMDSv2).
    InstanceMetadata,
}

impl CredentialSource {
    /// The chain in the order every AWS SDK walks it.
    pub const CHAIN: [CredentialSource; 5] = [
        Self::Environment,
        Self::Profile,
        Self::WebIdentity,
        Self::Container,
        Self::InstanceMetadata,
    ];

    /// What a user would set to make this source provide credentials.
    fn how_to_enable(self) -> &'static str {
        match self {
            Self::Environment => "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)",
            Self::Profile => "choose a profile with --aws-profile or AWS_PROFILE that has keys, role_arn + source_profile, credential_process or sso_*",
            Self::WebIdentity => "set AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (EKS IRSA does this)",
            Self::Container => "set AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or AWS_CONTAINER_CREDENTIALS_FULL_URI (ECS, Fargate and EKS Pod Identity do this)",
            Self::InstanceMetadata => "run on EC2 with an instance profile, or point AWS_EC2_METADATA_SERVICE_ENDPOINT at an IMDSv2 endpoint",
        }
    }
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Environment => "environment variables",
            Self::Profile => "shared config profile",
            Self::WebIdentity => "web identity token file",
            Self::Container => "container credentials endpoint",
            Self::InstanceMetadata => "EC2 instance metadata (IMDSv2)",
        })
    }
}

/// Why one source of the chain gave nothing (it was not configured, or not reachable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceAttempt {
    pub source: CredentialSource,
    pub reason: String,
}

/// What can go wrong while finding the workload's AWS identity, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum AwsSourceError {
    /// Every source of the chain came up empty.
    #[error("{}", no_credentials_message(.profile, .tried))]
    NoCredentials {
        profile: String,
        tried: Vec<SourceAttempt>,
    },

    /// No region anywhere; the subject token must name the regional STS endpoint.
    #[error("no AWS region found for profile {profile:?}: the subject token is signed for the regional STS endpoint (sts.REGION.amazonaws.com)\n  \
             tried: --aws-region, AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`, {imds}\n  \
             hint: pass --aws-region REGION (or set AWS_REGION)")]
    NoRegion { profile: String, imds: String },

    /// The region the SDK chain found (environment, profile, instance metadata) cannot be part
    /// of a host name.
    #[error(
        "{0}\n  hint: fix --aws-region, AWS_REGION, AWS_DEFAULT_REGION or the profile's `region`"
    )]
    InvalidRegion(#[source] crate::types::SpecError),

    /// `--assume-role` is not an IAM role ARN.
    #[error("{role:?} is not an IAM role ARN\n  hint: --assume-role takes arn:aws:iam::ACCOUNT:role/NAME")]
    InvalidRoleArn { role: String },

    /// The session name would be refused by STS.
    #[error("{name:?} is not a valid role session name\n  hint: use 2 to 64 characters from letters, digits and +=,.@_-")]
    InvalidSessionName { name: String },

    /// A source was configured but failed (bad profile, refused AssumeRole, unreachable STS...).
    #[error("AWS credentials from the {which} failed: {cause}{}", provider_hint(*.which))]
    Provider {
        which: CredentialSource,
        cause: String,
        transient: bool,
    },

    /// The base identity could not assume `--assume-role`.
    #[error("could not assume {role} with the AWS credentials from the {base}: {cause}\n  \
             hint: the base identity needs sts:AssumeRole on {role}, and the role's trust policy must trust it")]
    AssumeRoleFailed {
        role: String,
        base: CredentialSource,
        cause: String,
        transient: bool,
    },
}

impl AwsSourceError {
    /// Retrying may help (timeouts, network errors, throttling, STS 5xx); a missing or refused
    /// configuration will not change by itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Provider { transient, .. } | Self::AssumeRoleFailed { transient, .. } => {
                *transient
            }
            _ => false,
        }
    }
}

impl crate::classify::Classify for AwsSourceError {
    fn class(&self) -> crate::classify::Class {
        use crate::classify::Class;
        match self {
            _ if self.is_transient() => Class::Unavailable,
            Self::NoCredentials { .. }
            | Self::NoRegion { .. }
            | Self::InvalidRegion { .. }
            | Self::InvalidRoleArn { .. }
            | Self::InvalidSessionName { .. } => Class::Usage,
            _ => Class::Failure,
        }
    }
}

fn no_credentials_message(profile: &str, tried: &[SourceAttempt]) -> String {
    let mut text = String::from("no AWS credentials found; tried, in the AWS SDKs' order:");
    for attempt in tried {
        let label = match attempt.source {
            CredentialSource::Profile => format!("{} {profile:?}", attempt.source),
            _ => attempt.source.to_string(),
        };
        text.push_str(&format!("\n  - {label}: {}", attempt.reason));
    }
    text.push_str("\n  hint: one of these must work:");
    for attempt in tried {
        text.push_str(&format!("\n    {}", attempt.source.how_to_enable()));
    }
    text
}

fn provider_hint(which: CredentialSource) -> &'static str {
    match which {
        CredentialSource::Profile => "\n  hint: check the profile in ~/.aws/config and ~/.aws/credentials (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE); `aws sts get-caller-identity --profile NAME` shows the same failure",
        CredentialSource::WebIdentity => "\n  hint: check AWS_ROLE_ARN, that AWS_WEB_IDENTITY_TOKEN_FILE holds a current token, and that the role trusts its issuer",
        CredentialSource::Container => "\n  hint: check AWS_CONTAINER_CREDENTIALS_*_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]",
        CredentialSource::Environment => "\n  hint: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither",
        CredentialSource::InstanceMetadata => "\n  hint: check the instance profile; AWS_EC2_METADATA_DISABLED=true skips instance metadata",
    }
}

/// The workload's AWS identity: where its credentials come from and its region.
///
/// Cheap to clone (one `Arc`), so the refresh engine and servers can hold it; the providers are
/// built once, on the first [`fetch_credentials`](Self::fetch_credentials).
#[derive(Clone)]
pub struct AwsIdentitySource {
    inner: Arc<Inner>,
}

struct Inner {
    profile: String,
    profile_override: Option<String>,
    region: crate::types::Region,
    assume_role: Option<AssumeRole>,
    provider_config: ProviderConfig,
    imds: imds::Client,
    chain: OnceCell<CredentialChain>,
}

struct AssumeRole {
    role: String,
    session_name: String,
    /// The STS client's configuration, loaded on first use (it reads the profile files again).
    sdk_config: OnceCell<SdkConfig>,
}

/// Prints only what [`AwsIdentitySource::describe`] prints: never a credential.
impl fmt::Debug for AwsIdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsIdentitySource")
            .field("profile", &self.inner.profile)
            .field("region", &self.inner.region)
            .field(
                "assume_role",
                &self.inner.assume_role.as_ref().map(|a| &a.role),
            )
            .finish_non_exhaustive()
    }
}

impl AwsIdentitySource {
    /// Builds the chain and finds the region; fetches no credentials.
    ///
    /// The only network I/O is the region lookup in instance metadata, and only when neither
    /// `--aws-region`, the environment nor the profile gives one.
    pub async fn resolve(options: AwsSourceOptions) -> Result<Self, AwsSourceError> {
        let assume_role = match &options.assume_role {
            None => None,
            Some(role) => {
                validate_role_arn(role)?;
                let session_name = options
                    .assume_role_session_name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ASSUME_ROLE_SESSION_NAME.to_string());
                validate_session_name(&session_name)?;
                Some(AssumeRole {
                    role: role.clone(),
                    session_name,
                    sdk_config: OnceCell::new(),
                })
            }
        };
        let profile_override = options.profile.clone().filter(|p| !p.is_empty());
        let profile = effective_profile(
            profile_override.as_deref(),
            std::env::var("AWS_PROFILE").ok().as_deref(),
        );

        let provider_config = ProviderConfig::without_region()
            .with_http_client(https_client())
            .with_timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        // One IMDS client for region and credentials, so its session token is fetched once.
        let imds = imds::Client::builder().configure(&provider_config).build();

        let region = match options.region {
            Some(region) => region,
            None => find_region(&provider_config, profile_override.as_deref(), &imds)
                .await
                .ok_or_else(|| AwsSourceError::NoRegion {
                    profile: profile.clone(),
                    imds: if imds_disabled() {
                        "EC2 instance metadata (skipped: AWS_EC2_METADATA_DISABLED)".into()
                    } else {
                        "EC2 instance metadata (unreachable or no answer)".into()
                    },
                })
                .and_then(|r| {
                    crate::types::Region::parse(&r).map_err(AwsSourceError::InvalidRegion)
                })?,
        };
        let provider_config =
            provider_config.with_region(Some(Region::new(region.as_str().to_string())));

        Ok(Self {
            inner: Arc::new(Inner {
                profile,
                profile_override,
                region,
                assume_role,
                provider_config,
                imds,
                chain: OnceCell::new(),
            }),
        })
    }

    /// The region the subject token's STS URL is built for.
    pub fn region(&self) -> &crate::types::Region {
        &self.inner.region
    }

    /// Fetches credentials through the chain (and `--assume-role` when given), expiry included.
    pub async fn fetch_credentials(&self) -> Result<AwsCredentials, AwsSourceError> {
        let chain = self
            .inner
            .chain
            .get_or_init(|| async { self.build_chain() })
            .await;
        let (base_source, base) = chain.fetch(&self.inner.profile).await?;
        tracing::debug!(
            source = %base_source,
            access_key_id = base.access_key_id(),
            "resolved AWS credentials"
        );
        let credentials = match &self.inner.assume_role {
            None => base,
            Some(assume) => self.fetch_assumed(assume, base_source, base).await?,
        };
        Ok(into_aws_credentials(&credentials))
    }

    /// A stable, secret-free description: what selects the identity (profile, assumed role,
    /// session) and the region. Equal descriptions mean the same identity, so it keys caches.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "aws profile={} region={}",
            self.inner.profile, self.inner.region
        );
        if let Some(assume) = &self.inner.assume_role {
            text.push_str(&format!(
                " assume-role={} session={}",
                assume.role, assume.session_name
            ));
        }
        text
    }

    /// Who these credentials would be, as far as can be known without the network: the
    /// description (profile, region, assumed role), a fingerprint of the variables that pick
    /// the identity (the access key id in the environment, the web identity role and token
    /// file, the container endpoint, the config file paths) and of the shared config and
    /// credentials files' size and modification time, so a key swapped in a profile is a new
    /// identity. Never a secret. Keys the `gcp` disk cache.
    pub fn cached_identity(&self) -> String {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut feed = |name: &str, value: &[u8]| {
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value);
        };
        for variable in IDENTITY_VARIABLES {
            let value = std::env::var_os(variable).unwrap_or_default();
            feed(variable, value.as_encoded_bytes());
        }
        for (variable, default) in [
            ("AWS_CONFIG_FILE", "config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        ] {
            let path = std::env::var_os(variable)
                .filter(|p| !p.is_empty())
                .map(std::path::PathBuf::from)
                .or_else(|| dirs::home_dir().map(|home| home.join(".aws").join(default)));
            let stamp = path
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|meta| {
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_nanos())
                        .unwrap_or_default();
                    format!("{} {modified}", meta.len())
                })
                .unwrap_or_default();
            feed(default, stamp.as_bytes());
        }
        format!(
            "{} callers={}",
            self.describe(),
            hex::encode(&hasher.finalize()[..12])
        )
    }

    /// The SDK default chain, built from aws-config's providers in the SDK's order.
    fn build_chain(&self) -> CredentialChain {
        let conf = &self.inner.provider_config;
        let mut profile = ProfileFileCredentialsProvider::builder().configure(conf);
        if let Some(name) = &self.inner.profile_override {
            profile = profile.profile_name(name);
        }
        let links: Vec<(CredentialSource, SharedCredentialsProvider)> = vec![
            (
                CredentialSource::Environment,
                SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()),
            ),
            (
                CredentialSource::Profile,
                SharedCredentialsProvider::new(profile.build()),
            ),
            (
                CredentialSource::WebIdentity,
                SharedCredentialsProvider::new(
                    WebIdentityTokenCredentialsProvider::builder()
                        .configure(conf)
                        .build(),
                ),
            ),
            (
                CredentialSource::Container,
                SharedCredentialsProvider::new(
                    EcsCredentialsProvider::builder().configure(conf).build(),
                ),
            ),
            (
                CredentialSource::InstanceMetadata,
                SharedCredentialsProvider::new(
                    ImdsCredentialsProvider::builder()
                        .configure(conf)
                        .imds_client(self.inner.imds.clone())
                        .build(),
                ),
            ),
        ];
        CredentialChain { links }
    }

    async fn fetch_assumed(
        &self,
        assume: &AssumeRole,
        base_source: CredentialSource,
        base: Credentials,
    ) -> Result<Credentials, AwsSourceError> {
        let sdk_config = assume
            .sdk_config
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(https_client())
                    .region(Region::new(self.inner.region.as_str().to_string()))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(CONNECT_TIMEOUT)
                            .operation_timeout(OPERATION_TIMEOUT)
                            .build(),
                    )
                    // Replaced per call by the base credentials; this keeps the loader from
                    // building a second default chain.
                    .no_credentials();
                if let Some(name) = &self.inner.profile_override {
                    loader = loader.profile_name(name);
                }
                loader.load().await
            })
            .await;
        let provider = AssumeRoleProvider::builder(assume.role.clone())
            .session_name(assume.session_name.clone())
            .configure(sdk_config)
            .build_from_provider(base)
            .await;
        provider
            .provide_credentials()
            .await
            .map_err(|err| AwsSourceError::AssumeRoleFailed {
                role: assume.role.clone(),
                base: base_source,
                transient: is_transient_error(&err),
                cause: error_chain(&err),
            })
    }
}

/// The chain, walked as aws-config's `CredentialsProviderChain` walks it (a source that is not
/// configured passes to the next; one that is configured but fails stops the walk), but
/// remembering why each source passed, for the error.
struct CredentialChain {
    links: Vec<(CredentialSource, SharedCredentialsProvider)>,
}

impl CredentialChain {
    async fn fetch(
        &self,
        profile: &str,
    ) -> Result<(CredentialSource, Credentials), AwsSourceError> {
        let mut tried = Vec::with_capacity(self.links.len());
        for (source, provider) in &self.links {
            match provider.provide_credentials().await {
                Ok(credentials) => return Ok((*source, credentials)),
                Err(err @ CredentialsError::CredentialsNotLoaded(_)) => {
                    tracing::debug!(%source, reason = %error_chain(&err), "no AWS credentials here");
                    tried.push(SourceAttempt {
                        source: *source,
                        reason: explain_not_loaded(*source, profile, &not_loaded_reason(&err)),
                    });
                }
                Err(err) => {
                    return Err(AwsSourceError::Provider {
                        which: *source,
                        transient: is_transient_error(&err),
                        cause: error_chain(&err),
                    })
                }
            }
        }
        Err(AwsSourceError::NoCredentials {
            profile: profile.to_string(),
            tried,
        })
    }
}

/// The one HTTP client for every AWS call of this process: the ECS and IMDS endpoints (and the
/// lab) are `http://` and go through a plain client; anything else through rustls on ring (no
/// aws-lc in our build). The TLS client is asked for a connector only by the first request that
/// needs one, because building it parses the system's roots (the bundle and the directory:
/// ~18 M instructions, BENCHMARKS.md "Profile") that an `http://` endpoint has no use for.
fn https_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            SharedHttpClient::new(BySchemeClient {
                plain: aws_smithy_http_client::Builder::new().build_http(),
                tls: aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            })
        })
        .clone()
}

/// Picks the plain or the TLS client by each request's scheme (see [`https_client`]). Both cache
/// their connectors per settings, so asking them per request costs no new pool.
#[derive(Debug)]
struct BySchemeClient {
    plain: SharedHttpClient,
    tls: SharedHttpClient,
}

impl HttpClient for BySchemeClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(BySchemeConnector {
            plain: self.plain.http_connector(settings, components),
            tls: self.tls.clone(),
            settings: settings.clone(),
            components: components.clone(),
        })
    }

    // The SDK's clients validate their HTTP client when built; the TLS client's validation
    // builds its connector (and reads the roots), so only the plain one, which checks the same
    // settings, is asked.
    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.plain.validate_base_client_config(components, cfg)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.plain.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.tls.connector_metadata()
    }
}

#[derive(Debug)]
struct BySchemeConnector {
    plain: SharedHttpConnector,
    tls: SharedHttpClient,
    settings: HttpConnectorSettings,
    components: RuntimeComponents,
}

impl HttpConnector for BySchemeConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        if is_plain_http(request.uri()) {
            self.plain.call(request)
        } else {
            self.tls
                .http_connector(&self.settings, &self.components)
                .call(request)
        }
    }
}

fn is_plain_http(uri: &str) -> bool {
    uri.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// The region chain of the SDKs: environment, the profile's `region`, then instance metadata.
async fn find_region(
    conf: &ProviderConfig,
    profile_override: Option<&str>,
    imds: &imds::Client,
) -> Option<String> {
    if let Some(region) = EnvironmentVariableRegionProvider::new().region().await {
        return Some(region.to_string());
    }
    let mut profile = ProfileFileRegionProvider::builder().configure(conf);
    if let Some(name) = profile_override {
        profile = profile.profile_name(name);
    }
    if let Some(region) = profile.build().region().await {
        return Some(region.to_string());
    }
    ImdsRegionProvider::builder()
        .configure(conf)
        .imds_client(imds.clone())
        .build()
        .region()
        .await
        .map(|r| r.to_string())
}

fn imds_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The profile aws-config will read: the flag, else `AWS_PROFILE`, else `default`.
fn effective_profile(flag: Option<&str>, env: Option<&str>) -> String {
    flag.or(env.filter(|p| !p.is_empty()))
        .unwrap_or(DEFAULT_PROFILE)
        .to_string()
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`, checked before any call so a typo fails fast.
fn validate_role_arn(role: &str) -> Result<(), AwsSourceError> {
    let parts: Vec<&str> = role.splitn(6, ':').collect();
    let valid = matches!(
        parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty())
    );
    if valid {
        Ok(())
    } else {
        Err(AwsSourceError::InvalidRoleArn {
            role: role.to_string(),
        })
    }
}

/// STS's rule for `RoleSessionName`: `[\w+=,.@-]{2,64}`.
fn validate_session_name(name: &str) -> Result<(), AwsSourceError> {
    let valid = (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(AwsSourceError::InvalidSessionName {
            name: name.to_string(),
        })
    }
}

fn into_aws_credentials(credentials: &Credentials) -> AwsCredentials {
    AwsCredentials {
        access_key_id: credentials.access_key_id().to_string(),
        secret_access_key: Secret::new(credentials.secret_access_key()),
        session_token: credentials.session_token().map(Secret::new),
        expiration: credentials.expiry().map(OffsetDateTime::from),
    }
}

/// An error and its causes on one line, as aws-config's `DisplayErrorContext` prints them, with
/// repeats dropped (aws-config often wraps an error in one that prints the same text).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Why a source passed: the causes of a `CredentialsNotLoaded`, without its generic headline.
fn not_loaded_reason(err: &CredentialsError) -> String {
    use std::error::Error;
    match err.source() {
        Some(cause) => error_chain(cause),
        None => "not configured".to_string(),
    }
}

/// aws-config's reasons for the common "not configured" cases are terse ("environment variable
/// not set", "not configured"); say which variable or file was looked at instead.
fn explain_not_loaded(source: CredentialSource, profile: &str, reason: &str) -> String {
    let file = |var: &str, default: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    match (source, reason) {
        (CredentialSource::Environment, "environment variable not set") => {
            "AWS_ACCESS_KEY_ID is not set".into()
        }
        (CredentialSource::Profile, "not configured") => format!(
            "no profile {profile:?} with credentials in {} or {}",
            file("AWS_CONFIG_FILE", "~/.aws/config"),
            file("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        ),
        (CredentialSource::Container, "ECS provider not configured") => {
            "neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set".into()
        }
        _ => reason.to_string(),
    }
}

/// aws-config does not classify its provider errors, so we read them: a timeout, a failed
/// connection, throttling or an STS server error may pass; anything else will not.
fn is_transient_error(err: &CredentialsError) -> bool {
    matches!(err, CredentialsError::ProviderTimedOut(_)) || looks_transient(&error_chain(err))
}

fn looks_transient(text: &str) -> bool {
    const MARKERS: &[&str] = &[
        "dispatch failure",
        "timed out",
        "timeout",
        "throttl",
        "idpcommunicationerror",
        "serviceunavailable",
        "service unavailable",
        "internalfailure",
        "internal server error",
        "connection refused",
        "connection reset",
        "io error",
    ];
    let text = text.to_ascii_lowercase();
    MARKERS.iter().any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_skips_the_tls_client() {
        assert!(is_plain_http("http://169.254.169.254/latest/api/token"));
        assert!(is_plain_http("HTTP://127.0.0.1:8080/creds"));
        assert!(!is_plain_http("https://sts.us-east-1.amazonaws.com/"));
        assert!(!is_plain_http("http:"));
    }

    #[test]
    fn the_flag_beats_aws_profile_which_beats_default() {
        assert_eq!(effective_profile(Some("dev"), Some("prod")), "dev");
        assert_eq!(effective_profile(None, Some("prod")), "prod");
        assert_eq!(effective_profile(None, Some("")), "default");
        assert_eq!(effective_profile(None, None), "default");
    }

    #[test]
    fn role_arns_are_checked_before_any_call() {
        for good in [
            "arn:aws:iam::123456789012:role/deploy",
            "arn:aws-us-gov:iam::123456789012:role/path/to/deploy",
            "arn:aws-cn:iam::123456789012:role/x",
        ] {
            assert!(validate_role_arn(good).is_ok(), "{good}");
        }
        for bad in [
            "deploy",
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::12345:role/deploy",
            "arn:aws:sts::123456789012:role/deploy",
            "arn:aws:iam::123456789012:role/",
        ] {
            let err = validate_role_arn(bad).unwrap_err();
            assert!(
                err.to_string().contains("arn:aws:iam::ACCOUNT:role/NAME"),
                "{err}"
            );
        }
    }

    #[test]
    fn session_names_follow_the_sts_rule() {
        assert!(validate_session_name(DEFAULT_ASSUME_ROLE_SESSION_NAME).is_ok());
        assert!(validate_session_name("ci+deploy=1,a.b@c_d-e").is_ok());
        assert!(validate_session_name("x").is_err());
        assert!(validate_session_name(&"x".repeat(65)).is_err());
        assert!(validate_session_name("has space").is_err());
    }

    #[test]
    fn no_credentials_lists_every_source_in_order_with_the_fix() {
        let tried: Vec<SourceAttempt> = CredentialSource::CHAIN
            .iter()
            .map(|s| SourceAttempt {
                source: *s,
                reason: format!("reason-{s:?}"),
            })
            .collect();
        let message = AwsSourceError::NoCredentials {
            profile: "dev".into(),
            tried,
        }
        .to_string();
        let mut last = 0;
        for source in CredentialSource::CHAIN {
            let at = message
                .find(&format!("reason-{source:?}"))
                .unwrap_or_else(|| panic!("{source:?} missing:\n{message}"));
            assert!(at > last, "out of order:\n{message}");
            last = at;
        }
        for fix in [
            "AWS_ACCESS_KEY_ID",
            "--aws-profile",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "\"dev\"",
        ] {
            assert!(message.contains(fix), "{fix} missing:\n{message}");
        }
    }

    #[test]
    fn terse_reasons_are_explained_and_others_kept() {
        assert_eq!(
            explain_not_loaded(
                CredentialSource::Environment,
                "p",
                "environment variable not set"
            ),
            "AWS_ACCESS_KEY_ID is not set"
        );
        assert!(
            explain_not_loaded(CredentialSource::Profile, "dev", "not configured")
                .starts_with("no profile \"dev\" with credentials in ")
        );
        assert!(explain_not_loaded(
            CredentialSource::Container,
            "p",
            "ECS provider not configured"
        )
        .contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"));
        assert_eq!(
            explain_not_loaded(CredentialSource::InstanceMetadata, "p", "IMDS disabled"),
            "IMDS disabled"
        );
    }

    #[test]
    fn no_region_names_the_flag() {
        let message = AwsSourceError::NoRegion {
            profile: "default".into(),
            imds: "EC2 instance metadata".into(),
        }
        .to_string();
        assert!(message.contains("--aws-region"), "{message}");
        assert!(message.contains("AWS_DEFAULT_REGION"), "{message}");
    }

    #[test]
    fn only_network_and_throttling_failures_are_transient() {
        assert!(looks_transient(
            "dispatch failure: io error: connection refused"
        ));
        assert!(looks_transient("service error: Throttling: Rate exceeded"));
        assert!(looks_transient("IDPCommunicationError: try again"));
        assert!(!looks_transient(
            "service error: AccessDenied: not authorized to perform sts:AssumeRole"
        ));
        assert!(!looks_transient(
            "profile `x` did not contain credential information"
        ));
        let refused = AwsSourceError::AssumeRoleFailed {
            role: "arn:aws:iam::123456789012:role/r".into(),
            base: CredentialSource::Environment,
            cause: "AccessDenied".into(),
            transient: false,
        };
        assert!(!refused.is_transient());
        assert!(!AwsSourceError::NoRegion {
            profile: "p".into(),
            imds: "i".into()
        }
        .is_transient());
    }

    #[test]
    fn error_chain_drops_repeated_causes() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let err = E(
            "service error",
            Some(Box::new(E(
                "AccessDenied: no",
                Some(Box::new(E("AccessDenied: no", None))),
            ))),
        );
        assert_eq!(error_chain(&err), "service error: AccessDenied: no");
    }

    #[test]
    fn credentials_carry_their_expiry_and_debug_hides_secrets() {
        let expiry = std::time::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let credentials = Credentials::new(
            "AKIAEXAMPLE",
            "very-secret",
            Some("tok".into()),
            Some(expiry),
            "t",
        );
        let converted = into_aws_credentials(&credentials);
        assert_eq!(converted.access_key_id, "AKIAEXAMPLE");
        assert_eq!(converted.secret_access_key.expose(), "very-secret");
        assert_eq!(converted.session_token.as_ref().unwrap().expose(), "tok");
        assert_eq!(
            converted.expiration.unwrap().unix_timestamp(),
            1_900_000_000
        );
        assert!(!format!("{converted:?}").contains("very-secret"));
    }

    #[tokio::test]
    async fn an_explicit_region_needs_no_lookup_and_describe_is_stable() {
        let source = AwsIdentitySource::resolve(AwsSourceOptions {
            profile: Some("dev".into()),
            region: Some("eu-west-3".parse().unwrap()),
            assume_role: Some("arn:aws:iam::123456789012:role/deploy".into()),
            assume_role_session_name: None,
        })
        .await
        .unwrap();
        assert_eq!(source.region().as_str(), "eu-west-3");
        assert_eq!(
            source.describe(),
            "aws profile=dev region=eu-west-3 assume-role=arn:aws:iam::123456789012:role/deploy session=keyless"
        );
        assert_eq!(source.describe(), source.clone().describe());
        let debug = format!("{source:?}");
        assert!(
            debug.contains("eu-west-3") && debug.contains("dev"),
            "{debug}"
        );
    }
}
