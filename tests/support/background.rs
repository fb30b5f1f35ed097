//! A long-running child (`keyless aws serve`, `keyless aws token-file`) whose stdout the test
//! reads as it comes, to learn what the child announced once it was ready.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

/// A running child; killed (and reaped) when dropped.
pub struct Background {
    child: Child,
    command: String,
    lines: mpsc::UnboundedReceiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Background {
    /// Starts `command` with stdout and stderr captured.
    pub fn spawn(mut command: Command) -> Self {
        let line = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {line}: {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            command: line,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits, at most `timeout`, until the child has printed `export NAME=...` for every name;
    /// returns every exported variable. Panics with the child's output when it does not.
    pub async fn exports(&mut self, names: &[&str], timeout: Duration) -> HashMap<String, String> {
        let what = format!("export {names:?}");
        self.wait_until(&what, timeout, |lines| {
            let vars = parse_exports(lines);
            names.iter().all(|n| vars.contains_key(*n))
        })
        .await;
        parse_exports(&self.stdout)
    }

    /// Waits, at most `timeout`, for a stdout line starting with `prefix`; returns the rest.
    pub async fn line_after(&mut self, prefix: &str, timeout: Duration) -> String {
        self.wait_until(&format!("print {prefix:?}"), timeout, |lines| {
            lines.iter().any(|l| l.starts_with(prefix))
        })
        .await;
        let line = self.stdout.iter().find(|l| l.starts_with(prefix)).unwrap();
        line[prefix.len()..].to_string()
    }

    async fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[String]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.stdout) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.stdout.push(line),
                Ok(None) | Err(_) => panic!(
                    "{} did not {what} (status {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.command,
                    self.child.try_wait(),
                    self.stdout.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// The stdout lines read so far.
    pub fn stdout_lines(&self) -> &[String] {
        &self.stdout
    }

    /// The child's process id (to read its memory use from /proc).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (at most `within`) for the child to exit; returns its status and
    /// everything it wrote to stderr. Panics if it does not stop in time.
    pub fn terminate(&mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not stop within {within:?} of SIGTERM\n{}",
                self.command,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The stderr reader ends at the child's exit; give it a bounded moment to drain.
        let drained = std::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.stderr) > 1 && std::time::Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(10));
        }
        (status, self.stderr())
    }

    /// Every stdout line the child printed, waiting (at most `within`) for its stdout to close.
    pub async fn all_stdout(&mut self, within: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            self.stdout.push(line);
        }
        self.stdout.clone()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `export NAME=VALUE` lines (values single-quoted or plain, as `deliver::env` prints them).
fn parse_exports(lines: &[String]) -> HashMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .map(|v| v.replace(r"'\''", "'"))
                .unwrap_or_else(|| v.to_string());
            (k.to_string(), v)
        })
        .collect()
}
