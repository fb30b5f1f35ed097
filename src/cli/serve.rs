//! `keyless serve --config keyless.toml`: every profile of a machine in one long-running process.
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
//! logs: it is written atomically once every profile has made its first delivery attempt, and
//! again after each reload, as JSON with a `generation` that counts loads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{self, Channel, Config, ProfileConfig};
use crate::deliver::gce_metadata_server::{GceMetadataOptions, GceMetadataServer};
use crate::deliver::metrics::MetricsRegistry;
use crate::deliver::{aws_files, ecs_server, imds_server, listen_fds, server};
use crate::exchange::aws_sts::RoleArn;
use crate::refresh::{
    AwsRoleUpstream, Clock, GoogleIdTokenUpstream, RefreshPolicy, Refresher, Upstream,
};

/// How often a file channel looks for a refreshed credential: an in-memory read; the engine
/// refreshes well before expiry (at least 20 minutes, or half a short lifetime), so a few
/// seconds' delay in rewriting the file never leaves a reader with an expired credential.
const FILE_CHANNEL_POLL: Duration = Duration::from_secs(5);

/// Reports a channel's first delivery attempt: `Err` says why it failed (secret-free).
type FirstDelivery = oneshot::Receiver<Result<(), String>>;

/// A refresher's status, for `/metrics` and `/healthz`.
type StatusFn = Box<dyn Fn() -> crate::refresh::RefreshStatus + Send + Sync>;

/// `keyless serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve /healthz and /metrics here (overrides the file's metrics_listen).
    #[arg(long, env = "KEYLESS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Write a JSON status here (atomically) once every profile has started, and again after
    /// each reload; removed on exit.
    #[arg(long, env = "KEYLESS_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    #[command(flatten)]
    pub access: super::AccessArgs,

    /// Serve the profiles that start even if others cannot (each failure is logged and listed
    /// in the ready file); without it a profile that cannot start makes keyless serve exit
    /// non-zero before it reports ready.
    #[arg(long, env = "KEYLESS_KEEP_GOING")]
    pub keep_going: bool,
}

/// Why a profile could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The channel's server is not part of this build yet.
    #[error(
        "profile `{profile}`: {key} is not supported by `keyless serve` in this build\n  \
         hint: run `keyless {command}` for this profile instead, or remove {key}"
    )]
    ChannelNotInThisBuild {
        profile: String,
        key: &'static str,
        command: &'static str,
    },
    /// The profile could not be turned into a working credential source.
    #[error("profile `{profile}`: {cause}")]
    Profile { profile: String, cause: String },
    /// A listener could not be bound (its address is taken, or beyond loopback).
    #[error("profile `{profile}`: {cause}")]
    Listen {
        profile: String,
        cause: server::ServerError,
    },
}

impl StartError {
    /// The profile it is about.
    pub fn profile(&self) -> &str {
        match self {
            Self::ChannelNotInThisBuild { profile, .. }
            | Self::Profile { profile, .. }
            | Self::Listen { profile, .. } => profile,
        }
    }

