//! AWS outbound identity federation on the lab's STS: `GetWebIdentityToken` and the account's
//! issuer (discovery and JWKS), as the real STS serves them.
//!
//! What is checked is what AWS checks: the request is SigV4-verified ([`super::aws_auth`]), the
//! account must have the feature enabled (`OutboundWebIdentityFederationDisabledException`
//! otherwise; [`super::Lab::enable_outbound_federation`] and `POST /_lab/outbound-federation`
//! stand in for IAM's `EnableOutboundWebIdentityFederation`), the parameters are validated with
//! AWS's messages, and a token may not outlive the session that asked for it
//! (`SessionDurationEscalationException`). The token carries AWS's claims: `sub` the caller's
//! role ARN (not the session), `aud`, `jti`, and under `https://sts.amazonaws.com/` the
//! account, the source region and the request tags. It is signed with the issuer's own key.
//!
//! The issuer is `https://ID.tokens.sts.global.api.aws`-shaped (ID derived from the account, so
//! trust configurations are predictable); its discovery document and JWKS are served by this
//! listener at `/.well-known/openid-configuration` and `/.well-known/jwks.json` once enabled,
//! the discovery's `jwks_uri` pointing back here. As AWS documents, these tokens cannot be used
//! with `AssumeRoleWithWebIdentity`: the lab's STS refuses them
//! ([`outbound_token_refusal`]).
//!
//! The issuer has one key per algorithm (RSA for `RS256`, P-384 for `ES384`), both in its JWKS.
//!
//! Not emulated: principal tags, organisation and EC2/Lambda context claims, and the identity policies
//! (`sts:GetWebIdentityToken`, `sts:IdentityTokenAudience`): the lab has none.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::aws_auth;
use super::google_keys::{GoogleSigningKey, TokenRejection};
use super::ids;
use super::sigv4::{Authorization, SignedRequest};
use super::state::LabState;
use super::sts_xml::{element, error_response, success_response};
use crate::credentials::format_expiration;

/// The host suffix of every outbound issuer.
pub const ISSUER_SUFFIX: &str = ".tokens.sts.global.api.aws";
/// The namespace of AWS's own claims.
pub const AWS_CLAIMS: &str = "https://sts.amazonaws.com/";
/// The lab's stand-in for AWS's (undocumented) ceiling on a token's claims.
const MAX_PAYLOAD_BYTES: usize = 8192;

/// The account's outbound federation: whether it is enabled, its issuer and signing key.
#[derive(Debug)]
pub(crate) struct OutboundFederation {
    enabled: AtomicBool,
    issuer: String,
}

impl OutboundFederation {
    pub fn new(account_id: &str, enabled: bool) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            issuer: issuer_for(account_id),
        }
    }

    /// Turns the feature on (idempotent here; IAM answers `FeatureEnabled` the second time)
    /// and returns the issuer, as `EnableOutboundWebIdentityFederation` does.
    pub fn enable(&self) -> String {
        self.enabled.store(true, Ordering::SeqCst);
        self.issuer.clone()
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// `https://UUID.tokens.sts.global.api.aws`, the UUID derived from the account id.
pub fn issuer_for(account_id: &str) -> String {
    let h = hex::encode(Sha256::digest(format!("keyless-lab-outbound:{account_id}")));
    format!(
        "https://{}-{}-{}-{}-{}{ISSUER_SUFFIX}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The issuer's signing key: one per process (see [`GoogleSigningKey::shared`] for why), not
/// Google's, generated on first use.
pub fn signing_key() -> Arc<GoogleSigningKey> {
    static KEY: OnceLock<Arc<GoogleSigningKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(GoogleSigningKey::generate()))
        .clone()
}

/// The issuer's P-384 key for `ES384` tokens, generated on first use (one per process).
struct Es384Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
}

fn es384_key() -> &'static Es384Key {
    static KEY: OnceLock<Es384Key> = OnceLock::new();
    KEY.get_or_init(|| {
        use p384::elliptic_curve::sec1::ToEncodedPoint;
        use p384::pkcs8::EncodePrivateKey;
        let secret = p384::SecretKey::random(&mut rand::rngs::OsRng);
        let der = secret
            .to_pkcs8_der()
            .expect("PKCS#8 encoding of a fresh key");
        let point = secret.public_key().to_encoded_point(false);
        let coordinate = |c: Option<&p384::FieldBytes>| {
            URL_SAFE_NO_PAD.encode(c.expect("an uncompressed point has both coordinates"))
        };
        let (x, y) = (coordinate(point.x()), coordinate(point.y()));
        Es384Key {
            kid: hex::encode(&Sha256::digest(format!("{x}.{y}"))[..20]),
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            decoding: DecodingKey::from_ec_components(&x, &y).expect("components of a fresh key"),
            x,
            y,
        }
    })
}

