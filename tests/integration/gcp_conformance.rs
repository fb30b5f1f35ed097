//! Conformance with google-auth-library-python (from the venv `tools/test` prepares): for the
//! same AWS credentials, region, audience and clock, the token-exchange request keyless builds
//! differs from google-auth's only where documented: keyless signs `x-goog-cloud-target-resource`
//! (as the Go and Rust libraries do), so `SignedHeaders` gains that header and the signature
//! differs. Everything else — form fields, header names, order and values, JSON layout, URL
//! encoding — is byte-identical.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use keyless::credentials::AwsCredentials;
use keyless::exchange::google_sts::{
    build_subject_token, quote_like_python, TokenExchange, CLOUD_PLATFORM_SCOPE,
};
use keyless::secret::Secret;
use serde_json::Value;
use support::{expect_success, AwsHome};

const AUDIENCE: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/POOL_ID/providers/PROVIDER_ID";
const FROZEN: u64 = 1_597_128_922; // 2020-08-11T06:55:22Z, google-auth's fixture time
const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn google_auth_request(session_token: Option<&str>) -> Value {
    let home = AwsHome::new("http://127.0.0.1:9");
    let mut python = home.python(
        "google_auth_token_request.py",
        [AUDIENCE, "http://127.0.0.1:9/v1/token", &FROZEN.to_string()],
    );
    python
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-2");
    if let Some(token) = session_token {
        python.env("AWS_SESSION_TOKEN", token);
    }
    expect_success(&mut python).json()
}

fn keyless_form(session_token: Option<&str>) -> BTreeMap<String, String> {
    let credentials = AwsCredentials {
        access_key_id: KEY.into(),
        secret_access_key: Secret::new(SECRET),
        session_token: session_token.map(Secret::new),
        expiration: None,
    };
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(FROZEN);
    let exchange = TokenExchange {
        audience: AUDIENCE.into(),
        scopes: vec![CLOUD_PLATFORM_SCOPE.into()],
        subject_token: build_subject_token(
            &credentials,
            &"us-east-2".parse().unwrap(),
            AUDIENCE,
            time,
        )
        .unwrap(),
    };
    exchange
        .form()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn decode(token: &str) -> String {
    percent_encoding::percent_decode_str(token)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

fn authorization(json: &str) -> String {
    let doc: Value = serde_json::from_str(json).unwrap();
    doc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["key"] == "Authorization")
        .map(|h| h["value"].as_str().unwrap().to_string())
        .unwrap()
}

fn compare(session_token: Option<&str>) {
    let theirs = google_auth_request(session_token);
    let ours = keyless_form(session_token);
    let their_form: BTreeMap<String, String> =
        serde_json::from_value(theirs["form"].clone()).unwrap();
    assert_eq!(
        their_form.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "the same form fields"
    );
    for (field, value) in &their_form {
        if field != "subject_token" {
            assert_eq!(Some(value), ours.get(field), "form field {field}");
        }
    }
    let their_token = &their_form["subject_token"];
    let their_json = decode(their_token);
    let our_json = decode(&ours["subject_token"]);
    // Our encoder is Python's quote() on this input.
    assert_eq!(&quote_like_python(&their_json), their_token);

    let their_auth = authorization(&their_json);
    let our_auth = authorization(&our_json);
    // The documented difference: we sign the target-resource header.
    let their_signed = their_auth
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let our_signed = our_auth
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert_eq!(
        our_signed,
        format!("{their_signed};x-goog-cloud-target-resource")
    );
    assert_eq!(
        their_auth.split(", ").next(),
        our_auth.split(", ").next(),
        "same algorithm and credential scope"
    );
    assert_ne!(their_auth, our_auth);
    // Everything else is byte-identical.
    assert_eq!(
        their_json.replace(&their_auth, "AUTH"),
        our_json.replace(&our_auth, "AUTH")
    );
}

/// With temporary credentials (session token): identical but for the signed header.
#[test]
fn token_request_matches_google_auth_with_session_token() {
    compare(Some("AQoEXAMPLEH4aoAH0gNCAPyJxz4BlCFFxWNE1OPTgk5TthT+FvwqnKwRcOIfrRh3c/LTo6UDdyJwOOvEVPvLXCrrrUtdnniCEXAMPLE"));
}

/// With long-lived keys (no session token): identical but for the signed header.
#[test]
fn token_request_matches_google_auth_without_session_token() {
    compare(None);
}
