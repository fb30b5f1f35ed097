//! Google STS (`POST /v1/token`): the token exchange that turns an AWS identity into a Google
//! federated access token, checking what Google checks.
//!
//! For an OIDC provider the subject token is a JWT: its signature is checked against the
//! provider's JWKS (inline `jwksJson`, or what the issuer publishes: the GitHub Actions, cluster
//! and AWS outbound issuers' own keys, RSA or P-384, else the lab's key), then
//! `iss`, `exp`/`iat` and `aud` (the allowed audiences, by default the provider's own name with
//! and without `https://iam.googleapis.com/`), then the attribute mapping
//! ([`crate::policy::issuer::google_sts`], `google.subject` at most 127 bytes) and the condition.
//!
//! For an AWS provider the subject token is a serialized, SigV4-signed `GetCallerIdentity` request. Google does not
//! trust what the token *says*; it has AWS verify the signature and uses the ARN AWS answers
//! with. The lab does the same with its own verifier and the credentials its AWS side knows, then
//! applies the provider's account pin, the default attribute mapping and the attribute condition
//! (through [`crate::policy::cel`]), and answers with Google's OAuth error codes and wording. The
//! explanation Google never gives ("which attribute made the condition false") goes to the log
//! and [`super::Lab::last_denial`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

use super::aws_auth;
use super::config::{LabAwsProvider, LabPoolOidcProvider};
use super::sigv4::SignedRequest;
use super::state::{AccessGrant, Counters, Federation, LabState};
use crate::policy::cel::{CelExpression, CelVariables};
use crate::policy::issuer::google_sts::{
    accepted_audiences, assertion_variables, FederatedIdentity, MappingError, MAX_SUBJECT_BYTES,
};
use crate::policy::workload_identity::{aws_default_mapping, ProviderAudience};

/// `grant_type` of a token exchange (RFC 8693).
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `requested_token_type` / `issued_token_type` for an access token.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `subject_token_type` of an AWS subject token.
pub(crate) const AWS_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
/// `subject_token_type` of an OIDC token (RFC 8693).
pub(crate) const JWT_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The other `subject_token_type` Google accepts for an OIDC token.
pub(crate) const ID_TOKEN_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// How far in the future an OIDC token's `iat` may be.
const CLOCK_SKEW_SECONDS: i64 = 300;
/// Google refuses OIDC tokens that live longer than a day.
const MAX_OIDC_TOKEN_LIFETIME: i64 = 86_400;
/// The header that binds a subject token to one provider.
const TARGET_RESOURCE_HEADER: &str = "x-goog-cloud-target-resource";
/// Google's answer for an unknown or disabled pool or provider.
const INVALID_TARGET: &str = "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.";
/// Google's answer when the attribute condition refuses.
const REJECTED_BY_CONDITION: &str = "The given credential is rejected by the attribute condition.";
/// Federated tokens live one hour.
const FEDERATED_TOKEN_LIFETIME: i64 = 3600;

/// An OAuth error answer.
struct OAuthError {
    error: &'static str,
    description: String,
    /// What the lab knows and Google does not say (for `last_denial`).
    explanation: Option<String>,
}

fn refuse(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        error,
        description: description.into(),
        explanation: None,
    }
}

impl OAuthError {
    fn because(mut self, explanation: impl Into<String>) -> Self {
        self.explanation = Some(explanation.into());
        self
    }
}

