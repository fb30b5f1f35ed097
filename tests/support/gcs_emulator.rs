//! A Cloud Storage emulator (PyPI `gcp-storage-emulator`, in-memory) of our own for one test.
//!
//! It accepts any bearer token, so it proves that a real google-cloud-storage client got
//! credentials and sent them, not that Google would accept them: tests check the token on the
//! lab's storage stand-in for that. Killed when dropped; its log is printed if the test fails.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::venv;

const READY_WITHIN: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(50);
const START_ATTEMPTS: usize = 3;

/// A running emulator.
pub struct GcsEmulator {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl GcsEmulator {
    /// Starts the emulator from the test venv on a free loopback port; returns once it accepts
    /// connections.
    pub fn start() -> Self {
        let program = venv::bin("gcp-storage-emulator");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("temp dir for the emulator");
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("emulator.log")).expect("log");
            let child = Command::new(&program)
                .args(["start", "--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--in-memory")
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir.path())
                .env("LANG", "C.UTF-8")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", program.display()));
            let mut emulator = GcsEmulator { child, port, dir };
            match emulator.wait_until_ready() {
                Ok(()) => return emulator,
                Err(reason) => failures.push(format!("port {port}: {reason}\n{}", emulator.log())),
            }
        }
        panic!(
            "the GCS emulator did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.child.try_wait().expect("the emulator's status") {
                return Err(format!("gcp-storage-emulator exited: {status}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not listening within {READY_WITHIN:?}"));
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// `http://127.0.0.1:PORT`: the client's `api_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the emulator logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("emulator.log")
    }
}

impl Drop for GcsEmulator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gcp-storage-emulator log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
