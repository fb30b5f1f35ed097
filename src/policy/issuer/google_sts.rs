//! THE mapping Google STS applies to an OIDC token: the token's claims become `assertion`, the
//! provider's attribute mapping (CEL over `assertion`) makes `google.subject` and
//! `attribute.NAME`, and the attribute condition (CEL over all three) admits or refuses.
//!
//! Nested claims are reached as CEL does: `assertion['https://sts.amazonaws.com/'].aws_account`
//! (AWS outbound federation's tokens), `assertion.repository` (GitHub Actions). `google.subject`
//! may be at most 127 bytes: Google refuses the exchange otherwise, so a mapping of a long claim
//! (a Kubernetes `sub`, an ARN) must be shortened. An AWS-signed subject has its own mapping
//! ([`crate::policy::workload_identity::aws_default_mapping`], over `assertion.arn` and
//! `assertion.account`). The lab, `keyless doctor gcp` and `keyless lint` share these functions.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::policy::cel::{assertion_key, CelError, CelExpression, CelVariables};

/// Google's limit on `google.subject`, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 127;

/// How deep nested claims are flattened into `assertion` variables.
const MAX_CLAIM_DEPTH: usize = 4;

/// What a token becomes in the pool: its subject and attributes (without `attribute.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedIdentity {
    pub subject: String,
    pub attributes: BTreeMap<String, String>,
}

impl FederatedIdentity {
    /// The variables an attribute condition sees: `google.subject`, `attribute.*` and the
    /// `assertion` it was mapped from.
    pub fn cel_variables(&self, assertion: &CelVariables) -> CelVariables {
        let mut vars = assertion.clone();
        vars.extend(
            self.attributes
                .iter()
                .map(|(k, v)| (format!("attribute.{k}"), v.clone())),
        );
        vars.insert("google.subject".into(), self.subject.clone());
        vars
    }
}

/// Why a token could not be mapped; each names what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A target is neither `google.subject` nor `attribute.NAME`.
    #[error("the attribute mapping assigns {target}, which is neither google.subject nor attribute.NAME")]
    UnknownTarget { target: String },
    /// A mapping expression is not in keyless's CEL subset.
    #[error("the attribute mapping of {target} (`{expression}`) cannot be read: {error}")]
    Parse {
        target: String,
        expression: String,
        error: CelError,
    },
    /// The mapping has no `google.subject`.
    #[error("the attribute mapping has no google.subject (Google requires one; the usual one is google.subject=assertion.sub)")]
    NoSubject,
    /// A mapping expression failed on this token (a claim it needs is missing...).
    #[error("the attribute mapping of {target} (`{expression}`) failed on this token: {error}")]
    Evaluate {
        target: String,
        expression: String,
        error: CelError,
    },
    /// `google.subject` came out longer than Google allows.
    #[error("the mapped google.subject is {bytes} bytes, more than the {MAX_SUBJECT_BYTES} Google allows\n  hint: map google.subject to a shorter claim or a part of it")]
    SubjectTooLong { bytes: usize },
}

/// A provider's attribute mapping: targets (`google.subject`, `attribute.NAME`) and the CEL
/// expressions that compute them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMapping {
    entries: Vec<(String, CelExpression)>,
}

impl AttributeMapping {
    /// Parses `target = expression` pairs; every expression must be in the CEL subset.
    pub fn parse<T: AsRef<str>, E: AsRef<str>>(pairs: &[(T, E)]) -> Result<Self, MappingError> {
        let mut entries = Vec::new();
        for (target, expression) in pairs {
            let (target, expression) = (target.as_ref().trim(), expression.as_ref());
            let valid = target == "google.subject"
                || target
                    .strip_prefix("attribute.")
                    .is_some_and(|n| !n.is_empty());
            if !valid {
                return Err(MappingError::UnknownTarget {
                    target: target.to_string(),
                });
            }
            let parsed = CelExpression::parse(expression).map_err(|error| MappingError::Parse {
                target: target.to_string(),
                expression: expression.to_string(),
                error,
            })?;
            entries.push((target.to_string(), parsed));
        }
        if !entries.iter().any(|(t, _)| t == "google.subject") {
            return Err(MappingError::NoSubject);
        }
        Ok(Self { entries })
    }

    /// What an OIDC provider maps when told nothing else: `google.subject=assertion.sub`.
    pub fn oidc_default() -> Self {
        Self::parse(&[("google.subject", "assertion.sub")]).expect("the default mapping parses")
    }

