//! `external_account` credential configurations: the file `gcloud iam workload-identity-pools
//! create-cred-config --aws` writes, so that google-auth and the Google SDKs do the AWS → GCP
//! exchange natively.
//!
//! The SDKs' `aws1` source reads only environment variables and EC2 metadata, and a config whose
//! subject token type is `aws4_request` is always routed to it. So this file is the answer on EC2
//! and wherever AWS keys are in the environment; on ECS, EKS or with profiles, keyless itself
//! (`keyless gcp exec`, or a local metadata endpoint) has to stand in front of the SDK.
//!
//! For an OIDC provider the configuration names a token file instead (`credential_source
//! {"file": PATH}`, subject token type `urn:ietf:params:oauth:token-type:jwt`): google-auth's
//! `identity_pool` credentials re-read it on every refresh and do the exchange themselves. A
//! Kubernetes projected token or any file:PATH is such a file already; for other sources keyless
//! keeps one fresh (`keyless aws token-file`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::secret::Secret;

use crate::exchange::google_sts::{
    AWS_SUBJECT_TOKEN_TYPE, DEFAULT_TOKEN_URL, JWT_SUBJECT_TOKEN_TYPE,
};
use crate::source::google::DEFAULT_IAMCREDENTIALS_URL;

/// EC2's instance metadata address, which the SDKs' aws1 source reads.
const EC2_METADATA: &str = "http://169.254.169.254";

/// What goes into the configuration.
#[derive(Clone, Debug)]
pub struct ExternalAccountOptions {
    /// The provider, `//iam.googleapis.com/projects/N/.../providers/X` (or without the prefix).
    pub audience: String,
    pub service_account: Option<String>,
    pub token_lifetime_seconds: Option<u32>,
    pub enable_imdsv2: bool,
    pub token_url: Option<String>,
    pub iamcredentials_url: Option<String>,
    /// `Some`: an OIDC provider's configuration, the SDKs reading the JWT from there; `None`:
    /// the AWS provider's (`aws1`).
    pub jwt_source: Option<JwtCredentialSource>,
}

/// Where google-auth's `identity_pool` credentials read an OIDC token on every refresh.
#[derive(Clone, Debug)]
pub enum JwtCredentialSource {
    /// A file holding the JWT (an absolute path).
    File(PathBuf),
    /// A URL answering JSON with the JWT in `subject_token_field_name` (GitHub Actions' token
    /// service); the headers (a bearer token) are secrets written into the configuration.
    Url {
        url: String,
        headers: BTreeMap<String, Secret>,
        subject_token_field_name: String,
    },
}

/// The document, field names exactly as google-auth reads them.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ExternalAccountConfig {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub audience: String,
    pub subject_token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_impersonation_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_impersonation: Option<ServiceAccountImpersonation>,
    pub token_url: String,
    pub credential_source: CredentialSource,
    pub universe_domain: &'static str,
}

/// Where the SDKs find the subject.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CredentialSource {
    /// AWS: environment credentials or EC2 metadata.
    Aws(AwsCredentialSource),
    /// A JWT in a file, re-read on every refresh (`identity_pool` credentials).
    File(FileCredentialSource),
    /// A JWT fetched from a URL on every refresh (`identity_pool` credentials).
    Url(UrlCredentialSource),
}

/// `{"url": URL, "headers": {...}, "format": {"type": "json", "subject_token_field_name": F}}`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct UrlCredentialSource {
    pub url: String,
    pub headers: BTreeMap<String, Secret>,
    pub format: SubjectTokenFormat,
}

/// `{"file": PATH, "format": {"type": "text"}}`: the whole file is the token.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FileCredentialSource {
    pub file: String,
    pub format: SubjectTokenFormat,
}

/// `credential_source.format`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SubjectTokenFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// For `json`: the field holding the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_token_field_name: Option<String>,
}

/// `service_account_impersonation` block.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ServiceAccountImpersonation {
    pub token_lifetime_seconds: u32,
}

/// The `aws1` credential source: where the SDK finds the region and the credentials on EC2.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AwsCredentialSource {
    pub environment_id: &'static str,
    pub region_url: String,
    pub url: String,
    pub regional_cred_verification_url: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imdsv2_session_token_url: Option<String>,
}

/// Accepts `projects/N/...` (as gcloud does) and `//iam.googleapis.com/projects/N/...`.
pub fn normalize_audience(audience: &str) -> String {
    let trimmed = audience.trim().trim_start_matches("https:");
    if trimmed.starts_with("//") {
        trimmed.to_string()
    } else {
        format!("//iam.googleapis.com/{}", trimmed.trim_start_matches('/'))
    }
}

