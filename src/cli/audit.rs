//! `keyless audit aws|gcp`: what the clouds recorded about federation, next to keyless's own
//! audit log and the identities meant to cross. Flags and printing only; the lookups,
//! correlation and checks are in [`crate::cloud_audit`].

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use time::OffsetDateTime;

use crate::cli::exit_code;
use crate::cloud_audit::cloud_logging::{
    self, LoggingQuery, DEFAULT_LOGGING_URL, DEFAULT_RESOURCE_MANAGER_URL,
};
use crate::cloud_audit::cloudtrail::{self, CloudTrailEndpoint, CloudTrailError};
use crate::cloud_audit::correlate::{self, Scope};
use crate::cloud_audit::expect::{self, Expectation};
use crate::cloud_audit::report::{Cloud, CloudEvent, Report};
use crate::cloud_audit::{PointInTime, TimeWindow};
use crate::secret::Secret;
use crate::source::aws::{AwsIdentitySource, AwsSourceError, AwsSourceOptions};
use crate::types::{Region, TokenSourceSpec, UpstreamUrl};

/// The `audit` subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum AuditCommand {
    /// What CloudTrail recorded: every AssumeRoleWithWebIdentity and AssumeRole (who, as which
    /// role and session, from where, refused or not).
    #[command(
        after_help = "Exit codes: 0 nothing flagged, 1 --expect flagged an event, 2 usage or configuration,\n\
                      3 CloudTrail refused the caller (cloudtrail:LookupEvents), 4 CloudTrail unavailable.\n\n\
                      Examples:\n  \
                      keyless audit aws --since 24h\n  \
                      keyless audit aws --role-arn arn:aws:iam::123456789012:role/gcp-deploy --local /var/log/keyless/audit.jsonl\n  \
                      keyless audit aws --since 7d --expect trust-policy.json --format json > audit.json"
    )]
    Aws(AuditAwsArgs),
    /// What Cloud Audit Logs recorded: Google STS token exchanges and IAM Credentials
    /// GenerateAccessToken / GenerateIdToken (Data Access logs must be on).
    #[command(
        after_help = "Exit codes: 0 nothing flagged, 1 --expect flagged an event, 2 usage or configuration (Data\n\
                      Access logs off), 3 Google refused the caller (roles/logging.privateLogViewer), 4 unavailable.\n\n\
                      Examples:\n  \
                      keyless audit gcp --project my-project --since 24h\n  \
                      keyless audit gcp --project my-project --service-account deployer@my-project.iam.gserviceaccount.com --local audit.jsonl\n  \
                      keyless audit gcp --provider //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws \\\n    \
                      --expect provider.json --expect keyless.toml"
    )]
    Gcp(Box<AuditGcpArgs>),
}

// What both clouds' audits take.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// From when: a time ago (24h, 7d, 90m, plain seconds) or an RFC 3339 time. CloudTrail
    /// keeps 90 days without a trail.
    #[arg(
        long,
        env = "KEYLESS_SINCE",
        value_name = "DUR|TIME",
        default_value = "24h"
    )]
    pub since: PointInTime,

    /// Until when (default: now): a time ago or an RFC 3339 time.
    #[arg(long, env = "KEYLESS_UNTIL", value_name = "DUR|TIME")]
    pub until: Option<PointInTime>,

    /// keyless's own audit log (the --audit-log file): say which keyless exchange each cloud
    /// event was, and list the exchanges the cloud has no record of.
    #[arg(long, env = "KEYLESS_LOCAL", value_name = "PATH")]
    pub local: Option<PathBuf>,

    /// The identities meant to cross: a trust policy (or `aws iam get-role` output), a
    /// workload identity provider's description (JSON), or keyless.toml; repeatable. Events
    /// of any other identity are flagged, and the exit code is 1.
    #[arg(
        long,
        env = "KEYLESS_EXPECT",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub expect: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, env = "KEYLESS_FORMAT", default_value_t = AuditFormat::Text)]
    pub format: AuditFormat,

    #[command(flatten)]
    pub timeouts: crate::cli::TimeoutArgs,
}

/// How `audit` prints.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum AuditFormat {
    /// A table, then the keyless exchanges without a cloud record.
    Text,
    /// One JSON document: events (with keyless and flagged), keyless_without_cloud_record, flagged.
    Json,
}

// `keyless audit aws`.
#[derive(Debug, Args)]
pub struct AuditAwsArgs {
    /// Only events for this role (AssumeRoleWithWebIdentity into it, AssumeRole hops to it).
    #[arg(long, env = "KEYLESS_ROLE_ARN")]
    pub role_arn: Option<String>,

