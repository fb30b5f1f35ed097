//! SigV4 signing with the aws-sigv4 crate, for every request keyless signs itself: the
//! `GetCallerIdentity` subject token for Google STS, `GetCallerIdentity` and AssumeRole calls,
//! and `GetWebIdentityToken` for the `aws-oidc` source. Here, below both `source/` and
//! `exchange/`, so neither imports the other to sign.

use std::time::SystemTime;

use crate::credentials::AwsCredentials;
use crate::secret::Secret;

/// aws-sigv4 refused to sign (a header or URL it cannot canonicalise, a bad time).
#[derive(Debug, thiserror::Error)]
#[error("could not sign the request: {0}")]
pub struct SigningError(pub String);

/// Signs `method url` with `headers` and `body` for `service` in `region` at `time`; returns the
/// headers to add (`authorization`, `x-amz-date`, `x-amz-security-token` with session
/// credentials), each value a [`Secret`] since the session token is one.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, Secret)>, SigningError> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let fail = |e: &dyn std::fmt::Display| SigningError(e.to_string());
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.expose().to_string(),
            credentials
                .session_token
                .as_ref()
                .map(|t| t.expose().to_string()),
            None,
            "keyless",
        )
        .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| fail(&e))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| fail(&e))?;
    let (instructions, _signature) = sign(signable, &params).map_err(|e| fail(&e))?.into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), Secret::new(v)))
        .collect())
}