    /// 1 for a taken address (a restart may find it free), 2 for the configuration.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Listen {
                cause: server::ServerError::Bind { .. } | server::ServerError::Serve { .. },
                ..
            } => super::exit_code::FAILURE,
            _ => super::exit_code::USAGE,
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT; returns the exit code.
///
/// `config_path` is the global `--config` (default `keyless.toml`); SIGHUP re-reads it.
pub async fn run(args: ServeArgs, config_path: PathBuf) -> anyhow::Result<i32> {
    let reader = serve_reader(args.access.allow_remote);
    let config = match config::load_for(&config_path, &reader) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("keyless: {e}");
            return Ok(super::exit_code::USAGE);
        }
    };
    if let Err(e) = check_supported(&config) {
        eprintln!("keyless: {e}");
        return Ok(super::exit_code::USAGE);
    }
    // Signal handlers before anything is announced: a SIGHUP right after the ready file appears
    // must reload, not kill the process (the default action).
    let mut signals = Signals::install().context("could not install signal handlers")?;
    let http = crate::http_client::build().context("could not start the HTTP client")?;
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
            .map(StartError::exit_code)
            .max()
            .unwrap_or(super::exit_code::FAILURE);
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

    while let Event::Reload = signals.next().await {
        daemon.reload().await;
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

/// Fails on the first channel this build cannot run, before anything starts.
///
/// Hook for the servers: when `ecs_server`, `imds_server` and `gce_metadata_server` are merged,
/// make `start_channel` start them and drop their arms here.
pub fn check_supported(config: &Config) -> Result<(), StartError> {
    for (name, profile) in &config.profiles {
        for channel in profile.channels() {
            if let Some(command) = unsupported_channel(channel) {
                return Err(StartError::ChannelNotInThisBuild {
                    profile: name.clone(),
                    key: channel.key(),
                    command,
                });
            }
        }
    }
    Ok(())
}

/// The standalone command that serves `channel`, if the daemon cannot run it yet.
fn unsupported_channel(channel: &Channel) -> Option<&'static str> {
    match channel {
        Channel::EcsServer { .. }
        | Channel::ImdsServer { .. }
        | Channel::GceMetadataServer { .. }
        | Channel::TokenFile { .. }
        | Channel::CredentialsFile { .. } => None,
    }
}

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

/// One started profile: its configuration (to compare on reload), tasks and metric names.
struct RunningProfile {
    config: ProfileConfig,
    /// Who may reach its endpoints (flags, the file's top level and the profile's own keys).
    access: server::Access,
    tasks: Vec<JoinHandle<()>>,
    metric_names: Vec<String>,
    /// Its refreshers' status, registered for `/metrics` only once it replaces the old version
    /// (both report under the same names).
    unregistered_metrics: Vec<(String, StatusFn)>,
    /// The generation that started it (unchanged profiles keep theirs across reloads).
    started_generation: u64,
    /// `ok`, or why the first delivery failed (the refresher keeps retrying).
    first_delivery: String,
    /// The ECS endpoints' tokens and the files they come from, re-read on SIGHUP.
    auth_tokens: Vec<(PathBuf, ecs_server::AuthToken)>,
}

impl RunningProfile {
    /// Reads each ECS token file again and swaps in a changed token (compared by digest); a
    /// file that became unusable is reported and the old token stays.
    fn reread_auth_tokens(&self, name: &str) {
        for (path, token) in &self.auth_tokens {
            match ecs_server::auth_token_from_file(path) {
                Ok(secret) => {
                    if token.replace_if_changed(secret) {
                        tracing::info!(
                            profile = %name,
                            path = %path.display(),
                            "the authorization token changed; the ECS endpoint now accepts the new one only"
                        );
                    }
                }
                Err(e) => tracing::error!(
                    profile = %name,
                    "{e}\n  the endpoint keeps accepting the token it had"
                ),
            }
        }
    }
}

impl Drop for RunningProfile {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Daemon {
    async fn reload(&mut self) {
        self.generation += 1;
        tracing::info!(config = %self.config_path.display(), "SIGHUP: reloading");
        let loaded = config::load_for(&self.config_path, &self.reader)
            .map_err(|e| e.to_string())
            .and_then(|c| check_supported(&c).map(|()| c).map_err(|e| e.to_string()));
        match loaded {
            Ok(config) => {
                self.reload_error = None;
                if config.metrics_listen != self.file_metrics_listen && !self.metrics_from_flag {
                    tracing::warn!(
                        "metrics_listen changed; it takes effect at the next restart, profiles are reloaded now"
                    );
                }
                self.file_metrics_listen = config.metrics_listen;
                self.allow_remote = self.reader.allow_remote || config.allow_remote;
                self.file_allowed_hosts = config.allowed_hosts.clone();
                self.apply_changes(config).await;
            }
            Err(e) => {
                tracing::error!(
                    "the new configuration was not loaded; the running one stays:\n{e}"
                );
                self.reload_error = Some(e);
            }
        }
        self.write_ready_file();
    }

    async fn apply(&mut self, config: Config) -> Vec<StartError> {
        self.generation += 1;
        self.apply_changes(config).await
    }

