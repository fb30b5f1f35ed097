//! File channels: a token file or an `~/.aws/credentials` profile rewritten whenever the
//! refresher holds a new credential.

use std::path::Path;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::refresh::{Refresher, Upstream};

/// How often a file channel looks for a refreshed credential: an in-memory read; the engine
/// refreshes well before expiry (at least 20 minutes, or half a short lifetime), so a few
/// seconds' delay in rewriting the file never leaves a reader with an expired credential.
const FILE_CHANNEL_POLL: Duration = Duration::from_secs(5);

/// Writes the token file, 0600 and atomically, creating its directory (0700) if needed.
pub(super) fn write_token_file(path: &Path, token: &str) -> Result<(), String> {
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
pub(super) async fn keep_written<U: Upstream>(
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
