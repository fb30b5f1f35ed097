//! `keyless gcp ...`: AWS → GCP. The workload's AWS identity becomes Google access tokens, ID
//! tokens, a child's environment, or an `external_account` file for the Google SDKs.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use time::OffsetDateTime;

use crate::audit::AuditContext;
use crate::cache::CredentialCache;
use crate::credentials::format_expiration;
use crate::credentials::GoogleAccessToken;
use crate::deliver::env;
use crate::deliver::external_account::{
    external_account_config, normalize_audience, ExternalAccountOptions, JwtCredentialSource,
};
use crate::deliver::record::DeliveryRecord;
use crate::deliver::server;
use crate::duration::Seconds;
use crate::exchange::google_iam::Impersonation;
use crate::exchange::google_sts::{CLOUD_PLATFORM_SCOPE, DEFAULT_TOKEN_URL};
use crate::refresh::gcp_cache::{self, CachedGcpToken, CachedIdToken, CachedSubject};
use crate::refresh::gcp_token::{
    default_token_audience, parse_token_source, FederatedSubject, GcpSubject, AWS_TOKEN_SOURCE,
};
use crate::refresh::GcpTokenProfile;
use crate::source::aws::{AwsIdentitySource, AwsSourceOptions};
use crate::source::google::DEFAULT_IAMCREDENTIALS_URL;
use crate::types::{TokenSourceSpec, UpstreamUrl};

/// The `gcp` subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum GcpCommand {
    /// Print a Google access token for this AWS identity (like `gcloud auth print-access-token`).
    #[command(
        after_help = "Example:\n  keyless gcp token --audience //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws \\\n    --service-account deployer@my-project.iam.gserviceaccount.com"
    )]
    Token(TokenArgs),
    /// Print a Google ID token for the service account (IAM Credentials generateIdToken).
    #[command(
        after_help = "Example:\n  keyless gcp id-token --audience //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws \\\n    --service-account deployer@my-project.iam.gserviceaccount.com --target-audience https://my-service-abc123-ew.a.run.app"
    )]
    IdToken(IdTokenArgs),
    /// Run a command with the access token in CLOUDSDK_AUTH_ACCESS_TOKEN and GOOGLE_OAUTH_ACCESS_TOKEN.
    #[command(
        after_help = "Example:\n  keyless gcp exec --audience //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws \\\n    --service-account deployer@my-project.iam.gserviceaccount.com -- gcloud storage ls"
    )]
    Exec(GcpExecArgs),
    /// Write an external_account credential configuration (what `gcloud iam workload-identity-pools create-cred-config --aws` writes).
    #[command(
        after_help = "Example:\n  keyless gcp config --audience //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws \\\n    --service-account deployer@my-project.iam.gserviceaccount.com --output gcp-credentials.json\n  export GOOGLE_APPLICATION_CREDENTIALS=$PWD/gcp-credentials.json"
    )]
    Config(ConfigArgs),
    /// Print the serialised, signed GetCallerIdentity request that proves the AWS identity.
    #[command(
        after_help = "Example (what Google STS receives as subject_token):\n  keyless gcp subject-token --audience //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws | jq ."
    )]
    SubjectToken(SubjectTokenArgs),
    /// Serve a GCE-metadata-compatible endpoint so unmodified Google SDKs and tools get tokens
    /// (set GCE_METADATA_HOST and GCE_METADATA_IP to the address it prints).
    #[command(
        after_help = "Readiness: once listening, it prints the export lines on standard output (and writes them\nto --ready-file, atomically, if given); nothing else goes to standard output.\n\nScopes: ?scopes= is served only within --scopes (short names such as devstorage.read_only\nmean https://www.googleapis.com/auth/devstorage.read_only; cloud-platform covers the Cloud APIs'\nown scopes); new scope sets and audiences beyond the first 8 and 16 come one per 15 s (429).\n\nExample:\n  keyless gcp serve --audience \"$PROVIDER\" --service-account sa@my-project.iam.gserviceaccount.com\n  # prints: export GCE_METADATA_HOST=127.0.0.1:PORT, GCE_METADATA_IP and GCE_METADATA_ROOT (gcloud) likewise"
    )]
    Serve(ServeArgs),
}

// The provider and the Google endpoints; shared by every `gcp` command.
#[derive(Debug, Args)]
pub struct ProviderArgs {
    /// The workload identity provider: //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER.
    #[arg(long, env = "KEYLESS_AUDIENCE")]
    pub audience: String,

