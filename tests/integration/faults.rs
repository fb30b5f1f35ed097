//! Faults between keyless and the three endpoints it calls upstream — AWS STS, Google STS and
//! IAM Credentials — injected by `support::FaultProxy` in front of the lab: refused, reset and
//! hung connections, slow and trickled answers, 500/503, throttling, `IDPCommunicationError`,
//! truncated and malformed bodies, wrong content types and skewed clocks.
//!
//! One table (`rows`) says, for each fault at each endpoint, what the one-shot commands
//! (`keyless aws credentials`, `keyless gcp token`) must do: succeed after a bounded number of
//! attempts, give up with exit 4 once the attempts or the deadline are spent, or fail fast (one
//! attempt) with a message naming the endpoint and the fix. The proxy counts the attempts.
//! Below it, the servers (`aws serve`, `gcp serve`) go through an outage of each kind: they keep
//! serving the still-valid credential, never an expired one, and recover when the upstream does.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyless::lab::LabConfig;
use support::fault_proxy::shift_timestamps;
use support::{Answer, CommandOutput, Delivery, Fault, FaultProxy, LabWorld, Served};
use time::OffsetDateTime;

const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";
/// `--attempt-timeout` (s) for the one-shot commands: short, so hung attempts are quick to see.
const ATTEMPT_TIMEOUT: u64 = 3;
/// `--deadline` (s) for the one-shot commands, unless a row says otherwise.
const DEADLINE: u64 = 12;
/// `RetryPolicy::default().max_attempts`.
const MAX_ATTEMPTS: u64 = 4;
/// What the lab's STS and IAM Credentials grant by default (s).
const LIFETIME: i64 = 3600;
/// How many cases run at once (each has its own lab, proxy and keyless process).
const PARALLEL: usize = 6;

/// The endpoints keyless calls upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    AwsSts,
    GoogleSts,
    IamCredentials,
}

impl Endpoint {
    const ALL: [Endpoint; 3] = [
        Endpoint::AwsSts,
        Endpoint::GoogleSts,
        Endpoint::IamCredentials,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::AwsSts => "AWS STS",
            Self::GoogleSts => "Google STS",
            Self::IamCredentials => "IAM Credentials",
        }
    }

    /// How the service names itself in a refusal (which need not repeat the URL).
    fn service_word(self) -> &'static str {
        match self {
            Self::AwsSts => "AWS",
            other => other.name(),
        }
    }
}

/// How the proxy misbehaves in one case.
#[derive(Clone, Debug)]
enum Script {
    /// The first N requests get the fault; the rest pass.
    First(Fault, u32),
    /// Every request gets it.
    Always(Fault),
}