/// Signs `claims` as the issuer with `algorithm` (`RS256` or `ES384`).
fn sign(claims: &Value, algorithm: &str) -> String {
    if algorithm != "ES384" {
        return signing_key().sign(claims);
    }
    let key = es384_key();
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("ES384 signing with a valid key")
}

/// The public keys relying parties verify outbound tokens with.
pub fn jwks() -> Value {
    let ec = es384_key();
    json!({"keys": [
        signing_key().jwk(),
        {"kty": "EC", "crv": "P-384", "alg": "ES384", "use": "sig", "kid": ec.kid, "x": ec.x, "y": ec.y}
    ]})
}

/// Verifies an outbound token as a relying party would (signature with the issuer's key for
/// its algorithm, `iss`, `exp`); for lab services that trust the outbound issuer.
pub(crate) fn verify(
    state: &LabState,
    token: &str,
    now: i64,
) -> Result<Map<String, Value>, TokenRejection> {
    let issuer = state.outbound.issuer().to_string();
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| TokenRejection::Invalid("not a well-formed JWT".into()))?;
    if header.alg != Algorithm::ES384 {
        return signing_key().verify_issued_by(token, now, move |iss| iss == issuer);
    }
    let key = es384_key();
    if header.kid.as_deref() != Some(key.kid.as_str()) {
        return Err(TokenRejection::Invalid("unknown key id".into()));
    }
    let mut validation = Validation::new(Algorithm::ES384);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
        .map_err(|e| TokenRejection::Invalid(format!("signature: {e}")))?
        .claims;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
        return Err(TokenRejection::Invalid(format!("iss is not {issuer}")));
    }
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp > now => Ok(claims),
        Some(exp) => Err(TokenRejection::Expired { now, exp }),
        None => Err(TokenRejection::Invalid("no exp".into())),
    }
}

/// Why `AssumeRoleWithWebIdentity` refuses `token`, when it was issued by an outbound issuer:
/// AWS documents that `GetWebIdentityToken`'s tokens cannot be used for OIDC federation into
/// AWS. The message is the lab's (AWS's exact wording is not documented).
pub(crate) fn outbound_token_refusal(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let iss = claims.get("iss")?.as_str()?;
    let host = iss.strip_prefix("https://")?.split('/').next()?;
    host.ends_with(ISSUER_SUFFIX).then(|| {
        format!("Tokens issued by AWS STS GetWebIdentityToken ({iss}) cannot be used with AssumeRoleWithWebIdentity.")
    })
}

/// `/.well-known/openid-configuration`: 404 until the feature is enabled.
pub(crate) async fn discovery(State(state): State<Arc<LabState>>, headers: HeaderMap) -> Response {
    if !state.outbound.is_enabled() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    Json(json!({
        "issuer": state.outbound.issuer(),
        "jwks_uri": format!("http://{host}/.well-known/jwks.json"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES384"],
        "scopes_supported": ["openid"],
        "claims_supported": ["aud", "exp", "iat", "iss", "jti", "sub", AWS_CLAIMS]
    }))
    .into_response()
}

/// `/.well-known/jwks.json`: 404 until the feature is enabled.
pub(crate) async fn jwks_document(State(state): State<Arc<LabState>>) -> Response {
    if !state.outbound.is_enabled() {
        return StatusCode::NOT_FOUND.into_response();
    }
    Json(jwks()).into_response()
}

/// `POST /_lab/outbound-federation`: what IAM `EnableOutboundWebIdentityFederation` does.
pub(crate) async fn enable(State(state): State<Arc<LabState>>) -> Response {
    Json(json!({"IssuerIdentifier": state.outbound.enable()})).into_response()
}

/// A refusal in AWS's words.
pub(crate) struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn into_response(self, request_id: &str) -> Response {
        tracing::info!(code = self.code, message = %self.message, "lab sts: GetWebIdentityToken refused");
        error_response(self.status, self.code, &self.message, request_id)
    }
}

