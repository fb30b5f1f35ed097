//! Fuzz targets: one function per parser that takes outside input, shared by the cargo-fuzz
//! targets in `fuzz/` (run with `tools/fuzz`) and by `tests/integration/fuzz_corpus.rs`, which replays the
//! committed seeds and every crash ever found on stable Rust as part of `cargo test`.
//!
//! Each target takes arbitrary bytes and hands them to a parser the way keyless receives them:
//! an HTTP answer's body, a file, a command's output, a request to one of the local servers.
//! The parsers must never panic. The targets panic on purpose when a promise is broken: a
//! round trip that does not come back, an edit that touches another profile, a problem
//! reported outside the file, a server that answers a refused request with credentials.
//!
//! Not part of keyless's API: the names and shapes here change with the harness. The router
//! targets set `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_EC2_METADATA_DISABLED` in
//! the process environment (fake values, so the AWS → GCP endpoint's upstream fails at once,
//! on loopback, instead of searching for credentials on the network).

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tower::ServiceExt;

use crate::credentials::AwsCredentials;
use crate::deliver::aws_files::IniDocument;
use crate::deliver::credential_process::credential_process_json;
use crate::deliver::ecs_server;
use crate::deliver::gce_metadata_server::{GceMetadataOptions, GceMetadataServer};
use crate::deliver::imds_server::{self, InstanceIdentity};
use crate::deliver::metrics::MetricsRegistry;
use crate::exchange::aws_sts::{
    classify_final, parse_assume_role, parse_caller_identity, parse_fault, AssumedRole, Attempt,
    Reply, RetryPolicy, RoleArn, SessionName,
};
use crate::exchange::google_iam::{AccessTokenAnswer, Impersonation};
use crate::exchange::google_sts::{read_exchange_answer, StsAttempt, CLOUD_PLATFORM_SCOPE};
use crate::lab::GoogleSigningKey;
use crate::policy::cel::CelExpression;
use crate::policy::workload_identity::aws_default_mapping;
use crate::policy::{evaluate, Effect, PolicyDocument, Request as PolicyRequest, RequestPrincipal};
use crate::refresh::{
    Clock, GcpTokenProfile, RefreshError, RefreshPolicy, RefreshStatus, Refresher, Upstream,
};
use crate::secret::Secret;
use crate::source::aws::{AwsIdentitySource, AwsSourceOptions};
use crate::source::google::{parse_adc, AccessTokenResponse};
use crate::source::local::token_from_command_output;
use crate::source::{IdToken, SourceError};
use crate::wire::google_error_message;
use crate::wire::iam_credentials::GenerateIdTokenResponse;

/// One fuzz target: its name (the cargo-fuzz target and the corpus directory) and its function.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `tools/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "id_token",
        run: id_token,
    },
    Target {
        name: "lab_id_token",
        run: lab_id_token,
    },
    Target {
        name: "sts_xml",
        run: sts_xml,
    },
    Target {
        name: "region",
        run: region,
    },
    Target {
        name: "upstream_url",
        run: upstream_url,
    },
    Target {
        name: "allowed_host",
        run: allowed_host,
    },
    Target {
        name: "listen_fds",
        run: listen_fds,
    },
    Target {
        name: "google_json",
        run: google_json,
    },
    Target {
        name: "aws_ini",
        run: aws_ini,
    },
    Target {
        name: "duration",
        run: duration,
    },
    Target {
        name: "keyless_toml",
        run: keyless_toml,
    },
    Target {
        name: "trust_policy",
        run: trust_policy,
    },
    Target {
        name: "lint",
        run: lint,
    },
    Target {
        name: "cel",
        run: cel,
    },
    Target {
        name: "router_ecs",
        run: router_ecs,
    },
    Target {
        name: "router_imds",
        run: router_imds,
    },
    Target {
        name: "router_gce_metadata",
        run: router_gce_metadata,
    },
    Target {
        name: "router_metrics",
        run: router_metrics,
    },
    Target {
        name: "executable_json",
        run: executable_json,
    },
    Target {
        name: "github_answer",
        run: github_answer,
    },
    Target {
        name: "sts_outbound",
        run: sts_outbound,
    },
    Target {
        name: "chain_values",
        run: chain_values,
    },
    Target {
        name: "google_oidc_mapping",
        run: google_oidc_mapping,
    },
    Target {
        name: "cloud_audit",
        run: cloud_audit,
    },
];

/// A fixed "now" (2023-11-14T22:13:20Z), so that a crash reproduces whatever the clock says.
const NOW: i64 = 1_700_000_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// A Google ID token as the `file:` and metadata sources read it (UTF-8, trimmed), and as the
/// `command:` source reads a command's standard output (any bytes).
pub fn id_token(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_id_token(
            IdToken::parse(Secret::new(text.trim()), "the file fuzz"),
            text,
        );
    }
    check_id_token(
        token_from_command_output("fuzz", data),
        &String::from_utf8_lossy(data),
    );
}

fn check_id_token(parsed: Result<IdToken, SourceError>, raw: &str) {
    match parsed {
        Ok(token) => {
            let claims = token.claims();
            let _ = claims.summary();
            let _ = claims.expires_at();
            let _ = crate::policy::google::condition_context(&claims.to_json_map());
            let name = SessionName::derive(claims, "fuzz-host.example.com");
            assert!(
                SessionName::parse(name.as_str()).is_ok(),
                "the derived session name {name:?} breaks STS's rules"
            );
            assert!(!format!("{token:?}").contains(raw.trim()) || raw.trim().len() < 8);
        }
        Err(error) => {
            // The signature is what makes a token usable: a message never shows it.
            let parts: Vec<&str> = raw.trim().split('.').collect();
            if let [_, _, signature] = parts[..] {
                if signature.len() >= 16 {
                    assert!(
                        !error.to_string().contains(signature),
                        "the error shows the token's signature: {error}"
                    );
                }
            }
        }
    }
}

