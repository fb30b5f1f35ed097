//! Rules for AWS role trust policies (KL001–KL008).
//!
//! The strongest evidence a linter can give is a counter-example, so the "who else gets in"
//! rules do not pattern-match the JSON: they build the token a stranger could obtain (their own
//! service account, any audience they like), map it to condition keys with THE Google mapping,
//! and run the real evaluator. If the stranger is allowed, the finding says so and by which
//! statement. The pattern rules (wildcards, negations, the aud/azp confusion) then point at the
//! exact condition to change.

use serde_json::{json, Map, Value};

use super::{Draft, JsonPath, Severity};
use crate::policy::evaluate::{evaluate, ConditionContext, Decision, Request, RequestPrincipal};
use crate::policy::google::{self, GOOGLE_PROVIDER, KEY_AUD, KEY_EMAIL, KEY_OAUD, KEY_SUB};
use crate::policy::model::{
    ActionMatcher, Condition, ConditionOperator, Effect, OperatorBase, PolicyDocument, PolicyError,
    Principal, SetQualifier, Statement,
};

const WEB_IDENTITY: &str = "sts:AssumeRoleWithWebIdentity";
/// Actions that legitimately accompany web identity federation (session tags, source identity).
const WEB_IDENTITY_COMPANIONS: &[&str] = &["sts:TagSession", "sts:SetSourceIdentity"];
/// The stranger's service account: a numeric unique id no real policy pins.
const STRANGER_ID: &str = "109999999999999999999";
const STRANGER_EMAIL: &str = "stranger@someone-elses-project.iam.gserviceaccount.com";
const STRANGER_SUBJECT: &str = "keyless-lint-stranger";
/// GitHub Actions' issuer as an IAM OIDC provider (and the prefix of its condition keys).
const GITHUB_HOST: &str = "token.actions.githubusercontent.com";
/// How a Kubernetes service account's `sub` starts.
const KUBERNETES_SUBJECT_PREFIX: &str = "system:serviceaccount:";
/// The README's recommended condition, with placeholders, for fixes.
const UNIQUE_ID: &str = "<the service account's numeric unique id>";

/// Which identity provider a federated principal names, and so which keys identify the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Issuer {
    Google,
    /// An OIDC provider (`arn:aws:iam::ACCOUNT:oidc-provider/HOST`) or a legacy web identity
    /// provider (`cognito-identity.amazonaws.com`, ...): its condition keys are `HOST:claim`.
    Oidc {
        host: String,
    },
}

impl Issuer {
    fn of(principal: &str) -> Option<Self> {
        if principal.eq_ignore_ascii_case(GOOGLE_PROVIDER) {
            return Some(Self::Google);
        }
        if principal.contains(":saml-provider/") {
            return None; // SAML federation has its own keys (SAML:aud) and flow.
        }
        let host = principal
            .split_once(":oidc-provider/")
            .map(|(_, host)| host)
            .unwrap_or(principal);
        Some(Self::Oidc {
            host: host.to_ascii_lowercase(),
        })
    }

    fn prefix(&self) -> String {
        match self {
            Self::Google => format!("{GOOGLE_PROVIDER}:"),
            Self::Oidc { host } => format!("{host}:"),
        }
    }

    /// The claim of a key of this issuer (`sub` for `accounts.google.com:sub`), lowercased.
    fn claim(&self, key: &str) -> Option<String> {
        let key = key.to_ascii_lowercase();
        key.strip_prefix(&self.prefix()).map(String::from)
    }

    /// Keys that say who the caller is (pinning them is what keeps strangers out).
    fn is_identity_claim(&self, claim: &str) -> bool {
        match self {
            Self::Google => matches!(claim, "sub" | "aud" | "email"),
            Self::Oidc { .. } => matches!(claim, "sub" | "aud"),
        }
    }

    /// Keys whose value the caller chooses when asking for a token.
    fn is_caller_chosen(&self, claim: &str) -> bool {
        match self {
            Self::Google => claim == "oaud",
            // Cognito's aud is the identity pool: the pin. Elsewhere (GitHub Actions, GitLab...)
            // any job may ask for any audience.
            Self::Oidc { host } if host == "cognito-identity.amazonaws.com" => claim == "amr",
            Self::Oidc { .. } => claim == "aud",
        }
    }

    /// GitHub Actions: `sub` is `repo:ORG/REPO:...`.
    fn is_github(&self) -> bool {
        matches!(self, Self::Oidc { host } if host == GITHUB_HOST)
    }

    /// A Kubernetes cluster's issuer (EKS, GKE, AKS by host, or any issuer whose `sub` the
    /// statement compares with `system:serviceaccount:...`): `sub` names a namespace.
    fn is_kubernetes(&self, st: &Statement) -> bool {
        let Self::Oidc { host } = self else {
            return false;
        };
        let by_host = (host.starts_with("oidc.eks.") && host.contains(".amazonaws.com/id/"))
            || host.starts_with("container.googleapis.com/v1/projects/")
            || host.contains(".oic.prod-aks.azure.com");
        by_host
            || st.conditions.iter().any(|c| {
                self.claim(&c.key).as_deref() == Some("sub")
                    && c.values
                        .iter()
                        .any(|v| v.starts_with(KUBERNETES_SUBJECT_PREFIX))
            })
    }

    fn describe_everyone(&self) -> String {
        match self {
            Self::Google => "any Google identity in the world (every service account of every project, every Google account)".to_string(),
            Self::Oidc { host } if host == "token.actions.githubusercontent.com" => {
                "any GitHub Actions workflow of any repository on GitHub".to_string()
            }
            Self::Oidc { host } => format!("any identity the issuer {host} vouches for"),
        }
    }
}