    /// Google STS token endpoint (https://, or http:// to loopback only).
    #[arg(long, env = "KEYLESS_TOKEN_URL", default_value = DEFAULT_TOKEN_URL)]
    pub token_url: UpstreamUrl,

    /// IAM Credentials base URL (https://, or http:// to loopback only).
    #[arg(long, env = "KEYLESS_IAMCREDENTIALS_URL", default_value = DEFAULT_IAMCREDENTIALS_URL)]
    pub iamcredentials_url: UpstreamUrl,
}

/// `--token-source`'s help for `gcp`: the registry's JWT sources, and `aws`.
fn token_source_help() -> String {
    format!(
        "What Google STS is given: {} (an OIDC token, for an OIDC provider) | aws (the AWS \
         identity, as a signed GetCallerIdentity, for an AWS provider)",
        crate::source::registry::spellings().replace(", ", " | ")
    )
}

// Where the subject comes from: a JWT source, or the AWS identity (`aws`, the default).
#[derive(Debug, Args)]
pub struct SubjectArgs {
    #[arg(long, env = "KEYLESS_TOKEN_SOURCE", default_value = AWS_TOKEN_SOURCE,
          value_parser = parse_token_source, help = token_source_help())]
    pub token_source: TokenSourceSpec,

    /// The audience of the token a JWT source mints (default: https://iam.googleapis.com/
    /// followed by the provider's name, which a provider without allowedAudiences accepts).
    #[arg(long, env = "KEYLESS_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,

    #[command(flatten)]
    pub aws: AwsSourceArgs,
}

// Where the AWS identity comes from.
#[derive(Debug, Args)]
pub struct AwsSourceArgs {
    /// The AWS shared-config profile (default: AWS_PROFILE, else the SDK default chain).
    #[arg(long, env = "KEYLESS_AWS_PROFILE")]
    pub aws_profile: Option<String>,

    /// The AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile, instance metadata).
    #[arg(long, env = "KEYLESS_AWS_REGION")]
    pub aws_region: Option<crate::types::Region>,

    /// Assume this AWS role first and federate as it.
    #[arg(long, env = "KEYLESS_ASSUME_ROLE")]
    pub assume_role: Option<String>,
}

// What token to ask for.
#[derive(Debug, Args)]
pub struct TokenRequestArgs {
    #[command(flatten)]
    pub provider: ProviderArgs,

    #[command(flatten)]
    pub subject: SubjectArgs,

    /// Impersonate this service account (without it: the federated token itself).
    #[arg(long, env = "KEYLESS_SERVICE_ACCOUNT")]
    pub service_account: Option<String>,

    /// OAuth scopes, comma-separated.
    #[arg(long, env = "KEYLESS_SCOPES", value_delimiter = ',', default_value = CLOUD_PLATFORM_SCOPE)]
    pub scopes: Vec<String>,

    /// The service account token's lifetime, up to 12h, as 90s, 15m, 1h or plain seconds
    /// (above 1h needs the org policy
    /// constraints/iam.allowServiceAccountCredentialLifetimeExtension).
    #[arg(long, env = "KEYLESS_LIFETIME", value_name = "DUR",
          value_parser = Seconds::parser_within(1..=43200))]
    pub lifetime: Option<Seconds>,

    /// Delegation chain of service accounts, comma-separated, in order.
    #[arg(long, env = "KEYLESS_DELEGATES", value_delimiter = ',')]
    pub delegates: Vec<String>,

    /// Always exchange; neither read nor write the credential cache.
    #[arg(long, env = "KEYLESS_NO_CACHE")]
    pub no_cache: bool,

    #[command(flatten)]
    pub timeouts: crate::cli::TimeoutArgs,
}

/// How `gcp token` prints.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum TokenFormat {
    /// The access token alone.
    Token,
    /// Token, expiry, the AWS identity and federated principal, the service account.
    Json,
    /// `export CLOUDSDK_AUTH_ACCESS_TOKEN=... GOOGLE_OAUTH_ACCESS_TOKEN=...` lines.
    Env,
}

// `keyless gcp token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub request: TokenRequestArgs,

    /// Output format.
    #[arg(long, value_enum, env = "KEYLESS_FORMAT", default_value_t = TokenFormat::Token)]
    pub format: TokenFormat,
}

// `keyless gcp id-token`.
#[derive(Debug, Args)]
pub struct IdTokenArgs {
    #[command(flatten)]
    pub request: TokenRequestArgs,

