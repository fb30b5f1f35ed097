//! `keyless aws ...`: GCP → AWS. A Google identity becomes AWS credentials, delivered as
//! `credential_process` JSON, shell variables, a child's environment or a profile, or kept fresh
//! for long-running programs on a local ECS- or IMDS-style endpoint or in a web-identity token file.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::audit::AuditContext;
use crate::cache::CredentialCache;
use crate::credentials::AwsCredentials;
use crate::deliver::imds_server::{self, InstanceIdentity};
use crate::deliver::metrics::MetricsRegistry;
use crate::deliver::record::DeliveryRecord;
use crate::deliver::token_file::TokenFileKeeper;
use crate::deliver::{aws_files, credential_process, ecs_server, env, server};
use crate::duration::Seconds;
use crate::exchange::aws_chain::RoleChain;
use crate::exchange::aws_sts::{
    fetch_caller_identity, AssumedRole, RoleArn, SessionName, StsEndpoint, WebIdentityRequest,
};
use crate::private_file::write_private_file_atomically;
use crate::refresh::{
    AwsRoleProfile, AwsRoleUpstream, Clock, GoogleIdTokenUpstream, RefreshPolicy, Refresher,
};
use crate::secret::Secret;
use crate::source::aws::AwsSourceOptions;
use crate::source::google::DEFAULT_AWS_AUDIENCE;
use crate::source::registry::SourceContext;
use crate::types::{
    ExternalId, Region, SessionTag, SourceIdentity, SpecError, TagKey, TokenSourceSpec, UpstreamUrl,
};

/// The `aws` subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum AwsCommand {
    /// Print AWS credentials (credential_process JSON by default) for a role trusted by this
    /// Google identity.
    #[command(
        after_help = "Example, in ~/.aws/config:\n  [profile deploy]\n  credential_process = keyless aws credentials --role-arn arn:aws:iam::123456789012:role/DeploymentRole"
    )]
    Credentials(CredentialsArgs),
    /// Run a command with the role's credentials in its environment.
    #[command(
        after_help = "Example:\n  keyless aws exec --role-arn arn:aws:iam::123456789012:role/DeploymentRole -- aws s3 ls"
    )]
    Exec(ExecArgs),
    /// Write the role's credentials into a profile of the shared credentials file.
    #[command(
        after_help = "Example:\n  keyless aws write-profile --role-arn arn:aws:iam::123456789012:role/DeploymentRole --profile deploy\n  aws --profile deploy s3 ls"
    )]
    WriteProfile(WriteProfileArgs),
    /// Show who a set of AWS credentials is (STS GetCallerIdentity), like `aws sts get-caller-identity`.
    #[command(
        after_help = "Examples:\n  keyless aws whoami --role-arn arn:aws:iam::123456789012:role/DeploymentRole   # the session keyless gets\n  keyless aws whoami --profile deploy   # the keys in ~/.aws/credentials\n  keyless aws whoami                    # AWS_ACCESS_KEY_ID and friends"
    )]
    Whoami(WhoamiArgs),
    /// Serve the role's credentials, kept fresh, on a local ECS-style container endpoint (or an
    /// IMDSv2-style one with --imds) until SIGTERM/SIGINT; prints the `export` lines that point
    /// the SDKs at it once it is listening.
    #[command(
        after_help = "Example (the ready file holds the authorization token: it is written 0600):\n  \
                      keyless aws serve --role-arn arn:aws:iam::123456789012:role/DeploymentRole \\\n    \
                      --ready-file keyless.env > /dev/null &\n  \
                      until [ -e keyless.env ]; do sleep 0.2; done   # written whole, once listening\n  \
                      . ./keyless.env && aws s3 ls\n\n\
                      Output (stdout, after binding; nothing else is printed there):\n  \
                      export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:PORT/creds\n  \
                      export AWS_CONTAINER_AUTHORIZATION_TOKEN=...      (or ..._TOKEN_FILE=PATH with --auth-token-file)\n  \
                      with --imds instead: export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:PORT/\n  \
                      with --metrics-listen also: # metrics: http://ADDR/metrics http://ADDR/healthz"
    )]
    Serve(ServeArgs),
    /// Keep a Google ID token fresh in a file for the SDKs' own web-identity support
    /// (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), until SIGTERM/SIGINT.
    #[command(
        after_help = "Example:\n  keyless aws token-file --path /run/keyless/token --role-arn arn:aws:iam::123456789012:role/DeploymentRole\n\n\
                      The first token is written before the export lines are printed; a source that cannot\n\
                      give one makes the command fail at once. Later failures are logged and retried while\n\
                      the file keeps its still-valid token."
    )]
    TokenFile(TokenFileArgs),
}

