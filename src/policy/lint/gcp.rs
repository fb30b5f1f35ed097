//! Rules for the Google side of AWS→GCP (and OIDC→GCP) federation: workload identity providers
//! (KL101–KL103) and the IAM bindings that let pool identities impersonate a service account
//! (KL201–KL204).
//!
//! As for trust policies, the broad-condition rule proves its point with a stranger: a different
//! role of the same AWS account, mapped with the provider's default mapping and run through the
//! same CEL evaluator the lab uses; and a binding is judged with the same `member_matches` that
//! decides whether the lab lets an identity impersonate.

use serde_json::{Map, Value};

use super::{Draft, JsonPath, Severity};
use crate::policy::cel::CelExpression;
use crate::policy::workload_identity::{aws_default_mapping, member_matches};

/// Roles that let a member obtain the service account's tokens.
const IMPERSONATION_ROLES: &[&str] = &[
    "roles/iam.workloadIdentityUser",
    "roles/iam.serviceAccountTokenCreator",
];
/// The AWS provider's default attribute mapping keys; with only these, keyless can compute
/// exactly what a caller becomes.
const AWS_DEFAULT_MAPPING_KEYS: &[&str] = &[
    "google.subject",
    "attribute.aws_role",
    "attribute.aws_account",
];

/// A provider description has a provider name or one of the provider-type blocks.
pub(super) fn is_provider(obj: &Map<String, Value>) -> bool {
    let named = obj
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.contains("/workloadIdentityPools/") && n.contains("/providers/"));
    named
        || ["aws", "oidc", "saml", "attributeMapping"]
            .iter()
            .any(|k| obj.contains_key(*k))
}

/// `get-iam-policy` prints `bindings` (absent when empty: then only `etag`).
pub(super) fn is_iam_policy(obj: &Map<String, Value>) -> bool {
    obj.contains_key("bindings")
        || (obj.contains_key("etag")
            && obj
                .keys()
                .all(|k| matches!(k.as_str(), "etag" | "version" | "auditConfigs")))
}

enum ProviderKind {
    Aws { account: String },
    Oidc { issuer: String },
    Other,
}

/// `projects/N/locations/global/workloadIdentityPools/POOL/providers/P` → (POOL, P).
fn pool_and_provider(obj: &Map<String, Value>) -> (String, String) {
    let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
    let parts: Vec<&str> = name.split('/').collect();
    let find = |label: &str| {
        parts
            .iter()
            .position(|p| *p == label)
            .and_then(|i| parts.get(i + 1))
            .map(|s| s.to_string())
    };
    (
        find("workloadIdentityPools").unwrap_or_else(|| "POOL".into()),
        find("providers").unwrap_or_else(|| "PROVIDER".into()),
    )
}

