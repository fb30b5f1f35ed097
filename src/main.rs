//! The `keyless` binary: parse the command line, run the library, map errors to exit codes.

use std::io::IsTerminal;

use clap::parser::ValueSource;
use clap::FromArgMatches;
use keyless::cli::{self, Cli, LogFormat};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

fn main() {
    // First, while the process has one thread: socket activation's variables are removed here.
    let passed_sockets = match keyless::deliver::listen_fds::adopt_from_systemd() {
        Ok(passed) => passed,
        Err(error) => {
            eprintln!("keyless: {error}");
            std::process::exit(cli::exit_code::USAGE);
        }
    };
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = match cli::config_defaults::command_for(&args) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("keyless: {error}");
            std::process::exit(cli::exit_code::USAGE);
        }
    };
    let matches = command.get_matches_from(&args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Before any secret is read: no core dumps, no same-user /proc/PID/mem. `exec` leaves the
    // core limit to the program it becomes.
    let runs_another_program = match &cli.command {
        cli::Command::Aws(c) => matches!(**c, cli::aws::AwsCommand::Exec(_)),
        cli::Command::Gcp(c) => matches!(**c, cli::gcp::GcpCommand::Exec(_)),
        _ => false,
    };
    keyless::secret::keep_out_of_core_dumps(if runs_another_program {
        keyless::secret::CoreLimit::Inherited
    } else {
        keyless::secret::CoreLimit::Zero
    });
    let log_format = log_format(&cli, matches.value_source("log_format"));
    init_logging(&cli, log_format);
    for (addr, name) in &passed_sockets {
        tracing::info!(%addr, name = %name, "socket activation passed a listening socket");
    }
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
            let code = cli::exit_code_for(&error);
            match log_format {
                LogFormat::Text => eprintln!("keyless: {error:#}"),
                LogFormat::Json => eprintln!("{}", final_error_json(&error, code)),
            }
            code
        }
    };
    std::process::exit(code);
}

/// The final error as one JSON object line, shaped like the log lines (`timestamp`, `level`,
/// `fields.message`) plus the exit code and each cause of the chain, outermost first; a log
/// pipeline reading `--log-format json` then never meets a line it cannot parse.
fn final_error_json(error: &anyhow::Error, code: i32) -> serde_json::Value {
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::json!({
        "timestamp": timestamp,
        "level": "ERROR",
        "target": "keyless",
        "fields": {
            "message": format!("{error:#}"),
            "exit_code": code,
            "error_chain": error.chain().map(|cause| cause.to_string()).collect::<Vec<_>>(),
        },
    })
}

/// `--log-format` (or KEYLESS_LOG_FORMAT) when given, else the daemon's file may say.
fn log_format(cli: &Cli, source: Option<ValueSource>) -> LogFormat {
    let explicit = matches!(
        source,
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    match &cli.command {
        cli::Command::Serve(_) if !explicit => {
            let path = cli
                .config
                .clone()
                .unwrap_or_else(|| keyless::config::DEFAULT_CONFIG_FILE.into());
            match keyless::config::peek_log_format(&path) {
                Some(keyless::config::LogFormat::Json) => LogFormat::Json,
                Some(keyless::config::LogFormat::Text) => LogFormat::Text,
                None => cli.log_format,
            }
        }
        _ => cli.log_format,
    }
}

/// Logs go to stderr (stdout carries credentials); RUST_LOG wins over -v/-q.
fn init_logging(cli: &Cli, format: LogFormat) {
    // A daemon's start, reload and refresh lines are its output: info unless told otherwise.
    let quiet_default = match cli.command {
        cli::Command::Serve(_) => "info",
        _ => "warn",
    };
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => quiet_default,
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // The demo shows the lab's refusals itself; its log lines would only repeat them.
    let level = match cli.command {
        cli::Command::Demo(_) => format!("{level},keyless::lab=error"),
        _ => level.to_string(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Whatever RUST_LOG says, the AWS SDK's trace events stay off: they print whole requests,
    // headers included (the IMDS session token, the container authorization token).
    let no_secrets = filter_fn(|meta| {
        *meta.level() != tracing::Level::TRACE
            || !SECRET_TRACING_TARGETS
                .iter()
                .any(|target| meta.target().starts_with(target))
    });
    let filter = filter.and(no_secrets);
    // Colour only for a person at a terminal: SDKs show credential_process's stderr in their own
    // error messages, where escape codes are garbage.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(audit_journal())
            .with(layer.json().with_filter(filter))
            .init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(audit_journal())
            .with(layer.without_time().with_target(false).with_filter(filter))
            .init(),
    }
}

/// Under systemd (which sets `JOURNAL_STREAM` for a service whose output goes to the journal),
/// every audit event also goes to the journal as its own entry with one field per value
/// (`OUTCOME=ok`, `ROLE=…`, `REQUEST_ID=…`), so `journalctl -t keyless OUTCOME=refused` finds
/// refusals; whatever -v/-q say, since an audit trail is not verbosity.
fn audit_journal<S>() -> Option<impl Layer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    std::env::var_os("JOURNAL_STREAM")?;
    let journal = match tracing_journald::layer() {
        Ok(journal) => journal.with_syslog_identifier("keyless".into()),
        Err(e) => {
            eprintln!("keyless: JOURNAL_STREAM is set but the journal cannot be reached ({e}); audit events go to the log only");
            return None;
        }
    };
    Some(journal.with_filter(filter_fn(|meta| {
        meta.target() == keyless::audit::LOG_TARGET && *meta.level() <= tracing::Level::INFO
    })))
}

/// Crates whose `trace` events carry credentials (the AWS SDK's orchestrator logs every request
/// and response it sends, headers and all); `tests/integration/secrets.rs` finds what else would leak.
const SECRET_TRACING_TARGETS: &[&str] = &["aws_smithy_"];
