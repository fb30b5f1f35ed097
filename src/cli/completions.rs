//! `keyless completions SHELL`: tab completion generated from the same clap definitions the
//! binary parses with, so it can never drift from the flags.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

// `keyless completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script for `args.shell` on standard output.
pub fn run(args: CompletionsArgs) -> anyhow::Result<i32> {
    let mut command = super::Cli::command();
    command.build();
    let mut command = command.mut_subcommands(inherited_flags_last);
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "keyless", &mut script);
    super::print_bytes(&script)?;
    Ok(0)
}

/// A deferred command (see [`super::command`]) gets the global flags it inherits before its own,
/// and a completion script lists flags in the order they were added: moving the inherited
/// ones (then `--help`, `--version`) back to the end keeps the scripts as they were.
fn inherited_flags_last(command: clap::Command) -> clap::Command {
    let mut last: Vec<String> = command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().to_string())
        .collect();
    last.extend(
        ["help", "version"]
            .into_iter()
            .filter(|id| command.get_arguments().any(|a| a.get_id() == *id))
            .map(String::from),
    );
    let command = last
        .iter()
        .fold(command, |command, id| command.mut_arg(id, |arg| arg));
    command.mut_subcommands(inherited_flags_last)
}
