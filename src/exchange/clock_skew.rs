//! Clock skew between this machine and an upstream, read from the answer's `Date` header.
//!
//! STS and IAM Credentials state when a credential expires as a time on *their* clock; the
//! refresh engine, the cache and every SDK that reads what keyless prints compare it with *this
//! machine's* clock. When the clocks disagree, a credential looks valid after AWS has stopped
//! accepting it (our clock behind) or expired on arrival (our clock ahead). The AWS SDKs correct
//! their SigV4 signing time from the `Date` header; keyless corrects expirations the same way:
//! an expiry is converted to this machine's clock whenever the answer's `Date` shows a skew
//! beyond [`TOLERATED_SKEW`], and a skew beyond [`REPORTED_SKEW`] is logged with the fix.
//!
//! The estimate is deliberately the upper bound of how far *behind* the upstream we can be
//! (`Date` has one-second resolution and was stamped somewhere between sending and receiving):
//! the converted expiry is never later than the true one, so correcting never makes keyless
//! serve a credential past its real end.

use time::{Duration, OffsetDateTime};

/// Below this, expirations are taken as the upstream states them (the refresh engine's own
/// safety margin is as large).
pub const TOLERATED_SKEW: Duration = Duration::seconds(5);

/// From this on, the skew is a misconfigured clock rather than latency: it is logged.
pub const REPORTED_SKEW: Duration = Duration::seconds(60);

pub use crate::wire::http::date_header;

/// The most this machine's clock can be behind the upstream's, given an answer stamped `date`
/// to a request sent at `sent_at` (negative: the upstream is behind us by at least that much).
pub fn skew_bound(date: OffsetDateTime, sent_at: OffsetDateTime) -> Duration {
    date + Duration::seconds(1) - sent_at
}

/// `expires_at`, stated on the clock of the upstream that answered at `date` (its `Date`
/// header) to a request sent at `sent_at`, converted to this machine's clock.
pub fn local_expiry(
    expires_at: OffsetDateTime,
    date: Option<OffsetDateTime>,
    sent_at: OffsetDateTime,
    upstream: &str,
) -> OffsetDateTime {
    let Some(date) = date else {
        return expires_at;
    };
    let skew = skew_bound(date, sent_at);
    if skew.abs() <= TOLERATED_SKEW {
        return expires_at;
    }
    let seconds = skew.whole_seconds();
    if skew.abs() >= REPORTED_SKEW {
        let direction = if seconds > 0 { "behind" } else { "ahead of" };
        tracing::warn!(
            "this machine's clock is about {} s {direction} {upstream}'s (its Date header); \
             expirations are converted to this machine's clock\n  hint: synchronise the clock \
             (chrony, systemd-timesyncd, ntpd): AWS refuses SigV4 signatures, and so Google STS \
             refuses subject tokens, made more than 15 minutes off",
            seconds.abs()
        );
    } else {
        tracing::debug!(
            skew = seconds,
            upstream,
            "expiry converted to the local clock"
        );
    }
    expires_at - skew
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn reads_the_http_date_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::DATE,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(
            date_header(&headers),
            Some(datetime!(1994-11-06 08:49:37 UTC))
        );
        headers.insert(http::header::DATE, "yesterday".parse().unwrap());
        assert_eq!(date_header(&headers), None);
    }

    #[test]
    fn agreeing_clocks_leave_the_expiry_alone() {
        let sent = datetime!(2026-01-01 12:00:00.400 UTC);
        let expires = datetime!(2026-01-01 13:00:00 UTC);
        let date = Some(datetime!(2026-01-01 12:00:00 UTC));
        assert_eq!(local_expiry(expires, date, sent, "STS"), expires);
        assert_eq!(local_expiry(expires, None, sent, "STS"), expires);
        // A slow answer (3 s) is latency, not skew.
        let date = Some(datetime!(2026-01-01 12:00:03 UTC));
        assert_eq!(local_expiry(expires, date, sent, "STS"), expires);
    }

    #[test]
    fn skewed_clocks_convert_the_expiry_never_later_than_the_truth() {
        let sent = datetime!(2026-01-01 12:00:00 UTC);
        // The upstream is two hours ahead: its 15:00 expiry is our 13:00 (one second earlier,
        // since its Date may have been stamped up to a second after the time it shows).
        let date = Some(datetime!(2026-01-01 14:00:00 UTC));
        let expires = datetime!(2026-01-01 15:00:00 UTC);
        assert_eq!(
            local_expiry(expires, date, sent, "STS"),
            datetime!(2026-01-01 12:59:59 UTC)
        );
        // Two hours behind: its 11:00 expiry (already past for us) is our 13:00.
        let date = Some(datetime!(2026-01-01 10:00:00 UTC));
        let expires = datetime!(2026-01-01 11:00:00 UTC);
        assert_eq!(
            local_expiry(expires, date, sent, "STS"),
            datetime!(2026-01-01 12:59:59 UTC)
        );
    }
}
