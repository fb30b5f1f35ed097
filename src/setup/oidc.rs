//! The values of the pairs whose source is an OIDC issuer: GitHub Actions (`github`), a
//! Kubernetes cluster (`k8s`) and AWS outbound identity federation (`aws-oidc`), to AWS (an IAM
//! OIDC provider and a role pinning `HOST/PATH:aud` and `:sub`) or to Google (a pool OIDC
//! provider whose condition pins `assertion.sub`, and a binding for exactly that subject).
//!
//! Every pair pins one exact subject, the same string on both clouds: the workload's `sub` as
//! its issuer writes it. The formats only arrange these values.

use serde_json::{json, Value};

use super::{
    audience, aws_account, aws_role_name, email_parts, has_unsafe_chars, invalid,
    service_account_email, InvalidInput, DEFAULT_AWS_AUDIENCE,
};

/// GitHub Actions' issuer.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// Google refuses a federated token whose `google.subject` is longer than this (bytes).
pub const MAX_GOOGLE_SUBJECT_BYTES: usize = 127;

/// What a GitHub Actions job's `sub` names besides the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GithubPin {
    /// `repo:ORG/REPO:ref:REF` (a job without an environment, on this branch or tag).
    Ref(String),
    /// `repo:ORG/REPO:environment:NAME` (a job that deploys to this environment).
    Environment(String),
}

/// The identity a pair trusts: one workload of one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcSource {
    /// A GitHub Actions workflow of `repo` (`ORG/REPO`).
    Github { repo: String, pin: GithubPin },
    /// A Kubernetes service account of a cluster whose issuer is `issuer`.
    Kubernetes {
        issuer: String,
        namespace: String,
        service_account: String,
    },
    /// An IAM role of an AWS account with outbound identity federation enabled; `issuer` is the
    /// account's `https://ID.tokens.sts.global.api.aws`.
    AwsOutbound {
        issuer: String,
        account: String,
        role: String,
        org_id: Option<String>,
    },
}

