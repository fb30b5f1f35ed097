//! `keyless doctor`: say exactly why a federation fails.
//!
//! AWS answers a refused `AssumeRoleWithWebIdentity` with "Not authorized" and nothing else;
//! Google STS names the rule but not the value. The doctor shows what each side compares — the
//! token's claims and the condition keys they become, the ARN and the attributes Google derives
//! — evaluates the trust policy with the same evaluator the lab and the linter use, then tries
//! the real exchange and gives a verdict naming the failing condition or step.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::aws::{profile_from_args as aws_profile_from_args, RoleArgs};
use crate::cli::exit_code;
use crate::cli::gcp::{profile_from_args as gcp_profile_from_args, TokenRequestArgs};
use crate::credentials::format_expiration;
use crate::exchange::aws_sts::{fetch_caller_identity, StsEndpoint};
use crate::policy::evaluate::Decision;
use crate::policy::google::GOOGLE_PROVIDER;
use crate::policy::issuer::{IdTokenClaims, Issuer};
use crate::policy::model::Principal;
use crate::policy::{self, PolicyDocument, Request, RequestPrincipal};
use crate::refresh::gcp_token::GcpSubject;

/// The `doctor` subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum DoctorCommand {
    /// Any token → AWS: why can't this identity (Google, Kubernetes, GitHub Actions, AWS
    /// outbound, any OIDC issuer) assume the role?
    #[command(
        after_help = "Example:\n  keyless doctor aws --role-arn arn:aws:iam::123456789012:role/DeploymentRole --trust-policy trust.json"
    )]
    Aws(DoctorAwsArgs),
    /// AWS → GCP: why can't this AWS identity get a Google token?
    #[command(
        after_help = "Example:\n  keyless doctor gcp --audience //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws \\\n    --service-account deployer@my-project.iam.gserviceaccount.com"
    )]
    Gcp(DoctorGcpArgs),
}

// `keyless doctor aws`.
#[derive(Debug, Args)]
pub struct DoctorAwsArgs {
    #[command(flatten)]
    pub role: RoleArgs,

    /// The role's trust policy (as IAM shows it, or `aws iam get-role` output) to evaluate
    /// statement by statement; without it, read with iam:GetRole when AWS credentials are in
    /// the environment (`AWS_ENDPOINT_URL_IAM` honoured).
    #[arg(long, env = "KEYLESS_TRUST_POLICY")]
    pub trust_policy: Option<PathBuf>,
}

// `keyless doctor gcp`.
#[derive(Debug, Args)]
pub struct DoctorGcpArgs {
    #[command(flatten)]
    pub request: TokenRequestArgs,
}

/// Runs a `doctor` subcommand; exits like the command it diagnoses would.
pub async fn run(command: DoctorCommand) -> anyhow::Result<i32> {
    let http = crate::wire::http::build().context("could not start the HTTP client")?;
    match command {
        DoctorCommand::Aws(args) => doctor_aws(&http, args).await,
        DoctorCommand::Gcp(args) => doctor_gcp(&http, args).await,
    }
}