    /// Stops removed profiles and starts changed and added ones; equal ones are not touched at
    /// all. A changed profile's new version starts before the old one stops (it gets the same
    /// listening sockets), so when it cannot start the old one keeps serving. Returns the
    /// profiles that could not start (each also logged).
    async fn apply_changes(&mut self, config: Config) -> Vec<StartError> {
        let removed: Vec<String> = self
            .running
            .keys()
            .filter(|name| !config.profiles.contains_key(*name))
            .cloned()
            .collect();
        for name in removed {
            self.stop(&name);
            tracing::info!(profile = %name, "stopped (removed from the configuration)");
        }
        let mut to_start = Vec::new();
        for (name, profile) in config.profiles {
            let access = self.access_for(&profile);
            match self.running.get(&name) {
                Some(running) if running.config == profile && running.access == access => {
                    tracing::debug!(profile = %name, "unchanged; left running");
                    running.reread_auth_tokens(&name);
                }
                Some(_) => to_start.push((name, profile, "restarted")),
                None => to_start.push((name, profile, "started")),
            }
        }
        let mut pending = Vec::new();
        let mut failures = Vec::new();
        self.start_errors.clear();
        for (name, profile, verb) in to_start {
            match self.start(&name, profile).await {
                Ok((running, first)) => {
                    tracing::info!(
                        profile = %name,
                        direction = %running.config.direction(),
                        channels = %describe_channels(running.config.channels()),
                        "{verb}"
                    );
                    self.install(name.clone(), running);
                    pending.push((name, first));
                }
                Err(e) => {
                    if self.running.contains_key(&name) {
                        tracing::error!(
                            "{e}\n  the new version did not start; the running one keeps serving"
                        );
                    } else {
                        tracing::error!("{e}");
                    }
                    self.start_errors.insert(name, e.to_string());
                    failures.push(e);
                }
            }
        }
        // Ready means every new channel has tried once: files exist unless the upstream failed.
        for (name, first) in pending {
            let mut outcome = "ok".to_string();
            for rx in first {
                if let Ok(Err(e)) = rx.await {
                    outcome = format!("error: {e}");
                }
            }
            if let Some(running) = self.running.get_mut(&name) {
                running.first_delivery = outcome;
            }
        }
        self.release_unused_sockets();
        failures
    }

    /// Puts a started profile in place of its old version (stopped now) and registers its
    /// metrics.
    fn install(&mut self, name: String, mut running: RunningProfile) {
        self.stop(&name);
        for (metric, status) in running.unregistered_metrics.drain(..) {
            self.registry.register(metric.clone(), status);
            running.metric_names.push(metric);
        }
        self.running.insert(name, running);
    }

    /// Closes the sockets kept for addresses no running profile listens on any more (a removed
    /// profile's, or an old address of a changed one); passed sockets stay.
    fn release_unused_sockets(&self) {
        let mut in_use: Vec<SocketAddr> = self
            .running
            .values()
            .flat_map(|r| r.config.channels().iter().filter_map(Channel::listen))
            .collect();
        in_use.extend(self.metrics_local);
        listen_fds::release_except(&in_use);
    }

    /// Who may reach `profile`'s endpoints: `--allow-remote`/`allow_remote`, and the allowed
    /// hosts of the command line, the file's top level and the profile.
    fn access_for(&self, profile: &ProfileConfig) -> server::Access {
        let mut allowed_hosts: Vec<server::AllowedHost> = self
            .cli_allowed_hosts
            .iter()
            .chain(&self.file_allowed_hosts)
            .chain(profile.allowed_hosts())
            .cloned()
            .collect();
        allowed_hosts.sort();
        allowed_hosts.dedup();
        server::Access {
            allow_remote: self.allow_remote,
            allowed_hosts,
        }
    }

    fn stop(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            for metric in &running.metric_names {
                self.registry.unregister(metric);
            }
            drop(running); // aborts its tasks
        }
    }

