//! `keyless lint`: find trust configurations that let the wrong identity in, before an attacker
//! does.
//!
//! The dangerous mistakes in cross-cloud federation are few and well known (a Google principal
//! with no condition, an audience in the wrong condition key, a binding on a whole pool), yet
//! they are copy-pasted every day because the policies *work*: the intended workload gets in,
//! and nobody checks who else does. The linter checks exactly that, with the same model,
//! evaluator and Google key mapping as the lab and the doctor: where it can, a rule proves its
//! point by evaluating the policy for a stranger's token and showing it allowed.
//!
//! Inputs are recognised by shape, not by file name: an AWS role trust policy, the output of
//! `aws iam get-role` (the document possibly URL-encoded, as IAM's API returns it), a Google
//! workload identity provider description and a Google IAM policy (`get-iam-policy`), or a JSON
//! list of any of them (`gcloud ... list --format=json`); `aws iam list-roles` output lints every
//! role's trust policy at once, and `aws iam get-role-policy` output its identity policy (for
//! who may mint AWS outbound tokens, and for which audiences).

mod gcp;
mod path;
pub mod report;
mod trust;

use std::fmt;
use std::path::Path;

use serde_json::Value;

pub use path::JsonPath;

use super::model::PolicyError;

/// How bad a finding is; ordered, so `--fail-on high` also fails on critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth fixing; not exploitable by itself.
    Low,
    /// Widens who gets in, or makes a pin skippable.
    Medium,
    /// A stranger gets in under realistic conditions, or the configuration cannot work.
    High,
    /// Anyone gets in.
    Critical,
}

impl Severity {
    /// The lowercase name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// All severities, most severe first (the order of the summary line).
    pub const DESCENDING: [Severity; 4] = [Self::Critical, Self::High, Self::Medium, Self::Low];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lint rule: its id is a contract (users suppress and search by it), so ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, e.g. `KL001`.
    pub id: &'static str,
    /// A short CamelCase name (SARIF `name`).
    pub name: &'static str,
    /// The usual severity; a few rules raise or lower it per finding.
    pub severity: Severity,
    /// One line: what the rule finds.
    pub summary: &'static str,
    /// What to do about it, in general (each finding carries its concrete fix).
    pub help: &'static str,
}

