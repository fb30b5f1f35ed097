//! The lab over HTTPS: AWS STS and the Google APIs behind TLS, trusted through a CA made at
//! start.
//!
//! The real STS and Google endpoints are `https://`, so a real cold exchange also loads the
//! trusted roots and makes a TLS handshake; over the lab's plain `http://` neither happens. This
//! serves the same routers over TLS (`keyless lab --tls-ca-file PATH`, [`super::Lab::serve_https`])
//! so tests can check that keyless trusts exactly `SSL_CERT_FILE`, and `bench/run` can put a
//! figure on the TLS share of a cold exchange.
//!
//! The CA and the server's key exist only in this process; only the CA certificate (public) is
//! handed out, for `SSL_CERT_FILE`. The server certificate names `localhost` and `127.0.0.1`.
//! Handshakes run in their own tasks (at most [`HANDSHAKE_TIMEOUT`] each), so a client that
//! stalls mid-handshake holds up nobody else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::LabError;

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 128;

/// A CA made for this lab, and the server configuration of a certificate it signed.
pub struct LabTls {
    ca_pem: String,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for LabTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabTls").finish_non_exhaustive()
    }
}

impl LabTls {
    /// A fresh CA (P-256) and a server certificate for `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<Self, LabError> {
        let tls = |e: &dyn std::fmt::Display| LabError::Tls(e.to_string());
        let ca_key = rcgen::KeyPair::generate().map_err(|e| tls(&e))?;
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| tls(&e))?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "keyless lab CA");
        let ca = ca_params.self_signed(&ca_key).map_err(|e| tls(&e))?;
        let key = rcgen::KeyPair::generate().map_err(|e| tls(&e))?;
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| tls(&e))?
            .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
            .map_err(|e| tls(&e))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .map_err(|e| tls(&e))?;
        Ok(Self {
            ca_pem: ca.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The CA certificate, PEM: what `SSL_CERT_FILE` should hold to trust the lab.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `listener`'s connections, each once its handshake has finished.
    pub(crate) fn listener(&self, listener: TcpListener) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, incoming) = mpsc::channel(ACCEPTED_QUEUE);
        let acceptor = self.acceptor.clone();
        let accepting = tokio::spawn(async move {
            loop {
                let Ok((socket, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "lab: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "lab: TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener {
            incoming,
            local,
            accepting,
        }
    }
}

/// Connections whose TLS handshake has finished, for `axum::serve`.
pub(crate) struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            // The accepting task only ends when aborted, i.e. when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
