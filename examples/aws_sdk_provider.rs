//! Plug keyless into the AWS SDK for Rust: a service on GKE, GCE or Cloud Run calls AWS with
//! its Google identity, no keys and no sidecar.
//!
//! Against the offline lab:
//!
//! ```sh
//! cargo run -- lab --env-file lab.env &      # wait for the lines, then:
//! . ./lab.env
//! cargo run --example aws_sdk_provider -- arn:aws:iam::123456789012:role/gcp-deploy
//! ```
//!
//! On GCP, drop the lab and pass your role: the token comes from the metadata server.

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use keyless::deliver::aws_sdk::GoogleFederatedProvider;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let role_arn = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: aws_sdk_provider ROLE_ARN"))?;
    let provider = GoogleFederatedProvider::builder(role_arn).build()?;

    // The one line: every client built from `config` now gets keyless's credentials.
    let config = aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(provider)
        .load()
        .await;

    // An SDK client (aws_sdk_s3::Client::new(&config), ...) would call this itself.
    let credentials = config
        .credentials_provider()
        .ok_or_else(|| anyhow::anyhow!("no credentials provider"))?
        .provide_credentials()
        .await?;
    println!(
        "access key {} (expires {:?})",
        credentials.access_key_id(),
        credentials.expiry()
    );
    Ok(())
}