/// `--token-source`'s help, from the registry: a new source shows up without editing it.
fn token_source_help() -> String {
    format!(
        "Where the subject token comes from: {}",
        crate::source::registry::spellings().replace(", ", " | ")
    )
}

// How to obtain the token and what to ask STS for; shared by every `aws` command.
#[derive(Debug, Args)]
pub struct ExchangeArgs {
    /// The audience of the Google ID token (what the role's trust policy calls accounts.google.com:oaud).
    #[arg(long, env = "KEYLESS_AUDIENCE", default_value = DEFAULT_AWS_AUDIENCE)]
    pub audience: String,

    #[arg(long, env = "KEYLESS_TOKEN_SOURCE", default_value = "metadata",
          value_parser = crate::source::registry::parse, help = token_source_help())]
    pub token_source: TokenSourceSpec,

    /// The role session name (shows in CloudTrail; one over 64 characters is shortened in the
    /// middle); default: the token's email local part @ host name.
    #[arg(long, env = "KEYLESS_SESSION_NAME")]
    pub session_name: Option<String>,

    /// How long the credentials last: 15m to 12h, as 900s, 15m, 1h, 1h30m or plain seconds
    /// (the role's maximum applies).
    #[arg(long, env = "KEYLESS_DURATION", value_name = "DUR",
          value_parser = Seconds::parser_within(900..=43200))]
    pub duration: Option<Seconds>,

    /// The AWS region: picks the regional STS endpoint (default: AWS_REGION, AWS_DEFAULT_REGION, else global).
    #[arg(long, env = "KEYLESS_REGION")]
    pub region: Option<Region>,

    /// A JSON session policy file that narrows the role's permissions.
    #[arg(long, env = "KEYLESS_POLICY")]
    pub policy: Option<PathBuf>,

    /// A managed policy ARN that narrows the role's permissions (repeatable, up to 10).
    #[arg(
        long = "policy-arn",
        env = "KEYLESS_POLICY_ARNS",
        value_delimiter = ','
    )]
    pub policy_arns: Vec<String>,

    #[command(flatten)]
    pub chain: Box<ChainArgs>,

    /// IAM Credentials base URL, for impersonate: (default https://iamcredentials.googleapis.com).
    #[arg(long, env = "KEYLESS_IAMCREDENTIALS_URL")]
    pub iamcredentials_url: Option<UpstreamUrl>,

    /// AWS STS endpoint URL (default: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else by region);
    /// https://, or http:// to loopback only.
    #[arg(long, env = "KEYLESS_STS_ENDPOINT")]
    pub sts_endpoint: Option<UpstreamUrl>,

    /// Always exchange; neither read nor write the credential cache.
    #[arg(long, env = "KEYLESS_NO_CACHE")]
    pub no_cache: bool,

    #[command(flatten)]
    pub timeouts: crate::cli::TimeoutArgs,
}

