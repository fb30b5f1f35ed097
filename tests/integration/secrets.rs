//! No secret leaks: every command that runs offline, at the highest verbosity (`-vv
//! --log-format json`, `RUST_LOG=trace`), against the lab, with its stdout, stderr and every file
//! it wrote searched for every secret the lab issued or holds (ID tokens, access tokens, AWS
//! secret keys and session tokens, IMDS session tokens, the container authorization token, OAuth
//! client secrets and refresh tokens) and every secret keyless itself made (the ECS endpoints'
//! authorization tokens, IMDS session tokens), raw and as URL or JSON encoding would show them,
//! whole or by their last 24 characters.
//!
//! Only outputs that are the credential by design may hold one: `credential_process` JSON and
//! the other `--format`s of `aws credentials` and `gcp token`, `gcp id-token` and `gcp
//! subject-token` on stdout, `aws serve`'s `AWS_CONTAINER_AUTHORIZATION_TOKEN` line, the files
//! written to hold credentials (profile, token file, authorization token file, the 0600 cache),
//! and `keyless lab`'s own container and GitHub request tokens, printed for a person trying the lab by hand. The
//! table says which, case by case.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use keyless::lab::LabConfig;
use support::{Background, CommandOutput, LabWorld};

const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";
const CI_RUNNER: &str = "ci-runner@keyless-lab.iam.gserviceaccount.com";
const DEPLOYER: &str = "deployer@keyless-lab.iam.gserviceaccount.com";
/// Time allowed for a server to start and for a command to end after SIGTERM.
const WITHIN: Duration = Duration::from_secs(30);
/// Pieces of a secret this long are searched for too (a log that printed part of one).
const TAIL: usize = 24;

/// Where a command delivers a credential by design.
#[derive(Clone, Debug, Default)]
struct ByDesign {
    /// Its stdout is the credential.
    stdout: bool,
    /// Files written to hold a credential.
    files: Vec<PathBuf>,
}

/// How a case runs.
#[derive(Clone, Debug)]
enum Run {
    /// To completion, with this exit code.
    Once(i32),
    /// A server or keeper: started, used as a client would, stopped with SIGTERM.
    Serve(Use),
}

/// What the test does with a running server before stopping it.
#[derive(Clone, Debug)]
enum Use {
    /// `aws serve`: credentials with the printed token, and refusals without and with another.
    Ecs,
    /// `aws serve --auth-token-file`: the same with the file's token.
    EcsTokenFile(PathBuf),
    /// `aws serve --imds`: a session token, then the role's credentials.
    Imds,
    /// `gcp serve`: an access token and an ID token.
    Gce,
    /// `aws token-file`: nothing; the file is written before it announces itself.
    TokenFile,
    /// `keyless serve`: every channel of the config (ports given), through the ready file.
    Daemon {
        ready_file: PathBuf,
        ecs: u16,
        ecs_token_file: PathBuf,
        imds: u16,
        gce: u16,
    },
    /// `keyless lab`: nothing.
    Lab,
}

/// One row of the table.
struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    run: Run,
    by_design: ByDesign,
}

fn case(name: &'static str, args: &[&str], run: Run, by_design: ByDesign) -> Case {
    Case {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        run,
        by_design,
    }
}

impl Case {
    fn env(mut self, env: &[(&str, String)]) -> Self {
        self.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        self
    }
}

fn stdout() -> ByDesign {
    ByDesign {
        stdout: true,
        files: Vec::new(),
    }
}

fn files(files: &[&Path]) -> ByDesign {
    ByDesign {
        stdout: false,
        files: files.iter().map(|f| f.to_path_buf()).collect(),
    }
}

fn clean() -> ByDesign {
    ByDesign::default()
}

/// One output a case produced.
struct Output {
    case: &'static str,
    what: String,
    text: String,
    by_design: bool,
}

/// Secrets keyless made itself and outputs the cases produced.
#[derive(Default)]
struct Collected {
    outputs: Vec<Output>,
    own_secrets: Vec<String>,
    /// Files holding the secrets of labs in other processes (`demo`, `lab`).
    secrets_files: Vec<PathBuf>,
    /// Cases whose stderr has trace lines (all but those that make no call at all).
    tracing_cases: usize,
}

