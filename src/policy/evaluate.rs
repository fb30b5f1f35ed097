//! Evaluating a trust policy for one request, with AWS's condition semantics, and saying why.
//!
//! AWS answers a refused AssumeRoleWithWebIdentity with a bare "Not authorized"; the whole point
//! of evaluating the policy ourselves is the explanation: which statement, which condition, what
//! the policy expects and what the token gave. The semantics follow the IAM documentation:
//! values within one key are ORed, keys within an operator and operators within a block are
//! ANDed, an absent key makes a condition false except for negated operators (true), `Null`,
//! `...IfExists` (true) and `ForAllValues:` (true); an explicit Deny wins over any Allow.

use std::collections::BTreeMap;
use std::fmt;

use super::glob;
use super::model::{
    ActionMatcher, Condition, Effect, OperatorBase, PolicyDocument, Principal, SetQualifier,
};

/// Who is asking, as the policy's `Principal` element names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestPrincipal {
    /// A web-identity or SAML provider, e.g. `accounts.google.com`.
    Federated(String),
    /// An account, user or role ARN.
    Aws(String),
    /// An AWS service such as `ec2.amazonaws.com`.
    Service(String),
}

impl fmt::Display for RequestPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Federated(id) => write!(f, "Federated {id}"),
            Self::Aws(id) => write!(f, "AWS {id}"),
            Self::Service(id) => write!(f, "Service {id}"),
        }
    }
}

/// The request being authorised.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Who is asking.
    pub principal: RequestPrincipal,
    /// The action, e.g. `sts:AssumeRoleWithWebIdentity`.
    pub action: &'a str,
    /// The condition keys the request carries.
    pub context: &'a ConditionContext,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ContextEntry {
    key: String,
    values: Vec<String>,
    source: Option<String>,
}

/// The request's condition keys (case-insensitive, as in AWS) and where each value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionContext {
    subject: String,
    entries: BTreeMap<String, ContextEntry>,
}

impl ConditionContext {
    /// An empty context; `subject` names what supplied the values in explanations ("the token").
    pub fn new(subject: &str) -> Self {
        Self {
            subject: subject.to_string(),
            entries: BTreeMap::new(),
        }
    }

    /// Sets a key's values; `source` says where they come from ("the token's azp").
    pub fn insert(&mut self, key: &str, values: Vec<String>, source: Option<&str>) {
        self.entries.insert(
            key.to_ascii_lowercase(),
            ContextEntry {
                key: key.to_string(),
                values,
                source: source.map(String::from),
            },
        );
    }

    /// A key's values, looked up case-insensitively.
    pub fn values(&self, key: &str) -> Option<&[String]> {
        self.entries
            .get(&key.to_ascii_lowercase())
            .map(|e| e.values.as_slice())
    }

    /// Where a key's values come from, if known.
    pub fn source(&self, key: &str) -> Option<&str> {
        self.entries
            .get(&key.to_ascii_lowercase())
            .and_then(|e| e.source.as_deref())
    }

    /// What supplied the values ("the token"), for explanations.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// All keys with their values, in a stable order (for `keyless doctor`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries
            .values()
            .map(|e| (e.key.as_str(), e.values.as_slice()))
    }
}

/// One condition that did not hold, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionFailure {
    /// The statement it belongs to (`statement "Sid"` or `statement #N`).
    pub statement: String,
    /// The operator as written.
    pub operator: String,
    /// The condition key as written in the policy.
    pub key: String,
    /// What the policy accepts.
    pub expected: Vec<String>,
    /// What the request had (`None`: the key was absent).
    pub actual: Option<Vec<String>>,
    /// Where the request's value comes from ("the token's azp").
    pub source: Option<String>,
    /// What supplied the values ("the token").
    pub subject: String,
}

