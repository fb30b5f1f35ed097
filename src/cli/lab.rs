//! `keyless lab`: the offline emulation, running until Ctrl-C.
use clap::Args;

/// `keyless lab`.
#[derive(Debug, Args)]
pub struct LabArgs {}

/// Runs the lab.
pub async fn run(_args: LabArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not yet")
}