impl OidcSource {
    /// The `SOURCE` of `keyless setup SOURCE-to-TARGET`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Github { .. } => "github",
            Self::Kubernetes { .. } => "k8s",
            Self::AwsOutbound { .. } => "aws-oidc",
        }
    }

    /// The issuer URL, as tokens carry it in `iss`.
    pub fn issuer(&self) -> &str {
        match self {
            Self::Github { .. } => GITHUB_ISSUER,
            Self::Kubernetes { issuer, .. } | Self::AwsOutbound { issuer, .. } => issuer,
        }
    }

    /// `HOST/PATH`: the IAM OIDC provider's name and the prefix of its AWS condition keys.
    pub fn provider_host(&self) -> String {
        match crate::policy::issuer::Issuer::of(self.issuer()) {
            crate::policy::issuer::Issuer::Oidc { provider } => provider,
            crate::policy::issuer::Issuer::Google => crate::policy::google::GOOGLE_PROVIDER.into(),
        }
    }

    /// The exact `sub` of the workload's tokens.
    pub fn subject(&self) -> String {
        match self {
            Self::Github {
                repo,
                pin: GithubPin::Ref(r),
            } => format!("repo:{repo}:ref:{r}"),
            Self::Github {
                repo,
                pin: GithubPin::Environment(e),
            } => format!("repo:{repo}:environment:{e}"),
            Self::Kubernetes {
                namespace,
                service_account,
                ..
            } => format!("system:serviceaccount:{namespace}:{service_account}"),
            Self::AwsOutbound { account, role, .. } => {
                format!("arn:aws:iam::{account}:role/{role}")
            }
        }
    }

    /// Who gets in, for comments.
    pub fn describe(&self) -> String {
        match self {
            Self::Github {
                repo,
                pin: GithubPin::Ref(r),
            } => format!("GitHub Actions jobs of {repo} on {r}"),
            Self::Github {
                repo,
                pin: GithubPin::Environment(e),
            } => format!("GitHub Actions jobs of {repo} in environment {e}"),
            Self::Kubernetes {
                namespace,
                service_account,
                ..
            } => format!("the Kubernetes service account {namespace}/{service_account}"),
            Self::AwsOutbound { .. } => format!("the AWS role {}", self.subject()),
        }
    }

    /// The `--token-source` the workload uses.
    pub fn token_source(&self) -> &'static str {
        match self {
            Self::Github { .. } => "github",
            Self::Kubernetes { .. } => "k8s:/var/run/secrets/keyless/token",
            Self::AwsOutbound { .. } => "aws-oidc",
        }
    }

    /// What the workload itself needs, for the output's comments: `# ` lines, wrapped.
    pub fn workload_notes(&self, audience: &str) -> String {
        let note = match self {
            Self::Github { .. } => format!(
                "The workflow job needs `permissions: id-token: write`; keyless asks GitHub for a token with audience {audience}."
            ),
            Self::Kubernetes {
                namespace,
                service_account,
                ..
            } => format!(
                "The pod runs as service account {service_account} in namespace {namespace} and mounts a projected service-account token with audience {audience} (serviceAccountToken.audience, expirationSeconds >= 600) at /var/run/secrets/keyless/token."
            ),
            Self::AwsOutbound { role, .. } => format!(
                "The workload runs as the role {role} (credentials from the AWS SDKs' chain); keyless asks STS GetWebIdentityToken for audience {audience}."
            ),
        };
        let mut out = String::new();
        let mut line = String::from("#");
        for word in note.split(' ') {
            if line.len() + 1 + word.len() > 96 && line.len() > 1 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
        out
    }

    /// The attribute mapping of a Google pool OIDC provider for this issuer.
    pub fn attribute_mapping(&self) -> Vec<(&'static str, &'static str)> {
        let mut mapping = vec![("google.subject", "assertion.sub")];
        match self {
            Self::Github { .. } => mapping.extend([
                ("attribute.repository", "assertion.repository"),
                ("attribute.repository_owner", "assertion.repository_owner"),
                ("attribute.ref", "assertion.ref"),
            ]),
            Self::Kubernetes { .. } => {}
            Self::AwsOutbound { .. } => mapping.push((
                "attribute.aws_account",
                "assertion['https://sts.amazonaws.com/'].aws_account",
            )),
        }
        mapping
    }

    /// The Google provider's condition: exactly this subject (and, for AWS, the organization
    /// when one is given).
    pub fn attribute_condition(&self) -> String {
        let mut condition = format!("assertion.sub == '{}'", self.subject());
        if let Self::AwsOutbound {
            org_id: Some(org), ..
        } = self
        {
            condition.push_str(&format!(
                " && assertion['https://sts.amazonaws.com/'].org_id == '{org}'"
            ));
        }
        condition
    }

    /// Checks every value, naming the flag that carries it.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        match self {
            Self::Github { repo, pin } => {
                let (org, name) = repo.split_once('/').unwrap_or((repo, ""));
                let org_ok = (1..=39).contains(&org.len())
                    && !org.starts_with('-')
                    && org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                let name_ok = (1..=100).contains(&name.len())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                if !(org_ok && name_ok) {
                    return Err(invalid(
                        "--github-repo",
                        repo,
                        "give one repository as ORG/REPO (e.g. my-org/my-repo), no wildcards: the subject is pinned to it",
                    ));
                }
                match pin {
                    GithubPin::Ref(r) => {
                        if !(r.starts_with("refs/") && r.len() > 5)
                            || has_unsafe_chars(r)
                            || r.contains(['*', '?', ':'])
                        {
                            return Err(invalid(
                                "--github-ref",
                                r,
                                "give the full ref, e.g. refs/heads/main or refs/tags/v1, no wildcards",
                            ));
                        }
                    }
                    GithubPin::Environment(e) => {
                        if e.is_empty()
                            || e.len() > 255
                            || has_unsafe_chars(e)
                            || e.contains(['*', '?', ':'])
                        {
                            return Err(invalid(
                                "--github-environment",
                                e,
                                "give the environment's name as in the repository's settings (no spaces, quotes or wildcards)",
                            ));
                        }
                    }
                }
            }
            Self::Kubernetes {
                issuer,
                namespace,
                service_account,
            } => {
                issuer_url("--k8s-issuer", issuer, "the cluster's service-account issuer (kubectl get --raw /.well-known/openid-configuration | jq -r .issuer; EKS: aws eks describe-cluster --query cluster.identity.oidc.issuer)")?;
                let label = |s: &str, max: usize, dots: bool| {
                    (1..=max).contains(&s.len())
                        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                        && s.chars().all(|c| {
                            c.is_ascii_lowercase()
                                || c.is_ascii_digit()
                                || c == '-'
                                || (dots && c == '.')
                        })
                };
                if !label(namespace, 63, false) {
                    return Err(invalid(
                        "--namespace",
                        namespace,
                        "a namespace is a DNS label: 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit",
                    ));
                }
                if !label(service_account, 253, true) {
                    return Err(invalid(
                        "--k8s-service-account",
                        service_account,
                        "a service account name is a DNS subdomain: lowercase letters, digits, '-' and '.', at most 253",
                    ));
                }
            }
            Self::AwsOutbound {
                issuer,
                account,
                role,
                org_id,
            } => {
                let host = issuer.strip_prefix("https://").unwrap_or("");
                let ok = host
                    .strip_suffix(".tokens.sts.global.api.aws")
                    .is_some_and(|id| {
                        !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    });
                if !ok {
                    return Err(invalid(
                        "--aws-issuer",
                        issuer,
                        "give the account's outbound issuer, https://ID.tokens.sts.global.api.aws (aws iam get-outbound-web-identity-federation-info --query IssuerIdentifier, after aws iam enable-outbound-web-identity-federation)",
                    ));
                }
                aws_account("--aws-account", account)?;
                aws_role_name("--aws-role", role)?;
                if let Some(org) = org_id {
                    let ok = org.len() >= 12
                        && org.len() <= 34
                        && org.starts_with("o-")
                        && org[2..]
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                    if !ok {
                        return Err(invalid(
                            "--aws-org-id",
                            org,
                            "an organization id is o- and 10-32 lowercase letters or digits (aws organizations describe-organization --query Organization.Id)",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn issuer_url(flag: &'static str, value: &str, fix: &str) -> Result<(), InvalidInput> {
    let rest = value.strip_prefix("https://").unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    let ok = !host.is_empty()
        && value.len() <= 255
        && !value.ends_with('/')
        && !has_unsafe_chars(value)
        && !rest.contains(['?', '#', '*', ','])
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            flag,
            value,
            format!("an https:// issuer URL exactly as tokens carry it in iss (no trailing slash): {fix}"),
        ))
    }
}

/// SOURCE → AWS: an IAM OIDC provider for the issuer and a role only the workload may assume.
#[derive(Debug, Clone)]
pub struct OidcToAws {
    /// Who may assume the role.
    pub source: OidcSource,
    /// The 12-digit account of the role (and of the IAM OIDC provider).
    pub aws_account: String,
    /// The role's name.
    pub role_name: String,
    /// The token's audience: the provider's client id and the `HOST/PATH:aud` pin.
    pub audience: String,
    /// Managed policies to attach.
    pub policy_arns: Vec<String>,
    /// The role's maximum session duration, seconds.
    pub max_session_duration: u32,
}

impl OidcToAws {
    /// Checks every value, naming the flag and the fix.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        self.source.validate()?;
        aws_account("--aws-account", &self.aws_account)?;
        aws_role_name("--role-name", &self.role_name)?;
        audience("--audience", &self.audience)?;
        super::policy_arns(&self.policy_arns)?;
        super::max_session_duration(self.max_session_duration)
    }

    /// `arn:aws:iam::ACCOUNT:oidc-provider/HOST/PATH`: the trust policy's principal.
    pub fn provider_arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            self.aws_account,
            self.source.provider_host()
        )
    }

    /// The `StringEquals` conditions: `HOST/PATH:aud` (the audience) and `:sub` (the workload).
    pub fn conditions(&self) -> [(String, String); 2] {
        let host = self.source.provider_host();
        [
            (format!("{host}:aud"), self.audience.clone()),
            (format!("{host}:sub"), self.source.subject()),
        ]
    }

    /// The trust policy, with `principal` standing for the provider's ARN (a literal, or what
    /// a format refers to it by).
    pub fn trust_policy_with(&self, principal: &str) -> Value {
        let conditions: serde_json::Map<String, Value> = self
            .conditions()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": principal},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": conditions}
            }]
        })
    }

    /// The trust policy as IAM stores it.
    pub fn trust_policy(&self) -> Value {
        self.trust_policy_with(&self.provider_arn())
    }

    /// The trust policy as pretty JSON, Version first.
    pub fn trust_policy_pretty(&self) -> String {
        pretty(&self.trust_policy())
    }

    /// The role's ARN once created.
    pub fn role_arn(&self) -> String {
        format!("arn:aws:iam::{}:role/{}", self.aws_account, self.role_name)
    }

    /// The outbound side, for `aws-oidc` (the caller's account must mint tokens for AWS).
    pub fn outbound(&self) -> Option<Outbound> {
        Outbound::of(&self.source, &self.audience)
    }

    /// The command the workload runs afterwards.
    pub fn keyless_command(&self) -> String {
        let mut cmd = format!(
            "keyless aws credentials --token-source {} --role-arn {}",
            self.source.token_source(),
            self.role_arn()
        );
        if self.audience != DEFAULT_AWS_AUDIENCE {
            cmd.push_str(&format!(" --audience {}", self.audience));
        }
        cmd
    }
}

