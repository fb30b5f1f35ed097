//! `keyless demo`: the GCP → AWS flow against the built-in lab, one step at a time, ending with
//! a refused attempt and the reason. A newcomer sees every claim and condition that matters.

use anyhow::Context;
use clap::Args;

use crate::credentials::format_expiration;
use crate::exchange::aws_sts::{
    exchange_web_identity, fetch_caller_identity, ExchangeError, RetryPolicy, RoleArn, StsEndpoint,
    WebIdentityRequest,
};
use crate::lab::{Lab, LabConfig};
use crate::policy::{self, PolicyDocument, Request, RequestPrincipal};
use crate::secret::Secret;
use crate::source::google::{IdToken, MetadataServer, DEFAULT_AWS_AUDIENCE};

/// `keyless demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {}

const ROLE: &str = "gcp-deploy";
const INTRUDER: &str = "intruder@elsewhere.iam.gserviceaccount.com";

/// Runs the demo; exits 0 only if every step behaved as a real federation would.
pub async fn run(_args: DemoArgs) -> anyhow::Result<i32> {
    let config = LabConfig::demo();
    let lab = Lab::start(config.clone())
        .await
        .context("could not start the lab")?;
    let http = crate::http_client::build()?;
    let role_arn = RoleArn::parse(&lab.role_arn(ROLE))?;
    let endpoint = StsEndpoint::resolve(Some(&lab.aws_sts_url()), Some("us-east-1"));
    let trust = &config
        .role(ROLE)
        .context("the demo role is missing")?
        .trust_policy;

    println!("keyless demo: a Google service account becomes an AWS role, offline.");
    println!(
        "The lab emulates the GCE metadata server at {} and AWS STS at {}.",
        lab.metadata_host(),
        lab.aws_sts_url()
    );

    step(
        1,
        "The workload asks its metadata server for a Google ID token",
    );
    println!("  GET http://{}/computeMetadata/v1/instance/service-accounts/default/identity?audience={DEFAULT_AWS_AUDIENCE}&format=full", lab.metadata_host());
    println!("  Metadata-Flavor: Google");
    let metadata = MetadataServer::new(lab.metadata_host());
    let token = metadata.fetch_id_token(&http, DEFAULT_AWS_AUDIENCE).await?;
    show_claims(&token);

    step(2, "AWS compares the token with the role's trust policy");
    println!("  role {role_arn}, trust policy:");
    for line in pretty_json(trust).lines() {
        println!("    {line}");
    }
    println!("  AWS reads the Google token through these condition keys:");
    println!("    accounts.google.com:aud  = the token's azp (else aud)");
    println!("    accounts.google.com:oaud = the token's aud");
    println!("    accounts.google.com:sub  = the token's sub");
    let decision = evaluate(trust, &token)?;
    println!("  → {}", decision.explain());

    step(
        3,
        "keyless calls STS AssumeRoleWithWebIdentity with the token",
    );
    let request = WebIdentityRequest {
        role_arn: role_arn.clone(),
        session_name: None,
        duration_seconds: None,
        policy: None,
        policy_arns: Vec::new(),
    };
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let minted = token.clone();
    let role = exchange_web_identity(
        &http,
        &endpoint,
        &request,
        &RetryPolicy::default(),
        &host,
        || {
            let t = minted.clone();
            async move { Ok(t) }
        },
    )
    .await?;
    println!("  assumed role:   {}", role.assumed_role_arn);
    println!("  access key id:  {}", role.credentials.access_key_id);
    println!(
        "  secret key:     {} (never printed by keyless except where you ask for it)",
        role.credentials.secret_access_key
    );
    if let Some(exp) = role.credentials.expiration {
        println!("  expires:        {}", format_expiration(exp));
    }

    step(
        4,
        "A call signed with the new credentials (STS GetCallerIdentity, SigV4)",
    );
    let identity = fetch_caller_identity(&http, &endpoint, &role.credentials).await?;
    println!(
        "  the lab verified the signature and says: {} (account {})",
        identity.arn, identity.account
    );

    step(
        5,
        "Another Google identity tries the same role and is refused",
    );
    let raw = lab.mint_id_token(
        INTRUDER,
        DEFAULT_AWS_AUDIENCE,
        std::time::Duration::from_secs(3600),
    );
    let intruder = IdToken::parse(Secret::new(raw), "the lab")?;
    show_claims(&intruder);
    let refused_token = intruder.clone();
    let outcome = exchange_web_identity(
        &http,
        &endpoint,
        &request,
        &RetryPolicy::default(),
        &host,
        || {
            let t = refused_token.clone();
            async move { Ok(t) }
        },
    )
    .await;
    let refused = match outcome {
        Err(e @ ExchangeError::Refused { .. }) => e,
        Err(other) => anyhow::bail!("expected AccessDenied, got: {other}"),
        Ok(_) => anyhow::bail!("the lab let an untrusted identity in; this is a bug"),
    };
    println!(
        "  STS answered: {}",
        refused.to_string().lines().next().unwrap_or_default()
    );
    println!("  why: {}", evaluate(trust, &intruder)?.explain());

    println!("\nThat is the whole flow. On a real GCE VM, GKE pod or Cloud Run service, put this in ~/.aws/config:");
    println!("  [profile deploy]");
    println!(
        "  credential_process = keyless aws credentials --role-arn arn:aws:iam::ACCOUNT:role/ROLE"
    );
    println!("and `aws sts get-caller-identity --profile deploy` shows the assumed role.");
    println!("To try tools by hand against this lab, run `keyless lab`.");
    lab.shutdown().await;
    Ok(0)
}

fn step(n: u32, title: &str) {
    println!("\n── step {n}: {title}");
}

fn show_claims(token: &IdToken) {
    let c = token.claims();
    println!("  token claims:");
    println!("    iss   = {}", c.iss);
    println!("    aud   = {}", c.aud);
    println!("    azp   = {}", c.azp.as_deref().unwrap_or("(none)"));
    println!("    sub   = {}", c.sub);
    println!("    email = {}", c.email.as_deref().unwrap_or("(none)"));
    println!("    exp   = {}", format_expiration(c.expires_at()));
}

fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}

/// The same evaluation the lab's STS performs, shown to the user.
fn evaluate(trust: &str, token: &IdToken) -> anyhow::Result<policy::Decision> {
    let document = PolicyDocument::parse(trust)?;
    let claims = claims_map(token);
    let context = policy::google::condition_context(&claims);
    Ok(policy::evaluate(
        &document,
        &Request {
            principal: RequestPrincipal::Federated("accounts.google.com".into()),
            action: "sts:AssumeRoleWithWebIdentity",
            context: &context,
        },
    ))
}

fn claims_map(token: &IdToken) -> serde_json::Map<String, serde_json::Value> {
    let c = token.claims();
    let mut map = serde_json::Map::new();
    map.insert("iss".into(), c.iss.clone().into());
    map.insert("aud".into(), c.aud.clone().into());
    if let Some(azp) = &c.azp {
        map.insert("azp".into(), azp.clone().into());
    }
    map.insert("sub".into(), c.sub.clone().into());
    if let Some(email) = &c.email {
        map.insert("email".into(), email.clone().into());
    }
    map
}
