//! Why the lab could not start or be configured.

/// The lab failed to start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A listener could not bind (port taken, or no loopback).
    #[error("the lab could not listen on 127.0.0.1:{port} for {service}: {source}\n  hint: choose another port or pass 0 for a random one")]
    Bind {
        /// Which emulated service.
        service: &'static str,
        /// The requested port.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTPS listeners' certificate could not be made (`keyless lab --tls-ca-file`).
    #[error("the lab could not make its TLS certificate: {0}")]
    Tls(String),
    /// The configuration is inconsistent.
    #[error("the lab configuration is invalid: {0}")]
    Config(String),
}
