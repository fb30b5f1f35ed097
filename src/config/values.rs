//! The typed values keys take (strings, durations, addresses, paths, regions, endpoints), each
//! parsed as its flag parses it, with a problem at the value when it does not.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::checker::{Checker, ProfileCtx};
use crate::deliver::server::AllowedHost;
use crate::duration::{DurationError, Seconds};
use crate::types::{Region, SpecError, UpstreamUrl};

impl Checker<'_> {
    /// A string key parsed with `parse`; a problem naming the key when it does not parse.
    pub(super) fn parsed<T>(
        &mut self,
        ctx: &ProfileCtx<'_, '_, '_>,
        key: &str,
        parse: fn(&str) -> Result<T, SpecError>,
    ) -> Option<T> {
        let (_, v) = ctx.keys.get(key)?;
        let dotted = ctx.dotted(key);
        let text = self.string(v, &dotted)?;
        match parse(&text) {
            Ok(value) => Some(value),
            Err(e) => {
                let message = e.to_string();
                let (message, hint) = message
                    .split_once("\n  hint: ")
                    .map_or((message.as_str(), ""), |(m, h)| (m, h));
                self.invalid(v, &dotted, format!("{key}: {message}"), hint);
                None
            }
        }
    }

    pub(super) fn string(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(value, key, "a string");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(value, key, "a boolean");
                None
            }
        }
    }

    pub(super) fn table<'a, 'i>(
        &mut self,
        value: &'a Spanned<DeValue<'i>>,
        key: &str,
    ) -> Option<&'a DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(value, key, "a table");
                None
            }
        }
    }

    /// A duration: seconds as an integer (`3600`) or a string in the flags' grammar (`"1h"`,
    /// `"90s"`, `"15m"`, `"1h30m"`; see [`crate::duration`]), inside `range` seconds.
    pub(super) fn duration(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u32> {
        let text = match value.get_ref() {
            DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n.to_string(),
                // Negative or too large: out of any range.
                Err(_) => i.as_str().to_string(),
            },
            DeValue::String(s) => s.to_string(),
            _ => {
                self.wrong_type(value, key, "a duration");
                return None;
            }
        };
        let last = key.rsplit('.').next().unwrap_or(key);
        match Seconds::parser_within(range.clone())(&text) {
            Ok(d) => Some(d.as_secs_u32()),
            Err(DurationError::Malformed { .. }) => {
                self.invalid(
                    value,
                    key,
                    format!("`{last}` is {text:?}, not a duration"),
                    "write seconds (3600) or a number with a unit: \"90s\", \"15m\", \"1h\", \"1h30m\"",
                );
                None
            }
            Err(DurationError::OutOfRange { .. }) => {
                let (min, max) = (Seconds::new(*range.start()), Seconds::new(*range.end()));
                self.invalid(
                    value,
                    key,
                    format!(
                        "`{last}` is {text}, outside {}..={} seconds",
                        range.start(),
                        range.end()
                    ),
                    &format!("pick a value from {min} to {max}"),
                );
                None
            }
        }
    }

    /// An array of strings, or one string of comma-separated values (as the flags take them).
    pub(super) fn string_list(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        key: &str,
    ) -> Option<Vec<String>> {
        match value.get_ref() {
            DeValue::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(s.to_string()),
                        _ => {
                            self.wrong_type(item, key, "an array of strings");
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.wrong_type(value, key, "an array of strings");
                None
            }
        }
    }

    /// `allowed_hosts`: names or addresses, each parsed as `--allowed-host` parses it.
    pub(super) fn allowed_hosts(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        key: &str,
    ) -> Vec<AllowedHost> {
        let mut hosts = Vec::new();
        for text in self.string_list(value, key).unwrap_or_default() {
            match text.parse::<AllowedHost>() {
                Ok(host) => hosts.push(host),
                Err(e) => {
                    let message = e.to_string();
                    let (message, hint) = message
                        .split_once("\n  hint: ")
                        .map_or((message.as_str(), None), |(m, h)| (m, Some(h)));
                    self.invalid(
                        value,
                        key,
                        format!("{key}: {message}"),
                        hint.unwrap_or("e.g. allowed_hosts = [\"host.docker.internal\"]"),
                    );
                }
            }
        }
        hosts
    }

    pub(super) fn profile_allowed_hosts(
        &mut self,
        ctx: &ProfileCtx<'_, '_, '_>,
    ) -> Vec<AllowedHost> {
        match ctx.keys.get("allowed_hosts") {
            Some((_, v)) => self.allowed_hosts(v, &ctx.dotted("allowed_hosts")),
            None => Vec::new(),
        }
    }

    pub(super) fn addr(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<SocketAddr> {
        let text = self.string(value, key)?;
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.invalid(
                    value,
                    key,
                    format!("{text:?} is not an IP address and port"),
                    "e.g. \"127.0.0.1:9911\" (names such as localhost are not accepted; port 0 picks any free port)",
                );
                None
            }
        }
    }

    pub(super) fn path(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<PathBuf> {
        let text = self.string(value, key)?;
        if text.trim().is_empty() {
            self.invalid(
                value,
                key,
                format!("`{}` is empty", key.rsplit('.').next().unwrap_or(key)),
                "give a file path (relative paths are relative to this file)",
            );
            return None;
        }
        Some(self.resolve(&text))
    }

    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    pub(super) fn region(&mut self, value: &Spanned<DeValue<'_>>, key: &str) -> Option<Region> {
        let text = self.string(value, key)?;
        match Region::parse(&text) {
            Ok(region) => Some(region),
            Err(SpecError::InvalidRegion { why, .. }) => {
                self.invalid(
                    value,
                    key,
                    format!("{text:?} is not an AWS region: {why}"),
                    "e.g. \"us-east-1\"",
                );
                None
            }
            Err(other) => {
                self.invalid(value, key, other.to_string(), "e.g. \"us-east-1\"");
                None
            }
        }
    }

    pub(super) fn opt_url(
        &mut self,
        ctx: &ProfileCtx<'_, '_, '_>,
        key: &str,
    ) -> Option<UpstreamUrl> {
        let (_, value) = ctx.keys.get(key)?;
        let dotted = ctx.dotted(key);
        let text = self.string(value, &dotted)?;
        match UpstreamUrl::parse(&text) {
            Ok(url) => Some(url),
            Err(e) => {
                let why = match e {
                    SpecError::InvalidEndpoint { why, .. } => why,
                    _ => "it is not a usable endpoint",
                };
                self.invalid(
                    value,
                    &dotted,
                    format!("{key} {text:?} is not a usable endpoint: {why}"),
                    "use \"https://...\"; plain http:// only to 127.0.0.1, [::1] or localhost (tokens are sent there)",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    /// `region` and `aws_region` become STS host names: only a host label passes.
    #[test]
    fn a_region_that_would_move_the_sts_host_is_a_problem() {
        let gcp_to_aws = "role_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"";
        let aws_to_gcp = "audience = \"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x\"\ngce_metadata_listen = \"127.0.0.1:9912\"";
        for (key, profile) in [("region", gcp_to_aws), ("aws_region", aws_to_gcp)] {
            let (p, message) = problem(&format!(
                "[defaults]\n{key} = \"x.evil.example/#\"\n\n[profile.a]\n{profile}\n"
            ));
            assert_eq!(
                (p.kind, p.key.as_str(), p.line),
                (
                    ProblemKind::InvalidValue,
                    format!("profile.a.{key}").as_str(),
                    2
                ),
                "{message}"
            );
            assert!(message.contains("is not an AWS region"), "{message}");
        }
    }

    /// `duration` and `lifetime` take the flags' grammar as a string, and plain seconds.
    #[test]
    fn durations_take_units_as_the_flags_do() {
        let config = parse_at(
            "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = \"1h30m\"\n\
             [profile.g]\naudience = \"projects/1/locations/global/workloadIdentityPools/p/providers/x\"\n\
             service_account = \"sa@p.iam.gserviceaccount.com\"\nlifetime = \"15m\"\ngce_metadata_listen = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let (ProfileConfig::GcpToAws(a), ProfileConfig::AwsToGcp(g)) =
            (&config.profiles["a"], &config.profiles["g"])
        else {
            panic!("{config:?}")
        };
        assert_eq!(a.duration, Some(5400));
        assert_eq!(g.lifetime, Some(900));
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = \"1 hour\"\n",
        );
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.deploy.duration",
            4,
            12,
        );
        assert!(message.contains("\"90s\", \"15m\", \"1h\""), "{message}");
        let (_, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = \"10m\"\n",
        );
        assert!(
            message.contains("900..=43200") && message.contains("15m to 12h"),
            "{message}"
        );
    }

    #[test]
    fn out_of_range_values_give_the_range() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = 60\n",
        );
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.deploy.duration",
            4,
            12,
        );
        assert!(message.contains("900..=43200"), "{message}");
    }

    #[test]
    fn allowed_hosts_at_the_top_and_per_profile_are_parsed_and_placed() {
        let text = r#"allowed_hosts = ["Host.Docker.Internal", "10.0.0.5"]
[profile.a]
role_arn = "arn:aws:iam::123456789012:role/a"
imds_listen = "127.0.0.1:9911"
allowed_hosts = "keyless.internal"
[profile.b]
audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x"
gce_metadata_listen = "127.0.0.1:9912"
"#;
        let config = parse_at(text).unwrap();
        let names = |hosts: &[AllowedHost]| hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(&config.allowed_hosts),
            ["host.docker.internal", "10.0.0.5"]
        );
        assert_eq!(
            names(config.profiles["a"].allowed_hosts()),
            ["keyless.internal"]
        );
        assert!(config.profiles["b"].allowed_hosts().is_empty());
        let (p, message) = problem(&text.replace("\"keyless.internal\"", "[\"*.internal\"]"));
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.a.allowed_hosts",
            5,
            17,
        );
        assert!(message.contains("wildcard"), "{message}");
        let (p, message) = problem(&text.replace("\"10.0.0.5\"", "\"a.b:80\""));
        assert_at(&p, ProblemKind::InvalidValue, "allowed_hosts", 1, 17);
        assert!(message.contains("has a port"), "{message}");
    }
}
