//! The IAM Credentials transport: `generateIdToken` for the `impersonate:` source and
//! `keyless gcp id-token`, `generateAccessToken` for the Google target. Every IAM Credentials
//! call fails the same three ways (unreachable, refused with Google's error document, an
//! answer that is not IAM's), so one function makes them all.

use serde::Deserialize;

use crate::secret::Secret;
use crate::wire::{error_chain, google_error_message};

/// IAM Credentials' `generateIdToken` answer.
#[derive(Deserialize)]
pub struct GenerateIdTokenResponse {
    pub token: Secret,
}

/// A failed IAM Credentials call: `status` is `None` when no (whole) answer came at all;
/// `unreadable` when the answer was not the document asked for (a 200 that is not IAM's).
#[derive(Debug)]
pub struct IamCallError {
    pub url: String,
    pub status: Option<u16>,
    pub message: String,
    pub unreadable: bool,
}

/// An IAM Credentials answer with its `Date` header and the time the request left, so that an
/// expiry stated on Google's clock can be converted to ours.
#[derive(Debug)]
pub struct IamAnswer<T> {
    pub value: T,
    pub date: Option<time::OffsetDateTime>,
    pub sent_at: time::OffsetDateTime,
}

/// IAM Credentials names delegates as `projects/-/serviceAccounts/EMAIL`.
pub fn delegate_resource_names(delegates: &[String]) -> Vec<String> {
    delegates
        .iter()
        .map(|d| format!("projects/-/serviceAccounts/{d}"))
        .collect()
}

/// IAM Credentials `generateIdToken` for `service_account`, authorised by `bearer`. Shared by the
/// `impersonate:` token source and `keyless gcp id-token`.
pub async fn fetch_generated_id_token(
    http: &reqwest::Client,
    iamcredentials_url: &str,
    bearer: &Secret,
    service_account: &str,
    audience: &str,
    include_email: bool,
    delegates: &[String],
) -> Result<Secret, IamCallError> {
    let mut body = serde_json::json!({ "audience": audience, "includeEmail": include_email });
    if !delegates.is_empty() {
        body["delegates"] = serde_json::json!(delegate_resource_names(delegates));
    }
    let answer: IamAnswer<GenerateIdTokenResponse> = call_iam_credentials(
        http,
        iamcredentials_url,
        bearer,
        service_account,
        "generateIdToken",
        &body,
    )
    .await?;
    Ok(answer.value.token)
}

/// POSTs `body` to IAM Credentials `METHOD` for `service_account` and reads the JSON answer;
/// every IAM Credentials call fails the same ways (unreachable, refused with Google's error
/// document, an unreadable answer).
pub async fn call_iam_credentials<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    iamcredentials_url: &str,
    bearer: &Secret,
    service_account: &str,
    method: &str,
    body: &serde_json::Value,
) -> Result<IamAnswer<T>, IamCallError> {
    let url = format!(
        "{}/v1/projects/-/serviceAccounts/{service_account}:{method}",
        iamcredentials_url.trim_end_matches('/')
    );
    let failed = |status, message| IamCallError {
        url: url.clone(),
        status,
        message,
        unreadable: false,
    };
    let sent_at = time::OffsetDateTime::now_utc();
    let response = http
        .post(&url)
        .bearer_auth(bearer.expose())
        .json(body)
        .send()
        .await
        .map_err(|e| failed(None, error_chain(&e)))?;
    let status = response.status().as_u16();
    let content_type = crate::wire::http::content_type_of(response.headers());
    let date = crate::wire::http::date_header(response.headers());
    // A body cut short (the connection dropped mid-answer) is no answer: retried; one larger
    // than IAM Credentials ever sends is not IAM Credentials.
    let text =
        crate::wire::http::read_body(response)
            .await
            .map_err(|e| match e.is_transient() {
                true => failed(None, e.to_string()),
                false => IamCallError {
                    unreadable: true,
                    ..failed(Some(status), e.to_string())
                },
            })?;
    if status != 200 {
        // Google's errors are JSON documents; anything else came from something in between.
        let is_error_document = serde_json::from_str::<serde_json::Value>(&text)
            .is_ok_and(|v| v.get("error").is_some());
        return Err(IamCallError {
            unreadable: !is_error_document,
            ..failed(Some(status), google_error_message(&text))
        });
    }
    // Never quote a 200 answer: what it holds may be (part of) a token.
    let value = serde_json::from_str(&text).map_err(|e| IamCallError {
        unreadable: true,
        ..failed(
            Some(status),
            format!(
                "not an IAM Credentials answer ({content_type}, {} bytes: {e})",
                text.len()
            ),
        )
    })?;
    Ok(IamAnswer {
        value,
        date,
        sent_at,
    })
}