    /// The targets and expressions, as written.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(t, e)| (t.as_str(), e.source()))
    }

    /// Maps a token's `assertion` ([`assertion_variables`]).
    pub fn apply(&self, assertion: &CelVariables) -> Result<FederatedIdentity, MappingError> {
        let mut subject = None;
        let mut attributes = BTreeMap::new();
        for (target, expression) in &self.entries {
            let value =
                expression
                    .evaluate_string(assertion)
                    .map_err(|error| MappingError::Evaluate {
                        target: target.clone(),
                        expression: expression.source().to_string(),
                        error,
                    })?;
            match target.strip_prefix("attribute.") {
                Some(name) => {
                    attributes.insert(name.to_string(), value);
                }
                None => subject = Some(value),
            }
        }
        let subject = subject.ok_or(MappingError::NoSubject)?;
        if subject.len() > MAX_SUBJECT_BYTES {
            return Err(MappingError::SubjectTooLong {
                bytes: subject.len(),
            });
        }
        Ok(FederatedIdentity {
            subject,
            attributes,
        })
    }
}

/// A token's claims as CEL's `assertion`: every string claim, nested objects flattened
/// (`assertion['https://sts.amazonaws.com/'].aws_account`). Lists, numbers and booleans are
/// left out: the CEL subset compares strings only, so a condition on them fails to evaluate
/// (refused), never passes.
pub fn assertion_variables(claims: &Map<String, Value>) -> CelVariables {
    fn walk(path: &mut Vec<String>, value: &Value, out: &mut CelVariables) {
        match value {
            Value::String(s) => {
                out.insert(assertion_key(path), s.clone());
            }
            Value::Object(map) if path.len() < MAX_CLAIM_DEPTH => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(path, v, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = CelVariables::new();
    let mut path = Vec::new();
    for (k, v) in claims {
        path.push(k.clone());
        walk(&mut path, v, &mut out);
        path.pop();
    }
    out
}

/// The audiences an OIDC provider accepts: its `allowedAudiences`, or when it lists none, its
/// own resource name with and without `https://iam.googleapis.com/` in front
/// (`//iam.googleapis.com/projects/...` and `https://iam.googleapis.com/projects/...`).
pub fn accepted_audiences(provider_resource: &str, allowed_audiences: &[String]) -> Vec<String> {
    if !allowed_audiences.is_empty() {
        return allowed_audiences.to_vec();
    }
    let name = provider_resource.trim_start_matches("//iam.googleapis.com/");
    vec![
        format!("//iam.googleapis.com/{name}"),
        format!("https://iam.googleapis.com/{name}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_default_mapping_takes_sub_and_nested_claims_are_reachable() {
        let assertion = assertion_variables(&claims(json!({
            "iss": "https://abc.tokens.sts.global.api.aws",
            "sub": "arn:aws:iam::123456789012:role/app",
            "exp": 1, "email_verified": true,
            "https://sts.amazonaws.com/": {"aws_account": "123456789012", "org_id": "o-1"}
        })));
        assert_eq!(
            assertion["assertion['https://sts.amazonaws.com/'].aws_account"],
            "123456789012"
        );
        assert!(!assertion.contains_key("assertion.exp"), "{assertion:?}");
        let identity = AttributeMapping::oidc_default().apply(&assertion).unwrap();
        assert_eq!(identity.subject, "arn:aws:iam::123456789012:role/app");

        let mapping = AttributeMapping::parse(&[
            ("google.subject", "assertion.sub"),
            (
                "attribute.aws_account",
                "assertion['https://sts.amazonaws.com/'].aws_account",
            ),
        ])
        .unwrap();
        let identity = mapping.apply(&assertion).unwrap();
        assert_eq!(identity.attributes["aws_account"], "123456789012");
        let condition = CelExpression::parse(
            "attribute.aws_account == '123456789012' && assertion['https://sts.amazonaws.com/'].org_id.startsWith('o-')",
        )
        .unwrap();
        assert_eq!(
            condition.evaluate(&identity.cel_variables(&assertion)),
            Ok(true)
        );
    }

    #[test]
    fn github_attributes_map_and_an_absent_claim_names_the_target() {
        let assertion = assertion_variables(&claims(json!({
            "sub": "repo:keyless-lab/app:ref:refs/heads/main",
            "repository": "keyless-lab/app", "repository_owner": "keyless-lab"
        })));
        let mapping = AttributeMapping::parse(&[
            ("google.subject", "assertion.sub"),
            ("attribute.repository", "assertion['repository']"),
        ])
        .unwrap();
        assert_eq!(
            mapping.apply(&assertion).unwrap().attributes["repository"],
            "keyless-lab/app"
        );
        let missing = AttributeMapping::parse(&[
            ("google.subject", "assertion.sub"),
            ("attribute.env", "assertion.environment"),
        ])
        .unwrap()
        .apply(&assertion)
        .unwrap_err();
        assert!(missing.to_string().contains("attribute.env"), "{missing}");
    }

    #[test]
    fn a_subject_over_127_bytes_and_bad_mappings_are_refused() {
        let long = "system:serviceaccount:".to_string() + &"n".repeat(120);
        let assertion = assertion_variables(&claims(json!({ "sub": long })));
        assert_eq!(
            AttributeMapping::oidc_default().apply(&assertion),
            Err(MappingError::SubjectTooLong { bytes: long.len() })
        );
        let exact = "s".repeat(MAX_SUBJECT_BYTES);
        let assertion = assertion_variables(&claims(json!({ "sub": exact })));
        assert!(AttributeMapping::oidc_default().apply(&assertion).is_ok());
        assert_eq!(
            AttributeMapping::parse(&[("attribute.x", "assertion.sub")]),
            Err(MappingError::NoSubject)
        );
        assert!(matches!(
            AttributeMapping::parse(&[("google.groups", "assertion.sub")]),
            Err(MappingError::UnknownTarget { .. })
        ));
    }

    #[test]
    fn default_audiences_are_the_provider_name_with_and_without_https() {
        let provider =
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";
        assert_eq!(
            accepted_audiences(provider, &[]),
            [
                provider.to_string(),
                "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x".to_string()
            ]
        );
        assert_eq!(
            accepted_audiences(provider, &["sts.googleapis.com".to_string()]),
            ["sts.googleapis.com"]
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::policy::cel::assertion_key;
    use proptest::prelude::*;

    /// Claims as tokens carry them: strings, numbers, lists and nested objects, any keys.
    fn claims() -> impl Strategy<Value = Map<String, Value>> {
        let leaf = prop_oneof![
            any::<String>().prop_map(Value::String),
            "[a-z0-9:/._-]{0,20}".prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        proptest::collection::btree_map(
            prop_oneof![any::<String>(), "[a-z_]{1,8}", Just("sub".to_string())],
            value,
            0..6,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// Any claims: every top-level string claim is the `assertion` variable of its path,
        /// which a condition reaches however its key is spelt; the default mapping takes `sub`
        /// exactly when it is a string within Google's limit.
        #[test]
        fn every_string_claim_is_reachable_and_the_subject_is_bounded(claims in claims()) {
            let assertion = assertion_variables(&claims);
            for (key, value) in &claims {
                if let Value::String(value) = value {
                    let name = assertion_key(&[key]);
                    prop_assert_eq!(assertion.get(&name), Some(value));
                    let literal = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
                    let condition = format!("assertion[{}] == {}", literal(key), literal(value));
                    let parsed = CelExpression::parse(&condition);
                    if condition.len() < 2000 {
                        prop_assert!(parsed.is_ok(), "{}", condition);
                        prop_assert_eq!(parsed.unwrap().evaluate(&assertion), Ok(true));
                    }
                }
            }
            match (AttributeMapping::oidc_default().apply(&assertion), claims.get("sub")) {
                (Ok(identity), Some(Value::String(sub))) => {
                    prop_assert_eq!(&identity.subject, sub);
                    prop_assert!(sub.len() <= MAX_SUBJECT_BYTES);
                }
                (Ok(identity), other) => prop_assert!(false, "mapped {:?} from {:?}", identity, other),
                (Err(MappingError::SubjectTooLong { bytes }), Some(Value::String(sub))) => {
                    prop_assert_eq!(bytes, sub.len());
                    prop_assert!(bytes > MAX_SUBJECT_BYTES);
                }
                (Err(MappingError::Evaluate { .. }), sub) => prop_assert!(!matches!(sub, Some(Value::String(_)))),
                (Err(e), _) => prop_assert!(false, "{}", e),
            }
        }

        /// Any `TARGET = EXPRESSION` pairs: a mapping or an error naming the target, never a
        /// panic; a parsed mapping keeps its entries as written.
        #[test]
        fn any_mapping_parses_or_names_its_target(
            pairs in proptest::collection::vec((prop_oneof![Just("google.subject".to_string()), "attribute\\.[a-z_]{0,6}", any::<String>()], prop_oneof![Just("assertion.sub".to_string()), "assertion\\[?'?[a-z.:/]{0,8}'?\\]?", any::<String>()]), 0..4),
        ) {
            match AttributeMapping::parse(&pairs) {
                Ok(mapping) => {
                    let written: Vec<(String, String)> = pairs.iter().map(|(t, e)| (t.trim().to_string(), e.clone())).collect();
                    let entries: Vec<(String, String)> = mapping.entries().map(|(t, e)| (t.to_string(), e.to_string())).collect();
                    prop_assert_eq!(entries, written);
                }
                Err(MappingError::UnknownTarget { target } | MappingError::Parse { target, .. }) => {
                    prop_assert!(pairs.iter().any(|(t, _)| t.trim() == target));
                }
                Err(MappingError::NoSubject) => prop_assert!(pairs.iter().all(|(t, _)| t.trim() != "google.subject")),
                Err(e) => prop_assert!(false, "{}", e),
            }
        }
    }
}