/// The lab's verifier (AWS STS's view of a Google token) on any text; and any JSON object the
/// lab signs verifies and decodes back to itself.
pub fn lab_id_token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = GoogleSigningKey::shared();
    let _ = key.verify(text, NOW);
    let Ok(Value::Object(claims)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let token = key.sign(&Value::Object(claims.clone()));
    match key.verify(&token, NOW) {
        Ok(back) => assert_eq!(back, claims, "signed claims did not come back"),
        Err(rejection) => assert!(
            !is_plain_google_token(&claims),
            "the lab refused a well-formed Google token it signed itself: {rejection:?}"
        ),
    }
    if let Ok(parsed) = IdToken::parse(Secret::new(token), "the lab") {
        let c = parsed.claims();
        assert_eq!(
            Some(c.iss.as_str()),
            claims.get("iss").and_then(Value::as_str)
        );
        assert_eq!(
            Some(c.sub.as_str()),
            claims.get("sub").and_then(Value::as_str)
        );
        assert_eq!(Some(c.exp), claims.get("exp").and_then(Value::as_i64));
    }
}

/// Claims shaped as Google's, with an `exp` after [`NOW`]: AWS STS would accept the token.
fn is_plain_google_token(claims: &serde_json::Map<String, Value>) -> bool {
    let string = |k: &str| claims.get(k).is_none_or(Value::is_string);
    claims
        .keys()
        .all(|k| ["iss", "aud", "azp", "sub", "email", "exp", "iat"].contains(&k.as_str()))
        && matches!(
            claims.get("iss").and_then(Value::as_str),
            Some("https://accounts.google.com" | "accounts.google.com")
        )
        && claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|exp| exp > NOW)
        && claims.get("iat").is_none_or(Value::is_i64)
        && ["azp", "sub", "email"].into_iter().all(string)
        && claims.get("aud").is_none_or(|aud| {
            aud.is_string()
                || aud
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string))
        })
}

// ---------------------------------------------------------------------------------------------
// Answers from the clouds
// ---------------------------------------------------------------------------------------------

/// An AWS STS answer body: AssumeRoleWithWebIdentity, GetCallerIdentity or an error, and what
/// keyless then writes from the credentials it read.
pub fn sts_xml(data: &[u8]) {
    let body = String::from_utf8_lossy(data);
    if let Ok(role) = parse_assume_role(&body) {
        check_credential_outputs(&role);
    }
    let role = RoleArn::parse("arn:aws:iam::123456789012:role/fuzz").expect("a valid role ARN");
    for status in [400, 403, 429, 500, 503] {
        if let Attempt::Fault(fault) = parse_fault(&Reply::xml(status, body.to_string())) {
            let _ = fault.reaction();
            let error = classify_final(fault, &role, None);
            let _ = (error.to_string(), error.is_refusal(), error.is_transient());
        }
    }
    if let Ok(caller) = parse_caller_identity(&body) {
        let identity = aws_default_mapping(&caller.arn, &caller.account);
        let _ = identity.cel_variables(&caller.account);
    }
}

/// A region as `--region`, `AWS_REGION` or keyless.toml give it: whatever is accepted must keep
/// the regional STS URL on the AWS host it names.
pub fn region(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(region) = crate::types::Region::parse(text) else {
        return;
    };
    let endpoint = crate::exchange::aws_sts::StsEndpoint::from_parts(None, Some(&region));
    let url = url::Url::parse(&endpoint.url).expect("a regional STS URL parses");
    assert_eq!(
        url.host_str(),
        Some(region.sts_host().to_ascii_lowercase().as_str()),
        "{text:?} moved the STS host"
    );
    assert_eq!(url.path(), "/", "{text:?} added a path");
    assert!(url
        .host_str()
        .unwrap_or_default()
        .ends_with(region.dns_suffix()));
    let verification = crate::exchange::google_sts::regional_verification_url(&region);
    let url = url::Url::parse(&verification).expect("the verification URL parses");
    assert_eq!(
        url.host_str(),
        Some(region.sts_host().to_ascii_lowercase().as_str())
    );
}

/// An `--allowed-host` / `allowed_hosts` value: whatever is accepted is one exact name or
/// address (no wildcard, port, path or space that could widen the `Host` check), and reads back
/// as itself.
pub fn allowed_host(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(host) = text.parse::<crate::deliver::server::AllowedHost>() else {
        return;
    };
    let shown = host.as_str();
    assert!(!shown.is_empty(), "{text:?} allowed the empty host");
    assert!(
        !shown.chars().any(|c| c.is_whitespace()
            || c.is_control()
            || matches!(c, '*' | '/' | '@' | '#' | '?')),
        "{text:?} became {shown:?}"
    );
    let again: crate::deliver::server::AllowedHost =
        shown.parse().expect("an accepted host parses again");
    assert_eq!(again, host, "{text:?} does not read back");
}

/// systemd's `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` (split on NUL bytes): only the
/// named process takes descriptors, and never more than the bound, always from fd 3 on.
pub fn listen_fds(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let (pid, fds, names) = (parts.next(), parts.next(), parts.next());
    let Ok(passed) = crate::deliver::listen_fds::passed_fds(pid, fds, names, 4242) else {
        return;
    };
    if pid.and_then(|p| p.trim().parse::<u32>().ok()) != Some(4242) {
        assert!(
            passed.is_empty(),
            "descriptors meant for another process: {text:?}"
        );
    }
    for (i, (fd, _)) in passed.iter().enumerate() {
        assert_eq!(*fd, 3 + i as i32, "{text:?}");
    }
}

/// An endpoint override as a flag, a variable, keyless.toml or an ADC file's `token_uri` give
/// it: whatever is accepted goes over TLS, or over plain http to this machine only.
pub fn upstream_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(endpoint) = crate::types::UpstreamUrl::parse(text) else {
        return;
    };
    let url = url::Url::parse(endpoint.as_str()).expect("an accepted endpoint parses again");
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    };
    assert!(
        url.scheme() == "https" || (url.scheme() == "http" && loopback),
        "{text:?} was accepted"
    );
    assert!(url.username().is_empty() && url.password().is_none());
}