async fn doctor_aws(http: &reqwest::Client, args: DoctorAwsArgs) -> anyhow::Result<i32> {
    let mut profile = aws_profile_from_args(&args.role)?;
    profile.retry.max_attempts = 1;
    println!("role:          {}", profile.request.role_arn);
    println!("token source:  {}", profile.token_source.describe());
    println!("audience:      {}", profile.audience);
    println!("STS endpoint:  {}", profile.endpoint.url);

    println!("\n1. the ID token (the token itself is never shown)");
    let token = match profile
        .token_source
        .fetch_for(http, &profile.audience)
        .await
    {
        Ok(token) => token,
        Err(e) => {
            println!("   ✗ could not get a token: {e}");
            println!("\nverdict: the token source fails before AWS is asked.");
            return Ok(exit_code::FAILURE);
        }
    };
    let claims = token.claims();
    println!("   {}", claims.summary());
    println!("   expires {}", format_expiration(claims.expires_at()));
    let context = claims.condition_context();
    let principal = claims
        .issuer()
        .federated_principal(profile.request.role_arn.account());
    println!("   AWS condition keys this token gives (principal {principal}):");
    for (key, values) in context.iter() {
        let source = context.source(key).unwrap_or("the token");
        println!("     {key} = {} ({source})", values.join(", "));
    }
    if let Some(shape) = claims.issuer().subject_hint(&claims.sub) {
        println!("   {shape}");
    }

    let mut policy_verdict = None;
    let mut notes = Vec::new();
    println!("\n2. the trust policy");
    let text = match &args.trust_policy {
        Some(path) => Some(
            crate::private_file::read_capped(path, crate::private_file::MAX_SMALL_FILE_BYTES)
                .with_context(|| format!("could not read {}", path.display()))?,
        ),
        None => match crate::cli::aws::credentials_from_env() {
            Ok(credentials) => {
                let endpoint = crate::exchange::aws_iam::iam_endpoint();
                match crate::exchange::aws_iam::fetch_trust_policy(
                    http,
                    &endpoint,
                    &credentials,
                    &profile.request.role_arn,
                )
                .await
                {
                    Ok(text) => {
                        println!("   (read with iam:GetRole at {endpoint})");
                        Some(text)
                    }
                    Err(e) => {
                        println!("   (iam:GetRole failed: {e}; pass --trust-policy FILE)");
                        None
                    }
                }
            }
            Err(_) => {
                println!(
                    "   (not given and no AWS credentials in the environment to read it with iam:GetRole:\n    pass --trust-policy FILE, e.g. from `aws iam get-role --role-name {}`)",
                    profile.request.role_arn.name()
                );
                None
            }
        },
    };
    if let Some(text) = text {
        let document = parse_trust_policy(&text).context("not a trust policy")?;
        let decision = policy::evaluate(
            &document,
            &Request {
                principal: RequestPrincipal::Federated(principal.clone()),
                action: "sts:AssumeRoleWithWebIdentity",
                context: &context,
            },
        );
        let mark = if decision.is_allowed() { "✓" } else { "✗" };
        println!("   {mark} {}", decision.explain());
        notes = issuer_notes(claims, &document, &principal, &decision);
        policy_verdict = Some(decision);
    }

    println!("\n3. the exchange (AssumeRoleWithWebIdentity, no cache)");
    let outcome = profile.fetch(http).await;
    match &outcome {
        Ok(role) => println!("   ✓ assumed {}", role.assumed_role_arn),
        Err(e) => println!("   ✗ {}", e.to_string().lines().next().unwrap_or_default()),
    }

    println!();
    Ok(match (outcome, policy_verdict) {
        (Ok(_), policy) => {
            println!("verdict: the federation works.");
            if policy.is_some_and(|d| !d.is_allowed()) {
                println!("note: the trust policy given would refuse this token, so the role's policy in AWS is not that one");
            }
            0
        }
        (Err(_), Some(decision)) if !decision.is_allowed() => {
            println!(
                "verdict: the trust policy refuses this token: {}",
                decision.explain()
            );
            for note in &notes {
                println!("  hint: {note}");
            }
            exit_code::REFUSED
        }
        (Err(e), Some(_)) if e.is_refusal() => {
            println!("verdict: AWS refused although the given trust policy allows this token: the role's policy in AWS is not the one given, or the role or its OIDC provider differ ({e})");
            exit_code::REFUSED
        }
        (Err(e), _) => {
            println!("verdict: {e}");
            crate::cli::exit_code_for(&anyhow::Error::new(e))
        }
    })
}

