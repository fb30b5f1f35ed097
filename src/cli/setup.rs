//! `keyless setup`: print the resources a federation needs, in the format the team deploys with.
//!
//! Nothing is created: the output is reviewed and applied by the user's own tooling, so keyless
//! never needs rights to change IAM.

use clap::{Args, Subcommand, ValueEnum};

use crate::cli::exit_code;
use crate::duration::Seconds;
use crate::setup::oidc::{GithubPin, OidcSource, OidcToAws, OidcToGcp, AWS_OIDC_TO_AWS_REFUSED};
use crate::setup::{self, AwsToGcp, GcpToAws, DEFAULT_AWS_AUDIENCE};

/// The `setup` subcommands, one per direction.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum SetupCommand {
    /// GCP → AWS: an AWS role a Google service account may assume.
    #[command(
        after_help = "Example:\n  keyless setup gcp-to-aws --service-account deployer@my-project.iam.gserviceaccount.com \\\n    --service-account-id 100000000000000000001 --aws-account 123456789012 \\\n    --role-name DeploymentRole --format terraform > gcp-to-aws.tf"
    )]
    GcpToAws(GcpToAwsArgs),
    /// AWS → GCP: a workload identity pool and provider that let an AWS role's sessions
    /// impersonate a Google service account.
    #[command(
        after_help = "Example:\n  keyless setup aws-to-gcp --project-id my-project --project-number 123456789 \\\n    --pool aws-pool --provider aws --aws-account 123456789012 --aws-role ci-runner \\\n    --service-account deployer@my-project.iam.gserviceaccount.com --format shell > aws-to-gcp.sh"
    )]
    AwsToGcp(AwsToGcpArgs),
    /// GitHub Actions → AWS: an IAM OIDC provider for GitHub and a role one repository's jobs
    /// (on one ref, or in one environment) may assume.
    #[command(
        after_help = "Example:\n  keyless setup github-to-aws --github-repo my-org/my-repo --github-ref refs/heads/main \\\n    --aws-account 123456789012 --role-name gha-deploy --format terraform > github-to-aws.tf"
    )]
    GithubToAws(GithubToAwsArgs),
    /// GitHub Actions → Google: a pool OIDC provider for GitHub admitting one repository's jobs,
    /// and a service account they may impersonate.
    #[command(
        after_help = "Example:\n  keyless setup github-to-gcp --github-repo my-org/my-repo --github-environment production \\\n    --project-id my-project --project-number 123456789 --pool ci --provider github \\\n    --service-account deployer@my-project.iam.gserviceaccount.com --format shell > github-to-gcp.sh"
    )]
    GithubToGcp(GithubToGcpArgs),
    /// Kubernetes → AWS: an IAM OIDC provider for the cluster's issuer and a role one service
    /// account may assume.
    #[command(
        after_help = "Example:\n  keyless setup k8s-to-aws --k8s-issuer https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE \\\n    --namespace payments --k8s-service-account app \\\n    --aws-account 123456789012 --role-name payments --format terraform > k8s-to-aws.tf"
    )]
    K8sToAws(K8sToAwsArgs),
    /// Kubernetes → Google: a pool OIDC provider for the cluster's issuer admitting one service
    /// account, and a Google service account it may impersonate.
    #[command(
        after_help = "Example:\n  keyless setup k8s-to-gcp --k8s-issuer https://container.googleapis.com/v1/projects/p/locations/l/clusters/c \\\n    --namespace payments --k8s-service-account app --project-id my-project --project-number 123456789 \\\n    --pool k8s-pool --provider cluster --service-account payments@my-project.iam.gserviceaccount.com --format shell"
    )]
    K8sToGcp(K8sToGcpArgs),
    /// AWS outbound identity federation → AWS: refused (AWS does not accept these tokens);
    /// prints what to do instead: AssumeRole with an external ID (--chain-role).
    #[command(
        long_about = AWS_OIDC_TO_AWS_REFUSED,
        after_help = "Example (instead: the calling role assumes the target role with an external ID):\n  keyless aws credentials --role-arn arn:aws:iam::111111111111:role/app-role \\\n    --chain-role arn:aws:iam::123456789012:role/partner-access --external-id partner-prod"
    )]
    AwsOidcToAws(RefusedPairArgs),
    /// AWS outbound identity federation → Google: the caller's account mints tokens for the
    /// provider, a pool OIDC provider admits the role, which may impersonate a service account.
    #[command(
        after_help = "Example:\n  keyless setup aws-oidc-to-gcp --aws-issuer https://EXAMPLE.tokens.sts.global.api.aws \\\n    --aws-account 123456789012 --aws-role app-role --project-id my-project --project-number 123456789 \\\n    --pool aws --provider outbound --service-account app@my-project.iam.gserviceaccount.com --format terraform"
    )]
    AwsOidcToGcp(AwsOidcToGcpArgs),
}