/// Every rule, in id order.
pub const RULES: &[Rule] = &[
    Rule {
        id: "KL001",
        name: "FederatedPrincipalWithoutCondition",
        severity: Severity::Critical,
        summary: "a federated principal (Google or OIDC) is trusted with no condition: every identity of the issuer can assume the role",
        help: "add a Condition that pins the workload: for Google, StringEquals on accounts.google.com:sub and :aud (the service account's numeric unique id) and :oaud (the audience)",
    },
    Rule {
        id: "KL002",
        name: "IdentityNotPinned",
        severity: Severity::High,
        summary: "the conditions do not pin who the caller is (e.g. only accounts.google.com:oaud, which the caller chooses): a stranger's token is accepted",
        help: "pin the identity with StringEquals: accounts.google.com:sub and accounts.google.com:aud = the service account's numeric unique id (for OIDC: the sub claim)",
    },
    Rule {
        id: "KL003",
        name: "WildcardIdentityMatch",
        severity: Severity::High,
        summary: "StringLike (wildcards) on an identity key (sub, aud, email) admits more identities than intended",
        help: "use StringEquals with the exact values; list several values instead of a pattern",
    },
    Rule {
        id: "KL004",
        name: "GoogleKeyValueMismatch",
        severity: Severity::High,
        summary: "accounts.google.com:aud or :sub holds a value Google never puts there (aud is the token's azp, a numeric id): the condition never matches or matches the wrong thing",
        help: "put the audience in accounts.google.com:oaud and the service account's numeric unique id in accounts.google.com:aud and :sub",
    },
    Rule {
        id: "KL005",
        name: "AnyPrincipal",
        severity: Severity::Critical,
        summary: "an Allow statement trusts Principal \"*\", {\"AWS\": \"*\"} or uses NotPrincipal: anyone can assume the role",
        help: "name the principal explicitly, e.g. {\"Federated\": \"accounts.google.com\"} with conditions",
    },
    Rule {
        id: "KL006",
        name: "BroadFederatedAction",
        severity: Severity::Medium,
        summary: "a federated statement allows more than sts:AssumeRoleWithWebIdentity",
        help: "set \"Action\": \"sts:AssumeRoleWithWebIdentity\"",
    },
    Rule {
        id: "KL007",
        name: "SkippableIdentityCondition",
        severity: Severity::Medium,
        summary: "a negated operator, ...IfExists or ForAllValues on an identity key passes for tokens that do not carry the expected value",
        help: "use a positive, unqualified operator: StringEquals",
    },
    Rule {
        id: "KL008",
        name: "GoogleAudienceNotPinned",
        severity: Severity::Low,
        summary: "accounts.google.com:oaud is not pinned: a token the service account minted for any other audience is accepted too",
        help: "add StringEquals accounts.google.com:oaud with the audience keyless asks for (--audience, default sts.amazonaws.com), ideally one specific to the role",
    },
    Rule {
        id: "KL009",
        name: "GithubRepositoryNotPinned",
        severity: Severity::High,
        summary: "a GitHub Actions trust does not pin token.actions.githubusercontent.com:sub to one repository (no sub condition, or a pattern such as repo:ORG/* or *): every workflow of the organisation, or of GitHub, gets in",
        help: "StringEquals token.actions.githubusercontent.com:sub = repo:ORG/REPO:ref:refs/heads/BRANCH (or repo:ORG/REPO:environment:NAME), and :aud = sts.amazonaws.com",
    },
    Rule {
        id: "KL010",
        name: "KubernetesNamespaceNotPinned",
        severity: Severity::High,
        summary: "a Kubernetes (EKS, GKE, AKS, any cluster) trust does not pin HOST/PATH:sub to a namespace (no sub condition, or system:serviceaccount:*...): any service account of the cluster gets in",
        help: "StringEquals HOST/PATH:sub = system:serviceaccount:NAMESPACE:NAME, and HOST/PATH:aud = sts.amazonaws.com",
    },
    Rule {
        id: "KL011",
        name: "OutboundTokenAudienceNotLimited",
        severity: Severity::Medium,
        summary: "an identity policy allows sts:GetWebIdentityToken (AWS outbound identity federation) without ForAllValues:StringEquals on sts:IdentityTokenAudience: the principal can mint tokens for any audience",
        help: "add \"ForAllValues:StringEquals\": {\"sts:IdentityTokenAudience\": [\"<each audience>\"]} to the statement",
    },
    Rule {
        id: "KL101",
        name: "ProviderWithoutCondition",
        severity: Severity::High,
        summary: "a workload identity provider has no attributeCondition: every identity of the AWS account (or every subject of the OIDC issuer) is admitted into the pool",
        help: "set an attributeCondition that names the workload, e.g. attribute.aws_role == 'arn:aws:sts::ACCOUNT:assumed-role/ROLE'",
    },
    Rule {
        id: "KL102",
        name: "ProviderConditionTooBroad",
        severity: Severity::Medium,
        summary: "the provider's attributeCondition does not restrict who the caller is (it admits any role of the account, or references no identity attribute)",
        help: "compare attribute.aws_role (AWS) or assertion.sub / google.subject (OIDC) with exact values",
    },
    Rule {
        id: "KL103",
        name: "ProviderConditionUnevaluable",
        severity: Severity::Low,
        summary: "the provider's attributeCondition could not be parsed or uses CEL outside what keyless evaluates, so keyless could not check it",
        help: "fix the syntax, or check the condition in Google Cloud; keyless understands ==, !=, &&, ||, !, in [..], startsWith/endsWith/contains",
    },
    Rule {
        id: "KL104",
        name: "SubjectMappingTooLong",
        severity: Severity::Low,
        summary: "an OIDC provider's google.subject mapping can exceed 127 bytes for tokens it admits (e.g. assertion.sub of GitHub, Kubernetes or AWS, not pinned by the condition): Google STS refuses those tokens",
        help: "pin the subject in the attributeCondition (assertion.sub == 'EXACT_SUBJECT'), or map google.subject from bounded claims (GitHub: assertion.repository_id)",
    },
    Rule {
        id: "KL201",
        name: "ImpersonationByWholePool",
        severity: Severity::High,
        summary: "roles/iam.workloadIdentityUser (or serviceAccountTokenCreator) is granted to a whole workload identity pool (principalSet://.../*)",
        help: "grant it to principalSet://.../attribute.aws_role/ROLE_ARN or principal://.../subject/SUBJECT instead",
    },
    Rule {
        id: "KL202",
        name: "ImpersonationByWholeAccount",
        severity: Severity::Medium,
        summary: "roles/iam.workloadIdentityUser (or serviceAccountTokenCreator) is granted to every identity of an AWS account (attribute.aws_account)",
        help: "grant it to principalSet://.../attribute.aws_role/arn:aws:sts::ACCOUNT:assumed-role/ROLE instead",
    },
    Rule {
        id: "KL203",
        name: "PublicImpersonation",
        severity: Severity::Critical,
        summary: "a role that mints the service account's tokens is granted to allUsers or allAuthenticatedUsers",
        help: "remove the member; grant the role to the specific principal that needs it",
    },
    Rule {
        id: "KL204",
        name: "BindingNeverMatchesRole",
        severity: Severity::Medium,
        summary: "a principalSet names attribute.aws_role with an IAM role ARN (arn:aws:iam::...:role/R), but aws_role is the assumed-role ARN: the binding never matches",
        help: "use arn:aws:sts::ACCOUNT:assumed-role/ROLE (no session name) as the attribute value",
    },
];