/// Every regular file under `root` with its length and modification time.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() {
                files.insert(path, (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    files
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The value of `export NAME=VALUE` in `lines` (unquoted).
fn exported(lines: &[String], name: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let value = l.strip_prefix(&format!("export {name}="))?;
        Some(value.trim_matches('\'').to_string())
    })
}

/// Uses a running server as its clients would; returns the secrets keyless made for it.
async fn use_server(how: &Use, stdout: &[String]) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut made = Vec::new();
    match how {
        Use::Ecs | Use::EcsTokenFile(_) => {
            let uri = exported(stdout, "AWS_CONTAINER_CREDENTIALS_FULL_URI").expect("the URI");
            let token = match how {
                Use::EcsTokenFile(path) => std::fs::read_to_string(path).unwrap(),
                _ => exported(stdout, "AWS_CONTAINER_AUTHORIZATION_TOKEN").expect("the token"),
            };
            let ok = http
                .get(&uri)
                .header("Authorization", &token)
                .send()
                .await
                .unwrap();
            assert_eq!(ok.status(), 200);
            for auth in [None, Some("not-the-token")] {
                let mut request = http.get(&uri);
                if let Some(auth) = auth {
                    request = request.header("Authorization", auth);
                }
                assert!(request.send().await.unwrap().status().is_client_error());
            }
            made.push(token);
        }
        Use::Imds => {
            let base = exported(stdout, "AWS_EC2_METADATA_SERVICE_ENDPOINT").expect("endpoint");
            made.extend(imds_session(&http, base.trim_end_matches('/')).await);
        }
        Use::Gce => {
            let host = exported(stdout, "GCE_METADATA_HOST").expect("host");
            gce_tokens(&http, &host).await;
        }
        Use::TokenFile | Use::Lab => {}
        Use::Daemon {
            ready_file,
            ecs,
            ecs_token_file,
            imds,
            gce,
        } => {
            let deadline = tokio::time::Instant::now() + WITHIN;
            while !ready_file.exists() {
                assert!(tokio::time::Instant::now() < deadline, "no ready file");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let token = std::fs::read_to_string(ecs_token_file).unwrap();
            let ok = http
                .get(format!("http://127.0.0.1:{ecs}/creds"))
                .header("Authorization", &token)
                .send()
                .await
                .unwrap();
            assert_eq!(ok.status(), 200);
            made.push(token);
            made.extend(imds_session(&http, &format!("http://127.0.0.1:{imds}")).await);
            gce_tokens(&http, &format!("127.0.0.1:{gce}")).await;
        }
    }
    made
}