/// Output formats for the GCP → AWS direction (all of them can create an IAM role).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum GcpToAwsFormat {
    Terraform,
    Cloudformation,
    Shell,
    Pulumi,
}

/// Output formats for the AWS → GCP direction (CloudFormation cannot create Google resources).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum AwsToGcpFormat {
    Terraform,
    Shell,
    Pulumi,
}

// `keyless setup gcp-to-aws`.
#[derive(Debug, Args)]
pub struct GcpToAwsArgs {
    /// The Google service account (NAME@PROJECT.iam.gserviceaccount.com).
    #[arg(long)]
    pub service_account: String,
    /// Its numeric unique id, which AWS compares as `aud` and `sub`, when the account exists
    /// (gcloud iam service-accounts describe EMAIL --format='value(uniqueId)'): the output
    /// reads the account and stops if its id differs. Without it, the output creates the
    /// account and takes the id from it (CloudFormation: a ServiceAccountId stack parameter).
    #[arg(long, value_name = "ID")]
    pub service_account_id: Option<String>,
    /// The 12-digit AWS account of the role.
    #[arg(long)]
    pub aws_account: String,
    /// The role's name.
    #[arg(long)]
    pub role_name: String,
    /// The ID token audience the trust policy requires (`oaud`).
    #[arg(long, default_value = DEFAULT_AWS_AUDIENCE)]
    pub audience: String,
    #[command(flatten)]
    pub role: AwsRoleOptions,
}

// `keyless setup aws-to-gcp`.
#[derive(Debug, Args)]
pub struct AwsToGcpArgs {
    /// The Google project id.
    #[arg(long)]
    pub project_id: String,
    /// The Google project number.
    #[arg(long)]
    pub project_number: String,
    /// The workload identity pool id.
    #[arg(long)]
    pub pool: String,
    /// The AWS provider id.
    #[arg(long)]
    pub provider: String,
    /// The 12-digit AWS account whose sessions the provider accepts.
    #[arg(long)]
    pub aws_account: String,
    /// The AWS role name whose sessions may impersonate the service account.
    #[arg(long)]
    pub aws_role: String,
    /// The service account to impersonate (NAME@PROJECT_ID.iam.gserviceaccount.com).
    #[arg(long)]
    pub service_account: String,
    /// A project role to grant the service account (e.g. roles/storage.objectViewer).
    #[arg(long)]
    pub role: Option<String>,
    /// Also print what `keyless audit` needs: a CloudTrail trail on the AWS side, Data Access
    /// logs for Google STS and IAM Credentials on the Google side.
    #[arg(long)]
    pub audit: bool,
    /// What to print.
    #[arg(long, value_enum)]
    pub format: AwsToGcpFormat,
}

// The flags every pair that makes an AWS role shares, after its own: the role's policies and
// session limit, `--audit`, the format.
#[derive(Debug, Args)]
pub struct AwsRoleOptions {
    /// A managed policy to attach (repeatable).
    #[arg(long = "policy-arn", value_name = "ARN")]
    pub policy_arns: Vec<String>,
    /// The role's maximum session duration: 1h to 12h, as 3600s, 90m, 1h or plain seconds.
    #[arg(long, value_name = "DUR", default_value_t = Seconds::new(3600),
          value_parser = clap::value_parser!(Seconds))]
    pub max_session_duration: Seconds,
    /// Also print what `keyless audit` needs: a CloudTrail trail on the AWS side, Data Access
    /// logs for Google STS and IAM Credentials on the Google side.
    #[arg(long)]
    pub audit: bool,
    /// What to print.
    #[arg(long, value_enum)]
    pub format: GcpToAwsFormat,
}

