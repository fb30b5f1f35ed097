//! IAM `GetRole`: the role's trust policy as AWS holds it, for `keyless doctor`.
//!
//! A trust policy copied into a file may not be the one AWS evaluates; when credentials allow,
//! the doctor reads the real one. IAM speaks the query protocol like STS, at a global endpoint.

use std::time::SystemTime;

use serde::Deserialize;

use crate::credentials::AwsCredentials;
use crate::exchange::aws_sts::{sign_request, ExchangeError, RoleArn};
use crate::wire::{error_chain, truncate};

/// IAM's endpoint: `AWS_ENDPOINT_URL_IAM`, else `AWS_ENDPOINT_URL`, else the global one.
pub fn iam_endpoint() -> String {
    ["AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .map(|v| v.trim_end_matches('/').to_string() + "/")
        .unwrap_or_else(|| "https://iam.amazonaws.com/".to_string())
}

/// The role's trust policy (JSON text), read with `iam:GetRole`.
pub async fn fetch_trust_policy(
    http: &reqwest::Client,
    endpoint: &str,
    credentials: &AwsCredentials,
    role: &RoleArn,
) -> Result<String, ExchangeError> {
    let body = serde_urlencoded::to_string([
        ("Action", "GetRole"),
        ("RoleName", role.name()),
        ("Version", "2010-05-08"),
    ])
    .map_err(|e| ExchangeError::Signing(e.to_string()))?;
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let headers = sign_request(
        "POST",
        endpoint,
        &[("content-type", content_type)],
        body.as_bytes(),
        credentials,
        "us-east-1",
        "iam",
        SystemTime::now(),
    )?;
    let mut request = http.post(endpoint).header("content-type", content_type);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.expose());
    }
    let unavailable = |last: String| ExchangeError::Unavailable {
        endpoint: endpoint.to_string(),
        attempts: 1,
        last,
    };
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| unavailable(error_chain(&e)))?;
    let status = response.status().as_u16();
    let content_type = crate::exchange::aws_sts::content_type_of(response.headers());
    let text = crate::wire::http::read_body(response)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if status != 200 {
        return Err(ExchangeError::UnexpectedAnswer {
            endpoint: endpoint.to_string(),
            status,
            content_type,
            detail: truncate(&text, 300),
        });
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response {
        get_role_result: GetRoleResult,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct GetRoleResult {
        role: Role,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Role {
        assume_role_policy_document: String,
    }
    let parsed: Response =
        quick_xml::de::from_str(&text).map_err(|e| ExchangeError::UnexpectedAnswer {
            endpoint: endpoint.to_string(),
            status,
            content_type: content_type.clone(),
            detail: format!("not a GetRole answer: {e}"),
        })?;
    let document = parsed.get_role_result.role.assume_role_policy_document;
    // IAM returns the document URL-encoded.
    Ok(percent_encoding::percent_decode_str(&document)
        .decode_utf8_lossy()
        .into_owned())
}
