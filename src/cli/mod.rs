//! The command line: clap definitions, one file per top-level command, no protocol logic.
//!
//! Flags are a contract users script against (DESIGN.md): the same flag means the same thing
//! under every command, and each can also come from a `KEYLESS_*` environment variable.
//!
//! Doc comments on flags are their `--help` text, written for a terminal: bare URLs and
//! `[defaults]` there are meant literally, not as rustdoc links.
#![allow(rustdoc::bare_urls, rustdoc::broken_intra_doc_links)]

pub mod audit;
pub mod aws;
pub mod completions;
pub mod config_defaults;
pub mod demo;
pub mod doctor;
pub mod gcp;
pub mod lab;
pub mod lint;
pub mod manual;
pub mod probe;
pub mod serve;
pub mod setup;

use clap::{Parser, Subcommand, ValueEnum};

use crate::duration::Seconds;

/// keyless: a workload's identity in one cloud becomes short-lived credentials in another.
#[derive(Debug, Parser)]
#[command(
    name = "keyless",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "Every flag can also be set with a KEYLESS_* environment variable (shown in each command's\n\
                  help) and in keyless.toml ([defaults], or [profile.NAME] with --config-profile NAME).\n\
                  Precedence: command line, environment, profile, [defaults], built-in default.\n\n\
                  Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 refused by the other\n\
                  cloud (trust policy, token rejected), 4 an endpoint unreachable or failing (retry later).\n\n\
                  Logs go to stderr: -v info, -vv debug, -q errors only, --log-format json; RUST_LOG wins.\n\
                  -v logs one line per exchange (identity, role, session, expiry, request id), delivery\n\
                  and refresh; -vv each step too. With --log-format json the final error is a JSON line\n\
                  as well, with its exit code and error chain."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = GLOBAL_OPTIONS)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL_OPTIONS)]
    pub quiet: bool,

    /// How log lines look.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KEYLESS_LOG_FORMAT",
          help_heading = GLOBAL_OPTIONS)]
    pub log_format: LogFormat,

    /// The keyless.toml to read: flag values for every command ([defaults], and the profile
    /// chosen with --config-profile), and the profiles `serve` runs. Default for `serve`:
    /// ./keyless.toml; for the other commands: ~/.config/keyless/keyless.toml when it exists.
    #[arg(long, global = true, env = "KEYLESS_CONFIG", value_name = "PATH", help_heading = GLOBAL_OPTIONS)]
    pub config: Option<std::path::PathBuf>,

    /// Take this command's flag values from [profile.NAME] of the configuration file
    /// (the command line and KEYLESS_* variables still win).
    #[arg(
        long,
        global = true,
        env = "KEYLESS_CONFIG_PROFILE",
        value_name = "NAME",
        help_heading = GLOBAL_OPTIONS
    )]
    pub config_profile: Option<String>,

    /// Append one JSON line per exchange (who became what, until when, the upstream request
    /// ids, the outcome; never a secret) to PATH: created 0600, reopened on SIGHUP for
    /// logrotate. See docs/audit.md.
    #[arg(long, global = true, env = "KEYLESS_AUDIT_LOG", value_name = "PATH", help_heading = GLOBAL_OPTIONS)]
    pub audit_log: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The `--help` heading of the flags every command takes, so they do not interleave with the
/// command's own.
pub const GLOBAL_OPTIONS: &str = "Global options";

/// The command tree as `keyless` parses it: [`Cli::command`] with every command's after-help
/// (its examples) printed as written.
///
/// clap re-wraps `after_help` to the terminal's width, which splits an example line without its
/// `\` (or an INI line that cannot have one), so a copied example no longer runs. The literal
/// text of a help template is not re-wrapped: each command with an after-help gets the default
/// template with that text appended verbatim. Completions and man pages do not use templates.
///
/// Each command's flags are added only when that command is parsed or its help shown
/// (`#[command(defer = true)]` on every subcommand enum): a cached `credential_process` run
/// builds the flags of `aws credentials` alone, not those of all 40 commands; building and
/// dropping the whole tree was 60% of such a run's instructions (BENCHMARKS.md, "Profile").
/// clap adds a deferred command's flags after its variant's doc comment, so an `Args` struct's
/// own doc comment would replace the command's about: those structs carry `//` comments.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    verbatim_after_help(Cli::command())
}

fn verbatim_after_help(mut command: clap::Command) -> clap::Command {
    for sub in command.get_subcommands_mut() {
        *sub = verbatim_after_help(std::mem::take(sub));
    }
    match command.get_after_help().map(|text| text.to_string()) {
        // clap's own default template, with `{after-help}` (wrapped) replaced by the text.
        Some(text) => command.help_template(format!(
            "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{{all-args}}\n\n{text}"
        )),
        None => command,
    }
}