pub(super) fn lint_provider(obj: &Map<String, Value>, at: &JsonPath, out: &mut Vec<Draft>) {
    let kind = if let Some(aws) = obj.get("aws") {
        ProviderKind::Aws {
            account: aws
                .get("accountId")
                .and_then(Value::as_str)
                .unwrap_or("ACCOUNT")
                .to_string(),
        }
    } else if let Some(oidc) = obj.get("oidc") {
        ProviderKind::Oidc {
            issuer: oidc
                .get("issuerUri")
                .and_then(Value::as_str)
                .unwrap_or("the issuer")
                .to_string(),
        }
    } else {
        ProviderKind::Other
    };
    let (pool, provider) = pool_and_provider(obj);
    let (example, command) = match &kind {
        ProviderKind::Aws { account } => (
            format!("attribute.aws_role == 'arn:aws:sts::{account}:assumed-role/ROLE'"),
            "update-aws",
        ),
        ProviderKind::Oidc { issuer } => (
            format!(
                "assertion.sub == '{}'",
                OidcIssuerKind::of(issuer).subject_example()
            ),
            "update-oidc",
        ),
        ProviderKind::Other => (
            "google.subject == 'EXACT_SUBJECT'".to_string(),
            "update-saml",
        ),
    };
    let fix = format!("gcloud iam workload-identity-pools providers {command} {provider} --location=global --workload-identity-pool={pool} --attribute-condition=\"{example}\"");
    let condition_at = at.key("attributeCondition");
    let condition = obj
        .get("attributeCondition")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if let ProviderKind::Oidc { issuer } = &kind {
        check_subject_length(obj, issuer, condition, at, out);
    }
    let Some(condition) = condition else {
        let who = match &kind {
            ProviderKind::Aws { account } => {
                format!("every role, user and session of AWS account {account}")
            }
            ProviderKind::Oidc { issuer } => OidcIssuerKind::of(issuer).everyone(issuer),
            ProviderKind::Other => "every identity the provider accepts".to_string(),
        };
        out.push(
            Draft::new("KL101", condition_at)
                .message(format!("the provider has no attributeCondition: {who} is admitted into pool {pool}"))
                .why("everything the provider admits becomes a principal of the pool; one binding on principalSet://.../* or an attribute they share (aws_account, repository_owner) then hands them your service account or resources")
                .fix(fix),
        );
        return;
    };
    let expression = match CelExpression::parse(condition) {
        Ok(e) => e,
        Err(error) => {
            out.push(
                Draft::new("KL103", condition_at)
                    // The error's own hint is the rule's fix; keep the message to one line.
                    .message(format!(
                        "keyless could not check the attributeCondition: {}",
                        error.to_string().lines().next().unwrap_or_default()
                    ))
                    .why("a condition keyless cannot evaluate is a condition `keyless lint` and `keyless doctor` cannot vouch for; Google may accept it, or reject every token")
                    .fix("simplify it to ==, !=, &&, ||, in [..], startsWith/endsWith/contains over attribute.*, assertion.* and google.subject, or check it in Google Cloud"),
            );
            return;
        }
    };
    let references = expression.references();
    let broad = match &kind {
        ProviderKind::Aws { account } if default_aws_mapping(obj) => {
            // A different role of the same account: the provider only ever sees that account.
            let stranger = aws_default_mapping(
                &format!("arn:aws:sts::{account}:assumed-role/keyless-lint-stranger/session"),
                account,
            );
            match expression.evaluate(&stranger.cel_variables(account)) {
                Ok(true) => Some((
                    format!("it admits any role of AWS account {account}"),
                    format!(" keyless evaluated it for arn:aws:sts::{account}:assumed-role/keyless-lint-stranger/session (another role of the account) and it was true."),
                )),
                _ => None,
            }
        }
        _ => {
            let identifying = references.iter().any(|r| {
                !matches!(
                    r.as_str(),
                    "assertion.aud"
                        | "assertion.iss"
                        | "assertion.account"
                        | "attribute.aws_account"
                )
            });
            (!identifying).then(|| {
                let reason = if references.is_empty() {
                    "it references no attribute at all, so it is the same for every caller"
                        .to_string()
                } else {
                    format!(
                        "it only references {}, which every caller of the provider shares",
                        references.join(", ")
                    )
                };
                (reason, String::new())
            })
        }
    };
    if let Some((reason, proof)) = broad {
        out.push(
            Draft::new("KL102", condition_at)
                .message(format!("the attributeCondition `{condition}` does not restrict who the caller is: {reason}"))
                .why(format!("the condition is the provider's only say in who enters the pool; one that every identity of the account or issuer passes is no condition.{proof}"))
                .fix(fix),
        );
    }
}

/// What an OIDC provider's issuer is, for its examples and the bounds of its claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OidcIssuerKind {
    Github,
    Kubernetes,
    AwsOutbound,
    Other,
}

impl OidcIssuerKind {
    fn of(issuer: &str) -> Self {
        let host = issuer
            .trim()
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if host == "token.actions.githubusercontent.com" {
            Self::Github
        } else if host.ends_with(".tokens.sts.global.api.aws") {
            Self::AwsOutbound
        } else if (host.starts_with("oidc.eks.") && host.contains(".amazonaws.com/id/"))
            || host.starts_with("container.googleapis.com/v1/projects/")
            || host.contains(".oic.prod-aks.azure.com")
        {
            Self::Kubernetes
        } else {
            Self::Other
        }
    }