// The AWS role an OIDC source may assume (the flags of `gcp-to-aws`, without the service account).
#[derive(Debug, Args)]
pub struct AwsRoleTargetArgs {
    /// The 12-digit AWS account of the role and the IAM OIDC provider.
    #[arg(long)]
    pub aws_account: String,
    /// The role's name.
    #[arg(long)]
    pub role_name: String,
    /// The token's audience: the IAM OIDC provider's client id and the `HOST/PATH:aud` pin.
    #[arg(long, default_value = DEFAULT_AWS_AUDIENCE)]
    pub audience: String,
    #[command(flatten)]
    pub role: AwsRoleOptions,
}

// The Google side for an OIDC source (the flags of `aws-to-gcp`, without the AWS account).
#[derive(Debug, Args)]
pub struct GcpTargetArgs {
    /// The Google project id.
    #[arg(long)]
    pub project_id: String,
    /// The Google project number.
    #[arg(long)]
    pub project_number: String,
    /// The workload identity pool id.
    #[arg(long)]
    pub pool: String,
    /// The OIDC provider id.
    #[arg(long)]
    pub provider: String,
    /// The service account to impersonate (NAME@PROJECT_ID.iam.gserviceaccount.com).
    #[arg(long)]
    pub service_account: String,
    /// A project role to grant the service account (e.g. roles/storage.objectViewer).
    #[arg(long)]
    pub role: Option<String>,
    /// The token's audience, the provider's allowed audience (default: the provider's URL,
    /// https://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/providers/PROVIDER).
    #[arg(long, value_name = "AUD")]
    pub token_audience: Option<String>,
    /// Also print what `keyless audit` needs: a CloudTrail trail on the AWS side, Data Access
    /// logs for Google STS and IAM Credentials on the Google side.
    #[arg(long)]
    pub audit: bool,
}

impl GcpTargetArgs {
    fn plan(self, source: OidcSource) -> (OidcToGcp, bool) {
        let spec = OidcToGcp {
            source,
            project_id: self.project_id,
            project_number: self.project_number,
            pool: self.pool,
            provider: self.provider,
            service_account: self.service_account,
            role: self.role,
            token_audience: self.token_audience,
        };
        (spec, self.audit)
    }
}

impl AwsRoleTargetArgs {
    fn plan(self, source: OidcSource) -> (OidcToAws, GcpToAwsFormat, bool) {
        (
            OidcToAws {
                source,
                aws_account: self.aws_account,
                role_name: self.role_name,
                audience: self.audience,
                policy_arns: self.role.policy_arns,
                max_session_duration: self.role.max_session_duration.as_secs_u32(),
            },
            self.role.format,
            self.role.audit,
        )
    }
}

// Which GitHub Actions jobs: one repository, on one ref or in one environment.
#[derive(Debug, Args)]
pub struct GithubSourceArgs {
    /// The repository whose jobs get in, ORG/REPO.
    #[arg(long, value_name = "ORG/REPO")]
    pub github_repo: String,
    /// The branch or tag they run on (sub repo:ORG/REPO:ref:REF).
    #[arg(
        long,
        value_name = "REF",
        default_value = "refs/heads/main",
        conflicts_with = "github_environment"
    )]
    pub github_ref: String,
    /// Instead of a ref: the deployment environment the jobs use
    /// (sub repo:ORG/REPO:environment:NAME).
    #[arg(long, value_name = "NAME")]
    pub github_environment: Option<String>,
}

impl GithubSourceArgs {
    fn source(self) -> OidcSource {
        OidcSource::Github {
            repo: self.github_repo,
            pin: match self.github_environment {
                Some(e) => GithubPin::Environment(e),
                None => GithubPin::Ref(self.github_ref),
            },
        }
    }
}

// Which Kubernetes service account, of which cluster.
#[derive(Debug, Args)]
pub struct K8sSourceArgs {
    /// The cluster's service-account issuer URL, as its tokens carry it in `iss`.
    #[arg(long, value_name = "URL")]
    pub k8s_issuer: String,
    /// The service account's namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: String,
    /// The Kubernetes service account's name (sub system:serviceaccount:NS:NAME).
    #[arg(long, value_name = "NAME")]
    pub k8s_service_account: String,
}

