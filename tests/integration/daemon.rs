//! `keyless serve --config keyless.toml`, the real binary against the lab: profiles deliver
//! through their channels, `/metrics` reports each, SIGHUP restarts exactly what changed, a
//! broken file on reload changes nothing, SIGTERM exits cleanly. The lab counts exchanges, so
//! "unchanged means untouched" is checked as "no new STS call", not inferred from logs.
//!
//! Readiness is the daemon's `--ready-file` (written atomically, with a generation per load),
//! polled with a bound: no sleeps stand in for synchronisation.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use support::LabWorld;

/// A running `keyless serve`, killed if the test ends early.
struct Serve {
    child: Child,
    ready_file: PathBuf,
    stderr_file: PathBuf,
}

impl Serve {
    fn start(w: &LabWorld, config: &Path) -> Self {
        Self::start_with(w, config, &[], None)
    }

    /// Starts the daemon; with `passed`, as systemd's socket activation does: the socket is the
    /// child's descriptor 3, `LISTEN_FDS=1` and `LISTEN_PID` its own pid (set by a shell that
    /// then execs keyless, keeping the pid).
    fn start_with(
        w: &LabWorld,
        config: &Path,
        extra: &[&str],
        passed: Option<&std::net::TcpListener>,
    ) -> Self {
        let dir = config.parent().unwrap();
        let ready_file = dir.join("ready.json");
        let stderr_file = dir.join("serve.stderr");
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "serve".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--ready-file".as_ref(),
            ready_file.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let mut cmd = match passed {
            None => w.home.keyless(args),
            Some(socket) => {
                use std::os::fd::AsRawFd;
                use std::os::unix::process::CommandExt;
                let mut cmd = w.home.command("sh");
                cmd.arg("-c")
                    .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=keyless exec "$0" "$@""#)
                    .arg(support::aws_home::keyless_bin())
                    .args(args);
                let fd = socket.as_raw_fd();
                // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        let ok = if fd == 3 {
                            libc::fcntl(3, libc::F_SETFD, 0) == 0
                        } else {
                            libc::dup2(fd, 3) == 3
                        };
                        if ok {
                            Ok(())
                        } else {
                            Err(std::io::Error::last_os_error())
                        }
                    });
                }
                cmd
            }
        };
        w.point_at_lab(&mut cmd, &[]);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_file).unwrap())
            .spawn()
            .expect("keyless serve starts");
        Self {
            child,
            ready_file,
            stderr_file,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_file).unwrap_or_default()
    }

    /// The ready file once it reports `generation` (or a later one); panics after 60 s or if
    /// the daemon exits.
    async fn ready(&mut self, generation: u64) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("keyless serve exited ({status}):\n{}", self.stderr());
            }
            if let Ok(text) = std::fs::read_to_string(&self.ready_file) {
                let doc: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("torn ready file ({e}): {text}"));
                if doc["generation"].as_u64().unwrap() >= generation {
                    return doc;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready (generation {generation}) within 60 s:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The exit code once the daemon exits by itself; panics if it is still running after 60 s.
    async fn exit_code(&mut self) -> i32 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still running after 60 s:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then the exit code (bounded wait).
    async fn terminate(mut self) -> i32 {
        self.signal("TERM");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no exit 30 s after SIGTERM:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn fetch(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("metrics endpoint answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Writes `text` to `path` readable by its owner only, as a token file must be.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn write_config(w: &LabWorld, text: &str) -> PathBuf {
    let path = w.home.home().join("keyless.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `aws_access_key_id` of `[section]` in the lab home's credentials file.
fn access_key_of(w: &LabWorld, section: &str) -> Option<String> {
    let text = std::fs::read_to_string(w.home.credentials_file()).ok()?;
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
        } else if current == section {
            if let Some(v) = line.strip_prefix("aws_access_key_id") {
                return Some(v.trim_start_matches([' ', '=']).to_string());
            }
        }
    }
    None
}

/// Both file channels deliver what works: the credentials profile passes `whoami` and the token
/// file is accepted by STS; `/metrics` and `/healthz` cover both profiles; SIGTERM exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn serve_writes_the_token_file_and_the_credentials_profile() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let config = write_config(
        &w,
        &format!(
            r#"
metrics_listen = "127.0.0.1:0"

[profile.deploy]
role_arn = "{role}"
credentials_file = "{creds}"
credentials_profile = "deploy"

[profile.webid]
role_arn = "{role}"
token_file = "tokens/webid.jwt"
"#,
            creds = w.home.credentials_file().display()
        ),
    );
    let mut serve = Serve::start(&w, &config);
    let ready = serve.ready(1).await;
    assert_eq!(
        ready["profiles"]["deploy"]["first_delivery"], "ok",
        "{ready}"
    );
    assert_eq!(
        ready["profiles"]["webid"]["first_delivery"], "ok",
        "{ready}"
    );
    // Every credential is held: each profile's state is `ok`.
    assert_eq!(ready["profiles"]["deploy"]["state"], "ok", "{ready}");
    assert_eq!(ready["profiles"]["webid"]["state"], "ok", "{ready}");
    let stats = w.lab.stats();
    assert_eq!(stats.assume_role_with_web_identity_calls, 1, "{stats:?}");
    assert_eq!(stats.id_tokens_minted, 2, "{stats:?}");

    // The credentials profile is a working identity.
    assert!(access_key_of(&w, "deploy").unwrap().starts_with("ASIA"));
    let out = w.keyless(&["aws", "whoami", "--profile", "deploy"]).await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout.contains("assumed-role/gcp-deploy/"),
        "{}",
        out.stdout
    );

    // The token file (relative to the config file) is private and STS takes it.
    let token_file = w.home.home().join("tokens/webid.jwt");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let source = format!("file:{}", token_file.display());
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &role,
            "--token-source",
            &source,
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");

    let metrics = ready["metrics_listen"].as_str().unwrap();
    let (status, text) = fetch(&format!("http://{metrics}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("keyless_refreshes_total{profile=\"deploy\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("keyless_refreshes_total{profile=\"webid/id_token\"} 1"),
        "{text}"
    );
    let (status, health) = fetch(&format!("http://{metrics}/healthz")).await;
    assert_eq!(status, 200, "{health}");
    // The image's health check: `keyless probe` on the same URL says healthy.
    let out = w
        .keyless(&["probe", &format!("http://{metrics}/healthz")])
        .await;
    assert_eq!(out.code(), 0, "{out}");

    let stderr_before_exit = serve.stderr();
    assert!(
        stderr_before_exit.contains("deploy") && stderr_before_exit.contains("started"),
        "one line per profile started:\n{stderr_before_exit}"
    );
    let ready_file = serve.ready_file.clone();
    assert_eq!(serve.terminate().await, 0);
    assert!(!ready_file.exists(), "the ready file goes away on exit");
}

/// `keyless probe` (the distroless image's health check) exits 1 on the daemon's 503 (a profile
/// the cloud refuses), saying why; on a closed port; and, within its --timeout, on a server that
/// accepts but never answers.
#[tokio::test(flavor = "multi_thread")]
async fn probe_fails_on_a_503_a_closed_port_and_a_silent_server_in_bounded_time() {
    let w = LabWorld::start().await;
    let config = write_config(
        &w,
        &format!(
            r#"
metrics_listen = "127.0.0.1:0"

[profile.refused]
role_arn = "arn:aws:iam::123456789012:role/no-such-role"
credentials_file = "{creds}"
credentials_profile = "refused"
"#,
            creds = w.home.credentials_file().display()
        ),
    );
    let mut serve = Serve::start(&w, &config);
    let ready = serve.ready(1).await;
    assert_eq!(ready["profiles"]["refused"]["state"], "failing", "{ready}");
    let metrics = ready["metrics_listen"].as_str().unwrap();
    let healthz = format!("http://{metrics}/healthz");
    let (status, _) = fetch(&healthz).await;
    assert_eq!(status, 503);
    let out = w.keyless(&["probe", &healthz]).await;
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains("503") && out.stderr.contains("refused"),
        "{out}"
    );

    // A closed port: refused at once.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let out = w
        .keyless(&["probe", &format!("http://{closed}/healthz")])
        .await;
    assert_eq!(out.code(), 1, "{out}");

    // A listener that never answers (the kernel completes the handshake; nobody reads).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let started = std::time::Instant::now();
    let out = w
        .keyless(&[
            "probe",
            "--timeout",
            "1",
            &format!("http://{}/healthz", silent.local_addr().unwrap()),
        ])
        .await;
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("--timeout"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "probe --timeout 1 took {:?}",
        started.elapsed()
    );

    // Not a plain http:// URL: a usage error naming the fix.
    let out = w.keyless(&["probe", "https://127.0.0.1:1/healthz"]).await;
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("plain http://"), "{out}");
    drop(silent);
    assert_eq!(serve.terminate().await, 0);
}