    fn subject_example(self) -> &'static str {
        match self {
            Self::Github => "repo:ORG/REPO:ref:refs/heads/main",
            Self::Kubernetes => "system:serviceaccount:NAMESPACE:NAME",
            Self::AwsOutbound => "arn:aws:iam::ACCOUNT:role/ROLE",
            Self::Other => "EXACT_SUBJECT",
        }
    }

    fn everyone(self, issuer: &str) -> String {
        match self {
            Self::Github => {
                "every GitHub Actions workflow of every repository on GitHub".to_string()
            }
            Self::Kubernetes => {
                format!("every service account of every namespace of the cluster {issuer}")
            }
            Self::AwsOutbound => {
                format!("every role and user of the AWS account whose outbound issuer is {issuer}")
            }
            Self::Other => {
                format!("every subject {issuer} issues tokens to (with an allowed audience)")
            }
        }
    }

    /// The longest value a claim can have, when known: OpenID Connect caps `sub` at 255 ASCII
    /// characters; GitHub documents its claims' shapes.
    fn claim_bound(self, claim: &str) -> Option<usize> {
        match (self, claim) {
            (
                Self::Github,
                "repository_id"
                | "repository_owner_id"
                | "actor_id"
                | "run_id"
                | "run_number"
                | "run_attempt",
            ) => Some(20),
            (Self::Github, "repository_owner" | "actor") => Some(39),
            (Self::Github, "repository") => Some(140),
            (
                Self::Github,
                "ref" | "environment" | "job_workflow_ref" | "workflow_ref" | "head_ref"
                | "base_ref",
            ) => Some(255),
            (Self::AwsOutbound, "sub") => Some(607), // arn:aws:iam::ACCOUNT:role/ + path + name
            (Self::Kubernetes, "sub") => Some(338),  // system:serviceaccount: + 63 + : + 253
            (_, "sub") => Some(255),
            _ => None,
        }
    }
}

/// Google refuses a federated token whose `google.subject` is longer than this (bytes).
const MAX_GOOGLE_SUBJECT_BYTES: usize = 127;

