//! `keyless completions SHELL`: tab completion generated from the same clap definitions the
//! binary parses with, so it can never drift from the flags.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// `keyless completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script for `args.shell` on standard output.
pub fn run(args: CompletionsArgs) -> anyhow::Result<i32> {
    let mut command = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "keyless", &mut script);
    super::print_bytes(&script)?;
    Ok(0)
}