    /// Starts `profile`'s refreshers and channels; returns the first-attempt signals.
    async fn start(
        &self,
        name: &str,
        profile: ProfileConfig,
    ) -> Result<(RunningProfile, Vec<FirstDelivery>), StartError> {
        let access = self.access_for(&profile);
        let mut running = RunningProfile {
            config: profile.clone(),
            access: access.clone(),
            tasks: Vec::new(),
            metric_names: Vec::new(),
            unregistered_metrics: Vec::new(),
            started_generation: self.generation,
            first_delivery: "pending".into(),
            auth_tokens: Vec::new(),
        };
        let mut first = Vec::new();
        let failed = |cause: String| StartError::Profile {
            profile: name.to_string(),
            cause,
        };
        match &profile {
            ProfileConfig::GcpToAws(p) => {
                let needs_role = p.channels.iter().any(|c| {
                    matches!(
                        c,
                        Channel::CredentialsFile { .. }
                            | Channel::EcsServer { .. }
                            | Channel::ImdsServer { .. }
                    )
                });
                let role = if needs_role {
                    let upstream = AwsRoleUpstream {
                        profile: p.role_profile().map_err(|e| failed(e.to_string()))?,
                        http: self.http.clone(),
                    };
                    Some(self.refresher(name.to_string(), upstream, &mut running))
                } else {
                    None
                };
                let id_token = if p
                    .channels
                    .iter()
                    .any(|c| matches!(c, Channel::TokenFile { .. }))
                {
                    let upstream = GoogleIdTokenUpstream {
                        source: p.google_token_source().map_err(|e| failed(e.to_string()))?,
                        audience: p.audience.clone(),
                        http: self.http.clone(),
                    };
                    Some(self.refresher(format!("{name}/id_token"), upstream, &mut running))
                } else {
                    None
                };
                for channel in &p.channels {
                    let (tx, rx) = oneshot::channel();
                    let task = start_channel(
                        name,
                        channel,
                        ChannelSources {
                            role: role.as_ref(),
                            id_token: id_token.as_ref(),
                            role_arn: p.final_role_arn(),
                            region: p.region.as_ref().map(crate::types::Region::as_str),
                            access: &access,
                        },
                        tx,
                        &mut running.auth_tokens,
                    )?;
                    running.tasks.push(task);
                    first.push(rx);
                }
            }
            ProfileConfig::AwsToGcp(p) => {
                let token_profile = p.token_profile().await.map_err(|e| failed(e.to_string()))?;
                for channel in &p.channels {
                    let Channel::GceMetadataServer { listen } = channel else {
                        continue;
                    };
                    let endpoint = GceMetadataServer::with_metrics(
                        token_profile.clone(),
                        GceMetadataOptions::default(),
                        self.http.clone(),
                        self.registry.clone(),
                    );
                    running.tasks.push(spawn_server(
                        name,
                        *listen,
                        server::Endpoint::GceMetadata,
                        &access,
                        endpoint.router(),
                    )?);
                }
            }
        }
        Ok((running, first))
    }

    /// A refresher kept fresh in the background and reported on `/metrics` as `metric_name`.
    fn refresher<U: Upstream>(
        &self,
        metric_name: String,
        upstream: U,
        running: &mut RunningProfile,
    ) -> Refresher<U> {
        let refresher = Refresher::new(
            metric_name.clone(),
            upstream,
            RefreshPolicy::default(),
            Clock::System,
        );
        running.tasks.push(refresher.spawn_keeper());
        let status = refresher.clone();
        running
            .unregistered_metrics
            .push((metric_name, Box::new(move || status.status())));
        refresher
    }

    /// Writes the status JSON atomically (readers never see half of it).
    fn write_ready_file(&self) {
        let Some(path) = &self.ready_file else {
            return;
        };
        let profiles: serde_json::Map<String, serde_json::Value> = self
            .running
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    serde_json::json!({
                        "direction": r.config.direction().to_string(),
                        "channels": r.config.channels().iter().map(Channel::key).collect::<Vec<_>>(),
                        "started_generation": r.started_generation,
                        "first_delivery": r.first_delivery,
                    }),
                )
            })
            .collect();
        let status = serde_json::json!({
            "pid": std::process::id(),
            "generation": self.generation,
            "config": self.config_path.display().to_string(),
            "metrics_listen": self.metrics_local.map(|a| a.to_string()),
            "profiles": profiles,
            "reload_error": self.reload_error,
            "start_errors": self.start_errors,
        });
        let text = serde_json::to_string_pretty(&status).unwrap_or_default() + "\n";
        if let Err(e) = crate::private_file::write_private_file_atomically(path, text.as_bytes()) {
            tracing::error!(path = %path.display(), "could not write the ready file: {e}");
        }
    }
}

