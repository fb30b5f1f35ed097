//! The files keyless writes, under concurrency and crashes: many `keyless aws write-profile`
//! processes editing one credentials file at once, writers killed with SIGKILL at random
//! moments, and many `credential_process` runs sharing one cold cache.
//!
//! After every step the file must parse, every profile a writer reported written must be there,
//! the hand-written part must be byte-identical and the mode 0600. Counts scale with
//! `KEYLESS_FILES_WRITERS` and `KEYLESS_FILES_KILLS` (tools/reliability runs more); each test
//! prints a `figures:` line that RELIABILITY.md quotes.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use keyless::deliver::aws_files::read_credentials_profile;
use rand::Rng;
use support::LabWorld;

/// The part of the file a person wrote: comments, odd spacing, CRLF, a profile keyless must not
/// touch. Every writer appends after it, so it must stay a byte-identical prefix.
const HAND_WRITTEN: &str = "# my keys, keep\n[default]\naws_access_key_id = AKIAHANDWRITTEN\naws_secret_access_key = s3cr3t\n\n; legacy\n[legacy]  \r\naws_access_key_id=KEEP\r\n\n";

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Temp files a killed writer left next to the credentials file.
fn leftover_temp_files(credentials: &Path) -> usize {
    std::fs::read_dir(credentials.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".credentials.keyless-")
        })
        .count()
}

/// The invariants that must hold after any mix of finished and killed writers.
fn assert_intact(credentials: &Path, written: &[String]) {
    let text = std::fs::read_to_string(credentials).unwrap();
    assert!(
        text.starts_with(HAND_WRITTEN),
        "the hand-written part changed:\n{text}"
    );
    assert_eq!(mode(credentials), 0o600);
    for profile in written {
        let creds = read_credentials_profile(credentials, profile)
            .unwrap_or_else(|e| panic!("{profile}: {e}\n{text}"))
            .unwrap_or_else(|| panic!("profile {profile} was lost:\n{text}"));
        assert!(creds.access_key_id.starts_with("ASIA"), "{profile}");
        assert!(creds.session_token.is_some(), "{profile}");
    }
}

