//! `--ready-file`: how supervisors and tests know where the daemon stands without racing the logs.
//!
//! Each profile carries its `state` (`ok`, `starting`, `refreshing`, `failing`, `expired`: the
//! least ready of its credentials, the words `/healthz` uses), and the file is written again
//! whenever a state changes, so an orchestrator can wait for every profile to be `ok` without
//! polling `/healthz`.

use crate::config::Channel;

use super::Daemon;

impl Daemon {
    /// Each profile's state as the ready file reports it (to rewrite the file when one changes).
    pub(super) fn profile_states(&self) -> Vec<&'static str> {
        self.running.values().map(|r| r.state().word()).collect()
    }

    /// Writes the status JSON atomically (readers never see half of it).
    pub(super) fn write_ready_file(&self) {
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
                        "state": r.state().word(),
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