/// SIGHUP: the unchanged profile keeps its refresher (no new exchange, same keys), the changed
/// one restarts (one new exchange, new keys), the removed one stops and leaves `/metrics`. A
/// broken file on the next SIGHUP changes nothing and says where the mistake is.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_restarts_only_what_changed_and_survives_a_broken_file() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let config_text = |b_session: &str, with_c: bool| {
        let mut text = format!(
            r#"
metrics_listen = "127.0.0.1:0"

[profile.a]
role_arn = "{role}"
credentials_profile = "a"

[profile.b]
role_arn = "{role}"
session_name = "{b_session}"
credentials_profile = "b"
"#
        );
        if with_c {
            text.push_str(&format!(
                "\n[profile.c]\nrole_arn = \"{role}\"\ntoken_file = \"c.jwt\"\n"
            ));
        }
        text
    };
    let config = write_config(&w, &config_text("first", true));
    let mut serve = Serve::start(&w, &config);
    let ready = serve.ready(1).await;
    let metrics = ready["metrics_listen"].as_str().unwrap().to_string();
    let before = w.lab.stats();
    assert_eq!(before.assume_role_with_web_identity_calls, 2, "{before:?}");
    assert_eq!(before.id_tokens_minted, 3, "{before:?}");
    let a_key = access_key_of(&w, "a").expect("profile a written");
    let b_key = access_key_of(&w, "b").expect("profile b written");
    // Each exchange is in the audit log under its profile.
    let mut profiles: Vec<(Option<String>, Option<String>)> = w
        .audit_events()
        .into_iter()
        .map(|e| (e.profile, e.channel))
        .collect();
    profiles.sort();
    let serve_of = |p: &str| (Some(p.to_string()), Some("serve".to_string()));
    assert_eq!(profiles, vec![serve_of("a"), serve_of("b")]);

    // b changes, a does not, c goes away; logrotate moved the audit log away just before.
    let rotated = w.home.audit_log().with_extension("jsonl.1");
    std::fs::rename(w.home.audit_log(), &rotated).unwrap();
    std::fs::write(&config, config_text("second", false)).unwrap();
    serve.signal("HUP");
    let ready = serve.ready(2).await;
    let after_rotation = w.audit_events();
    assert_eq!(
        after_rotation.len(),
        1,
        "b's exchange, in the reopened file"
    );
    assert_eq!(after_rotation[0].profile.as_deref(), Some("b"));
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        2
    );
    assert_eq!(ready["reload_error"], serde_json::Value::Null, "{ready}");
    assert_eq!(ready["profiles"]["a"]["started_generation"], 1, "{ready}");
    assert_eq!(ready["profiles"]["b"]["started_generation"], 2, "{ready}");
    assert!(ready["profiles"].get("c").is_none(), "{ready}");
    let after = w.lab.stats();
    assert_eq!(
        after.assume_role_with_web_identity_calls,
        before.assume_role_with_web_identity_calls + 1,
        "exactly one exchange, for b: {after:?}"
    );
    assert_eq!(
        after.id_tokens_minted,
        before.id_tokens_minted + 1,
        "{after:?}"
    );
    assert_eq!(access_key_of(&w, "a").unwrap(), a_key, "a untouched");
    assert_ne!(access_key_of(&w, "b").unwrap(), b_key, "b re-exchanged");
    let (_, text) = fetch(&format!("http://{metrics}/metrics")).await;
    assert!(
        text.contains("keyless_refreshes_total{profile=\"a\"} 1"),
        "a keeps its refresher:\n{text}"
    );
    assert!(
        text.contains("keyless_refreshes_total{profile=\"b\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "keyless_exchanges_total{target=\"aws-sts\",outcome=\"ok\",error_class=\"none\"} 3"
        ),
        "every exchange counted:\n{text}"
    );
    assert!(
        !text.contains("profile=\"c/id_token\""),
        "c is gone:\n{text}"
    );

    // A broken file: reported with its position, nothing restarts, everything keeps serving.
    std::fs::write(
        &config,
        config_text("third", false).replace("role_arn", "rol_arn"),
    )
    .unwrap();
    serve.signal("HUP");
    let ready = serve.ready(3).await;
    let error = ready["reload_error"]
        .as_str()
        .expect("reload error reported");
    assert!(
        error.contains("keyless.toml:5:1") && error.contains("`rol_arn`"),
        "{error}"
    );
    assert_eq!(ready["profiles"]["a"]["started_generation"], 1, "{ready}");
    assert_eq!(ready["profiles"]["b"]["started_generation"], 2, "{ready}");
    assert_eq!(
        w.lab.stats().assume_role_with_web_identity_calls,
        after.assume_role_with_web_identity_calls
    );
    let (status, text) = fetch(&format!("http://{metrics}/metrics")).await;
    assert_eq!(status, 200);
    assert!(text.contains("profile=\"b\""), "{text}");
    assert!(
        serve.stderr().contains("the running one stays"),
        "{}",
        serve.stderr()
    );
    assert_eq!(serve.terminate().await, 0);
}