/// What the command must do.
#[derive(Clone, Debug)]
enum Expect {
    /// Exit 0 after exactly this many attempts, printing an expiry right on this machine's clock.
    Succeeds { attempts: u64 },
    /// Exit 4 naming the endpoint, after every attempt, or as many as the deadline allowed.
    GivesUp,
    /// Exit `code` after one attempt, naming the endpoint, saying `says`, with a hint.
    FailsFast { code: i32, says: &'static str },
}

impl Expect {
    fn describe(&self) -> String {
        match self {
            Self::Succeeds { attempts: 1 } => "ok at once".into(),
            Self::Succeeds { attempts } => format!("ok after {attempts} attempts"),
            Self::GivesUp => "retries, then exit 4".into(),
            Self::FailsFast { code, .. } => format!("fails fast, exit {code}"),
        }
    }
}

/// One fault, for every endpoint it applies to.
struct Row {
    fault: &'static str,
    /// The fault as the endpoint would show it; `None`: it does not apply there.
    script: fn(Endpoint) -> Option<Script>,
    expect: Expect,
    /// A shorter `--deadline` (s), to show that it bounds a hung upstream.
    deadline: Option<u64>,
}

/// The table: every fault of the issue, plus a refusal for contrast.
fn rows() -> Vec<Row> {
    use Endpoint::*;
    use Script::*;
    let row = |fault, script, expect| Row {
        fault,
        script,
        expect,
        deadline: None,
    };
    vec![
        row(
            "connection refused",
            |_| Some(Always(Fault::Refuse)),
            Expect::GivesUp,
        ),
        row(
            "connection reset (twice)",
            |_| Some(First(Fault::Reset, 2)),
            Expect::Succeeds { attempts: 3 },
        ),
        row(
            "no answer (once)",
            |_| Some(First(Fault::Hang, 1)),
            Expect::Succeeds { attempts: 2 },
        ),
        Row {
            fault: "no answer (ever), --deadline 5",
            script: |_| Some(Always(Fault::Hang)),
            expect: Expect::GivesUp,
            deadline: Some(5),
        },
        row(
            "slow answer (1 s)",
            |_| Some(First(Fault::Delay(Duration::from_secs(1)), 1)),
            Expect::Succeeds { attempts: 1 },
        ),
        row(
            "body trickled over 6 s (once)",
            |_| Some(First(Fault::Trickle(Duration::from_secs(6)), 1)),
            Expect::Succeeds { attempts: 2 },
        ),
        row(
            "500 (twice)",
            |_| Some(First(Fault::status(500), 2)),
            Expect::Succeeds { attempts: 3 },
        ),
        row(
            "503 (ever)",
            |_| Some(Always(Fault::status(503))),
            Expect::GivesUp,
        ),
        row(
            "throttled: Throttling / 429 RESOURCE_EXHAUSTED (twice)",
            |e| {
                Some(First(
                    match e {
                        AwsSts => Fault::aws_error(400, "Throttling"),
                        _ => Fault::google_error(429, "RESOURCE_EXHAUSTED"),
                    },
                    2,
                ))
            },
            Expect::Succeeds { attempts: 3 },
        ),
        row(
            "429, plain text (twice)",
            |_| Some(First(Fault::status(429), 2)),
            Expect::Succeeds { attempts: 3 },
        ),
        row(
            "IDPCommunicationError (twice)",
            |e| (e == AwsSts).then(|| First(Fault::aws_error(400, "IDPCommunicationError"), 2)),
            Expect::Succeeds { attempts: 3 },
        ),
        row(
            "truncated body (twice)",
            |_| Some(First(Fault::Truncate, 2)),
            Expect::Succeeds { attempts: 3 },
        ),
        row(
            "200 with a malformed body",
            |e| {
                Some(Always(match e {
                    AwsSts => {
                        Fault::ok_with("text/xml", "<AssumeRoleWithWebIdentityResponse><Assu")
                    }
                    _ => Fault::ok_with("application/json", "{\"access_token\": \"ya29.tr"),
                }))
            },
            Expect::FailsFast {
                code: 1,
                says: "answered 200",
            },
        ),
        row(
            "200 with an HTML page (captive portal)",
            |_| {
                Some(Always(Fault::ok_with(
                    "text/html",
                    "<html><body>Sign in to continue</body></html>",
                )))
            },
            Expect::FailsFast {
                code: 1,
                says: "text/html",
            },
        ),
        row(
            "400 with no error document",
            |_| {
                Some(Always(Fault::Respond {
                    status: 400,
                    content_type: "text/plain".into(),
                    body: "bad request".into(),
                }))
            },
            Expect::FailsFast {
                code: 1,
                says: "bad request",
            },
        ),
        row(
            "right body, Content-Type text/html",
            |_| Some(First(Fault::ContentType("text/html".into()), 1)),
            Expect::Succeeds { attempts: 1 },
        ),
        row(
            "upstream clock 2 h ahead (Date and times)",
            |_| Some(First(Fault::Skew(7200), 1)),
            Expect::Succeeds { attempts: 1 },
        ),
        row(
            "upstream clock 2 h behind (Date and times)",
            |_| Some(First(Fault::Skew(-7200), 1)),
            Expect::Succeeds { attempts: 1 },
        ),
        row(
            "refusal: AccessDenied / invalid_grant / PERMISSION_DENIED",
            |e| {
                Some(Always(match e {
                    AwsSts => Fault::aws_error(403, "AccessDenied"),
                    GoogleSts => Fault::Respond {
                        status: 400,
                        content_type: "application/json".into(),
                        body: r#"{"error":"invalid_grant","error_description":"refused (injected by the fault proxy)"}"#.into(),
                    },
                    IamCredentials => Fault::google_error(403, "PERMISSION_DENIED"),
                }))
            },
            Expect::FailsFast {
                code: 3,
                says: "injected by the fault proxy",
            },
        ),
    ]
}

/// One fault at one endpoint.
#[derive(Clone, Debug)]
struct Case {
    endpoint: Endpoint,
    fault: &'static str,
    script: Script,
    expect: Expect,
    deadline: u64,
}

fn cases() -> Vec<Case> {
    rows()
        .into_iter()
        .flat_map(|row| {
            Endpoint::ALL.into_iter().filter_map(move |endpoint| {
                Some(Case {
                    endpoint,
                    fault: row.fault,
                    script: (row.script)(endpoint)?,
                    expect: row.expect.clone(),
                    deadline: row.deadline.unwrap_or(DEADLINE),
                })
            })
        })
        .collect()
}

/// What one case did.
struct Outcome {
    case: Case,
    attempts: u64,
    code: i32,
    elapsed: Duration,
    problem: Option<String>,
}

/// Runs the one-shot command of `case.endpoint` with the fault in front of that endpoint.
async fn run_case(case: Case) -> Outcome {
    let w = LabWorld::start().await;
    let upstream = match case.endpoint {
        Endpoint::AwsSts => w.lab.aws_sts_url(),
        _ => w.lab.google_apis_url(),
    };
    let proxy = FaultProxy::start(case.endpoint.name(), &upstream).await;
    match &case.script {
        Script::First(fault, times) => proxy.push(fault.clone(), *times),
        Script::Always(fault) => proxy.set_steady(fault.clone()).await,
    }
    let role = w.role("gcp-deploy");
    let audience = w.lab.workload_identity_audience();
    let token_url = format!("{}/v1/token", proxy.url());
    let proxy_url = proxy.url();
    let mut args = match case.endpoint {
        Endpoint::AwsSts => vec![
            "aws",
            "credentials",
            "--role-arn",
            &role,
            "--no-cache",
            "--sts-endpoint",
            &proxy_url,
        ],
        _ => vec![
            "gcp",
            "token",
            "--audience",
            &audience,
            "--service-account",
            COPYCAT,
            "--format",
            "json",
        ],
    };
    match case.endpoint {
        Endpoint::GoogleSts => args.extend(["--token-url", &token_url]),
        Endpoint::IamCredentials => args.extend(["--iamcredentials-url", &proxy_url]),
        Endpoint::AwsSts => {}
    }
    let deadline = case.deadline.to_string();
    let attempt_timeout = ATTEMPT_TIMEOUT.to_string();
    let aws = support::lab_world::aws_env(&w.lab.issue_role_credentials(
        "aws-workload",
        "app",
        Duration::from_secs(3600),
    ));
    let mut env: Vec<(&str, &str)> = vec![
        ("KEYLESS_ATTEMPT_TIMEOUT", &attempt_timeout),
        ("KEYLESS_DEADLINE", &deadline),
    ];
    if case.endpoint != Endpoint::AwsSts {
        env.extend(aws.iter().map(|(k, v)| (*k, v.as_str())));
    }
    let started = Instant::now();
    let out = w.keyless_env(&args, &env).await;
    let elapsed = started.elapsed();
    let attempts = match &case.script {
        // Refused connections never reach the proxy: the command says how many it made.
        Script::Always(Fault::Refuse) => attempts_in_message(&out.stderr),
        _ => proxy.requests(),
    };
    let problem = check(&case, &out, attempts, elapsed, &proxy.url()).err();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        case,
        attempts,
        elapsed,
        problem,
    }
}