/// The calling account's side of AWS outbound identity federation: the feature enabled once
/// per account, and the role allowed `sts:GetWebIdentityToken` for the target's audience only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The account whose roles mint the tokens.
    pub account: String,
    /// The role that mints them.
    pub role: String,
    /// The account's issuer, as `EnableOutboundWebIdentityFederation` returns it.
    pub issuer: String,
    /// The only audience the role may ask for.
    pub audience: String,
}

/// The inline policy's name on the calling role.
pub const OUTBOUND_POLICY_NAME: &str = "keyless-get-web-identity-token";

impl Outbound {
    fn of(source: &OidcSource, audience: &str) -> Option<Self> {
        match source {
            OidcSource::AwsOutbound {
                issuer,
                account,
                role,
                ..
            } => Some(Self {
                account: account.clone(),
                role: role.clone(),
                issuer: issuer.clone(),
                audience: audience.to_string(),
            }),
            _ => None,
        }
    }

    /// The identity policy: `sts:GetWebIdentityToken` for this audience and nothing else
    /// (`sts:IdentityTokenAudience` is multi-valued: every requested audience must be listed).
    pub fn policy(&self) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "sts:GetWebIdentityToken",
                "Resource": "*",
                "Condition": {
                    "ForAllValues:StringEquals": {"sts:IdentityTokenAudience": [self.audience]}
                }
            }]
        })
    }

    /// The policy as pretty JSON.
    pub fn policy_pretty(&self) -> String {
        pretty(&self.policy())
    }
}

