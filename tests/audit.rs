//! `keyless audit` against the lab: the real binary reads the lab's CloudTrail (`LookupEvents`,
//! SigV4, paging, throttling) and Cloud Audit Logs, correlates with the audit log keyless itself
//! wrote (`--local`) and flags identities nobody intended (`--expect`), with the documented exit
//! codes.

mod support;

use std::time::Duration;

use keyless::lab::{Fault, FaultKind, LabService};
use serde_json::Value;
use support::lab_world::aws_env;
use support::LabWorld;

const DEPLOYER: &str = "deployer@keyless-lab.iam.gserviceaccount.com";
const INTRUDER: &str = "intruder@elsewhere.iam.gserviceaccount.com";

/// `keyless audit ARGS` as the lab's IAM user `ci-user` (who may call LookupEvents).
async fn audit(w: &LabWorld, args: &[&str]) -> support::CommandOutput {
    let user = w.lab.aws_user_credentials("ci-user");
    let env: Vec<(&str, String)> = aws_env(&user);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    w.keyless_env(&all, &env).await
}

/// The exchange the VM's keyless made (metadata token, granted) and one an intruder's token
/// made (refused), both through keyless, both in its audit log.
async fn two_exchanges(w: &LabWorld) {
    let role = w.role("gcp-deploy");
    let ok = w
        .keyless(&["aws", "credentials", "--no-cache", "--role-arn", &role])
        .await;
    assert_eq!(ok.code(), 0, "{}", ok.stderr);
    let token = w.write_token("intruder", INTRUDER, Duration::from_secs(600));
    let source = format!("file:{}", token.display());
    let refused = w
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
    assert_eq!(refused.code(), 3, "{}", refused.stderr);
}

fn events(doc: &Value) -> Vec<Value> {
    doc["events"].as_array().cloned().unwrap_or_default()
}

/// Each CloudTrail event keyless caused is matched to its audit event by request id; an
/// exchange made by a keyless whose log is not the one read has "no keyless on record".
#[tokio::test(flavor = "multi_thread")]
async fn aws_events_are_matched_to_keyless_exchanges_by_request_id() {
    let w = LabWorld::start().await;
    two_exchanges(&w).await;
    // Someone else's keyless, logging elsewhere: the cloud has it, this log does not.
    let elsewhere = w.home.home().join("elsewhere.jsonl");
    let other = w
        .keyless_env(
            &[
                "aws",
                "credentials",
                "--no-cache",
                "--role-arn",
                &w.role("gcp-deploy"),
                "--session-name",
                "other-host",
            ],
            &[("KEYLESS_AUDIT_LOG", elsewhere.to_str().unwrap())],
        )
        .await;
    assert_eq!(other.code(), 0, "{}", other.stderr);

    let log = w.home.audit_log();
    let out = audit(
        &w,
        &["aws", "--format", "json", "--local", log.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc = out.json();
    let events = events(&doc);
    assert_eq!(events.len(), 3, "{doc:#}");
    let local = w.audit_events();
    for event in &events {
        assert_eq!(event["action"], "AssumeRoleWithWebIdentity");
        assert_eq!(event["identity_provider"], "accounts.google.com");
        assert_eq!(event["role_arn"], w.role("gcp-deploy"));
        assert_eq!(event["source_ip"], "127.0.0.1");
    }
    let by_session = |s: &str| events.iter().find(|e| e["session_name"] == s).cloned();
    let other = by_session("other-host").expect("the other keyless's exchange");
    assert!(
        other["keyless"].is_null(),
        "no keyless on record: {other:#}"
    );
    for event in events.iter().filter(|e| e["session_name"] != "other-host") {
        let keyless = &event["keyless"];
        assert_eq!(keyless["matched_by"], "request-id", "{event:#}");
        let request_id = event["request_id"].as_str().unwrap();
        let exchange = local
            .iter()
            .find(|x| {
                x.upstream
                    .iter()
                    .any(|c| c.request_id.as_deref() == Some(request_id))
            })
            .expect("the audit log holds the request id CloudTrail recorded");
        assert_eq!(keyless["outcome"], exchange.outcome.as_str());
        assert_eq!(keyless["host"], exchange.host.as_str());
    }
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["error_code"] == "AccessDenied")
        .collect();
    assert_eq!(refused.len(), 1, "{doc:#}");
    assert_eq!(refused[0]["keyless"]["outcome"], "refused");
    assert_eq!(doc["keyless_without_cloud_record"], Value::Array(vec![]));

    // The table says the same, for people.
    let text = audit(&w, &["aws", "--local", log.to_str().unwrap()]).await;
    assert_eq!(text.code(), 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("no keyless on record"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("AccessDenied"), "{}", text.stdout);
    assert!(
        text.stdout
            .contains("every keyless exchange in the window has a cloud record"),
        "{}",
        text.stdout
    );
}

/// `--expect` with the trust policy that admits only the deployer flags the intruder's
/// attempt: exit 1. keyless.toml naming another role flags every event.
#[tokio::test(flavor = "multi_thread")]
async fn expect_flags_identities_the_trust_policy_does_not_admit() {
    let w = LabWorld::start().await;
    two_exchanges(&w).await;
    let out = audit(&w, &["aws", "--format", "json"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc = out.json();
    let granted = events(&doc)
        .into_iter()
        .find(|e| e["error_code"].is_null())
        .unwrap();
    let (sub, aud) = (
        granted["subject"].as_str().unwrap(),
        granted["audience"].as_str().unwrap(),
    );
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": "accounts.google.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"accounts.google.com:aud": aud, "accounts.google.com:sub": sub}}
        }]
    });
    let policy_file = w.home.home().join("trust.json");
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    let out = audit(
        &w,
        &[
            "aws",
            "--format",
            "json",
            "--expect",
            policy_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        out.code(),
        1,
        "an unexpected identity is exit 1: {}",
        out.stderr
    );
    let doc = out.json();
    assert_eq!(doc["flagged"], 1, "{doc:#}");
    let flagged: Vec<Value> = events(&doc)
        .into_iter()
        .filter(|e| e.get("flagged").is_some())
        .collect();
    assert_eq!(flagged[0]["error_code"], "AccessDenied");
    assert!(
        flagged[0]["flagged"]
            .as_str()
            .unwrap()
            .contains("accounts.google.com:sub"),
        "{:#}",
        flagged[0]
    );

    let config = w.home.home().join("keyless.toml");
    std::fs::write(
        &config,
        format!("[profile.other]\nrole_arn = \"{}\"\n", w.role("other")),
    )
    .unwrap();
    let out = audit(&w, &["aws", "--expect", config.to_str().unwrap()]).await;
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("2 event(s) by identities not among the expected ones"),
        "{}",
        out.stdout
    );
    let out = audit(
        &w,
        &[
            "aws",
            "--role-arn",
            &w.role("other"),
            "--expect",
            config.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        out.code(),
        0,
        "nothing recorded for that role, nothing flagged: {}",
        out.stdout
    );
}