impl K8sSourceArgs {
    fn source(self) -> OidcSource {
        OidcSource::Kubernetes {
            issuer: self.k8s_issuer,
            namespace: self.namespace,
            service_account: self.k8s_service_account,
        }
    }
}

// `keyless setup github-to-aws`.
#[derive(Debug, Args)]
pub struct GithubToAwsArgs {
    #[command(flatten)]
    pub github: GithubSourceArgs,
    #[command(flatten)]
    pub target: AwsRoleTargetArgs,
}

// `keyless setup github-to-gcp`.
#[derive(Debug, Args)]
pub struct GithubToGcpArgs {
    #[command(flatten)]
    pub github: GithubSourceArgs,
    #[command(flatten)]
    pub target: GcpTargetArgs,
    /// What to print.
    #[arg(long, value_enum)]
    pub format: AwsToGcpFormat,
}

// `keyless setup k8s-to-aws`.
#[derive(Debug, Args)]
pub struct K8sToAwsArgs {
    #[command(flatten)]
    pub k8s: K8sSourceArgs,
    #[command(flatten)]
    pub target: AwsRoleTargetArgs,
}

// `keyless setup k8s-to-gcp`.
#[derive(Debug, Args)]
pub struct K8sToGcpArgs {
    #[command(flatten)]
    pub k8s: K8sSourceArgs,
    #[command(flatten)]
    pub target: GcpTargetArgs,
    /// What to print.
    #[arg(long, value_enum)]
    pub format: AwsToGcpFormat,
}

// A pair that cannot work (`aws-oidc-to-aws`): whatever flags follow are taken, so that the
// user sees why and what to do instead rather than a flag error.
#[derive(Debug, Args)]
pub struct RefusedPairArgs {
    /// Ignored.
    #[arg(hide = true, num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub ignored: Vec<String>,
}

// `keyless setup aws-oidc-to-gcp`.
#[derive(Debug, Args)]
pub struct AwsOidcToGcpArgs {
    /// The account's outbound issuer, https://ID.tokens.sts.global.api.aws (from
    /// aws iam enable-outbound-web-identity-federation or get-outbound-web-identity-federation-info).
    #[arg(long, value_name = "URL")]
    pub aws_issuer: String,
    /// The 12-digit account of the calling role.
    #[arg(long)]
    pub aws_account: String,
    /// The calling role's name (the token's sub is its ARN, not the session's).
    #[arg(long)]
    pub aws_role: String,
    /// Also require the AWS organization (the token's https://sts.amazonaws.com/ org_id).
    #[arg(long, value_name = "ID")]
    pub aws_org_id: Option<String>,
    #[command(flatten)]
    pub target: GcpTargetArgs,
    /// What to print (CloudFormation: the AWS side, with the Google side as gcloud commands).
    #[arg(long, value_enum)]
    pub format: GcpToAwsFormat,
}

fn to_aws(
    (spec, format, audit): (OidcToAws, GcpToAwsFormat, bool),
) -> Result<String, setup::InvalidInput> {
    spec.validate()?;
    let audit = audit.then(|| spec.audit());
    let (spec, audit) = (&spec, audit.as_ref());
    Ok(match format {
        GcpToAwsFormat::Terraform => setup::terraform::oidc_to_aws(spec, audit),
        GcpToAwsFormat::Cloudformation => setup::cloudformation::oidc_to_aws(spec, audit),
        GcpToAwsFormat::Shell => setup::shell::oidc_to_aws(spec, audit),
        GcpToAwsFormat::Pulumi => setup::pulumi::oidc_to_aws(spec, audit),
    })
}

fn to_gcp(
    (spec, audit): (OidcToGcp, bool),
    format: AwsToGcpFormat,
) -> Result<String, setup::InvalidInput> {
    spec.validate()?;
    let audit = audit.then(|| spec.audit());
    let (spec, audit) = (&spec, audit.as_ref());
    Ok(match format {
        AwsToGcpFormat::Terraform => setup::terraform::oidc_to_gcp(spec, audit),
        AwsToGcpFormat::Shell => setup::shell::oidc_to_gcp(spec, audit),
        AwsToGcpFormat::Pulumi => setup::pulumi::oidc_to_gcp(spec, audit),
    })
}