    /// The region whose CloudTrail to read (default: AWS_REGION, AWS_DEFAULT_REGION, the
    /// profile, instance metadata). CloudTrail is regional; STS calls to the global endpoint
    /// are recorded in us-east-1. AWS_ENDPOINT_URL_CLOUDTRAIL overrides the endpoint.
    #[arg(long, env = "KEYLESS_REGION")]
    pub region: Option<Region>,

    #[command(flatten)]
    pub audit: AuditArgs,
}

// `keyless audit gcp`.
#[derive(Debug, Args)]
pub struct AuditGcpArgs {
    /// Only impersonations of this service account (and the token exchanges of the
    /// principals that impersonated it).
    #[arg(long, env = "KEYLESS_SERVICE_ACCOUNT")]
    pub service_account: Option<String>,

    /// Only this workload identity provider's pool:
    /// //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER.
    #[arg(long, env = "KEYLESS_PROVIDER")]
    pub provider: Option<String>,

    /// The project whose audit logs to read (default: GOOGLE_CLOUD_PROJECT, else the project
    /// number in --provider).
    #[arg(long, env = "KEYLESS_PROJECT")]
    pub project: Option<String>,

    /// Cloud Logging's API (https://, or http:// to loopback only).
    #[arg(long, env = "KEYLESS_LOGGING_URL", default_value = DEFAULT_LOGGING_URL)]
    pub logging_url: UpstreamUrl,

    /// Resource Manager's API, read for the project's audit config when no entries come back.
    #[arg(long, env = "KEYLESS_RESOURCE_MANAGER_URL", default_value = DEFAULT_RESOURCE_MANAGER_URL)]
    pub resource_manager_url: UpstreamUrl,

    #[command(flatten)]
    pub reader: GoogleReaderArgs,

    #[command(flatten)]
    pub audit: AuditArgs,
}

// Who reads the logs: Application Default Credentials (or the metadata server) by default, or
// any keyless source through workload identity federation.
#[derive(Debug, Args)]
pub struct GoogleReaderArgs {
    /// Read the logs as a federated identity instead of Application Default Credentials: a
    /// keyless token source (aws, github, k8s, metadata, file:PATH…), traded at --audience.
    #[arg(long, value_parser = crate::refresh::gcp_token::parse_token_source, requires = "audience")]
    pub token_source: Option<TokenSourceSpec>,

    /// The workload identity provider --token-source is traded at.
    #[arg(long, requires = "token_source")]
    pub audience: Option<String>,

    /// With --token-source: the service account to read the logs as.
    #[arg(long, requires = "token_source")]
    pub impersonate_service_account: Option<String>,

    /// With --token-source: the AWS shared-config profile (token source aws).
    #[arg(long, requires = "token_source")]
    pub aws_profile: Option<String>,

    /// With --token-source: the AWS region (token source aws).
    #[arg(long, requires = "token_source")]
    pub aws_region: Option<Region>,

    /// Google STS token endpoint (https://, or http:// to loopback only).
    #[arg(long, env = "KEYLESS_TOKEN_URL", default_value = crate::exchange::google_sts::DEFAULT_TOKEN_URL)]
    pub token_url: UpstreamUrl,

    /// IAM Credentials base URL (https://, or http:// to loopback only).
    #[arg(long, env = "KEYLESS_IAMCREDENTIALS_URL", default_value = crate::source::google::DEFAULT_IAMCREDENTIALS_URL)]
    pub iamcredentials_url: UpstreamUrl,
}

/// Runs an `audit` subcommand: 0 when nothing is flagged, 1 when `--expect` flags an event.
pub async fn run(command: AuditCommand) -> anyhow::Result<i32> {
    let http = crate::wire::http::build().context("could not start the HTTP client")?;
    let now = OffsetDateTime::now_utc();
    let (report, format) = match command {
        AuditCommand::Aws(args) => (audit_aws(&http, &args, now).await?, args.audit.format),
        AuditCommand::Gcp(args) => (audit_gcp(&http, &args, now).await?, args.audit.format),
    };
    let text = match format {
        AuditFormat::Text => report.to_text(),
        AuditFormat::Json => report.to_json(),
    };
    crate::cli::print_bytes(text.as_bytes())?;
    Ok(if report.flagged > 0 {
        exit_code::FAILURE
    } else {
        0
    })
}