/// `POST /v1/token`.
pub(crate) async fn token(State(state): State<Arc<LabState>>, body: Bytes) -> Response {
    match exchange(&state, &body) {
        Ok(answer) => {
            Counters::bump(&state.counters.google_sts_exchanges);
            Json(answer).into_response()
        }
        Err(e) => {
            Counters::bump(&state.counters.google_sts_refusals);
            let why = e
                .explanation
                .clone()
                .unwrap_or_else(|| e.description.clone());
            tracing::info!(error = e.error, %why, "lab google sts: refused");
            state.set_last_denial(format!("Google STS refused ({}): {why}", e.error));
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.error, "error_description": e.description})),
            )
                .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct SerializedRequest {
    url: String,
    method: String,
    headers: Vec<SerializedHeader>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SerializedHeader {
    key: String,
    value: String,
}

fn exchange(state: &LabState, body: &[u8]) -> Result<serde_json::Value, OAuthError> {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| {
        refuse(
            "invalid_request",
            format!("The request body is not a valid form: {e}"),
        )
    })?;
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let required = |name: &str| {
        field(name).ok_or_else(|| {
            refuse(
                "invalid_request",
                format!("The \"{name}\" parameter is required."),
            )
        })
    };
    let grant_type = required("grant_type")?;
    if grant_type != GRANT_TYPE {
        return Err(refuse(
            "unsupported_grant_type",
            format!("Unsupported grant type \"{grant_type}\"; expected {GRANT_TYPE}."),
        ));
    }
    let audience = required("audience")?;
    let subject_token_type = required("subject_token_type")?;
    let subject_token = required("subject_token")?;
    if let Some(requested) = field("requested_token_type") {
        if requested != ACCESS_TOKEN_TYPE {
            return Err(refuse(
                "invalid_request",
                format!("Invalid value for \"requested_token_type\": {requested}; expected {ACCESS_TOKEN_TYPE}."),
            ));
        }
    }
    let scopes: Vec<String> = field("scope")
        .unwrap_or("https://www.googleapis.com/auth/cloud-platform")
        .split_whitespace()
        .map(String::from)
        .collect();

    let target = ProviderAudience::parse(audience)
        .filter(|a| a.project_number == state.config.project_number);
    let aws = target
        .as_ref()
        .and_then(|a| state.config.aws_provider(&a.pool, &a.provider));
    let oidc = target
        .as_ref()
        .and_then(|a| state.config.pool_oidc_provider(&a.pool, &a.provider));
    let (target, identity) = match (target, aws, oidc) {
        (Some(target), Some(provider), _) => {
            let identity =
                exchange_aws(state, &target, provider, subject_token_type, subject_token)?;
            (target, identity)
        }
        (Some(target), None, Some(provider)) => {
            let identity =
                exchange_oidc(state, &target, provider, subject_token_type, subject_token)?;
            (target, identity)
        }
        _ => {
            return Err(refuse("invalid_target", INVALID_TARGET).because(format!(
                "the lab has no workload identity pool provider {audience} (project number {})",
                state.config.project_number
            )))
        }
    };

    let pool_resource = target.pool_resource();
    let (token, grant) = state.issue_grant(AccessGrant {
        principal: format!("principal:{pool_resource}/subject/{}", identity.subject),
        scopes,
        expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(FEDERATED_TOKEN_LIFETIME),
        federation: Some(Federation {
            pool_resource,
            subject: identity.subject.clone(),
            attributes: identity.attributes.clone(),
        }),
    });
    tracing::info!(subject = %identity.subject, provider = %target.canonical(), "lab google sts: issued a federated token");
    Ok(json!({
        "access_token": token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": (grant.expires_at - OffsetDateTime::now_utc()).as_seconds_f64().round().max(0.0) as i64,
    }))
}

/// An AWS provider: the signed `GetCallerIdentity`, the account pin, the default mapping, the
/// condition.
fn exchange_aws(
    state: &LabState,
    target: &ProviderAudience,
    provider: &LabAwsProvider,
    subject_token_type: &str,
    subject_token: &str,
) -> Result<FederatedIdentity, OAuthError> {
    if subject_token_type != AWS_SUBJECT_TOKEN_TYPE {
        return Err(refuse(
            "invalid_request",
            format!("Invalid subject_token_type \"{subject_token_type}\" for an AWS provider; expected {AWS_SUBJECT_TOKEN_TYPE}."),
        ));
    }
    let caller = verify_subject_token(state, subject_token, target)?;

    if caller.account != provider.aws_account_id {
        return Err(refuse(
            "invalid_grant",
            "The AWS account of the credential is not allowed by the provider.",
        )
        .because(format!(
            "the caller {} is in AWS account {}, but provider {} accepts only account {}",
            caller.arn,
            caller.account,
            target.canonical(),
            provider.aws_account_id
        )));
    }
    let identity = aws_default_mapping(&caller.arn, &caller.account);
    check_condition(
        provider.attribute_condition.as_deref(),
        target,
        &identity.cel_variables(&caller.account),
    )?;
    Ok(FederatedIdentity {
        subject: identity.subject,
        attributes: identity.attributes,
    })
}