/// SOURCE → Google: a pool OIDC provider for the issuer that admits only the workload, a
/// service account it may impersonate, and an optional project role for that account.
#[derive(Debug, Clone)]
pub struct OidcToGcp {
    /// Who gets in.
    pub source: OidcSource,
    /// The project's id (pool and service account).
    pub project_id: String,
    /// The project's number (principals and audiences use it).
    pub project_number: String,
    /// The workload identity pool id.
    pub pool: String,
    /// The OIDC provider id within the pool.
    pub provider: String,
    /// The service account the workload impersonates.
    pub service_account: String,
    /// An optional project role granted to the service account.
    pub role: Option<String>,
    /// The token's audience (the provider's allowed audience); `None`: the provider's URL.
    pub token_audience: Option<String>,
}

impl OidcToGcp {
    /// Checks every value, naming the flag and the fix.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        self.source.validate()?;
        super::google_ids(
            &self.project_id,
            &self.project_number,
            &self.pool,
            &self.provider,
        )?;
        service_account_email("--service-account", &self.service_account)?;
        super::same_project(&self.service_account, &self.project_id)?;
        if let Some(role) = &self.role {
            super::project_role(role)?;
        }
        if let Some(aud) = &self.token_audience {
            audience("--token-audience", aud)?;
        }
        let subject = self.source.subject();
        if subject.len() > MAX_GOOGLE_SUBJECT_BYTES {
            return Err(invalid(
                match self.source {
                    OidcSource::Github { .. } => "--github-repo",
                    OidcSource::Kubernetes { .. } => "--k8s-service-account",
                    OidcSource::AwsOutbound { .. } => "--aws-role",
                },
                &subject,
                format!(
                    "the subject is {} bytes, but Google refuses a google.subject over {MAX_GOOGLE_SUBJECT_BYTES}: use a shorter name",
                    subject.len()
                ),
            ));
        }
        Ok(())
    }

    /// `projects/N/locations/global/workloadIdentityPools/POOL`.
    pub fn pool_resource(&self) -> String {
        format!(
            "projects/{}/locations/global/workloadIdentityPools/{}",
            self.project_number, self.pool
        )
    }

    /// The audience keyless asks Google STS for (the provider's resource name).
    pub fn audience(&self) -> String {
        format!(
            "//iam.googleapis.com/{}/providers/{}",
            self.pool_resource(),
            self.provider
        )
    }

    /// The audience the token carries, which the provider lists as allowed.
    pub fn token_audience(&self) -> String {
        self.token_audience
            .clone()
            .unwrap_or_else(|| format!("https:{}", self.audience()))
    }

    /// The member granted `roles/iam.workloadIdentityUser`: exactly the workload's subject.
    pub fn principal(&self) -> String {
        format!(
            "principal://iam.googleapis.com/{}/subject/{}",
            self.pool_resource(),
            self.source.subject()
        )
    }

    /// The service account's account id (the email's local part).
    pub fn service_account_name(&self) -> &str {
        email_parts(&self.service_account).0
    }

    /// The outbound side, for `aws-oidc`.
    pub fn outbound(&self) -> Option<Outbound> {
        Outbound::of(&self.source, &self.token_audience())
    }

    /// The created service account's display name (Google accepts at most 100 characters).
    pub fn display_name(&self) -> String {
        format!("keyless: impersonated by {}", self.source.describe())
            .chars()
            .take(100)
            .collect()
    }

    /// The command the workload runs afterwards.
    pub fn keyless_command(&self) -> String {
        format!(
            "keyless gcp config --token-source {} --token-audience {} --audience {} --service-account {}",
            self.source.token_source(),
            self.token_audience(),
            self.audience(),
            self.service_account
        )
    }
}