fn write_profile(w: &LabWorld, role: &str, profile: &str) -> Command {
    let mut cmd = w.home.keyless([
        "aws",
        "write-profile",
        "--role-arn",
        role,
        "--profile",
        profile,
    ]);
    w.point_at_lab(&mut cmd, &[]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_and_killed_writers_lose_nothing() {
    let w = LabWorld::start().await;
    let credentials = w.home.credentials_file();
    std::fs::write(&credentials, HAND_WRITTEN).unwrap();
    let role = w.role("gcp-deploy");
    let writers = count("KEYLESS_FILES_WRITERS", 16);
    let kills = count("KEYLESS_FILES_KILLS", 40);

    // Every writer starts before any is waited for; the first ones miss the cache and exchange.
    let concurrent: Vec<_> = (0..writers)
        .map(|i| write_profile(&w, &role, &format!("w{i}")))
        .collect();
    let mut calibrate = write_profile(&w, &role, "calibrate");
    let killed: Vec<_> = (0..kills)
        .map(|i| write_profile(&w, &role, &format!("k{i}")))
        .collect();
    let credentials_in_thread = credentials.clone();
    let figures = tokio::task::spawn_blocking(move || {
        let credentials = credentials_in_thread;
        let children: Vec<_> = concurrent
            .into_iter()
            .map(|mut cmd| cmd.spawn().unwrap())
            .collect();
        let mut written = Vec::new();
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "w{i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            written.push(format!("w{i}"));
        }
        assert_intact(&credentials, &written);

        // How long a whole (warm-cache) writer takes, so the kills spread over its whole run.
        let started = std::time::Instant::now();
        assert!(calibrate.status().unwrap().success());
        let writer_time = started.elapsed();
        written.push("calibrate".to_string());
        let window = (writer_time.as_micros() as u64 * 6 / 5).max(1);

        // Kill writers at random moments: before, during and after their edit.
        let mut rng = rand::thread_rng();
        let (mut completed, mut interrupted, mut left_temp) = (0, 0, 0);
        for (i, mut cmd) in killed.into_iter().enumerate() {
            let mut child = cmd.spawn().unwrap();
            // Fault injection, not synchronisation: the kill lands wherever the writer is.
            std::thread::sleep(Duration::from_micros(rng.gen_range(0..window)));
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            if out.status.success() {
                completed += 1;
                written.push(format!("k{i}"));
            } else {
                assert!(
                    out.status.code().is_none(),
                    "k{i} failed rather than being killed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                interrupted += 1;
            }
            left_temp += leftover_temp_files(&credentials).min(1);
            assert_intact(&credentials, &written);
        }
        (completed, interrupted, left_temp, written, writer_time)
    })
    .await
    .unwrap();
    let (completed, interrupted, left_temp, written, writer_time) = figures;

    // The next writer sweeps whatever a killed one left; everything is still there.
    let out = w
        .keyless(&[
            "aws",
            "write-profile",
            "--role-arn",
            &role,
            "--profile",
            "last",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(leftover_temp_files(&credentials), 0);
    let mut all = written.clone();
    all.push("last".into());
    assert_intact(&credentials, &all);

    // botocore's own parser agrees: every profile resolves to its keys.
    let check = w
        .run(w.home.python(
            "profiles_resolve.py",
            all.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
        .await;
    assert_eq!(check.code(), 0, "{check}");

    println!(
        "figures: files write-profile writers={writers} concurrent_ok={writers} kills={kills} \
         killed_mid_run={interrupted} completed_before_kill={completed} \
         kills_leaving_temp_file={left_temp} profiles_lost=0 parse_failures=0 mode=0600 \
         writer_ms={}",
        writer_time.as_millis()
    );
}

/// Many SDK processes running `credential_process` at once against a cold cache: every one
/// prints valid credentials and the cache entry left behind is whole.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_credential_process_runs_share_one_cache() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let runs = count("KEYLESS_FILES_WRITERS", 16);
    let commands: Vec<_> = (0..runs)
        .map(|_| {
            let mut cmd = w.home.keyless(["aws", "credentials", "--role-arn", &role]);
            w.point_at_lab(&mut cmd, &[]);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        let children: Vec<_> = commands
            .into_iter()
            .map(|mut cmd| cmd.spawn().unwrap())
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for out in &outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["Version"], 1);
        assert!(doc["SessionToken"].as_str().is_some_and(|t| !t.is_empty()));
    }
    let cache_dir = w.home.cache_dir().join("keyless/aws");
    let entries: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "one entry, no temp files: {entries:?}");
    let cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&entries[0]).unwrap()).unwrap();
    assert!(cached.is_object());
    assert_eq!(mode(&entries[0]), 0o600);

    // A warm run is served from that entry: the lab sees no new exchange.
    let before = w.lab.stats().assume_role_with_web_identity_calls;
    let out = w
        .keyless(&["aws", "credentials", "--role-arn", &role])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, before);
    println!(
        "figures: files credential_process concurrent_cold_runs={runs} failures=0 cache_entries=1"
    );
}

/// A credentials file others can read, or one written by another user (sudo), is rewritten 0600
/// with a warning that says what changed.
#[tokio::test(flavor = "multi_thread")]
async fn an_exposed_credentials_file_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let w = LabWorld::start().await;
    let credentials = w.home.credentials_file();
    std::fs::write(&credentials, HAND_WRITTEN).unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = w
        .keyless(&[
            "aws",
            "write-profile",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--profile",
            "p",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stderr.contains("readable by others (mode 0644)"),
        "{out}"
    );
    assert_eq!(mode(&credentials), 0o600);

    // Reading a loose file (whoami --profile) warns and says how to fix it.
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = w.keyless(&["aws", "whoami", "--profile", "p"]).await;
    assert!(out.stderr.contains("chmod 600"), "{out}");
}
