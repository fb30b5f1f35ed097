//! `keyless setup`: print the cloud resources a federation needs, as Terraform, CloudFormation,
//! a shell script or a Pulumi program.
//!
//! The values that decide who gets in — the trust policy, the attribute mapping and condition,
//! the principal set — are built once here, so every format grants exactly the same thing and
//! the tests can hold all of them to the policy the lab and the linter accept. Each format lives
//! in its own file and only arranges these values in its own syntax.

pub mod audit;
pub mod cloudformation;
pub mod oidc;
pub mod pulumi;
pub mod shell;
pub mod terraform;

use serde_json::{json, Value};

/// The audience AWS expects by default in the Google ID token (`oaud`).
pub const DEFAULT_AWS_AUDIENCE: &str = "sts.amazonaws.com";

/// The IAM role that lets an external identity impersonate a service account.
pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";

/// Why the inputs cannot make a safe configuration: names the flag and how to fix it, since the
/// user is about to deploy the output.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?} is not valid: {fix}")]
pub struct InvalidInput {
    /// The flag, as typed (`--aws-account`).
    pub flag: &'static str,
    /// The rejected value.
    pub value: String,
    /// What the value must look like and where to find it.
    pub fix: String,
}

fn invalid(flag: &'static str, value: &str, fix: impl Into<String>) -> InvalidInput {
    InvalidInput {
        flag,
        value: value.to_string(),
        fix: fix.into(),
    }
}

/// GCP → AWS: a Google service account may assume an AWS role.
#[derive(Debug, Clone)]
pub struct GcpToAws {
    /// The service account's email (`NAME@PROJECT.iam.gserviceaccount.com`).
    pub service_account: String,
    /// Its numeric unique id (the token's `sub` and `azp`, which AWS calls `sub` and `aud`)
    /// when the account exists; `None` when the configuration creates it, so the id exists only
    /// once the account does.
    pub service_account_id: Option<String>,
    /// The 12-digit AWS account the role lives in.
    pub aws_account: String,
    /// The role's name.
    pub role_name: String,
    /// The ID token's audience (AWS's `oaud`).
    pub audience: String,
    /// Managed policies to attach.
    pub policy_arns: Vec<String>,
    /// The role's maximum session duration, seconds.
    pub max_session_duration: u32,
}