/// What keyless hands on from STS's answer: the credential_process document (which must read
/// back as the same values), the container endpoint's document and the credentials profile.
fn check_credential_outputs(role: &AssumedRole) {
    let c = &role.credentials;
    let _ = c.seconds_left(now());
    let document = credential_process_json(c).to_string();
    let back: Value = serde_json::from_str(&document).expect("credential_process JSON");
    assert_eq!(back["AccessKeyId"], json!(c.access_key_id));
    assert_eq!(back["SecretAccessKey"], json!(c.secret_access_key.expose()));
    if let Some(expiration) = c.expiration {
        let written = back["Expiration"].as_str().expect("an Expiration");
        let read = OffsetDateTime::parse(written, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("Expiration {written:?} does not parse back: {e}"));
        // Exact, unless the UTC date leaves years 0000–9999 and is clamped.
        let utc = expiration.checked_to_offset(time::UtcOffset::UTC);
        if utc.is_some_and(|u| (0..=9999).contains(&u.year())) {
            assert_eq!(
                read.unix_timestamp(),
                expiration.unix_timestamp(),
                "Expiration moved"
            );
        }
    }
    let _ = ecs_server::container_credentials_json(role).to_string();
    let token = c.session_token.as_ref().map(Secret::expose);
    let mut doc = IniDocument::parse("[other]\nregion = eu-west-1\n");
    let _ = doc.set_entries(
        "fuzz",
        &[
            ("aws_access_key_id", Some(c.access_key_id.as_str())),
            ("aws_secret_access_key", Some(c.secret_access_key.expose())),
            ("aws_session_token", token),
        ],
    );
    assert!(doc.render().starts_with("[other]\nregion = eu-west-1\n"));
}

/// A Google answer body: Google STS's token exchange (success and OAuth errors), IAM
/// Credentials' generateAccessToken and generateIdToken, the metadata server's access token,
/// Google's error document, and an application-default-credentials file.
pub fn google_json(data: &[u8]) {
    let body = String::from_utf8_lossy(data);
    let audience =
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";
    for status in [200, 400, 401, 403, 429, 503] {
        match read_exchange_answer(
            status,
            "application/json",
            &body,
            "https://sts.invalid/v1/token",
            audience,
            "fuzz",
            now(),
        ) {
            Ok(token) => {
                assert_eq!(status, 200);
                let _ = token.expires_at - now();
            }
            Err(StsAttempt::Final(error)) => {
                let _ = (error.to_string(), error.is_refusal(), error.is_transient());
            }
            Err(StsAttempt::Transient(_)) => assert!(status >= 500 || status == 429),
        }
    }
    if let Ok(answer) = serde_json::from_str::<AccessTokenAnswer>(&body) {
        if let Ok(token) = answer.into_token() {
            let _ = token.expires_at - now();
        }
    }
    if let Ok(answer) = serde_json::from_str::<GenerateIdTokenResponse>(&body) {
        let _ = IdToken::parse(answer.token, "IAM Credentials generateIdToken");
    }
    let _ = serde_json::from_str::<AccessTokenResponse>(&body);
    let _ = google_error_message(&body);
    if let Ok(adc) = parse_adc(Path::new("application_default_credentials.json"), &body) {
        let _ = adc.describe();
    }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// `~/.aws/credentials` or `~/.aws/config` as found on disk: read every section, then write a
/// profile into it (an existing one and a new one) as `write-profile` does; nothing outside the
/// profile may change.
pub fn aws_ini(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let doc = IniDocument::parse(text);
    let names = doc.section_names();
    for name in &names {
        let _ = doc.section_entries(name);
    }
    let session = data.len().is_multiple_of(2);
    let entries = [
        ("aws_access_key_id", Some("ASIAFUZZEXAMPLE")),
        ("aws_secret_access_key", Some("fuzz/secret+key=")),
        ("aws_session_token", session.then_some("FwoGZXIvYXdzEFUZZ")),
        (
            "x_security_token_expires",
            session.then_some("2030-01-01T00:00:00Z"),
        ),
    ];
    let profiles = names
        .iter()
        .take(3)
        .map(String::as_str)
        .chain(["fuzz", "default"]);
    for profile in profiles {
        crate::deliver::aws_files::hostile::check_edit_locality(text, profile, &entries);
    }
}

/// A duration as `--duration`, `--deadline` and `keyless.toml` take it (`90s`, `1h30m`, `3600`):
/// what parses prints back as itself, and a range check never panics.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = text.parse::<crate::duration::Seconds>() else {
        return;
    };
    let shown = parsed.to_string();
    assert_eq!(
        shown.parse::<crate::duration::Seconds>().ok(),
        Some(parsed),
        "{text:?} printed as {shown:?}, which does not parse back"
    );
    let _ = parsed.within(900..=43200).map_err(|e| e.to_string());
}

