//! `keyless demo`: the GCP → AWS flow against the built-in lab, one step at a time, ending with
//! a refused attempt and the reason. A newcomer sees every claim and condition that matters.

use anyhow::Context;
use clap::Args;

use crate::credentials::format_expiration;
use crate::exchange::aws_sts::{
    exchange_web_identity, fetch_caller_identity, ExchangeError, RetryPolicy, RoleArn, StsEndpoint,
    WebIdentityRequest,
};
use crate::exchange::google_iam::{generate_access_token, Impersonation};
use crate::exchange::google_sts::{
    build_subject_token, exchange_subject_token, TokenExchange, CLOUD_PLATFORM_SCOPE,
};
use crate::lab::{Lab, LabConfig};
use crate::policy::{self, PolicyDocument, Request, RequestPrincipal};
use crate::secret::Secret;
use crate::source::google::{MetadataServer, DEFAULT_AWS_AUDIENCE};
use crate::source::IdToken;

// `keyless demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Append every secret the demo's lab issues to this file (for leak tests).
    #[arg(long, hide = true, env = "KEYLESS_LAB_SECRETS_FILE")]
    pub secrets_file: Option<std::path::PathBuf>,
}

const ROLE: &str = "gcp-deploy";
const INTRUDER: &str = "intruder@elsewhere.iam.gserviceaccount.com";
const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";

/// Runs the demo; exits 0 only if every step behaved as a real federation would.
pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let config = LabConfig::demo();
    let lab = Lab::start(config.clone())
        .await
        .context("could not start the lab")?;
    if let Some(path) = &args.secrets_file {
        lab.record_issued_secrets_to(path)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    let http = crate::wire::http::build()?;
    let role_arn = RoleArn::parse(&lab.role_arn(ROLE))?;
    // The lab's own URL: never redirected by AWS_ENDPOINT_URL*.
    let endpoint = StsEndpoint::from_parts(
        Some(crate::types::UpstreamUrl::parse(&lab.aws_sts_url())?),
        None,
    );
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
    let role = exchange_token(&http, &endpoint, &request, &token).await?;
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
    let outcome = exchange_token(&http, &endpoint, &request, &intruder).await;
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

    println!("\nOn a real GCE VM, GKE pod or Cloud Run service, put this in ~/.aws/config:");
    println!("  [profile deploy]");
    println!(
        "  credential_process = keyless aws credentials --role-arn arn:aws:iam::ACCOUNT:role/ROLE"
    );
    println!("and `aws sts get-caller-identity --profile deploy` shows the assumed role.");

    aws_to_gcp(&lab, &http).await?;

    println!("\nTo try tools by hand against this lab, run `keyless lab`.");
    lab.shutdown().await;
    Ok(0)
}