// Roles to assume after the first one (`--chain-role`) and what to send with them; boxed in
// [`ExchangeArgs`] to keep the command enums small.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// Then assume this role with the previous role's credentials (STS AssumeRole); repeatable,
    /// in order; the credentials handed out are the last role's. AWS limits a chained session
    /// to 1 hour.
    #[arg(long = "chain-role", env = "KEYLESS_CHAIN_ROLE", value_name = "ARN",
          value_parser = RoleArn::parse)]
    pub chain_roles: Vec<RoleArn>,

    /// The ExternalId the --chain-role roles require (their trust policy's sts:ExternalId).
    #[arg(long, env = "KEYLESS_EXTERNAL_ID", value_name = "ID")]
    pub external_id: Option<ExternalId>,

    /// A source identity set on the first --chain-role session; AWS keeps it on every later
    /// session and in CloudTrail (needs sts:SetSourceIdentity).
    #[arg(long, env = "KEYLESS_SOURCE_IDENTITY", value_name = "ID")]
    pub source_identity: Option<SourceIdentity>,

    /// A session tag for the --chain-role sessions (repeatable; aws:PrincipalTag/K in
    /// policies; needs sts:TagSession).
    #[arg(
        long = "tag",
        env = "KEYLESS_TAGS",
        value_name = "K=V",
        value_delimiter = ','
    )]
    pub tags: Vec<SessionTag>,

    /// Make the tag with this key transitive: set on the first --chain-role session, AWS
    /// carries it to the later ones (repeatable).
    #[arg(
        long = "transitive-tag-key",
        env = "KEYLESS_TRANSITIVE_TAG_KEYS",
        value_name = "K",
        value_delimiter = ','
    )]
    pub transitive_tag_keys: Vec<TagKey>,
}

// A role to assume plus how.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// The AWS role to assume.
    #[arg(long, env = "KEYLESS_ROLE_ARN")]
    pub role_arn: String,

    #[command(flatten)]
    pub exchange: ExchangeArgs,
}

/// What `credentials` prints.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// credential_process JSON (Version 1).
    CredentialProcess,
    /// `export AWS_...=` lines for eval.
    Env,
    /// The full STS answer, as `aws sts assume-role-with-web-identity` prints it.
    Json,
}

// `keyless aws credentials`.
#[derive(Debug, Args)]
pub struct CredentialsArgs {
    #[command(flatten)]
    pub role: RoleArgs,

    /// Output format.
    #[arg(long, value_enum, env = "KEYLESS_FORMAT", default_value_t = OutputFormat::CredentialProcess)]
    pub format: OutputFormat,
}

// `keyless aws exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub role: RoleArgs,

    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

// `keyless aws write-profile`.
#[derive(Debug, Args)]
pub struct WriteProfileArgs {
    #[command(flatten)]
    pub role: RoleArgs,

    /// The profile to write (other profiles are left byte for byte as they are).
    #[arg(long, env = "KEYLESS_PROFILE")]
    pub profile: String,

    /// The credentials file (default: AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials).
    #[arg(long, env = "KEYLESS_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
}

// `keyless aws whoami`.
#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// Assume this role first and show who that makes us (otherwise: ambient credentials).
    #[arg(long, env = "KEYLESS_ROLE_ARN")]
    pub role_arn: Option<String>,

    /// Use this profile of the shared credentials file instead of the environment.
    #[arg(long, conflicts_with = "role_arn")]
    pub profile: Option<String>,

    /// The credentials file for --profile (default: AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials).
    #[arg(long, requires = "profile")]
    pub credentials_file: Option<PathBuf>,

    #[command(flatten)]
    pub exchange: ExchangeArgs,
}

// `keyless aws serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub role: RoleArgs,

    /// The address to listen on (loopback unless you mean otherwise); port 0 picks a free port,
    /// which the export lines name.
    #[arg(long, env = "KEYLESS_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: String,

    /// Serve an IMDSv2-style endpoint (AWS_EC2_METADATA_SERVICE_ENDPOINT) instead of the
    /// ECS-style container endpoint.
    #[arg(long, env = "KEYLESS_IMDS")]
    pub imds: bool,

    /// The container endpoint's authorization token lives in this file: read if it already holds
    /// one (so a restart keeps the token clients have), else a random one is written (0600).
    /// A file that is a symbolic link, not this user's, readable by group or others, or holds
    /// fewer than 32 bytes is refused. Without it, a random token is printed as
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN.
    #[arg(long, env = "KEYLESS_AUTH_TOKEN_FILE", conflicts_with = "imds")]
    pub auth_token_file: Option<PathBuf>,

    /// Serve /healthz and Prometheus /metrics on this address too.
    #[arg(long, env = "KEYLESS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Once listening, write the export lines here too (0600, atomically: the file appears
    /// complete or not at all; it holds the authorization token unless --auth-token-file is
    /// used), so a supervisor or a script can wait for it; removed on shutdown.
    #[arg(long, env = "KEYLESS_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    #[command(flatten)]
    pub access: super::AccessArgs,
}

