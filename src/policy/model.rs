//! The IAM policy document model, parsed from the JSON users write.
//!
//! IAM accepts many shapes for the same thing (a statement or a list of them, a string or a list
//! of strings, `true` or `"true"`); parsing normalises them once so the evaluator and the linter
//! see one shape. Condition values are kept as strings, as AWS does.

use serde_json::Value;

/// A policy document could not be read; the message names the element and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// The text is not JSON at all.
    #[error(
        "the policy is not valid JSON: {0}\n  hint: check quotes and commas, e.g. with `jq . FILE`"
    )]
    Json(String),
    /// The JSON does not have the shape of an IAM policy.
    #[error("the policy is malformed: {0}")]
    Malformed(String),
    /// A valid IAM feature that this evaluator does not implement.
    #[error("the policy uses {0}, which keyless does not evaluate\n  hint: rewrite it with Principal and explicit conditions")]
    Unsupported(String),
}

/// A whole policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    /// `2012-10-17` in any modern policy; kept for the linter.
    pub version: Option<String>,
    /// Statements in document order (their index names them when they have no `Sid`).
    pub statements: Vec<Statement>,
}

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants, unless a Deny also matches.
    Allow,
    /// Always wins over Allow.
    Deny,
}

/// Who a statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `"Principal": "*"` or `{"AWS": "*"}`: anyone at all.
    Any,
    /// Listed principals by kind; a request matches when its kind's list holds its id.
    Listed {
        /// Identity providers, e.g. `accounts.google.com` or an OIDC provider ARN.
        federated: Vec<String>,
        /// Accounts, users and roles (ARNs or account ids).
        aws: Vec<String>,
        /// AWS services, e.g. `ec2.amazonaws.com`.
        service: Vec<String>,
    },
}

/// Which actions a statement covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionMatcher {
    /// `Action`: the statement applies when any pattern matches.
    Action(Vec<String>),
    /// `NotAction`: the statement applies when no pattern matches.
    NotAction(Vec<String>),
}

/// `ForAnyValue:` / `ForAllValues:` — how a multi-valued context key is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    /// True when at least one request value satisfies the operator.
    ForAnyValue,
    /// True when every request value satisfies it (and when there are none).
    ForAllValues,
}

/// The comparison an operator performs, without its qualifier and `IfExists` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorBase {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    Bool,
    Null,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
}

impl OperatorBase {
    /// Negated operators are true when the key is absent (AWS: "if the policy condition requires
    /// that the key is *not* matched ... and the key is not present, the condition is true").
    pub fn is_negated(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals
                | Self::StringNotEqualsIgnoreCase
                | Self::StringNotLike
                | Self::NumericNotEquals
        )
    }

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "StringEquals" => Self::StringEquals,
            "StringNotEquals" => Self::StringNotEquals,
            "StringEqualsIgnoreCase" => Self::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Self::StringNotEqualsIgnoreCase,
            "StringLike" => Self::StringLike,
            "StringNotLike" => Self::StringNotLike,
            "Bool" => Self::Bool,
            "Null" => Self::Null,
            "NumericEquals" => Self::NumericEquals,
            "NumericNotEquals" => Self::NumericNotEquals,
            "NumericLessThan" => Self::NumericLessThan,
            "NumericLessThanEquals" => Self::NumericLessThanEquals,
            "NumericGreaterThan" => Self::NumericGreaterThan,
            "NumericGreaterThanEquals" => Self::NumericGreaterThanEquals,
            _ => return None,
        })
    }
}

/// A full condition operator such as `ForAnyValue:StringLikeIfExists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionOperator {
    /// The operator exactly as written, for explanations.
    pub name: String,
    /// `ForAnyValue:` / `ForAllValues:`, if present.
    pub qualifier: Option<SetQualifier>,
    /// The comparison.
    pub base: OperatorBase,
    /// `...IfExists`: an absent key makes the condition true.
    pub if_exists: bool,
}

impl ConditionOperator {
    /// Parses an operator name; `None` for operators IAM does not know or we do not evaluate.
    pub fn parse(name: &str) -> Option<Self> {
        let (qualifier, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), r)
        } else if let Some(r) = name.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::ForAllValues), r)
        } else {
            (None, name)
        };
        let (if_exists, base) = match rest.strip_suffix("IfExists") {
            // `Null` has no IfExists form: it is itself the existence test.
            Some(b) if b != "Null" => (true, b),
            Some(_) => return None,
            None => (false, rest),
        };
        Some(Self {
            name: name.to_string(),
            qualifier,
            base: OperatorBase::parse(base)?,
            if_exists,
        })
    }
}

