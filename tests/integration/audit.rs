//! `keyless audit` against the lab: the real binary reads the lab's CloudTrail (`LookupEvents`,
//! SigV4, paging, throttling) and Cloud Audit Logs, correlates with the audit log keyless itself
//! wrote (`--local`) and flags identities nobody intended (`--expect`), with the documented exit
//! codes.

use crate::support;

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

// ---------------------------------------------------------------- Google

const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";

/// `keyless gcp token` as the AWS session `aws-workload/SESSION`, impersonating copycat,
/// logging to `log`.
async fn gcp_exchange(w: &LabWorld, session: &str, log: &std::path::Path) {
    let credentials =
        w.lab
            .issue_role_credentials("aws-workload", session, Duration::from_secs(3600));
    let mut env: Vec<(&str, String)> = aws_env(&credentials);
    env.push(("KEYLESS_AUDIT_LOG", log.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let audience = w.lab.workload_identity_audience();
    let out = w
        .keyless_env(
            &[
                "gcp",
                "token",
                "--audience",
                &audience,
                "--service-account",
                COPYCAT,
            ],
            &env,
        )
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

/// `keyless audit gcp ARGS` as the metadata server's account (the lab's default reader).
async fn audit_gcp(w: &LabWorld, args: &[&str]) -> support::CommandOutput {
    let logging = w.lab.logging_url();
    let mut all = vec![
        "audit",
        "gcp",
        "--project",
        "keyless-lab",
        "--logging-url",
        &logging,
        "--resource-manager-url",
        &logging,
    ];
    all.extend_from_slice(args);
    w.keyless(&all).await
}

/// The token exchange and the impersonation keyless made are matched to its audit event by
/// principal, service account and time; another keyless's are "no keyless on record".
#[tokio::test(flavor = "multi_thread")]
async fn gcp_entries_are_matched_by_principal_and_time() {
    let w = LabWorld::start().await;
    let log = w.home.audit_log();
    gcp_exchange(&w, "app", &log).await;
    gcp_exchange(&w, "other", &w.home.home().join("elsewhere.jsonl")).await;

    let out = audit_gcp(&w, &["--format", "json", "--local", log.to_str().unwrap()]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc = out.json();
    let rows = events(&doc);
    let actions: Vec<&str> = rows.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "ExchangeToken",
            "GenerateAccessToken",
            "ExchangeToken",
            "GenerateAccessToken"
        ],
        "{doc:#}"
    );
    for event in &rows {
        let subject = event["subject"].as_str().unwrap();
        let ours = subject.ends_with("assumed-role/aws-workload/app");
        assert!(
            ours || subject.ends_with("assumed-role/aws-workload/other"),
            "{event:#}"
        );
        assert!(event["principal"]
            .as_str()
            .unwrap()
            .starts_with("principal://iam.googleapis.com/projects/"));
        if event["action"] == "GenerateAccessToken" {
            assert_eq!(event["service_account"], COPYCAT);
        }
        match ours {
            true => assert_eq!(
                event["keyless"]["matched_by"], "principal-and-time",
                "{event:#}"
            ),
            false => assert!(event["keyless"].is_null(), "{event:#}"),
        }
    }
    assert_eq!(doc["keyless_without_cloud_record"], Value::Array(vec![]));

    // keyless.toml meant deployer, not copycat: both impersonations are flagged, exit 1.
    let config = w.home.home().join("keyless.toml");
    std::fs::write(
        &config,
        format!(
            "[profile.to-gcp]\ntarget = \"gcp\"\naudience = \"{}\"\nservice_account = \"{DEPLOYER}\"\n",
            w.lab.workload_identity_audience()
        ),
    )
    .unwrap();
    let out = audit_gcp(&w, &["--expect", config.to_str().unwrap()]).await;
    assert_eq!(out.code(), 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("2 event(s) by identities not among the expected ones"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("service account {COPYCAT} is in no profile")),
        "{}",
        out.stdout
    );

    // --service-account narrows to that account's impersonations and their principals.
    let out = audit_gcp(&w, &["--format", "json", "--service-account", DEPLOYER]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(events(&out.json()).len(), 0);
}

/// A provider's attribute condition that admits one session only flags the other's exchange.
#[tokio::test(flavor = "multi_thread")]
async fn gcp_expect_evaluates_the_provider_condition_on_the_caller() {
    let w = LabWorld::start().await;
    gcp_exchange(&w, "app", &w.home.audit_log()).await;
    gcp_exchange(&w, "other", &w.home.audit_log()).await;
    let audience = w.lab.workload_identity_audience();
    let provider = serde_json::json!({
        "name": audience.trim_start_matches("//iam.googleapis.com/"),
        "aws": {"accountId": "123456789012"},
        "attributeCondition": "assertion.arn == 'arn:aws:sts::123456789012:assumed-role/aws-workload/app'",
    });
    let file = w.home.home().join("provider.json");
    std::fs::write(&file, provider.to_string()).unwrap();
    let out = audit_gcp(
        &w,
        &["--format", "json", "--expect", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code(), 1, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["flagged"], 2, "{doc:#}");
    for event in events(&doc) {
        let other = event["subject"].as_str().unwrap().ends_with("/other");
        assert_eq!(event.get("flagged").is_some(), other, "{event:#}");
    }
}

/// Data Access logs off for IAM Credentials: nothing to read, and keyless says which switch
/// to turn on (exit 2) rather than report "no events".
#[tokio::test(flavor = "multi_thread")]
async fn gcp_data_access_off_is_a_configuration_error_naming_the_service() {
    let w = LabWorld::start().await;
    w.lab
        .set_data_access_logs("iamcredentials.googleapis.com", false);
    gcp_exchange(&w, "app", &w.home.audit_log()).await;
    let out = audit_gcp(&w, &[]).await;
    assert_eq!(out.code(), 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "enable DATA_READ for iamcredentials.googleapis.com: see `keyless setup … --audit`"
        ),
        "{}",
        out.stderr
    );
    w.lab
        .set_data_access_logs("iamcredentials.googleapis.com", true);
    gcp_exchange(&w, "app", &w.home.audit_log()).await;
    let out = audit_gcp(&w, &[]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

/// More entries than a page holds come back whole, and 429s are retried.
#[tokio::test(flavor = "multi_thread")]
async fn gcp_entries_page_and_retry_throttling() {
    let w = LabWorld::start().await;
    gcp_exchange(&w, "app", &w.home.audit_log()).await;
    let template = w.lab.audit_log_entries()[0].clone();
    for n in 0..1005 {
        let mut entry = template.clone();
        entry.as_object_mut().unwrap().remove("insertId");
        entry["protoPayload"]["requestMetadata"]["callerIp"] =
            Value::String(format!("10.0.{}.{}", n / 256, n % 256));
        w.lab.record_audit_log_entry(entry).unwrap();
    }
    w.lab.faults().http_error(
        LabService::CloudLogging,
        429,
        r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
        2,
    );
    let out = audit_gcp(&w, &["--format", "json"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(events(&out.json()).len(), 1007);
    assert!(
        w.lab.faults().pending().is_empty(),
        "both 429s were met and retried"
    );
}

/// The logs can be read as any keyless identity: here an AWS session federated at the lab's
/// provider and impersonating copycat (the `gcp token` flow), instead of ADC or the metadata
/// server.
#[tokio::test(flavor = "multi_thread")]
async fn gcp_logs_are_read_as_a_federated_identity() {
    let w = LabWorld::start().await;
    gcp_exchange(&w, "app", &w.home.audit_log()).await;
    let reader = w
        .lab
        .issue_role_credentials("aws-workload", "auditor", Duration::from_secs(3600));
    let env: Vec<(&str, String)> = aws_env(&reader);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let audience = w.lab.workload_identity_audience();
    let logging = w.lab.logging_url();
    let args = [
        "audit",
        "gcp",
        "--project",
        "keyless-lab",
        "--logging-url",
        &logging,
        "--resource-manager-url",
        &logging,
        "--format",
        "json",
        "--token-source",
        "aws",
        "--audience",
        &audience,
        "--impersonate-service-account",
        COPYCAT,
    ];
    let out = w.keyless_env(&args, &env).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc = out.json();
    let subjects: Vec<String> = events(&doc)
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_string())
        .collect();
    assert!(
        subjects.iter().any(|s| s.ends_with("aws-workload/app")),
        "{doc:#}"
    );
    // The reader's own exchange happened before the lookup: it is on record too.
    assert!(
        subjects.iter().any(|s| s.ends_with("aws-workload/auditor")),
        "{doc:#}"
    );
}

/// A role chain is two STS calls: both are in CloudTrail, both matched to the one keyless
/// exchange; `--role-arn` of the partner's role keeps the hop into it.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_hop_is_matched_to_its_exchange() {
    let w = LabWorld::start().await;
    let partner = format!(
        "arn:aws:iam::{}:role/{}",
        keyless::lab::DEMO_PARTNER_ACCOUNT_ID,
        keyless::lab::DEMO_PARTNER_ROLE
    );
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--chain-role",
            &partner,
            "--external-id",
            keyless::lab::DEMO_PARTNER_EXTERNAL_ID,
        ])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let log = w.home.audit_log();
    let out = audit(
        &w,
        &["aws", "--format", "json", "--local", log.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc = out.json();
    let rows = events(&doc);
    let actions: Vec<&str> = rows.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["AssumeRoleWithWebIdentity", "AssumeRole"],
        "{doc:#}"
    );
    let hop = &rows[1];
    assert_eq!(hop["role_arn"], partner.as_str());
    assert!(
        hop["principal"]
            .as_str()
            .unwrap()
            .contains(":assumed-role/gcp-deploy/"),
        "{hop:#}"
    );
    assert_eq!(hop["keyless"]["matched_by"], "request-id", "{hop:#}");
    assert_eq!(
        rows[0]["keyless"]["time"], hop["keyless"]["time"],
        "one exchange, two calls"
    );

    let out = audit(&w, &["aws", "--format", "json", "--role-arn", &partner]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let rows = events(&out.json());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["action"], "AssumeRole");
}

/// The real `aws` CLI (the test venv's) reads the lab's CloudTrail: `aws cloudtrail
/// lookup-events` signs for `cloudtrail`, follows NextToken page by page, and finds each of
/// keyless's exchanges under the request id keyless's own audit log has for it.
#[tokio::test(flavor = "multi_thread")]
async fn the_aws_cli_reads_the_lab_cloudtrail_page_by_page() {
    let w = LabWorld::start().await;
    two_exchanges(&w).await;
    let user = w.lab.aws_user_credentials("ci-user");
    let mut cmd = std::process::Command::new(support::venv::bin("aws"));
    cmd.args([
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=AssumeRoleWithWebIdentity",
        "--page-size",
        "1",
        "--output",
        "json",
    ])
    .env("HOME", w.home.home())
    .env("AWS_CONFIG_FILE", w.home.config_file())
    .env("AWS_SHARED_CREDENTIALS_FILE", w.home.credentials_file());
    for (k, v) in aws_env(&user) {
        cmd.env(k, v);
    }
    let out = w.run(cmd).await;
    assert_eq!(out.code(), 0, "{out}");
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    let events = answer["Events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "both pages, one event each: {answer:#}");
    let mut recorded: Vec<String> = events
        .iter()
        .map(|e| {
            let record: Value =
                serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap();
            assert_eq!(record["userIdentity"]["type"], "WebIdentityUser");
            record["requestID"].as_str().unwrap().to_string()
        })
        .collect();
    let mut logged: Vec<String> = w
        .audit_events()
        .iter()
        .flat_map(|e| e.upstream.iter().filter_map(|c| c.request_id.clone()))
        .collect();
    recorded.sort();
    logged.sort();
    assert_eq!(recorded, logged);
}
