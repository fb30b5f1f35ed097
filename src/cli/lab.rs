//! `keyless lab`: the offline emulation as a process, for trying keyless and the SDKs by hand.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::deliver::env::export_lines;
use crate::lab::{Lab, LabConfig, LabPorts};

// `keyless lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// Port of the Google metadata server emulation (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub metadata_port: u16,
    /// Port of the Google APIs emulation: IAM Credentials, OAuth, JWKS, Cloud Logging
    /// (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub google_port: u16,
    /// Port of the AWS STS emulation, which also serves CloudTrail (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub sts_port: u16,
    /// Port of the EC2 IMDSv2 and container-credentials emulation (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub aws_metadata_port: u16,
    /// Also write the `export` lines to this file (for scripts: `. FILE`).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Also serve AWS STS and the Google APIs over HTTPS, with a certificate from a CA made at
    /// start and written to PATH; the export lines then name the https:// endpoints and
    /// SSL_CERT_FILE=PATH (so keyless trusts that CA alone).
    #[arg(long, value_name = "PATH")]
    pub tls_ca_file: Option<PathBuf>,

    /// Answer every upstream call (AWS STS, Google STS, IAM Credentials) after this long, as a
    /// real endpoint 20–100 ms away would: `50ms`, `1s` (default: at once).
    #[arg(long, value_name = "DUR", value_parser = parse_latency)]
    pub latency: Option<std::time::Duration>,
    /// Lab only: issue AWS sessions and Google tokens lasting at most this long (`60s`), to see
    /// many refreshes in a short run. Real STS refuses `DurationSeconds` below 900; the lab
    /// accepts the request as STS would and caps what it issues.
    #[arg(long, value_name = "DUR")]
    pub credential_lifetime: Option<crate::duration::Seconds>,
    /// Answer upstream calls with the service's throttling error (AWS `Throttling`, Google
    /// `RESOURCE_EXHAUSTED`) while more than N are in flight.
    #[arg(long, value_name = "N")]
    pub throttle_above: Option<u32>,

    /// Append every secret the lab issues to this file (for leak tests).
    #[arg(long, hide = true, env = "KEYLESS_LAB_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
}