impl GcpToAws {
    /// Checks every value, so a typo fails here rather than as an unexplained refusal later.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        service_account_email("--service-account", &self.service_account)?;
        if let Some(id) = &self.service_account_id {
            numeric_id("--service-account-id", id,
                "the service account's numeric unique id (gcloud iam service-accounts describe EMAIL --format='value(uniqueId)'), not its email")?;
        }
        aws_account("--aws-account", &self.aws_account)?;
        aws_role_name("--role-name", &self.role_name)?;
        audience("--audience", &self.audience)?;
        policy_arns(&self.policy_arns)?;
        max_session_duration(self.max_session_duration)
    }

    /// Whether the configuration creates the service account (no `--service-account-id`): then
    /// its numeric id is not known until it exists, and every format must refer to the created
    /// account's id rather than print one.
    pub fn creates_service_account(&self) -> bool {
        self.service_account_id.is_none()
    }

    /// The trust policy, when every value is known (the account exists): only this service
    /// account's tokens, minted for this audience.
    pub fn trust_policy(&self) -> Option<Value> {
        let mut map = serde_json::Map::new();
        for (k, v) in self.conditions() {
            let PolicyValue::Literal(v) = v else {
                return None;
            };
            map.insert(k.to_string(), Value::String(v.to_string()));
        }
        Some(json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": "accounts.google.com"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": map}
            }]
        }))
    }

    /// The `StringEquals` conditions in order: `aud` (the token's azp, the account's numeric
    /// id), `oaud` (the audience), `sub` (the numeric id).
    pub fn conditions(&self) -> [(&'static str, PolicyValue<'_>); 3] {
        let id = match &self.service_account_id {
            Some(id) => PolicyValue::Literal(id),
            None => PolicyValue::CreatedServiceAccountId,
        };
        [
            ("accounts.google.com:aud", id),
            (
                "accounts.google.com:oaud",
                PolicyValue::Literal(&self.audience),
            ),
            ("accounts.google.com:sub", id),
        ]
    }

    /// The trust policy as pretty JSON in the order IAM documents it (Version first), for the
    /// formats that embed the document; `created_id` is what stands for the numeric id of an
    /// account the configuration creates (a shell variable in a JSON string, a Python name).
    pub fn trust_policy_pretty(&self, created_id: &str) -> String {
        let j = |v: &str| Value::String(v.to_string()).to_string();
        let conditions = self
            .conditions()
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    PolicyValue::Literal(v) => j(v),
                    PolicyValue::CreatedServiceAccountId => created_id.to_string(),
                };
                format!("          {}: {v}", j(k))
            })
            .collect::<Vec<_>>()
            .join(",\n");
        format!(
            "{{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {{\n      \"Effect\": \"Allow\",\n      \"Principal\": {{\n        \"Federated\": \"accounts.google.com\"\n      }},\n      \"Action\": \"sts:AssumeRoleWithWebIdentity\",\n      \"Condition\": {{\n        \"StringEquals\": {{\n{conditions}\n        }}\n      }}\n    }}\n  ]\n}}"
        )
    }

    /// The role's ARN once created.
    pub fn role_arn(&self) -> String {
        format!("arn:aws:iam::{}:role/{}", self.aws_account, self.role_name)
    }

    /// The service account's account id (the email's local part).
    pub fn service_account_name(&self) -> &str {
        email_parts(&self.service_account).0
    }

    /// The project the service account lives in (from its email).
    pub fn service_account_project(&self) -> &str {
        email_parts(&self.service_account).1
    }

    /// The `keyless aws credentials` command the workload runs afterwards.
    pub fn keyless_command(&self) -> String {
        let mut cmd = format!("keyless aws credentials --role-arn {}", self.role_arn());
        if self.audience != DEFAULT_AWS_AUDIENCE {
            cmd.push_str(&format!(" --audience {}", self.audience));
        }
        cmd
    }
}

/// A value of the trust policy's conditions, as each format must write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyValue<'a> {
    /// Known now: printed as a literal.
    Literal(&'a str),
    /// The numeric id of the service account the configuration creates: it exists only once
    /// the account does, so a format refers to it (`google_service_account.keyless.unique_id`,
    /// a shell variable read back after `create`) and never prints one.
    CreatedServiceAccountId,
}

/// AWS → GCP: an AWS role's sessions may impersonate a Google service account.
#[derive(Debug, Clone)]
pub struct AwsToGcp {
    /// The project's id (where the pool and the service account are created).
    pub project_id: String,
    /// The project's number (principal sets and audiences use it).
    pub project_number: String,
    /// The workload identity pool id.
    pub pool: String,
    /// The AWS provider id within the pool.
    pub provider: String,
    /// The 12-digit AWS account whose tokens the provider accepts.
    pub aws_account: String,
    /// The role whose sessions may get in.
    pub aws_role: String,
    /// The service account they impersonate.
    pub service_account: String,
    /// An optional project role granted to the service account.
    pub role: Option<String>,
}

/// The provider's attribute mapping: `attribute.aws_role` is the role's session ARN without the
/// session name, so the condition and the principal set can name a role rather than a session.
pub const ATTRIBUTE_MAPPING: [(&str, &str); 3] = [
    ("google.subject", "assertion.arn"),
    (
        "attribute.aws_role",
        "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn",
    ),
    ("attribute.aws_account", "assertion.account"),
];

