//! `keyless demo`: the GCP → AWS flow against the lab, step by step.
use clap::Args;

/// `keyless demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {}

/// Runs the demo.
pub async fn run(_args: DemoArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not yet")
}