/// What the token's issuer means for a refusal: a principal the policy does not trust, a
/// condition key of another issuer, and the shape this issuer gives `sub` and `aud`.
fn issuer_notes(
    claims: &IdTokenClaims,
    document: &PolicyDocument,
    principal: &str,
    decision: &Decision,
) -> Vec<String> {
    let Decision::DeniedImplicitly { failures, .. } = decision else {
        return Vec::new();
    };
    let issuer = claims.issuer();
    let prefix = match &issuer {
        Issuer::Google => GOOGLE_PROVIDER.to_string(),
        Issuer::Oidc { provider } => provider.clone(),
    };
    let mut notes = Vec::new();
    if failures.is_empty() {
        let trusted: Vec<&str> = document
            .statements
            .iter()
            .filter_map(|st| match &st.principal {
                Some(Principal::Listed { federated, .. }) => Some(federated),
                _ => None,
            })
            .flatten()
            .map(String::as_str)
            .collect();
        if !trusted.is_empty() && !trusted.iter().any(|p| p.eq_ignore_ascii_case(principal)) {
            notes.push(format!(
                "the trust policy trusts {} but this token's issuer {} is the principal {principal}: \
                 trust that principal (the account needs an IAM OIDC provider for the issuer), or use a token of a trusted issuer",
                trusted.join(", "),
                claims.iss
            ));
        }
        return notes;
    }
    let github = prefix.eq_ignore_ascii_case("token.actions.githubusercontent.com");
    let kubernetes = claims.sub.starts_with("system:serviceaccount:");
    let outbound = prefix.ends_with(".tokens.sts.global.api.aws");
    let mut seen = Vec::new();
    for failure in failures {
        let Some((key_prefix, claim)) = failure.key.rsplit_once(':') else {
            continue;
        };
        let claim = claim.to_ascii_lowercase();
        if !key_prefix.eq_ignore_ascii_case(&prefix) {
            let note = format!(
                "{} is a condition key of the issuer {key_prefix}, but this token comes from {}: its keys are {prefix}:aud and {prefix}:sub",
                failure.key, claims.iss
            );
            if !seen.contains(&note) {
                seen.push(note.clone());
                notes.push(note);
            }
            continue;
        }
        let note = match claim.as_str() {
            "sub" if github => Some(format!(
                "GitHub's sub is repo:ORG/REPO:ref:REF for a job without an environment, repo:ORG/REPO:environment:NAME \
                 for a job that uses one and repo:ORG/REPO:pull_request for a pull request; this job's is {}",
                claims.sub
            )),
            "sub" if kubernetes => {
                let parts: Vec<&str> = claims.sub.splitn(4, ':').collect();
                Some(format!(
                    "a Kubernetes token's sub is system:serviceaccount:NAMESPACE:NAME of the pod's service account; \
                     this one is namespace {}, service account {}",
                    parts.get(2).unwrap_or(&"?"),
                    parts.get(3).unwrap_or(&"?")
                ))
            }
            "sub" if outbound => Some(format!(
                "an AWS outbound token's sub is the calling role's ARN (with its path), not the session's: this one is {}",
                claims.sub
            )),
            "aud" if kubernetes => Some(format!(
                "a projected service-account token's audience is set by the pod's volume \
                 (serviceAccountToken.audience), not by keyless: mount one with the audience the policy expects; this one has {}",
                claims.aud
            )),
            "aud" if !matches!(issuer, Issuer::Google) => Some(format!(
                "keyless asks the issuer for the token's audience (--audience, or --token-audience); this token has {}",
                claims.aud
            )),
            _ => None,
        };
        if let Some(note) = note {
            if !seen.contains(&note) {
                seen.push(note.clone());
                notes.push(note);
            }
        }
    }
    notes
}

/// A trust policy as IAM shows it, or inside `aws iam get-role` output.
fn parse_trust_policy(text: &str) -> anyhow::Result<PolicyDocument> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let document = match value.pointer("/Role/AssumeRolePolicyDocument") {
        Some(serde_json::Value::String(encoded)) => {
            let decoded = percent_encoding::percent_decode_str(encoded).decode_utf8()?;
            serde_json::from_str(&decoded)?
        }
        Some(doc) => doc.clone(),
        None => value,
    };
    Ok(PolicyDocument::from_value(&document)?)
}

async fn doctor_gcp(http: &reqwest::Client, args: DoctorGcpArgs) -> anyhow::Result<i32> {
    let mut profile = gcp_profile_from_args(&args.request).await?;
    profile.retry.max_attempts = 1;
    println!("provider:      {}", profile.audience);
    let aws = match &profile.subject {
        GcpSubject::Aws(aws) => aws,
        GcpSubject::Jwt { source, audience } => {
            println!("token source:  {}", source.describe());
            println!("token URL:     {}", profile.token_url);
            println!("\n1. the token from {}", source.describe());
            let token = match source.fetch_for(http, audience).await {
                Ok(token) => token,
                Err(e) => {
                    println!("   ✗ {e}");
                    println!("\nverdict: no token; Google is never asked.");
                    return Ok(crate::cli::exit_code_for(&anyhow::Error::new(e)));
                }
            };
            let claims = token.claims();
            println!("   ✓ {}", claims.summary());
            println!(
                "   the provider must name {} as its issuer and accept the audience {}",
                claims.iss, claims.aud
            );
            let mapped = policy::issuer::google_sts::AttributeMapping::oidc_default().apply(
                &policy::issuer::google_sts::assertion_variables(&token.claims().to_json_map()),
            );
            match mapped {
                Ok(identity) => println!(
                    "   with the default mapping Google derives google.subject = {}",
                    identity.subject
                ),
                Err(e) => println!("   ✗ with the default mapping: {e}"),
            }
            return doctor_gcp_exchange(http, &profile).await;
        }
    };
    println!("AWS identity:  {}", aws.describe());
    println!("token URL:     {}", profile.token_url);

    println!("\n1. the AWS identity");
    let credentials = match aws.fetch_credentials().await {
        Ok(c) => c,
        Err(e) => {
            println!("   ✗ {e}");
            println!("\nverdict: no AWS identity; Google is never asked.");
            return Ok(exit_code::USAGE);
        }
    };
    let endpoint = StsEndpoint::resolve(None, Some(aws.region()))?;
    match fetch_caller_identity(http, &endpoint, &credentials).await {
        Ok(identity) => {
            println!("   ✓ {} (account {})", identity.arn, identity.account);
            let mapped =
                policy::workload_identity::aws_default_mapping(&identity.arn, &identity.account);
            println!("   with the AWS provider's default mapping Google derives:");
            println!("     google.subject = {}", mapped.subject);
            for (name, value) in &mapped.attributes {
                println!("     attribute.{name} = {value}");
            }
        }
        Err(e) => println!("   ? GetCallerIdentity failed, so the ARN is unknown: {e}"),
    }
    println!(
        "   the subject token is signed for sts.{}.amazonaws.com and bound to the provider above",
        aws.region()
    );
    doctor_gcp_exchange(http, &profile).await
}