// `keyless aws token-file`.
#[derive(Debug, Args)]
pub struct TokenFileArgs {
    /// The file to keep fresh (replaced atomically, 0600, no trailing newline).
    #[arg(long, env = "KEYLESS_TOKEN_FILE_PATH")]
    pub path: PathBuf,

    /// Also print AWS_ROLE_ARN for this role (the SDKs need both variables).
    #[arg(long, env = "KEYLESS_ROLE_ARN")]
    pub role_arn: Option<String>,

    /// The audience of the Google ID token (what the role's trust policy calls accounts.google.com:oaud).
    #[arg(long, env = "KEYLESS_AUDIENCE", default_value = DEFAULT_AWS_AUDIENCE)]
    pub audience: String,

    #[arg(long, env = "KEYLESS_TOKEN_SOURCE", default_value = "metadata",
          value_parser = crate::source::registry::parse, help = token_source_help())]
    pub token_source: TokenSourceSpec,

    /// IAM Credentials base URL, for impersonate: (default https://iamcredentials.googleapis.com).
    #[arg(long, env = "KEYLESS_IAMCREDENTIALS_URL")]
    pub iamcredentials_url: Option<UpstreamUrl>,
}

/// Runs an `aws` subcommand.
pub async fn run(command: AwsCommand) -> anyhow::Result<i32> {
    // Built on first use: a credential_process run answered from the cache never starts TLS.
    let http = crate::wire::http::LazyClient::default();
    match command {
        AwsCommand::Credentials(args) => {
            let role = obtain(&http, &args.role, &format_name(args.format)).await?;
            let region = region_of(&args.role.exchange)?;
            let text = match args.format {
                OutputFormat::CredentialProcess => {
                    credential_process::credential_process_json(&role.credentials).to_string()
                        + "\n"
                }
                OutputFormat::Json => {
                    serde_json::to_string_pretty(&credential_process::assumed_role_json(&role))?
                        + "\n"
                }
                OutputFormat::Env => env::export_lines(&env::aws_env_vars(
                    &role.credentials,
                    region.as_ref().map(Region::as_str),
                )),
            };
            std::io::stdout()
                .write_all(text.as_bytes())
                .context("could not write to stdout")?;
            delivered(&role, "stdout", format_name(args.format));
            Ok(0)
        }
        AwsCommand::Exec(args) => {
            let role = obtain(&http, &args.role, "exec").await?;
            let region = region_of(&args.role.exchange)?;
            let vars = env::aws_env_vars(&role.credentials, region.as_ref().map(Region::as_str));
            let program = args
                .command
                .first()
                .map(|c| c.to_string_lossy().into_owned());
            delivered(&role, "exec", program.unwrap_or_default());
            Ok(env::exec_with_env(&args.command, &vars)?)
        }
        AwsCommand::WriteProfile(args) => {
            let role = obtain(&http, &args.role, "write-profile").await?;
            let path = match args.credentials_file {
                Some(p) => p,
                None => aws_files::default_credentials_path()?,
            };
            aws_files::write_credentials_profile(&path, &args.profile, &role.credentials)?;
            delivered(
                &role,
                "credentials-file",
                format!("{} [{}]", path.display(), args.profile),
            );
            let until = role
                .credentials
                .expiration
                .map(crate::credentials::format_expiration)
                .unwrap_or_default();
            eprintln!(
                "wrote profile [{}] to {} ({}, valid until {until})",
                args.profile,
                path.display(),
                role.assumed_role_arn
            );
            Ok(0)
        }
        AwsCommand::Whoami(args) => {
            let region = region_of(&args.exchange)?;
            let endpoint =
                StsEndpoint::resolve(args.exchange.sts_endpoint.as_ref(), region.as_ref())?;
            let credentials = match (&args.role_arn, &args.profile) {
                (Some(arn), _) => {
                    let role_args = RoleArgs {
                        role_arn: arn.clone(),
                        exchange: args.exchange,
                    };
                    obtain(&http, &role_args, "whoami").await?.credentials
                }
                (None, _) if !args.exchange.chain.chain_roles.is_empty() => {
                    return Err(SpecError::InvalidRoleChain {
                        problem: "--chain-role starts from the --role-arn session; whoami without --role-arn only shows existing credentials".into(),
                        hint: "add --role-arn ARN for the first role of the chain",
                    }
                    .into());
                }
                (None, Some(profile)) => {
                    let path = match &args.credentials_file {
                        Some(p) => p.clone(),
                        None => aws_files::default_credentials_path()?,
                    };
                    aws_files::read_credentials_profile(&path, profile)?.with_context(|| {
                        format!("no profile [{profile}] with keys in {}", path.display())
                    })?
                }
                (None, None) => credentials_from_env()?,
            };
            let identity =
                fetch_caller_identity(http_client(&http)?, &endpoint, &credentials).await?;
            println!("{}", serde_json::to_string_pretty(&identity)?);
            Ok(0)
        }
        AwsCommand::Serve(args) => serve(http_client(&http)?.clone(), args).await,
        AwsCommand::TokenFile(args) => token_file(http_client(&http)?.clone(), args).await,
    }
}