/// The rule with this id; panics on an unknown id, which is a bug in the linter itself.
pub fn rule(id: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("unknown lint rule {id}"))
}

/// One problem in one place of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule id, e.g. `KL001`.
    pub rule: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// The file as named on the command line.
    pub file: String,
    /// Where in the document, e.g. `Statement[0].Condition.StringEquals."accounts.google.com:oaud"`.
    pub path: String,
    /// The 1-based line of that element in the file (the nearest enclosing element when the
    /// document was embedded as a string).
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// Why it matters: who gets in, or why it cannot work.
    pub why: String,
    /// What to change, concretely.
    pub fix: String,
}

/// A file could not be linted; the message names the file and why.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    /// The file could not be read.
    #[error("{file}: could not read it: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not JSON (nor URL-encoded JSON).
    #[error("{file}: not JSON: {reason}\n  hint: keyless lint reads the JSON that `aws iam get-role` and `gcloud ... --format=json` print")]
    NotJson {
        /// The file.
        file: String,
        /// The parser's message.
        reason: String,
    },
    /// JSON, but none of the shapes keyless lints.
    #[error("{file}: not a trust policy, `aws iam get-role` output, workload identity provider or IAM policy ({found})\n  hint: expected an object with \"Statement\", \"Role\", \"PolicyDocument\", \"attributeMapping\"/\"aws\"/\"oidc\" or \"bindings\"")]
    Unrecognised {
        /// The file.
        file: String,
        /// What was found instead.
        found: String,
    },
    /// A trust policy that IAM's model cannot read.
    #[error("{file}: at {path}: {source}")]
    Policy {
        /// The file.
        file: String,
        /// Where the policy is in the file.
        path: String,
        /// Why it could not be read.
        source: PolicyError,
    },
}

/// Lints one file from disk.
pub fn lint_file(path: &Path) -> Result<Vec<Finding>, LintError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LintError::Read {
        file: file.clone(),
        source,
    })?;
    lint_text(&file, &text)
}