/// Steps 2 and 3 of `doctor gcp`: Google STS, then the impersonation.
async fn doctor_gcp_exchange(
    http: &reqwest::Client,
    profile: &crate::refresh::GcpTokenProfile,
) -> anyhow::Result<i32> {
    println!("\n2. Google STS");
    let federated = match profile.fetch_federated(http).await {
        Ok((token, _)) => {
            println!(
                "   ✓ a federated token, valid until {}",
                format_expiration(token.expires_at)
            );
            token
        }
        Err(e) => {
            println!("   ✗ {e}");
            println!("\nverdict: Google STS refuses this identity (see the hint above).");
            return Ok(crate::cli::exit_code_for(&anyhow::Error::new(e)));
        }
    };
    let Some(impersonation) = &profile.impersonation else {
        println!("\nverdict: the federation works (no --service-account to impersonate).");
        return Ok(0);
    };
    println!("\n3. impersonating {}", impersonation.service_account);
    match crate::exchange::google_iam::generate_access_token(
        http,
        profile.iamcredentials_url.as_str(),
        &federated.access_token,
        impersonation,
        "the federated principal",
    )
    .await
    {
        Ok(token) => {
            println!(
                "   ✓ an access token, valid until {}",
                format_expiration(token.expires_at)
            );
            println!("\nverdict: the federation works.");
            Ok(0)
        }
        Err(e) => {
            println!("   ✗ {e}");
            println!(
                "\nverdict: the federated principal may not impersonate {}.",
                impersonation.service_account
            );
            Ok(if e.is_transient() {
                exit_code::UNAVAILABLE
            } else {
                exit_code::REFUSED
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::evaluate::{evaluate, Request, RequestPrincipal};
    use serde_json::json;

    fn notes_for(claims: serde_json::Value, policy: serde_json::Value) -> Vec<String> {
        let claims: IdTokenClaims = serde_json::from_value(claims).unwrap();
        let document = PolicyDocument::from_value(&policy).unwrap();
        let principal = claims.issuer().federated_principal("123456789012");
        let context = claims.condition_context();
        let decision = evaluate(
            &document,
            &Request {
                principal: RequestPrincipal::Federated(principal.clone()),
                action: "sts:AssumeRoleWithWebIdentity",
                context: &context,
            },
        );
        issuer_notes(&claims, &document, &principal, &decision)
    }

    fn trust(host: &str, condition: serde_json::Value) -> serde_json::Value {
        json!({"Statement": [{"Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::123456789012:oidc-provider/{host}")},
            "Action": "sts:AssumeRoleWithWebIdentity", "Condition": {"StringEquals": condition}}]})
    }

    #[test]
    fn each_issuer_explains_its_sub_and_foreign_keys_are_named() {
        let gh = "token.actions.githubusercontent.com";
        let notes = notes_for(
            json!({"iss": format!("https://{gh}"), "aud": "sts.amazonaws.com",
                   "sub": "repo:my-org/app:environment:production", "exp": 1}),
            trust(
                gh,
                json!({format!("{gh}:sub"): "repo:my-org/app:ref:refs/heads/main"}),
            ),
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("repo:ORG/REPO:environment:NAME"),
            "{}",
            notes[0]
        );
        assert!(
            notes[0].ends_with("repo:my-org/app:environment:production"),
            "{}",
            notes[0]
        );

        let aws = "abc.tokens.sts.global.api.aws";
        let notes = notes_for(
            json!({"iss": format!("https://{aws}"), "aud": "sts.amazonaws.com",
                   "sub": "arn:aws:iam::111111111111:role/app", "exp": 1}),
            trust(
                aws,
                json!({format!("{aws}:sub"): "arn:aws:sts::111111111111:assumed-role/app/s", format!("{gh}:aud"): "x"}),
            ),
        );
        assert!(
            notes.iter().any(|n| n.contains("the calling role's ARN")),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n
                .contains(&format!("{gh}:aud is a condition key of the issuer {gh}"))
                && n.contains(&format!("its keys are {aws}:aud and {aws}:sub"))),
            "{notes:?}"
        );
    }
}
