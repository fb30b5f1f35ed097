//! Durations as people write them on a command line and in `keyless.toml`: `90s`, `15m`, `1h`.
//!
//! Every flag and key that takes a length of time (`--duration`, `--lifetime`, `--deadline`,
//! `--attempt-timeout`, `--max-session-duration`, `duration = …`, `lifetime = …`) goes through
//! [`Seconds`], parsed once here, so `--deadline 3s` and `--duration 1h` mean what they say
//! everywhere. The grammar, exactly:
//!
//! ```text
//! DUR   := DIGITS                      plain seconds:       3600
//!        | [DIGITS "h"] [DIGITS "m"] [DIGITS "s"]   (at least one part; in this order)
//!                                                           90s  15m  1h  1h30m  2m30s
//! ```
//!
//! Units are lower-case `h`, `m`, `s`; each appears at most once, larger first; no spaces, signs
//! or fractions. What a flag allows (AWS sessions are 900 to 43200 seconds, a Google token at
//! most 43200) is the flag's own rule, checked with [`Seconds::within`].

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// A whole number of seconds, from `90s`, `15m`, `1h`, `1h30m` or plain `3600`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(u64);

/// Why a duration was refused; the message shows what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not in the grammar.
    #[error("{input:?} is not a duration\n  hint: write seconds (3600) or a number with a unit: 90s, 15m, 1h, 1h30m")]
    Malformed { input: String },
    /// Parsed, but outside what this setting allows.
    #[error("{given} is outside {min}..={max} seconds ({min_human} to {max_human})\n  hint: pick a value from {min_human} to {max_human}")]
    OutOfRange {
        given: String,
        min: u64,
        max: u64,
        min_human: Seconds,
        max_human: Seconds,
    },
}

impl Seconds {
    /// `n` seconds.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The number of seconds.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// The same length as a [`std::time::Duration`].
    pub const fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }

    /// This duration if `range` (in seconds) holds it, else the error naming the range.
    pub fn within(self, range: RangeInclusive<u64>) -> Result<Self, DurationError> {
        if range.contains(&self.0) {
            Ok(self)
        } else {
            Err(DurationError::OutOfRange {
                given: self.described(),
                min: *range.start(),
                max: *range.end(),
                min_human: Seconds(*range.start()),
                max_human: Seconds(*range.end()),
            })
        }
    }

    /// The number of seconds as a `u32`, for the wire fields that take one; callers check a
    /// range with [`Seconds::within`] first, so this saturates only for absurd values.
    pub fn as_secs_u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// `90s (1m30s)`, or just `90` when the two forms agree.
    fn described(self) -> String {
        let human = self.to_string();
        if human == format!("{}s", self.0) {
            human
        } else {
            format!("{human} ({} seconds)", self.0)
        }
    }

    /// A clap value parser (and `keyless.toml` check) for a duration inside `range` seconds.
    pub fn parser_within(
        range: RangeInclusive<u64>,
    ) -> impl Fn(&str) -> Result<Seconds, DurationError> + Clone + Send + Sync + 'static {
        move |s: &str| s.parse::<Seconds>()?.within(range.clone())
    }
}

impl From<Seconds> for std::time::Duration {
    fn from(s: Seconds) -> Self {
        s.as_duration()
    }
}

impl FromStr for Seconds {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, DurationError> {
        let malformed = || DurationError::Malformed {
            input: input.chars().take(64).collect(),
        };
        if input.is_empty() {
            return Err(malformed());
        }
        if input.bytes().all(|b| b.is_ascii_digit()) {
            return input.parse::<u64>().map(Seconds).map_err(|_| malformed());
        }
        let mut total: u64 = 0;
        let mut rest = input;
        // Units still allowed, larger first: each at most once, in this order.
        let mut units: &[(char, u64)] = &[('h', 3600), ('m', 60), ('s', 1)];
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(malformed());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| malformed())?;
            let unit = rest[digits..].chars().next().ok_or_else(malformed)?;
            let at = units
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(malformed)?;
            let part = n.checked_mul(units[at].1).ok_or_else(malformed)?;
            total = total.checked_add(part).ok_or_else(malformed)?;
            units = &units[at + 1..];
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(Seconds(total))
    }
}

/// The shortest spelling in the grammar: `90` seconds prints `1m30s`, `3600` prints `1h`.
impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 % 3600 / 60, self.0 % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || self.0 == 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: &str) -> Result<u64, DurationError> {
        s.parse::<Seconds>().map(Seconds::as_secs)
    }

    #[test]
    fn the_documented_forms_parse() {
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("3600"), Ok(3600));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("2m30s"), Ok(150));
        assert_eq!(secs("1h0m5s"), Ok(3605));
        assert_eq!(secs("0"), Ok(0));
        assert_eq!(secs("007s"), Ok(7));
    }

    #[test]
    fn anything_else_is_refused_with_the_grammar_in_the_message() {
        for bad in [
            "",
            " 90s",
            "90s ",
            "1.5h",
            "-5",
            "+5",
            "h",
            "1d",
            "1H",
            "90S",
            "1m1h",
            "1h1h",
            "1s1m",
            "1 h",
            "1hm",
            "m5",
            "1h30",
            "½h",
            "99999999999999999999",
            "5124095576030432h",
        ] {
            let e = bad.parse::<Seconds>().unwrap_err();
            assert!(
                matches!(e, DurationError::Malformed { .. }),
                "{bad:?}: {e:?}"
            );
            assert!(e.to_string().contains("90s, 15m, 1h"), "{e}");
        }
    }

    #[test]
    fn a_range_check_names_the_limits_in_both_forms() {
        let e = Seconds::parser_within(900..=43200)("10m").unwrap_err();
        assert_eq!(
            e.to_string(),
            "10m (600 seconds) is outside 900..=43200 seconds (15m to 12h)\n  \
             hint: pick a value from 15m to 12h"
        );
        assert_eq!(
            Seconds::parser_within(900..=43200)("1h").map(Seconds::as_secs),
            Ok(3600)
        );
    }

    #[test]
    fn display_is_the_shortest_spelling() {
        for (n, shown) in [
            (0, "0s"),
            (59, "59s"),
            (90, "1m30s"),
            (3600, "1h"),
            (43200, "12h"),
        ] {
            assert_eq!(Seconds::new(n).to_string(), shown);
        }
    }

    proptest! {
        /// Whatever it prints parses back to the same number of seconds.
        #[test]
        fn display_round_trips(n in any::<u64>()) {
            let shown = Seconds::new(n).to_string();
            prop_assert_eq!(shown.parse::<Seconds>(), Ok(Seconds::new(n)));
        }

        /// Every spelling with parts in order means the sum of its parts.
        #[test]
        fn parts_add_up(h in proptest::option::of(0u64..10_000),
                        m in proptest::option::of(0u64..10_000),
                        s in proptest::option::of(0u64..10_000)) {
            prop_assume!(h.is_some() || m.is_some() || s.is_some());
            let text = format!(
                "{}{}{}",
                h.map(|h| format!("{h}h")).unwrap_or_default(),
                m.map(|m| format!("{m}m")).unwrap_or_default(),
                s.map(|s| format!("{s}s")).unwrap_or_default(),
            );
            let want = h.unwrap_or(0) * 3600 + m.unwrap_or(0) * 60 + s.unwrap_or(0);
            prop_assert_eq!(secs(&text), Ok(want));
        }

        /// Arbitrary text never panics, and what parses prints as something that parses equal.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,24}") {
            if let Ok(d) = text.parse::<Seconds>() {
                prop_assert_eq!(d.to_string().parse::<Seconds>(), Ok(d));
            }
        }
    }
}
