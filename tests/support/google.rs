//! Google service-account identities and JWT-shaped ID tokens for them.
//!
//! moto does not verify web identity tokens, so a token here only needs Google's shape and
//! claims (keyless reads `iss`, `aud`, `azp`, `sub`, `email`, `exp`); its signature is filler.
//! Tests of real verification belong to the lab, which signs its tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

/// A Google service account as AWS trust policies see it.
#[derive(Clone, Debug)]
pub struct GoogleIdentity {
    /// The service account's e-mail address.
    pub email: String,
    /// Its numeric unique id: the token's `sub` and `azp`.
    pub unique_id: String,
    /// The audience the token is minted for (`accounts.google.com:oaud` on AWS).
    pub audience: String,
}

impl GoogleIdentity {
    /// A deploy service account, with keyless' default audience.
    pub fn deployer() -> Self {
        Self {
            email: "deployer@keyless-ci.iam.gserviceaccount.com".into(),
            unique_id: "104857600000000000001".into(),
            audience: "sts.amazonaws.com".into(),
        }
    }

    /// A Google-federation trust policy that pins this identity as our docs recommend:
    /// `aud` (the azp), `oaud` (the audience) and `sub`.
    pub fn trust_policy(&self) -> serde_json::Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": "accounts.google.com"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    "accounts.google.com:aud": self.unique_id,
                    "accounts.google.com:oaud": self.audience,
                    "accounts.google.com:sub": self.unique_id,
                }}
            }]
        })
    }

    /// An ID token as the metadata server would mint it, valid for an hour from now.
    pub fn id_token(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let header = json!({"alg": "RS256", "kid": "keyless-test", "typ": "JWT"});
        let claims = json!({
            "iss": "https://accounts.google.com",
            "aud": self.audience,
            "azp": self.unique_id,
            "sub": self.unique_id,
            "email": self.email,
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
        });
        let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.{}",
            encode(&header),
            encode(&claims),
            URL_SAFE_NO_PAD.encode(b"not-a-signature: moto does not check")
        )
    }
}