/// An OIDC provider: the JWT's signature (the provider's JWKS), issuer, time claims and
/// audience, then the provider's mapping and condition — what Google checks, in its order.
fn exchange_oidc(
    state: &LabState,
    target: &ProviderAudience,
    provider: &LabPoolOidcProvider,
    subject_token_type: &str,
    subject_token: &str,
) -> Result<FederatedIdentity, OAuthError> {
    if subject_token_type != JWT_SUBJECT_TOKEN_TYPE
        && subject_token_type != ID_TOKEN_SUBJECT_TOKEN_TYPE
    {
        return Err(refuse(
            "invalid_request",
            format!("Invalid subject_token_type \"{subject_token_type}\" for an OIDC provider; expected {JWT_SUBJECT_TOKEN_TYPE} or {ID_TOKEN_SUBJECT_TOKEN_TYPE}."),
        ));
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = verify_oidc_token(state, target, provider, subject_token, now)?;
    let assertion = assertion_variables(&claims);
    let mapping = provider.mapping().map_err(|e| {
        refuse(
            "invalid_grant",
            "The attribute mapping of the provider is invalid.",
        )
        .because(e.to_string())
    })?;
    let identity = mapping.apply(&assertion).map_err(|e| match e {
        MappingError::SubjectTooLong { bytes } => refuse(
            "invalid_request",
            format!("The size of mapped attribute google.subject exceeds the {MAX_SUBJECT_BYTES} bytes limit. Either modify your attribute mapping or the incoming assertion to produce a mapped attribute that is less than {MAX_SUBJECT_BYTES} bytes."),
        )
        .because(format!("google.subject is {bytes} bytes under the mapping of provider {}", target.canonical())),
        other => refuse("invalid_grant", format!("The attribute mapping could not be applied: {other}")),
    })?;
    check_condition(
        provider.attribute_condition.as_deref(),
        target,
        &identity.cel_variables(&assertion),
    )?;
    Ok(identity)
}

/// Verifies an OIDC token as Google STS does for `provider`; returns its claims.
fn verify_oidc_token(
    state: &LabState,
    target: &ProviderAudience,
    provider: &LabPoolOidcProvider,
    token: &str,
    now: i64,
) -> Result<Map<String, Value>, OAuthError> {
    let grant = |m: String| refuse("invalid_grant", m);
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| grant(format!("Unable to parse the ID Token: {e}.")))?;
    let keys: JwkSet = match &provider.jwks_json {
        Some(jwks) => serde_json::from_str(jwks)
            .map_err(|e| grant(format!("The provider's jwksJson is not a JWK set: {e}.")))?,
        None => discovered_keys(state, &provider.issuer_uri)
            .map_err(|e| grant(format!("The issuer's JWKS could not be read: {e}.")))?,
    };
    let key = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| {
        grant(format!(
            "The ID Token's key id {} is not among the keys of the issuer {}.",
            header.kid.as_deref().unwrap_or("(none)"),
            provider.issuer_uri
        ))
    })?;
    let decoding = DecodingKey::from_jwk(key).map_err(|e| {
        grant(format!(
            "The issuer's key {:?} is unusable: {e}.",
            header.kid
        ))
    })?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation)
        .map_err(|e| {
            grant("The ID Token signature could not be verified.".into()).because(format!(
                "the token does not verify with the keys of {} ({e})",
                provider.issuer_uri
            ))
        })?
        .claims;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    if iss != provider.issuer_uri {
        return Err(grant(format!(
            "The issuer in ID Token {iss} does not match the expected ISSUER {}.",
            provider.issuer_uri
        ))
        .because(format!(
            "provider {} trusts the issuer {}, and the token's iss is {iss}",
            target.canonical(),
            provider.issuer_uri
        )));
    }
    let exp = claims.get("exp").and_then(Value::as_i64);
    let iat = claims.get("iat").and_then(Value::as_i64);
    let (Some(exp), Some(iat)) = (exp, iat) else {
        return Err(grant("The ID Token must have iat and exp claims.".into()));
    };
    if exp <= now {
        return Err(grant(format!(
            "The ID Token has expired (exp {exp}, now {now})."
        )));
    }
    if iat > now + CLOCK_SKEW_SECONDS {
        return Err(grant(format!(
            "The ID Token was issued in the future (iat {iat}, now {now})."
        )));
    }
    if exp - iat > MAX_OIDC_TOKEN_LIFETIME {
        return Err(grant(format!(
            "The ID Token's lifetime exp - iat = {} s exceeds the {MAX_OIDC_TOKEN_LIFETIME} s allowed.",
            exp - iat
        )));
    }
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let accepted = accepted_audiences(&target.canonical(), &provider.allowed_audiences);
    if !audiences.iter().any(|a| accepted.contains(a)) {
        return Err(grant(format!(
            "The audience in ID Token [{}] does not match the expected audience.",
            audiences.join(", ")
        ))
        .because(format!(
            "provider {} accepts the audiences {}",
            target.canonical(),
            accepted.join(", ")
        )));
    }
    Ok(claims)
}

