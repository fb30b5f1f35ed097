//! THE mapping from a Google ID token's claims to the AWS condition keys for `accounts.google.com`.
//!
//! This is the most misunderstood fact of Google→AWS federation: AWS's `accounts.google.com:aud`
//! is the token's **`azp`** when the token has one (every service-account token does), and the
//! token's `aud` is exposed as `accounts.google.com:oaud`. The evaluator, the linter, the doctor
//! and the lab all call this one function so they cannot disagree.

use serde_json::{Map, Value};

use super::evaluate::ConditionContext;
use super::issuer::audiences;

/// The principal AWS sees for Google tokens (`"Federated": "accounts.google.com"`).
pub const GOOGLE_PROVIDER: &str = "accounts.google.com";
/// `accounts.google.com:aud`: the token's `azp`, else its `aud`.
pub const KEY_AUD: &str = "accounts.google.com:aud";
/// `accounts.google.com:oaud`: the token's `aud`.
pub const KEY_OAUD: &str = "accounts.google.com:oaud";
/// `accounts.google.com:sub`: the token's `sub` (a service account's numeric unique id).
pub const KEY_SUB: &str = "accounts.google.com:sub";
/// `accounts.google.com:email`: the token's `email`, when it has one.
pub const KEY_EMAIL: &str = "accounts.google.com:email";

/// Builds the AWS condition context STS evaluates a Google ID token's trust policy with.
pub fn condition_context(claims: &Map<String, Value>) -> ConditionContext {
    let mut ctx = ConditionContext::new("the token");
    let azp = claim(claims, "azp");
    let aud = audiences(claims);
    match azp {
        Some(azp) => ctx.insert(KEY_AUD, vec![azp], Some("the token's azp")),
        None if !aud.is_empty() => ctx.insert(
            KEY_AUD,
            aud.clone(),
            Some("the token's aud, as it has no azp"),
        ),
        None => {}
    }
    if !aud.is_empty() {
        ctx.insert(KEY_OAUD, aud, Some("the token's aud"));
    }
    if let Some(sub) = claim(claims, "sub") {
        ctx.insert(KEY_SUB, vec![sub], Some("the token's sub"));
    }
    if let Some(email) = claim(claims, "email") {
        ctx.insert(KEY_EMAIL, vec![email], Some("the token's email"));
    }
    ctx
}

/// Where a Google condition key's value comes from, for explanations and `keyless lint`.
pub fn key_source(key: &str) -> Option<&'static str> {
    match key.to_ascii_lowercase().as_str() {
        "accounts.google.com:aud" => Some("the token's azp (or its aud when it has no azp)"),
        "accounts.google.com:oaud" => Some("the token's aud"),
        "accounts.google.com:sub" => Some("the token's sub"),
        "accounts.google.com:email" => Some("the token's email"),
        _ => None,
    }
}

fn claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn aud_key_is_azp_when_present() {
        let ctx = condition_context(&map(json!({
            "aud": "sts.amazonaws.com", "azp": "100000000000000000001",
            "sub": "100000000000000000001", "email": "deployer@p.iam.gserviceaccount.com"
        })));
        assert_eq!(
            ctx.values(KEY_AUD),
            Some(&["100000000000000000001".to_string()][..])
        );
        assert_eq!(
            ctx.values(KEY_OAUD),
            Some(&["sts.amazonaws.com".to_string()][..])
        );
        assert_eq!(
            ctx.values(KEY_SUB),
            Some(&["100000000000000000001".to_string()][..])
        );
        assert_eq!(
            ctx.values(KEY_EMAIL),
            Some(&["deployer@p.iam.gserviceaccount.com".to_string()][..])
        );
        assert_eq!(ctx.source(KEY_AUD), Some("the token's azp"));
    }

    #[test]
    fn aud_key_falls_back_to_aud_without_azp() {
        let ctx = condition_context(&map(json!({"aud": "my-client", "sub": "42"})));
        assert_eq!(ctx.values(KEY_AUD), Some(&["my-client".to_string()][..]));
        assert_eq!(ctx.values(KEY_OAUD), Some(&["my-client".to_string()][..]));
        assert_eq!(ctx.values(KEY_EMAIL), None, "no email claim, no email key");
        assert_eq!(
            ctx.source(KEY_AUD),
            Some("the token's aud, as it has no azp")
        );
    }

    #[test]
    fn keys_are_case_insensitive() {
        let ctx = condition_context(&map(json!({"aud": "a", "sub": "s"})));
        assert!(ctx.values("Accounts.Google.Com:SUB").is_some());
        assert_eq!(
            key_source("ACCOUNTS.GOOGLE.COM:OAUD"),
            Some("the token's aud")
        );
        assert_eq!(key_source("aws:SourceIp"), None);
    }
}
