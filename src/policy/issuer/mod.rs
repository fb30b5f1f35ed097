//! Any issuer's ID token: the claims keyless reads, and the AWS condition keys they become.
//!
//! AWS names a web identity token's condition keys after its issuer: `accounts.google.com:aud`,
//! `:oaud` and `:sub` for Google ([`super::google`], where `aud` is the token's `azp`), and
//! `HOST/PATH:aud` and `HOST/PATH:sub` for any other OIDC issuer (an EKS cluster, GitHub
//! Actions), whose IAM OIDC provider `arn:aws:iam::ACCOUNT:oidc-provider/HOST/PATH` is the
//! trust policy's principal. A token's `aud` is a string or an array (Kubernetes projected
//! service-account tokens carry `["sts.amazonaws.com"]`), so [`Audience`] is one or many
//! wherever claims are decoded: the sources, the doctor, the lab.

pub mod google_sts;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::evaluate::ConditionContext;
use super::google::{self, GOOGLE_PROVIDER};

/// A token's `aud`: one string, or an array of them (RFC 7519 §4.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "sts.amazonaws.com"` (Google's tokens).
    One(String),
    /// `"aud": ["sts.amazonaws.com", ...]` (Kubernetes projected tokens).
    Many(Vec<String>),
}

impl Audience {
    /// Every audience the token names.
    pub fn values(&self) -> &[String] {
        match self {
            Self::One(aud) => std::slice::from_ref(aud),
            Self::Many(auds) => auds,
        }
    }

    /// Whether the token names `audience` among its audiences.
    pub fn contains(&self, audience: &str) -> bool {
        self.values().iter().any(|a| a == audience)
    }
}

impl From<&str> for Audience {
    fn from(aud: &str) -> Self {
        Self::One(aud.to_string())
    }
}

impl From<String> for Audience {
    fn from(aud: String) -> Self {
        Self::One(aud)
    }
}

impl std::fmt::Display for Audience {
    /// A string as itself; an array as `[a, b]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(aud) => f.write_str(aud),
            Self::Many(auds) => write!(f, "[{}]", auds.join(", ")),
        }
    }
}

impl PartialEq<str> for Audience {
    /// True when `other` is the token's only audience, whichever way it is written.
    fn eq(&self, other: &str) -> bool {
        matches!(self.values(), [only] if only == other)
    }
}

impl PartialEq<&str> for Audience {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

/// The claims keyless reads from an ID token (never verified here: the target cloud verifies).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub iss: String,
    pub aud: Audience,
    #[serde(default)]
    pub azp: Option<String>,
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    pub exp: i64,
    #[serde(default)]
    pub iat: Option<i64>,
}

impl IdTokenClaims {
    /// One line naming the claims AWS matches, for error messages and the demo.
    pub fn summary(&self) -> String {
        format!(
            "iss={} aud={} azp={} sub={}{}",
            self.iss,
            self.aud,
            self.azp.as_deref().unwrap_or("(none)"),
            self.sub,
            self.email
                .as_deref()
                .map(|e| format!(" email={e}"))
                .unwrap_or_default()
        )
    }

    /// The claims as a JSON object (`aud` as the token wrote it): what the condition-key
    /// mappings read.
    pub fn to_json_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("iss".into(), self.iss.clone().into());
        let aud = serde_json::to_value(&self.aud).unwrap_or(Value::Null);
        map.insert("aud".into(), aud);
        if let Some(azp) = &self.azp {
            map.insert("azp".into(), azp.clone().into());
        }
        map.insert("sub".into(), self.sub.clone().into());
        if let Some(email) = &self.email {
            map.insert("email".into(), email.clone().into());
        }
        map.insert("exp".into(), self.exp.into());
        map
    }

    /// When the token stops being accepted.
    pub fn expires_at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.exp).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Who issued the token, and so how AWS names its condition keys.
    pub fn issuer(&self) -> Issuer {
        Issuer::of(&self.iss)
    }

    /// The AWS condition context STS evaluates the role's trust policy with for this token.
    pub fn condition_context(&self) -> ConditionContext {
        condition_context(&self.to_json_map())
    }

    /// [`Issuer::keys_hint`], and for GitHub Actions and Kubernetes tokens what their subjects
    /// look like and how a trust policy matches them: the hint of a refusal.
    pub fn trust_hint(&self) -> String {
        let issuer = self.issuer();
        let mut hint = issuer.keys_hint();
        if let Some(shape) = issuer.subject_hint(&self.sub) {
            hint.push_str("; ");
            hint.push_str(&shape);
        }
        hint
    }
}

/// GitHub Actions' issuer as AWS names it (`https://token.actions.githubusercontent.com`; an
/// enterprise with a custom issuer adds `/ENTERPRISE`).
pub const GITHUB_ACTIONS_PROVIDER: &str = "token.actions.githubusercontent.com";