/// Decodes the subject token, checks it is a `GetCallerIdentity` to a real STS host bound to
/// this provider, and has "AWS" (the lab's verifier) authenticate it.
fn verify_subject_token(
    state: &LabState,
    subject_token: &str,
    target: &ProviderAudience,
) -> Result<aws_auth::AwsCaller, OAuthError> {
    let invalid = |why: String| {
        refuse(
            "invalid_request",
            format!("Invalid format of AWS credentials: {why}"),
        )
    };
    let decoded = percent_decode_str(subject_token)
        .decode_utf8()
        .map_err(|_| invalid("the subject token is not URL-encoded UTF-8".into()))?;
    let request: SerializedRequest = serde_json::from_str(&decoded).map_err(|e| {
        invalid(format!(
            "the subject token is not a serialized request {{\"url\", \"method\", \"headers\": [{{\"key\", \"value\"}}]}}: {e}"
        ))
    })?;
    let rejected = |why: String| {
        refuse(
            "invalid_grant",
            format!("Invalid AWS GetCallerIdentity request: {why}"),
        )
    };
    if request.method != "POST" {
        return Err(rejected(format!(
            "the method is {}; it must be POST",
            request.method
        )));
    }
    if request.body.as_deref().is_some_and(|b| !b.is_empty()) {
        return Err(rejected("the request must have an empty body".into()));
    }
    let url = url::Url::parse(&request.url)
        .map_err(|e| rejected(format!("the url {} is invalid: {e}", request.url)))?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let region = if host == "sts.amazonaws.com" {
        Some("us-east-1".to_string())
    } else {
        host.strip_prefix("sts.")
            .and_then(|h| h.strip_suffix(".amazonaws.com"))
            .filter(|r| !r.is_empty() && !r.contains('.'))
            .map(String::from)
    };
    let (Some(region), "https", None) = (region, url.scheme(), url.port()) else {
        return Err(rejected(format!(
            "the url {} is not https://sts.REGION.amazonaws.com or https://sts.amazonaws.com",
            request.url
        )));
    };
    let mut query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    query.sort();
    let expected = [
        ("Action".to_string(), "GetCallerIdentity".to_string()),
        ("Version".to_string(), "2011-06-15".to_string()),
    ];
    if query != expected || !matches!(url.path(), "" | "/") {
        return Err(rejected(format!(
            "the url {} must be the STS endpoint with exactly ?Action=GetCallerIdentity&Version=2011-06-15",
            request.url
        )));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    };
    if !header("host").is_some_and(|h| h.eq_ignore_ascii_case(&host)) {
        return Err(rejected(format!(
            "the host header must be present and equal the url's host {host}"
        )));
    }
    let bound_to = header(TARGET_RESOURCE_HEADER).ok_or_else(|| {
        rejected(format!(
            "the {TARGET_RESOURCE_HEADER} header is missing; it must be the audience {}",
            target.canonical()
        ))
    })?;
    if ProviderAudience::parse(bound_to).as_ref() != Some(target) {
        return Err(rejected(format!(
            "the {TARGET_RESOURCE_HEADER} header {bound_to} does not match the audience {}",
            target.canonical()
        ))
        .because(format!(
            "the subject token was made for {bound_to}, not for {}: a token minted for one provider cannot be replayed at another",
            target.canonical()
        )));
    }
    let signed = SignedRequest {
        method: "POST",
        path: url.path(),
        query: url.query().unwrap_or(""),
        headers: request
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect(),
        body: b"",
    };
    let aws_refused = |code: &str, message: &str| {
        refuse(
            "invalid_grant",
            format!("Received invalid AWS response of type {code} with error message: {message}"),
        )
    };
    let caller =
        aws_auth::authenticate(state, &signed, OffsetDateTime::now_utc()).map_err(|e| {
            aws_refused(e.code, &e.message).because(format!(
                "AWS (the lab's verifier) refused the signed GetCallerIdentity: {} ({})",
                e.message, e.code
            ))
        })?;
    if caller.signing_region != region {
        let message = format!(
            "Credential should be scoped to a valid region. (got '{}', expected '{region}')",
            caller.signing_region
        );
        return Err(aws_refused("SignatureDoesNotMatch", &message));
    }
    Ok(caller)
}