impl fmt::Display for ConditionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = crate::policy::model::ConditionOperator::parse(&self.operator);
        let expected = quote_list(&self.expected);
        let phrase = match op.as_ref().map(|o| o.base) {
            Some(OperatorBase::Null) => {
                let absent = self.expected.iter().any(|v| v.eq_ignore_ascii_case("true"));
                if absent {
                    format!("{} to be absent", self.key)
                } else {
                    format!("{} to be present", self.key)
                }
            }
            Some(base) => format!("{} {} {expected}", self.key, relation(base)),
            None => format!("{} {} {expected}", self.key, self.operator),
        };
        let qualified = op
            .as_ref()
            .is_some_and(|o| o.qualifier.is_some() || o.if_exists);
        write!(f, "the trust policy expects {phrase}")?;
        if qualified {
            write!(f, " ({})", self.operator)?;
        }
        match &self.actual {
            Some(values) => write!(f, " but {} gives {}", self.subject, quote_list(values))?,
            None => write!(f, " but {} has no {}", self.subject, self.key)?,
        }
        if let Some(source) = &self.source {
            write!(f, " ({} is {source})", self.key)?;
        }
        Ok(())
    }
}

fn relation(base: OperatorBase) -> &'static str {
    match base {
        OperatorBase::StringEquals | OperatorBase::Bool => "=",
        OperatorBase::StringNotEquals => "to differ from",
        OperatorBase::StringEqualsIgnoreCase => "= (ignoring case)",
        OperatorBase::StringNotEqualsIgnoreCase => "to differ (ignoring case) from",
        OperatorBase::StringLike => "to match",
        OperatorBase::StringNotLike => "not to match",
        OperatorBase::Null => "Null",
        OperatorBase::NumericEquals => "==",
        OperatorBase::NumericNotEquals => "!=",
        OperatorBase::NumericLessThan => "<",
        OperatorBase::NumericLessThanEquals => "<=",
        OperatorBase::NumericGreaterThan => ">",
        OperatorBase::NumericGreaterThanEquals => ">=",
    }
}

fn quote_list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
    match quoted.len() {
        0 => "nothing".to_string(),
        1 => quoted[0].clone(),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// The outcome, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An Allow statement matched and no Deny did.
    Allowed {
        /// The statement that allowed it.
        statement: String,
    },
    /// A Deny statement matched (it wins over any Allow).
    DeniedExplicitly {
        /// The Deny statement.
        statement: String,
        /// Who asked.
        principal: String,
        /// For what.
        action: String,
    },
    /// No Allow statement matched.
    DeniedImplicitly {
        /// Who asked.
        principal: String,
        /// For what.
        action: String,
        /// The failed conditions of every Allow statement that applied to this principal and
        /// action; empty when no statement applied at all.
        failures: Vec<ConditionFailure>,
    },
}

impl Decision {
    /// True for [`Decision::Allowed`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }

