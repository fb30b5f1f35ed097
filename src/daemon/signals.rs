//! The signals the daemon obeys: SIGHUP reloads, SIGTERM and SIGINT stop.

pub(super) enum Event {
    Reload,
    Shutdown,
}

/// SIGHUP, SIGTERM and SIGINT, registered at once (not lazily on first poll).
#[cfg(unix)]
pub(super) struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    pub(super) fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    pub(super) async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hangup.recv() => Event::Reload,
            _ = self.terminate.recv() => Event::Shutdown,
            _ = self.interrupt.recv() => Event::Shutdown,
        }
    }
}

/// Without SIGHUP there is no reload: Ctrl-C stops.
#[cfg(not(unix))]
pub(super) struct Signals;

#[cfg(not(unix))]
impl Signals {
    pub(super) fn install() -> std::io::Result<Self> {
        Ok(Self)
    }

    pub(super) async fn next(&mut self) -> Event {
        crate::deliver::server::shutdown_signal().await;
        Event::Shutdown
    }
}