/// `aws serve`: bind, start keeping the credential fresh, announce, serve until signalled.
///
/// Readiness: the export lines are printed (and stdout flushed) only after every listener is
/// bound, so whoever reads them can connect at once. The first exchange is not awaited: the
/// first requests wait for it (one exchange however many arrive), and a failure is answered with
/// a JSON error naming the cause, never with an expired credential.
async fn serve(http: reqwest::Client, args: ServeArgs) -> anyhow::Result<i32> {
    let mut profile = profile_from_args(&args.role)?;
    profile.audit = AuditContext::new(None, if args.imds { "serve:imds" } else { "serve:ecs" });
    let role_arn = profile.final_role().clone();
    let region = region_of(&args.role.exchange)?;
    let refresher = Refresher::new(
        role_arn.as_str(),
        AwsRoleUpstream { profile, http },
        RefreshPolicy::default(),
        Clock::System,
    );
    let kind = if args.imds {
        server::Endpoint::Imds
    } else {
        server::Endpoint::EcsCredentials
    };
    let access = args.access.access();
    let listener = server::bind(&args.listen, kind, &access).await?;
    let local = listener
        .local_addr()
        .context("the listener has no address")?;
    let metrics = match &args.metrics_listen {
        Some(addr) => {
            let registry = MetricsRegistry::default();
            let status = refresher.clone();
            registry.register(role_arn.as_str(), move || status.status());
            let listener = server::bind(addr, server::Endpoint::Metrics, &access).await?;
            Some((listener, registry.router()))
        }
        None => None,
    };
    let base = format!("http://{}", server::reachable(local));
    let (router, vars) = if args.imds {
        let identity = InstanceIdentity::for_role(&role_arn, region.as_ref().map(Region::as_str));
        (
            imds_server::router(refresher.clone(), identity),
            vec![(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT".to_string(),
                format!("{base}/"),
            )],
        )
    } else {
        let uri = format!("{base}{}", ecs_server::CREDENTIALS_PATH);
        let mut vars = vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI".to_string(), uri)];
        let token = match &args.auth_token_file {
            Some(path) => {
                let token = auth_token_from_file(path)?;
                let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                vars.push((
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_string(),
                    path.display().to_string(),
                ));
                token
            }
            None => {
                let token = ecs_server::random_auth_token();
                vars.push((
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN".to_string(),
                    token.expose().to_string(),
                ));
                token
            }
        };
        (ecs_server::router(refresher.clone(), token), vars)
    };
    let _keeper = refresher.spawn_keeper();
    // Before the export lines: whoever reads them may stop us at once.
    let stop = stop_on_signal();
    let mut text = env::export_lines(&vars);
    if let Some((listener, _)) = &metrics {
        if let Ok(addr) = listener.local_addr() {
            let addr = server::reachable(addr);
            text += &format!("# metrics: http://{addr}/metrics http://{addr}/healthz\n");
        }
    }
    if let Some(path) = &args.ready_file {
        write_private_file_atomically(path, text.as_bytes())
            .with_context(|| format!("could not write the ready file {}", path.display()))?;
    }
    let mut stdout = std::io::stdout();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("could not write to stdout")?;
    tracing::info!(
        addr = %local,
        kind = if args.imds { "imds" } else { "ecs" },
        role = %role_arn,
        "serving credentials"
    );
    let main = server::serve(listener, router, stopped(stop.clone()));
    let served = match metrics {
        Some((listener, router)) => {
            tokio::try_join!(main, server::serve(listener, router, stopped(stop))).map(|_| ())
        }
        None => main.await,
    };
    if let Some(path) = &args.ready_file {
        let _ = std::fs::remove_file(path);
    }
    served?;
    Ok(0)
}

