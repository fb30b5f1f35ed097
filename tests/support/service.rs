//! A helper server process of one test (moto, the GCS emulator): started from the venv on a
//! free loopback port with a clean environment and its own temp dir, polled until ready (a
//! bounded condition, not a sleep), restarted on another port if the first one was taken, killed
//! on drop with the end of its log printed when the test failed.
//!
//! Ready means *our* child listens on the port: between `free_port` and the child's bind (moto
//! takes a second or two to import) another test's server can take the same port, and an HTTP
//! answer from it would otherwise pass for ours (seen with 16 tests at once: moto's setup then
//! met another test's moto with auth on).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const POLL_EVERY: Duration = Duration::from_millis(50);
const START_ATTEMPTS: usize = 3;

/// A running helper server.
pub struct Service {
    name: &'static str,
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Service {
    /// Starts `program` with `args(port)` and returns once `ready(port)` holds (within
    /// `ready_within`); panics with every attempt's log otherwise.
    pub fn start(
        name: &'static str,
        program: &Path,
        args: impl Fn(u16) -> Vec<String>,
        ready: impl Fn(u16) -> bool,
        ready_within: Duration,
    ) -> Self {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("temp dir for a helper server");
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
            let child = Command::new(program)
                .args(args(port))
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir.path())
                .env("LANG", "C.UTF-8")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("server log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", program.display()));
            let mut service = Service {
                name,
                child,
                port,
                dir,
            };
            match service.wait_until_ready(&ready, ready_within) {
                Ok(()) => return service,
                Err(reason) => failures.push(format!("port {port}: {reason}\n{}", service.log())),
            }
        }
        panic!(
            "{name} did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    fn wait_until_ready(
        &mut self,
        ready: &impl Fn(u16) -> bool,
        within: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the server's status") {
                return Err(format!("{} exited: {status}", self.name));
            }
            if ready(self.port) && listens_on(self.child.id(), self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready within {within:?}"));
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- {} log (last {} lines) ---\n{}",
                self.name,
                tail.len(),
                tail.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now, for a server that binds it itself.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`, 32768–60999 by default),
/// from which every outgoing connection of the tests running beside this one takes its source
/// port: a port picked there can be a client's by the time the server binds it (a daemon that
/// then exits with "address in use"). A counter keeps this process's tests apart; the kernel's
/// own pick is the fallback where the range leaves no room below it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12_000).max(10_000);
    if ephemeral_low > low + 1_000 {
        let span = ephemeral_low - low;
        let start = std::process::id() % span;
        for _ in 0..span {
            let port = low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
            let port = u16::try_from(port).expect("below the ephemeral range");
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Process `pid` holds the socket listening on 127.0.0.1:`port` (from /proc/net/tcp and the
/// process's descriptors).
fn listens_on(pid: u32, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, state (0A: LISTEN), inode
            (fields.len() > 9 && fields[1] == local && fields[3] == "0A")
                .then(|| format!("socket:[{}]", fields[9]))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}