/// An IMDSv2 session and the role's credentials through it; returns the session token.
async fn imds_session(http: &reqwest::Client, base: &str) -> Vec<String> {
    let session = http
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let role = http
        .get(format!("{base}/latest/meta-data/iam/security-credentials/"))
        .header("X-aws-ec2-metadata-token", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let creds = http
        .get(format!(
            "{base}/latest/meta-data/iam/security-credentials/{role}"
        ))
        .header("X-aws-ec2-metadata-token", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(creds.status(), 200);
    vec![session]
}

/// An access token and an ID token from a GCE-metadata endpoint.
async fn gce_tokens(http: &reqwest::Client, host: &str) {
    let sa = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default");
    for path in ["token", "identity?audience=https://example.com&format=full"] {
        let answer = http
            .get(format!("{sa}/{path}"))
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
}

/// Runs `case` and collects what it printed and wrote.
async fn run_case(w: &LabWorld, root: &Path, case: &Case, collected: &mut Collected) {
    let mut args = vec![
        "-vv".to_string(),
        "--log-format".to_string(),
        "json".to_string(),
    ];
    args.extend(case.args.iter().cloned());
    let mut env: Vec<(&str, &str)> = vec![("RUST_LOG", "trace")];
    env.extend(case.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let before = snapshot(root);
    // Files a server removes when it stops (the daemon's ready file) are read while it runs.
    let mut written = BTreeMap::new();
    let (stdout, stderr) = match &case.run {
        Run::Once(code) => {
            let out: CommandOutput = w
                .keyless_env(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env)
                .await;
            assert_eq!(out.code(), *code, "{}: {out}", case.name);
            (out.stdout, out.stderr)
        }
        Run::Serve(how) => {
            let mut server: Background =
                w.spawn_keyless(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env);
            let announced = match how {
                Use::Daemon { .. } => Vec::new(),
                Use::Lab => vec!["GCE_METADATA_HOST"],
                Use::Ecs => vec![
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                ],
                Use::EcsTokenFile(_) => vec![
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                ],
                Use::Imds => vec!["AWS_EC2_METADATA_SERVICE_ENDPOINT"],
                Use::Gce => vec!["GCE_METADATA_HOST"],
                Use::TokenFile => vec!["AWS_WEB_IDENTITY_TOKEN_FILE"],
            };
            server.exports(&announced, WITHIN).await;
            let lines = server.stdout_lines().to_vec();
            collected.own_secrets.extend(use_server(how, &lines).await);
            written.extend(changed_files(&before, root));
            let (status, stderr) = server.terminate(WITHIN);
            assert!(status.success(), "{}: {status}\n{stderr}", case.name);
            let stdout = server.all_stdout(WITHIN).await.join("\n");
            (stdout, stderr)
        }
    };
    if stderr.contains("\"level\":\"TRACE\"") {
        collected.tracing_cases += 1;
    }
    collected.outputs.push(Output {
        case: case.name,
        what: "stdout".into(),
        text: stdout,
        by_design: case.by_design.stdout,
    });
    // `keyless lab` prints its container token and its GitHub Actions job's request token for
    // the person trying it (by design): those lines alone are left out of its stderr.
    let stderr = match &case.run {
        Run::Serve(Use::Lab) => stderr
            .lines()
            .filter(|l| {
                !l.contains("container authorization token:")
                    && !l.contains("export ACTIONS_ID_TOKEN_REQUEST_TOKEN=")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => stderr,
    };
    collected.outputs.push(Output {
        case: case.name,
        what: "stderr".into(),
        text: stderr,
        by_design: false,
    });
    written.extend(changed_files(&before, root));
    let cache = w.home.cache_dir();
    for (path, text) in written {
        let by_design = case.by_design.files.contains(&path) || path.starts_with(&cache);
        if by_design && path.exists() {
            assert_eq!(mode(&path), 0o600, "{}: {}", case.name, path.display());
        }
        collected.outputs.push(Output {
            case: case.name,
            what: path.display().to_string(),
            text,
            by_design,
        });
    }
}

/// The files under `root` that are new or changed since `before`, with their text.
fn changed_files(
    before: &BTreeMap<PathBuf, (u64, SystemTime)>,
    root: &Path,
) -> BTreeMap<PathBuf, String> {
    snapshot(root)
        .into_iter()
        .filter(|(path, stamp)| before.get(path) != Some(stamp))
        .map(|(path, _)| {
            let text =
                String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
            (path, text)
        })
        .collect()
}

/// What `secret` looks like where it might show: itself, URL- and JSON-encoded, and the same
/// for its last characters.
fn forms(secret: &str) -> Vec<String> {
    let mut pieces = vec![secret.to_string()];
    if secret.len() > TAIL {
        pieces.push(secret[secret.len() - TAIL..].to_string());
    }
    let mut forms = Vec::new();
    for piece in pieces {
        forms.push(url::form_urlencoded::byte_serialize(piece.as_bytes()).collect::<String>());
        forms.push(
            percent_encoding::utf8_percent_encode(&piece, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
        let json = serde_json::to_string(&piece).unwrap();
        forms.push(json[1..json.len() - 1].to_string());
        forms.push(piece);
    }
    forms.sort();
    forms.dedup();
    forms
}

/// The table: every command that runs offline, against the lab (one row a line).
#[rustfmt::skip]
fn cases(w: &LabWorld, root: &Path) -> Vec<Case> {
    let gcp_role = w.role("gcp-deploy");
    let ci_role = w.role("ci-deploy");
    let audience = w.lab.workload_identity_audience();
    let home = w.home.home();
    let workload = support::lab_world::aws_env(&w.lab.issue_role_credentials(
        "aws-workload",
        "secrets",
        Duration::from_secs(3600),
    ));
    let ci_user = support::lab_world::aws_env(&w.lab.aws_user_credentials("ci-user"));
    let token_path = w.write_token("deployer.jwt", DEPLOYER, Duration::from_secs(3600));
    let token_source = format!("file:{}", token_path.display());
    let command_source = format!("command:cat {}", token_path.display());
    let adc = home.join("adc.json");
    w.lab.write_authorized_user_adc(&adc, "dev@example.com").unwrap();
    let adc_env = [("GOOGLE_APPLICATION_CREDENTIALS", adc.display().to_string())];
    let impersonate = format!("impersonate:{CI_RUNNER}");
    let trust = home.join("trust.json");
    std::fs::write(&trust, &w.lab.config().role("gcp-deploy").unwrap().trust_policy).unwrap();
    let credentials_file = w.home.credentials_file();
    let web_token = home.join("web-identity.jwt");
    let auth_file = home.join("ecs-token");
    let external_account = home.join("external-account.json");
    let container = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", w.lab.container_credentials_uri("aws-workload")),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", w.lab.container_authorization_token()),
    ];
    let imds = [
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", w.lab.imds_endpoint()),
        ("AWS_EC2_METADATA_DISABLED", "false".to_string()),
    ];
    let daemon = daemon_config(w, root, &audience);
    let github_job = w.lab.github_actions_env();
    let github_job: Vec<(&str, String)> = github_job.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let github_role = w.role("github-deploy");
    let projected = home.join("projected-token");
    w.lab.write_kubernetes_token(&projected, "default", "deployer").unwrap();
    let k8s_source = format!("k8s:{}", projected.display());
    let k8s_role = w.role("k8s-deploy");
    let demo_secrets = root.join("demo-secrets.txt");
    let lab_secrets = root.join("lab-secrets.txt");
    let aud = audience.as_str();
    let (gr, cr) = (gcp_role.as_str(), ci_role.as_str());
    let check = "test -n \"$AWS_SESSION_TOKEN\"";
    let gcheck = "test -n \"$CLOUDSDK_AUTH_ACCESS_TOKEN\"";

    vec![
        // GCP → AWS.
        case("aws credentials (credential_process)", &["aws", "credentials", "--role-arn", gr], Run::Once(0), stdout()),
        case("aws credentials --format env", &["aws", "credentials", "--role-arn", gr, "--format", "env", "--no-cache"], Run::Once(0), stdout()),
        case("aws credentials --format json", &["aws", "credentials", "--role-arn", gr, "--format", "json", "--no-cache"], Run::Once(0), stdout()),
        case("aws credentials, token from a file", &["aws", "credentials", "--role-arn", gr, "--no-cache", "--token-source", &token_source], Run::Once(0), stdout()),
        case("aws credentials, token from a command", &["aws", "credentials", "--role-arn", gr, "--no-cache", "--token-source", &command_source], Run::Once(0), stdout()),
        case("aws credentials, a GitHub Actions job's token", &["aws", "credentials", "--role-arn", &github_role, "--no-cache", "--token-source", "github"], Run::Once(0), stdout()).env(&github_job),
        case("aws credentials, a Kubernetes projected token", &["aws", "credentials", "--role-arn", &k8s_role, "--no-cache", "--token-source", &k8s_source], Run::Once(0), stdout()),
        case("aws credentials, impersonating with ADC", &["aws", "credentials", "--role-arn", cr, "--no-cache", "--token-source", &impersonate], Run::Once(0), stdout()).env(&adc_env),
        case("aws credentials refused by the trust policy", &["aws", "credentials", "--role-arn", cr, "--no-cache"], Run::Once(3), clean()),
        case("aws exec", &["aws", "exec", "--role-arn", gr, "--no-cache", "--", "sh", "-c", check], Run::Once(0), clean()),
        case("aws write-profile", &["aws", "write-profile", "--role-arn", gr, "--no-cache", "--profile", "leaktest"], Run::Once(0), files(&[&credentials_file])),
        case("aws whoami --role-arn", &["aws", "whoami", "--role-arn", gr, "--no-cache"], Run::Once(0), clean()),
        case("aws whoami, keys in the environment", &["aws", "whoami"], Run::Once(0), clean()).env(&ci_user),
        case("aws token-file", &["aws", "token-file", "--path", path(&web_token), "--role-arn", gr], Run::Serve(Use::TokenFile), files(&[&web_token])),
        case("aws serve (ECS)", &["aws", "serve", "--role-arn", gr], Run::Serve(Use::Ecs), stdout()),
        case("aws serve --auth-token-file", &["aws", "serve", "--role-arn", gr, "--auth-token-file", path(&auth_file)], Run::Serve(Use::EcsTokenFile(auth_file.clone())), files(&[&auth_file])),
        case("aws serve --imds", &["aws", "serve", "--role-arn", gr, "--imds"], Run::Serve(Use::Imds), clean()),
        case("doctor aws", &["doctor", "aws", "--role-arn", gr, "--trust-policy", path(&trust)], Run::Once(0), clean()),
        // AWS → GCP, the AWS identity from the environment unless said otherwise.
        case("gcp token", &["gcp", "token", "--audience", aud, "--service-account", COPYCAT], Run::Once(0), stdout()).env(&workload),
        case("gcp token --format json", &["gcp", "token", "--audience", aud, "--no-cache", "--service-account", COPYCAT, "--format", "json"], Run::Once(0), stdout()).env(&workload),
        case("gcp token --format env", &["gcp", "token", "--audience", aud, "--no-cache", "--service-account", COPYCAT, "--format", "env"], Run::Once(0), stdout()).env(&workload),
        case("gcp token (federated)", &["gcp", "token", "--audience", aud, "--no-cache"], Run::Once(0), stdout()).env(&workload),
        case("gcp token, AWS identity from a container endpoint", &["gcp", "token", "--audience", aud, "--no-cache", "--service-account", COPYCAT], Run::Once(0), stdout()).env(&container),
        case("gcp token, AWS identity from IMDSv2", &["gcp", "token", "--audience", aud, "--no-cache", "--service-account", COPYCAT], Run::Once(0), stdout()).env(&imds),
        case("gcp token refused (IAM user outside the provider)", &["gcp", "token", "--audience", aud, "--no-cache", "--service-account", COPYCAT], Run::Once(3), clean()).env(&ci_user),
        case("gcp id-token", &["gcp", "id-token", "--audience", aud, "--no-cache", "--service-account", COPYCAT, "--target-audience", "https://example.com"], Run::Once(0), stdout()).env(&workload),
        case("gcp exec", &["gcp", "exec", "--audience", aud, "--no-cache", "--service-account", COPYCAT, "--", "sh", "-c", gcheck], Run::Once(0), clean()).env(&workload),
        case("gcp config", &["gcp", "config", "--audience", aud, "--service-account", COPYCAT, "--output", path(&external_account)], Run::Once(0), clean()).env(&workload),
        case("gcp subject-token", &["gcp", "subject-token", "--audience", aud], Run::Once(0), stdout()).env(&workload),
        case("gcp serve", &["gcp", "serve", "--audience", aud, "--service-account", COPYCAT], Run::Serve(Use::Gce), clean()).env(&workload),
        case("doctor gcp", &["doctor", "gcp", "--audience", aud, "--service-account", COPYCAT], Run::Once(0), clean()).env(&workload),
        // The daemon, every channel.
        case("serve (daemon)", &["serve", "--config", path(&daemon.config), "--ready-file", path(&daemon.ready_file)], Run::Serve(daemon.use_.clone()), files(&[&daemon.credentials_file, &daemon.token_file, &daemon.ecs_token_file])),
        // The lab's own processes, their secrets recorded to a file.
        case("demo", &["demo"], Run::Once(0), files(&[&demo_secrets])).env(&[("KEYLESS_LAB_SECRETS_FILE", demo_secrets.display().to_string())]),
        case("lab", &["lab"], Run::Serve(Use::Lab), files(&[&lab_secrets])).env(&[("KEYLESS_LAB_SECRETS_FILE", lab_secrets.display().to_string())]),
    ]
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `keyless serve`'s configuration with every channel, and where they deliver.
struct Daemon {
    config: PathBuf,
    ready_file: PathBuf,
    credentials_file: PathBuf,
    token_file: PathBuf,
    ecs_token_file: PathBuf,
    use_: Use,
}

fn daemon_config(w: &LabWorld, root: &Path, audience: &str) -> Daemon {
    let dir = root.join("daemon");
    std::fs::create_dir_all(&dir).unwrap();
    let session = w
        .lab
        .issue_role_credentials("aws-workload", "daemon", Duration::from_secs(3600));
    w.home.add_static_profile(
        "workload",
        &session.access_key_id,
        session.secret_access_key.expose(),
        session.session_token.as_ref().unwrap().expose(),
    );
    let free = support::service::free_port;
    let (ecs, imds, gce) = (free(), free(), free());
    let daemon = Daemon {
        config: dir.join("keyless.toml"),
        ready_file: dir.join("ready.json"),
        credentials_file: dir.join("credentials"),
        token_file: dir.join("web-identity.jwt"),
        ecs_token_file: dir.join("ecs-token"),
        use_: Use::Daemon {
            ready_file: dir.join("ready.json"),
            ecs,
            ecs_token_file: dir.join("ecs-token"),
            imds,
            gce,
        },
    };
    let role = w.role("gcp-deploy");
    std::fs::write(
        &daemon.config,
        format!(
            "[profile.files]\nrole_arn = \"{role}\"\ncredentials_file = \"{}\"\ncredentials_profile = \"deploy\"\n\
             token_file = \"{}\"\n\n\
             [profile.ecs]\nrole_arn = \"{role}\"\necs_listen = \"127.0.0.1:{ecs}\"\nauth_token_file = \"{}\"\n\n\
             [profile.imds]\nrole_arn = \"{role}\"\nimds_listen = \"127.0.0.1:{imds}\"\n\n\
             [profile.copycat]\naudience = \"{audience}\"\nservice_account = \"{COPYCAT}\"\n\
             aws_profile = \"workload\"\naws_region = \"us-east-1\"\ngce_metadata_listen = \"127.0.0.1:{gce}\"\n",
            daemon.credentials_file.display(),
            daemon.token_file.display(),
            daemon.ecs_token_file.display(),
        ),
    )
    .unwrap();
    daemon
}

/// Every command, at the highest verbosity: no secret in any output that is not the credential
/// by design.
#[tokio::test(flavor = "multi_thread")]
async fn no_command_leaks_a_secret() {
    let w = LabWorld::start_with(LabConfig::demo()).await;
    let root = w.home.home().parent().unwrap().to_path_buf();
    let table = cases(&w, &root);
    let mut collected = Collected::default();
    for case in &table {
        run_case(&w, &root, case, &mut collected).await;
        for (name, value) in &case.env {
            if name == "KEYLESS_LAB_SECRETS_FILE" {
                collected.secrets_files.push(PathBuf::from(value));
            }
        }
    }
    let mut secrets: Vec<String> = w
        .lab
        .issued_secrets()
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    secrets.extend(collected.own_secrets.iter().cloned());
    for file in &collected.secrets_files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let before = secrets.len();
        secrets.extend(text.lines().map(str::to_string));
        assert!(
            secrets.len() > before + 3,
            "{} recorded nothing",
            file.display()
        );
    }
    secrets.sort();
    secrets.dedup();
    secrets.retain(|s| s.len() >= 16);

    let mut leaks = Vec::new();
    let mut checked = 0;
    for output in collected.outputs.iter().filter(|o| !o.by_design) {
        checked += 1;
        for secret in &secrets {
            if let Some(form) = forms(secret).into_iter().find(|f| output.text.contains(f)) {
                let line = output
                    .text
                    .lines()
                    .find(|l| l.contains(&form))
                    .unwrap_or_default();
                leaks.push(format!(
                    "{} — {}: holds {form:?} (of a secret of {} characters) in:\n  {}",
                    output.case,
                    output.what,
                    secret.len(),
                    line.chars().take(600).collect::<String>()
                ));
            }
        }
    }
    // The by-design outputs do carry credentials: the search would have found a leak.
    let carried = collected
        .outputs
        .iter()
        .filter(|o| o.by_design)
        .filter(|o| secrets.iter().any(|s| o.text.contains(s.as_str())))
        .count();
    eprintln!(
        "figure: {} cases, {checked} outputs searched for {} secrets (each in up to 8 forms), {} by-design outputs ({carried} of them holding a secret); {} leaks",
        table.len(),
        secrets.len(),
        collected.outputs.len() - checked,
        leaks.len()
    );
    assert!(
        carried >= 10,
        "the search finds nothing even where secrets are"
    );
    assert!(
        collected.tracing_cases + 2 >= table.len(),
        "only {} of {} cases logged at trace level",
        collected.tracing_cases,
        table.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