/// `aws token-file`: write the first token, announce, rewrite after every refresh until signalled.
async fn token_file(http: reqwest::Client, args: TokenFileArgs) -> anyhow::Result<i32> {
    let role_arn = args.role_arn.as_deref().map(RoleArn::parse).transpose()?;
    let source = crate::source::registry::build(
        &args.token_source,
        &SourceContext {
            iamcredentials_url: args.iamcredentials_url.clone(),
            aws: AwsSourceOptions {
                // A bad AWS_REGION is aws-oidc's to report (the SDKs' region chain does).
                region: Region::from_env().ok().flatten(),
                ..AwsSourceOptions::default()
            },
            ..SourceContext::default()
        },
    )?;
    let path = std::path::absolute(&args.path).unwrap_or_else(|_| args.path.clone());
    let refresher = Refresher::new(
        format!("token-file {}", path.display()),
        GoogleIdTokenUpstream {
            source,
            audience: args.audience.clone(),
            http,
        },
        RefreshPolicy::default(),
        Clock::System,
    );
    let (keeper, expires_at) = TokenFileKeeper::start(&path, refresher.clone()).await?;
    let _refreshing = refresher.spawn_keeper();
    let mut vars = vec![(
        "AWS_WEB_IDENTITY_TOKEN_FILE".to_string(),
        path.display().to_string(),
    )];
    if let Some(arn) = &role_arn {
        vars.push(("AWS_ROLE_ARN".to_string(), arn.as_str().to_string()));
    }
    let shutdown = server::shutdown_signal();
    let mut stdout = std::io::stdout();
    stdout
        .write_all(env::export_lines(&vars).as_bytes())
        .and_then(|()| stdout.flush())
        .context("could not write to stdout")?;
    tracing::info!(path = %path.display(), expires_at = %expires_at, "keeping the token file fresh");
    tokio::select! {
        () = keeper.run() => {}
        () = shutdown => {}
    }
    Ok(0)
}

/// The container endpoint's token from `path`, or a new random one written there (0600): see
/// [`ecs_server::auth_token_from_file`].
pub(crate) fn auth_token_from_file(path: &Path) -> anyhow::Result<Secret> {
    Ok(ecs_server::auth_token_from_file(path)?)
}

/// A flag that turns true on SIGTERM/SIGINT, so several listeners stop together.
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signal = server::shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        let _ = tx.send(true);
    });
    rx
}