/// Pretty JSON with the keys in the order IAM documents them (Version, Statement; Sid, Effect,
/// Principal, Action, Resource, Condition), since serde_json sorts maps.
pub(crate) fn pretty(value: &Value) -> String {
    const ORDER: [&str; 8] = [
        "Version",
        "Statement",
        "Sid",
        "Effect",
        "Principal",
        "Action",
        "Resource",
        "Condition",
    ];
    fn write(value: &Value, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent + 1);
        let end = "  ".repeat(indent);
        match value {
            Value::Object(map) if !map.is_empty() => {
                let mut keys: Vec<&String> = map.keys().collect();
                let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
                keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
                out.push_str("{\n");
                for (i, k) in keys.iter().enumerate() {
                    out.push_str(&format!("{pad}{}: ", Value::String(k.to_string())));
                    write(&map[k.as_str()], indent + 1, out);
                    out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
                }
                out.push_str(&format!("{end}}}"));
            }
            Value::Array(items) if !items.is_empty() => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad);
                    write(item, indent + 1, out);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&format!("{end}]"));
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github() -> OidcSource {
        OidcSource::Github {
            repo: "my-org/my-repo".into(),
            pin: GithubPin::Ref("refs/heads/main".into()),
        }
    }

    #[test]
    fn subjects_and_keys_are_the_issuers() {
        assert_eq!(
            github().subject(),
            "repo:my-org/my-repo:ref:refs/heads/main"
        );
        assert_eq!(
            github().provider_host(),
            "token.actions.githubusercontent.com"
        );
        let k8s = OidcSource::Kubernetes {
            issuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC".into(),
            namespace: "payments".into(),
            service_account: "app".into(),
        };
        assert_eq!(k8s.subject(), "system:serviceaccount:payments:app");
        assert_eq!(
            k8s.provider_host(),
            "oidc.eks.eu-west-1.amazonaws.com/id/ABC"
        );
        let aws = OidcToAws {
            source: k8s,
            aws_account: "123456789012".into(),
            role_name: "payments".into(),
            audience: DEFAULT_AWS_AUDIENCE.into(),
            policy_arns: vec![],
            max_session_duration: 3600,
        };
        assert_eq!(
            aws.provider_arn(),
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"
        );
        let parsed: Value = serde_json::from_str(&aws.trust_policy_pretty()).unwrap();
        assert_eq!(parsed, aws.trust_policy());
        assert!(aws.trust_policy_pretty().starts_with("{\n  \"Version\""));
        assert!(aws.outbound().is_none());
        // What the workload needs, as comments every format prints.
        let notes = aws.source.workload_notes("sts.amazonaws.com");
        assert!(notes.contains("audience sts.amazonaws.com"), "{notes}");
        assert!(notes.contains("/var/run/secrets/keyless/token"), "{notes}");
        assert!(
            notes.lines().all(|l| l.starts_with("# ") && l.len() <= 100),
            "{notes}"
        );
        assert!(github()
            .workload_notes("sts.amazonaws.com")
            .contains("permissions: id-token: write"));
    }

    fn outbound_to_gcp(org_id: Option<&str>) -> OidcToGcp {
        OidcToGcp {
            source: OidcSource::AwsOutbound {
                issuer: "https://abc.tokens.sts.global.api.aws".into(),
                account: "123456789012".into(),
                role: "app".into(),
                org_id: org_id.map(String::from),
            },
            project_id: "my-project".into(),
            project_number: "42".into(),
            pool: "aws-pool".into(),
            provider: "outbound".into(),
            service_account: "app-sa@my-project.iam.gserviceaccount.com".into(),
            role: None,
            token_audience: None,
        }
    }

    #[test]
    fn aws_outbound_pins_the_role_and_mints_for_the_providers_audience_only() {
        let plan = outbound_to_gcp(None);
        plan.validate().unwrap();
        assert_eq!(
            plan.source.attribute_condition(),
            "assertion.sub == 'arn:aws:iam::123456789012:role/app'"
        );
        assert_eq!(
            plan.principal(),
            "principal://iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/aws-pool/subject/arn:aws:iam::123456789012:role/app"
        );
        let audience = "https://iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/aws-pool/providers/outbound";
        assert_eq!(plan.token_audience(), audience);
        let outbound = plan.outbound().unwrap();
        assert_eq!(
            outbound.policy()["Statement"][0]["Condition"],
            json!({"ForAllValues:StringEquals": {"sts:IdentityTokenAudience": [audience]}})
        );
        let parsed: Value = serde_json::from_str(&outbound.policy_pretty()).unwrap();
        assert_eq!(parsed, outbound.policy());
        // IAM's order, not serde_json's.
        let text = outbound.policy_pretty();
        assert!(text.find("\"Effect\"") < text.find("\"Action\""), "{text}");
        assert!(
            text.find("\"Version\"") < text.find("\"Statement\""),
            "{text}"
        );

        let org = outbound_to_gcp(Some("o-a1b2c3d4e5"));
        org.validate().unwrap();
        assert!(org
            .source
            .attribute_condition()
            .ends_with(" && assertion['https://sts.amazonaws.com/'].org_id == 'o-a1b2c3d4e5'"));
        assert_eq!(
            outbound_to_gcp(Some("o-x")).validate().unwrap_err().flag,
            "--aws-org-id"
        );
    }

    #[test]
    fn a_subject_google_cannot_take_is_refused() {
        let mut plan = outbound_to_gcp(None);
        plan.source = OidcSource::Kubernetes {
            issuer: "https://c.example".into(),
            namespace: "payments".into(),
            service_account: "a".repeat(120),
        };
        let e = plan.validate().unwrap_err();
        assert_eq!(e.flag, "--k8s-service-account");
        assert!(e.fix.contains("127"), "{e}");
        assert_eq!(plan.display_name().chars().count(), 100);
    }

    #[test]
    fn inputs_are_checked_where_they_enter() {
        let bad = |source: OidcSource, flag: &str| {
            let e = source.validate().unwrap_err();
            assert_eq!(e.flag, flag, "{e}");
        };
        bad(
            OidcSource::Github {
                repo: "my-org/*".into(),
                pin: GithubPin::Ref("refs/heads/main".into()),
            },
            "--github-repo",
        );
        bad(
            OidcSource::Github {
                repo: "my-org/r".into(),
                pin: GithubPin::Ref("main".into()),
            },
            "--github-ref",
        );
        bad(
            OidcSource::Kubernetes {
                issuer: "https://c.example".into(),
                namespace: "Payments".into(),
                service_account: "app".into(),
            },
            "--namespace",
        );
        bad(
            OidcSource::Kubernetes {
                issuer: "http://c.example".into(),
                namespace: "payments".into(),
                service_account: "app".into(),
            },
            "--k8s-issuer",
        );
        bad(
            OidcSource::AwsOutbound {
                issuer: "https://example.com".into(),
                account: "123456789012".into(),
                role: "r".into(),
                org_id: None,
            },
            "--aws-issuer",
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::policy::cel::CelExpression;
    use crate::policy::issuer::google_sts::{assertion_variables, AttributeMapping};
    use proptest::prelude::*;

    /// Values around the valid shapes and anything at all.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9][a-z0-9.-]{0,12}",
            "[A-Za-z0-9_.-]{1,8}/[A-Za-z0-9_.-]{1,8}",
            "refs/[a-z]{1,6}/[a-z0-9/._-]{1,10}",
            "https://[a-z0-9.-]{1,12}(/[a-z0-9]{1,6})?",
            "https://[a-z0-9]{1,8}\\.tokens\\.sts\\.global\\.api\\.aws",
            "o-[a-z0-9]{8,34}",
            "[0-9]{12}",
            any::<String>(),
            "[ -~]{0,12}",
        ]
    }

    fn source() -> impl Strategy<Value = OidcSource> {
        prop_oneof![
            (value(), value(), any::<bool>()).prop_map(|(repo, pin, is_ref)| OidcSource::Github {
                repo,
                pin: if is_ref {
                    GithubPin::Ref(pin)
                } else {
                    GithubPin::Environment(pin)
                },
            }),
            (value(), value(), value()).prop_map(|(issuer, namespace, service_account)| {
                OidcSource::Kubernetes {
                    issuer,
                    namespace,
                    service_account,
                }
            }),
            (value(), value(), value(), proptest::option::of(value())).prop_map(
                |(issuer, account, role, org_id)| OidcSource::AwsOutbound {
                    issuer,
                    account,
                    role,
                    org_id,
                }
            ),
        ]
    }

    proptest! {
        /// Any input is accepted or refused naming its flag, never a panic; whatever is accepted
        /// pins one exact subject (no wildcard, nothing that escapes a quoted string) whose
        /// Google condition and mapping parse, and admit a token with that subject.
        #[test]
        fn accepted_sources_pin_one_subject_the_condition_admits(source in source()) {
            let Ok(()) = source.validate() else {
                prop_assert!(source.validate().unwrap_err().to_string().contains("--"));
                return Ok(());
            };
            let subject = source.subject();
            prop_assert!(!subject.contains(['*', '?', '\'', '"', '\\', '\n']), "{}", subject);
            let condition = CelExpression::parse(&source.attribute_condition());
            prop_assert!(condition.is_ok(), "{}", source.attribute_condition());
            let mut claims = serde_json::json!({"iss": source.issuer(), "sub": subject});
            if let OidcSource::AwsOutbound { org_id: Some(org), .. } = &source {
                claims["https://sts.amazonaws.com/"] = serde_json::json!({"org_id": org});
            }
            let assertion = assertion_variables(claims.as_object().unwrap());
            prop_assert_eq!(condition.unwrap().evaluate(&assertion), Ok(true));
            prop_assert!(AttributeMapping::parse(&source.attribute_mapping()).is_ok());
        }
    }
}