/// Log line format on stderr.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// GCP → AWS: trade a Google identity for AWS credentials.
    #[command(subcommand)]
    Aws(Box<aws::AwsCommand>),
    /// AWS → GCP: trade an AWS identity for Google tokens (workload identity federation).
    #[command(subcommand)]
    Gcp(Box<gcp::GcpCommand>),
    /// Run the offline lab (Google metadata, IAM Credentials and AWS STS emulations) until Ctrl-C.
    #[command(
        after_help = "Example:\n  keyless lab --env-file lab.env &\n  . ./lab.env && keyless aws credentials --role-arn arn:aws:iam::123456789012:role/gcp-deploy"
    )]
    Lab(lab::LabArgs),
    /// Walk through the GCP → AWS flow against the built-in lab, step by step.
    #[command(after_help = "Example:\n  keyless demo")]
    Demo(demo::DemoArgs),
    /// Run every profile of a keyless.toml (both directions) in one process; SIGHUP reloads.
    #[command(
        after_help = "Example:\n  keyless serve --config /etc/keyless/keyless.toml --metrics-listen 127.0.0.1:9090\n  kill -HUP $(pidof keyless)   # re-read the file; only changed profiles restart"
    )]
    Serve(serve::ServeArgs),
    /// Say exactly why a federation fails: claims, condition keys, the trust policy, the exchange.
    #[command(subcommand)]
    Doctor(doctor::DoctorCommand),
    /// Find trust policies, providers and bindings that let the wrong identity in.
    #[command(
        after_help = "Examples:\n  keyless lint trust-policy.json\n  aws iam get-role --role-name DeploymentRole > role.json && keyless lint role.json --fail-on medium\n  keyless lint --format sarif policies/*.json > lint.sarif"
    )]
    Lint(lint::LintArgs),
    /// Read what the clouds recorded (CloudTrail, Cloud Audit Logs): who crossed which boundary, as whom.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print the cloud resources a federation needs (Terraform, CloudFormation, shell, Pulumi).
    #[command(subcommand)]
    Setup(setup::SetupCommand),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    #[command(
        after_help = "Examples:\n  keyless completions bash > /etc/bash_completion.d/keyless\n  keyless completions zsh > \"${fpath[1]}/_keyless\"\n  keyless completions fish > ~/.config/fish/completions/keyless.fish\n  keyless completions powershell >> $PROFILE"
    )]
    Completions(completions::CompletionsArgs),
    /// Print the man page, or write one per command into a directory.
    #[command(
        after_help = "Examples:\n  keyless man | man -l -\n  keyless man --out-dir /usr/local/share/man/man1"
    )]
    Man(manual::ManArgs),
    /// Health check: GET an http:// URL (a keyless /healthz); exit 0 on a 2xx answer, 1 otherwise.
    #[command(
        after_help = "For images without a shell or curl (the distroless keyless image): Docker HEALTHCHECK,\n\
                      ECS healthCheck, a Kubernetes exec probe. Sends no credentials, follows no redirect.\n\n\
                      Examples:\n  \
                      keyless probe http://127.0.0.1:9910/healthz\n  \
                      keyless probe --timeout 5 http://127.0.0.1:9910/healthz || echo unhealthy\n\n\
                      In a Dockerfile (keyless serving --metrics-listen 127.0.0.1:9910):\n  \
                      HEALTHCHECK CMD [\"/usr/local/bin/keyless\", \"probe\", \"http://127.0.0.1:9910/healthz\"]"
    )]
    Probe(probe::ProbeArgs),
}

// Who may reach a local endpoint; shared by `aws serve`, `gcp serve` and `keyless serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct AccessArgs {
    /// Allow the endpoints to listen on non-loopback addresses (0.0.0.0, a bridge or LAN
    /// address; allow_remote = true in keyless.toml): anything that can reach them can take the
    /// credentials. Each listener still checks Host for its own address: a loopback one as
    /// without this flag, others take IP addresses and --allowed-host names only.
    #[arg(long, env = "KEYLESS_ALLOW_REMOTE")]
    pub allow_remote: bool,

    /// A DNS name (or address) clients may send in Host besides the endpoint's own, e.g.
    /// host.docker.internal (allowed_hosts in keyless.toml); repeatable. Names are refused by
    /// default: DNS rebinding carries one.
    #[arg(
        long = "allowed-host",
        value_name = "HOST",
        env = "KEYLESS_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<crate::deliver::server::AllowedHost>,
}

impl AccessArgs {
    /// Who may reach the endpoints, as the servers take it.
    pub fn access(&self) -> crate::deliver::server::Access {
        crate::deliver::server::Access {
            allow_remote: self.allow_remote,
            allowed_hosts: self.allowed_hosts.clone(),
        }
    }
}