    /// The `aud` of the ID token (e.g. a Cloud Run URL).
    #[arg(long, env = "KEYLESS_TARGET_AUDIENCE")]
    pub target_audience: String,
}

// `keyless gcp exec`.
#[derive(Debug, Args)]
pub struct GcpExecArgs {
    #[command(flatten)]
    pub request: TokenRequestArgs,

    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

// `keyless gcp config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub provider: ProviderArgs,

    /// Where the SDKs find the subject: aws (their own AWS support) or a JWT source (its token
    /// file: file:PATH and k8s[:PATH] name one; github: its token service's URL; for the
    /// others, --token-file).
    #[arg(long, env = "KEYLESS_TOKEN_SOURCE", default_value = AWS_TOKEN_SOURCE,
          value_parser = parse_token_source)]
    pub token_source: TokenSourceSpec,

    /// The audience the SDKs ask GitHub's token service for (default: https://iam.googleapis.com/
    /// followed by the provider's name).
    #[arg(long, env = "KEYLESS_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,

    /// For a JWT source that is not a file: the token file the SDKs read, which keyless keeps
    /// fresh (e.g. `keyless aws token-file --path FILE --token-source SRC --audience AUD`).
    #[arg(long, env = "KEYLESS_TOKEN_FILE_PATH")]
    pub token_file: Option<PathBuf>,

    /// The service account the SDKs impersonate.
    #[arg(long, env = "KEYLESS_SERVICE_ACCOUNT")]
    pub service_account: Option<String>,

    /// `service_account_impersonation.token_lifetime_seconds`: 10m to 12h, as 600s, 15m, 1h
    /// or plain seconds.
    #[arg(long, env = "KEYLESS_LIFETIME", value_name = "DUR",
          value_parser = Seconds::parser_within(600..=43200))]
    pub lifetime: Option<Seconds>,

    /// Have the SDKs use an IMDSv2 session token on EC2.
    #[arg(long, env = "KEYLESS_ENABLE_IMDSV2")]
    pub enable_imdsv2: bool,

    /// Write here (0600, atomically) instead of standard output.
    #[arg(long, env = "KEYLESS_OUTPUT")]
    pub output: Option<PathBuf>,
}

// `keyless gcp subject-token`.
#[derive(Debug, Args)]
pub struct SubjectTokenArgs {
    /// The workload identity provider the token is bound to.
    #[arg(long, env = "KEYLESS_AUDIENCE")]
    pub audience: String,

    #[command(flatten)]
    pub subject: SubjectArgs,

    /// IAM Credentials base URL, for impersonate: (https://, or http:// to loopback only).
    #[arg(long, env = "KEYLESS_IAMCREDENTIALS_URL", default_value = DEFAULT_IAMCREDENTIALS_URL)]
    pub iamcredentials_url: UpstreamUrl,
}

// `keyless gcp serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub request: TokenRequestArgs,

    /// What project/project-id answers (default: PROJECT of --service-account
    /// NAME@PROJECT.iam.gserviceaccount.com; without either, 404).
    #[arg(long, env = "KEYLESS_PROJECT_ID")]
    pub project_id: Option<String>,

    /// What project/numeric-project-id answers (default: the number in --audience).
    #[arg(long, env = "KEYLESS_PROJECT_NUMBER")]
    pub project_number: Option<String>,

    /// Address of the metadata endpoint (port 0: any free port; the real one is printed).
    #[arg(long, env = "KEYLESS_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: String,

    /// Serve /healthz and /metrics on this address too.
    #[arg(long, env = "KEYLESS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Once listening, write the export lines here (atomically: the file appears complete or not
    /// at all), so a supervisor or a script can wait for it; removed on shutdown.
    #[arg(long, env = "KEYLESS_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    #[command(flatten)]
    pub access: super::AccessArgs,
}

