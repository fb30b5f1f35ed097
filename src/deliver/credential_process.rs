//! The JSON documents an SDK or a script reads from keyless's standard output.
//!
//! `credential_process` is the contract every AWS SDK shares: `Version: 1` and the three keys
//! plus `Expiration`, without which the SDK would never refresh. The `json` format mirrors what
//! `aws sts assume-role-with-web-identity` prints, so scripts written for the CLI read it as is.

use serde_json::{json, Value};

use crate::credentials::{format_expiration, AwsCredentials};
use crate::exchange::aws_sts::AssumedRole;

/// The `credential_process` document (Version 1).
pub fn credential_process_json(credentials: &AwsCredentials) -> Value {
    let mut doc = json!({
        "Version": 1,
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key.expose(),
    });
    if let Some(token) = &credentials.session_token {
        doc["SessionToken"] = json!(token.expose());
    }
    if let Some(exp) = credentials.expiration {
        doc["Expiration"] = json!(format_expiration(exp));
    }
    doc
}

/// The full STS answer, shaped like the aws CLI's output for the same call.
pub fn assumed_role_json(role: &AssumedRole) -> Value {
    let c = &role.credentials;
    let mut credentials = json!({
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key.expose(),
    });
    if let Some(token) = &c.session_token {
        credentials["SessionToken"] = json!(token.expose());
    }
    if let Some(exp) = c.expiration {
        credentials["Expiration"] = json!(format_expiration(exp));
    }
    let mut doc = json!({
        "Credentials": credentials,
        "AssumedRoleUser": {
            "Arn": role.assumed_role_arn,
            "AssumedRoleId": role.assumed_role_id,
        },
    });
    let optional = [
        (
            "SubjectFromWebIdentityToken",
            role.subject_from_web_identity_token.clone(),
        ),
        ("Audience", role.audience.clone()),
        ("Provider", role.provider.clone()),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            doc[key] = json!(v);
        }
    }
    if let Some(size) = role.packed_policy_size {
        doc["PackedPolicySize"] = json!(size);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use time::macros::datetime;

    #[test]
    fn credential_process_document_has_what_sdks_require() {
        let creds = AwsCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s3cr3t"),
            session_token: Some(Secret::new("tok")),
            expiration: Some(datetime!(2026-11-23 12:00:00 UTC)),
        };
        let doc = credential_process_json(&creds);
        assert_eq!(
            doc,
            json!({"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s3cr3t",
                   "SessionToken": "tok", "Expiration": "2026-11-23T12:00:00Z"})
        );
    }
}
