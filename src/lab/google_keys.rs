//! The lab's Google signing key: mints RS256 ID tokens, publishes them as a JWKS, and verifies
//! them for the lab's AWS STS the way STS verifies Google's.
//!
//! Generating a 2048-bit RSA key takes a noticeable fraction of a second in debug builds, and a
//! test suite starts dozens of labs, so one key per process is shared by default
//! ([`GoogleSigningKey::shared`]); tests that need a foreign key call
//! [`GoogleSigningKey::generate`].

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The issuer Google puts in every ID token.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// An RSA key pair with its key id.
pub struct GoogleSigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    n: String,
    e: String,
}

impl std::fmt::Debug for GoogleSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleSigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Why an ID token was refused, mapped by STS onto `InvalidIdentityToken` / `ExpiredTokenException`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRejection {
    /// `exp` is not in the future.
    Expired {
        /// Now, in seconds since the epoch.
        now: i64,
        /// The token's `exp`.
        exp: i64,
    },
    /// Anything else: shape, algorithm, key id, signature, issuer.
    Invalid(String),
}

impl GoogleSigningKey {
    /// A fresh 2048-bit key.
    pub fn generate() -> Self {
        let private =
            RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key generation");
        let der = private
            .to_pkcs1_der()
            .expect("PKCS#1 encoding of a fresh key");
        let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        let kid = hex::encode(&Sha256::digest(n.as_bytes())[..20]);
        let decoding = DecodingKey::from_rsa_components(&n, &e).expect("components of a fresh key");
        Self {
            kid,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding,
            n,
            e,
        }
    }

    /// The process-wide key every lab uses unless given another.
    pub fn shared() -> Arc<Self> {
        static SHARED: OnceLock<Arc<GoogleSigningKey>> = OnceLock::new();
        SHARED.get_or_init(|| Arc::new(Self::generate())).clone()
    }

    /// The key id, as in the JWT header and the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs claims as an RS256 JWT with header `{alg, kid, typ: JWT}`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .expect("RS256 signing with a valid key")
    }

    /// The public key as a JWK (what `https://www.googleapis.com/oauth2/v3/certs` lists).
    pub fn jwk(&self) -> Value {
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": self.n, "e": self.e})
    }

    /// Verifies a token as AWS STS verifies Google tokens: RS256 only, a known kid, a valid
    /// signature, Google's issuer, and an `exp` in the future. Returns the claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Map<String, Value>, TokenRejection> {
        self.verify_issued_by(token, now, |_| false)
    }

    /// [`Self::verify`], also accepting the issuers `registered` says the account has an IAM
    /// OIDC provider for (the lab signs their tokens with this same key).
    pub fn verify_issued_by(
        &self,
        token: &str,
        now: i64,
        registered: impl Fn(&str) -> bool,
    ) -> Result<Map<String, Value>, TokenRejection> {
        let invalid = |m: &str| TokenRejection::Invalid(m.to_string());
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("The ID token is not a well-formed JWT."))?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenRejection::Invalid(format!(
                "Incorrect token audience or signature algorithm: {:?} is not supported, only RS256.",
                header.alg
            )));
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(invalid(
                "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
            ));
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &validation)
            .map_err(|_| invalid("The web identity token that was passed could not be validated by AWS. Get a new identity token from the identity provider and then retry the request."))?;
        let claims = data.claims;
        match claims.get("iss").and_then(Value::as_str) {
            Some(GOOGLE_ISSUER) | Some("accounts.google.com") => {}
            Some(other) if registered(other) => {}
            Some(other) => {
                return Err(TokenRejection::Invalid(format!(
                    "No OpenIDConnect provider found in your account for {other}"
                )))
            }
            None => return Err(invalid("The ID token has no iss claim.")),
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid("The ID token has no exp claim."))?;
        if exp <= now {
            return Err(TokenRejection::Expired { now, exp });
        }
        Ok(claims)
    }
}

/// The claims of a Google service-account ID token.
pub struct IdTokenClaims<'a> {
    /// The audience asked for.
    pub audience: &'a str,
    /// The account's numeric unique id (`azp` and `sub`).
    pub unique_id: &'a str,
    /// `Some(email)` adds `email` and `email_verified`.
    pub email: Option<&'a str>,
    /// Issued-at, seconds since the epoch.
    pub issued_at: i64,
    /// Lifetime in seconds (zero: expired on arrival).
    pub lifetime: i64,
    /// The `google.compute_engine` block of `format=full` metadata tokens.
    pub compute_engine: Option<Value>,
}

impl IdTokenClaims<'_> {
    /// The JSON claims, shaped as Google shapes them.
    pub fn to_json(&self) -> Value {
        let mut claims = json!({
            "iss": GOOGLE_ISSUER,
            "aud": self.audience,
            "azp": self.unique_id,
            "sub": self.unique_id,
            "iat": self.issued_at,
            "exp": self.issued_at + self.lifetime,
        });
        if let Some(email) = self.email {
            claims["email"] = json!(email);
            claims["email_verified"] = json!(true);
        }
        if let Some(ce) = &self.compute_engine {
            claims["google"] = json!({ "compute_engine": ce });
        }
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64, lifetime: i64) -> Value {
        IdTokenClaims {
            audience: "sts.amazonaws.com",
            unique_id: "100000000000000000001",
            email: Some("a@b.iam.gserviceaccount.com"),
            issued_at: now,
            lifetime,
            compute_engine: None,
        }
        .to_json()
    }

    #[test]
    fn mints_and_verifies() {
        let key = GoogleSigningKey::shared();
        let token = key.sign(&claims(1_000, 3600));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref(), header.typ.as_deref()),
            (Algorithm::RS256, Some(key.kid()), Some("JWT"))
        );
        let got = key.verify(&token, 1_001).unwrap();
        assert_eq!(got["azp"], "100000000000000000001");
        assert_eq!(got["email_verified"], true);
        assert_eq!(
            key.verify(&token, 4_600),
            Err(TokenRejection::Expired {
                now: 4_600,
                exp: 4_600
            })
        );
    }

    #[test]
    fn rejects_foreign_keys_tampering_and_other_issuers() {
        let key = GoogleSigningKey::shared();
        let other = GoogleSigningKey::generate();
        let foreign = other.sign(&claims(1_000, 3600));
        assert!(matches!(
            key.verify(&foreign, 1_001),
            Err(TokenRejection::Invalid(_))
        ));
        // Same kid, different key: the signature check must catch it.
        let mut forged_header = Header::new(Algorithm::RS256);
        forged_header.kid = Some(key.kid().to_string());
        let forged =
            jsonwebtoken::encode(&forged_header, &claims(1_000, 3600), &other.encoding).unwrap();
        assert!(
            matches!(key.verify(&forged, 1_001), Err(TokenRejection::Invalid(m)) if m.contains("could not be validated"))
        );
        let mut c = claims(1_000, 3600);
        c["iss"] = json!("https://evil.example");
        assert!(
            matches!(key.verify(&key.sign(&c), 1_001), Err(TokenRejection::Invalid(m)) if m.contains("evil.example"))
        );
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(1_000, 3600),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(
            matches!(key.verify(&hs, 1_001), Err(TokenRejection::Invalid(m)) if m.contains("only RS256"))
        );
        assert!(matches!(
            key.verify("not.a.jwt", 1_001),
            Err(TokenRejection::Invalid(_))
        ));
    }
}