/// The reverse direction: an AWS session becomes a Google service account's token.
async fn aws_to_gcp(lab: &Lab, http: &reqwest::Client) -> anyhow::Result<()> {
    println!("\n\nkeyless demo, the other way: an AWS role becomes a Google service account.");
    let audience = lab.workload_identity_audience();
    let retry = RetryPolicy::default();

    step(
        6,
        "An AWS workload proves who it is: a signed STS GetCallerIdentity request",
    );
    let session =
        lab.issue_role_credentials("aws-workload", "app", std::time::Duration::from_secs(3600));
    println!("  the workload runs as a session of role aws-workload (e.g. on EC2, ECS or EKS)");
    let subject_token = build_subject_token(
        &session,
        &"us-east-1".parse().unwrap(),
        &audience,
        std::time::SystemTime::now(),
    )?;
    let decoded = percent_encoding::percent_decode_str(subject_token.secret().expose())
        .decode_utf8_lossy()
        .into_owned();
    let request: serde_json::Value = serde_json::from_str(&decoded)?;
    println!(
        "  {} {}",
        request["method"].as_str().unwrap_or_default(),
        request["url"].as_str().unwrap_or_default()
    );
    for header in request["headers"].as_array().into_iter().flatten() {
        let key = header["key"].as_str().unwrap_or_default();
        let value = header["value"].as_str().unwrap_or_default();
        let shown = match key {
            "Authorization" => {
                value
                    .split(", Signature=")
                    .next()
                    .unwrap_or_default()
                    .to_string()
                    + ", Signature=…"
            }
            "x-amz-security-token" => "…".to_string(),
            _ => value.to_string(),
        };
        println!("  {key}: {shown}");
    }
    println!(
        "  (x-goog-cloud-target-resource is signed: the proof is good for this provider only)"
    );

    step(
        7,
        "Google STS verifies the signature and the provider's attribute condition",
    );
    let provider = lab
        .config()
        .workload_identity_pools
        .first()
        .and_then(|p| p.providers.first())
        .context("the demo provider is missing")?;
    println!("  provider {audience}");
    if let Some(condition) = &provider.attribute_condition {
        println!("  attribute condition: {condition}");
    }
    println!("  attribute.aws_role is the assumed-role ARN without the session name");
    let exchange = TokenExchange {
        audience: audience.clone(),
        scopes: vec![CLOUD_PLATFORM_SCOPE.to_string()],
        subject_token,
    };
    let federated = exchange_subject_token(
        http,
        &lab.google_sts_url(),
        &exchange,
        "aws-workload/app",
        &retry,
    )
    .await?;
    println!("  → a federated token for principal://…/subject/arn:aws:sts::{}:assumed-role/aws-workload/app", lab.account_id());

    step(
        8,
        "IAM Credentials: the federated principal impersonates copycat@",
    );
    println!("  copycat@ grants roles/iam.workloadIdentityUser to principalSet://…/attribute.aws_role/arn:aws:sts::{}:assumed-role/aws-workload", lab.account_id());
    let impersonation = Impersonation {
        service_account: COPYCAT.to_string(),
        scopes: vec![CLOUD_PLATFORM_SCOPE.to_string()],
        lifetime: None,
        delegates: Vec::new(),
    };
    let token = generate_access_token(
        http,
        &lab.google_apis_url(),
        &federated.access_token,
        &impersonation,
        "the federated principal",
    )
    .await?;
    println!(
        "  access token for {COPYCAT}: {} (expires {})",
        token.access_token,
        format_expiration(token.expires_at)
    );

    step(9, "A Google API call with that token");
    let response = http
        .get(format!(
            "{}/storage/v1/b?project=keyless-lab",
            lab.google_apis_url()
        ))
        .bearer_auth(token.access_token.expose())
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let buckets: Vec<&str> = body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str())
        .collect();
    println!("  GET storage/v1/b?project=keyless-lab → {status}: buckets {buckets:?}");
    anyhow::ensure!(
        status.is_success(),
        "the storage stand-in refused the token"
    );

    step(
        10,
        "The IAM user's own keys are refused: the condition admits only the role",
    );
    let user = lab.aws_user_credentials("ci-user");
    let exchange = TokenExchange {
        audience: audience.clone(),
        scopes: vec![CLOUD_PLATFORM_SCOPE.to_string()],
        subject_token: build_subject_token(
            &user,
            &"us-east-1".parse().unwrap(),
            &audience,
            std::time::SystemTime::now(),
        )?,
    };
    match exchange_subject_token(
        http,
        &lab.google_sts_url(),
        &exchange,
        "arn:aws:iam::123456789012:user/ci-user",
        &retry,
    )
    .await
    {
        Ok(_) => anyhow::bail!("the lab let a non-matching identity in; this is a bug"),
        Err(e) => println!(
            "  Google STS answered: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    }
    if let Some(why) = lab.last_denial() {
        println!("  why: {why}");
    }
    println!(
        "\nOn a real AWS workload: keyless gcp token --audience {audience} --service-account EMAIL"
    );
    Ok(())
}

/// AssumeRoleWithWebIdentity with a token the demo already holds.
async fn exchange_token(
    http: &reqwest::Client,
    endpoint: &StsEndpoint,
    request: &WebIdentityRequest,
    token: &IdToken,
) -> Result<crate::exchange::aws_sts::AssumedRole, ExchangeError> {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let context = crate::audit::AuditContext::new(None, "demo");
    let audit = crate::audit::Exchange {
        context: &context,
        source_kind: "metadata".into(),
        target: crate::audit::AuditTarget::aws(request.role_arn.to_string()),
        requested_duration_secs: request.duration_seconds.map(u64::from),
        started: std::time::Instant::now(),
    };
    let retry = RetryPolicy::default();
    let exchange = exchange_web_identity(
        http,
        endpoint,
        request,
        &retry,
        &host,
        "the demo's token",
        || {
            let t = token.clone();
            async move { Ok(t) }
        },
    );
    audit
        .run(
            exchange,
            |role| {
                role.credentials
                    .expiration
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            },
            ExchangeError::audit_word,
        )
        .await
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
    let claims = token.claims().to_json_map();
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