/// Runs a `gcp` subcommand.
pub async fn run(command: GcpCommand) -> anyhow::Result<i32> {
    // Built on first use: a `gcp token` answered from the cache never starts TLS.
    let http = crate::wire::http::LazyClient::default();
    match command {
        GcpCommand::Token(args) => {
            let mut profile = profile_from_args(&args.request).await?;
            profile.audit = AuditContext::new(None, "token");
            let json = args.format == TokenFormat::Json;
            let token = obtain_token(&http, &profile, args.request.no_cache, json).await?;
            let text = match args.format {
                TokenFormat::Token => format!("{}\n", token.token.access_token.expose()),
                TokenFormat::Env => env::export_lines(&google_env_vars(&token.token)),
                TokenFormat::Json => {
                    serde_json::to_string_pretty(&token_json(&token, &profile))? + "\n"
                }
            };
            write_stdout(&text)?;
            delivered(&token, "stdout", super::aws::format_name(args.format));
            Ok(0)
        }
        GcpCommand::IdToken(args) => {
            let mut profile = profile_from_args(&args.request).await?;
            profile.audit = AuditContext::new(None, "id-token");
            let token = obtain_id_token(
                &http,
                &profile,
                &args.target_audience,
                args.request.no_cache,
            )
            .await?;
            write_stdout(&format!("{}\n", token.token.expose()))?;
            DeliveryRecord {
                channel: "stdout",
                destination: format!("id-token for {}", args.target_audience),
                credential: profile
                    .impersonation
                    .as_ref()
                    .map(|i| i.service_account.clone())
                    .unwrap_or_default(),
                expires_at: Some(token.expires_at),
            }
            .log();
            Ok(0)
        }
        GcpCommand::Exec(args) => {
            let mut profile = profile_from_args(&args.request).await?;
            profile.audit = AuditContext::new(None, "exec");
            let token = obtain_token(&http, &profile, args.request.no_cache, false).await?;
            let program = args
                .command
                .first()
                .map(|c| c.to_string_lossy().into_owned());
            delivered(&token, "exec", program.unwrap_or_default());
            Ok(env::exec_with_env(
                &args.command,
                &google_env_vars(&token.token),
            )?)
        }
        GcpCommand::Config(args) => {
            let config = external_account_config(&ExternalAccountOptions {
                audience: args.provider.audience.clone(),
                service_account: args.service_account.clone(),
                token_lifetime_seconds: args.lifetime.map(Seconds::as_secs_u32),
                enable_imdsv2: args.enable_imdsv2,
                token_url: Some(args.provider.token_url.to_string()),
                iamcredentials_url: Some(args.provider.iamcredentials_url.to_string()),
                jwt_source: config_jwt_source(&args, |name| std::env::var(name).ok())?,
            });
            let text = serde_json::to_string_pretty(&config)? + "\n";
            match &args.output {
                Some(path) => {
                    crate::private_file::write_private_file_atomically(path, text.as_bytes())
                        .with_context(|| format!("could not write {}", path.display()))?;
                    eprintln!(
                        "wrote the external_account configuration to {}",
                        path.display()
                    );
                    eprintln!(
                        "  use it with: export GOOGLE_APPLICATION_CREDENTIALS={}",
                        path.display()
                    );
                }
                None => write_stdout(&text)?,
            }
            Ok(0)
        }
        GcpCommand::SubjectToken(args) => {
            let audience = normalize_audience(&args.audience);
            let subject =
                subject_from_args(&args.subject, &audience, &args.iamcredentials_url).await?;
            let token = match &subject {
                GcpSubject::Aws(aws) => {
                    let credentials = aws.fetch_credentials().await?;
                    crate::exchange::google_sts::build_subject_token(
                        &credentials,
                        aws.region(),
                        &audience,
                        std::time::SystemTime::now(),
                    )?
                    .secret()
                    .clone()
                }
                GcpSubject::Jwt { source, audience } => source
                    .fetch_for(http_client(&http)?, audience)
                    .await
                    .map_err(|error| crate::refresh::GcpFlowError::TokenSource {
                        origin: source.describe(),
                        error,
                    })?
                    .secret()
                    .clone(),
            };
            write_stdout(&format!("{}\n", token.expose()))?;
            Ok(0)
        }
        GcpCommand::Serve(args) => serve(args, http_client(&http)?.clone()).await,
    }
}

fn http_client(http: &crate::wire::http::LazyClient) -> anyhow::Result<&reqwest::Client> {
    http.get().context("could not start the HTTP client")
}

/// The user's `gcp` cache, unless `--no-cache`; a cache that cannot be found is reported and
/// the call goes on without one.
fn user_cache(no_cache: bool) -> Option<CredentialCache> {
    if no_cache {
        return None;
    }
    CredentialCache::user_default("gcp")
        .inspect_err(|e| tracing::warn!("{e}; continuing without a cache"))
        .ok()
}

