//! What the clouds recorded about keyless's exchanges: `keyless audit aws|gcp`.
//!
//! Federation replaces keys, and auditors then ask which workload used which role or service
//! account, when, and whether that was intended. CloudTrail ([`cloudtrail`]) and Cloud Audit
//! Logs ([`cloud_logging`]) hold the cloud's side; keyless's own audit log holds the caller's.
//! [`correlate`] joins the two, [`expect`] flags identities nobody intended, [`report`] shapes
//! the rows for a table or JSON. The command line only parses flags and prints.

pub mod cloud_logging;
pub mod cloudtrail;
pub mod correlate;
pub mod expect;
pub mod report;

use std::fmt;
use std::str::FromStr;

use time::{Duration, OffsetDateTime};

/// `projects/N/locations/global/workloadIdentityPools/P` of a provider, pool or principal
/// name (`//iam.googleapis.com/…/providers/X`, `principal://…/subject/S`): what a federated
/// principal, a provider and an exchange's audience have in common.
pub fn pool_of(name: &str) -> &str {
    let start = name.find("projects/").unwrap_or(0);
    let name = &name[start..];
    let end = name
        .find("/providers/")
        .or_else(|| name.find("/subject/"))
        .unwrap_or(name.len());
    &name[..end]
}

/// `--since` / `--until`: a time ago (`24h`, `7d`, `90m`, plain seconds) or an RFC 3339 instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointInTime {
    /// This long before now.
    Ago(Duration),
    /// This instant.
    At(OffsetDateTime),
}

/// How far back `--since` may reach: ten years.
const MAX_AGO_SECONDS: u64 = 3650 * 86_400;

/// A `--since` / `--until` value that is neither a duration nor an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is neither a duration (24h, 7d, 90m, 3600) nor an RFC 3339 time (2026-12-04T23:00:00Z)")]
pub struct PointInTimeError {
    value: String,
}

impl FromStr for PointInTime {
    type Err = PointInTimeError;

    fn from_str(text: &str) -> Result<Self, PointInTimeError> {
        let text = text.trim();
        let invalid = || PointInTimeError {
            value: text.chars().take(64).collect(),
        };
        if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        {
            return Ok(Self::At(at));
        }
        // CloudTrail keeps 90 days: days are the natural unit, which `Seconds` does not have.
        let seconds = match text.strip_suffix('d') {
            Some(days) => days
                .parse::<u64>()
                .ok()
                .and_then(|d| d.checked_mul(86_400))
                .ok_or_else(invalid)?,
            None => {
                let seconds: crate::duration::Seconds = text.parse().map_err(|_| invalid())?;
                seconds.as_duration().as_secs()
            }
        };
        // Bounded, so `now - ago` is always a time: no audit log goes back further.
        if seconds > MAX_AGO_SECONDS {
            return Err(invalid());
        }
        Ok(Self::Ago(Duration::seconds(seconds as i64)))
    }
}

impl fmt::Display for PointInTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ago(d) => write!(f, "{}s ago", d.whole_seconds()),
            Self::At(t) => f.write_str(&report::rfc3339(*t)),
        }
    }
}

impl PointInTime {
    /// The instant this names, `now` being now.
    pub fn at(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Self::Ago(d) => now - d,
            Self::At(t) => t,
        }
    }
}

/// The time span a lookup covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// `--since` after `--until`: nothing could be found, and that is surely a typo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--since ({since}) is after --until ({until})\n  hint: --since 24h looks back a day; --until defaults to now")]
pub struct EmptyWindow {
    since: String,
    until: String,
}

impl crate::classify::Classify for EmptyWindow {
    fn class(&self) -> crate::classify::Class {
        crate::classify::Class::Usage
    }
}

impl TimeWindow {
    /// The window from `since` to `until` (default: now).
    pub fn new(
        since: PointInTime,
        until: Option<PointInTime>,
        now: OffsetDateTime,
    ) -> Result<Self, EmptyWindow> {
        let start = since.at(now);
        let end = until.map_or(now, |u| u.at(now));
        if start > end {
            return Err(EmptyWindow {
                since: report::rfc3339(start),
                until: report::rfc3339(end),
            });
        }
        Ok(Self { start, end })
    }

    /// Whether `t` falls in the window.
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        self.start <= t && t <= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn since_is_a_duration_ago_or_an_instant() {
        let now = datetime!(2026-12-04 12:00 UTC);
        let at = |s: &str| s.parse::<PointInTime>().unwrap().at(now);
        assert_eq!(at("24h"), datetime!(2026-12-03 12:00 UTC));
        assert_eq!(at("7d"), datetime!(2026-11-27 12:00 UTC));
        assert_eq!(at("90"), datetime!(2026-12-04 11:58:30 UTC));
        assert_eq!(at("2026-12-01T00:00:00Z"), datetime!(2026-12-01 0:00 UTC));
        assert!("yesterday".parse::<PointInTime>().is_err());
        assert!("99999999999999999d".parse::<PointInTime>().is_err());
        assert!("18446744073709551615".parse::<PointInTime>().is_err());
    }

    #[test]
    fn a_window_that_ends_before_it_starts_is_refused() {
        let now = datetime!(2026-12-04 12:00 UTC);
        let since = PointInTime::At(datetime!(2026-12-05 0:00 UTC));
        let error = TimeWindow::new(since, None, now).unwrap_err();
        assert!(error.to_string().contains("--since"), "{error}");
        let window = TimeWindow::new("1h".parse().unwrap(), None, now).unwrap();
        assert!(window.contains(datetime!(2026-12-04 11:30 UTC)));
        assert!(!window.contains(datetime!(2026-12-04 10:30 UTC)));
    }
}
