//! The credential types every layer shares.
//!
//! They live in a leaf module because sources produce them (AWS credentials from the chain),
//! exchanges produce them (STS answers) and deliveries consume them, and dependencies must point
//! one way only.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::secret::Secret;

/// AWS credentials, long-lived or temporary; the secret parts never print.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AwsCredentials {
    /// Not a secret on its own (it appears in CloudTrail), so it stays readable in logs.
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// `None` for long-lived keys; temporary credentials always carry their expiry.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expiration: Option<OffsetDateTime>,
}

impl AwsCredentials {
    /// Seconds of validity left at `now`; `None` for credentials that do not expire.
    pub fn seconds_left(&self, now: OffsetDateTime) -> Option<i64> {
        self.expiration.map(|e| (e - now).whole_seconds())
    }
}

/// A Google OAuth access token (federated, or a service account's) and when it stops working.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GoogleAccessToken {
    pub access_token: Secret,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Formats an expiry as the SDKs parse it most reliably: `YYYY-MM-DDTHH:MM:SSZ`, UTC, no fraction.
pub fn format_expiration(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expiration_is_plain_utc_seconds() {
        let t = datetime!(2026-11-23 10:04:05.678 +02:00);
        assert_eq!(format_expiration(t), "2026-11-23T08:04:05Z");
    }
}