/// The access token through the cache ([`crate::refresh::gcp_cache`]); the HTTP client is
/// built only when the cache cannot answer. `identity`: `--format json` names the AWS caller's
/// ARN, which a fresh exchange does not learn: it is asked of STS once and kept in the entry,
/// so a hit prints what a miss does.
async fn obtain_token(
    http: &crate::wire::http::LazyClient,
    profile: &GcpTokenProfile,
    no_cache: bool,
    identity: bool,
) -> anyhow::Result<CachedGcpToken> {
    let cache = user_cache(no_cache);
    // Taken before the exchange: the entry is stored under the identity asked for.
    let key = cache.as_ref().and_then(|_| profile.token_cache_key());
    let cached = match (&cache, &key) {
        (Some(cache), Some(key)) => profile.load_cached_token(cache, key),
        _ => None,
    };
    let (mut token, fresh_credentials, mut changed) = match cached {
        Some(hit) => (hit, None, false),
        None => {
            let fresh = profile.fetch(http_client(http)?).await?;
            let credentials = match &fresh.subject {
                FederatedSubject::Aws(credentials) => Some(credentials.clone()),
                FederatedSubject::Jwt(_) => None,
            };
            (CachedGcpToken::from_fresh(&fresh), credentials, true)
        }
    };
    let arn_unknown = matches!(token.subject, CachedSubject::Aws { caller_arn: None });
    if let (true, true, GcpSubject::Aws(aws)) = (identity, arn_unknown, &profile.subject) {
        // A hit stored by a run that did not print JSON: the credentials are asked again
        // (locally, for most sources), then STS once.
        let credentials = match fresh_credentials {
            Some(credentials) => Some(credentials),
            None => aws.fetch_credentials().await.ok(),
        };
        if let Some(credentials) = credentials {
            let arn = profile.caller_arn(http_client(http)?, &credentials).await;
            changed |= arn.is_some();
            token.subject = CachedSubject::Aws { caller_arn: arn };
        }
    }
    if let (Some(cache), Some(key), true) = (&cache, &key, changed) {
        gcp_cache::store(cache, key, &token);
    }
    Ok(token)
}

/// The ID token for `target_audience` through the cache, as [`obtain_token`].
async fn obtain_id_token(
    http: &crate::wire::http::LazyClient,
    profile: &GcpTokenProfile,
    target_audience: &str,
    no_cache: bool,
) -> anyhow::Result<CachedIdToken> {
    let cache = user_cache(no_cache);
    let key = cache
        .as_ref()
        .and_then(|_| profile.id_token_cache_key(target_audience));
    if let (Some(cache), Some(key)) = (&cache, &key) {
        if let Some(hit) = profile.load_cached_id_token(cache, key) {
            return Ok(hit);
        }
    }
    let token = profile
        .fetch_id_token(http_client(http)?, target_audience)
        .await?;
    let expires_at = crate::source::IdToken::parse(token.clone(), "generateIdToken")
        .ok()
        .map(|t| t.claims().expires_at());
    let token = CachedIdToken {
        token,
        // An ID token whose end cannot be read is handed out but never cached.
        expires_at: expires_at.unwrap_or(OffsetDateTime::UNIX_EPOCH),
    };
    if let (Some(cache), Some(key), Some(_)) = (&cache, &key, expires_at) {
        gcp_cache::store(cache, key, &token);
    }
    Ok(token)
}