fn describe_channels(channels: &[Channel]) -> String {
    channels
        .iter()
        .map(|c| match c {
            Channel::TokenFile { path } => format!("token_file={}", path.display()),
            Channel::CredentialsFile { path, profile } => format!(
                "credentials_file={}[{profile}]",
                path.as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "default".into())
            ),
            other => format!(
                "{}={}",
                other.key(),
                other.listen().map(|a| a.to_string()).unwrap_or_default()
            ),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts one channel's task. Hook: the server channels start here once merged.
fn start_channel(
    profile: &str,
    channel: &Channel,
    sources: ChannelSources<'_>,
    first: oneshot::Sender<Result<(), String>>,
    auth_tokens: &mut Vec<(PathBuf, ecs_server::AuthToken)>,
) -> Result<JoinHandle<()>, StartError> {
    let ChannelSources {
        role,
        id_token,
        role_arn,
        region,
        access,
    } = sources;
    let missing = || StartError::Profile {
        profile: profile.to_string(),
        cause: format!("{} has no credential to deliver", channel.key()),
    };
    match channel {
        Channel::TokenFile { path } => {
            // A minimal web-identity token file writer; to be unified with deliver/token_file.rs.
            let refresher = id_token.ok_or_else(missing)?.clone();
            let path = path.clone();
            let label = format!("token_file {}", path.display());
            Ok(tokio::spawn(keep_written(
                refresher,
                label,
                first,
                move |token: crate::source::google::IdToken| {
                    write_token_file(&path, token.secret().expose())
                },
            )))
        }
        Channel::CredentialsFile {
            path,
            profile: section,
        } => {
            let refresher = role.ok_or_else(missing)?.clone();
            let path = match path {
                Some(p) => p.clone(),
                None => aws_files::default_credentials_path().map_err(|e| StartError::Profile {
                    profile: profile.to_string(),
                    cause: e.to_string(),
                })?,
            };
            let section = section.clone();
            let label = format!("credentials_file {} [{section}]", path.display());
            Ok(tokio::spawn(keep_written(
                refresher,
                label,
                first,
                move |role: crate::exchange::aws_sts::AssumedRole| {
                    aws_files::write_credentials_profile(&path, &section, &role.credentials)
                        .map_err(|e| e.to_string())
                },
            )))
        }
        Channel::EcsServer {
            listen,
            auth_token_file,
        } => {
            let refresher = role.ok_or_else(missing)?.clone();
            let Some(path) = auth_token_file else {
                return Err(StartError::Profile {
                    profile: profile.to_string(),
                    cause: "ecs_listen needs auth_token_file: the endpoint refuses requests without the token, and a daemon has no terminal to print a random one to".into(),
                });
            };
            let token = ecs_server::auth_token_from_file(path)
                .map(ecs_server::AuthToken::new)
                .map_err(|e| StartError::Profile {
                    profile: profile.to_string(),
                    cause: e.to_string(),
                })?;
            let _ = first.send(Ok(()));
            let task = spawn_server(
                profile,
                *listen,
                server::Endpoint::EcsCredentials,
                access,
                ecs_server::router(refresher, token.clone()),
            )?;
            auth_tokens.push((path.clone(), token));
            Ok(task)
        }
        Channel::ImdsServer { listen } => {
            let refresher = role.ok_or_else(missing)?.clone();
            let identity = imds_server::InstanceIdentity::for_role(role_arn, region);
            let _ = first.send(Ok(()));
            spawn_server(
                profile,
                *listen,
                server::Endpoint::Imds,
                access,
                imds_server::router(refresher, identity),
            )
        }
        Channel::GceMetadataServer { .. } => Err(StartError::Profile {
            profile: profile.to_string(),
            cause: "gce_metadata_listen belongs to an AWS → GCP profile".into(),
        }),
    }
}

/// What a GCP → AWS profile's channels deliver from.
struct ChannelSources<'a> {
    role: Option<&'a Refresher<AwsRoleUpstream>>,
    id_token: Option<&'a Refresher<GoogleIdTokenUpstream>>,
    role_arn: &'a RoleArn,
    region: Option<&'a str>,
    /// Who may reach the endpoints.
    access: &'a server::Access,
}

/// Binds `listen` now (so a clash is reported at start) and serves `router` until the profile
/// stops (its task is aborted) or the daemon does.
fn spawn_server(
    profile: &str,
    listen: SocketAddr,
    endpoint: server::Endpoint,
    access: &server::Access,
    router: axum::Router,
) -> Result<JoinHandle<()>, StartError> {
    let listener =
        server::bind_now(listen, endpoint, access).map_err(|cause| StartError::Listen {
            profile: profile.to_string(),
            cause,
        })?;
    let name = profile.to_string();
    Ok(tokio::spawn(async move {
        if let Err(e) = server::serve(listener, router, std::future::pending()).await {
            tracing::error!(profile = %name, "{e}");
        }
    }))
}

/// Writes the token file, 0600 and atomically, creating its directory (0700) if needed.
fn write_token_file(path: &Path, token: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            crate::private_file::create_private_dir(dir)
                .map_err(|e| format!("could not create {}: {e}", dir.display()))?;
        }
    }
    crate::private_file::write_private_file_atomically(path, token.as_bytes())
        .map_err(|e| format!("could not write {}: {e}", path.display()))
}

