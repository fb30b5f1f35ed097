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
///
/// Total: a time whose UTC date falls outside years 0000–9999 (an upstream may write
/// `9999-12-31T23:59:59-01:00`) is clamped to the nearest time that format can say, rather than
/// panicking or writing a year no SDK parses.
pub fn format_expiration(t: OffsetDateTime) -> String {
    let first = time::macros::datetime!(0000-01-01 00:00:00 UTC);
    let last = time::macros::datetime!(9999-12-31 23:59:59 UTC);
    let t = match t.checked_to_offset(time::UtcOffset::UTC) {
        Some(utc) => utc.clamp(first, last),
        None if t.year() > 0 => last,
        None => first,
    };
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

    /// Found by the `sts_xml` fuzz target (crafted offsets): STS's `Expiration` with an offset
    /// that moves the UTC date past year 9999 panicked here, and one before year 0 wrote
    /// `-001-12-31T23:00:00Z`, which no SDK reads.
    #[test]
    fn expirations_outside_four_digit_years_are_clamped() {
        assert_eq!(
            format_expiration(datetime!(9999-12-31 23:59:59 -01:00)),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            format_expiration(datetime!(0000-01-01 00:00:00 +01:00)),
            "0000-01-01T00:00:00Z"
        );
        assert_eq!(
            format_expiration(datetime!(9999-12-31 22:00:00 -01:00)),
            "9999-12-31T23:00:00Z"
        );
    }

    #[test]
    fn expiration_is_plain_utc_seconds() {
        let t = datetime!(2026-11-23 10:04:05.678 +02:00);
        assert_eq!(format_expiration(t), "2026-11-23T08:04:05Z");
    }
}
