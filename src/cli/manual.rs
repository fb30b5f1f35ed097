//! `keyless man`: roff man pages generated from the clap definitions (one per command), so
//! packagers need no separate documentation build.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};

// `keyless man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write keyless.1 and one page per subcommand (keyless-aws-credentials.1, ...) into this
    /// directory instead of printing keyless.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Prints `keyless(1)`, or writes every page into `--out-dir`.
pub fn run(args: ManArgs) -> anyhow::Result<i32> {
    let command = super::Cli::command();
    match args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("could not write man pages into {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("could not render the man page")?;
            super::print_bytes(&page)?;
        }
    }
    Ok(0)
}