/// Validates, prints the configuration on stdout; a bad value exits with the usage code.
pub async fn run(command: SetupCommand) -> anyhow::Result<i32> {
    let text = match command {
        SetupCommand::GcpToAws(a) => {
            let spec = GcpToAws {
                service_account: a.service_account,
                service_account_id: a.service_account_id,
                aws_account: a.aws_account,
                role_name: a.role_name,
                audience: a.audience,
                policy_arns: a.role.policy_arns,
                max_session_duration: a.role.max_session_duration.as_secs_u32(),
            };
            if let Err(e) = spec.validate() {
                eprintln!("keyless: {e}");
                return Ok(exit_code::USAGE);
            }
            let audit = a.role.audit.then(|| spec.audit());
            let audit = audit.as_ref();
            match a.role.format {
                GcpToAwsFormat::Terraform => setup::terraform::gcp_to_aws(&spec, audit),
                GcpToAwsFormat::Cloudformation => setup::cloudformation::gcp_to_aws(&spec, audit),
                GcpToAwsFormat::Shell => setup::shell::gcp_to_aws(&spec, audit),
                GcpToAwsFormat::Pulumi => setup::pulumi::gcp_to_aws(&spec, audit),
            }
        }
        SetupCommand::GithubToAws(a) => match to_aws(a.target.plan(a.github.source())) {
            Ok(text) => text,
            Err(e) => return Ok(usage(e)),
        },
        SetupCommand::K8sToAws(a) => match to_aws(a.target.plan(a.k8s.source())) {
            Ok(text) => text,
            Err(e) => return Ok(usage(e)),
        },
        SetupCommand::AwsOidcToAws(_) => {
            eprintln!("keyless: setup aws-oidc-to-aws: {AWS_OIDC_TO_AWS_REFUSED}");
            return Ok(exit_code::USAGE);
        }
        SetupCommand::GithubToGcp(a) => match to_gcp(a.target.plan(a.github.source()), a.format) {
            Ok(text) => text,
            Err(e) => return Ok(usage(e)),
        },
        SetupCommand::K8sToGcp(a) => match to_gcp(a.target.plan(a.k8s.source()), a.format) {
            Ok(text) => text,
            Err(e) => return Ok(usage(e)),
        },
        SetupCommand::AwsOidcToGcp(a) => {
            let (spec, audit) = a.target.plan(OidcSource::AwsOutbound {
                issuer: a.aws_issuer,
                account: a.aws_account,
                role: a.aws_role,
                org_id: a.aws_org_id,
            });
            let format = match a.format {
                GcpToAwsFormat::Terraform => Some(AwsToGcpFormat::Terraform),
                GcpToAwsFormat::Shell => Some(AwsToGcpFormat::Shell),
                GcpToAwsFormat::Pulumi => Some(AwsToGcpFormat::Pulumi),
                GcpToAwsFormat::Cloudformation => None,
            };
            let text = match format {
                Some(format) => to_gcp((spec, audit), format),
                None => spec.validate().map(|()| {
                    let audit = audit.then(|| spec.audit());
                    setup::cloudformation::oidc_to_gcp(&spec, audit.as_ref())
                }),
            };
            match text {
                Ok(text) => text,
                Err(e) => return Ok(usage(e)),
            }
        }
        SetupCommand::AwsToGcp(a) => {
            let spec = AwsToGcp {
                project_id: a.project_id,
                project_number: a.project_number,
                pool: a.pool,
                provider: a.provider,
                aws_account: a.aws_account,
                aws_role: a.aws_role,
                service_account: a.service_account,
                role: a.role,
            };
            if let Err(e) = spec.validate() {
                eprintln!("keyless: {e}");
                return Ok(exit_code::USAGE);
            }
            let audit = a.audit.then(|| spec.audit());
            let audit = audit.as_ref();
            match a.format {
                AwsToGcpFormat::Terraform => setup::terraform::aws_to_gcp(&spec, audit),
                AwsToGcpFormat::Shell => setup::shell::aws_to_gcp(&spec, audit),
                AwsToGcpFormat::Pulumi => setup::pulumi::aws_to_gcp(&spec, audit),
            }
        }
    };
    print!("{text}");
    Ok(0)
}

fn usage(e: setup::InvalidInput) -> i32 {
    eprintln!("keyless: {e}");
    exit_code::USAGE
}