/// `keyless.toml`: valid, or every problem placed inside the file, with `path:line:column` in
/// the message.
pub fn keyless_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/keyless-fuzz/keyless.toml");
    match crate::config::parse(text, path) {
        Ok(config) => assert!(!config.profiles.is_empty(), "a config without profiles"),
        Err(error) => {
            let lines = text.split('\n').count();
            let message = error.to_string();
            assert!(!error.problems().is_empty(), "an error without a problem");
            for p in error.problems() {
                assert!(
                    (1..=lines).contains(&p.line) && p.column >= 1,
                    "{}:{} is outside the file ({lines} lines)",
                    p.line,
                    p.column
                );
                let place = format!("{}:{}:{}", path.display(), p.line, p.column);
                assert!(message.contains(&place), "{place} is not in the message");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Trust configuration
// ---------------------------------------------------------------------------------------------

/// An AWS trust policy, evaluated for a Google token, an AWS role and a service; a policy
/// without an Allow never allows.
pub fn trust_policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = PolicyDocument::parse(text) else {
        return;
    };
    let claims = json!({
        "iss": "https://accounts.google.com", "aud": "sts.amazonaws.com",
        "azp": "100000000000000000001", "sub": "100000000000000000001",
        "email": "deployer@keyless-lab.iam.gserviceaccount.com", "exp": NOW + 3600,
    });
    let google = crate::policy::google::condition_context(claims.as_object().expect("an object"));
    let no_allow = policy.statements.iter().all(|s| s.effect == Effect::Deny);
    let principals = [
        RequestPrincipal::Federated("accounts.google.com".into()),
        RequestPrincipal::Aws("arn:aws:iam::123456789012:role/fuzz".into()),
        RequestPrincipal::Service("ec2.amazonaws.com".into()),
    ];
    for principal in principals {
        for action in ["sts:AssumeRoleWithWebIdentity", "sts:AssumeRole"] {
            let request = PolicyRequest {
                principal: principal.clone(),
                action,
                context: &google,
            };
            let decision = evaluate(&policy, &request);
            let _ = decision.explain();
            assert!(
                !(no_allow && decision.is_allowed()),
                "a policy without an Allow allowed {action}"
            );
        }
    }
}

/// `keyless lint` on any file: trust policies, `get-role` output, workload identity providers
/// (their CEL conditions), IAM policies; findings point at lines of the file.
pub fn lint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::policy::lint::lint_text("fuzz.json", text) {
        Ok(findings) => {
            let lines = text.split('\n').count();
            for f in &findings {
                assert!(
                    (1..=lines).contains(&f.line),
                    "finding {} at line {} of {lines}",
                    f.rule,
                    f.line
                );
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

/// A workload identity provider's attribute condition (CEL), evaluated for AWS identities.
pub fn cel(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expression) = CelExpression::parse(text) else {
        return;
    };
    let _ = expression.references();
    for arn in [
        "arn:aws:sts::123456789012:assumed-role/app-role/session",
        "arn:aws:iam::123456789012:user/someone",
    ] {
        let identity = aws_default_mapping(arn, "123456789012");
        let _ = expression.evaluate(&identity.cel_variables("123456789012"));
    }
}

// ---------------------------------------------------------------------------------------------
// The any-identity sources, role chaining and Google STS's OIDC providers
// ---------------------------------------------------------------------------------------------

/// The signature of [`planted_jwt`]: no error or log may ever show it.
const PLANTED_SIGNATURE: &str = "cGxhbnRlZC1zaWduYXR1cmUtbmV2ZXItc2hvd24";
/// The secret parts of the AssumeRole answer [`sts_outbound`] builds around its input.
const PLANTED_SECRET_KEY: &str = "planted/secret+access+key/never/shown";
const PLANTED_SESSION_TOKEN: &str = "planted-session-token-never-shown";

/// A JWT valid at [`NOW`] whose signature is [`PLANTED_SIGNATURE`].
fn planted_jwt() -> String {
    use base64::Engine;
    let encode = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{PLANTED_SIGNATURE}",
        encode(json!({"alg": "RS256", "kid": "fuzz"})),
        encode(json!({
            "iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
            "sub": "repo:org/repo:ref:refs/heads/main", "exp": NOW + 3600, "iat": NOW,
        }))
    )
}

/// Whether `text` shows a planted secret.
fn shows_planted_secret(text: &str) -> bool {
    [PLANTED_SIGNATURE, PLANTED_SECRET_KEY, PLANTED_SESSION_TOKEN]
        .iter()
        .any(|s| text.contains(s))
}

/// The first byte as an HTTP status among those the clouds answer, the rest as the body.
fn status_and_body(data: &[u8]) -> (u16, String) {
    const STATUSES: [u16; 8] = [200, 200, 400, 401, 403, 429, 500, 503];
    match data.split_first() {
        Some((first, rest)) => (
            STATUSES[usize::from(*first) % STATUSES.len()],
            String::from_utf8_lossy(rest).into_owned(),
        ),
        None => (200, String::new()),
    }
}

/// google-auth's executable-source answer as a `file:` or `command:` source reads it: any text
/// is a token or an error; and any JSON object with a token planted in its `id_token` yields
/// that token only when it is a successful version-1 answer, else an error that never shows it.
pub fn executable_json(data: &[u8]) {
    use crate::source::local::token_from_text_at;
    let origin = "the command `fuzz`";
    let text = String::from_utf8_lossy(data);
    check_id_token(token_from_text_at(text.trim(), origin, NOW), &text);
    check_id_token(token_from_command_output("fuzz", data), &text);
    if shows_planted_secret(&text) {
        return;
    }
    let Ok(Value::Object(mut answer)) = serde_json::from_str::<Value>(&text) else {
        return;
    };
    let token = planted_jwt();
    answer.insert("id_token".into(), Value::String(token.clone()));
    let answer = Value::Object(answer);
    match token_from_text_at(&answer.to_string(), origin, NOW) {
        Ok(read) => {
            assert_eq!(read.secret().expose(), token, "another token was read");
            assert_eq!(answer["version"], json!(1), "a token without version 1");
            assert_eq!(answer["success"], json!(true), "a token without success");
            assert!(answer.get("saml_response").is_none(), "a token from SAML");
            assert!(!shows_planted_secret(&format!("{read:?}")));
        }
        Err(error) => {
            let text = error.to_string();
            assert!(
                !shows_planted_secret(&text),
                "the error shows the token: {text}"
            );
            let _ = error.is_transient();
        }
    }
}

/// The GitHub Actions token service's answer (first byte: the status): a token only from a
/// 200 `{"value": JWT}`; an answer that cannot be read never has its token quoted.
pub fn github_answer(data: &[u8]) {
    use crate::source::github::read_answer;
    let host = || "pipelines.actions.githubusercontent.com".to_string();
    let (status, body) = status_and_body(data);
    match read_answer(host(), status, &body) {
        Ok(token) => {
            assert_eq!(status, 200, "a token from a {status} answer");
            check_id_token(Ok(token), &body);
        }
        Err(error) => {
            let _ = (error.is_configuration(), error.is_transient());
            assert!(
                !error.is_transient() || status >= 500 || status == 429,
                "a {status} answer is transient: {error}"
            );
            if status == 200 && !shows_planted_secret(&body) {
                let raw = body.trim();
                if raw.len() >= 16 {
                    assert!(
                        !error.to_string().contains(raw),
                        "the error quotes the answer"
                    );
                }
            }
        }
    }
    if shows_planted_secret(&body) {
        return;
    }
    let token = planted_jwt();
    for answer in [
        format!("{{\"value\":\"{token}\"{body}"),
        format!("{body}{{\"value\":\"{token}\"}}"),
        format!("{{{body},\"value\":\"{token}\"}}"),
        format!("{{\"value\":\"{token}{body}\"}}"),
    ] {
        match read_answer(host(), 200, &answer) {
            Ok(read) => assert!(!shows_planted_secret(&format!("{read:?}"))),
            Err(error) => {
                let text = error.to_string();
                assert!(
                    !shows_planted_secret(&text),
                    "the error shows the token: {text}"
                );
            }
        }
    }
}

/// AWS STS's outbound answers (first byte: the status): `GetWebIdentityToken` and its errors,
/// and `AssumeRole` (a role chain's hops). Errors are classified consistently; the input
/// spliced into answers holding a planted token or secret key never makes an error show them.
pub fn sts_outbound(data: &[u8]) {
    use crate::exchange::aws_chain::parse_assume_role_answer;
    use crate::source::aws_oidc::{parse_answer, AwsOidcError};
    let url = "https://sts.us-east-1.amazonaws.com";
    let (status, body) = status_and_body(data);
    let error = AwsOidcError::from_answer(url, status, "text/xml".into(), &body);
    let _ = error.to_string();
    assert!(
        !(error.is_transient() && error.is_refusal()),
        "both transient and refused: {error}"
    );
    if let Ok((token, _expiration)) = parse_answer(&body) {
        if token.expose().len() >= 8 {
            assert!(!format!("{token:?}").contains(token.expose()));
        }
        check_id_token(
            IdToken::parse(token.clone(), "AWS STS GetWebIdentityToken"),
            token.expose(),
        );
    }
    if let Ok(role) = parse_assume_role_answer(&body) {
        check_credential_outputs(&role);
    }
    if shows_planted_secret(&body) {
        return;
    }
    let token = planted_jwt();
    for answer in [
        format!("<GetWebIdentityTokenResponse><GetWebIdentityTokenResult><WebIdentityToken>{token}</WebIdentityToken>{body}</GetWebIdentityTokenResult></GetWebIdentityTokenResponse>"),
        format!("<GetWebIdentityTokenResponse><GetWebIdentityTokenResult>{body}<WebIdentityToken>{token}</WebIdentityToken></GetWebIdentityTokenResult></GetWebIdentityTokenResponse>"),
        format!("<GetWebIdentityTokenResponse><GetWebIdentityTokenResult><WebIdentityToken>{token}{body}</WebIdentityToken></GetWebIdentityTokenResult></GetWebIdentityTokenResponse>"),
    ] {
        match parse_answer(&answer) {
            Ok((read, _)) => {
                let parsed = IdToken::parse(read, "AWS STS GetWebIdentityToken");
                if let Err(e) = parsed {
                    assert!(!shows_planted_secret(&e.to_string()), "{e}");
                }
            }
            Err(detail) => assert!(!shows_planted_secret(&detail), "{detail}"),
        }
    }
    let credentials = format!(
        "<AccessKeyId>ASIAFUZZ</AccessKeyId><SecretAccessKey>{PLANTED_SECRET_KEY}</SecretAccessKey><SessionToken>{PLANTED_SESSION_TOKEN}</SessionToken>"
    );
    let user = "<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>";
    for answer in [
        format!("<AssumeRoleResponse><AssumeRoleResult>{user}<Credentials>{credentials}<Expiration>{body}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>"),
        format!("<AssumeRoleResponse><AssumeRoleResult>{user}<Credentials>{credentials}<Expiration>2030-01-01T00:00:00Z</Expiration></Credentials><PackedPolicySize>{body}</PackedPolicySize></AssumeRoleResult></AssumeRoleResponse>"),
        format!("<AssumeRoleResponse><AssumeRoleResult>{body}<Credentials>{credentials}<Expiration>2030-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>"),
    ] {
        match parse_assume_role_answer(&answer) {
            Ok(role) => {
                assert!(!shows_planted_secret(&format!("{role:?}")));
                check_credential_outputs(&role);
            }
            Err(detail) => assert!(!shows_planted_secret(&detail), "{detail}"),
        }
    }
}

/// The values of a role chain and a token source as the command line, the environment and
/// keyless.toml give them (one per line): whatever is accepted is exactly what was given,
/// prints back to itself and keeps to STS's limits; a chain built from them never panics.
pub fn chain_values(data: &[u8]) {
    use crate::types::{ExternalId, SessionTag, SourceIdentity, TagKey, TokenSourceSpec};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (mut tags, mut keys) = (Vec::new(), Vec::new());
    let (mut external_id, mut source_identity) = (None, None);
    for line in text.split('\n').take(64) {
        if let Ok(id) = ExternalId::parse(line) {
            assert_eq!(id.as_str(), line);
            assert!((2..=1224).contains(&line.chars().count()) && line.is_ascii());
            external_id = Some(id);
        }
        if let Ok(id) = SourceIdentity::parse(line) {
            assert_eq!(id.as_str(), line);
            assert!((2..=64).contains(&line.len()) && line.is_ascii());
            assert!(!line.to_ascii_lowercase().starts_with("aws:"));
            source_identity = Some(id);
        }
        if let Ok(key) = TagKey::parse(line) {
            assert_eq!(key.to_string(), line);
            assert!(key.same_as(&key) && line.chars().count() <= 128);
            keys.push(key);
        }
        if let Ok(tag) = SessionTag::parse(line) {
            assert_eq!(tag.to_string(), line, "a tag does not print back");
            assert_eq!(SessionTag::parse(&tag.to_string()).as_ref(), Ok(&tag));
            assert!(tag.key.as_str().chars().count() <= 128 && tag.value().chars().count() <= 256);
            tags.push(tag);
        }
        match TokenSourceSpec::parse(line) {
            Ok(spec) => {
                assert_eq!(
                    TokenSourceSpec::parse(&spec.to_string()).as_ref(),
                    Ok(&spec)
                );
                assert!(!spec.name().is_empty() && line.contains(spec.name()));
                let _ = crate::source::registry::check(&spec).map(|r| r.name);
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
        let _ = crate::source::registry::parse(line);
    }
    let role = RoleArn::parse("arn:aws:iam::123456789012:role/fuzz").expect("a valid role ARN");
    let chain = |external_id, source_identity, tags, keys| {
        crate::exchange::aws_chain::RoleChain::new(
            vec![role.clone()],
            external_id,
            source_identity,
            tags,
            keys,
            Some(3600),
        )
    };
    if let Ok(chain) = chain(external_id.clone(), source_identity, tags, keys) {
        let _ = (chain.cache_parts(), chain.roles().len());
    }
    // The cache key names the chain, not its external ID.
    if let Some(id) = external_id.filter(|id| id.as_str().len() >= 8) {
        let key = chain(Some(id.clone()), None, Vec::new(), Vec::new())
            .expect("a chain with one role and an external ID")
            .cache_parts();
        assert!(
            key.iter()
                .all(|part| !part.contains(id.as_str()) || role.to_string().contains(id.as_str())),
            "the cache key shows the external ID: {key:?}"
        );
    }
}

/// A Google STS OIDC provider on any token: the first line is the claims (JSON), each further
/// line a `TARGET=EXPRESSION` of the attribute mapping. A mapped subject keeps to Google's
/// limit; every string claim is reachable by the CEL spelling of its path.
pub fn google_oidc_mapping(data: &[u8]) {
    use crate::policy::cel::assertion_key;
    use crate::policy::issuer::google_sts::{
        assertion_variables, AttributeMapping, MAX_SUBJECT_BYTES,
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (claims, mapping) = text.split_once('\n').unwrap_or((text, ""));
    let claims = match serde_json::from_str::<Value>(claims) {
        Ok(Value::Object(claims)) => claims,
        _ => serde_json::Map::new(),
    };
    let assertion = assertion_variables(&claims);
    for (key, value) in claims.iter().take(16) {
        if let Value::String(value) = value {
            assert_eq!(assertion.get(&assertion_key(&[key])), Some(value));
            let literal = format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
            let condition = format!("{} == {literal}", assertion_key(&[key]));
            if let Ok(expression) = CelExpression::parse(&condition) {
                assert_eq!(
                    expression.evaluate(&assertion),
                    Ok(true),
                    "{condition} does not hold for its own claim"
                );
            }
        }
    }
    let pairs: Vec<(&str, &str)> = mapping
        .lines()
        .take(16)
        .map(|line| line.split_once('=').unwrap_or((line, "")))
        .collect();
    let mapping = if pairs.is_empty() {
        AttributeMapping::oidc_default()
    } else {
        match AttributeMapping::parse(&pairs) {
            Ok(mapping) => mapping,
            Err(error) => {
                let _ = error.to_string();
                return;
            }
        }
    };
    match mapping.apply(&assertion) {
        Ok(identity) => {
            assert!(identity.subject.len() <= MAX_SUBJECT_BYTES);
            let vars = identity.cel_variables(&assertion);
            assert_eq!(vars.get("google.subject"), Some(&identity.subject));
            for (name, value) in &identity.attributes {
                assert_eq!(vars.get(&format!("attribute.{name}")), Some(value));
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The local servers' request handling
// ---------------------------------------------------------------------------------------------

const ECS_TOKEN: &str = "fuzz-ecs-authorization-token";
const ACCESS_KEY_ID: &str = "ASIAFUZZEXAMPLE00001";
const SECRET_ACCESS_KEY: &str = "fuzz-secret-access-key-d0d2c1f3";
const SESSION_TOKEN: &str = "fuzz-session-token-8b1e77aa";
/// In a header value of a router target's input, stands for the last IMDS session token issued.
const TOKEN_PLACEHOLDER: &[u8] = b"$TOKEN";

/// The ECS-style endpoint: only the holder of the authorization token gets credentials.
pub fn router_ecs(data: &[u8]) {
    let router = ecs_server::router(fixed_refresher(), Secret::new(ECS_TOKEN));
    run_requests(&router, data, |request, status, headers, body| {
        let _ = headers;
        let authorized = request
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == ECS_TOKEN.as_bytes());
        assert!(
            matches!(status.as_u16(), 200 | 401 | 403 | 404 | 405),
            "status {status}"
        );
        assert!(
            status != StatusCode::OK || authorized,
            "200 without the token"
        );
        assert!(
            !contains(body, SECRET_ACCESS_KEY) || (authorized && status == StatusCode::OK),
            "credentials to a caller without the token"
        );
        None
    });
}

/// The IMDSv2-style endpoint: credentials only with a live session token, no token through a
/// proxy.
pub fn router_imds(data: &[u8]) {
    let role = RoleArn::parse("arn:aws:iam::123456789012:role/fuzz").expect("a valid role ARN");
    let identity = InstanceIdentity {
        instance_id: "i-00000000000fuzz0".into(),
        ..InstanceIdentity::for_role(&role, Some("eu-west-1"))
    };
    let router = imds_server::router(fixed_refresher(), identity);
    let issued = RefCell::new(HashSet::<Vec<u8>>::new());
    run_requests(&router, data, |request, status, _, body| {
        assert!(
            matches!(status.as_u16(), 200 | 400 | 401 | 403 | 404 | 405),
            "status {status}"
        );
        let is_token_request =
            request.method() == Method::PUT && request.uri().path() == "/latest/api/token";
        if request.headers().contains_key("x-forwarded-for") && is_token_request {
            assert_eq!(status, StatusCode::FORBIDDEN, "a token through a proxy");
        }
        if is_token_request && status == StatusCode::OK {
            issued.borrow_mut().insert(body.to_vec());
            return Some(body.to_vec());
        }
        let presented = request
            .headers()
            .get("x-aws-ec2-metadata-token")
            .is_some_and(|v| issued.borrow().contains(v.as_bytes()));
        assert!(
            !contains(body, SECRET_ACCESS_KEY) || presented,
            "credentials without a session token"
        );
        None
    });
}

/// The GCE-metadata-style endpoint: every answer says `Metadata-Flavor: Google`; requests
/// without it, or through a proxy, are refused; refusals carry no control characters from the
/// request (scopes, audiences, account names, `alt`).
pub fn router_gce_metadata(data: &[u8]) {
    let router = GCE.with(|setup| {
        GceMetadataServer::new(
            setup.profile.clone(),
            GceMetadataOptions::default(),
            setup.http.clone(),
        )
        .router()
    });
    run_requests(&router, data, |request, status, headers, body| {
        assert!(
            matches!(status.as_u16(), 200 | 400 | 403 | 404 | 405 | 429 | 503),
            "status {status}"
        );
        // Refusals show request values escaped: no control character but line ends.
        if !status.is_success() {
            assert!(
                !body.iter().any(|b| b.is_ascii_control() && *b != b'\n'),
                "a control character in a refusal: {}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            headers.get("metadata-flavor").map(HeaderValue::as_bytes),
            Some(&b"Google"[..]),
            "an answer without Metadata-Flavor: Google"
        );
        let flavor = request
            .headers()
            .get_all("metadata-flavor")
            .iter()
            .any(|v| v.as_bytes() == b"Google");
        let proxied = request.headers().contains_key("x-forwarded-for");
        let guarded = request.uri().path().starts_with("/computeMetadata/");
        if proxied || (guarded && !flavor) {
            assert_eq!(status, StatusCode::FORBIDDEN, "an unguarded answer");
        }
        None
    });
}

/// `/healthz` and `/metrics`.
pub fn router_metrics(data: &[u8]) {
    let registry = MetricsRegistry::default();
    registry.register("fuzz \"profile\"\n", || RefreshStatus {
        refreshes: 1,
        seconds_until_expiry: Some(1800.0),
        ..RefreshStatus::default()
    });
    let router = registry.router();
    run_requests(&router, data, |_, status, _, _| {
        assert!(
            matches!(status.as_u16(), 200 | 404 | 405),
            "status {status}"
        );
        None
    });
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// An upstream that always has the same hour-long role session.
struct FixedRole;

impl Upstream for FixedRole {
    type Value = AssumedRole;

    async fn fetch(&self) -> Result<(AssumedRole, OffsetDateTime), RefreshError> {
        let expiration = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let role = AssumedRole {
            credentials: AwsCredentials {
                access_key_id: ACCESS_KEY_ID.into(),
                secret_access_key: Secret::new(SECRET_ACCESS_KEY),
                session_token: Some(Secret::new(SESSION_TOKEN)),
                expiration: Some(expiration),
            },
            assumed_role_arn: "arn:aws:sts::123456789012:assumed-role/fuzz/session".into(),
            assumed_role_id: "AROAFUZZ:session".into(),
            subject_from_web_identity_token: None,
            audience: None,
            provider: None,
            packed_policy_size: None,
        };
        Ok((role, expiration))
    }
}

fn fixed_refresher() -> Refresher<FixedRole> {
    Refresher::new("fuzz", FixedRole, RefreshPolicy::default(), Clock::System)
}

/// One request of a router target's input, before the placeholder is filled in.
struct RawRequest<'a> {
    method: &'a [u8],
    target: &'a [u8],
    headers: Vec<(&'a [u8], &'a [u8])>,
}

/// The input format of the router targets, close to HTTP/1 so seeds are readable: requests
/// separated by a blank line, each a `METHOD TARGET` line and then `Name: value` lines. At
/// most eight requests are sent.
fn decode_requests(data: &[u8]) -> Vec<RawRequest<'_>> {
    let mut requests = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && requests.len() < 8 {
        let (block, next) = match rest.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (rest, &[][..]),
        };
        rest = next;
        let mut lines = block.split(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        let (method, target) = match first.iter().position(|&b| b == b' ') {
            Some(i) => (&first[..i], &first[i + 1..]),
            None => (&b"GET"[..], first),
        };
        let headers = lines
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                Some((&line[..colon], value))
            })
            .collect();
        requests.push(RawRequest {
            method,
            target,
            headers,
        });
    }
    requests
}

/// Sends each decoded request to a clone of `router` (as the server would, one connection
/// each) and hands the answer to `check`, which may return a new value for `$TOKEN`.
/// Requests hyper would refuse before routing (a malformed method, target or header) are
/// not sent.
fn run_requests(
    router: &Router,
    data: &[u8],
    mut check: impl FnMut(&Request<Body>, StatusCode, &axum::http::HeaderMap, &[u8]) -> Option<Vec<u8>>,
) {
    let requests = decode_requests(data);
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let mut token: Vec<u8> = Vec::new();
            for raw in requests {
                let Some((request, copy)) = build_request(&raw, &token) else {
                    continue;
                };
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never| match never {});
                let (parts, body) = response.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .expect("a readable answer under 1 MiB");
                if let Some(new) = check(&copy, parts.status, &parts.headers, &body) {
                    token = new;
                }
            }
        })
    });
}

/// The request, twice: one to send and one for the checks (bodies are empty).
fn build_request(raw: &RawRequest<'_>, token: &[u8]) -> Option<(Request<Body>, Request<Body>)> {
    let method = Method::from_bytes(raw.method).ok()?;
    let target = std::str::from_utf8(raw.target).ok()?;
    let uri: axum::http::Uri = target.parse().ok()?;
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in &raw.headers {
        let Ok(name) = HeaderName::from_bytes(name) else {
            continue;
        };
        let value = replace_placeholder(value, token);
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        headers.push((name, value));
    }
    let build = || {
        let mut builder = Request::builder().method(method.clone()).uri(uri.clone());
        for (name, value) in &headers {
            builder = builder.header(name, value);
        }
        builder.body(Body::empty()).ok()
    };
    Some((build()?, build()?))
}

fn replace_placeholder(value: &[u8], token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest
        .windows(TOKEN_PLACEHOLDER.len())
        .position(|w| w == TOKEN_PLACEHOLDER)
    {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(token);
        rest = &rest[i + TOKEN_PLACEHOLDER.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// What the GCE-metadata target needs once per thread: an AWS → GCP profile whose upstream is
/// unreachable (Google STS on a closed loopback port), so a token request fails at once.
struct GceSetup {
    profile: GcpTokenProfile,
    http: reqwest::Client,
}

static FAKE_AWS_ENV: Once = Once::new();

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    static GCE: GceSetup = {
        FAKE_AWS_ENV.call_once(|| {
            std::env::set_var("AWS_ACCESS_KEY_ID", "AKIAFUZZEXAMPLE00001");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "fuzz-secret-not-a-real-key");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        });
        let aws = RUNTIME.with(|runtime| {
            runtime.block_on(AwsIdentitySource::resolve(AwsSourceOptions {
                region: Some("eu-west-1".parse().expect("a region")),
                ..AwsSourceOptions::default()
            }))
        });
        let closed = "http://127.0.0.1:0";
        GceSetup {
            profile: GcpTokenProfile {
                audit: Default::default(),
                subject: crate::refresh::gcp_token::GcpSubject::Aws(
                    aws.expect("an AWS source with a region needs no network"),
                ),
                audience: "//iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/fuzz/providers/aws".into(),
                scopes: vec![CLOUD_PLATFORM_SCOPE.into()],
                token_url: crate::types::UpstreamUrl::parse(&format!("{closed}/v1/token"))
                    .expect("a loopback URL"),
                iamcredentials_url: crate::types::UpstreamUrl::parse(closed).expect("a loopback URL"),
                impersonation: Some(Impersonation {
                    service_account: "fuzz@keyless-fuzz.iam.gserviceaccount.com".into(),
                    scopes: vec![CLOUD_PLATFORM_SCOPE.into()],
                    lifetime: None,
                    delegates: Vec::new(),
                }),
                retry: RetryPolicy {
                    max_attempts: 1,
                    first_delay: Duration::ZERO,
                    max_delay: Duration::ZERO,
                    deadline: Duration::from_secs(5),
                    attempt_timeout: Duration::from_secs(5),
                },
            },
            http: crate::wire::http::build().expect("an HTTP client"),
        }
    };
}

/// What `keyless audit` reads: a CloudTrail record, a Cloud Audit Logs entry, keyless's own
/// audit-log lines, an `--expect` file (JSON or keyless.toml) and a `--since` value. Whatever
/// parses correlates, is checked and renders; the JSON report reads back, and a record's
/// row only ever holds what the record said (never more text than it had).
pub fn cloud_audit(data: &[u8]) {
    use crate::cloud_audit::correlate::{correlate, parse_local_log, Scope};
    use crate::cloud_audit::expect::{flag_unexpected, Expectation};
    use crate::cloud_audit::report::{Cloud, Report};
    use crate::cloud_audit::{cloud_logging, cloudtrail, PointInTime, TimeWindow};

    let text = String::from_utf8_lossy(data);
    let mut events = Vec::new();
    if let Ok(event) = cloudtrail::parse_record(&text) {
        events.push(event);
    }
    if let Ok(entry) = serde_json::from_str::<Value>(&text) {
        if let Ok(event) = cloud_logging::parse_entry(&entry) {
            events.push(event);
        }
    }
    for event in &events {
        let row = serde_json::to_string(event).expect("a row serialises");
        assert!(
            row.len() <= 4 * text.len() + 1024,
            "a row is made of the record's text"
        );
    }
    let local = parse_local_log(Path::new("audit.jsonl"), &text).unwrap_or_default();
    let expectations: Vec<Expectation> = ["expect.json", "keyless.toml"]
        .iter()
        .filter_map(|file| Expectation::parse(Path::new(file), &text).ok())
        .collect();
    let now = OffsetDateTime::from_unix_timestamp(NOW).expect("a fixed time");
    if let Ok(since) = text.trim().parse::<PointInTime>() {
        let _ = TimeWindow::new(since, None, now);
    }
    let window = TimeWindow {
        start: OffsetDateTime::UNIX_EPOCH,
        end: now,
    };
    for cloud in [Cloud::Aws, Cloud::Gcp] {
        let mut report = Report::new(events.clone());
        let scope = Scope {
            cloud,
            window,
            role_arn: None,
            service_account: None,
            provider: None,
        };
        correlate(&mut report, &local, &scope);
        flag_unexpected(&mut report, &expectations);
        let _ = report.to_text();
        let json: Value = serde_json::from_str(&report.to_json()).expect("the report is JSON");
        assert_eq!(json["events"].as_array().map(Vec::len), Some(events.len()));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Requests in the router targets' format, from the methods, paths, queries and headers
    /// the endpoints know, mixed with arbitrary ones.
    fn requests() -> impl Strategy<Value = String> {
        let method = prop::sample::select(vec![
            "GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "get", "X-Y",
        ]);
        let path = prop_oneof![
            prop::sample::select(vec![
                "/", "/creds", "/creds/", "//creds", "/latest/api/token",
                "/latest/meta-data/iam/security-credentials/", "/latest/meta-data/iam/security-credentials/fuzz",
                "/latest/meta-data/iam/info", "/latest/dynamic/instance-identity/document",
                "/computeMetadata/v1/instance/service-accounts/", "/computeMetadata/v1/instance/service-accounts/default/",
                "/computeMetadata/v1/instance/service-accounts/default/token",
                "/computeMetadata/v1/instance/service-accounts/default/identity",
                "/computeMetadata/v1/instance/service-accounts/fuzz@keyless-fuzz.iam.gserviceaccount.com/email",
                "/computeMetadata/v1/project/project-id", "/computeMetadata/v1/universe/universe-domain",
                "/computeMetadata/v1/instance/service-accounts/%2e%2e/x", "/healthz", "/metrics", "*",
                "http://169.254.169.254/latest/api/token",
            ]).prop_map(String::from),
            "/[ -~]{0,20}",
        ];
        let query = prop_oneof![
            Just(String::new()),
            prop::sample::select(vec![
                "?recursive=true",
                "?scopes=a,b",
                "?audience=x&format=full",
                "?format=bad&audience=",
                "?%ff=%fe",
                "?a&a=1&a=2"
            ])
            .prop_map(String::from),
            "\\?[ -~]{0,12}",
        ];
        let header = prop_oneof![
            prop::sample::select(vec![
                "Authorization: fuzz-ecs-authorization-token",
                "Authorization: wrong",
                "Metadata-Flavor: Google",
                "Metadata-Flavor: google",
                "X-Forwarded-For: 10.0.0.1",
                "X-aws-ec2-metadata-token-ttl-seconds: 60",
                "X-aws-ec2-metadata-token-ttl-seconds: 99999999999999999999",
                "X-aws-ec2-metadata-token: $TOKEN",
                "X-aws-ec2-metadata-token: x",
            ])
            .prop_map(String::from),
            "[A-Za-z-]{1,12}: [ -~]{0,12}",
        ];
        prop::collection::vec(
            (method, path, query, prop::collection::vec(header, 0..4)),
            1..5,
        )
        .prop_map(|requests| {
            requests
                .into_iter()
                .map(|(m, p, q, h)| {
                    let mut block = format!("{m} {p}{q}");
                    for line in h {
                        block.push('\n');
                        block.push_str(&line);
                    }
                    block
                })
                .collect::<Vec<_>>()
                .join("\n\n")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every router, any requests: no panic, a sane status, and no credentials or token
        /// to a caller the endpoint must refuse (the checks are the fuzz targets').
        #[test]
        fn the_servers_answer_any_request_sanely(input in requests()) {
            router_ecs(input.as_bytes());
            router_imds(input.as_bytes());
            router_gce_metadata(input.as_bytes());
            router_metrics(input.as_bytes());
        }

        /// The lab signs and verifies any claims (the target's round trip), few cases: RSA.
        #[test]
        fn lab_tokens_round_trip(sub in "[0-9]{1,21}", aud in any::<String>(), exp in any::<i64>()) {
            let claims = serde_json::json!({"iss": "https://accounts.google.com", "aud": aud, "sub": sub, "exp": exp});
            lab_id_token(claims.to_string().as_bytes());
        }
    }

    #[test]
    fn requests_decode_as_documented() {
        let decoded = decode_requests(b"PUT /a?b\nName: v\nbad line\n\n/c\nX:y\n\n");
        assert_eq!(decoded.len(), 2);
        assert_eq!(
            (decoded[0].method, decoded[0].target),
            (&b"PUT"[..], &b"/a?b"[..])
        );
        assert_eq!(decoded[0].headers, vec![(&b"Name"[..], &b"v"[..])]);
        assert_eq!(
            (decoded[1].method, decoded[1].target),
            (&b"GET"[..], &b"/c"[..])
        );
        assert_eq!(replace_placeholder(b"a$TOKENb$TOKEN", b"t"), b"atbt");
    }
}
