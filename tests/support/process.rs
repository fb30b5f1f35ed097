//! Running a child to completion and failing the test with everything it said.

use std::fmt;
use std::process::{Command, Output, Stdio};

/// What a finished command printed, with the command line for messages.
pub struct CommandOutput {
    pub command: String,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    /// stdout parsed as JSON; panics with the whole output when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// The exit code; panics if a signal ended the child.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal:\n{self}"))
    }
}

impl fmt::Display for CommandOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\n[{}]\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

impl fmt::Debug for CommandOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Runs `command` with no stdin and collects its output.
pub fn run(command: &mut Command) -> CommandOutput {
    let line = describe(command);
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not start `{line}`: {e}"));
    CommandOutput {
        command: line,
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `command` and panics, showing all it printed, unless it exits 0.
pub fn expect_success(command: &mut Command) -> CommandOutput {
    let out = run(command);
    assert!(out.status.success(), "expected success:\n{out}");
    out
}

/// Runs `command` and panics, showing all it printed, if it exits 0.
pub fn expect_failure(command: &mut Command) -> CommandOutput {
    let out = run(command);
    assert!(!out.status.success(), "expected a failure:\n{out}");
    out
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
