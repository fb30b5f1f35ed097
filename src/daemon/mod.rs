//! The daemon: what `keyless serve --config keyless.toml` runs — every profile of a machine in one
//! long-running process.
//!
//! It lives outside `cli/` because it is a program, not a command line: `cli/serve.rs`
//! parses flags into [`Options`] and hands them over; everything that runs (channels, reload,
//! start errors, the ready file, signals) is here, one concept per module.
//!
//! One process, one `/metrics`, one systemd unit: each profile gets a refresher (the engine keeps
//! its credential fresh) and its channels (files written on each refresh, local endpoints).
//! SIGHUP re-reads the file and touches only what changed: a profile whose configuration is
//! equal keeps its refresher and credential (no new exchange), changed ones restart, removed ones
//! stop, added ones start; a broken file is reported and the running configuration stays. An
//! unchanged profile's ECS `auth_token_file` is read again too: a token whose digest changed
//! replaces the old one in place (the listener and credential stay); an unusable file is
//! reported and the old token stays.
//! SIGTERM and SIGINT stop everything cleanly.
//!
//! A profile that cannot start (an unreadable token file, a port in use, a bad source) is never
//! silently dropped: at start-up it makes `keyless serve` exit non-zero before it reports ready,
//! so a supervisor sees the failure (`--keep-going` serves the other profiles instead); on a
//! reload the new version of a changed profile starts before the old one stops, and if it cannot
//! start it is reported and the old version keeps serving.
//!
//! A listener's socket is never closed while its address is still wanted: a profile restarted
//! by a reload serves on the socket its old version used, and under systemd socket activation
//! the sockets outlive the process (see [`crate::deliver::listen_fds`]), so no other local user
//! can take a fixed port in between.
//!
//! `--ready-file PATH` is how supervisors and tests know where things stand without racing the
//! logs: it is written atomically once every profile has made its first delivery attempt, again
//! after each reload, and whenever a profile's `state` changes, as JSON with a `generation` that
//! counts loads.

mod file_channel;
mod profile;
mod ready_file;
mod reload;
mod signals;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio::sync::oneshot;

use crate::classify::{exit_code, Classify};
use crate::config;
use crate::deliver::metrics::MetricsRegistry;
use crate::deliver::{listen_fds, server};

use profile::RunningProfile;
pub use profile::StartError;
use signals::{Event, Signals};

/// What `keyless serve` was told on its command line (or by `KEYLESS_*` variables).
#[derive(Clone, Debug)]
pub struct Options {
    /// The keyless.toml to run; SIGHUP re-reads it.
    pub config_path: PathBuf,
    /// Serve /healthz and /metrics here (overrides the file's `metrics_listen`).
    pub metrics_listen: Option<String>,
    /// Write a JSON status here once every profile has started, and after each reload.
    pub ready_file: Option<PathBuf>,
    /// Who may reach the endpoints, added to what the file allows.
    pub access: server::Access,
    /// Serve the profiles that start even if others cannot.
    pub keep_going: bool,
    /// The flag names `[defaults]` may set (every command's, snake_case); `None` accepts any.
    pub known_flags: Option<Vec<String>>,
}

