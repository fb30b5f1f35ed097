//! Who signed an AWS request: the one place the lab authenticates SigV4, for STS
//! (`GetCallerIdentity`, `AssumeRole`) and for Google STS, which must verify the signed
//! `GetCallerIdentity` inside an AWS subject token exactly as AWS would.
//!
//! The credential must be one the lab knows (issued by its STS, IMDS or container endpoint, or
//! an IAM user's key), unexpired, sent with its own session token (long-lived keys with none),
//! scoped to `sts`, and the signature must verify with [`super::sigv4::verify`].

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::sigv4::{self, Authorization, SigV4Error, SignedRequest};
use super::state::{LabSessionContext, LabState};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsCaller {
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` or `arn:aws:iam::ACCOUNT:user/NAME`.
    pub arn: String,
    /// `AROA...:SESSION` or `AIDA...`.
    pub user_id: String,
    /// The account the credentials belong to (the lab's, or another one for a session of a
    /// role there).
    pub account: String,
    /// The region of the signature's credential scope.
    pub signing_region: String,
    /// The session's tags and source identity (empty for IAM users and web identity sessions).
    pub session: LabSessionContext,
}

/// Why a request was not authenticated, in AWS's codes and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsAuthError {
    /// HTTP status AWS answers with.
    pub status: u16,
    /// AWS's error code (`SignatureDoesNotMatch`, `InvalidClientTokenId`, ...).
    pub code: &'static str,
    /// AWS's message.
    pub message: String,
}

impl AwsAuthError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

/// Authenticates a request signed for STS.
pub(crate) fn authenticate(
    state: &LabState,
    request: &SignedRequest<'_>,
    now: OffsetDateTime,
) -> Result<AwsCaller, AwsAuthError> {
    authenticate_for(state, request, now, "sts")
}

/// Authenticates a request signed for `service` (`sts`, `cloudtrail`): the credential scope
/// must name it, as every AWS endpoint checks.
pub(crate) fn authenticate_for(
    state: &LabState,
    request: &SignedRequest<'_>,
    now: OffsetDateTime,
    service: &str,
) -> Result<AwsCaller, AwsAuthError> {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let authorization = header("authorization").ok_or_else(|| {
        AwsAuthError::new(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
    })?;
    let auth = Authorization::parse(authorization)
        .map_err(|e| AwsAuthError::new(400, "IncompleteSignature", e.to_string()))?;
    let issued = state
        .aws_credentials(&auth.access_key_id)
        .ok_or_else(|| AwsAuthError::new(403, "InvalidClientTokenId", INVALID_TOKEN))?;
    let sent_token = header("x-amz-security-token").unwrap_or_default();
    let expected_token = issued
        .session_token
        .as_ref()
        .map(|t| t.expose())
        .unwrap_or_default();
    if !bool::from(sent_token.as_bytes().ct_eq(expected_token.as_bytes())) {
        return Err(AwsAuthError::new(
            403,
            "InvalidClientTokenId",
            INVALID_TOKEN,
        ));
    }
    if issued.expiration.is_some_and(|e| e <= now) {
        return Err(AwsAuthError::new(
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
        ));
    }
    if auth.service != service {
        return Err(AwsAuthError::new(
            403,
            "SignatureDoesNotMatch",
            format!(
                "Credential should be scoped to correct service: '{service}'. (got '{}')",
                auth.service
            ),
        ));
    }
    sigv4::verify(request, &auth, issued.secret_access_key.expose(), now).map_err(|e| match e {
        SigV4Error::Malformed(m) => AwsAuthError::new(400, "IncompleteSignature", m),
        other => AwsAuthError::new(403, "SignatureDoesNotMatch", other.to_string()),
    })?;
    // The account is the ARN's: a session of another account's role belongs to that account.
    let account = issued
        .arn
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .unwrap_or(&state.config.account_id)
        .to_string();
    Ok(AwsCaller {
        arn: issued.arn,
        user_id: issued.user_id,
        account,
        signing_region: auth.region,
        session: issued.session,
    })
}

/// The principals a caller's ARN matches in a trust policy's `{"AWS": ...}` list: the session
/// ARN, its role ARN for an assumed role, and the account (`arn:aws:iam::ACCOUNT:root` or the
/// bare id). The lab has no identity policies, so trusting the account admits every principal
/// in it, as if each had `sts:AssumeRole` allowed.
pub(crate) fn trust_principals(caller_arn: &str, account: &str) -> Vec<String> {
    let mut principals = vec![caller_arn.to_string()];
    if let Some(rest) = caller_arn.split_once(":assumed-role/").map(|(_, r)| r) {
        let role = rest.split('/').next().unwrap_or(rest);
        principals.push(format!("arn:aws:iam::{account}:role/{role}"));
    }
    principals.push(format!("arn:aws:iam::{account}:root"));
    principals.push(account.to_string());
    principals
}

#[cfg(test)]
mod tests {
    use super::trust_principals;

    #[test]
    fn an_assumed_role_matches_its_role_and_account() {
        assert_eq!(
            trust_principals(
                "arn:aws:sts::123456789012:assumed-role/aws-workload/s",
                "123456789012"
            ),
            [
                "arn:aws:sts::123456789012:assumed-role/aws-workload/s",
                "arn:aws:iam::123456789012:role/aws-workload",
                "arn:aws:iam::123456789012:root",
                "123456789012"
            ]
        );
        assert_eq!(
            trust_principals("arn:aws:iam::123456789012:user/ci-user", "123456789012").len(),
            3
        );
    }
}