/// Builds the configuration gcloud would write for these options.
pub fn external_account_config(options: &ExternalAccountOptions) -> ExternalAccountConfig {
    let iam = options
        .iamcredentials_url
        .as_deref()
        .unwrap_or(DEFAULT_IAMCREDENTIALS_URL)
        .trim_end_matches('/');
    ExternalAccountConfig {
        kind: "external_account",
        audience: normalize_audience(&options.audience),
        subject_token_type: match options.jwt_source {
            Some(_) => JWT_SUBJECT_TOKEN_TYPE,
            None => AWS_SUBJECT_TOKEN_TYPE,
        },
        service_account_impersonation_url: options
            .service_account
            .as_ref()
            .map(|sa| format!("{iam}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken")),
        service_account_impersonation: options
            .service_account
            .as_ref()
            .and(options.token_lifetime_seconds)
            .map(|s| ServiceAccountImpersonation {
                token_lifetime_seconds: s,
            }),
        token_url: options
            .token_url
            .clone()
            .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_string()),
        credential_source: match &options.jwt_source {
            Some(JwtCredentialSource::File(path)) => CredentialSource::File(FileCredentialSource {
                file: path.display().to_string(),
                format: SubjectTokenFormat {
                    kind: "text",
                    subject_token_field_name: None,
                },
            }),
            Some(JwtCredentialSource::Url {
                url,
                headers,
                subject_token_field_name,
            }) => CredentialSource::Url(UrlCredentialSource {
                url: url.clone(),
                headers: headers.clone(),
                format: SubjectTokenFormat {
                    kind: "json",
                    subject_token_field_name: Some(subject_token_field_name.clone()),
                },
            }),
            None => CredentialSource::Aws(AwsCredentialSource {
                environment_id: "aws1",
                region_url: format!("{EC2_METADATA}/latest/meta-data/placement/availability-zone"),
                url: format!("{EC2_METADATA}/latest/meta-data/iam/security-credentials"),
                regional_cred_verification_url:
                    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
                imdsv2_session_token_url: options
                    .enable_imdsv2
                    .then(|| format!("{EC2_METADATA}/latest/api/token")),
            }),
        },
        universe_domain: "googleapis.com",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_what_gcloud_writes_for_aws() {
        let config = external_account_config(&ExternalAccountOptions {
            audience: "projects/123/locations/global/workloadIdentityPools/pool/providers/aws"
                .into(),
            service_account: Some("sa@p.iam.gserviceaccount.com".into()),
            token_lifetime_seconds: Some(7200),
            enable_imdsv2: true,
            token_url: None,
            iamcredentials_url: None,
            jwt_source: None,
        });
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "external_account",
                "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/aws",
                "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
                "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken",
                "service_account_impersonation": {"token_lifetime_seconds": 7200},
                "token_url": "https://sts.googleapis.com/v1/token",
                "credential_source": {
                    "environment_id": "aws1",
                    "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
                    "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
                    "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
                    "imdsv2_session_token_url": "http://169.254.169.254/latest/api/token"
                },
                "universe_domain": "googleapis.com"
            })
        );
    }

    #[test]
    fn without_impersonation_or_imdsv2_those_fields_are_absent() {
        let config = external_account_config(&ExternalAccountOptions {
            audience: "//iam.googleapis.com/projects/1/x".into(),
            service_account: None,
            token_lifetime_seconds: Some(7200),
            enable_imdsv2: false,
            token_url: Some("http://127.0.0.1:1/v1/token".into()),
            iamcredentials_url: None,
            jwt_source: None,
        });
        let json = serde_json::to_value(&config).unwrap();
        assert!(json.get("service_account_impersonation_url").is_none());
        assert!(json.get("service_account_impersonation").is_none());
        assert!(json["credential_source"]
            .get("imdsv2_session_token_url")
            .is_none());
        assert_eq!(json["token_url"], "http://127.0.0.1:1/v1/token");
        assert_eq!(json["audience"], "//iam.googleapis.com/projects/1/x");
    }

    #[test]
    fn an_oidc_provider_reads_the_jwt_from_a_file() {
        let config = external_account_config(&ExternalAccountOptions {
            audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k8s".into(),
            service_account: Some("sa@p.iam.gserviceaccount.com".into()),
            token_lifetime_seconds: None,
            enable_imdsv2: false,
            token_url: None,
            iamcredentials_url: None,
            jwt_source: Some(JwtCredentialSource::File(
                "/var/run/secrets/tokens/gcp".into(),
            )),
        });
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json["subject_token_type"],
            "urn:ietf:params:oauth:token-type:jwt"
        );
        assert_eq!(
            json["credential_source"],
            serde_json::json!({"file": "/var/run/secrets/tokens/gcp", "format": {"type": "text"}})
        );
        assert!(json["service_account_impersonation_url"]
            .as_str()
            .unwrap()
            .ends_with("sa@p.iam.gserviceaccount.com:generateAccessToken"));
    }

    #[test]
    fn a_url_source_reads_json_with_its_headers_and_debug_hides_them() {
        let config = external_account_config(&ExternalAccountOptions {
            audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/gh".into(),
            service_account: None,
            token_lifetime_seconds: None,
            enable_imdsv2: false,
            token_url: None,
            iamcredentials_url: None,
            jwt_source: Some(JwtCredentialSource::Url {
                url: "https://token.example/?api-version=2.0&audience=a".into(),
                headers: BTreeMap::from([(
                    "Authorization".to_string(),
                    Secret::new("Bearer request-token"),
                )]),
                subject_token_field_name: "value".into(),
            }),
        });
        assert!(!format!("{config:?}").contains("request-token"));
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json["credential_source"],
            serde_json::json!({
                "url": "https://token.example/?api-version=2.0&audience=a",
                "headers": {"Authorization": "Bearer request-token"},
                "format": {"type": "json", "subject_token_field_name": "value"}
            })
        );
        assert_eq!(
            json["subject_token_type"],
            "urn:ietf:params:oauth:token-type:jwt"
        );
    }
}