async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What `--format` the user typed for `format` (`credential-process`, `env`, `json`).
pub(crate) fn format_name(format: impl ValueEnum) -> String {
    format
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// Logs the hand-over of `role`'s credentials (one info line; see [`DeliveryRecord`]).
fn delivered(role: &AssumedRole, channel: &'static str, destination: String) {
    DeliveryRecord {
        channel,
        destination,
        credential: role.assumed_role_arn.clone(),
        expires_at: role.credentials.expiration,
    }
    .log();
}

/// `--region` (or `KEYLESS_REGION`), else `AWS_REGION`, `AWS_DEFAULT_REGION`.
fn region_of(args: &ExchangeArgs) -> Result<Option<Region>, SpecError> {
    match &args.region {
        Some(region) => Ok(Some(region.clone())),
        None => Region::from_env(),
    }
}

fn http_client(http: &crate::wire::http::LazyClient) -> anyhow::Result<&reqwest::Client> {
    http.get().context("could not start the HTTP client")
}

/// Builds the profile from the flags and obtains credentials (through the cache unless told not
/// to); the HTTP client is built only when the cache cannot answer. `channel` names the command
/// in the exchange's audit event.
pub async fn obtain(
    http: &crate::wire::http::LazyClient,
    args: &RoleArgs,
    channel: &str,
) -> anyhow::Result<AssumedRole> {
    let mut profile = profile_from_args(args)?;
    profile.audit = AuditContext::new(None, channel);
    let cache = if args.exchange.no_cache {
        None
    } else {
        match CredentialCache::user_default("aws") {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("{e}; continuing without a cache");
                None
            }
        }
    };
    if let Some(hit) = cache.as_ref().and_then(|c| profile.load_cached(c)) {
        return Ok(hit);
    }
    Ok(profile
        .fetch_and_store(http_client(http)?, cache.as_ref())
        .await?)
}

/// Turns flags into an [`AwsRoleProfile`], checking them before anything goes on the wire.
pub fn profile_from_args(args: &RoleArgs) -> anyhow::Result<AwsRoleProfile> {
    let x = &args.exchange;
    let role_arn = RoleArn::parse(&args.role_arn)?;
    let session_name = x
        .session_name
        .as_deref()
        .map(SessionName::parse)
        .transpose()?;
    let policy = match &x.policy {
        Some(path) => {
            let text = crate::private_file::read_capped(
                path,
                crate::private_file::MAX_SMALL_FILE_BYTES,
            )
            .with_context(|| format!("could not read the session policy {}", path.display()))?;
            serde_json::from_str::<serde_json::Value>(&text)
                .with_context(|| format!("the session policy {} is not JSON", path.display()))?;
            Some(text.trim().to_string())
        }
        None => None,
    };
    anyhow::ensure!(
        x.policy_arns.len() <= 10,
        "STS accepts at most 10 --policy-arn values, got {}",
        x.policy_arns.len()
    );
    let region = region_of(x)?;
    let duration_seconds = x.duration.map(Seconds::as_secs_u32);
    let chain = RoleChain::new(
        x.chain.chain_roles.clone(),
        x.chain.external_id.clone(),
        x.chain.source_identity.clone(),
        x.chain.tags.clone(),
        x.chain.transitive_tag_keys.clone(),
        duration_seconds,
    )?;
    Ok(AwsRoleProfile {
        audit: Default::default(),
        token_source: crate::source::registry::build(
            &x.token_source,
            &SourceContext {
                iamcredentials_url: x.iamcredentials_url.clone(),
                aws: AwsSourceOptions {
                    region: region.clone(),
                    ..AwsSourceOptions::default()
                },
                sts_endpoint: x.sts_endpoint.clone(),
                ..SourceContext::default()
            },
        )?,
        audience: x.audience.clone(),
        request: WebIdentityRequest {
            role_arn,
            session_name,
            duration_seconds,
            policy,
            policy_arns: x.policy_arns.clone(),
        },
        endpoint: StsEndpoint::resolve(x.sts_endpoint.as_ref(), region.as_ref())?,
        retry: x.timeouts.retry_policy(),
        chain,
    })
}

/// The ambient credentials the SDKs read first.
pub(crate) fn credentials_from_env() -> anyhow::Result<AwsCredentials> {
    let key = std::env::var("AWS_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    let (Some(access_key_id), Some(secret)) = (key, secret) else {
        anyhow::bail!(
            "no AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)\n  hint: pass --role-arn to assume a role, or --profile NAME"
        );
    };
    Ok(AwsCredentials {
        access_key_id,
        secret_access_key: Secret::new(secret),
        session_token: std::env::var("AWS_SESSION_TOKEN")
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new),
        expiration: None,
    })
}
