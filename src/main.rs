//! The `keyless` binary: parse the command line, run the library, map errors to exit codes.

use std::io::IsTerminal;

use clap::Parser;
use keyless::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyless: could not start the runtime: {e}");
            std::process::exit(cli::exit_code::FAILURE);
        }
    };
    let code = match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("keyless: {error:#}");
            cli::exit_code_for(&error)
        }
    };
    std::process::exit(code);
}

/// Logs go to stderr (stdout carries credentials); RUST_LOG wins over -v/-q.
fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // The demo shows the lab's refusals itself; its log lines would only repeat them.
    let level = match cli.command {
        cli::Command::Demo(_) => format!("{level},keyless::lab=error"),
        _ => level.to_string(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colour only for a person at a terminal: SDKs show credential_process's stderr in their own
    // error messages, where escape codes are garbage.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.without_time().with_target(false).init(),
    }
}