/// `keyless gcp serve`: bind, announce, serve until SIGTERM/SIGINT.
async fn serve(args: ServeArgs, http: reqwest::Client) -> anyhow::Result<i32> {
    use crate::deliver::gce_metadata_server::{GceMetadataOptions, GceMetadataServer};

    let mut profile = profile_from_args(&args.request).await?;
    profile.audit = AuditContext::new(None, "serve:gce");
    let endpoint = GceMetadataServer::new(
        profile,
        GceMetadataOptions {
            project_id: args.project_id.clone(),
            project_number: args.project_number.clone(),
            profile_name: None,
        },
        http,
    );
    let access = args.access.access();
    let listener = server::bind(&args.listen, server::Endpoint::GceMetadata, &access).await?;
    let addr = listener
        .local_addr()
        .context("could not read the address the metadata endpoint listens on")?;
    let metrics_listener = match &args.metrics_listen {
        Some(metrics_addr) => {
            Some(server::bind(metrics_addr, server::Endpoint::Metrics, &access).await?)
        }
        None => None,
    };
    if metrics_listener.is_some() {
        // `/healthz` is 200 once a token is held: fetch the default one now (not on the first
        // request), and keep it fresh.
        endpoint.warm();
    }
    // Before announcing: whoever reads the announcement may stop us at once.
    let signal = server::shutdown_signal();
    let mut announcement = metadata_env_announcement(server::reachable(addr));
    if let Some(metrics_addr) = metrics_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        announcement.push_str(&format!("# /healthz and /metrics: http://{metrics_addr}\n"));
    }
    if let Some(path) = &args.ready_file {
        crate::private_file::write_private_file_atomically(path, announcement.as_bytes())
            .with_context(|| format!("could not write the ready file {}", path.display()))?;
    }
    write_stdout(&announcement)?;
    std::io::stdout()
        .flush()
        .context("could not write to stdout")?;
    tracing::info!(
        %addr,
        project_id = endpoint.project_id().unwrap_or("(unknown)"),
        "GCE metadata endpoint listening"
    );

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::spawn(async move {
        signal.await;
        let _ = stop.send(true);
    });
    let metrics = metrics_listener.map(|listener| {
        let router = endpoint.metrics().router();
        tokio::spawn(server::serve(
            listener,
            router,
            until_stopped(stopped.clone()),
        ))
    });
    let served = server::serve(listener, endpoint.router(), until_stopped(stopped)).await;
    if let Some(metrics) = metrics {
        metrics.await.context("the metrics server failed")??;
    }
    if let Some(path) = &args.ready_file {
        let _ = std::fs::remove_file(path);
    }
    served?;
    Ok(0)
}

/// What `gcp serve` prints once listening: sourceable lines for both variables, because
/// google-auth-python detects GCE by pinging GCE_METADATA_IP, then asks GCE_METADATA_HOST.
pub fn metadata_env_announcement(addr: std::net::SocketAddr) -> String {
    let value = addr.to_string();
    format!(
        "# google-auth-python detects GCE by pinging GCE_METADATA_IP, then reads GCE_METADATA_HOST: set both (gcloud reads GCE_METADATA_ROOT).\n{}",
        env::export_lines(&[
            ("GCE_METADATA_HOST".to_string(), value.clone()),
            ("GCE_METADATA_IP".to_string(), value.clone()),
            ("GCE_METADATA_ROOT".to_string(), value),
        ])
    )
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("could not write to stdout")
}

async fn aws_source(args: &AwsSourceArgs) -> anyhow::Result<AwsIdentitySource> {
    Ok(AwsIdentitySource::resolve(AwsSourceOptions {
        profile: args.aws_profile.clone(),
        region: args.aws_region.clone(),
        assume_role: args.assume_role.clone(),
        assume_role_session_name: None,
    })
    .await?)
}

/// Flags that do not go together: a usage error (exit 2).
fn invalid(message: String) -> anyhow::Error {
    crate::refresh::GcpFlowError::InvalidSettings(message).into()
}