/// A broken file at start: exit 2, every problem with file:line:col, nothing started.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_file_exits_2_naming_each_problem() {
    let w = LabWorld::start().await;
    let config = write_config(
        &w,
        "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t.jwt\"\ngce_metadata_listen = \"127.0.0.1:9912\"\n",
    );
    let out = w
        .keyless(&["serve", "--config", config.to_str().unwrap()])
        .await;
    assert_eq!(out.code(), 2, "{out}");
    assert!(
        out.stderr
            .contains("keyless.toml:4:1: `gce_metadata_listen` delivers Google"),
        "{}",
        out.stderr
    );
    assert_eq!(w.lab.stats().id_tokens_minted, 0);
}

/// A channel whose server this build lacks is refused at start with the command that has it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One daemon serves both directions' endpoints: the ECS-style endpoint (with its token file)
/// for a GCP → AWS profile, and the GCE-metadata-style endpoint for an AWS → GCP profile whose
/// AWS identity comes from a shared-credentials profile.
#[tokio::test(flavor = "multi_thread")]
async fn server_channels_of_both_directions_run_in_one_daemon() {
    let w = LabWorld::start().await;
    let session = w
        .lab
        .issue_role_credentials("aws-workload", "daemon", Duration::from_secs(3600));
    w.home.add_static_profile(
        "workload",
        &session.access_key_id,
        session.secret_access_key.expose(),
        session.session_token.as_ref().unwrap().expose(),
    );
    let (ecs_port, gce_port) = (free_port(), free_port());
    let token_file = w.home.home().join("ecs-token");
    let config = write_config(
        &w,
        &format!(
            "[profile.deploy]\nrole_arn = \"{}\"\necs_listen = \"127.0.0.1:{ecs_port}\"\nauth_token_file = \"{}\"\n\n\
             [profile.copycat]\naudience = \"{}\"\nservice_account = \"copycat@keyless-lab.iam.gserviceaccount.com\"\n\
             aws_profile = \"workload\"\naws_region = \"us-east-1\"\ngce_metadata_listen = \"127.0.0.1:{gce_port}\"\n",
            w.lab.role_arn("gcp-deploy"),
            token_file.display(),
            w.lab.workload_identity_audience(),
        ),
    );
    let mut serve = Serve::start(&w, &config);
    serve.ready(1).await;
    let http = reqwest::Client::new();
    let token = std::fs::read_to_string(&token_file).unwrap();
    let ecs = http
        .get(format!("http://127.0.0.1:{ecs_port}/creds"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(ecs.status(), 200, "{}", serve.stderr());
    let creds: serde_json::Value = ecs.json().await.unwrap();
    assert!(creds["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    let refused = http
        .get(format!("http://127.0.0.1:{ecs_port}/creds"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let gce = http
        .get(format!(
            "http://127.0.0.1:{gce_port}/computeMetadata/v1/instance/service-accounts/default/token"
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(gce.status(), 200, "{}", serve.stderr());
    let answer: serde_json::Value = gce.json().await.unwrap();
    assert!(answer["expires_in"].as_i64().unwrap() > 3000);
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);
    assert_eq!(serve.terminate().await, 0);
}

/// A GCE-style profile's engines are named after it in `/metrics` and `/healthz`
/// (`copycat/gce-metadata token`), and leave with it: restarted on SIGHUP, the old version's
/// engine is gone (one series, not two — a stale one would turn `/healthz` 503 once it expired);
/// removed, nothing of it remains.
#[tokio::test(flavor = "multi_thread")]
async fn a_gce_profiles_engines_are_named_after_it_and_leave_with_it() {
    let w = LabWorld::start().await;
    let session = w
        .lab
        .issue_role_credentials("aws-workload", "daemon", Duration::from_secs(3600));
    w.home.add_static_profile(
        "workload",
        &session.access_key_id,
        session.secret_access_key.expose(),
        session.session_token.as_ref().unwrap().expose(),
    );
    let gce_port = free_port();
    let config_text = |lifetime: Option<u32>| {
        let mut text = format!(
            "metrics_listen = \"127.0.0.1:0\"\n\n[profile.deploy]\nrole_arn = \"{}\"\ntoken_file = \"d.jwt\"\n",
            w.lab.role_arn("gcp-deploy"),
        );
        if let Some(lifetime) = lifetime {
            text.push_str(&format!(
                "\n[profile.copycat]\naudience = \"{}\"\nservice_account = \"copycat@keyless-lab.iam.gserviceaccount.com\"\n\
                 aws_profile = \"workload\"\naws_region = \"us-east-1\"\nlifetime = {lifetime}\n\
                 gce_metadata_listen = \"127.0.0.1:{gce_port}\"\n",
                w.lab.workload_identity_audience(),
            ));
        }
        text
    };
    let config = write_config(&w, &config_text(Some(3600)));
    let mut serve = Serve::start(&w, &config);
    let ready = serve.ready(1).await;
    let metrics = ready["metrics_listen"].as_str().unwrap().to_string();
    let series = |text: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("keyless_refreshes_total{profile=\"copycat/gce-metadata token\"}")
            })
            .count()
    };
    let (_, text) = fetch(&format!("http://{metrics}/metrics")).await;
    assert_eq!(series(&text), 1, "{text}");
    let (status, health) = fetch(&format!("http://{metrics}/healthz")).await;
    assert_eq!(status, 200, "{health}");
    assert!(
        health.contains("copycat/gce-metadata token: ok"),
        "{health}"
    );

    std::fs::write(&config, config_text(Some(1800))).unwrap();
    serve.signal("HUP");
    let ready = serve.ready(2).await;
    assert_eq!(
        ready["profiles"]["copycat"]["started_generation"], 2,
        "{ready}"
    );
    let (_, text) = fetch(&format!("http://{metrics}/metrics")).await;
    assert_eq!(
        series(&text),
        1,
        "the restarted profile's engine only: {text}"
    );

    std::fs::write(&config, config_text(None)).unwrap();
    serve.signal("HUP");
    serve.ready(3).await;
    let (_, text) = fetch(&format!("http://{metrics}/metrics")).await;
    assert!(!text.contains("copycat"), "{text}");
    let (status, health) = fetch(&format!("http://{metrics}/healthz")).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(serve.terminate().await, 0);
}

/// An AWS → GCP profile with `token_source = "file:..."` trades an OIDC token at the lab's OIDC
/// provider and serves copycat's token on its GCE-metadata-style endpoint; so does one that
/// names its ends, `target = "gcp"` and `source = "file:..."` (relative to keyless.toml).
#[tokio::test(flavor = "multi_thread")]
async fn an_aws_to_gcp_profile_takes_a_jwt_token_source() {
    let w = LabWorld::start().await;
    let provider = w
        .lab
        .provider_audience(keyless::lab::DEMO_POOL, keyless::lab::DEMO_OIDC_PROVIDER);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let jwt = w.lab.sign_claims(&serde_json::json!({
        "iss": keyless::lab::DEMO_OIDC_ISSUER, "aud": provider.replacen("//", "https://", 1),
        "iat": now, "exp": now + 600,
        "sub": "repo:keyless-lab/app:ref:refs/heads/main", "repository_owner": "keyless-lab",
    }));
    let token = w.home.write_token("ci.jwt", &jwt);
    // keyless.toml is in the lab home; the token beside it, in ../tokens.
    let root = w.home.home().parent().unwrap().to_path_buf();
    let relative = std::path::Path::new("..").join(token.strip_prefix(&root).unwrap());
    let (old_port, named_port) = (free_port(), free_port());
    let config = write_config(
        &w,
        &format!(
            "[profile.ci]\naudience = \"{provider}\"\ntoken_source = \"file:{}\"\n\
             service_account = \"copycat@keyless-lab.iam.gserviceaccount.com\"\n\
             gce_metadata_listen = \"127.0.0.1:{old_port}\"\n\n\
             [profile.named]\ntarget = \"gcp\"\nsource = \"file:{}\"\naudience = \"{provider}\"\n\
             service_account = \"copycat@keyless-lab.iam.gserviceaccount.com\"\n\
             gce_metadata_listen = \"127.0.0.1:{named_port}\"\n",
            token.display(),
            relative.display(),
        ),
    );
    let mut serve = Serve::start(&w, &config);
    serve.ready(1).await;
    for gce_port in [old_port, named_port] {
        let gce = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{gce_port}/computeMetadata/v1/instance/service-accounts/default/token"
            ))
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .unwrap();
        assert_eq!(gce.status(), 200, "{gce_port}: {}", serve.stderr());
        let answer: serde_json::Value = gce.json().await.unwrap();
        let status = reqwest::Client::new()
            .get(format!(
                "{}/storage/v1/b?project=keyless-lab",
                w.lab.google_apis_url()
            ))
            .bearer_auth(answer["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    assert_eq!(w.lab.stats().google_sts_exchanges, 2);
    assert_eq!(serve.terminate().await, 0);
}

/// `allow_remote = true` for the daemon does not switch off the `Host` check of a loopback
/// listener (a DNS-rebinding page could otherwise read it); `allowed_hosts` at the top and in
/// the profile adds names.
#[tokio::test(flavor = "multi_thread")]
async fn allow_remote_keeps_the_host_check_of_loopback_listeners() {
    let w = LabWorld::start().await;
    let port = free_port();
    let config = write_config(
        &w,
        &format!(
            "allow_remote = true\nallowed_hosts = [\"top.internal\"]\n\
             [profile.deploy]\nrole_arn = \"{}\"\nimds_listen = \"127.0.0.1:{port}\"\n\
             allowed_hosts = [\"profile.internal\"]\n",
            w.lab.role_arn("gcp-deploy"),
        ),
    );
    let mut serve = Serve::start(&w, &config);
    serve.ready(1).await;
    let http = reqwest::Client::new();
    let token_with_host = |host: &str| {
        http.put(format!("http://127.0.0.1:{port}/latest/api/token"))
            .header("Host", host)
            .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
            .send()
    };
    for host in ["attacker.example", "10.1.2.3"] {
        let answer = token_with_host(host).await.unwrap();
        assert_eq!(answer.status(), 403, "{host}: {}", serve.stderr());
    }
    for host in [
        format!("127.0.0.1:{port}"),
        "top.internal".into(),
        "profile.internal".into(),
    ] {
        let answer = token_with_host(&host).await.unwrap();
        assert_eq!(answer.status(), 200, "{host}: {}", serve.stderr());
    }
    assert_eq!(serve.terminate().await, 0);
}

/// Socket activation: the daemon serves on the socket it was passed (the test still holds the
/// same socket open, so keyless could not have bound the port itself), and a reload that
/// restarts the profile keeps serving on it: the port is never free for another user.
#[tokio::test(flavor = "multi_thread")]
async fn serve_uses_the_socket_passed_by_socket_activation() {
    let w = LabWorld::start().await;
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let profile = format!(
        "[profile.deploy]\nrole_arn = \"{}\"\nimds_listen = \"127.0.0.1:{port}\"\n",
        w.lab.role_arn("gcp-deploy"),
    );
    let config = write_config(&w, &profile);
    let mut serve = Serve::start_with(&w, &config, &[], Some(&socket));
    serve.ready(1).await;
    // A connection per request: the restarted profile closes the connections its predecessor
    // kept alive, and a pooled one picked just then would fail for a reason this test is not about.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let token = || {
        http.put(format!("http://127.0.0.1:{port}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
            .send()
    };
    let answer = token().await.expect("keyless answers on the passed socket");
    assert_eq!(answer.status(), 200, "{}", serve.stderr());
    assert!(
        serve
            .stderr()
            .contains("socket activation passed a listening socket"),
        "{}",
        serve.stderr()
    );
    // A changed profile restarts on the same socket.
    std::fs::write(
        &config,
        format!("{profile}allowed_hosts = [\"x.internal\"]\n"),
    )
    .unwrap();
    serve.signal("HUP");
    let status = serve.ready(2).await;
    assert_eq!(
        status["profiles"]["deploy"]["started_generation"], 2,
        "{status}"
    );
    let answer = token().await.expect("still answers after the reload");
    assert_eq!(answer.status(), 200, "{}", serve.stderr());
    assert_eq!(serve.terminate().await, 0);
}

/// A profile that cannot start (here: an authorization token file with a trailing newline)
/// makes the daemon exit 2 before it reports ready, naming the profile, the fix and
/// `--keep-going`; with `--keep-going` the other profiles are served and the ready file lists
/// the failure.
#[tokio::test(flavor = "multi_thread")]
async fn a_profile_that_cannot_start_stops_the_daemon_before_ready() {
    let w = LabWorld::start().await;
    let bad_token = w.home.home().join("ecs-token");
    write_private(&bad_token, &format!("{}\n", "t".repeat(40)));
    let config = write_config(
        &w,
        &format!(
            "[profile.good]\nrole_arn = \"{role}\"\nimds_listen = \"127.0.0.1:{}\"\n\n\
             [profile.bad]\nrole_arn = \"{role}\"\necs_listen = \"127.0.0.1:{}\"\n\
             auth_token_file = \"{}\"\n",
            free_port(),
            free_port(),
            bad_token.display(),
            role = w.lab.role_arn("gcp-deploy"),
        ),
    );
    let mut serve = Serve::start(&w, &config);
    assert_eq!(serve.exit_code().await, 2, "{}", serve.stderr());
    let stderr = serve.stderr();
    assert!(stderr.contains("profile `bad`"), "{stderr}");
    assert!(stderr.contains("line break"), "{stderr}");
    assert!(stderr.contains("--keep-going"), "{stderr}");
    assert!(!serve.ready_file.exists(), "reported ready:\n{stderr}");
    drop(serve);

    let mut serve = Serve::start_with(&w, &config, &["--keep-going"], None);
    let status = serve.ready(1).await;
    assert!(status["profiles"]["good"].is_object(), "{status}");
    assert!(status["profiles"]["bad"].is_null(), "{status}");
    assert!(
        status["start_errors"]["bad"]
            .as_str()
            .unwrap()
            .contains("line break"),
        "{status}"
    );
    assert_eq!(serve.terminate().await, 0);
}

/// On SIGHUP a changed profile whose new version cannot start is reported, and the old
/// version keeps serving on its port.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_whose_new_version_cannot_start_keeps_the_old_one() {
    let w = LabWorld::start().await;
    let port = free_port();
    let profile = format!(
        "[profile.deploy]\nrole_arn = \"{}\"\nimds_listen = \"127.0.0.1:{port}\"\n",
        w.lab.role_arn("gcp-deploy"),
    );
    let config = write_config(&w, &profile);
    let mut serve = Serve::start(&w, &config);
    serve.ready(1).await;
    let bad_token = w.home.home().join("ecs-token");
    write_private(&bad_token, &format!("{}\n", "t".repeat(40)));
    std::fs::write(
        &config,
        format!(
            "{profile}ecs_listen = \"127.0.0.1:{}\"\nauth_token_file = \"{}\"\n",
            free_port(),
            bad_token.display()
        ),
    )
    .unwrap();
    serve.signal("HUP");
    let status = serve.ready(2).await;
    assert_eq!(
        status["profiles"]["deploy"]["started_generation"], 1,
        "{status}"
    );
    assert!(
        status["start_errors"]["deploy"]
            .as_str()
            .unwrap()
            .contains("line break"),
        "{status}"
    );
    assert!(
        serve.stderr().contains("the running one keeps serving"),
        "{}",
        serve.stderr()
    );
    let answer = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the old version still answers");
    assert_eq!(answer.status(), 200, "{}", serve.stderr());
    assert_eq!(serve.terminate().await, 0);
}

/// The ECS endpoint's `auth_token_file`: SIGHUP picks up a changed token (compared by digest)
/// without restarting the profile or exchanging again, so the old token is refused from then
/// on; a file that turns into a symbolic link is refused (the token it had stays), and a token
/// under 32 bytes never starts the endpoint.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn sighup_rereads_the_ecs_token_file_and_refuses_unsafe_ones() {
    use std::os::unix::fs::PermissionsExt;
    let w = LabWorld::start().await;
    let token_file = w.home.home().join("ecs-token");
    let write_token = |token: &str| {
        let temp = token_file.with_extension("new");
        std::fs::write(&temp, token).unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&temp, &token_file).unwrap();
    };
    let (old, new) = ("o".repeat(40), "n".repeat(40));
    write_token(&old);
    let port = free_port();
    let config = write_config(
        &w,
        &format!(
            "[profile.deploy]\nrole_arn = \"{}\"\necs_listen = \"127.0.0.1:{port}\"\nauth_token_file = \"{}\"\n",
            w.lab.role_arn("gcp-deploy"),
            token_file.display(),
        ),
    );
    let mut serve = Serve::start(&w, &config);
    serve.ready(1).await;
    let status_with = |token: String| async move {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/creds"))
            .header("Authorization", token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status_with(old.clone()).await, 200, "{}", serve.stderr());
    let exchanges = w.lab.stats().assume_role_with_web_identity_calls;

    write_token(&new);
    serve.signal("HUP");
    let ready = serve.ready(2).await;
    assert_eq!(
        ready["profiles"]["deploy"]["started_generation"], 1,
        "{ready}"
    );
    assert_eq!(
        status_with(old.clone()).await,
        403,
        "the old token still works"
    );
    assert_eq!(status_with(new.clone()).await, 200, "{}", serve.stderr());
    assert_eq!(
        w.lab.stats().assume_role_with_web_identity_calls,
        exchanges,
        "a new token is no reason for a new exchange"
    );

    // The file becomes a link to another file holding a token: refused, the last token stays.
    let elsewhere = w.home.home().join("elsewhere-token");
    std::fs::write(&elsewhere, "e".repeat(40)).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&token_file).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &token_file).unwrap();
    serve.signal("HUP");
    serve.ready(3).await;
    assert_eq!(status_with("e".repeat(40)).await, 403);
    assert_eq!(status_with(new.clone()).await, 200);
    assert!(
        serve.stderr().contains("symbolic link"),
        "{}",
        serve.stderr()
    );
    assert!(!serve.stderr().contains(&new), "a token reached the log");
    assert_eq!(serve.terminate().await, 0);

    // A short token never starts the endpoint: the daemon exits before it reports ready.
    std::fs::remove_file(&token_file).unwrap();
    write_token(&"s".repeat(31));
    let mut serve = Serve::start(&w, &config);
    assert_eq!(serve.exit_code().await, 2, "{}", serve.stderr());
    assert!(serve.stderr().contains("at least 32"), "{}", serve.stderr());
    assert!(
        !serve.ready_file.exists(),
        "reported ready:\n{}",
        serve.stderr()
    );
}

/// A profile with `chain_roles` delivers the last role's credentials: the daemon's refresh
/// runs the whole chain (web identity, then AssumeRole into the partner account).
#[tokio::test(flavor = "multi_thread")]
async fn a_chained_profile_delivers_the_partner_accounts_role() {
    let w = LabWorld::start().await;
    let config = write_config(
        &w,
        &format!(
            r#"
[profile.partner]
role_arn = "{role}"
chain_roles = ["arn:aws:iam::{account}:role/{partner}"]
external_id = "{external_id}"
tags = {{ team = "payments" }}
credentials_file = "{creds}"
"#,
            role = w.role("gcp-deploy"),
            account = keyless::lab::DEMO_PARTNER_ACCOUNT_ID,
            partner = keyless::lab::DEMO_PARTNER_ROLE,
            external_id = keyless::lab::DEMO_PARTNER_EXTERNAL_ID,
            creds = w.home.credentials_file().display()
        ),
    );
    let mut serve = Serve::start(&w, &config);
    let ready = serve.ready(1).await;
    assert_eq!(
        ready["profiles"]["partner"]["first_delivery"], "ok",
        "{ready}"
    );
    assert_eq!(w.lab.stats().assume_role_calls, 1);
    let out = w.keyless(&["aws", "whoami", "--profile", "partner"]).await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.json()["Account"], "210987654321", "{out}");
    assert!(
        out.stdout.contains(":assumed-role/partner-readonly/"),
        "{}",
        out.stdout
    );
    assert_eq!(serve.terminate().await, 0);
}
