//! keyless as a library: the AWS SDK for Rust takes credentials from
//! [`GoogleFederatedProvider`] through `aws_config`, exactly as the example in `examples/` does.

use crate::support;

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use keyless::deliver::aws_sdk::GoogleFederatedProvider;
use support::LabWorld;

const DEPLOYER: &str = "deployer@keyless-lab.iam.gserviceaccount.com";

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_sdk_gets_fresh_credentials_from_keyless() {
    let w = LabWorld::start().await;
    let token = w.write_token("t.jwt", DEPLOYER, Duration::from_secs(3600));
    let provider = GoogleFederatedProvider::builder(w.role("gcp-deploy"))
        .token_source(format!("file:{}", token.display()))
        .sts_endpoint(w.lab.aws_sts_url())
        .session_name("library")
        .duration("2h".parse().unwrap())
        .build()
        .unwrap();
    assert!(format!("{provider:?}").contains("background_refresh: true"));

    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(provider)
        .load()
        .await;
    let chain = config.credentials_provider().unwrap();
    let first = chain.provide_credentials().await.unwrap();
    assert!(first.access_key_id().starts_with("ASIA"));
    assert!(first.session_token().is_some());
    // `.duration("2h")`: the session lasts two hours, not the default one.
    assert!(first.expiry().unwrap() > SystemTime::now() + Duration::from_secs(7000));

    // Many asks, one exchange: the SDK's own cache and keyless's engine both hold it.
    let exchanges = w.lab.stats().assume_role_with_web_identity_successes;
    for _ in 0..10 {
        let again = chain.provide_credentials().await.unwrap();
        assert_eq!(again.access_key_id(), first.access_key_id());
    }
    assert_eq!(
        w.lab.stats().assume_role_with_web_identity_successes,
        exchanges
    );

    // The credentials work: STS says who they are.
    let env = [
        ("AWS_ACCESS_KEY_ID", first.access_key_id().to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            first.secret_access_key().to_string(),
        ),
        (
            "AWS_SESSION_TOKEN",
            first.session_token().unwrap().to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let who = w.keyless_env(&["aws", "whoami"], &env).await;
    assert_eq!(who.code(), 0, "{who}");
    assert!(
        who.stdout.contains("assumed-role/gcp-deploy/library"),
        "{who}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_reaches_the_sdk_as_a_provider_error_without_secrets() {
    let w = LabWorld::start().await;
    let token = w.write_token("t.jwt", DEPLOYER, Duration::from_secs(3600));
    let provider = GoogleFederatedProvider::builder(w.role("ci-deploy"))
        .token_source(format!("file:{}", token.display()))
        .sts_endpoint(w.lab.aws_sts_url())
        .build()
        .unwrap();
    let error = provider.provide_credentials().await.unwrap_err();
    let text = format!("{error:?} {}", keyless::wire::error_chain(&error));
    assert!(text.contains("ci-deploy"), "{text}");
    assert!(
        !text.contains(&std::fs::read_to_string(&token).unwrap()),
        "{text}"
    );
}