/// One `operator: {key: values}` entry; the condition block is the AND of all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The operator.
    pub operator: ConditionOperator,
    /// The context key as written (keys compare case-insensitively).
    pub key: String,
    /// The accepted values (OR), as strings.
    pub values: Vec<String>,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The optional statement id, used to name it in explanations.
    pub sid: Option<String>,
    /// Allow or Deny.
    pub effect: Effect,
    /// Who it applies to; `None` when absent (identity policies have no principal).
    pub principal: Option<Principal>,
    /// Which actions it covers.
    pub actions: ActionMatcher,
    /// The conditions, all of which must hold.
    pub conditions: Vec<Condition>,
}

impl Statement {
    /// How explanations name the statement: its Sid, else its 1-based position.
    pub fn label(&self, index: usize) -> String {
        match &self.sid {
            Some(sid) if !sid.is_empty() => format!("statement \"{sid}\""),
            _ => format!("statement #{}", index + 1),
        }
    }
}

impl PolicyDocument {
    /// Parses a policy document from JSON text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Parses an already-decoded JSON value (e.g. a policy embedded in a larger document).
    pub fn from_value(value: &Value) -> Result<Self, PolicyError> {
        let obj = value
            .as_object()
            .ok_or_else(|| malformed("the document must be a JSON object with a \"Statement\""))?;
        let version = match obj.get("Version") {
            None => None,
            Some(Value::String(v)) => Some(v.clone()),
            Some(_) => {
                return Err(malformed(
                    "\"Version\" must be a string such as \"2012-10-17\"",
                ))
            }
        };
        let statements = match obj.get("Statement") {
            None => return Err(malformed("the document has no \"Statement\"")),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, s)| parse_statement(s, i))
                .collect::<Result<Vec<_>, _>>()?,
            Some(single @ Value::Object(_)) => vec![parse_statement(single, 0)?],
            Some(_) => {
                return Err(malformed(
                    "\"Statement\" must be an object or a list of objects",
                ))
            }
        };
        Ok(Self {
            version,
            statements,
        })
    }
}

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

fn parse_statement(value: &Value, index: usize) -> Result<Statement, PolicyError> {
    let at = |msg: &str| malformed(format!("statement #{}: {msg}", index + 1));
    let obj = value
        .as_object()
        .ok_or_else(|| at("must be a JSON object"))?;
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(at("\"Sid\" must be a string")),
    };
    let effect = match obj.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(other) => {
            return Err(at(&format!(
                "\"Effect\" is \"{other}\"; use \"Allow\" or \"Deny\""
            )))
        }
        None => return Err(at("\"Effect\" is missing; use \"Allow\" or \"Deny\"")),
    };
    if obj.contains_key("NotPrincipal") {
        return Err(PolicyError::Unsupported(format!(
            "NotPrincipal (statement #{})",
            index + 1
        )));
    }
    let principal = obj
        .get("Principal")
        .map(|p| parse_principal(p).map_err(|m| at(&m)))
        .transpose()?;
    let actions = match (obj.get("Action"), obj.get("NotAction")) {
        (Some(a), None) => {
            ActionMatcher::Action(string_list(a).map_err(|m| at(&format!("\"Action\" {m}")))?)
        }
        (None, Some(a)) => {
            ActionMatcher::NotAction(string_list(a).map_err(|m| at(&format!("\"NotAction\" {m}")))?)
        }
        (Some(_), Some(_)) => return Err(at("has both \"Action\" and \"NotAction\"; keep one")),
        (None, None) => {
            return Err(at(
                "has no \"Action\"; trust policies need e.g. \"sts:AssumeRoleWithWebIdentity\"",
            ))
        }
    };
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c).map_err(|m| at(&m))?,
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        actions,
        conditions,
    })
}