fn constraint(value: Option<&str>, field: &str, what: &str) -> String {
    match value {
        Some(v) => format!("Value '{v}' at '{field}' failed to satisfy constraint: {what}"),
        None => format!("Value null at '{field}' failed to satisfy constraint: {what}"),
    }
}

/// `GetWebIdentityToken`.
pub(crate) fn get_web_identity_token(
    state: &LabState,
    request: &SignedRequest<'_>,
    params: &[(String, String)],
    request_id: &str,
) -> Result<Response, Refusal> {
    let now = OffsetDateTime::now_utc();
    let caller = aws_auth::authenticate(state, request, now)
        .map_err(|e| Refusal::new(e.status, e.code, e.message))?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let members = |prefix: &str| -> Vec<(usize, &str)> {
        let mut found: Vec<(usize, &str)> = params
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.parse().ok()?, v.as_str())))
            .collect();
        found.sort();
        found
    };
    let audiences: Vec<&str> = members("Audience.member.")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut tags: Vec<(String, String)> = Vec::new();
    for n in 1.. {
        let key = param(&format!("Tags.member.{n}.Key"));
        let value = param(&format!("Tags.member.{n}.Value"));
        match (key, value) {
            (None, None) => break,
            (key, value) => tags.push((
                key.unwrap_or_default().to_string(),
                value.unwrap_or_default().to_string(),
            )),
        }
    }
    let algorithm = param("SigningAlgorithm");
    let mut errors = Vec::new();
    if audiences.is_empty() {
        errors.push(constraint(None, "audience", "Member must not be null"));
    } else if audiences.len() > 10 {
        errors.push(constraint(
            Some(&format!("[{}]", audiences.join(", "))),
            "audience",
            "Member must have length less than or equal to 10",
        ));
    }
    for aud in &audiences {
        if aud.is_empty() || aud.chars().count() > 1000 {
            errors.push(constraint(
                Some(aud),
                "audience.member",
                "Member must have length between 1 and 1000",
            ));
        }
    }
    match algorithm {
        None => errors.push(constraint(
            None,
            "signingAlgorithm",
            "Member must not be null",
        )),
        Some("RS256" | "ES384") => {}
        Some(other) => errors.push(constraint(
            Some(other),
            "signingAlgorithm",
            "Member must satisfy enum value set: [RS256, ES384]",
        )),
    }
    let duration = match param("DurationSeconds") {
        None => 300,
        Some(text) => match text.parse::<i64>() {
            Ok(d) if d < 60 => {
                errors.push(constraint(
                    Some(text),
                    "durationSeconds",
                    "Member must have value greater than or equal to 60",
                ));
                0
            }
            Ok(d) if d > 3600 => {
                errors.push(constraint(
                    Some(text),
                    "durationSeconds",
                    "Member must have value less than or equal to 3600",
                ));
                0
            }
            Ok(d) => d,
            Err(_) => {
                return Err(Refusal::new(
                    400,
                    "InvalidParameterValue",
                    format!(
                    "Value ({text}) for parameter DurationSeconds is invalid. Must be an integer."
                ),
                ))
            }
        },
    };
    if tags.len() > 50 {
        errors.push(constraint(
            Some(&tags.len().to_string()),
            "tags",
            "Member must have length less than or equal to 50",
        ));
    }
    for (key, value) in &tags {
        if key.is_empty() || key.chars().count() > 128 {
            errors.push(constraint(
                Some(key),
                "tags.member.key",
                "Member must have length between 1 and 128",
            ));
        }
        if value.chars().count() > 256 {
            errors.push(constraint(
                Some(value),
                "tags.member.value",
                "Member must have length less than or equal to 256",
            ));
        }
    }
    if !errors.is_empty() {
        let n = errors.len();
        let noun = if n == 1 { "error" } else { "errors" };
        return Err(Refusal::new(
            400,
            "ValidationError",
            format!("{n} validation {noun} detected: {}", errors.join("; ")),
        ));
    }
    if !state.outbound.is_enabled() {
        return Err(Refusal::new(
            403,
            "OutboundWebIdentityFederationDisabledException",
            "The outbound web identity federation feature is not enabled for this account. To use this feature, you must first enable it through the AWS Management Console or API.",
        ));
    }
    // A token may not outlive the session whose credentials asked for it.
    let session_expiry = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| Authorization::parse(v).ok())
        .and_then(|auth| state.aws_credentials(&auth.access_key_id))
        .and_then(|issued| issued.expiration);
    let expires_at = now + time::Duration::seconds(duration);
    if session_expiry.is_some_and(|end| expires_at > end) {
        return Err(Refusal::new(
            403,
            "SessionDurationEscalationException",
            "The requested token duration would extend the session beyond its original expiration time.",
        ));
    }

    let mut aws = json!({
        "aws_account": caller.account,
        "source_region": caller.signing_region,
    });
    if !tags.is_empty() {
        aws["request_tags"] = Value::Object(
            tags.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        );
    }
    let aud = match audiences.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    let claims = json!({
        "iss": state.outbound.issuer(),
        "aud": aud,
        "sub": principal_arn(&caller.arn, &caller.account),
        "iat": now.unix_timestamp(),
        "exp": expires_at.unix_timestamp(),
        "jti": ids::request_id(),
        AWS_CLAIMS: aws,
    });
    if claims.to_string().len() > MAX_PAYLOAD_BYTES {
        return Err(Refusal::new(
            400,
            "JWTPayloadSizeExceededException",
            "The requested token payload size exceeds the maximum allowed size.",
        ));
    }
    let token = sign(&claims, algorithm.unwrap_or("RS256"));
    state.record(&token);
    tracing::info!(caller = %caller.arn, issuer = %state.outbound.issuer(), "lab sts: issued an outbound web identity token");
    let mut result = element(4, "WebIdentityToken", &token);
    result.push_str(&element(4, "Expiration", &format_expiration(expires_at)));
    Ok(success_response("GetWebIdentityToken", &result, request_id))
}