// How long the exchanges may take; shared by every command that calls an upstream.
#[derive(Clone, Debug, clap::Args)]
pub struct TimeoutArgs {
    /// Give up on one attempt (connect, send, read the whole answer) after this long: 1s to
    /// 30s, as 5s or plain seconds; it is retried if the upstream may recover and the deadline
    /// allows.
    #[arg(long, env = "KEYLESS_ATTEMPT_TIMEOUT", value_name = "DUR",
          default_value_t = Seconds::new(crate::exchange::retry::DEFAULT_ATTEMPT_TIMEOUT.as_secs()),
          value_parser = Seconds::parser_within(1..=30))]
    pub attempt_timeout: Seconds,

    /// Give up altogether (every attempt and the waits between them) after this long: 1s to
    /// 1h, as 90s, 15m, 1h or plain seconds.
    #[arg(long, env = "KEYLESS_DEADLINE", value_name = "DUR",
          default_value_t = Seconds::new(crate::exchange::retry::DEFAULT_DEADLINE.as_secs()),
          value_parser = Seconds::parser_within(1..=3600))]
    pub deadline: Seconds,
}

impl TimeoutArgs {
    /// The retry policy these limits make.
    pub fn retry_policy(&self) -> crate::exchange::retry::RetryPolicy {
        crate::exchange::retry::RetryPolicy {
            attempt_timeout: self.attempt_timeout.as_duration(),
            deadline: self.deadline.as_duration(),
            ..Default::default()
        }
    }
}

/// Process exit codes, so scripts can tell a refusal from an outage.
pub use crate::classify::exit_code;

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    crate::audit::set_process_profile(cli.config_profile.clone());
    if let Some(path) = &cli.audit_log {
        crate::audit::install_log(crate::audit::AuditLog::open(path)?);
        // `serve` reopens it itself, before reloading (its SIGHUP).
        if !matches!(cli.command, Command::Serve(_)) {
            reopen_audit_log_on_hangup()?;
        }
    }
    match cli.command {
        Command::Aws(cmd) => aws::run(*cmd).await,
        Command::Gcp(cmd) => gcp::run(*cmd).await,
        Command::Lab(args) => lab::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => {
            let path = cli
                .config
                .unwrap_or_else(|| crate::config::DEFAULT_CONFIG_FILE.into());
            crate::daemon::run(args.options(path)).await
        }
        Command::Lint(args) => lint::run(args).await,
        Command::Doctor(cmd) => doctor::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Setup(cmd) => setup::run(cmd).await,
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => manual::run(args),
        Command::Probe(args) => probe::run(args).await,
    }
}

/// SIGHUP reopens `--audit-log` (logrotate's `postrotate kill -HUP`) for the commands other
/// than `serve`: `aws serve` and `gcp serve` run for days, and a one-shot command would
/// otherwise die of it mid-exchange.
fn reopen_audit_log_on_hangup() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())
            .map_err(|e| anyhow::anyhow!("could not watch SIGHUP for --audit-log: {e}"))?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match crate::audit::reopen_log() {
                    Ok(()) => tracing::info!("SIGHUP: reopened the audit log"),
                    Err(e) => {
                        tracing::error!("SIGHUP: {e}; still writing to the file opened before")
                    }
                }
            }
        });
    }
    Ok(())
}

/// Writes generated text to standard output; a reader that stops early (`| head`) is not an
/// error worth a message.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("could not write to standard output"))
        }
        _ => Ok(()),
    }
}

/// Maps an error to the exit code a script can act on: the class of the outermost cause that
/// knows its class ([`crate::classify`]).
pub fn exit_code_for(error: &anyhow::Error) -> i32 {
    crate::classify::class_of(error.chain(), CLASSIFIED).exit_code()
}

/// Every error type that knows its class, as the chain is searched: one line per type.
const CLASSIFIED: &[crate::classify::Classifier] = {
    use crate::classify::of;
    &[
        of::<crate::exchange::aws_sts::ExchangeError>,
        of::<crate::source::google::SourceError>,
        of::<crate::refresh::GcpFlowError>,
        of::<crate::source::aws::AwsSourceError>,
        of::<crate::types::SpecError>,
        of::<crate::deliver::server::ServerError>,
        of::<crate::deliver::ecs_server::AuthTokenFileError>,
        of::<crate::cloud_audit::cloudtrail::CloudTrailError>,
        of::<crate::cloud_audit::cloud_logging::CloudLoggingError>,
        of::<crate::cloud_audit::correlate::LocalLogError>,
        of::<crate::cloud_audit::expect::ExpectError>,
        of::<crate::cloud_audit::EmptyWindow>,
        of::<crate::audit::AuditLogError>,
    ]
};