async fn audit_aws(
    http: &reqwest::Client,
    args: &AuditAwsArgs,
    now: OffsetDateTime,
) -> anyhow::Result<Report> {
    let window = TimeWindow::new(args.audit.since, args.audit.until, now)?;
    let expectations = load_expectations(&args.audit.expect)?;
    let local = read_local(&args.audit)?;
    let source = AwsIdentitySource::resolve(AwsSourceOptions {
        region: args.region.clone(),
        ..Default::default()
    })
    .await
    .map_err(|e| match e {
        AwsSourceError::NoRegion { .. } => anyhow::Error::new(CloudTrailError::NoRegion),
        other => other.into(),
    })?;
    let endpoint = CloudTrailEndpoint::resolve(source.region())?;
    let credentials = source.fetch_credentials().await?;
    let events = cloudtrail::fetch_federation_events(
        http,
        &endpoint,
        &credentials,
        &window,
        args.role_arn.as_deref(),
        &args.audit.timeouts.retry_policy(),
    )
    .await?;
    let scope = Scope {
        cloud: Cloud::Aws,
        window,
        role_arn: args.role_arn.clone(),
        service_account: None,
        provider: None,
    };
    Ok(finish(events, local, &scope, &expectations))
}

async fn audit_gcp(
    http: &reqwest::Client,
    args: &AuditGcpArgs,
    now: OffsetDateTime,
) -> anyhow::Result<Report> {
    let window = TimeWindow::new(args.audit.since, args.audit.until, now)?;
    let expectations = load_expectations(&args.audit.expect)?;
    let local = read_local(&args.audit)?;
    let project = cloud_logging::project_of(args.project.as_deref(), args.provider.as_deref())?;
    let token = fetch_reader_token(http, &args.reader, &args.audit.timeouts).await?;
    let query = LoggingQuery {
        project,
        window,
        service_account: args.service_account.clone(),
        provider: args.provider.clone(),
    };
    let events = cloud_logging::fetch_federation_entries(
        http,
        &args.logging_url,
        &args.resource_manager_url,
        &token,
        &query,
        &args.audit.timeouts.retry_policy(),
    )
    .await?;
    let scope = Scope {
        cloud: Cloud::Gcp,
        window,
        role_arn: None,
        service_account: args.service_account.clone(),
        provider: args.provider.clone(),
    };
    Ok(finish(events, local, &scope, &expectations))
}

/// The access token the logs are read with: ADC or the metadata server, or a federated one.
async fn fetch_reader_token(
    http: &reqwest::Client,
    reader: &GoogleReaderArgs,
    timeouts: &crate::cli::TimeoutArgs,
) -> anyhow::Result<Secret> {
    let (Some(token_source), Some(audience)) = (&reader.token_source, &reader.audience) else {
        let metadata = crate::source::google::MetadataServer::from_env();
        let (token, caller) = crate::source::google::fetch_caller_access_token(http, &metadata)
            .await
            .context(
                "could not get a Google access token to read the audit logs\n  \
                 hint: run `gcloud auth application-default login`, run on Google Cloud, or pass --token-source SRC --audience PROVIDER",
            )?;
        tracing::info!(%caller, "reading Cloud Audit Logs as the application-default caller");
        return Ok(token);
    };
    use crate::cli::gcp::{AwsSourceArgs, ProviderArgs, SubjectArgs, TokenRequestArgs};
    let request = TokenRequestArgs {
        provider: ProviderArgs {
            audience: audience.clone(),
            token_url: reader.token_url.clone(),
            iamcredentials_url: reader.iamcredentials_url.clone(),
        },
        subject: SubjectArgs {
            token_source: token_source.clone(),
            token_audience: None,
            aws: AwsSourceArgs {
                aws_profile: reader.aws_profile.clone(),
                aws_region: reader.aws_region.clone(),
                assume_role: None,
            },
        },
        service_account: reader.impersonate_service_account.clone(),
        scopes: vec![crate::exchange::google_sts::CLOUD_PLATFORM_SCOPE.to_string()],
        lifetime: None,
        delegates: Vec::new(),
        // profile_from_args only: this exchange never goes through the cache.
        no_cache: true,
        timeouts: timeouts.clone(),
    };
    let profile = crate::cli::gcp::profile_from_args(&request).await?;
    let token = profile.fetch(http).await?;
    Ok(token.token.access_token)
}

fn load_expectations(files: &[PathBuf]) -> anyhow::Result<Vec<Expectation>> {
    Ok(files
        .iter()
        .map(|f| Expectation::load(f))
        .collect::<Result<_, _>>()?)
}

fn read_local(args: &AuditArgs) -> anyhow::Result<Option<Vec<correlate::LocalExchange>>> {
    Ok(match &args.local {
        Some(path) => Some(correlate::read_local_log(path)?),
        None => None,
    })
}

/// Rows, correlated with `--local` and checked against `--expect` when given.
fn finish(
    events: Vec<CloudEvent>,
    local: Option<Vec<correlate::LocalExchange>>,
    scope: &Scope,
    expectations: &[Expectation],
) -> Report {
    let mut report = Report::new(events);
    if let Some(local) = local {
        correlate::correlate(&mut report, &local, scope);
    }
    if !expectations.is_empty() {
        expect::flag_unexpected(&mut report, expectations);
    }
    report
}
