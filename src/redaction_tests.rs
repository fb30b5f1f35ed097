//! `Debug` of every type that holds a secret shows none of it: one test per type, each built
//! with marker values and checked for every marker (and a distinctive piece of each, in case a
//! type printed part of one). A new type that holds a secret gets a line here.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use time::OffsetDateTime;

use crate::credentials::{AwsCredentials, GoogleAccessToken};
use crate::deliver::imds_server::SessionTokens;
use crate::exchange::aws_sts::AssumedRole;
use crate::exchange::google_sts::{build_subject_token, TokenExchange};
use crate::refresh::GcpToken;
use crate::secret::Secret;
use crate::source::IdToken;

const SECRET_KEY: &str = "MARKERsecretAccessKey0123456789abcdefghij";
const SESSION_TOKEN: &str = "MARKERsessionTokenIQoJb3JpZ2luX2VjEJr0000000000";
const ACCESS_TOKEN: &str = "ya29.MARKERaccessToken0123456789";
const SIGNATURE: &str = "MARKERidTokenSignature0123456789abcdef";

fn credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "ASIAREDACTIONTEST000".into(),
        secret_access_key: Secret::new(SECRET_KEY),
        session_token: Some(Secret::new(SESSION_TOKEN)),
        expiration: Some(OffsetDateTime::now_utc()),
    }
}

fn access_token() -> GoogleAccessToken {
    GoogleAccessToken {
        access_token: Secret::new(ACCESS_TOKEN),
        expires_at: OffsetDateTime::now_utc(),
    }
}

fn id_token_text() -> String {
    let encode = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.{SIGNATURE}",
        encode(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        encode(serde_json::json!({
            "iss": "https://accounts.google.com",
            "aud": "sts.amazonaws.com",
            "azp": "100000000000000000001",
            "sub": "100000000000000000001",
            "email": "deployer@keyless-lab.iam.gserviceaccount.com",
            "exp": 4_000_000_000i64,
        }))
    )
}

/// Panics if `debug` holds any of `secrets` or a 16-character piece of one's tail.
fn assert_redacted(what: &str, debug: &str, secrets: &[&str]) {
    for secret in secrets {
        let tail = &secret[secret.len().saturating_sub(16)..];
        assert!(
            !debug.contains(secret) && !debug.contains(tail),
            "Debug of {what} shows a secret ({secret}):\n{debug}"
        );
        assert!(!debug.contains("MARKER"), "Debug of {what}:\n{debug}");
    }
}

macro_rules! redacted {
    ($name:ident, $value:expr, $secrets:expr) => {
        #[test]
        fn $name() {
            let value = $value;
            let debug = format!("{value:?}");
            let pretty = format!("{value:#?}");
            assert_redacted(stringify!($name), &debug, $secrets);
            assert_redacted(stringify!($name), &pretty, $secrets);
        }
    };
}

redacted!(secret, Secret::new(SECRET_KEY), &[SECRET_KEY]);

redacted!(aws_credentials, credentials(), &[SECRET_KEY, SESSION_TOKEN]);

redacted!(google_access_token, access_token(), &[ACCESS_TOKEN]);

redacted!(
    assumed_role,
    AssumedRole {
        credentials: credentials(),
        assumed_role_arn: "arn:aws:sts::123456789012:assumed-role/deploy/s".into(),
        assumed_role_id: "AROAREDACTION:s".into(),
        subject_from_web_identity_token: Some("100000000000000000001".into()),
        audience: Some("sts.amazonaws.com".into()),
        provider: Some("accounts.google.com".into()),
        packed_policy_size: None,
    },
    &[SECRET_KEY, SESSION_TOKEN]
);

redacted!(
    id_token,
    IdToken::parse(Secret::new(id_token_text()), "a test").unwrap(),
    &[SIGNATURE, &id_token_text()]
);

redacted!(
    subject_token,
    build_subject_token(
        &credentials(),
        &"us-east-1".parse().unwrap(),
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )
    .unwrap(),
    &[SECRET_KEY, SESSION_TOKEN]
);

redacted!(
    token_exchange,
    TokenExchange {
        audience:
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x"
                .into(),
        scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
        subject_token: build_subject_token(
            &credentials(),
            &"us-east-1".parse().unwrap(),
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
            SystemTime::now(),
        )
        .unwrap(),
    },
    &[SECRET_KEY, SESSION_TOKEN]
);

redacted!(
    gcp_token,
    GcpToken {
        token: access_token(),
        service_account: Some("copycat@keyless-lab.iam.gserviceaccount.com".into()),
        subject: crate::refresh::gcp_token::FederatedSubject::Aws(credentials()),
    },
    &[ACCESS_TOKEN, SECRET_KEY, SESSION_TOKEN]
);

#[test]
fn imds_session_tokens() {
    let sessions = SessionTokens::new(4);
    let token = sessions.issue(Duration::from_secs(60));
    let debug = format!("{sessions:?} {token:?}");
    assert_redacted("imds_session_tokens", &debug, &[token.expose()]);
}

/// The subject token is a secret only as a whole: it also carries the signature, which must not
/// print either.
#[test]
fn subject_token_signature() {
    let token = build_subject_token(
        &credentials(),
        &"us-east-1".parse().unwrap(),
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )
    .unwrap();
    let text = token.secret().expose().to_string();
    let signature = text
        .split("Signature%3D")
        .nth(1)
        .and_then(|rest| rest.get(..32))
        .expect("a signed subject token");
    assert_redacted("subject_token", &format!("{token:?}"), &[signature, &text]);
}