fn parse_principal(value: &Value) -> Result<Principal, String> {
    match value {
        Value::String(s) if s == "*" => Ok(Principal::Any),
        Value::String(s) => Err(format!("\"Principal\" is \"{s}\"; use \"*\" or an object such as {{\"Federated\": \"accounts.google.com\"}}")),
        Value::Object(map) => {
            let (mut federated, mut aws, mut service) = (Vec::new(), Vec::new(), Vec::new());
            for (kind, ids) in map {
                let ids = string_list(ids).map_err(|m| format!("\"Principal.{kind}\" {m}"))?;
                match kind.as_str() {
                    "Federated" => federated = ids,
                    "AWS" => aws = ids,
                    "Service" => service = ids,
                    "CanonicalUser" => return Err("\"Principal.CanonicalUser\" is not supported".into()),
                    other => return Err(format!("unknown principal kind \"{other}\"; use Federated, AWS or Service")),
                }
            }
            if aws.iter().any(|a| a == "*") {
                return Ok(Principal::Any);
            }
            Ok(Principal::Listed { federated, aws, service })
        }
        _ => Err("\"Principal\" must be \"*\" or an object".into()),
    }
}

fn parse_conditions(value: &Value) -> Result<Vec<Condition>, String> {
    let ops = value
        .as_object()
        .ok_or("\"Condition\" must be an object of operators")?;
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let operator = ConditionOperator::parse(op_name).ok_or_else(|| {
            format!("unknown or unsupported condition operator \"{op_name}\" (e.g. StringEquals, StringLike, Bool, Null)")
        })?;
        let keys = keys
            .as_object()
            .ok_or_else(|| format!("\"{op_name}\" must map condition keys to values"))?;
        for (key, values) in keys {
            let values = string_list(values).map_err(|m| format!("\"{op_name}\".\"{key}\" {m}"))?;
            out.push(Condition {
                operator: operator.clone(),
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

/// A string, bool or number, or a list of them, as strings (AWS keeps `true` and `"true"` alike).
fn string_list(value: &Value) -> Result<Vec<String>, String> {
    fn scalar(v: &Value) -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err("must be a string, a boolean, a number or a list of them".into()),
        }
    }
    match value {
        Value::Array(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_google_trust_policy() {
        let doc = PolicyDocument::parse(
            r#"{"Version":"2012-10-17","Statement":{"Sid":"Google","Effect":"Allow",
                "Principal":{"Federated":"accounts.google.com"},
                "Action":"sts:AssumeRoleWithWebIdentity",
                "Condition":{"StringEquals":{"accounts.google.com:aud":["1","2"],"accounts.google.com:oaud":"sts.amazonaws.com"},
                             "Bool":{"aws:SecureTransport":true},"NumericLessThan":{"x":42}}}}"#,
        )
        .unwrap();
        assert_eq!(doc.version.as_deref(), Some("2012-10-17"));
        let st = &doc.statements[0];
        assert_eq!(st.effect, Effect::Allow);
        assert_eq!(
            st.principal,
            Some(Principal::Listed {
                federated: vec!["accounts.google.com".into()],
                aws: vec![],
                service: vec![]
            })
        );
        assert_eq!(
            st.actions,
            ActionMatcher::Action(vec!["sts:AssumeRoleWithWebIdentity".into()])
        );
        let aud = st
            .conditions
            .iter()
            .find(|c| c.key == "accounts.google.com:aud")
            .unwrap();
        assert_eq!(aud.values, vec!["1", "2"]);
        let b = st
            .conditions
            .iter()
            .find(|c| c.key == "aws:SecureTransport")
            .unwrap();
        assert_eq!(b.values, vec!["true"], "booleans are kept as strings");
        let n = st.conditions.iter().find(|c| c.key == "x").unwrap();
        assert_eq!(n.values, vec!["42"], "numbers are kept as strings");
        assert_eq!(st.label(0), "statement \"Google\"");
    }

    #[test]
    fn statement_list_and_not_action() {
        let doc = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Deny","Principal":"*","NotAction":["s3:*"]},
                             {"Effect":"Allow","Principal":{"AWS":"*"},"Action":"*"}]}"#,
        )
        .unwrap();
        assert_eq!(doc.statements.len(), 2);
        assert_eq!(
            doc.statements[0].actions,
            ActionMatcher::NotAction(vec!["s3:*".into()])
        );
        assert_eq!(doc.statements[1].principal, Some(Principal::Any));
        assert_eq!(doc.statements[1].label(1), "statement #2");
    }

    #[test]
    fn operator_names_parse_with_qualifiers_and_if_exists() {
        let op = ConditionOperator::parse("ForAnyValue:StringLikeIfExists").unwrap();
        assert_eq!(op.qualifier, Some(SetQualifier::ForAnyValue));
        assert_eq!(op.base, OperatorBase::StringLike);
        assert!(op.if_exists);
        let op = ConditionOperator::parse("ForAllValues:StringNotEquals").unwrap();
        assert_eq!(op.qualifier, Some(SetQualifier::ForAllValues));
        assert!(op.base.is_negated() && !op.if_exists);
        assert!(ConditionOperator::parse("NullIfExists").is_none());
        assert!(ConditionOperator::parse("StringEqual").is_none());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = PolicyDocument::parse("{not json").unwrap_err();
        assert!(matches!(err, PolicyError::Json(_)));
        let err =
            PolicyDocument::parse(r#"{"Statement":{"Effect":"Permit","Action":"*"}}"#).unwrap_err();
        assert!(
            err.to_string().contains("\"Effect\" is \"Permit\""),
            "{err}"
        );
        let err = PolicyDocument::parse(r#"{"Statement":{"Effect":"Allow"}}"#).unwrap_err();
        assert!(err.to_string().contains("has no \"Action\""), "{err}");
        let err = PolicyDocument::parse(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Condition":{"StringEqualz":{"a":"b"}}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("StringEqualz"), "{err}");
        let err = PolicyDocument::parse(
            r#"{"Statement":{"Effect":"Allow","Action":"*","NotPrincipal":"*"}}"#,
        )
        .unwrap_err();
        assert!(matches!(err, PolicyError::Unsupported(_)), "{err}");
        let err = PolicyDocument::parse(r#"{"Statement":{"Effect":"Allow","Action":{"x":1}}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("\"Action\" must be"), "{err}");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::policy::{evaluate, ConditionContext, Request, RequestPrincipal};
    use proptest::prelude::*;

    /// JSON built from IAM's vocabulary, nested and typed at random.
    fn iam_json() -> impl Strategy<Value = Value> {
        let word = prop::sample::select(vec![
            "Version",
            "Statement",
            "Sid",
            "Effect",
            "Allow",
            "Deny",
            "Principal",
            "NotPrincipal",
            "Federated",
            "AWS",
            "Service",
            "CanonicalUser",
            "*",
            "Action",
            "NotAction",
            "sts:AssumeRoleWithWebIdentity",
            "sts:*",
            "Condition",
            "StringEquals",
            "StringLike",
            "StringNotEqualsIfExists",
            "ForAllValues:StringEquals",
            "ForAnyValue:StringLike",
            "Null",
            "Bool",
            "NumericLessThan",
            "DateGreaterThan",
            "ArnLike",
            "IpAddress",
            "accounts.google.com",
            "accounts.google.com:aud",
            "accounts.google.com:sub",
            "accounts.google.com:oaud",
            "aws:SourceIp",
            "true",
            "1",
            "",
        ])
        .prop_map(String::from);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            word.clone().prop_map(Value::String),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((word.clone(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any IAM-shaped JSON: a policy or an error; a policy evaluates for any request, and
        /// one without an Allow allows nothing.
        #[test]
        fn any_json_is_a_policy_or_an_error(doc in iam_json(), statements in prop::collection::vec(iam_json(), 0..3)) {
            for value in [doc.clone(), serde_json::json!({"Statement": statements})] {
                let Ok(policy) = PolicyDocument::from_value(&value) else { continue };
                let mut context = ConditionContext::new("test");
                context.insert("accounts.google.com:aud", vec!["1".into()], None);
                context.insert("accounts.google.com:sub", vec!["1".into(), "*".into()], None);
                for principal in [
                    RequestPrincipal::Federated("accounts.google.com".into()),
                    RequestPrincipal::Aws("arn:aws:iam::123456789012:root".into()),
                ] {
                    let request = Request { principal, action: "sts:AssumeRoleWithWebIdentity", context: &context };
                    let decision = evaluate(&policy, &request);
                    let _ = decision.explain();
                    if policy.statements.iter().all(|s| s.effect == Effect::Deny) {
                        prop_assert!(!decision.is_allowed());
                    }
                }
            }
        }

        /// Any text at all.
        #[test]
        fn any_text_is_a_policy_or_an_error(text in any::<String>()) {
            let _ = PolicyDocument::parse(&text);
        }
    }
}