    /// One or more sentences a user can act on.
    pub fn explain(&self) -> String {
        match self {
            Self::Allowed { statement } => format!("allowed by {statement}"),
            Self::DeniedExplicitly {
                statement,
                principal,
                action,
            } => {
                format!("{statement} of the trust policy explicitly denies {principal} {action} (an explicit Deny wins over any Allow)")
            }
            Self::DeniedImplicitly {
                principal,
                action,
                failures,
            } if failures.is_empty() => {
                format!("no statement of the trust policy allows {principal} to perform {action}")
            }
            Self::DeniedImplicitly { failures, .. } => {
                let several = failures
                    .iter()
                    .any(|f| f.statement != failures[0].statement);
                failures
                    .iter()
                    .map(|f| {
                        if several {
                            format!("{}: {f}", f.statement)
                        } else {
                            f.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain())
    }
}

/// Evaluates `policy` for `request`: explicit Deny wins, else an Allow must match.
pub fn evaluate(policy: &PolicyDocument, request: &Request<'_>) -> Decision {
    let mut allowed_by = None;
    let mut failures = Vec::new();
    for (index, statement) in policy.statements.iter().enumerate() {
        if !principal_applies(statement.principal.as_ref(), &request.principal)
            || !action_applies(&statement.actions, request.action)
        {
            continue;
        }
        let label = statement.label(index);
        let failed: Vec<ConditionFailure> = statement
            .conditions
            .iter()
            .filter(|c| !condition_holds(c, request.context))
            .map(|c| ConditionFailure {
                statement: label.clone(),
                operator: c.operator.name.clone(),
                key: c.key.clone(),
                expected: c.values.clone(),
                actual: request
                    .context
                    .values(&c.key)
                    .filter(|v| !v.is_empty())
                    .map(<[String]>::to_vec),
                source: request.context.source(&c.key).map(String::from),
                subject: request.context.subject().to_string(),
            })
            .collect();
        match (statement.effect, failed.is_empty()) {
            (Effect::Deny, true) => {
                return Decision::DeniedExplicitly {
                    statement: label,
                    principal: request.principal.to_string(),
                    action: request.action.to_string(),
                }
            }
            (Effect::Deny, false) => {}
            (Effect::Allow, true) => {
                allowed_by.get_or_insert(label);
            }
            (Effect::Allow, false) => failures.extend(failed),
        }
    }
    match allowed_by {
        Some(statement) => Decision::Allowed { statement },
        None => Decision::DeniedImplicitly {
            principal: request.principal.to_string(),
            action: request.action.to_string(),
            failures,
        },
    }
}

fn principal_applies(principal: Option<&Principal>, who: &RequestPrincipal) -> bool {
    match principal {
        // Identity policies have no Principal: they apply to whoever they are attached to.
        None | Some(Principal::Any) => true,
        Some(Principal::Listed {
            federated,
            aws,
            service,
        }) => {
            let (list, id) = match who {
                RequestPrincipal::Federated(id) => (federated, id),
                RequestPrincipal::Aws(id) => (aws, id),
                RequestPrincipal::Service(id) => (service, id),
            };
            list.iter().any(|p| p == "*" || p == id)
        }
    }
}

fn action_applies(actions: &ActionMatcher, action: &str) -> bool {
    match actions {
        ActionMatcher::Action(patterns) => patterns.iter().any(|p| glob::matches(p, action, true)),
        ActionMatcher::NotAction(patterns) => {
            !patterns.iter().any(|p| glob::matches(p, action, true))
        }
    }
}

/// Whether one `operator: {key: values}` entry holds for the context.
fn condition_holds(condition: &Condition, context: &ConditionContext) -> bool {
    let op = &condition.operator;
    let actual = context.values(&condition.key).filter(|v| !v.is_empty());
    if op.base == OperatorBase::Null {
        let absent = actual.is_none();
        return condition
            .values
            .iter()
            .any(|v| v.eq_ignore_ascii_case("true") == absent);
    }
    let Some(actual) = actual else {
        return match op.qualifier {
            Some(SetQualifier::ForAllValues) => true,
            Some(SetQualifier::ForAnyValue) => op.if_exists,
            None => op.if_exists || op.base.is_negated(),
        };
    };
    // A request value "matches" when it satisfies the positive form against any policy value
    // (values within one key are ORed); negated operators then invert per value.
    let matches_one = |v: &String| {
        condition
            .values
            .iter()
            .any(|p| positive_match(op.base, p, v))
    };
    match (op.qualifier, op.base.is_negated()) {
        (None | Some(SetQualifier::ForAnyValue), false) => actual.iter().any(matches_one),
        (None | Some(SetQualifier::ForAllValues), true) => !actual.iter().any(matches_one),
        (Some(SetQualifier::ForAnyValue), true) => actual.iter().any(|v| !matches_one(v)),
        (Some(SetQualifier::ForAllValues), false) => actual.iter().all(matches_one),
    }
}

/// The positive comparison behind each operator (`StringNotLike` → like, ...).
fn positive_match(base: OperatorBase, policy_value: &str, actual: &str) -> bool {
    let numeric = |cmp: fn(f64, f64) -> bool| match (
        actual.trim().parse::<f64>(),
        policy_value.trim().parse::<f64>(),
    ) {
        (Ok(a), Ok(p)) => cmp(a, p),
        _ => false,
    };
    match base {
        OperatorBase::StringEquals | OperatorBase::StringNotEquals => policy_value == actual,
        OperatorBase::StringEqualsIgnoreCase | OperatorBase::StringNotEqualsIgnoreCase => {
            policy_value.to_lowercase() == actual.to_lowercase()
        }
        OperatorBase::StringLike | OperatorBase::StringNotLike => {
            glob::matches(policy_value, actual, false)
        }
        OperatorBase::Bool => policy_value.eq_ignore_ascii_case(actual),
        OperatorBase::Null => false,
        OperatorBase::NumericEquals | OperatorBase::NumericNotEquals => numeric(|a, p| a == p),
        OperatorBase::NumericLessThan => numeric(|a, p| a < p),
        OperatorBase::NumericLessThanEquals => numeric(|a, p| a <= p),
        OperatorBase::NumericGreaterThan => numeric(|a, p| a > p),
        OperatorBase::NumericGreaterThanEquals => numeric(|a, p| a >= p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::google;
    use serde_json::json;

    const ACTION: &str = "sts:AssumeRoleWithWebIdentity";

    fn google_policy(condition: serde_json::Value) -> PolicyDocument {
        PolicyDocument::from_value(&json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": "accounts.google.com"},
                "Action": ACTION,
                "Condition": condition
            }]
        }))
        .unwrap()
    }

    fn ctx(pairs: &[(&str, &[&str])]) -> ConditionContext {
        let mut c = ConditionContext::new("the request");
        for (k, vs) in pairs {
            c.insert(k, vs.iter().map(|s| s.to_string()).collect(), None);
        }
        c
    }

    fn decide(policy: &PolicyDocument, context: &ConditionContext) -> Decision {
        evaluate(
            policy,
            &Request {
                principal: RequestPrincipal::Federated("accounts.google.com".into()),
                action: ACTION,
                context,
            },
        )
    }

    fn holds(op: &str, key_values: serde_json::Value, context: &ConditionContext) -> bool {
        decide(&google_policy(json!({ op: { "k": key_values } })), context).is_allowed()
    }

    #[test]
    fn string_equals_is_exact_and_values_are_ored() {
        let c = ctx(&[("k", &["b"])]);
        assert!(holds("StringEquals", json!(["a", "b"]), &c));
        assert!(!holds("StringEquals", json!("B"), &c));
        assert!(!holds("StringEquals", json!("a"), &c));
        assert!(
            !holds("StringEquals", json!("b"), &ctx(&[])),
            "absent key → false"
        );
    }

    #[test]
    fn string_not_equals_and_absent_keys() {
        let c = ctx(&[("k", &["b"])]);
        assert!(holds("StringNotEquals", json!("a"), &c));
        assert!(!holds("StringNotEquals", json!(["a", "b"]), &c));
        assert!(
            holds("StringNotEquals", json!("a"), &ctx(&[])),
            "absent key → negated operator true (AWS docs)"
        );
    }

    #[test]
    fn ignore_case_operators() {
        let c = ctx(&[("k", &["Dev@Example.com"])]);
        assert!(holds(
            "StringEqualsIgnoreCase",
            json!("dev@example.COM"),
            &c
        ));
        assert!(!holds(
            "StringNotEqualsIgnoreCase",
            json!("dev@example.COM"),
            &c
        ));
        assert!(holds(
            "StringNotEqualsIgnoreCase",
            json!("other@example.com"),
            &c
        ));
    }

    #[test]
    fn like_operators_use_globs() {
        let c = ctx(&[("k", &["ci-runner@proj.iam.gserviceaccount.com"])]);
        assert!(holds(
            "StringLike",
            json!("*@proj.iam.gserviceaccount.com"),
            &c
        ));
        assert!(!holds(
            "StringLike",
            json!("*@other.iam.gserviceaccount.com"),
            &c
        ));
        assert!(holds("StringLike", json!("ci-runne?@*"), &c));
        assert!(!holds("StringNotLike", json!("ci-*"), &c));
        assert!(holds("StringNotLike", json!("deploy-*"), &c));
    }

    #[test]
    fn bool_and_null() {
        let c = ctx(&[("k", &["true"])]);
        assert!(holds("Bool", json!(true), &c));
        assert!(holds("Bool", json!("TRUE"), &c));
        assert!(!holds("Bool", json!(false), &c));
        assert!(!holds("Bool", json!(true), &ctx(&[])));
        assert!(
            holds("Null", json!("false"), &c),
            "present key, Null false → true"
        );
        assert!(!holds("Null", json!("true"), &c));
        assert!(
            holds("Null", json!(true), &ctx(&[])),
            "absent key, Null true → true"
        );
        assert!(!holds("Null", json!(false), &ctx(&[])));
    }

    #[test]
    fn numeric_operators() {
        let c = ctx(&[("k", &["3600"])]);
        assert!(holds("NumericEquals", json!(3600), &c));
        assert!(holds("NumericLessThan", json!("7200"), &c));
        assert!(!holds("NumericLessThan", json!(3600), &c));
        assert!(holds("NumericLessThanEquals", json!(3600), &c));
        assert!(holds("NumericGreaterThan", json!(900), &c));
        assert!(!holds("NumericGreaterThanEquals", json!(3601), &c));
        assert!(!holds(
            "NumericEquals",
            json!(1),
            &ctx(&[("k", &["not-a-number"])])
        ));
    }

    #[test]
    fn if_exists_makes_absent_keys_pass() {
        assert!(holds("StringEqualsIfExists", json!("a"), &ctx(&[])));
        assert!(!holds(
            "StringEqualsIfExists",
            json!("a"),
            &ctx(&[("k", &["b"])])
        ));
        assert!(holds(
            "StringEqualsIfExists",
            json!("a"),
            &ctx(&[("k", &["a"])])
        ));
    }

    #[test]
    fn set_qualifiers() {
        let c = ctx(&[("k", &["a", "x"])]);
        assert!(holds("ForAnyValue:StringEquals", json!(["a", "b"]), &c));
        assert!(!holds("ForAllValues:StringEquals", json!(["a", "b"]), &c));
        assert!(holds(
            "ForAllValues:StringEquals",
            json!(["a", "b", "x"]),
            &c
        ));
        assert!(
            holds("ForAllValues:StringEquals", json!("a"), &ctx(&[])),
            "ForAllValues with no values is true"
        );
        assert!(
            !holds("ForAnyValue:StringEquals", json!("a"), &ctx(&[])),
            "ForAnyValue with no values is false"
        );
        assert!(
            holds("ForAnyValue:StringNotEquals", json!("a"), &c),
            "x differs from a"
        );
        assert!(
            !holds("ForAllValues:StringNotEquals", json!("a"), &c),
            "a does not differ"
        );
        assert!(holds("ForAllValues:StringNotEquals", json!(["b", "c"]), &c));
    }

    #[test]
    fn keys_are_anded_across_keys_and_operators() {
        let policy = google_policy(json!({
            "StringEquals": {"a": "1", "b": "2"},
            "StringLike": {"c": "x*"}
        }));
        assert!(decide(
            &policy,
            &ctx(&[("a", &["1"]), ("b", &["2"]), ("c", &["xy"])])
        )
        .is_allowed());
        assert!(!decide(
            &policy,
            &ctx(&[("a", &["1"]), ("b", &["3"]), ("c", &["xy"])])
        )
        .is_allowed());
        assert!(!decide(
            &policy,
            &ctx(&[("a", &["1"]), ("b", &["2"]), ("c", &["yy"])])
        )
        .is_allowed());
    }

    #[test]
    fn condition_keys_are_case_insensitive() {
        let policy = google_policy(json!({"StringEquals": {"Accounts.Google.com:SUB": "42"}}));
        assert!(decide(&policy, &ctx(&[("accounts.google.com:sub", &["42"])])).is_allowed());
    }

    #[test]
    fn principal_and_action_must_apply() {
        let policy = google_policy(json!({}));
        let c = ctx(&[]);
        let other_idp = evaluate(
            &policy,
            &Request {
                principal: RequestPrincipal::Federated("cognito-identity.amazonaws.com".into()),
                action: ACTION,
                context: &c,
            },
        );
        assert!(!other_idp.is_allowed());
        assert_eq!(
            other_idp.explain(),
            "no statement of the trust policy allows Federated cognito-identity.amazonaws.com to perform sts:AssumeRoleWithWebIdentity"
        );
        let other_action = evaluate(
            &policy,
            &Request {
                principal: RequestPrincipal::Federated("accounts.google.com".into()),
                action: "sts:AssumeRole",
                context: &c,
            },
        );
        assert!(!other_action.is_allowed());
        let lower = evaluate(
            &policy,
            &Request {
                principal: RequestPrincipal::Federated("accounts.google.com".into()),
                action: "STS:assumerolewithwebidentity",
                context: &c,
            },
        );
        assert!(lower.is_allowed(), "actions match case-insensitively");
    }

    #[test]
    fn explicit_deny_wins_over_allow() {
        let policy = PolicyDocument::from_value(&json!({"Statement": [
            {"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"}, "Action": "sts:*"},
            {"Sid": "NoIntruders", "Effect": "Deny", "Principal": "*", "Action": ACTION,
             "Condition": {"StringEquals": {"accounts.google.com:sub": "99"}}}
        ]}))
        .unwrap();
        let ok = decide(&policy, &ctx(&[("accounts.google.com:sub", &["1"])]));
        assert_eq!(
            ok,
            Decision::Allowed {
                statement: "statement #1".into()
            }
        );
        let denied = decide(&policy, &ctx(&[("accounts.google.com:sub", &["99"])]));
        assert!(
            matches!(denied, Decision::DeniedExplicitly { ref statement, .. } if statement == "statement \"NoIntruders\"")
        );
        assert!(
            denied
                .explain()
                .contains("explicitly denies Federated accounts.google.com"),
            "{denied}"
        );
    }

    #[test]
    fn explanation_names_key_expected_actual_and_source() {
        let policy = google_policy(json!({"StringEquals": {
            "accounts.google.com:aud": "1234",
            "accounts.google.com:oaud": "sts.amazonaws.com"
        }}));
        let claims = json!({"aud": "sts.amazonaws.com", "azp": "5678", "sub": "5678"});
        let context = google::condition_context(claims.as_object().unwrap());
        let decision = decide(&policy, &context);
        assert_eq!(
            decision.explain(),
            "the trust policy expects accounts.google.com:aud = \"1234\" but the token gives \"5678\" \
             (accounts.google.com:aud is the token's azp)"
        );
    }

    #[test]
    fn explanation_for_absent_keys_lists_and_several_statements() {
        let policy = PolicyDocument::from_value(&json!({"Statement": [
            {"Sid": "ByEmail", "Effect": "Allow", "Principal": {"Federated": "accounts.google.com"}, "Action": ACTION,
             "Condition": {"StringLike": {"accounts.google.com:email": ["*@a.com", "*@b.com"]}}},
            {"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"}, "Action": ACTION,
             "Condition": {"StringEqualsIfExists": {"accounts.google.com:sub": "1"}}}
        ]}))
        .unwrap();
        let claims = json!({"aud": "x", "sub": "2"});
        let decision = decide(
            &policy,
            &google::condition_context(claims.as_object().unwrap()),
        );
        assert_eq!(
            decision.explain(),
            "statement \"ByEmail\": the trust policy expects accounts.google.com:email to match one of \"*@a.com\", \"*@b.com\" \
             but the token has no accounts.google.com:email; \
             statement #2: the trust policy expects accounts.google.com:sub = \"1\" (StringEqualsIfExists) \
             but the token gives \"2\" (accounts.google.com:sub is the token's sub)"
        );
    }
}