/// The keys `issuer`'s discovery document points at, as Google fetches them for a provider
/// without `jwksJson`: the GitHub Actions and Kubernetes issuers' own keys
/// ([`LabState::signing_key_for`]), the account's AWS outbound issuer's RSA and P-384 keys once
/// outbound federation is enabled (its JWKS is a 404 before), else the lab's key, which every
/// other issuer the lab signs for ([`super::Lab::sign_claims`]) publishes.
fn discovered_keys(state: &LabState, issuer: &str) -> Result<JwkSet, serde_json::Error> {
    if issuer == state.outbound.issuer() {
        if !state.outbound.is_enabled() {
            return Err(serde::de::Error::custom(format!(
                "{issuer}/.well-known/jwks.json answers 404 until outbound identity federation is enabled (aws iam enable-outbound-web-identity-federation)"
            )));
        }
        return serde_json::from_value(super::aws_outbound::jwks());
    }
    serde_json::from_value(json!({"keys": [state.signing_key_for(Some(issuer)).jwk()]}))
}

/// Applies the provider's attribute condition; refusals explain which values made it false.
fn check_condition(
    condition: Option<&str>,
    target: &ProviderAudience,
    variables: &CelVariables,
) -> Result<(), OAuthError> {
    let Some(condition) = condition else {
        return Ok(());
    };
    // Validated when the lab starts; a parse failure here is a lab bug, refused, never admitted.
    let expression = CelExpression::parse(condition).map_err(|e| {
        refuse("unauthorized_client", REJECTED_BY_CONDITION)
            .because(format!("the attribute condition cannot be parsed: {e}"))
    })?;
    let values: BTreeMap<String, String> = expression
        .references()
        .into_iter()
        .map(|name| {
            let value = variables
                .get(&name)
                .map(|v| format!("{v:?}"))
                .unwrap_or_else(|| "(absent)".into());
            (name, value)
        })
        .collect();
    let shown = values
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    match expression.evaluate(variables) {
        Ok(true) => Ok(()),
        Ok(false) => Err(
            refuse("unauthorized_client", REJECTED_BY_CONDITION).because(format!(
                "the attribute condition `{condition}` of provider {} is false for {shown}",
                target.canonical()
            )),
        ),
        Err(e) => Err(
            refuse("unauthorized_client", REJECTED_BY_CONDITION).because(format!(
                "the attribute condition `{condition}` of provider {} failed to evaluate ({e}) for {shown}",
                target.canonical()
            )),
        ),
    }
}