/// Runs the daemon until SIGTERM/SIGINT; returns the exit code.
///
pub async fn run(args: Options) -> anyhow::Result<i32> {
    let config_path = args.config_path.clone();
    let reader = config::ReadFor {
        one_shot: false,
        allow_remote: args.access.allow_remote,
        known_flags: args.known_flags.clone(),
    };
    let config = match config::load_for(&config_path, &reader) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("keyless: {e}");
            return Ok(exit_code::USAGE);
        }
    };
    // The file's audit log, unless --audit-log (installed by the command line) names one.
    if let (None, Some(path)) = (crate::audit::installed_log(), &config.audit_log) {
        match crate::audit::AuditLog::open(path) {
            Ok(log) => crate::audit::install_log(log),
            Err(e) => {
                eprintln!("keyless: {e}");
                return Ok(exit_code::USAGE);
            }
        }
    }
    // Signal handlers before anything is announced: a SIGHUP right after the ready file appears
    // must reload, not kill the process (the default action).
    let mut signals = Signals::install().context("could not install signal handlers")?;
    let http = crate::wire::http::build().context("could not start the HTTP client")?;
    let registry = MetricsRegistry::starting();

    let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
    let metrics_addr = args
        .metrics_listen
        .clone()
        .or_else(|| config.metrics_listen.map(|a| a.to_string()));
    let (metrics_local, metrics_task) = match &metrics_addr {
        Some(addr) => {
            let listener =
                server::bind(addr, server::Endpoint::Metrics, &server::Access::local()).await?;
            let local = listener.local_addr().ok();
            let router = registry.router();
            let task = tokio::spawn(server::serve(listener, router, async {
                let _ = metrics_stopped.await;
            }));
            tracing::info!(
                listen = %local.map(|a| a.to_string()).unwrap_or_default(),
                "serving /healthz and /metrics"
            );
            (local, Some(task))
        }
        None => (None, None),
    };

    let mut daemon = Daemon {
        config_path: config_path.clone(),
        allow_remote: args.access.allow_remote || config.allow_remote,
        cli_allowed_hosts: args.access.allowed_hosts.clone(),
        file_allowed_hosts: config.allowed_hosts.clone(),
        reader,
        ready_file: args.ready_file.clone(),
        metrics_from_flag: args.metrics_listen.is_some(),
        metrics_local,
        file_metrics_listen: config.metrics_listen,
        http,
        registry,
        running: BTreeMap::new(),
        generation: 0,
        reload_error: None,
        start_errors: BTreeMap::new(),
    };
    let failures = daemon.apply(config).await;
    if !failures.is_empty() && !args.keep_going {
        let code = failures
            .iter()
            .map(|e| e.class().exit_code())
            .max()
            .unwrap_or(exit_code::FAILURE);
        let names: Vec<&str> = failures.iter().map(StartError::profile).collect();
        eprintln!(
            "keyless: not serving: {} could not start (see above)\n  \
             hint: fix {}, or pass --keep-going (KEYLESS_KEEP_GOING=true) to serve the others",
            names
                .iter()
                .map(|n| format!("profile `{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if names.len() == 1 { "it" } else { "them" },
        );
        drop(daemon); // stops what did start
        listen_fds::release_except(&[]);
        let _ = stop_metrics.send(());
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        return Ok(code);
    }
    for (addr, name) in listen_fds::untaken() {
        tracing::warn!(
            %addr,
            name = %name,
            "socket activation passed a socket that no profile listens on; give a channel this \
             exact address (e.g. imds_listen = \"{addr}\") or remove it from keyless.socket"
        );
    }
    daemon.registry.mark_started();
    daemon.write_ready_file();
    tracing::info!(
        profiles = daemon.running.len(),
        "keyless serve is running; SIGHUP reloads {}",
        config_path.display()
    );

    // The ready file follows the profiles' states: checked once a second, rewritten on a change.
    let mut states = daemon.profile_states();
    let mut tick = tokio::time::interval(READY_FILE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            // Signals first: a reload or a stop is never put off by a ready-file check (with
            // a random order, tests/integration/daemon.rs's socket-activation reload failed 2 runs in 5).
            biased;
            event = signals.next() => event,
            _ = tick.tick(), if daemon.ready_file.is_some() => {
                let now = daemon.profile_states();
                if now != states {
                    states = now;
                    daemon.write_ready_file();
                }
                continue;
            }
        };
        let Event::Reload = event else { break };
        // First the audit log (logrotate's HUP): the reload's own exchanges go to the new file.
        if let Err(e) = crate::audit::reopen_log() {
            tracing::error!("SIGHUP: {e}; still writing to the file opened before");
        }
        daemon.reload().await;
        states = daemon.profile_states();
    }
    tracing::info!("shutting down");
    let names: Vec<String> = daemon.running.keys().cloned().collect();
    for name in names {
        daemon.stop(&name);
    }
    // Stopped profiles' ports close now (new connections are refused, not queued unanswered);
    // sockets systemd passed stay with systemd.
    listen_fds::release_except(&[]);
    let _ = stop_metrics.send(());
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    if let Some(path) = &daemon.ready_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(0)
}

/// How often the ready file's per-profile states are compared with the profiles' (a change
/// rewrites it).
const READY_FILE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// What the daemon holds: the running profiles and what the ready file reports.
struct Daemon {
    config_path: PathBuf,
    /// What the command line adds to the file's checks.
    /// How the file is checked on each reload (the command line's --allow-remote included).
    reader: config::ReadFor,
    /// Whether endpoints may listen beyond loopback (flag or file), for profiles started now.
    allow_remote: bool,
    /// `--allowed-host`, for every profile.
    cli_allowed_hosts: Vec<server::AllowedHost>,
    /// The file's top-level `allowed_hosts`, for every profile.
    file_allowed_hosts: Vec<server::AllowedHost>,
    ready_file: Option<PathBuf>,
    metrics_from_flag: bool,
    metrics_local: Option<SocketAddr>,
    file_metrics_listen: Option<SocketAddr>,
    http: reqwest::Client,
    registry: MetricsRegistry,
    running: BTreeMap<String, RunningProfile>,
    /// Loads so far: 1 after start, +1 per SIGHUP (even a rejected one).
    generation: u64,
    reload_error: Option<String>,
    /// Profiles of the last load that could not start, and why (secret-free).
    start_errors: BTreeMap<String, String>,
}