impl AwsToGcp {
    /// Checks every value, so a typo fails here rather than as an unexplained refusal later.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        google_ids(
            &self.project_id,
            &self.project_number,
            &self.pool,
            &self.provider,
        )?;
        aws_account("--aws-account", &self.aws_account)?;
        aws_role_name("--aws-role", &self.aws_role)?;
        service_account_email("--service-account", &self.service_account)?;
        same_project(&self.service_account, &self.project_id)?;
        if let Some(role) = &self.role {
            project_role(role)?;
        }
        Ok(())
    }

    /// The session ARN prefix `attribute.aws_role` holds for the role's sessions.
    pub fn aws_role_arn(&self) -> String {
        format!(
            "arn:aws:sts::{}:assumed-role/{}",
            self.aws_account, self.aws_role
        )
    }

    /// The provider's condition: only this role's sessions, not every identity in the account.
    pub fn attribute_condition(&self) -> String {
        format!("attribute.aws_role == \"{}\"", self.aws_role_arn())
    }

    /// `projects/N/locations/global/workloadIdentityPools/POOL`.
    pub fn pool_resource(&self) -> String {
        format!(
            "projects/{}/locations/global/workloadIdentityPools/{}",
            self.project_number, self.pool
        )
    }

    /// The member granted `roles/iam.workloadIdentityUser`: the role's sessions, nothing wider.
    pub fn principal_set(&self) -> String {
        format!(
            "principalSet://iam.googleapis.com/{}/attribute.aws_role/{}",
            self.pool_resource(),
            self.aws_role_arn()
        )
    }

    /// The audience keyless asks Google STS for (the provider's full resource name).
    pub fn audience(&self) -> String {
        format!(
            "//iam.googleapis.com/{}/providers/{}",
            self.pool_resource(),
            self.provider
        )
    }

    /// The service account's account id (the email's local part).
    pub fn service_account_name(&self) -> &str {
        email_parts(&self.service_account).0
    }

    /// The `keyless gcp config` command the AWS workload runs afterwards.
    pub fn keyless_command(&self) -> String {
        format!(
            "keyless gcp config --audience {} --service-account {}",
            self.audience(),
            self.service_account
        )
    }
}

fn policy_arns(arns: &[String]) -> Result<(), InvalidInput> {
    for arn in arns {
        if !(arn.starts_with("arn:aws") && arn.contains(":policy/")) || has_unsafe_chars(arn) {
            return Err(invalid(
                "--policy-arn",
                arn,
                "give a managed policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess",
            ));
        }
    }
    Ok(())
}

fn max_session_duration(seconds: u32) -> Result<(), InvalidInput> {
    if (3600..=43200).contains(&seconds) {
        Ok(())
    } else {
        Err(invalid(
            "--max-session-duration",
            &seconds.to_string(),
            "AWS accepts 3600 to 43200 seconds",
        ))
    }
}

/// The project, pool and provider of a Google workload identity federation.
fn google_ids(
    project_id: &str,
    project_number: &str,
    pool: &str,
    provider: &str,
) -> Result<(), InvalidInput> {
    let id_ok = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !id_ok(project_id, 6, 30) {
        return Err(invalid(
            "--project-id",
            project_id,
            "give the project id (6-30 lowercase letters, digits, hyphens), e.g. from gcloud config get-value project",
        ));
    }
    numeric_id(
        "--project-number",
        project_number,
        "give the numeric project number (gcloud projects describe PROJECT_ID --format='value(projectNumber)')",
    )?;
    if !id_ok(pool, 4, 32) || pool.starts_with("gcp-") {
        return Err(invalid(
            "--pool",
            pool,
            "a pool id is 4-32 lowercase letters, digits and hyphens, and may not start with gcp-",
        ));
    }
    if !id_ok(provider, 4, 32) || provider.starts_with("gcp-") {
        return Err(invalid(
            "--provider",
            provider,
            "a provider id is 4-32 lowercase letters, digits and hyphens, and may not start with gcp-",
        ));
    }
    Ok(())
}

/// The service account is created in the project, so its email must say so.
fn same_project(service_account: &str, project_id: &str) -> Result<(), InvalidInput> {
    if email_parts(service_account).1 == project_id {
        Ok(())
    } else {
        Err(invalid(
            "--service-account",
            service_account,
            format!(
                "the service account is created in --project-id, so its email must end in @{project_id}.iam.gserviceaccount.com"
            ),
        ))
    }
}

fn project_role(role: &str) -> Result<(), InvalidInput> {
    let ok = ["roles/", "projects/", "organizations/"]
        .iter()
        .any(|p| role.starts_with(p))
        && role.len() > "roles/".len()
        && !has_unsafe_chars(role);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "--role",
            role,
            "give an IAM role name such as roles/storage.objectViewer",
        ))
    }
}

