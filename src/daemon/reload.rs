//! A new configuration meets the running one: at start, and on each SIGHUP.
//!
//! Only what changed is touched: equal profiles keep their refreshers (no new exchange), changed
//! ones start their new version before the old one stops, removed ones stop, added ones start.

use std::net::SocketAddr;

use crate::config::{self, Channel, Config, ProfileConfig};
use crate::deliver::{listen_fds, server};

use super::profile::{RunningProfile, StartError};
use super::Daemon;

impl Daemon {
    pub(super) async fn reload(&mut self) {
        self.generation += 1;
        tracing::info!(config = %self.config_path.display(), "SIGHUP: reloading");
        let loaded = config::load_for(&self.config_path, &self.reader).map_err(|e| e.to_string());
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

    pub(super) async fn apply(&mut self, config: Config) -> Vec<StartError> {
        self.generation += 1;
        self.apply_changes(config).await
    }

    /// Stops removed profiles and starts changed and added ones; equal ones are not touched at
    /// all. A changed profile's new version starts before the old one stops (it gets the same
    /// listening sockets), so when it cannot start the old one keeps serving. Returns the
    /// profiles that could not start (each also logged).
    pub(super) async fn apply_changes(&mut self, config: Config) -> Vec<StartError> {
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
    pub(super) fn access_for(&self, profile: &ProfileConfig) -> server::Access {
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

    pub(super) fn stop(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            for metric in &running.metric_names {
                self.registry.unregister(metric);
            }
            for owned in &running.owned_metrics {
                owned.unregister_owned();
            }
            drop(running); // aborts its tasks
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