/// Lints a document's text; `file` names it in findings and errors.
pub fn lint_text(file: &str, text: &str) -> Result<Vec<Finding>, LintError> {
    let value = parse_json_or_url_encoded(text).map_err(|reason| LintError::NotJson {
        file: file.to_string(),
        reason,
    })?;
    let mut drafts = Vec::new();
    lint_value(&value, &JsonPath::root(), &mut drafts).map_err(|e| match e {
        Failure::Unrecognised(found) => LintError::Unrecognised {
            file: file.to_string(),
            found,
        },
        Failure::Policy(path, source) => LintError::Policy {
            file: file.to_string(),
            path,
            source,
        },
    })?;
    let lines = path::value_lines(text);
    let mut findings: Vec<Finding> = drafts
        .into_iter()
        .map(|d| Finding {
            rule: d.rule,
            severity: d.severity,
            file: file.to_string(),
            path: d.path.to_string(),
            line: d.path.line_in(&lines),
            message: d.message,
            why: d.why,
            fix: d.fix,
        })
        .collect();
    // Worst first, then in file order: what a person should read first.
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.line.cmp(&b.line)));
    Ok(findings)
}

/// A finding before it knows its file and line.
#[derive(Debug, Clone)]
struct Draft {
    rule: &'static str,
    severity: Severity,
    path: JsonPath,
    message: String,
    why: String,
    fix: String,
}

impl Draft {
    fn new(rule_id: &'static str, path: JsonPath) -> Self {
        Self {
            rule: rule_id,
            severity: rule(rule_id).severity,
            path,
            message: String::new(),
            why: String::new(),
            fix: String::new(),
        }
    }
    fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
    fn message(mut self, text: impl Into<String>) -> Self {
        self.message = text.into();
        self
    }
    fn why(mut self, text: impl Into<String>) -> Self {
        self.why = text.into();
        self
    }
    fn fix(mut self, text: impl Into<String>) -> Self {
        self.fix = text.into();
        self
    }
}

enum Failure {
    Unrecognised(String),
    Policy(String, PolicyError),
}

/// A role as `aws iam get-role` / `list-roles` print it; the trust policy may be an object, a
/// JSON string or a URL-encoded string.
fn lint_role(role: &Value, role_at: &JsonPath, out: &mut Vec<Draft>) -> Result<(), Failure> {
    let doc_at = role_at.key("AssumeRolePolicyDocument");
    let document = role.get("AssumeRolePolicyDocument").ok_or_else(|| {
        Failure::Unrecognised(format!(
            "a role at {role_at} without \"AssumeRolePolicyDocument\""
        ))
    })?;
    lint_document(document, &doc_at, out)
}

/// A policy document embedded in an API answer: an object, a JSON string or a URL-encoded one.
fn lint_document(document: &Value, doc_at: &JsonPath, out: &mut Vec<Draft>) -> Result<(), Failure> {
    let embedded;
    let document = match document {
        Value::String(s) => {
            embedded = parse_json_or_url_encoded(s).map_err(|e| {
                Failure::Policy(
                    doc_at.to_string(),
                    PolicyError::Json(format!("the embedded document: {e}")),
                )
            })?;
            &embedded
        }
        other => other,
    };
    trust::lint_trust_policy(document, doc_at, out)
        .map_err(|e| Failure::Policy(doc_at.to_string(), e))
}

/// IAM's API returns policy documents URL-encoded (RFC 3986: `%20` for spaces, `+` literal).
fn parse_json_or_url_encoded(text: &str) -> Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let trimmed = text.trim();
            if trimmed.starts_with("%7B") || trimmed.starts_with("%7b") {
                let decoded = percent_encoding::percent_decode_str(trimmed)
                    .decode_utf8()
                    .map_err(|e| format!("URL-encoded, but not UTF-8 once decoded: {e}"))?;
                serde_json::from_str(&decoded)
                    .map_err(|e| format!("URL-decoded, but still not JSON: {e}"))
            } else {
                Err(e.to_string())
            }
        }
    }
}