fn email_parts(email: &str) -> (&str, &str) {
    let (name, domain) = email.split_once('@').unwrap_or((email, ""));
    (
        name,
        domain
            .strip_suffix(".iam.gserviceaccount.com")
            .unwrap_or(domain),
    )
}

fn has_unsafe_chars(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || "'\"\\`$".contains(c))
}

fn service_account_email(flag: &'static str, value: &str) -> Result<(), InvalidInput> {
    let (name, project) = email_parts(value);
    let name_ok = (6..=30).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let project_ok = !project.is_empty()
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if value.contains('@') && value.ends_with(".iam.gserviceaccount.com") && name_ok && project_ok {
        Ok(())
    } else {
        Err(invalid(
            flag,
            value,
            "give a user-managed service account email, NAME@PROJECT_ID.iam.gserviceaccount.com (NAME 6-30 lowercase letters, digits, hyphens)",
        ))
    }
}

fn numeric_id(flag: &'static str, value: &str, fix: &str) -> Result<(), InvalidInput> {
    if !value.is_empty() && value.len() <= 30 && value.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(flag, value, format!("digits only: {fix}")))
    }
}

pub(crate) fn aws_account(flag: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.len() == 12 && value.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(
            flag,
            value,
            "an AWS account id is exactly 12 digits (aws sts get-caller-identity --query Account)",
        ))
    }
}

fn aws_role_name(flag: &'static str, value: &str) -> Result<(), InvalidInput> {
    let ok = (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            flag,
            value,
            "give the role's name, not its ARN: 1-64 letters, digits and +=,.@_-",
        ))
    }
}

fn audience(flag: &'static str, value: &str) -> Result<(), InvalidInput> {
    if !value.is_empty() && !has_unsafe_chars(value) {
        Ok(())
    } else {
        Err(invalid(
            flag,
            value,
            "the audience is a non-empty string without spaces or quotes (default sts.amazonaws.com)",
        ))
    }
}

/// Quotes a value for a POSIX shell: single quotes, or double quotes when the value holds
/// single quotes but nothing a shell expands inside double ones (CEL expressions stay readable).
pub(crate) fn shell_quote(value: &str) -> String {
    if value.contains('\'') && !value.contains(['$', '"', '\\', '`', '!']) {
        format!("\"{value}\"")
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// A double-quoted string literal for HCL or Python: backslashes and quotes escaped (and, for
/// HCL, template sequences doubled so `${` is never interpolated).
pub(crate) fn quoted(value: &str, hcl: bool) -> String {
    let mut out = value.replace('\\', r"\\").replace('"', "\\\"");
    if hcl {
        out = out.replace("${", "$${").replace("%{", "%%{");
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("it's"), r#""it's""#);
        assert_eq!(shell_quote("it's \"x\""), r#"'it'\''s "x"'"#);
        assert_eq!(quoted("a\"b${c}", true), r#""a\"b$${c}""#);
        assert_eq!(quoted("a\\b", false), r#""a\\b""#);
    }

    #[test]
    fn pretty_policy_is_the_policy() {
        let s = GcpToAws {
            service_account: "deployer@p.iam.gserviceaccount.com".into(),
            service_account_id: Some("1".into()),
            aws_account: "123456789012".into(),
            role_name: "r".into(),
            audience: DEFAULT_AWS_AUDIENCE.into(),
            policy_arns: vec![],
            max_session_duration: 3600,
        };
        let parsed: Value = serde_json::from_str(&s.trust_policy_pretty("unused")).unwrap();
        assert_eq!(Some(parsed), s.trust_policy());
        let created = GcpToAws {
            service_account_id: None,
            ..s
        };
        assert!(created.trust_policy().is_none());
        let parsed: Value =
            serde_json::from_str(&created.trust_policy_pretty("\"${id}\"")).unwrap();
        assert_eq!(
            parsed["Statement"][0]["Condition"]["StringEquals"]["accounts.google.com:sub"],
            "${id}"
        );
    }
}