/// The issuer of a token as AWS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issuer {
    /// `https://accounts.google.com`: AWS's built-in provider `accounts.google.com`.
    Google,
    /// Any other OIDC issuer, by `HOST/PATH` (its URL without `https://` or a trailing `/`):
    /// the name of its IAM OIDC provider and the prefix of its condition keys.
    Oidc { provider: String },
}

impl Issuer {
    /// The issuer of a token whose `iss` is `iss`.
    pub fn of(iss: &str) -> Self {
        let trimmed = iss.trim();
        let without_scheme = trimmed.strip_prefix("https://").unwrap_or(trimmed);
        let provider = without_scheme.trim_end_matches('/');
        if provider.eq_ignore_ascii_case(GOOGLE_PROVIDER) {
            Self::Google
        } else {
            Self::Oidc {
                provider: provider.to_string(),
            }
        }
    }

    /// The trust policy's `Federated` principal for tokens of this issuer in `account`.
    pub fn federated_principal(&self, account: &str) -> String {
        match self {
            Self::Google => GOOGLE_PROVIDER.to_string(),
            Self::Oidc { provider } => format!("arn:aws:iam::{account}:oidc-provider/{provider}"),
        }
    }

    /// What a trust policy compares, for the hint of a refusal: which key holds which claim.
    pub fn keys_hint(&self) -> String {
        match self {
            Self::Google => format!(
                "AWS compares {k}:aud with the token's azp, {k}:oaud with its aud and {k}:sub with its sub; \
                 the role's trust policy must name these values (see `keyless demo` for a working policy)",
                k = GOOGLE_PROVIDER
            ),
            Self::Oidc { provider } => format!(
                "AWS compares {provider}:aud with the token's aud and {provider}:sub with its sub; \
                 the role's trust policy must trust the IAM OIDC provider \
                 arn:aws:iam::ACCOUNT:oidc-provider/{provider} and name these values"
            ),
        }
    }

    /// What subjects of this issuer look like, when it is one whose subjects have a known
    /// shape (GitHub Actions, a Kubernetes cluster), with the token's own `sub`.
    pub fn subject_hint(&self, sub: &str) -> Option<String> {
        let Self::Oidc { provider } = self else {
            return None;
        };
        if provider.starts_with(GITHUB_ACTIONS_PROVIDER) || sub.starts_with("repo:") {
            Some(format!(
                "GitHub Actions subjects look like repo:ORG/REPO:ref:refs/heads/main, \
                 repo:ORG/REPO:environment:NAME or repo:ORG/REPO:pull_request (this token's is {sub}): \
                 match {provider}:sub with StringLike (e.g. repo:ORG/REPO:*) and pin {provider}:aud \
                 to sts.amazonaws.com"
            ))
        } else if sub.starts_with("system:serviceaccount:") {
            Some(format!(
                "Kubernetes subjects are system:serviceaccount:NAMESPACE:NAME (this token's is {sub}): \
                 pin {provider}:sub to it and {provider}:aud to the audience the token is projected \
                 for (sts.amazonaws.com)"
            ))
        } else {
            None
        }
    }

    /// Why STS may not verify a token of this issuer, for `InvalidIdentityToken`.
    pub fn verification_hint(&self) -> String {
        match self {
            Self::Google => "STS could not verify the token: AWS needs an RS256 token from https://accounts.google.com; \
                             the IAM OIDC provider for accounts.google.com is built in, but a custom provider's \
                             thumbprint or audience list may not match"
                .to_string(),
            Self::Oidc { provider } => format!(
                "STS could not verify the token: the role's account needs an IAM OIDC provider for \
                 https://{provider} whose audience (client ID) list holds one of the token's aud values, \
                 and STS must be able to fetch the issuer's discovery document and keys \
                 (`aws iam list-open-id-connect-providers`)"
            ),
        }
    }
}

/// The AWS condition context for a token's `claims`, keyed as AWS keys its issuer: Google's
/// mapping for `accounts.google.com`, `HOST/PATH:aud` (every audience) and `HOST/PATH:sub`
/// for any other issuer.
pub fn condition_context(claims: &Map<String, Value>) -> ConditionContext {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let provider = match Issuer::of(iss) {
        Issuer::Google => return google::condition_context(claims),
        Issuer::Oidc { provider } => provider,
    };
    let mut ctx = ConditionContext::new("the token");
    let aud = audiences(claims);
    if !aud.is_empty() {
        ctx.insert(&format!("{provider}:aud"), aud, Some("the token's aud"));
    }
    if let Some(sub) = claims.get("sub").and_then(Value::as_str) {
        ctx.insert(
            &format!("{provider}:sub"),
            vec![sub.to_string()],
            Some("the token's sub"),
        );
    }
    ctx
}