/// More events than a page holds come back whole, and throttled lookups are retried.
#[tokio::test(flavor = "multi_thread")]
async fn aws_lookups_page_and_retry_throttling() {
    let w = LabWorld::start().await;
    let token = w
        .lab
        .mint_id_token(DEPLOYER, "sts.amazonaws.com", Duration::from_secs(600));
    let role = w.role("gcp-deploy");
    let http = reqwest::Client::new();
    for n in 0..55 {
        let session = format!("s-{n}");
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role.as_str()),
            ("RoleSessionName", session.as_str()),
            ("WebIdentityToken", token.as_str()),
        ];
        let r = http
            .post(w.lab.aws_sts_url())
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    w.lab.faults().push(Fault {
        service: LabService::Cloudtrail,
        kind: FaultKind::StsError {
            code: "ThrottlingException".into(),
            status: 400,
            message: Some("Rate exceeded".into()),
        },
        times: 2,
        only: None,
    });
    let out = audit(&w, &["aws", "--format", "json", "--since", "1h"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc = out.json();
    let mut sessions: Vec<String> = events(&doc)
        .iter()
        .map(|e| e["session_name"].as_str().unwrap().to_string())
        .collect();
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), 55, "every page: {}", sessions.len());
    assert!(
        w.lab.faults().pending().is_empty(),
        "both throttles were met and retried"
    );
}

/// An identity CloudTrail does not know is a refusal (exit 3) that names the permission; a
/// CloudTrail that keeps throttling is unavailable (exit 4).
#[tokio::test(flavor = "multi_thread")]
async fn aws_refusal_and_outage_have_their_exit_codes() {
    let w = LabWorld::start().await;
    let out = w
        .keyless_env(
            &["audit", "aws"],
            &[
                ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000"),
                ("AWS_SECRET_ACCESS_KEY", "not-a-key-the-lab-knows"),
            ],
        )
        .await;
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("cloudtrail:LookupEvents"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("not-a-key-the-lab-knows"),
        "{}",
        out.stderr
    );

    w.lab.faults().push(Fault {
        service: LabService::Cloudtrail,
        kind: FaultKind::StsError {
            code: "ThrottlingException".into(),
            status: 400,
            message: None,
        },
        times: 50,
        only: None,
    });
    let out = audit(&w, &["aws", "--deadline", "2s"]).await;
    assert_eq!(out.code(), 4, "{}", out.stderr);
}
