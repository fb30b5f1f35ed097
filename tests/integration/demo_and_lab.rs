//! The README's first command and the lab process: both must work on a fresh checkout.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `keyless demo` walks both flows: token claims, trust-policy match, assumed role, a signed
/// call the lab verifies, a refused intruder with the reason; then an AWS session's subject
/// token, Google STS, impersonation, a Google API call, and a refused IAM user with the reason.
#[test]
fn demo_runs_the_whole_flow_and_explains_the_refusal() {
    let out = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("allowed by statement #1"), "{stdout}");
    assert!(
        stdout.contains("assumed-role/gcp-deploy/deployer@"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the lab verified the signature"),
        "{stdout}"
    );
    assert!(stdout.contains("AccessDenied"), "{stdout}");
    assert!(
        stdout.contains("expects accounts.google.com:aud = \"100000000000000000001\" but the token gives \"100000000000000000099\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("SecretAccessKey"),
        "the demo must not print secrets"
    );
}

/// `keyless lab --env-file F` serves until stopped; `keyless aws credentials` pointed at it by
/// nothing but that file's variables gets credentials.
#[test]
fn lab_process_serves_keyless_through_its_env_file() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("lab.env");
    let mut lab = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(["lab", "--env-file"])
        .arg(&env_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The file appears (atomically) once every listener is bound: wait for that, bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&env_file).unwrap_or_default();
        if !text.is_empty() || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyless"));
    cmd.args([
        "aws",
        "credentials",
        "--no-cache",
        "--role-arn",
        "arn:aws:iam::123456789012:role/gcp-deploy",
    ])
    .env_clear()
    .env("HOME", dir.path());
    for line in text.lines() {
        let (k, v) = line.trim_start_matches("export ").split_once('=').unwrap();
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    lab.kill().unwrap();
    lab.wait().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
}
