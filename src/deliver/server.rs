//! What every local credential server shares: binding (loopback unless told otherwise),
//! serving until SIGTERM/SIGINT, and a clean shutdown.
//!
//! The servers hand out credentials to anything that can reach them, so a non-loopback address
//! is allowed only on purpose and always logged as a warning.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("could not listen on {addr}: {cause}\n  hint: pick a free port, e.g. --listen 127.0.0.1:0 for any")]
    Bind { addr: String, cause: String },
    /// Serving failed.
    #[error("the server on {addr} stopped: {cause}")]
    Serve { addr: SocketAddr, cause: String },
}

/// Binds `addr`, warning when it is not a loopback address.
pub async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Bind {
            addr: addr.to_string(),
            cause: e.to_string(),
        })?;
    if let Ok(local) = listener.local_addr() {
        if !local.ip().is_loopback() {
            tracing::warn!(%local, "listening on a non-loopback address: anything that can reach it can take credentials");
        }
    }
    Ok(listener)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight end.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| ServerError::Serve {
        addr,
        cause: e.to_string(),
    })
}

/// Completes on SIGTERM or SIGINT (Ctrl-C): what systemd, Kubernetes and a terminal send.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
