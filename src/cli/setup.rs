//! `keyless setup`: print the resources a federation needs, in the format the team deploys with.
//!
//! Nothing is created: the output is reviewed and applied by the user's own tooling, so keyless
//! never needs rights to change IAM.

use clap::{Args, Subcommand, ValueEnum};

use crate::cli::exit_code;
use crate::duration::Seconds;
use crate::setup::{self, AwsToGcp, GcpToAws, DEFAULT_AWS_AUDIENCE};

/// The `setup` subcommands, one per direction.
#[derive(Debug, Subcommand)]
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

/// `keyless setup gcp-to-aws`.
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
    /// A managed policy to attach (repeatable).
    #[arg(long = "policy-arn", value_name = "ARN")]
    pub policy_arns: Vec<String>,
    /// The role's maximum session duration: 1h to 12h, as 3600s, 90m, 1h or plain seconds.
    #[arg(long, value_name = "DUR", default_value_t = Seconds::new(3600),
          value_parser = clap::value_parser!(Seconds))]
    pub max_session_duration: Seconds,
    /// What to print.
    #[arg(long, value_enum)]
    pub format: GcpToAwsFormat,
}

/// `keyless setup aws-to-gcp`.
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
    /// What to print.
    #[arg(long, value_enum)]
    pub format: AwsToGcpFormat,
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
                policy_arns: a.policy_arns,
                max_session_duration: a.max_session_duration.as_secs_u32(),
            };
            if let Err(e) = spec.validate() {
                eprintln!("keyless: {e}");
                return Ok(exit_code::USAGE);
            }
            match a.format {
                GcpToAwsFormat::Terraform => setup::terraform::gcp_to_aws(&spec),
                GcpToAwsFormat::Cloudformation => setup::cloudformation::gcp_to_aws(&spec),
                GcpToAwsFormat::Shell => setup::shell::gcp_to_aws(&spec),
                GcpToAwsFormat::Pulumi => setup::pulumi::gcp_to_aws(&spec),
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
            match a.format {
                AwsToGcpFormat::Terraform => setup::terraform::aws_to_gcp(&spec),
                AwsToGcpFormat::Shell => setup::shell::aws_to_gcp(&spec),
                AwsToGcpFormat::Pulumi => setup::pulumi::aws_to_gcp(&spec),
            }
        }
    };
    print!("{text}");
    Ok(0)
}