/// Runs the lab until Ctrl-C or SIGTERM.
pub async fn run(args: LabArgs) -> anyhow::Result<i32> {
    let mut config = LabConfig::demo();
    config.upstream_latency = args.latency.unwrap_or_default();
    config.credential_lifetime_cap = args.credential_lifetime.map(Into::into);
    config.throttle_above = args.throttle_above;
    let mut lab = Lab::start_on(
        config.clone(),
        LabPorts {
            metadata: args.metadata_port,
            google_apis: args.google_port,
            aws_sts: args.sts_port,
            aws_metadata: args.aws_metadata_port,
        },
    )
    .await
    .context("could not start the lab")?;
    if let Some(path) = &args.secrets_file {
        lab.record_issued_secrets_to(path)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    let mut env = lab.env();
    if let Some(path) = &args.tls_ca_file {
        let https = lab
            .serve_https()
            .await
            .context("could not serve the lab over HTTPS")?;
        crate::private_file::write_private_file_atomically(path, https.ca_pem.as_bytes())
            .with_context(|| format!("could not write {}", path.display()))?;
        for (name, value) in https.env(path) {
            match env.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => env.push((name, value)),
            }
        }
    }
    // Before the export lines: a script that read them may stop the lab at once.
    let shutdown = crate::deliver::server::shutdown_signal();
    let exports = export_lines(&env);
    if let Some(path) = &args.env_file {
        // Atomic, so a script polling for the file never reads half of it.
        crate::private_file::write_private_file_atomically(path, exports.as_bytes())
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    print!("{exports}");
    eprintln!("\nkeyless lab is running; Ctrl-C stops it. The lines above point keyless and the SDKs at it.");
    eprintln!(
        "\nservice accounts (the metadata server acts as {}):",
        config.metadata_service_account
    );
    for sa in &config.service_accounts {
        eprintln!("  {}  unique id {}", sa.email, sa.unique_id);
    }
    eprintln!("AWS roles:");
    for role in &config.roles {
        eprintln!("  {}", lab.role_arn(&role.name));
    }
    for user in &config.iam_users {
        eprintln!(
            "AWS IAM user {} (access key {})",
            user.name, user.access_key_id
        );
    }
    eprintln!("Google workload identity provider (admits sessions of aws-workload):");
    eprintln!("  {}", lab.workload_identity_audience());
    eprintln!("AWS-side endpoints for AWS → GCP experiments:");
    eprintln!(
        "  AWS_EC2_METADATA_SERVICE_ENDPOINT={}",
        lab.imds_endpoint()
    );
    eprintln!(
        "  AWS_CONTAINER_CREDENTIALS_FULL_URI={}  AWS_CONTAINER_AUTHORIZATION_TOKEN=<printed below>",
        lab.container_credentials_uri("aws-workload")
    );
    eprintln!(
        "  container authorization token: {}",
        lab.container_authorization_token()
    );
    eprintln!("Audit records (what the clouds recorded of the calls above):");
    eprintln!(
        "  CloudTrail LookupEvents: AWS_ENDPOINT_URL_CLOUDTRAIL={}  (signed with ci-user's key or any session the lab issued)",
        lab.cloudtrail_url()
    );
    eprintln!(
        "  Cloud Logging entries.list and getIamPolicy: --logging-url {}  (Data Access logs on for {})",
        lab.logging_url(),
        config.data_access_logs.join(", ")
    );
    // A projected token kept fresh as the kubelet would, and a GitHub Actions job's variables.
    let k8s_dir =
        tempfile::tempdir().context("could not create a directory for the Kubernetes token")?;
    let k8s_token = k8s_dir.path().join("token");
    let rotation = lab
        .project_kubernetes_token(&k8s_token, "default", "deployer")
        .context("could not write the Kubernetes token")?;
    eprintln!("Kubernetes (system:serviceaccount:default:deployer; role k8s-deploy trusts it):");
    eprintln!(
        "  keyless aws credentials --token-source k8s:{} --role-arn {}",
        k8s_token.display(),
        lab.role_arn("k8s-deploy")
    );
    eprintln!(
        "GitHub Actions (repo:{}:ref:refs/heads/main; role github-deploy trusts it), export:",
        crate::lab::DEMO_GITHUB_REPOSITORY
    );
    for (name, value) in lab.github_actions_env() {
        eprintln!("  export {name}='{value}'");
    }
    eprintln!(
        "  keyless aws credentials --token-source github --role-arn {}",
        lab.role_arn("github-deploy")
    );
    eprintln!(
        "\ntry:\n  keyless aws credentials --role-arn {gcp}\n  keyless aws whoami --role-arn {gcp}\n  \
         AWS_EC2_METADATA_SERVICE_ENDPOINT={imds} keyless gcp token --audience {aud} --service-account copycat@keyless-lab.iam.gserviceaccount.com",
        gcp = lab.role_arn("gcp-deploy"),
        imds = lab.imds_endpoint(),
        aud = lab.workload_identity_audience(),
    );
    shutdown.await;
    rotation.abort();
    lab.shutdown().await;
    Ok(0)
}

/// `50ms`, or a duration in seconds as everywhere else (`1s`, `2`).
fn parse_latency(text: &str) -> Result<std::time::Duration, String> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(std::time::Duration::from_millis)
            .map_err(|_| {
                format!(
                    "{text:?} is not a latency\n  hint: write milliseconds (50ms) or seconds (1s)"
                )
            });
    }
    text.parse::<crate::duration::Seconds>()
        .map(Into::into)
        .map_err(|e| e.to_string())
}