/// Lints one trust policy document located at `at`.
pub(super) fn lint_trust_policy(
    raw: &Value,
    at: &JsonPath,
    out: &mut Vec<Draft>,
) -> Result<(), PolicyError> {
    // The model refuses NotPrincipal (the evaluator cannot honour it); the linter must still
    // report it, so it reads the statement as if it trusted everyone, which is what an Allow
    // with NotPrincipal amounts to.
    let mut raw = raw.clone();
    let statement_paths = statement_paths(&raw, at);
    let mut not_principal = vec![false; statement_paths.len()];
    // Operators the model does not evaluate (ArnLike, IpAddress, Date...) are legitimate IAM;
    // they are set aside rather than failing the file. The stranger probe still runs when they
    // test something other than the token's identity (the finding says so); when they test an
    // identity key, the verdict would be a guess and the probe is skipped. For a Deny, dropping
    // its conditions only makes it deny more, so no finding can come from that.
    let mut set_aside: Vec<Vec<(String, Vec<String>)>> = vec![Vec::new(); statement_paths.len()];
    for_each_statement_mut(&mut raw, |i, st| {
        if let Some(obj) = st.as_object_mut() {
            if obj.remove("NotPrincipal").is_some() {
                not_principal[i] = true;
                obj.entry("Principal").or_insert_with(|| json!("*"));
            }
            if let Some(Value::Object(ops)) = obj.get_mut("Condition") {
                for (op, keys) in ops.iter() {
                    if ConditionOperator::parse(op).is_none() {
                        let keys = keys
                            .as_object()
                            .map(|k| k.keys().cloned().collect())
                            .unwrap_or_default();
                        set_aside[i].push((op.clone(), keys));
                    }
                }
                ops.retain(|op, _| ConditionOperator::parse(op).is_some());
            }
        }
    });
    let doc = PolicyDocument::from_value(&raw)?;
    for (i, st) in doc.statements.iter().enumerate() {
        if st.effect != Effect::Allow {
            continue;
        }
        let st_at = &statement_paths[i];
        if not_principal[i] {
            out.push(
                Draft::new("KL005", st_at.key("NotPrincipal"))
                    .message("Allow with NotPrincipal trusts every principal except the ones listed: anyone can assume this role")
                    .why("NotPrincipal in an Allow inverts the principal list; every AWS account, federated identity and anonymous caller not named is trusted")
                    .fix("replace NotPrincipal with \"Principal\" naming who may assume the role, e.g. {\"Federated\": \"accounts.google.com\"}, and add conditions"),
            );
        } else if st.principal == Some(Principal::Any) {
            out.push(
                Draft::new("KL005", st_at.key("Principal"))
                    .message("Principal \"*\" (or {\"AWS\": \"*\"}) in an Allow: anyone can assume this role")
                    .why("the principal matches every AWS account and every federated identity; only the conditions, if any, stand between the world and the role's permissions")
                    .fix("name the principal explicitly, e.g. \"Principal\": {\"Federated\": \"accounts.google.com\"} with StringEquals on accounts.google.com:sub, :aud and :oaud"),
            );
        }
        check_outbound_audience(st, st_at, out);
        let issuers = federated_issuers(st);
        if issuers.is_empty() {
            continue;
        }
        check_actions(st, st_at, out);
        for (principal, issuer) in &issuers {
            let aside = &set_aside[i];
            let guess = aside
                .iter()
                .any(|(_, keys)| keys.iter().any(|k| issuer.claim(k).is_some()));
            if allows_web_identity(&st.actions) && !guess {
                let aside: Vec<&str> = aside.iter().map(|(op, _)| op.as_str()).collect();
                let here = InDocument {
                    doc: &doc,
                    index: i,
                    st,
                    at: st_at,
                };
                check_stranger(here, principal, issuer, &aside, out);
            }
            check_conditions(st, st_at, issuer, out);
        }
    }
    Ok(())
}

/// `Statement[i]`, or `Statement` when the document has a single statement object.
fn statement_paths(raw: &Value, at: &JsonPath) -> Vec<JsonPath> {
    match raw.get("Statement") {
        Some(Value::Array(items)) => (0..items.len())
            .map(|i| at.key("Statement").index(i))
            .collect(),
        Some(_) => vec![at.key("Statement")],
        None => Vec::new(),
    }
}

fn for_each_statement_mut(raw: &mut Value, mut f: impl FnMut(usize, &mut Value)) {
    match raw.get_mut("Statement") {
        Some(Value::Array(items)) => items.iter_mut().enumerate().for_each(|(i, s)| f(i, s)),
        Some(single) => f(0, single),
        None => {}
    }
}

fn federated_issuers(st: &Statement) -> Vec<(String, Issuer)> {
    match &st.principal {
        Some(Principal::Listed { federated, .. }) => federated
            .iter()
            .filter_map(|p| Issuer::of(p).map(|i| (p.clone(), i)))
            .collect(),
        _ => Vec::new(),
    }
}

fn allows_web_identity(actions: &ActionMatcher) -> bool {
    let m = |p: &String| crate::policy::glob::matches(p, WEB_IDENTITY, true);
    match actions {
        ActionMatcher::Action(patterns) => patterns.iter().any(m),
        ActionMatcher::NotAction(patterns) => !patterns.iter().any(m),
    }
}