/// The principal a token names: the role of an assumed-role session (not the session), or the
/// IAM user itself.
pub fn principal_arn(caller_arn: &str, account: &str) -> String {
    match caller_arn.split_once(":assumed-role/") {
        Some((_, rest)) => {
            let role = rest.split('/').next().unwrap_or(rest);
            format!("arn:aws:iam::{account}:role/{role}")
        }
        None => caller_arn.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_has_awss_shape_and_follows_the_account() {
        let issuer = issuer_for("123456789012");
        assert!(
            issuer.starts_with("https://") && issuer.ends_with(ISSUER_SUFFIX),
            "{issuer}"
        );
        assert_eq!(issuer, issuer_for("123456789012"));
        assert_ne!(issuer, issuer_for("210987654321"));
        let id = issuer
            .trim_start_matches("https://")
            .trim_end_matches(ISSUER_SUFFIX);
        assert_eq!(
            id.split('-').map(str::len).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
    }

    #[test]
    fn the_subject_is_the_role_not_the_session() {
        assert_eq!(
            principal_arn(
                "arn:aws:sts::123456789012:assumed-role/app/i-0abc",
                "123456789012"
            ),
            "arn:aws:iam::123456789012:role/app"
        );
        assert_eq!(
            principal_arn("arn:aws:iam::123456789012:user/ci-user", "123456789012"),
            "arn:aws:iam::123456789012:user/ci-user"
        );
    }

    #[test]
    fn outbound_tokens_are_recognised_by_their_issuer() {
        let encode = |claims: Value| {
            format!(
                "e30.{}.sig",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
            )
        };
        let outbound = encode(json!({"iss": issuer_for("123456789012")}));
        assert!(outbound_token_refusal(&outbound)
            .unwrap()
            .contains("cannot be used with AssumeRoleWithWebIdentity"));
        assert!(
            outbound_token_refusal(&encode(json!({"iss": "https://accounts.google.com"})))
                .is_none()
        );
        assert!(outbound_token_refusal("garbage").is_none());
    }

    use crate::lab::{Lab, LabConfig};
    use std::time::SystemTime;

    /// POSTs `form` to the lab STS, SigV4-signed with `credentials` (unsigned with `None`).
    async fn call(
        lab: &Lab,
        credentials: Option<&crate::credentials::AwsCredentials>,
        form: &[(&str, &str)],
    ) -> (u16, String) {
        let url = format!("{}/", lab.aws_sts_url());
        let mut all = vec![("Action", "GetWebIdentityToken"), ("Version", "2011-06-15")];
        all.extend_from_slice(form);
        let body = serde_urlencoded::to_string(&all).unwrap();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut request = reqwest::Client::new()
            .post(&url)
            .header("content-type", content_type);
        if let Some(credentials) = credentials {
            let signed = crate::wire::sigv4::sign_request(
                "POST",
                &url,
                &[("content-type", content_type)],
                body.as_bytes(),
                credentials,
                "eu-west-3",
                "sts",
                SystemTime::now(),
            )
            .unwrap();
            for (name, value) in signed {
                request = request.header(name, value.expose());
            }
        }
        let response = request.body(body).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    fn token_of(xml: &str) -> &str {
        let start = xml.find("<WebIdentityToken>").unwrap() + "<WebIdentityToken>".len();
        &xml[start..xml.find("</WebIdentityToken>").unwrap()]
    }

    #[tokio::test]
    async fn get_web_identity_token_checks_what_sts_checks() {
        let lab = Lab::start(LabConfig::demo()).await.unwrap();
        let user = lab.aws_user_credentials("ci-user");
        let rs256 = [
            ("Audience.member.1", "https://rp.example"),
            ("SigningAlgorithm", "RS256"),
        ];

        let (status, body) = call(&lab, None, &rs256).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("MissingAuthenticationToken"), "{body}");

        let (status, body) = call(&lab, Some(&user), &[("DurationSeconds", "30")]).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("3 validation errors detected"), "{body}");
        assert!(body.contains("greater than or equal to 60"), "{body}");
        let eleven: Vec<(String, String)> = (1..=11)
            .map(|n| (format!("Audience.member.{n}"), format!("a{n}")))
            .collect();
        let mut form: Vec<(&str, &str)> = eleven
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        form.push(("SigningAlgorithm", "HS256"));
        let (_, body) = call(&lab, Some(&user), &form).await;
        assert!(
            body.contains("less than or equal to 10") && body.contains("[RS256, ES384]"),
            "{body}"
        );

        let (status, body) = call(&lab, Some(&user), &rs256).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains("OutboundWebIdentityFederationDisabledException"),
            "{body}"
        );
        let discovery = format!("{}/.well-known/openid-configuration", lab.aws_sts_url());
        let http = reqwest::Client::new();
        assert_eq!(http.get(&discovery).send().await.unwrap().status(), 404);
        let enabled: Value = http
            .post(format!("{}/_lab/outbound-federation", lab.aws_sts_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(enabled["IssuerIdentifier"], lab.outbound_issuer().as_str());
        assert_eq!(http.get(&discovery).send().await.unwrap().status(), 200);

        let (status, body) = call(
            &lab,
            Some(&user),
            &[
                ("Audience.member.1", "https://rp.example"),
                ("Audience.member.2", "second"),
                ("SigningAlgorithm", "RS256"),
                ("DurationSeconds", "3600"),
                ("Tags.member.1.Key", "job"),
                ("Tags.member.1.Value", "42"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<Expiration>"), "{body}");
        let claims = lab.verify_outbound_token(token_of(&body)).unwrap();
        assert_eq!(claims["sub"], "arn:aws:iam::123456789012:user/ci-user");
        assert_eq!(claims["aud"], json!(["https://rp.example", "second"]));
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3600
        );
        assert_eq!(claims[AWS_CLAIMS]["source_region"], "eu-west-3");
        assert_eq!(claims[AWS_CLAIMS]["request_tags"], json!({"job": "42"}));

        // A session that ends in ten minutes cannot sign for an hour.
        let session =
            lab.issue_role_credentials("aws-workload", "s", std::time::Duration::from_secs(600));
        let mut hour = rs256.to_vec();
        hour.push(("DurationSeconds", "3600"));
        let (status, body) = call(&lab, Some(&session), &hour).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains("SessionDurationEscalationException"),
            "{body}"
        );
        let (status, body) = call(&lab, Some(&session), &rs256).await;
        assert_eq!(status, 200, "{body}");
        let claims = lab.verify_outbound_token(token_of(&body)).unwrap();
        assert_eq!(claims["sub"], "arn:aws:iam::123456789012:role/aws-workload");

        let es384 = [
            ("Audience.member.1", "https://rp.example"),
            ("SigningAlgorithm", "ES384"),
        ];
        let (status, body) = call(&lab, Some(&user), &es384).await;
        assert_eq!(status, 200, "{body}");
        let header = jsonwebtoken::decode_header(token_of(&body)).unwrap();
        assert_eq!(header.alg, Algorithm::ES384);
        let claims = lab.verify_outbound_token(token_of(&body)).unwrap();
        assert_eq!(claims["aud"], "https://rp.example");
        let jwks = lab.outbound_jwks();
        let kid = header.kid.unwrap();
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == kid.as_str() && k["crv"] == "P-384"),
            "{jwks}"
        );

        let long = "v".repeat(256);
        let keys: Vec<(String, String)> = (1..=40)
            .flat_map(|n| {
                [
                    (format!("Tags.member.{n}.Key"), format!("key-{n}")),
                    (format!("Tags.member.{n}.Value"), long.clone()),
                ]
            })
            .collect();
        let mut form = rs256.to_vec();
        form.extend(keys.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (status, body) = call(&lab, Some(&user), &form).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("JWTPayloadSizeExceededException"), "{body}");
    }

    /// The demo pool's aws-oidc provider verifies the outbound issuer's tokens with the keys its
    /// JWKS publishes, RS256 and ES384 alike, and admits the lab account's; a token of another
    /// key is refused.
    #[tokio::test]
    async fn google_sts_verifies_outbound_tokens_with_the_issuers_rsa_and_ec_keys() {
        let lab = Lab::start(LabConfig::demo()).await.unwrap();
        lab.enable_outbound_federation();
        let session =
            lab.issue_role_credentials("aws-workload", "s", std::time::Duration::from_secs(3600));
        let provider =
            lab.provider_audience(crate::lab::DEMO_POOL, crate::lab::DEMO_AWS_OIDC_PROVIDER);
        let audience = provider.replacen("//", "https://", 1);
        let exchange = |token: String| {
            let form: [(&str, String); 6] = [
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange".into(),
                ),
                ("audience", provider.clone()),
                (
                    "scope",
                    "https://www.googleapis.com/auth/cloud-platform".into(),
                ),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token".into(),
                ),
                ("subject_token", token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:jwt".into(),
                ),
            ];
            let url = lab.google_sts_url();
            async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        for algorithm in ["RS256", "ES384"] {
            let form = [
                ("Audience.member.1", audience.as_str()),
                ("SigningAlgorithm", algorithm),
            ];
            let (status, body) = call(&lab, Some(&session), &form).await;
            assert_eq!(status, 200, "{body}");
            let (status, answer) = exchange(token_of(&body).to_string()).await;
            assert_eq!(status, 200, "{algorithm}: {answer}");
            assert!(answer.contains("access_token"), "{answer}");
        }
        // The same claims signed with the lab's Google key: not the issuer's.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let forged = lab.state.key.sign(&json!({
            "iss": lab.outbound_issuer(), "aud": audience, "iat": now, "exp": now + 300,
            "sub": "arn:aws:iam::123456789012:role/aws-workload",
            AWS_CLAIMS: {"aws_account": "123456789012"},
        }));
        let (status, answer) = exchange(forged).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("invalid_grant"), "{answer}");
    }
}