/// Where an `external_account` configuration for a JWT source has the SDKs read the token:
/// `--token-file`, else the file a `file:PATH` or `k8s:PATH` source reads, else for `github`
/// the job's token service (as google-github-actions/auth configures it); `None` for the AWS
/// provider. `env` reads the environment.
fn config_jwt_source(
    args: &ConfigArgs,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<JwtCredentialSource>> {
    let spec = &args.token_source;
    if spec.name() == AWS_TOKEN_SOURCE {
        if args.token_file.is_some() || args.token_audience.is_some() {
            return Err(invalid(
                "--token-file and --token-audience apply to a JWT source (--token-source \
                 file:PATH, k8s, github...); with --token-source aws the SDKs prove the AWS \
                 identity themselves"
                    .into(),
            ));
        }
        return Ok(None);
    }
    if args.enable_imdsv2 {
        return Err(invalid(format!(
            "--enable-imdsv2 applies to --token-source aws, not to {spec}"
        )));
    }
    let provider = normalize_audience(&args.provider.audience);
    let audience = args
        .token_audience
        .clone()
        .unwrap_or_else(|| default_token_audience(&provider));
    let path = match (&args.token_file, spec.name(), spec.argument()) {
        (Some(path), _, _) => path.clone(),
        (None, "file" | "k8s", Some(path)) => PathBuf::from(path),
        (None, "github", None) => return github_token_service(&audience, env).map(Some),
        _ => {
            return Err(invalid(format!(
                "the SDKs read an OIDC token from a file, and {spec} is not one: pass --token-file \
                 FILE and keep FILE fresh with `keyless aws token-file --path FILE --token-source \
                 {spec} --audience {audience}`"
            )))
        }
    };
    Ok(Some(JwtCredentialSource::File(
        std::path::absolute(&path).unwrap_or(path),
    )))
}

/// GitHub Actions' token service as a `url` credential source: the job's
/// `ACTIONS_ID_TOKEN_REQUEST_URL` with `&audience=`, its bearer token as a header (a secret in
/// the written file, valid for the job only), the JWT in the answer's `value`.
fn github_token_service(
    audience: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<JwtCredentialSource> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let (Some(url), Some(token)) = (
        var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) else {
        return Err(invalid(
            "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: run \
             this in a GitHub Actions job with `permissions: id-token: write`, or pass \
             --token-file FILE"
                .into(),
        ));
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let audience: String = url::form_urlencoded::byte_serialize(audience.as_bytes()).collect();
    Ok(JwtCredentialSource::Url {
        url: format!("{url}{separator}audience={audience}"),
        headers: std::collections::BTreeMap::from([(
            "Authorization".to_string(),
            crate::secret::Secret::new(format!("Bearer {token}")),
        )]),
        subject_token_field_name: "value".to_string(),
    })
}

/// The subject `--token-source` names for the provider `audience` (normalised): the AWS
/// identity, or a JWT source minting for `--token-audience` (default: the provider's
/// `https://iam.googleapis.com/...` name).
pub async fn subject_from_args(
    args: &SubjectArgs,
    audience: &str,
    iamcredentials_url: &UpstreamUrl,
) -> anyhow::Result<GcpSubject> {
    if args.token_source.name() == AWS_TOKEN_SOURCE {
        if args.token_audience.is_some() {
            return Err(invalid(
                "--token-audience applies to a JWT source; the AWS identity is bound to --audience itself".into(),
            ));
        }
        return Ok(GcpSubject::Aws(aws_source(&args.aws).await?));
    }
    // aws-oidc asks STS for its token as the AWS identity these flags name.
    let signs_with_aws = args.token_source.name() == crate::source::aws_oidc::AWS_OIDC.name;
    if !signs_with_aws
        && (args.aws.aws_profile.is_some()
            || args.aws.aws_region.is_some()
            || args.aws.assume_role.is_some())
    {
        return Err(invalid(format!(
            "--aws-profile, --aws-region and --assume-role apply to --token-source aws and aws-oidc, not to {}",
            args.token_source
        )));
    }
    let source = crate::source::registry::build(
        &args.token_source,
        &crate::source::SourceContext {
            iamcredentials_url: Some(iamcredentials_url.clone()),
            aws: AwsSourceOptions {
                profile: args.aws.aws_profile.clone(),
                region: args.aws.aws_region.clone(),
                assume_role: args.aws.assume_role.clone(),
                assume_role_session_name: None,
            },
            ..crate::source::SourceContext::default()
        },
    )?;
    Ok(GcpSubject::Jwt {
        source,
        audience: args
            .token_audience
            .clone()
            .unwrap_or_else(|| default_token_audience(audience)),
    })
}

/// Turns flags into a [`GcpTokenProfile`].
pub async fn profile_from_args(args: &TokenRequestArgs) -> anyhow::Result<GcpTokenProfile> {
    anyhow::ensure!(
        args.service_account.is_some() || (args.lifetime.is_none() && args.delegates.is_empty()),
        "--lifetime and --delegates apply to service account impersonation: add --service-account"
    );
    let audience = normalize_audience(&args.provider.audience);
    Ok(GcpTokenProfile {
        audit: Default::default(),
        subject: subject_from_args(&args.subject, &audience, &args.provider.iamcredentials_url)
            .await?,
        audience,
        scopes: args.scopes.clone(),
        token_url: args.provider.token_url.clone(),
        iamcredentials_url: args.provider.iamcredentials_url.clone(),
        impersonation: args.service_account.as_ref().map(|sa| Impersonation {
            service_account: sa.clone(),
            scopes: args.scopes.clone(),
            lifetime: args.lifetime.map(Seconds::as_secs_u32),
            delegates: args.delegates.clone(),
        }),
        retry: args.timeouts.retry_policy(),
    })
}

/// The variables gcloud and the Google SDKs read an access token from.
/// Logs the hand-over of `token` (one info line; see [`DeliveryRecord`]).
fn delivered(token: &CachedGcpToken, channel: &'static str, destination: String) {
    DeliveryRecord {
        channel,
        destination,
        credential: token
            .service_account
            .clone()
            .unwrap_or_else(|| "federated token".into()),
        expires_at: Some(token.token.expires_at),
    }
    .log();
}

pub fn google_env_vars(token: &GoogleAccessToken) -> Vec<(String, String)> {
    let value = token.access_token.expose().to_string();
    vec![
        ("CLOUDSDK_AUTH_ACCESS_TOKEN".into(), value.clone()),
        ("GOOGLE_OAUTH_ACCESS_TOKEN".into(), value),
    ]
}

fn token_json(token: &CachedGcpToken, profile: &GcpTokenProfile) -> serde_json::Value {
    let subject = match &token.subject {
        CachedSubject::Aws { caller_arn } => caller_arn.as_deref(),
        CachedSubject::Jwt { sub, .. } => Some(sub.as_str()),
    };
    let expires_in = (token.token.expires_at - OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0);
    // With the providers' default mappings, google.subject is the caller's ARN (AWS) or the
    // token's sub (OIDC).
    let pool = profile
        .audience
        .trim_start_matches("//iam.googleapis.com/")
        .split("/providers/")
        .next()
        .unwrap_or_default()
        .to_string();
    let principal =
        subject.map(|subject| format!("principal://iam.googleapis.com/{pool}/subject/{subject}"));
    let (aws_identity, token_identity) = match &token.subject {
        CachedSubject::Aws { .. } => (subject, None),
        CachedSubject::Jwt { iss, sub } => (None, Some(format!("iss={iss} sub={sub}"))),
    };
    serde_json::json!({
        "access_token": token.token.access_token.expose(),
        "token_type": "Bearer",
        "expires_at": format_expiration(token.token.expires_at),
        "expires_in": expires_in,
        "aws_identity": aws_identity,
        "token_identity": token_identity,
        "federated_principal": principal,
        "service_account": token.service_account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Config {
        #[command(flatten)]
        args: ConfigArgs,
    }

    fn config_args(extra: &[&str]) -> ConfigArgs {
        let mut argv = vec![
            "config",
            "--audience",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/gh",
        ];
        argv.extend_from_slice(extra);
        Config::try_parse_from(argv).unwrap().args
    }

    /// `github` (registered by its source) points the SDKs at the job's token service, as
    /// google-github-actions/auth does; without the job's variables it says what is missing.
    #[test]
    fn a_github_config_reads_the_jobs_token_service() {
        let mut args = config_args(&[]);
        args.token_source = TokenSourceSpec::new("github", None).unwrap();
        let env = |name: &str| match name {
            "ACTIONS_ID_TOKEN_REQUEST_URL" => {
                Some("https://pipelines.example/token?api-version=2.0".to_string())
            }
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN" => Some("request-token".to_string()),
            _ => None,
        };
        let Some(JwtCredentialSource::Url {
            url,
            headers,
            subject_token_field_name,
        }) = config_jwt_source(&args, env).unwrap()
        else {
            panic!("a url source");
        };
        assert_eq!(
            url,
            "https://pipelines.example/token?api-version=2.0&audience=https%3A%2F%2Fiam.googleapis.com%2Fprojects%2F1%2Flocations%2Fglobal%2FworkloadIdentityPools%2Fp%2Fproviders%2Fgh"
        );
        assert_eq!(headers["Authorization"].expose(), "Bearer request-token");
        assert_eq!(subject_token_field_name, "value");
        let error = config_jwt_source(&args, |_| None).unwrap_err().to_string();
        assert!(error.contains("permissions: id-token: write"), "{error}");

        // --token-file wins; file: names its own file; aws takes neither.
        args.token_file = Some("/run/gh.jwt".into());
        assert!(matches!(
            config_jwt_source(&args, env).unwrap(),
            Some(JwtCredentialSource::File(p)) if p == std::path::Path::new("/run/gh.jwt")
        ));
        let args = config_args(&["--token-source", "file:/t.jwt"]);
        assert!(matches!(
            config_jwt_source(&args, env).unwrap(),
            Some(JwtCredentialSource::File(p)) if p == std::path::Path::new("/t.jwt")
        ));
        let args = config_args(&["--token-file", "/t.jwt"]);
        assert!(config_jwt_source(&args, env).is_err());
        assert!(config_jwt_source(&config_args(&[]), env).unwrap().is_none());
    }
}