/// The exact values the condition requires, by `assertion.CLAIM` (or `google.subject`), when it
/// is a conjunction of equalities (`&&` only).
fn pinned_values(condition: Option<&str>) -> Vec<(String, usize)> {
    let Some(condition) = condition else {
        return Vec::new();
    };
    if condition.contains("||") {
        return Vec::new();
    }
    let literal = |s: &str| {
        let s = s.trim();
        let quoted =
            (s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"'));
        (quoted && s.len() >= 2).then(|| s.len() - 2)
    };
    condition
        .split("&&")
        .filter_map(|part| {
            let part = part.trim().trim_start_matches('(').trim_end_matches(')');
            let (left, right) = part.split_once("==")?;
            let (name, len) = match (literal(left), literal(right)) {
                (None, Some(len)) => (left.trim(), len),
                (Some(len), None) => (right.trim(), len),
                _ => return None,
            };
            Some((name.to_string(), len))
        })
        .collect()
}

/// KL104: the longest `google.subject` the mapping can produce for a token the provider admits.
fn check_subject_length(
    obj: &Map<String, Value>,
    issuer: &str,
    condition: Option<&str>,
    at: &JsonPath,
    out: &mut Vec<Draft>,
) {
    let Some(mapping) = obj
        .get("attributeMapping")
        .and_then(|m| m.get("google.subject"))
        .and_then(Value::as_str)
    else {
        return;
    };
    let kind = OidcIssuerKind::of(issuer);
    let pins = pinned_values(condition);
    let pinned = |name: &str| pins.iter().find(|(n, _)| n == name).map(|(_, len)| *len);
    if pinned("google.subject").is_some_and(|len| len <= MAX_GOOGLE_SUBJECT_BYTES) {
        return;
    }
    // A sum of string literals and assertion.CLAIM; anything else is not bounded here.
    let mut total = 0usize;
    let mut long = Vec::new();
    for term in split_plus(mapping) {
        let term = term.trim();
        let bound = if (term.starts_with('\'') && term.ends_with('\'') && term.len() >= 2)
            || (term.starts_with('"') && term.ends_with('"') && term.len() >= 2)
        {
            Some(term.len() - 2)
        } else if let Some(claim) = term.strip_prefix("assertion.").filter(|c| {
            !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        }) {
            let bound = pinned(term).or_else(|| kind.claim_bound(claim));
            if bound.is_some_and(|b| b > MAX_GOOGLE_SUBJECT_BYTES / 2) && pinned(term).is_none() {
                long.push(term.to_string());
            }
            bound
        } else {
            None
        };
        let Some(bound) = bound else {
            return;
        };
        total += bound;
    }
    if total <= MAX_GOOGLE_SUBJECT_BYTES {
        return;
    }
    let example = match kind {
        OidcIssuerKind::Github => " or map it from bounded claims: assertion.repository_owner_id + '/' + assertion.repository_id".to_string(),
        _ => String::new(),
    };
    out.push(
        Draft::new("KL104", at.key("attributeMapping").key("google.subject"))
            .message(format!(
                "google.subject = `{mapping}` can be up to {total} bytes for tokens this provider admits ({} not pinned by the condition); Google STS refuses a google.subject over {MAX_GOOGLE_SUBJECT_BYTES} bytes",
                if long.is_empty() { "its claims".to_string() } else { long.join(", ") }
            ))
            .why("a workload whose subject is longer (a long repository, branch, environment, namespace or role path) is refused by Google STS with an error that does not say which claim was too long")
            .fix(format!(
                "pin the subject in the attributeCondition (assertion.sub == '{}'; keyless setup prints such providers){example}",
                kind.subject_example()
            )),
    );
}

/// The terms of `a + 'b' + c`, splitting on `+` outside string literals.
fn split_plus(expression: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut quote = None;
    let mut start = 0;
    for (i, ch) in expression.char_indices() {
        match (quote, ch) {
            (None, '\'' | '"') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            (None, '+') => {
                terms.push(&expression[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&expression[start..]);
    terms
}

/// True when the mapping is absent or only uses the default AWS keys with their default
/// meaning, so keyless's `aws_default_mapping` says exactly what a caller becomes.
fn default_aws_mapping(obj: &Map<String, Value>) -> bool {
    match obj.get("attributeMapping") {
        None => true,
        Some(Value::Object(m)) => m.iter().all(|(k, v)| {
            AWS_DEFAULT_MAPPING_KEYS.contains(&k.as_str())
                && match k.as_str() {
                    "google.subject" => v.as_str() == Some("assertion.arn"),
                    "attribute.aws_account" => v.as_str() == Some("assertion.account"),
                    _ => true, // aws_role's default is a long expression; any value extracts the role
                }
        }),
        Some(_) => false,
    }
}

pub(super) fn lint_iam_policy(obj: &Map<String, Value>, at: &JsonPath, out: &mut Vec<Draft>) {
    let Some(Value::Array(bindings)) = obj.get("bindings") else {
        return;
    };
    for (b, binding) in bindings.iter().enumerate() {
        let role = binding.get("role").and_then(Value::as_str).unwrap_or("");
        if !IMPERSONATION_ROLES.contains(&role) {
            continue;
        }
        let Some(Value::Array(members)) = binding.get("members") else {
            continue;
        };
        for (m, member) in members.iter().enumerate() {
            if let Some(member) = member.as_str() {
                check_member(
                    role,
                    member,
                    &at.key("bindings").index(b).key("members").index(m),
                    out,
                );
            }
        }
    }
}

fn check_member(role: &str, member: &str, at: &JsonPath, out: &mut Vec<Draft>) {
    if member == "allUsers" || member == "allAuthenticatedUsers" {
        out.push(
            Draft::new("KL203", at.clone())
                .message(format!("{role} is granted to {member}: anyone can get this service account's tokens"))
                .why("the role mints access and ID tokens of the service account; allUsers is everyone on the internet, allAuthenticatedUsers every Google account")
                .fix(format!("gcloud iam service-accounts remove-iam-policy-binding EMAIL --role={role} --member={member}")),
        );
        return;
    }
    let Some(rest) = member.strip_prefix("principalSet://") else {
        return;
    };
    // principalSet://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/...
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() < 7 || parts[5] != "workloadIdentityPools" {
        return;
    }
    let pool = format!("//{}", parts[..7].join("/"));
    let selector = parts[7..].join("/");
    // Someone from an unrelated AWS account: if the member admits them, it admits the pool.
    let outsider = aws_default_mapping(
        "arn:aws:sts::999999999999:assumed-role/keyless-lint-stranger/session",
        "999999999999",
    );
    let fix_member =
        format!("principalSet:{pool}/attribute.aws_role/arn:aws:sts::ACCOUNT:assumed-role/ROLE");
    if member_matches(member, &pool, &outsider.subject, &outsider.attributes) {
        out.push(
            Draft::new("KL201", at.clone())
                .message(format!("{role} is granted to the whole pool {}: every identity any of its providers admits can impersonate this service account", parts[6]))
                .why("the pool's providers admit every identity their conditions let through (every role of an AWS account, every subject of an issuer); adding a provider later widens this binding silently")
                .fix(format!("bind {fix_member} (or principal:{pool}/subject/SUBJECT) instead of {member}")),
        );
    } else if let Some(account) = selector.strip_prefix("attribute.aws_account/") {
        out.push(
            Draft::new("KL202", at.clone())
                .message(format!("{role} is granted to every identity of AWS account {account}"))
                .why("every role, user and session of the account (CI runners, developers, anything with sts:AssumeRole in it) can impersonate this service account")
                .fix(format!("bind {} instead", fix_member.replace("ACCOUNT", account))),
        );
    } else if let Some(role_arn) = selector.strip_prefix("attribute.aws_role/") {
        if let Some((head, name)) = role_arn.split_once(":role/") {
            let account = head.rsplit(':').next().unwrap_or("ACCOUNT");
            let name = name.rsplit('/').next().unwrap_or(name);
            out.push(
                Draft::new("KL204", at.clone())
                    .severity(Severity::Medium)
                    .message(format!("the binding names attribute.aws_role {role_arn}, an IAM role ARN, but a session of that role has aws_role arn:aws:sts::{account}:assumed-role/{name}"))
                    .why("the AWS provider maps aws_role to the assumed-role ARN without the session name; this binding never matches, so the workload is refused (and someone may 'fix' it with a broader binding)")
                    .fix(format!("bind principalSet:{pool}/attribute.aws_role/arn:aws:sts::{account}:assumed-role/{name}")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lint_text;
    use serde_json::json;

    const NAME: &str = "projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/providers/aws-lab";
    const POOL: &str = "principalSet://iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool";

    fn rules(value: serde_json::Value) -> Vec<(&'static str, String)> {
        lint_text("t.json", &value.to_string())
            .unwrap()
            .into_iter()
            .map(|f| (f.rule, f.severity.to_string()))
            .collect()
    }

    fn aws_provider(condition: Option<&str>) -> serde_json::Value {
        let mut v = json!({"name": NAME, "state": "ACTIVE", "aws": {"accountId": "123456789012"},
            "attributeMapping": {"google.subject": "assertion.arn", "attribute.aws_account": "assertion.account",
              "attribute.aws_role": "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"}});
        if let Some(c) = condition {
            v["attributeCondition"] = json!(c);
        }
        v
    }

    fn oidc_provider(issuer: &str, subject: &str, condition: Option<&str>) -> serde_json::Value {
        let mut v = json!({"name": NAME.replace("aws-lab", "oidc"), "state": "ACTIVE",
            "oidc": {"issuerUri": issuer}, "attributeMapping": {"google.subject": subject}});
        if let Some(c) = condition {
            v["attributeCondition"] = json!(c);
        }
        v
    }

    #[test]
    fn kl101_names_each_issuers_population_and_subject() {
        for (issuer, who, example) in [
            (
                "https://token.actions.githubusercontent.com",
                "every GitHub Actions workflow of every repository",
                "repo:ORG/REPO:ref:refs/heads/main",
            ),
            (
                "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
                "every service account of every namespace",
                "system:serviceaccount:NAMESPACE:NAME",
            ),
            (
                "https://abc.tokens.sts.global.api.aws",
                "every role and user of the AWS account",
                "arn:aws:iam::ACCOUNT:role/ROLE",
            ),
        ] {
            let f = lint_text(
                "t.json",
                &oidc_provider(issuer, "assertion.sub", None).to_string(),
            )
            .unwrap();
            let kl101 = f.iter().find(|f| f.rule == "KL101").expect(issuer);
            assert!(kl101.message.contains(who), "{}", kl101.message);
            assert!(
                kl101.fix.contains(&format!("assertion.sub == '{example}'")),
                "{}",
                kl101.fix
            );
            assert!(kl101.fix.contains("update-oidc"), "{}", kl101.fix);
        }
    }

    #[test]
    fn kl104_subject_mapping_that_can_exceed_127_bytes() {
        let gh = "https://token.actions.githubusercontent.com";
        let f = lint_text(
            "t.json",
            &oidc_provider(
                gh,
                "assertion.sub",
                Some("assertion.repository_owner == 'my-org'"),
            )
            .to_string(),
        )
        .unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].rule, f[0].severity.as_str()), ("KL104", "low"));
        assert_eq!(f[0].path, r#"attributeMapping."google.subject""#);
        assert!(f[0].message.contains("up to 255 bytes"), "{}", f[0].message);
        assert!(f[0].fix.contains("assertion.repository_id"), "{}", f[0].fix);
        // The condition pins sub: the admitted tokens' subject is that value.
        let pinned = oidc_provider(
            gh,
            "assertion.sub",
            Some("assertion.sub == 'repo:my-org/app:ref:refs/heads/main'"),
        );
        assert_eq!(rules(pinned), vec![]);
        // Bounded claims and literals add up.
        let bounded = oidc_provider(
            gh,
            "assertion.repository_owner_id + '/' + assertion.repository_id",
            Some("assertion.repository == 'my-org/app'"),
        );
        assert_eq!(rules(bounded), vec![]);
        let repo = oidc_provider(
            gh,
            "'github:' + assertion.repository",
            Some("assertion.repository_owner == 'my-org'"),
        );
        assert_eq!(rules(repo), vec![("KL104", "low".to_string())]);
        // Kubernetes and AWS subjects, and any issuer's sub (OpenID Connect allows 255).
        for issuer in [
            "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
            "https://abc.tokens.sts.global.api.aws",
            "https://idp.example.com",
        ] {
            let p = oidc_provider(
                issuer,
                "assertion.sub",
                Some("assertion.aud == 'x' && assertion.email == 'y'"),
            );
            assert!(rules(p).contains(&("KL104", "low".to_string())), "{issuer}");
        }
        // An expression keyless cannot bound is left alone.
        let other = oidc_provider(
            gh,
            "assertion.sub.extract('repo:{x}:')",
            Some("assertion.repository_owner == 'o'"),
        );
        assert_eq!(rules(other), vec![]);
    }

    #[test]
    fn kl101_provider_without_condition() {
        let f = lint_text("t.json", &aws_provider(None).to_string()).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].rule, f[0].path.as_str()),
            ("KL101", "attributeCondition")
        );
        assert!(
            f[0].message.contains("AWS account 123456789012"),
            "{}",
            f[0].message
        );
        assert!(
            f[0].fix.contains(
                "update-aws aws-lab --location=global --workload-identity-pool=keyless-pool"
            ),
            "{}",
            f[0].fix
        );
        let oidc = json!({"name": NAME, "oidc": {"issuerUri": "https://token.actions.githubusercontent.com"}});
        assert_eq!(rules(oidc), vec![("KL101", "high".into())]);
    }

    #[test]
    fn a_role_pinned_provider_is_clean() {
        let c = "attribute.aws_role == 'arn:aws:sts::123456789012:assumed-role/aws-workload'";
        assert_eq!(rules(aws_provider(Some(c))), vec![]);
    }

    #[test]
    fn kl102_account_wide_or_constant_conditions() {
        for c in [
            "attribute.aws_account == '123456789012'",
            "attribute.aws_role != 'arn:aws:sts::123456789012:assumed-role/blocked'",
            "google.subject.startsWith('arn:aws:sts::123456789012:')",
        ] {
            assert_eq!(
                rules(aws_provider(Some(c))),
                vec![("KL102", "medium".into())],
                "{c}"
            );
        }
        let f = lint_text(
            "t.json",
            &aws_provider(Some("attribute.aws_account == '123456789012'")).to_string(),
        )
        .unwrap();
        assert!(f[0].why.contains("assumed-role/keyless-lint-stranger/session (another role of the account) and it was true"), "{}", f[0].why);
        assert!(f[0].fix.contains("providers update-aws aws-lab --location=global --workload-identity-pool=keyless-pool --attribute-condition=\"attribute.aws_role == 'arn:aws:sts::123456789012:assumed-role/ROLE'\""), "{}", f[0].fix);
        let oidc = json!({"name": NAME, "oidc": {"issuerUri": "https://issuer"}, "attributeCondition": "assertion.aud == 'x'"});
        assert_eq!(rules(oidc), vec![("KL102", "medium".into())]);
        let oidc = json!({"name": NAME, "oidc": {"issuerUri": "https://issuer"}, "attributeCondition": "assertion.repository_owner == 'my-org'"});
        assert_eq!(rules(oidc), vec![]);
    }

    #[test]
    fn kl103_unsupported_cel_carries_the_error() {
        let f = lint_text(
            "t.json",
            &aws_provider(Some("size(attribute.aws_role) > 0")).to_string(),
        )
        .unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].rule, f[0].severity.as_str()), ("KL103", "low"));
        assert!(
            f[0].message
                .contains("the function size(), which keyless does not evaluate")
                && !f[0].message.contains('\n'),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn bindings_on_pools_accounts_and_the_public() {
        let policy = json!({"bindings": [
            {"role": "roles/iam.workloadIdentityUser", "members": [
                format!("{POOL}/*"),
                format!("{POOL}/attribute.aws_account/123456789012"),
                format!("{POOL}/attribute.aws_role/arn:aws:sts::123456789012:assumed-role/aws-workload"),
                format!("{POOL}/attribute.aws_role/arn:aws:iam::123456789012:role/aws-workload"),
            ]},
            {"role": "roles/iam.serviceAccountTokenCreator", "members": ["allAuthenticatedUsers"]},
            {"role": "roles/viewer", "members": ["allUsers"]}],
            "etag": "BwX"});
        let f = lint_text("t.json", &policy.to_string()).unwrap();
        let got: Vec<_> = f
            .iter()
            .map(|f| (f.rule, f.severity.as_str(), f.path.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("KL203", "critical", "bindings[1].members[0]"),
                ("KL201", "high", "bindings[0].members[0]"),
                ("KL202", "medium", "bindings[0].members[1]"),
                ("KL204", "medium", "bindings[0].members[3]"),
            ]
        );
        assert!(
            f[3].fix
                .contains("attribute.aws_role/arn:aws:sts::123456789012:assumed-role/aws-workload"),
            "{}",
            f[3].fix
        );
    }

    #[test]
    fn an_empty_iam_policy_is_clean() {
        assert_eq!(rules(json!({"etag": "ACAB"})), vec![]);
    }
}
