//! A Cloud Storage emulator (PyPI `gcp-storage-emulator`, in-memory) of our own for one test.
//!
//! It accepts any bearer token, so it proves that a real google-cloud-storage client got
//! credentials and sent them, not that Google would accept them: tests check the token on the
//! lab's storage stand-in for that. Killed when dropped; its log is printed if the test fails.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use super::service::Service;
use super::venv;

/// A running emulator.
pub struct GcsEmulator {
    service: Service,
}

impl GcsEmulator {
    /// Starts the emulator from the test venv on a free loopback port; returns once it accepts
    /// connections.
    pub fn start() -> Self {
        let service = Service::start(
            "gcp-storage-emulator",
            &venv::bin("gcp-storage-emulator"),
            |port| {
                [
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--in-memory",
                ]
                .map(String::from)
                .to_vec()
            },
            |port| {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            },
            Duration::from_secs(30),
        );
        Self { service }
    }

    /// `http://127.0.0.1:PORT`: the client's `api_endpoint`.
    pub fn endpoint(&self) -> String {
        self.service.endpoint()
    }

    /// What the emulator logged so far.
    pub fn log(&self) -> String {
        self.service.log()
    }
}