/// `... after N attempt(s) ...` in an error message.
fn attempts_in_message(stderr: &str) -> u64 {
    stderr
        .split("after ")
        .skip(1)
        .find_map(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Whether `out` is what `case.expect` says; the reason when not.
fn check(
    case: &Case,
    out: &CommandOutput,
    attempts: u64,
    elapsed: Duration,
    endpoint_url: &str,
) -> Result<(), String> {
    let code = out.status.code().unwrap_or(-1);
    let fail = |why: String| Err(format!("{why}\n{out}"));
    let names_endpoint = out.stderr.contains(endpoint_url);
    let has_hint = out.stderr.contains("hint:");
    // No case may outlive its deadline (plus time to start a process on a loaded machine).
    if elapsed > Duration::from_secs(case.deadline + 15) {
        return fail(format!(
            "took {elapsed:?}, past the {} s deadline",
            case.deadline
        ));
    }
    match &case.expect {
        Expect::Succeeds { attempts: want } => {
            if code != 0 {
                return fail(format!("exit {code}, expected success"));
            }
            if attempts != *want {
                return fail(format!("{attempts} attempts, expected {want}"));
            }
            let left = seconds_left(case.endpoint, out);
            if !(LIFETIME - 120..=LIFETIME + 5).contains(&left) {
                return fail(format!(
                    "the printed expiry is {left} s away on this machine's clock, expected about {LIFETIME}"
                ));
            }
        }
        Expect::GivesUp => {
            if code != 4 {
                return fail(format!("exit {code}, expected 4 (unavailable)"));
            }
            if !(2..=MAX_ATTEMPTS).contains(&attempts) {
                return fail(format!(
                    "{attempts} attempts, expected 2 to {MAX_ATTEMPTS} (retried, bounded)"
                ));
            }
            if !names_endpoint || !has_hint {
                return fail("the message does not name the endpoint and a hint".into());
            }
        }
        Expect::FailsFast { code: want, says } => {
            if code != *want {
                return fail(format!("exit {code}, expected {want}"));
            }
            if attempts != 1 {
                return fail(format!("{attempts} attempts, expected 1 (fail fast)"));
            }
            let names_service = *want == 3 && out.stderr.contains(case.endpoint.service_word());
            if !(names_endpoint || names_service) || !has_hint || !out.stderr.contains(says) {
                return fail(format!(
                    "the message does not name the endpoint, say {says:?} and give a hint"
                ));
            }
        }
    }
    if out.stderr.contains("ya29.") || out.stderr.contains("SecretAccessKey") {
        return fail("a secret in the error output".into());
    }
    if out.stderr.matches("hint:").count() > 1 {
        return fail("the message repeats itself".into());
    }
    Ok(())
}

/// Seconds until the printed credential expires, on this machine's clock.
fn seconds_left(endpoint: Endpoint, out: &CommandOutput) -> i64 {
    let doc = out.json();
    match endpoint {
        Endpoint::AwsSts => {
            let text = doc["Expiration"].as_str().unwrap_or_default();
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(|t| (t - OffsetDateTime::now_utc()).whole_seconds())
                .unwrap_or(i64::MIN)
        }
        _ => doc["expires_in"].as_i64().unwrap_or(i64::MIN),
    }
}

/// Runs every case, `PARALLEL` at a time.
async fn run_all(cases: Vec<Case>) -> Vec<Outcome> {
    let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, case) in cases.into_iter().enumerate() {
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore stays open");
            (index, run_case(case).await)
        });
    }
    let mut outcomes: Vec<(usize, Outcome)> = tasks.join_all().await;
    outcomes.sort_by_key(|(index, _)| *index);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