/// Writes each new credential the refresher holds with `write` (off the runtime: file locks
/// and fsync block). Reports the first attempt on `first`. Never asks the upstream itself once
/// started: while nothing valid is held it waits for the keeper, so an outage is retried with
/// the engine's backoff, not every poll.
async fn keep_written<U: Upstream>(
    refresher: Refresher<U>,
    label: String,
    first: oneshot::Sender<Result<(), String>>,
    write: impl Fn(U::Value) -> Result<(), String> + Clone + Send + 'static,
) {
    let mut first = Some(first);
    let mut written: Option<time::OffsetDateTime> = None;
    let mut last_error: Option<String> = None;
    loop {
        let holding = refresher
            .status()
            .seconds_until_expiry
            .is_some_and(|left| left > 0.0);
        let outcome = if first.is_some() || holding {
            match refresher.get().await {
                Ok((value, expires_at)) if written != Some(expires_at) => {
                    let write = write.clone();
                    match tokio::task::spawn_blocking(move || write(value)).await {
                        Ok(Ok(())) => {
                            written = Some(expires_at);
                            tracing::info!(
                                profile = %refresher.name(),
                                expires_at = %crate::credentials::format_expiration(expires_at),
                                "wrote {label}"
                            );
                            Ok(())
                        }
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(format!("the writer stopped: {e}")),
                    }
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            Ok(())
        };
        match &outcome {
            Err(e) if last_error.as_ref() != Some(e) => {
                tracing::warn!(profile = %refresher.name(), "{label}: {e}");
                last_error = Some(e.clone());
            }
            Ok(()) => last_error = None,
            Err(_) => {}
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(outcome);
        }
        tokio::time::sleep(FILE_CHANNEL_POLL).await;
    }
}

enum Event {
    Reload,
    Shutdown,
}

/// SIGHUP, SIGTERM and SIGINT, registered at once (not lazily on first poll).
#[cfg(unix)]
struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hangup.recv() => Event::Reload,
            _ = self.terminate.recv() => Event::Shutdown,
            _ = self.interrupt.recv() => Event::Shutdown,
        }
    }
}

/// Without SIGHUP there is no reload: Ctrl-C stops.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> Event {
        server::shutdown_signal().await;
        Event::Shutdown
    }
}

/// The daemon needs profiles with channels; `[defaults]` may name any command's flag.
fn serve_reader(allow_remote: bool) -> config::ReadFor {
    config::ReadFor {
        one_shot: false,
        allow_remote,
        known_flags: Some(super::config_defaults::flag_keys(
            &<super::Cli as clap::CommandFactory>::command(),
        )),
    }
}