/// A token's audiences, whether `aud` is a string or an array (other values are ignored).
pub fn audiences(claims: &Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EKS: &str = "oidc.eks.us-east-1.amazonaws.com/id/ABC123";

    fn claims(v: Value) -> IdTokenClaims {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn aud_is_one_or_many() {
        let one =
            claims(json!({"iss": "https://accounts.google.com", "aud": "a", "sub": "1", "exp": 1}));
        assert_eq!(one.aud, Audience::One("a".into()));
        assert_eq!(one.aud, "a");
        let many = claims(json!({"iss": "https://x", "aud": ["a", "b"], "sub": "1", "exp": 1}));
        assert_eq!(many.aud.values(), ["a", "b"]);
        assert!(many.aud.contains("b") && !many.aud.contains("c"));
        assert_eq!(many.aud.to_string(), "[a, b]");
        assert_ne!(many.aud, "a");
        assert_eq!(Audience::Many(vec!["a".into()]), "a");
        assert!(serde_json::from_value::<IdTokenClaims>(
            json!({"iss": "x", "aud": 7, "sub": "1", "exp": 1})
        )
        .is_err());
    }

    #[test]
    fn issuers_are_google_or_an_oidc_provider_by_host_and_path() {
        assert_eq!(Issuer::of("https://accounts.google.com"), Issuer::Google);
        assert_eq!(Issuer::of("accounts.google.com"), Issuer::Google);
        let eks = Issuer::of(&format!("https://{EKS}/"));
        assert_eq!(
            eks,
            Issuer::Oidc {
                provider: EKS.into()
            }
        );
        assert_eq!(
            eks.federated_principal("123456789012"),
            format!("arn:aws:iam::123456789012:oidc-provider/{EKS}")
        );
        assert_eq!(
            Issuer::Google.federated_principal("123456789012"),
            "accounts.google.com"
        );
    }

    #[test]
    fn other_issuers_get_host_path_keys_with_every_audience() {
        let token = claims(json!({
            "iss": format!("https://{EKS}"), "aud": ["sts.amazonaws.com", "other"],
            "sub": "system:serviceaccount:default:deployer", "exp": 1
        }));
        let ctx = token.condition_context();
        assert_eq!(
            ctx.values(&format!("{EKS}:aud")),
            Some(&["sts.amazonaws.com".to_string(), "other".to_string()][..])
        );
        assert_eq!(
            ctx.values(&format!("{EKS}:sub")),
            Some(&["system:serviceaccount:default:deployer".to_string()][..])
        );
        assert_eq!(ctx.values(google::KEY_OAUD), None);
        let hint = token.issuer().keys_hint();
        assert!(hint.contains(&format!("{EKS}:sub")), "{hint}");
        assert!(!hint.contains("accounts.google.com"), "{hint}");
    }

    /// Refusals of GitHub Actions and Kubernetes tokens say what their subjects look like.
    #[test]
    fn github_and_kubernetes_hints_show_the_subject_shapes() {
        let github = claims(json!({
            "iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
            "sub": "repo:octo/app:ref:refs/heads/main", "exp": 1
        }));
        let hint = github.trust_hint();
        assert!(
            hint.contains("token.actions.githubusercontent.com:sub with StringLike"),
            "{hint}"
        );
        assert!(hint.contains("repo:ORG/REPO:environment:NAME"), "{hint}");
        assert!(
            hint.contains("this token's is repo:octo/app:ref:refs/heads/main"),
            "{hint}"
        );
        assert!(
            hint.contains("oidc-provider/token.actions.githubusercontent.com"),
            "{hint}"
        );
        let k8s = claims(json!({
            "iss": format!("https://{EKS}"), "aud": ["sts.amazonaws.com"],
            "sub": "system:serviceaccount:default:deployer", "exp": 1
        }));
        let hint = k8s.trust_hint();
        assert!(
            hint.contains("system:serviceaccount:NAMESPACE:NAME"),
            "{hint}"
        );
        assert!(hint.contains(&format!("pin {EKS}:sub")), "{hint}");
        let other = claims(json!({"iss": "https://idp.example", "aud": "a", "sub": "x", "exp": 1}));
        assert_eq!(other.trust_hint(), other.issuer().keys_hint());
    }

    #[test]
    fn google_tokens_with_an_array_aud_keep_googles_mapping() {
        let token = claims(json!({
            "iss": "https://accounts.google.com", "aud": ["sts.amazonaws.com"],
            "azp": "42", "sub": "42", "exp": 1
        }));
        let ctx = token.condition_context();
        assert_eq!(
            ctx.values(google::KEY_OAUD),
            Some(&["sts.amazonaws.com".to_string()][..])
        );
        assert_eq!(ctx.values(google::KEY_AUD), Some(&["42".to_string()][..]));
        assert!(token
            .issuer()
            .keys_hint()
            .contains("accounts.google.com:oaud"));
    }
}