fn lint_value(value: &Value, at: &JsonPath, out: &mut Vec<Draft>) -> Result<(), Failure> {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                lint_value(item, &at.index(i), out)?;
            }
            Ok(())
        }
        Value::Object(obj) if obj.contains_key("Statement") => {
            trust::lint_trust_policy(value, at, out).map_err(|e| Failure::Policy(at.to_string(), e))
        }
        Value::Object(obj) if obj.contains_key("Role") => lint_role(
            obj.get("Role").unwrap_or(&Value::Null),
            &at.key("Role"),
            out,
        ),
        Value::Object(obj) if matches!(obj.get("Roles"), Some(Value::Array(_))) => {
            // `aws iam list-roles`: every role of the account in one file.
            let roles = obj
                .get("Roles")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for (i, role) in roles.enumerate() {
                lint_role(role, &at.key("Roles").index(i), out)?;
            }
            Ok(())
        }
        Value::Object(obj) if obj.contains_key("PolicyDocument") => {
            // `aws iam get-role-policy` / `get-user-policy`: an inline identity policy.
            lint_document(
                obj.get("PolicyDocument").unwrap_or(&Value::Null),
                &at.key("PolicyDocument"),
                out,
            )
        }
        Value::Object(obj) if gcp::is_provider(obj) => {
            gcp::lint_provider(obj, at, out);
            Ok(())
        }
        Value::Object(obj) if gcp::is_iam_policy(obj) => {
            gcp::lint_iam_policy(obj, at, out);
            Ok(())
        }
        Value::Object(obj) => {
            let keys: Vec<&str> = obj.keys().map(String::as_str).take(5).collect();
            Err(Failure::Unrecognised(if keys.is_empty() {
                "an empty object".to_string()
            } else {
                format!("an object with {}", keys.join(", "))
            }))
        }
        other => Err(Failure::Unrecognised(format!(
            "a JSON {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                _ => "string",
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_of(text: &str) -> Vec<&'static str> {
        let mut ids: Vec<_> = lint_text("t.json", text)
            .unwrap()
            .iter()
            .map(|f| f.rule)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    #[test]
    fn rule_ids_are_unique_and_sorted() {
        let ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn severities_order_for_fail_on() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::High > Severity::Medium && Severity::Medium > Severity::Low);
    }

    #[test]
    fn get_role_output_with_a_url_encoded_document_is_linted() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"accounts.google.com"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
        let encoded =
            percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let text =
            serde_json::json!({"Role": {"RoleName": "r", "AssumeRolePolicyDocument": encoded}})
                .to_string();
        let findings = lint_text("role.json", &text).unwrap();
        assert_eq!(findings[0].rule, "KL001");
        assert_eq!(
            findings[0].path,
            "Role.AssumeRolePolicyDocument.Statement[0]"
        );
        // A whole file that is URL-encoded (IAM's raw API answer) reads too.
        assert_eq!(rules_of(&encoded), vec!["KL001"]);
    }

    #[test]
    fn get_role_policy_output_is_linted() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetWebIdentityToken","Resource":"*"}]}"#;
        let encoded =
            percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        for document in [serde_json::from_str(doc).unwrap(), Value::String(encoded)] {
            let text =
                serde_json::json!({"RoleName": "r", "PolicyName": "p", "PolicyDocument": document})
                    .to_string();
            let findings = lint_text("policy.json", &text).unwrap();
            let got: Vec<_> = findings.iter().map(|f| (f.rule, f.path.as_str())).collect();
            assert_eq!(got, vec![("KL011", "PolicyDocument.Statement[0]")]);
        }
    }

    #[test]
    fn list_roles_output_lints_every_role() {
        let text = serde_json::json!({"Roles": [
            {"RoleName": "ec2", "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}},
            {"RoleName": "gcp", "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"}, "Action": "sts:AssumeRoleWithWebIdentity"}]}}]})
        .to_string();
        let findings = lint_text("roles.json", &text).unwrap();
        let got: Vec<_> = findings.iter().map(|f| (f.rule, f.path.as_str())).collect();
        assert_eq!(
            got,
            vec![("KL001", "Roles[1].AssumeRolePolicyDocument.Statement[0]")]
        );
    }

    #[test]
    fn lines_point_at_the_element() {
        let text = "{\"Statement\": [\n {\"Effect\": \"Deny\", \"Principal\": \"*\", \"Action\": \"*\"},\n {\"Effect\": \"Allow\",\n  \"Principal\": \"*\", \"Action\": \"sts:AssumeRole\"}]}";
        let findings = lint_text("t.json", text).unwrap();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].path, "Statement[1].Principal");
        assert_eq!(findings[0].line, 4);
    }

    #[test]
    fn unrecognised_and_broken_inputs_name_the_problem() {
        let err = lint_text("x.json", "{\"foo\": 1}").unwrap_err();
        assert!(
            err.to_string().contains("x.json") && err.to_string().contains("foo"),
            "{err}"
        );
        let err = lint_text("x.json", "{nope").unwrap_err();
        assert!(matches!(err, LintError::NotJson { .. }), "{err}");
        let err = lint_text(
            "x.json",
            r#"{"Statement": {"Effect": "Maybe", "Action": "*"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("Maybe"), "{err}");
    }

    #[test]
    fn lists_of_documents_are_linted_each() {
        let text = r#"[{"name": "projects/1/locations/global/workloadIdentityPools/p/providers/a", "aws": {"accountId": "123456789012"}},
                       {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": ["allUsers"]}]}]"#;
        let findings = lint_text("t.json", text).unwrap();
        let got: Vec<_> = findings.iter().map(|f| (f.rule, f.path.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("KL203", "[1].bindings[0].members[0]"),
                ("KL101", "[0].attributeCondition"),
            ]
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Provider descriptions and IAM policies as gcloud prints them, with values at random.
    fn google_document() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            prop::sample::select(vec![
                "",
                "*",
                "allUsers",
                "roles/iam.workloadIdentityUser",
                "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*",
                "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/attribute.aws_role/arn:aws:iam::1:role/R",
                "attribute.aws_role == 'arn:aws:sts::123456789012:assumed-role/r'",
                "assertion.sub.startsWith('repo:') || size(x) > 0",
                "123456789012",
            ])
            .prop_map(|s| Value::String(s.into())),
            any::<String>().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            Just(Value::Null),
        ];
        (
            prop::sample::select(vec!["provider-aws", "provider-oidc", "iam-policy"]),
            prop::collection::vec(text, 6),
        )
            .prop_map(|(kind, v)| match kind {
                "provider-aws" => serde_json::json!({"name": v[0], "aws": {"accountId": v[1]},
                    "attributeMapping": {"google.subject": v[2]}, "attributeCondition": v[3]}),
                "provider-oidc" => serde_json::json!({"name": v[0], "oidc": {"issuerUri": v[1],
                    "allowedAudiences": [v[2]]}, "attributeCondition": v[3]}),
                _ => serde_json::json!({"bindings": [{"role": v[0], "members": [v[1], v[2]],
                    "condition": {"expression": v[3]}}, {"role": v[4], "members": v[5]}]}),
            })
    }

    proptest! {
        /// Any provider or IAM policy: findings at lines of the file, or an error naming it.
        #[test]
        fn google_documents_lint_without_panicking(doc in google_document(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&doc).unwrap() } else { doc.to_string() };
            match lint_text("p.json", &text) {
                Ok(findings) => {
                    let lines = text.lines().count().max(1);
                    for f in findings {
                        prop_assert!((1..=lines).contains(&f.line), "{:?}", f);
                    }
                }
                Err(e) => prop_assert!(e.to_string().starts_with("p.json")),
            }
        }

        /// Any text, URL-encoded or not.
        #[test]
        fn any_text_lints_or_is_refused(text in any::<String>()) {
            let _ = lint_text("t.json", &text);
        }
    }
}
