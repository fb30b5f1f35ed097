//! System tools some tests use when the machine has them (CI must: `.ci/run` installs them).

use std::process::Command;

/// `command -v TOOL` finds it.
pub fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Running under CI (`CI` set and not "false"), where a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}