/// Every fault at every endpoint: retried within bounds and recovered from, or given up on
/// with exit 4 by the deadline, or failed fast with a message naming the endpoint and the fix.
/// Prints the table RELIABILITY.md quotes.
#[tokio::test(flavor = "multi_thread")]
async fn every_fault_at_every_endpoint_is_retried_or_fails_fast() {
    let started = Instant::now();
    let outcomes = run_all(cases()).await;
    // A line of its own: libtest may have printed the test's name without a newline.
    println!("\n| endpoint | fault | expected | attempts | exit | seconds | |");
    println!("|---|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {} |",
            o.case.endpoint.name(),
            o.case.fault,
            o.case.expect.describe(),
            o.attempts,
            o.code,
            o.elapsed.as_secs_f64(),
            if o.problem.is_none() { "ok" } else { "FAILED" }
        );
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.problem
                .as_ref()
                .map(|p| format!("--- {} / {}: {p}", o.case.endpoint.name(), o.case.fault))
        })
        .collect();
    println!(
        "figures: faults cases={} failed={} seconds={:.0}",
        outcomes.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The proxy's clock-skew fault shifts every RFC 3339 time in a body and nothing else.
#[test]
fn skew_shifts_timestamps_in_xml_and_json_only() {
    let xml = "<Expiration>2026-01-02T03:04:05Z</Expiration><X>2026-01-02</X>";
    assert_eq!(
        shift_timestamps(xml, 3600),
        "<Expiration>2026-01-02T04:04:05Z</Expiration><X>2026-01-02</X>"
    );
    let json = r#"{"expireTime": "2026-01-02T00:30:00.5Z", "n": 1}"#;
    assert_eq!(
        shift_timestamps(json, -3600),
        r#"{"expireTime": "2026-01-01T23:30:00.5Z", "n": 1}"#
    );
}

/// How long the lab's credentials last in the server tests: refreshed about half-way, served
/// until 5 s (the engine's margin) before the end, so an outage starting at once is visible
/// for about 10 s of serving, then as refusals.
const SHORT_LIFETIME: Duration = Duration::from_secs(15);
/// The refresh engine treats a credential this close to its expiry as expired.
const ENGINE_MARGIN: time::Duration = time::Duration::seconds(5);

/// The outages a server goes through, named, as its upstream would show them.
fn outages(delivery: Delivery) -> Vec<(&'static str, Fault)> {
    let mut faults = vec![
        ("503", Fault::status(503)),
        (
            "throttled",
            match delivery {
                Delivery::Ecs => Fault::aws_error(400, "Throttling"),
                Delivery::Gce => Fault::google_error(429, "RESOURCE_EXHAUSTED"),
            },
        ),
        ("connection refused", Fault::Refuse),
        ("connection reset", Fault::Reset),
        ("no answer", Fault::Hang),
        ("truncated body", Fault::Truncate),
        (
            "200 with an HTML page",
            Fault::ok_with("text/html", "<html><body>Sign in to continue</body></html>"),
        ),
    ];
    if delivery == Delivery::Ecs {
        faults.push((
            "IDPCommunicationError",
            Fault::aws_error(400, "IDPCommunicationError"),
        ));
    }
    faults
}

/// Starts `delivery` with short-lived lab credentials, takes one, breaks the upstream with
/// `fault` and watches the endpoint until past that credential's expiry, then heals the
/// upstream. Returns a one-line summary, or what went wrong.
async fn serve_through_an_outage(
    delivery: Delivery,
    name: &'static str,
    fault: Fault,
) -> Result<String, String> {
    let w = LabWorld::start_with(LabConfig {
        credential_lifetime_cap: Some(SHORT_LIFETIME),
        ..LabConfig::demo()
    })
    .await;
    let served = Served::start(
        &w,
        delivery,
        &[("KEYLESS_ATTEMPT_TIMEOUT", "2"), ("KEYLESS_DEADLINE", "4")],
    )
    .await;
    let label = format!("{} / {name}", delivery.name());
    let fail = |why: String| Err(format!("{label}: {why}\n{}", served.server.stderr()));
    let (first, expires_at) = match served.fetch().await {
        Answer::Credential { id, expires_at } => (id, expires_at),
        other => return fail(format!("no first credential: {other:?}")),
    };
    served.proxy.set_steady(fault.clone()).await;
    let mut served_while_down = 0;
    let mut refused = 0;
    while OffsetDateTime::now_utc() < expires_at + time::Duration::seconds(3) {
        let sent = OffsetDateTime::now_utc();
        let answer = served.fetch().await;
        // The server decided somewhere between `sent` and `received`: only what holds for
        // every moment in between is a violation, however loaded the machine.
        let received = OffsetDateTime::now_utc();
        match answer {
            Answer::Credential { id, expires_at: e } => {
                if e <= sent {
                    return fail(format!(
                        "served a credential that expired at {e} (asked at {sent})"
                    ));
                }
                if id != first {
                    return fail("a new credential while the upstream is down".into());
                }
                served_while_down += 1;
            }
            Answer::Unavailable(why) => {
                // Refusing is right only once nothing valid is left.
                if received < expires_at - ENGINE_MARGIN {
                    return fail(format!(
                        "refused by {received} while the credential was valid until {expires_at}: {why}"
                    ));
                }
                refused += 1;
            }
            Answer::Unexpected(what) => return fail(format!("the endpoint failed: {what}")),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if served_while_down < 3 || refused == 0 {
        return fail(format!(
            "{served_while_down} answers with the valid credential, {refused} refusals after it expired: expected both"
        ));
    }
    let attempts = served.proxy.requests();
    served.proxy.heal().await;
    if let Err(why) = served
        .next_credential(&first, Duration::from_secs(30))
        .await
    {
        return fail(format!("did not recover: {why}"));
    }
    Ok(format!(
        "| {} | {name} | {served_while_down} | {refused} | {attempts} | recovered |",
        delivery.name(),
    ))
}

/// `aws serve` and `gcp serve`, whatever the outage of their upstream: the still-valid
/// credential is served until (the engine's margin before) its expiry, never an expired one,
/// then a 503 naming the cause; a fresh one as soon as the upstream is back.
#[tokio::test(flavor = "multi_thread")]
async fn servers_serve_the_valid_credential_through_every_outage_and_never_an_expired_one() {
    let mut tasks = tokio::task::JoinSet::new();
    for delivery in [Delivery::Ecs, Delivery::Gce] {
        for (name, fault) in outages(delivery) {
            tasks.spawn(serve_through_an_outage(delivery, name, fault));
        }
    }
    let results = tasks.join_all().await;
    println!("\n| server | upstream fault | valid credential served | refused after expiry | upstream requests | |");
    println!("|---|---|---|---|---|---|");
    for line in results.iter().flatten() {
        println!("{line}");
    }
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{}",
        failed
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