/// KL006: a federated statement should allow web identity federation and nothing else.
fn check_actions(st: &Statement, st_at: &JsonPath, out: &mut Vec<Draft>) {
    let broad: Vec<String> = match &st.actions {
        ActionMatcher::NotAction(patterns) => {
            vec![format!("NotAction {}", patterns.join(", "))]
        }
        ActionMatcher::Action(patterns) => patterns
            .iter()
            .filter(|p| {
                !p.eq_ignore_ascii_case(WEB_IDENTITY)
                    && !WEB_IDENTITY_COMPANIONS
                        .iter()
                        .any(|c| p.eq_ignore_ascii_case(c))
            })
            .cloned()
            .collect(),
    };
    if broad.is_empty() {
        return;
    }
    let key = match st.actions {
        ActionMatcher::Action(_) => "Action",
        ActionMatcher::NotAction(_) => "NotAction",
    };
    out.push(
        Draft::new("KL006", st_at.key(key))
            .message(format!(
                "the federated statement allows {} besides sts:AssumeRoleWithWebIdentity",
                broad
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .why("a federated identity only ever needs sts:AssumeRoleWithWebIdentity; wider actions (sts:AssumeRole, sts:*) let the same principal reach the role through other STS paths the conditions were not written for")
            .fix("\"Action\": \"sts:AssumeRoleWithWebIdentity\" (add \"sts:TagSession\" only if the issuer passes session tags)"),
    );
}

/// KL001/KL002/KL008: evaluate the policy for a stranger's token.
/// A statement in its document: the probe evaluates the whole document (a Deny elsewhere may
/// keep the stranger out) and attributes the verdict to this statement.
struct InDocument<'a> {
    doc: &'a PolicyDocument,
    index: usize,
    st: &'a Statement,
    at: &'a JsonPath,
}

fn check_stranger(
    here: InDocument<'_>,
    principal: &str,
    issuer: &Issuer,
    set_aside: &[&str],
    out: &mut Vec<Draft>,
) {
    let InDocument {
        doc,
        index,
        st,
        at: st_at,
    } = here;
    let label = st.label(index);
    // Each token a stranger could present; the first one this statement admits is the proof.
    let attempts: Vec<(ConditionContext, Decision)> = stranger_contexts(st, issuer)
        .into_iter()
        .map(|context| {
            let decision = evaluate(
                doc,
                &Request {
                    principal: RequestPrincipal::Federated(principal.to_string()),
                    action: WEB_IDENTITY,
                    context: &context,
                },
            );
            (context, decision)
        })
        .collect();
    let admits = |d: &Decision| matches!(d, Decision::Allowed { statement } if *statement == label);
    let admitted = attempts.iter().any(|(_, d)| admits(d));
    let (context, decision) = attempts
        .iter()
        .find(|(_, d)| admits(d))
        .or(attempts.first())
        .expect("at least one stranger");
    let mut proof = format!(
        "keyless evaluated this policy for {}: {}",
        describe_context(context, issuer),
        decision
    );
    if !set_aside.is_empty() {
        proof.push_str(&format!(
            " (setting aside {}, which keyless does not evaluate and which do not test who the caller is)",
            set_aside.join(", ")
        ));
    }
    let pinned: Vec<String> = st
        .conditions
        .iter()
        .filter_map(|c| issuer.claim(&c.key).map(|claim| (claim, c)))
        .filter(|(_, c)| c.operator.base != OperatorBase::Null)
        .map(|(claim, _)| claim)
        .collect();
    if admitted && st.conditions.is_empty() && set_aside.is_empty() {
        let (message, fix) = match issuer {
            Issuer::Google => (
                "any Google identity in the world can assume this role: accounts.google.com is trusted with no condition".to_string(),
                google_fix(st, None),
            ),
            Issuer::Oidc { host } => (
                format!("{} can assume this role: {principal} is trusted with no condition", capitalise(&issuer.describe_everyone())),
                format!("add \"Condition\": {{\"StringEquals\": {{\"{host}:sub\": \"<the exact subject of your workload>\", \"{host}:aud\": \"<your audience>\"}}}}"),
            ),
        };
        out.push(
            Draft::new("KL001", st_at.clone())
                .message(message)
                .why(format!("a federated principal only says which issuer signs the token; without a condition, {} is accepted. {proof}", issuer.describe_everyone()))
                .fix(fix),
        );
    } else if admitted {
        let message = match issuer {
            Issuer::Google if pinned.iter().all(|c| c == "oaud") && !pinned.is_empty() => {
                "only accounts.google.com:oaud is pinned: any Google service account can mint a token for that audience and assume this role".to_string()
            }
            Issuer::Google => "the conditions do not pin accounts.google.com:sub or accounts.google.com:aud: a stranger's Google token is accepted".to_string(),
            Issuer::Oidc { host } => format!("the conditions do not pin {host}:sub: a token of another subject of the same issuer is accepted"),
        };
        let why = match issuer {
            Issuer::Google => format!("accounts.google.com:oaud is the token's aud, which whoever asks for the token chooses (the metadata server and generateIdToken take any audience); only sub and aud (the token's azp) identify the service account. {proof}"),
            Issuer::Oidc { .. } => format!("the audience and most claims are chosen by or shared with other users of the issuer; sub is what names your workload. {proof}"),
        };
        let fix = match issuer {
            Issuer::Google => google_fix(st, None),
            Issuer::Oidc { host } => format!("add \"StringEquals\": {{\"{host}:sub\": \"<the exact subject of your workload>\"}} to the Condition"),
        };
        let (rule, message, fix) = match issuer {
            Issuer::Oidc { host } if issuer.is_github() => (
                "KL009",
                format!("{host}:sub is not pinned: every GitHub Actions workflow of every repository that can ask for this audience can assume this role"),
                github_fix(),
            ),
            Issuer::Oidc { host } if issuer.is_kubernetes(st) => (
                "KL010",
                format!("{host}:sub is not pinned to a namespace: every service account of every namespace of the cluster can assume this role"),
                kubernetes_fix(host),
            ),
            _ => ("KL002", message, fix),
        };
        // A pattern on sub is reported where it is written (KL009/KL010 in check_conditions).
        let sub_pattern = st.conditions.iter().any(|c| {
            issuer.claim(&c.key).as_deref() == Some("sub")
                && c.operator.base == OperatorBase::StringLike
        });
        if rule != "KL002" && sub_pattern {
            return;
        }
        out.push(
            Draft::new(rule, st_at.key("Condition"))
                .message(message)
                .why(why)
                .fix(fix),
        );
    } else if *issuer == Issuer::Google && !has_positive_pin(st, KEY_OAUD) {
        out.push(
            Draft::new("KL008", st_at.key("Condition"))
                .message("accounts.google.com:oaud is not pinned: a token the service account minted for any audience is accepted")
                .why("a token the workload hands to another service (any audience) could be replayed here to assume this role; pinning oaud keeps tokens meant for others out")
                .fix("add \"accounts.google.com:oaud\": \"sts.amazonaws.com\" (or the --audience keyless uses for this role) to the StringEquals block"),
        );
    }
}

/// The token a stranger can get: their own identity, and whatever audience the policy wants.
/// For Google, with and without `email`: generateIdToken leaves it out unless asked
/// (`includeEmail`), so a stranger presents whichever gets through.
fn stranger_contexts(st: &Statement, issuer: &Issuer) -> Vec<ConditionContext> {
    match issuer {
        Issuer::Google => {
            let audience = chosen_value(st, KEY_OAUD).unwrap_or_else(|| "sts.amazonaws.com".into());
            let with_email = json!({
                "iss": "https://accounts.google.com",
                "aud": audience,
                "azp": STRANGER_ID,
                "sub": STRANGER_ID,
                "email": STRANGER_EMAIL,
                "email_verified": true,
            });
            let mut without_email = with_email.clone();
            if let Some(claims) = without_email.as_object_mut() {
                claims.remove("email");
                claims.remove("email_verified");
            }
            [with_email, without_email]
                .iter()
                .map(|claims| {
                    let claims: Map<String, Value> =
                        claims.as_object().cloned().unwrap_or_default();
                    google::condition_context(&claims)
                })
                .collect()
        }
        Issuer::Oidc { .. } => {
            let mut ctx = ConditionContext::new("a stranger's token");
            for c in &st.conditions {
                let Some(claim) = issuer.claim(&c.key) else {
                    continue;
                };
                let value = if issuer.is_caller_chosen(&claim) {
                    chosen_value(st, &c.key).unwrap_or_else(|| STRANGER_SUBJECT.into())
                } else {
                    STRANGER_SUBJECT.into()
                };
                ctx.insert(&c.key, vec![value], None);
            }
            vec![ctx]
        }
    }
}

fn describe_context(ctx: &ConditionContext, issuer: &Issuer) -> String {
    let what = match issuer {
        Issuer::Google => "the token of an unrelated service account",
        Issuer::Oidc { .. } => "a token of an unrelated subject",
    };
    let keys: Vec<String> = ctx
        .iter()
        .map(|(k, v)| format!("{k}={}", v.join(",")))
        .collect();
    if keys.is_empty() {
        what.to_string()
    } else {
        format!("{what} ({})", keys.join(", "))
    }
}

/// A value satisfying the statement's positive conditions on `key`, as a caller would pick it.
fn chosen_value(st: &Statement, key: &str) -> Option<String> {
    st.conditions
        .iter()
        .filter(|c| c.key.eq_ignore_ascii_case(key) && is_positive(c))
        .find_map(|c| c.values.first())
        .map(|v| v.replace('*', "").replace('?', "x"))
}

fn is_positive(c: &Condition) -> bool {
    c.operator.base != OperatorBase::Null && !c.operator.base.is_negated()
}

fn has_positive_pin(st: &Statement, key: &str) -> bool {
    st.conditions.iter().any(|c| {
        c.key.eq_ignore_ascii_case(key)
            && is_positive(c)
            && !c.operator.if_exists
            && c.operator.qualifier != Some(SetQualifier::ForAllValues)
    })
}

/// The README's recommended condition, reusing what the statement already pins correctly.
fn google_fix(st: &Statement, audience: Option<&str>) -> String {
    let numeric_pin = |key: &str| {
        st.conditions
            .iter()
            .filter(|c| c.key.eq_ignore_ascii_case(key) && is_positive(c))
            .flat_map(|c| c.values.iter())
            .find(|v| is_numeric_id(v))
            .cloned()
    };
    let id = numeric_pin(KEY_SUB)
        .or_else(|| numeric_pin(KEY_AUD))
        .unwrap_or_else(|| UNIQUE_ID.to_string());
    let oaud = audience
        .map(String::from)
        .or_else(|| chosen_value(st, KEY_OAUD))
        .unwrap_or_else(|| "sts.amazonaws.com".to_string());
    format!(
        "\"Condition\": {{\"StringEquals\": {{\"{KEY_AUD}\": \"{id}\", \"{KEY_OAUD}\": \"{oaud}\", \"{KEY_SUB}\": \"{id}\"}}}} (the unique id: gcloud iam service-accounts describe EMAIL --format='value(uniqueId)')"
    )
}

fn is_numeric_id(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

fn has_wildcard(v: &str) -> bool {
    v.contains('*') || v.contains('?')
}

/// KL003, KL004, KL007: the conditions on identity keys, one by one.
fn check_conditions(st: &Statement, st_at: &JsonPath, issuer: &Issuer, out: &mut Vec<Draft>) {
    for c in &st.conditions {
        let Some(claim) = issuer.claim(&c.key) else {
            continue;
        };
        let at = st_at.key("Condition").key(&c.operator.name).key(&c.key);
        let op = &c.operator;
        let identity = issuer.is_identity_claim(&claim);
        if identity && matches!(op.base, OperatorBase::StringLike) {
            if claim == "sub" && issuer.is_github() && !github_patterns_pin_a_repository(c) {
                out.push(
                    Draft::new("KL009", at.clone())
                        .message(format!("{} {} = {} does not pin one repository: every repository it matches (of the organisation, or of GitHub) can assume this role", c.operator.name, c.key, quoted_list(&c.values)))
                        .why("a pattern over the repository part of sub admits repositories created later, forks' pull requests where allowed, and any workflow in them; the sub of a GitHub token is repo:ORG/REPO:ref:REF or repo:ORG/REPO:environment:NAME")
                        .fix(github_fix()),
                );
                continue;
            }
            if claim == "sub" && issuer.is_kubernetes(st) && !kubernetes_patterns_pin_a_namespace(c)
            {
                let Issuer::Oidc { host } = issuer else {
                    continue;
                };
                out.push(
                    Draft::new("KL010", at.clone())
                        .message(format!("{} {} = {} does not pin a namespace: service accounts of every namespace it matches can assume this role", c.operator.name, c.key, quoted_list(&c.values)))
                        .why("whoever may create a service account (or a pod using one) in any matching namespace gets the role; the sub of a projected token is system:serviceaccount:NAMESPACE:NAME")
                        .fix(kubernetes_fix(host)),
                );
                continue;
            }
            check_wildcards(c, &claim, issuer, &at, out);
        }
        if identity
            && (op.base.is_negated()
                || op.if_exists
                || op.qualifier == Some(SetQualifier::ForAllValues))
        {
            let how = if op.base.is_negated() {
                format!("{} is true for every token whose {claim} is not listed (and for tokens without it)", op.name)
            } else if op.if_exists {
                format!("{} is true for tokens that do not carry {}", op.name, c.key)
            } else {
                format!(
                    "{} is true for tokens that do not carry {} at all",
                    op.name, c.key
                )
            };
            let why = if *issuer == Issuer::Google && claim == "email" {
                "Google ID tokens carry email only when asked for (generateIdToken includeEmail, the metadata server's format=full): a stranger just leaves it out".to_string()
            } else {
                "a pin on who the caller is must fail closed: an inverted or optional test admits the identities it was meant to keep out".to_string()
            };
            out.push(
                Draft::new("KL007", at.clone())
                    .message(format!("the pin on {} can be skipped: {how}", c.key))
                    .why(why)
                    .fix(format!(
                        "\"StringEquals\": {{\"{}\": \"<the exact value>\"}}",
                        c.key
                    )),
            );
        }
        if *issuer == Issuer::Google && is_positive(c) {
            check_google_values(st, c, &claim, &at, out);
        }
    }
}

fn check_wildcards(
    c: &Condition,
    claim: &str,
    issuer: &Issuer,
    at: &JsonPath,
    out: &mut Vec<Draft>,
) {
    let patterns: Vec<&String> = c.values.iter().filter(|v| has_wildcard(v)).collect();
    let numeric = *issuer == Issuer::Google && matches!(claim, "sub" | "aud");
    if patterns.is_empty() {
        out.push(
            Draft::new("KL003", at.clone())
                .severity(Severity::Low)
                .message(format!("{} on {} has no wildcard: it is an exact match written as a pattern", c.operator.name, c.key))
                .why("a later edit that adds a * widens the pin silently; StringEquals says what is meant and cannot")
                .fix(format!("\"StringEquals\": {{\"{}\": {}}}", c.key, json!(c.values))),
        );
        return;
    }
    let severity = if numeric
        || patterns
            .iter()
            .any(|p| p.chars().all(|ch| ch == '*' || ch == '?'))
    {
        Severity::High
    } else {
        Severity::Medium
    };
    let why = if numeric {
        format!("{} is a numeric unique id, assigned by Google: a pattern over ids matches service accounts of other people's projects", c.key)
    } else {
        format!("every identity whose {claim} fits the pattern gets in, including ones created after this policy was written (a new repository, branch or account)")
    };
    out.push(
        Draft::new("KL003", at.clone())
            .severity(severity)
            .message(format!(
                "{} {} on an identity key: every {claim} matching {} is trusted",
                c.operator.name,
                c.key,
                patterns
                    .iter()
                    .map(|p| format!("\"{p}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .why(why)
            .fix(format!(
                "\"StringEquals\": {{\"{}\": [\"<each exact value>\"]}}",
                c.key
            )),
    );
}

/// KL004: values Google never puts in `:aud` / `:sub` (the aud/azp confusion).
fn check_google_values(
    st: &Statement,
    c: &Condition,
    claim: &str,
    at: &JsonPath,
    out: &mut Vec<Draft>,
) {
    let wrong: Vec<&String> = c
        .values
        .iter()
        .filter(|v| !has_wildcard(v))
        .filter(|v| match claim {
            // azp is the service account's numeric id, or an OAuth client id for user sign-in.
            "aud" => !is_numeric_id(v) && !v.ends_with(".apps.googleusercontent.com"),
            "sub" => !is_numeric_id(v),
            _ => false,
        })
        .collect();
    let Some(first) = wrong.first() else {
        return;
    };
    let listed = wrong
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let (message, why, fix) = if claim == "aud" {
        (
            format!("{KEY_AUD} is {listed}, which looks like an audience, but AWS compares {KEY_AUD} with the token's azp (the service account's numeric unique id)"),
            format!("for Google, {KEY_AUD} is {} and the audience is in {KEY_OAUD}: this condition never matches a service account token (or only a token whose azp happens to be this value)", google::key_source(KEY_AUD).unwrap_or("the token's azp")),
            format!("put the audience in {KEY_OAUD} and the service account's numeric id in {KEY_AUD}: {}", google_fix(st, Some(first))),
        )
    } else {
        let hint = if first.contains('@') {
            format!(" (an email goes in {KEY_EMAIL}, but the numeric id is the stable pin: emails can be deleted and re-created by someone else)")
        } else {
            String::new()
        };
        (
            format!("{KEY_SUB} is {listed}, but a Google token's sub is always the numeric unique id"),
            format!("this condition never matches a Google token, so the role cannot be assumed as written{hint}"),
            google_fix(st, None),
        )
    };
    out.push(
        Draft::new("KL004", at.clone())
            .message(message)
            .why(why)
            .fix(fix),
    );
}

const GET_WEB_IDENTITY_TOKEN: &str = "sts:GetWebIdentityToken";
const TOKEN_AUDIENCE_KEY: &str = "sts:IdentityTokenAudience";

/// KL011: an identity policy that lets a principal mint AWS outbound tokens must say for which
/// audiences, with `ForAllValues:` (every audience of the request listed), or the token can be
/// minted for any relying party that trusts the account's issuer.
fn check_outbound_audience(st: &Statement, st_at: &JsonPath, out: &mut Vec<Draft>) {
    // An identity policy (no Principal): in a trust policy the action would mean nothing.
    let ActionMatcher::Action(patterns) = &st.actions else {
        return;
    };
    if st.principal.is_some() {
        return;
    }
    // Named explicitly (sts:GetWebIdentityToken, sts:Get*...): not every `*` admin policy.
    let names_it = patterns.iter().any(|p| {
        p.to_ascii_lowercase().starts_with("sts:")
            && crate::policy::glob::matches(p, GET_WEB_IDENTITY_TOKEN, true)
    });
    if !names_it {
        return;
    }
    let audience: Vec<&Condition> = st
        .conditions
        .iter()
        .filter(|c| c.key.eq_ignore_ascii_case(TOKEN_AUDIENCE_KEY))
        .collect();
    let limited = audience.iter().any(|c| {
        c.operator.qualifier == Some(SetQualifier::ForAllValues)
            && matches!(c.operator.base, OperatorBase::StringEquals)
            && !c.operator.if_exists
            && !c.values.iter().any(|v| has_wildcard(v))
    });
    if limited {
        return;
    }
    let (at, message) = match audience.first() {
        Some(c) => (
            st_at.key("Condition").key(&c.operator.name).key(&c.key),
            format!(
                "{} {} {} does not limit every audience of the token: {}",
                c.operator.name,
                c.key,
                quoted_list(&c.values),
                if c.operator.qualifier == Some(SetQualifier::ForAnyValue) {
                    "ForAnyValue passes when one requested audience is listed, so the token can name others too"
                } else {
                    "the key is multi-valued (one value per requested audience); only ForAllValues:StringEquals with exact values checks each"
                }
            ),
        ),
        None => (
            st_at.clone(),
            format!("{GET_WEB_IDENTITY_TOKEN} is allowed with no {TOKEN_AUDIENCE_KEY} condition: the principal can mint tokens for any audience"),
        ),
    };
    out.push(
        Draft::new("KL011", at)
            .message(message)
            .why("an AWS outbound token is accepted by every relying party that trusts the account's issuer for its audience; a principal that may choose the audience can get into any of them")
            .fix(format!("\"Condition\": {{\"ForAllValues:StringEquals\": {{\"{TOKEN_AUDIENCE_KEY}\": [\"<each audience>\"]}}}} (keyless setup aws-oidc-to-gcp prints it)")),
    );
}

fn github_fix() -> String {
    format!("\"StringEquals\": {{\"{GITHUB_HOST}:sub\": \"repo:ORG/REPO:ref:refs/heads/main\", \"{GITHUB_HOST}:aud\": \"sts.amazonaws.com\"}} (or repo:ORG/REPO:environment:NAME; keyless setup github-to-aws prints it)")
}

fn kubernetes_fix(host: &str) -> String {
    format!("\"StringEquals\": {{\"{host}:sub\": \"system:serviceaccount:NAMESPACE:NAME\", \"{host}:aud\": \"sts.amazonaws.com\"}} (keyless setup k8s-to-aws prints it)")
}

fn quoted_list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every pattern names one repository exactly (`repo:ORG/REPO:...`, wildcards only after it).
fn github_patterns_pin_a_repository(c: &Condition) -> bool {
    c.values.iter().all(|v| {
        v.strip_prefix("repo:")
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(repo, _)| repo.contains('/') && !has_wildcard(repo))
    })
}

/// Every pattern names one namespace exactly (`system:serviceaccount:NS:...`).
fn kubernetes_patterns_pin_a_namespace(c: &Condition) -> bool {
    c.values.iter().all(|v| {
        v.strip_prefix(KUBERNETES_SUBJECT_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(ns, _)| !ns.is_empty() && !has_wildcard(ns))
    })
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::lint_text;
    use serde_json::json;

    fn google(condition: serde_json::Value) -> String {
        let mut st = json!({
            "Effect": "Allow",
            "Principal": {"Federated": "accounts.google.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
        });
        if !condition.is_null() {
            st["Condition"] = condition;
        }
        json!({"Version": "2012-10-17", "Statement": [st]}).to_string()
    }

    /// (rule, severity, path) of every finding.
    fn findings(text: &str) -> Vec<(&'static str, String, String)> {
        lint_text("t.json", text)
            .unwrap()
            .into_iter()
            .map(|f| (f.rule, f.severity.to_string(), f.path))
            .collect()
    }

    fn ids(text: &str) -> Vec<&'static str> {
        findings(text).into_iter().map(|f| f.0).collect()
    }

    const ID: &str = "100000000000000000001";

    #[test]
    fn the_readme_policy_is_clean() {
        let text = google(json!({"StringEquals": {
            "accounts.google.com:aud": ID, "accounts.google.com:oaud": "sts.amazonaws.com", "accounts.google.com:sub": ID}}));
        assert_eq!(findings(&text), vec![]);
    }

    #[test]
    fn kl001_no_condition_is_proved_by_a_stranger() {
        let f = lint_text("t.json", &google(serde_json::Value::Null)).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].rule, f[0].severity.as_str()), ("KL001", "critical"));
        assert!(
            f[0].message.contains("any Google identity in the world"),
            "{}",
            f[0].message
        );
        assert!(f[0].why.contains("allowed by statement #1"), "{}", f[0].why);
        assert!(f[0].fix.contains("accounts.google.com:sub"), "{}", f[0].fix);
    }

    #[test]
    fn kl001_not_raised_when_a_deny_keeps_strangers_out() {
        let text = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"}, "Action": "sts:AssumeRoleWithWebIdentity"},
            {"Effect": "Deny", "Principal": {"Federated": "accounts.google.com"}, "Action": "sts:AssumeRoleWithWebIdentity",
             "Condition": {"StringNotEquals": {"accounts.google.com:sub": ID}}}]})
        .to_string();
        assert!(!ids(&text).contains(&"KL001"), "{:?}", findings(&text));
    }

    #[test]
    fn kl001_for_github_oidc() {
        let text = json!({"Statement": {"Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"},
            "Action": "sts:AssumeRoleWithWebIdentity"}})
        .to_string();
        let f = lint_text("t.json", &text).unwrap();
        assert_eq!(f[0].rule, "KL001");
        assert_eq!(f[0].path, "Statement");
        assert!(
            f[0].message
                .contains("GitHub Actions workflow of any repository"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn kl002_oaud_only() {
        let text =
            google(json!({"StringEquals": {"accounts.google.com:oaud": "sts.amazonaws.com"}}));
        let f = lint_text("t.json", &text).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].rule, f[0].severity.as_str()), ("KL002", "high"));
        assert!(
            f[0].message.contains("only accounts.google.com:oaud"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].path, "Statement[0].Condition");
    }

    #[test]
    fn kl002_oidc_audience_only() {
        let text = json!({"Statement": [{"Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/gitlab.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"gitlab.com:aud": "sts.amazonaws.com"}}}]})
        .to_string();
        assert_eq!(ids(&text), vec!["KL002"]);
        let pinned = text.replace(
            "\"gitlab.com:aud\":\"sts.amazonaws.com\"",
            "\"gitlab.com:aud\":\"sts.amazonaws.com\",\"gitlab.com:sub\":\"project_path:org/app:ref_type:branch:ref:main\"",
        );
        assert_eq!(ids(&pinned), Vec::<&str>::new());
    }

    fn oidc_statement(host: &str, condition: serde_json::Value) -> String {
        json!({"Statement": [{"Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::123456789012:oidc-provider/{host}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition}]})
        .to_string()
    }

    const GH: &str = "token.actions.githubusercontent.com";
    const EKS: &str = "oidc.eks.eu-west-1.amazonaws.com/id/ABC";

    #[test]
    fn kl011_outbound_tokens_for_any_audience() {
        let policy = |condition: serde_json::Value| {
            let mut st =
                json!({"Effect": "Allow", "Action": "sts:GetWebIdentityToken", "Resource": "*"});
            if !condition.is_null() {
                st["Condition"] = condition;
            }
            json!({"Version": "2012-10-17", "Statement": [st]}).to_string()
        };
        let f = findings(&policy(serde_json::Value::Null));
        assert_eq!(f, vec![("KL011", "medium".into(), "Statement[0]".into())]);
        let any = findings(&policy(
            json!({"ForAnyValue:StringEquals": {"sts:IdentityTokenAudience": ["a"]}}),
        ));
        assert_eq!(
            any,
            vec![(
                "KL011",
                "medium".into(),
                "Statement[0].Condition.\"ForAnyValue:StringEquals\".\"sts:IdentityTokenAudience\""
                    .into()
            )]
        );
        let plain = lint_text(
            "t.json",
            &policy(json!({"StringEquals": {"sts:IdentityTokenAudience": "a"}})),
        )
        .unwrap();
        assert!(
            plain[0].message.contains("multi-valued"),
            "{}",
            plain[0].message
        );
        let exact =
            policy(json!({"ForAllValues:StringEquals": {"sts:IdentityTokenAudience": ["a", "b"]}}));
        assert_eq!(findings(&exact), vec![]);
        let pattern =
            policy(json!({"ForAllValues:StringEquals": {"sts:IdentityTokenAudience": ["*"]}}));
        assert_eq!(ids(&pattern), vec!["KL011"]);
        // An administrator's "*" is not this rule's business.
        let admin =
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}).to_string();
        assert_eq!(findings(&admin), vec![]);
    }

    #[test]
    fn kl009_github_without_a_repository_pin() {
        let aud_only = oidc_statement(
            GH,
            json!({"StringEquals": {format!("{GH}:aud"): "sts.amazonaws.com"}}),
        );
        let f = lint_text("t.json", &aud_only).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].rule, f[0].severity.as_str()), ("KL009", "high"));
        assert!(
            f[0].message.contains(&format!("{GH}:sub is not pinned")),
            "{}",
            f[0].message
        );
        assert!(
            f[0].fix.contains("repo:ORG/REPO:ref:refs/heads/main"),
            "{}",
            f[0].fix
        );
        assert!(
            f[0].why.contains("allowed by"),
            "the stranger proves it: {}",
            f[0].why
        );

        for pattern in [
            "repo:my-org/*",
            "*",
            "repo:*:ref:refs/heads/main",
            "repo:my-org/app*:*",
        ] {
            let text = oidc_statement(
                GH,
                json!({"StringEquals": {format!("{GH}:aud"): "sts.amazonaws.com"},
                "StringLike": {format!("{GH}:sub"): pattern}}),
            );
            let f = findings(&text);
            assert_eq!(
                f,
                vec![(
                    "KL009",
                    "high".into(),
                    format!("Statement[0].Condition.StringLike.\"{GH}:sub\"")
                )],
                "{pattern}"
            );
        }
        // One repository, any branch: a wildcard after the repository is KL003's medium.
        let one_repo = oidc_statement(
            GH,
            json!({"StringEquals": {format!("{GH}:aud"): "sts.amazonaws.com"},
            "StringLike": {format!("{GH}:sub"): "repo:my-org/app:*"}}),
        );
        assert_eq!(
            findings(&one_repo)
                .iter()
                .map(|f| (f.0, f.1.as_str()))
                .collect::<Vec<_>>(),
            vec![("KL003", "medium")]
        );
        let exact = oidc_statement(
            GH,
            json!({"StringEquals": {format!("{GH}:aud"): "sts.amazonaws.com",
            format!("{GH}:sub"): "repo:my-org/app:environment:production"}}),
        );
        assert_eq!(findings(&exact), vec![]);
    }

    #[test]
    fn kl010_kubernetes_without_a_namespace_pin() {
        let aud_only = oidc_statement(
            EKS,
            json!({"StringEquals": {format!("{EKS}:aud"): "sts.amazonaws.com"}}),
        );
        let f = lint_text("t.json", &aud_only).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].rule, f[0].severity.as_str()), ("KL010", "high"));
        assert!(
            f[0].fix.contains(&format!(
                "{}:sub\": \"system:serviceaccount:NAMESPACE:NAME",
                EKS.to_lowercase()
            )),
            "{}",
            f[0].fix
        );
        // Any cluster: recognised by what its sub pattern looks like.
        for (host, pattern) in [
            (EKS, "system:serviceaccount:*"),
            ("k8s.example.com", "system:serviceaccount:*:app"),
        ] {
            let text = oidc_statement(
                host,
                json!({"StringEquals": {format!("{host}:aud"): "sts.amazonaws.com"},
                "StringLike": {format!("{host}:sub"): pattern}}),
            );
            assert_eq!(ids(&text), vec!["KL010"], "{host} {pattern}");
        }
        let namespace = oidc_statement(
            EKS,
            json!({"StringEquals": {format!("{EKS}:aud"): "sts.amazonaws.com"},
            "StringLike": {format!("{EKS}:sub"): "system:serviceaccount:payments:*"}}),
        );
        assert_eq!(ids(&namespace), vec!["KL003"]);
        let exact = oidc_statement(
            EKS,
            json!({"StringEquals": {format!("{EKS}:aud"): "sts.amazonaws.com",
            format!("{EKS}:sub"): "system:serviceaccount:payments:app"}}),
        );
        assert_eq!(findings(&exact), vec![]);
    }

    #[test]
    fn kl003_wildcards_on_identity_keys() {
        let text = google(
            json!({"StringEquals": {"accounts.google.com:aud": ID, "accounts.google.com:oaud": "sts.amazonaws.com"},
                                 "StringLike": {"accounts.google.com:sub": "1000*"}}),
        );
        let f = findings(&text);
        assert!(
            f.contains(&(
                "KL003",
                "high".into(),
                r#"Statement[0].Condition.StringLike."accounts.google.com:sub""#.into()
            )),
            "{f:?}"
        );
        let email = google(
            json!({"StringEquals": {"accounts.google.com:aud": ID, "accounts.google.com:sub": ID, "accounts.google.com:oaud": "x"},
                                  "StringLike": {"accounts.google.com:email": "*@my-project.iam.gserviceaccount.com"}}),
        );
        assert_eq!(
            findings(&email)
                .iter()
                .map(|f| (f.0, f.1.as_str()))
                .collect::<Vec<_>>(),
            vec![("KL003", "medium")]
        );
        let exact = email.replace("*@my-project", "ci@my-project");
        assert_eq!(
            findings(&exact)
                .iter()
                .map(|f| (f.0, f.1.as_str()))
                .collect::<Vec<_>>(),
            vec![("KL003", "low")]
        );
    }

    #[test]
    fn kl003_star_sub_lets_a_stranger_in() {
        let text = google(
            json!({"StringEquals": {"accounts.google.com:oaud": "sts.amazonaws.com"},
                                 "StringLike": {"accounts.google.com:sub": "*"}}),
        );
        let got = ids(&text);
        assert!(got.contains(&"KL002") && got.contains(&"KL003"), "{got:?}");
    }

    #[test]
    fn kl004_audience_in_the_aud_key() {
        let text = google(
            json!({"StringEquals": {"accounts.google.com:aud": "sts.amazonaws.com", "accounts.google.com:sub": ID}}),
        );
        let f = lint_text("t.json", &text).unwrap();
        let kl004: Vec<_> = f.iter().filter(|f| f.rule == "KL004").collect();
        assert_eq!(kl004.len(), 1, "{f:?}");
        assert_eq!(
            kl004[0].path,
            r#"Statement[0].Condition.StringEquals."accounts.google.com:aud""#
        );
        assert!(
            kl004[0]
                .fix
                .contains("\"accounts.google.com:oaud\": \"sts.amazonaws.com\""),
            "{}",
            kl004[0].fix
        );
        assert!(
            kl004[0]
                .fix
                .contains(&format!("\"accounts.google.com:aud\": \"{ID}\"")),
            "the fix reuses the pinned id: {}",
            kl004[0].fix
        );
        // The stranger does not get in (aud is compared with their azp), so no KL002.
        assert!(!f.iter().any(|f| f.rule == "KL002"), "{f:?}");
    }

    #[test]
    fn kl004_accepts_oauth_client_ids_and_flags_email_subjects() {
        let text = google(
            json!({"StringEquals": {"accounts.google.com:aud": "1234-abc.apps.googleusercontent.com", "accounts.google.com:oaud": "x", "accounts.google.com:sub": ID}}),
        );
        assert_eq!(ids(&text), Vec::<&str>::new());
        let text = google(
            json!({"StringEquals": {"accounts.google.com:aud": ID, "accounts.google.com:oaud": "x", "accounts.google.com:sub": "ci@p.iam.gserviceaccount.com"}}),
        );
        assert_eq!(ids(&text), vec!["KL004"]);
    }

    #[test]
    fn kl005_any_principal_and_not_principal() {
        let text = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
                                        {"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}, "Action": "sts:AssumeRole"},
                                        {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}]})
        .to_string();
        let f = findings(&text);
        assert_eq!(
            f,
            vec![
                ("KL005", "critical".into(), "Statement[0].Principal".into()),
                (
                    "KL005",
                    "critical".into(),
                    "Statement[1].NotPrincipal".into()
                )
            ]
        );
    }

    #[test]
    fn kl006_broad_actions() {
        let mut v: serde_json::Value = serde_json::from_str(&google(json!({"StringEquals": {
            "accounts.google.com:aud": ID, "accounts.google.com:oaud": "sts.amazonaws.com", "accounts.google.com:sub": ID}}))).unwrap();
        v["Statement"][0]["Action"] = json!(["sts:AssumeRoleWithWebIdentity", "sts:TagSession"]);
        assert_eq!(
            ids(&v.to_string()),
            Vec::<&str>::new(),
            "TagSession is a legitimate companion"
        );
        v["Statement"][0]["Action"] = json!("sts:*");
        assert_eq!(
            findings(&v.to_string()),
            vec![("KL006", "medium".into(), "Statement[0].Action".into())]
        );
    }

    #[test]
    fn kl007_negated_and_if_exists() {
        let text = google(
            json!({"StringEquals": {"accounts.google.com:aud": ID, "accounts.google.com:oaud": "x"},
                                 "StringNotEquals": {"accounts.google.com:sub": "666"}}),
        );
        let got = ids(&text);
        assert!(got.contains(&"KL007"), "{got:?}");
        let text = google(
            json!({"StringEquals": {"accounts.google.com:aud": ID, "accounts.google.com:oaud": "x", "accounts.google.com:sub": ID},
                                 "StringEqualsIfExists": {"accounts.google.com:email": "ci@p.iam.gserviceaccount.com"}}),
        );
        let f = lint_text("t.json", &text).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "KL007");
        assert!(f[0].why.contains("includeEmail"), "{}", f[0].why);
    }

    #[test]
    fn kl008_missing_oaud() {
        let text = google(
            json!({"StringEquals": {"accounts.google.com:aud": ID, "accounts.google.com:sub": ID}}),
        );
        assert_eq!(
            findings(&text),
            vec![("KL008", "low".into(), "Statement[0].Condition".into())]
        );
    }

    #[test]
    fn operators_keyless_does_not_evaluate_do_not_fail_the_file() {
        // Set aside on an identity key: the verdict would be a guess, so only pattern rules run.
        let text = google(
            json!({"StringEquals": {"accounts.google.com:oaud": "sts.amazonaws.com"},
                                 "ArnEquals": {"accounts.google.com:sub": "x"},
                                 "StringLike": {"accounts.google.com:sub": "1*"}}),
        );
        assert_eq!(ids(&text), vec!["KL003"], "no stranger verdict is guessed");
        // Set aside on a non-identity key: the identity is still unpinned, and the proof says
        // what was set aside.
        let text = google(
            json!({"StringEquals": {"accounts.google.com:oaud": "sts.amazonaws.com"},
                                 "ArnLike": {"aws:SourceArn": "arn:aws:iam::*"}}),
        );
        let f = lint_text("t.json", &text).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "KL002");
        assert!(f[0].why.contains("setting aside ArnLike"), "{}", f[0].why);
        let text = google(json!({"ArnLike": {"aws:SourceArn": "arn:aws:iam::*"}}));
        assert_eq!(ids(&text), vec!["KL002"], "not KL001: there is a condition");
    }

    #[test]
    fn service_principals_are_not_federated_rules_business() {
        let text = json!({"Statement": {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}}).to_string();
        assert_eq!(ids(&text), Vec::<&str>::new());
    }
}
