//! Walks the parsed document: top-level keys, each profile's keys, and which direction a profile
//! trades; the directions' own keys are checked in `to_aws` and `to_google`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::channels::{Claim, ClaimedResource};
use super::suggestions::{suggestion, RENAMED_FLAGS};
use super::to_aws::{GCP_TO_AWS_CHANNELS, GCP_TO_AWS_KEYS};
use super::to_google::{is_provider_name, AWS_TO_GCP_CHANNELS, AWS_TO_GCP_KEYS};
use super::{Config, Direction, LogFormat, Problem, ProblemKind, ProfileConfig, ReadFor};
use crate::deliver::external_account::normalize_audience;
use crate::refresh::gcp_token::AWS_TOKEN_SOURCE;

/// `target = "aws"`: the profile makes AWS credentials.
pub(super) const TARGET_AWS: &str = "aws";
/// `target = "gcp"`: the profile makes Google tokens.
pub(super) const TARGET_GCP: &str = "gcp";

pub(super) const TOP_KEYS: &[&str] = &[
    "metrics_listen",
    "log_format",
    "audit_log",
    "allow_remote",
    "allowed_hosts",
    "defaults",
    "profile",
];

/// Keys both directions have. `source` is the token source (`--token-source`).
pub(super) const COMMON_KEYS: &[&str] = &["audience", "iamcredentials_url", "source"];
/// Other spellings of a key, `(alias, key)`: read as the key; both at once is a problem.
pub(super) const KEY_ALIASES: &[(&str, &str)] = &[("token_source", "source")];
/// Keys about the profile's endpoints, either direction; never inherited from `[defaults]`.
pub(super) const LISTENER_KEYS: &[&str] = &["allowed_hosts"];
/// `target = "aws" | "gcp"`: the profile's direction, named rather than inferred from its keys;
/// never inherited from `[defaults]`.
pub(super) const TARGET_KEY: &str = "target";

pub(super) fn all_profile_keys() -> impl Iterator<Item = &'static str> {
    COMMON_KEYS
        .iter()
        .chain(KEY_ALIASES.iter().map(|(alias, _)| alias))
        .chain(std::iter::once(&TARGET_KEY))
        .chain(LISTENER_KEYS)
        .chain(GCP_TO_AWS_KEYS)
        .chain(GCP_TO_AWS_CHANNELS)
        .chain(AWS_TO_GCP_KEYS)
        .chain(AWS_TO_GCP_CHANNELS)
        .copied()
}

pub(super) type Entry<'a, 'i> = (
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
);

/// Walks the parsed document, collecting every problem rather than stopping at the first.
pub(super) struct Checker<'t> {
    pub(super) text: &'t str,
    pub(super) base: PathBuf,
    pub(super) problems: Vec<Problem>,
    pub(super) reader: &'t ReadFor,
}

pub(super) struct ProfileCtx<'n, 'a, 'i> {
    pub(super) name: &'n str,
    pub(super) table_key: &'n str,
    pub(super) header: Range<usize>,
    pub(super) keys: BTreeMap<&'static str, Entry<'a, 'i>>,
}

impl ProfileCtx<'_, '_, '_> {
    pub(super) fn dotted(&self, key: &str) -> String {
        format!("{}.{key}", self.table_key)
    }

    /// The dotted name of `key` as the file spells it (`token_source` for `source`, when the
    /// file uses the alias), for messages.
    pub(super) fn dotted_as_written(&self, key: &str) -> String {
        match self.keys.get(key) {
            Some((written, _)) => self.dotted(written.get_ref()),
            None => self.dotted(key),
        }
    }
}

/// Entries in document order, so problems are reported top to bottom.
pub(super) fn sorted<'a, 'i>(table: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// The first line of a message (the part before its hint).
pub(super) fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

impl Checker<'_> {
    pub(super) fn config(&mut self, doc: &DeTable<'_>) -> Option<Config> {
        let mut metrics_listen = None;
        let mut log_format = None;
        let mut audit_log = None;
        let mut allow_remote = false;
        let mut allowed_hosts = Vec::new();
        let mut profiles = BTreeMap::new();
        let mut claims = Vec::new();
        let mut saw_profiles = false;
        let mut defaults = None;
        if let Some(value) = doc.get("defaults") {
            defaults = self.table(value, "defaults");
            if let Some(table) = defaults {
                self.defaults(table);
            }
        }
        for (key, value) in sorted(doc) {
            let name = key.get_ref().as_ref();
            match name {
                "defaults" => {}
                "metrics_listen" => {
                    metrics_listen = self.addr(value, "metrics_listen");
                    if let Some(addr) = metrics_listen {
                        claims.push(Claim {
                            resource: ClaimedResource::Listen(addr),
                            key: "metrics_listen".into(),
                            span: value.span(),
                        });
                    }
                }
                "log_format" => {
                    log_format = match self.string(value, "log_format").as_deref() {
                        Some("text") => Some(LogFormat::Text),
                        Some("json") => Some(LogFormat::Json),
                        Some(other) => {
                            self.problem(
                                ProblemKind::InvalidValue,
                                value.span(),
                                "log_format",
                                format!("log_format is {other:?}"),
                                Some("use \"text\" or \"json\"".into()),
                            );
                            None
                        }
                        None => None,
                    }
                }
                "audit_log" => audit_log = self.path(value, "audit_log"),
                "allow_remote" => {
                    allow_remote = self.boolean(value, "allow_remote").unwrap_or(false);
                }
                "allowed_hosts" => allowed_hosts = self.allowed_hosts(value, "allowed_hosts"),
                "profile" => {
                    saw_profiles = true;
                    let Some(table) = self.table(value, "profile") else {
                        continue;
                    };
                    for (pkey, pvalue) in sorted(table) {
                        let pname = pkey.get_ref().to_string();
                        if let Some(p) =
                            self.profile(&pname, pkey.span(), pvalue, defaults, &mut claims)
                        {
                            profiles.insert(pname, p);
                        }
                    }
                }
                _ => {
                    let hint = if all_profile_keys().any(|k| k == name) {
                        Some(format!(
                            "`{name}` belongs to a profile: put it under a [profile.NAME] table"
                        ))
                    } else {
                        suggestion(name, TOP_KEYS.iter().copied())
                    };
                    self.problem(
                        ProblemKind::UnknownKey,
                        key.span(),
                        name,
                        format!("unknown key `{name}` at the top level"),
                        hint,
                    );
                }
            }
        }
        if profiles.is_empty() && !saw_profiles && !self.reader.one_shot {
            self.problem(
                ProblemKind::NoProfiles,
                0..0,
                "profile",
                "no profiles: the daemon would have nothing to serve".into(),
                Some("add a [profile.NAME] table with role_arn (GCP → AWS) or a workload identity provider audience (AWS → GCP)".into()),
            );
        }
        self.duplicates(&claims);
        if !(allow_remote || self.reader.allow_remote) {
            self.remote_listens(&claims);
        }
        Some(Config {
            metrics_listen,
            log_format,
            audit_log,
            allow_remote,
            allowed_hosts,
            profiles,
        })
    }

    pub(super) fn profile<'a, 'i>(
        &mut self,
        name: &str,
        header: Range<usize>,
        value: &'a Spanned<DeValue<'i>>,
        defaults: Option<&'a DeTable<'i>>,
        claims: &mut Vec<Claim>,
    ) -> Option<ProfileConfig> {
        let table_key = format!("profile.{name}");
        let table = self.table(value, &table_key)?;
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.problem(
                ProblemKind::InvalidValue,
                header.clone(),
                &table_key,
                format!("profile name {name:?} has spaces or control characters"),
                Some("use letters, digits, `-`, `_` and `.`".into()),
            );
        }
        let mut keys: BTreeMap<&'static str, Entry<'_, '_>> = BTreeMap::new();
        for (key, value) in sorted(table) {
            let k = key.get_ref().as_ref();
            match all_profile_keys().find(|known| *known == k) {
                Some(known) => {
                    keys.insert(known, (key, value));
                }
                None => {
                    let hint = RENAMED_FLAGS
                        .iter()
                        .find(|(flag, _)| *flag == k)
                        .map(|(_, hint)| hint.to_string())
                        .or_else(|| suggestion(k, all_profile_keys()));
                    self.problem(
                        ProblemKind::UnknownKey,
                        key.span(),
                        &format!("{table_key}.{k}"),
                        format!("unknown key `{k}` in [{table_key}]"),
                        hint,
                    );
                }
            }
        }
        for (alias, key) in KEY_ALIASES {
            let Some(entry) = keys.remove(alias) else {
                continue;
            };
            if keys.contains_key(key) {
                self.problem(
                    ProblemKind::ConflictingKeys,
                    entry.0.span(),
                    &format!("{table_key}.{alias}"),
                    format!(
                        "[{table_key}] has both `{key}` and `{alias}`, two spellings of one key"
                    ),
                    Some(format!(
                        "keep `{key}` and remove `{alias}` (its older spelling)"
                    )),
                );
            } else {
                keys.insert(key, entry);
            }
        }
        let target = match keys.remove(TARGET_KEY) {
            Some((_, v)) => {
                let dotted = format!("{table_key}.{TARGET_KEY}");
                match self.string(v, &dotted).as_deref() {
                    Some(TARGET_AWS) => Some(Direction::GcpToAws),
                    Some(TARGET_GCP) => Some(Direction::AwsToGcp),
                    Some(other) => {
                        self.invalid(
                            v,
                            &dotted,
                            format!("target = {other:?} is not a target"),
                            "use target = \"aws\" (AWS credentials) or target = \"gcp\" (Google tokens)",
                        );
                        return None;
                    }
                    None => return None,
                }
            }
            None => None,
        };
        let wif_audience = keys
            .get("audience")
            .and_then(|(_, v)| v.get_ref().as_str())
            .is_some_and(|a| is_provider_name(&normalize_audience(a)));
        let aws_source = keys
            .get("source")
            .and_then(|(_, v)| v.get_ref().as_str())
            .is_some_and(|s| s.trim() == AWS_TOKEN_SOURCE);
        let has_any = |set: &[&str]| set.iter().any(|k| keys.contains_key(k));
        let direction = if let Some(direction) = target {
            direction
        } else if keys.contains_key("role_arn") {
            Direction::GcpToAws
        } else if wif_audience
            || aws_source
            || has_any(AWS_TO_GCP_KEYS)
            || has_any(AWS_TO_GCP_CHANNELS)
        {
            Direction::AwsToGcp
        } else if has_any(GCP_TO_AWS_KEYS) || has_any(GCP_TO_AWS_CHANNELS) {
            Direction::GcpToAws
        } else {
            self.problem(
                ProblemKind::NoDirection,
                header,
                &table_key,
                format!("[{table_key}] is neither direction"),
                Some("add target = \"aws\" with role_arn = \"arn:aws:iam::ACCOUNT:role/NAME\" (GCP → AWS), or target = \"gcp\" with audience = \"//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER\" (AWS → GCP)".into()),
            );
            return None;
        };
        let (other_keys, other_channels, own_channels) = match direction {
            Direction::GcpToAws => (AWS_TO_GCP_KEYS, AWS_TO_GCP_CHANNELS, GCP_TO_AWS_CHANNELS),
            Direction::AwsToGcp => (GCP_TO_AWS_KEYS, GCP_TO_AWS_CHANNELS, AWS_TO_GCP_CHANNELS),
        };
        let why = match (direction, target) {
            (Direction::GcpToAws, Some(_)) => "target = \"aws\"",
            (Direction::AwsToGcp, Some(_)) => "target = \"gcp\"",
            (Direction::GcpToAws, None) => "it has role_arn",
            (Direction::AwsToGcp, None) if wif_audience => {
                "its audience is a workload identity provider and it has no role_arn"
            }
            (Direction::AwsToGcp, None) if aws_source => "source = \"aws\" and no role_arn",
            (Direction::AwsToGcp, None) => "it has no role_arn",
        };
        let mut mixed = false;
        for (k, (key, _)) in &keys {
            let dotted = format!("{table_key}.{k}");
            if other_channels.contains(k) {
                mixed = true;
                self.problem(
                    ProblemKind::WrongDirectionChannel,
                    key.span(),
                    &dotted,
                    format!(
                        "`{k}` delivers {} credentials, but [{table_key}] is {direction} ({why})",
                        match direction {
                            Direction::GcpToAws => "Google",
                            Direction::AwsToGcp => "AWS",
                        }
                    ),
                    Some(format!(
                        "{direction} profiles deliver through {}; put `{k}` in its own profile of the other direction",
                        own_channels.join(", ")
                    )),
                );
            } else if other_keys.contains(k) {
                mixed = true;
                self.problem(
                    ProblemKind::MixedDirections,
                    key.span(),
                    &dotted,
                    format!(
                        "`{k}` belongs to the other direction, but [{table_key}] is {direction} ({why})"
                    ),
                    Some(match target {
                        Some(_) => format!(
                            "remove `{k}`, or set target = \"{}\" if the profile should make {}",
                            match direction {
                                Direction::GcpToAws => TARGET_GCP,
                                Direction::AwsToGcp => TARGET_AWS,
                            },
                            match direction {
                                Direction::GcpToAws => "Google tokens",
                                Direction::AwsToGcp => "AWS credentials",
                            }
                        ),
                        None => "one profile trades one way: split it into two profiles".into(),
                    }),
                );
            }
        }
        if mixed {
            return None;
        }
        // `[defaults]` fills what the profile leaves out, for the keys of its own direction
        // (never channels: where credentials go is each profile's own decision).
        let inherited = COMMON_KEYS.iter().chain(match direction {
            Direction::GcpToAws => GCP_TO_AWS_KEYS,
            Direction::AwsToGcp => AWS_TO_GCP_KEYS,
        });
        for known in inherited {
            // A `[defaults]` source has meant the ID token of the → AWS profiles since before
            // → Google profiles took a source; inheriting it there would silently turn their
            // default (`aws`) into another identity. A → Google profile names its own source.
            if keys.contains_key(known) || (*known == "source" && direction == Direction::AwsToGcp)
            {
                continue;
            }
            let entry = defaults.and_then(|d| {
                d.get_key_value(*known).or_else(|| {
                    KEY_ALIASES
                        .iter()
                        .filter(|(_, key)| key == known)
                        .find_map(|(alias, _)| d.get_key_value(*alias))
                })
            });
            if let Some(entry) = entry {
                keys.insert(known, entry);
            }
        }
        let mut ctx = ProfileCtx {
            name,
            table_key: &table_key,
            header,
            keys,
        };
        match direction {
            Direction::GcpToAws => self
                .gcp_to_aws(&mut ctx, claims)
                .map(ProfileConfig::GcpToAws),
            Direction::AwsToGcp => self
                .aws_to_gcp(&mut ctx, claims)
                .map(ProfileConfig::AwsToGcp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    const PROVIDER: &str =
        "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/p/providers/x";

    /// `source` names the token source and `target` the direction; `token_source` still works.
    #[test]
    fn source_and_target_name_a_profile_s_two_ends() {
        let text = format!(
            "[profile.ci]\ntarget = \"gcp\"\nsource = \"file:tokens/ci.jwt\"\naudience = \"{PROVIDER}\"\n\
             gce_metadata_listen = \"127.0.0.1:9912\"\n\n\
             [profile.deploy]\ntarget = \"aws\"\nsource = \"github\"\n\
             role_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t.jwt\"\n\n\
             [profile.old]\ntoken_source = \"impersonate:sa@p.iam.gserviceaccount.com\"\n\
             role_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"old.jwt\"\n"
        );
        let config = parse_at(&text).unwrap();
        let ProfileConfig::AwsToGcp(ci) = &config.profiles["ci"] else {
            panic!("ci is → Google: {:?}", config.profiles["ci"]);
        };
        assert_eq!(
            ci.token_source.to_string(),
            "file:/etc/keyless/tokens/ci.jwt",
            "relative to the file"
        );
        let ProfileConfig::GcpToAws(deploy) = &config.profiles["deploy"] else {
            panic!("deploy is → AWS");
        };
        assert_eq!(deploy.token_source.to_string(), "github");
        let ProfileConfig::GcpToAws(old) = &config.profiles["old"] else {
            panic!("old is → AWS");
        };
        assert_eq!(
            old.token_source.to_string(),
            "impersonate:sa@p.iam.gserviceaccount.com"
        );
    }

    #[test]
    fn source_and_token_source_at_once_is_a_problem_naming_both() {
        let (p, message) = problem(
            "[profile.p]\nsource = \"github\"\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n\
             token_source = \"metadata\"\ntoken_file = \"t\"\n",
        );
        assert_at(
            &p,
            ProblemKind::ConflictingKeys,
            "profile.p.token_source",
            4,
            1,
        );
        assert!(
            message.contains("both `source` and `token_source`"),
            "{message}"
        );
        assert!(message.contains("remove `token_source`"), "{message}");
    }

    /// With `target`, keys of the other direction are problems that name the key and the fix,
    /// even those (`role_arn`) that would otherwise decide the direction.
    #[test]
    fn a_named_target_makes_keys_of_the_other_direction_problems() {
        let (p, message) = problem(&format!(
            "[profile.p]\ntarget = \"gcp\"\naudience = \"{PROVIDER}\"\n\
             role_arn = \"arn:aws:iam::123456789012:role/R\"\ngce_metadata_listen = \"127.0.0.1:1\"\n"
        ));
        assert_at(&p, ProblemKind::MixedDirections, "profile.p.role_arn", 4, 1);
        assert!(message.contains("target = \"gcp\""), "{message}");
        assert!(
            message.contains("remove `role_arn`, or set target = \"aws\""),
            "{message}"
        );

        let (p, message) = problem(
            "[profile.p]\ntarget = \"aws\"\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n\
             token_file = \"t\"\ngce_metadata_listen = \"127.0.0.1:1\"\n",
        );
        assert_at(
            &p,
            ProblemKind::WrongDirectionChannel,
            "profile.p.gce_metadata_listen",
            5,
            1,
        );
        assert!(message.contains("(target = \"aws\")"), "{message}");

        // Named, the direction needs its own required key.
        let (p, _) = problem("[profile.p]\ntarget = \"aws\"\ntoken_file = \"t\"\n");
        assert_at(&p, ProblemKind::MissingKey, "profile.p.role_arn", 1, 10);
    }

    #[test]
    fn an_unknown_target_says_which_there_are() {
        let (p, message) = problem(
            "[profile.p]\ntarget = \"azure\"\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\n",
        );
        assert_at(&p, ProblemKind::InvalidValue, "profile.p.target", 2, 10);
        assert!(
            message.contains("target = \"aws\"") && message.contains("target = \"gcp\""),
            "{message}"
        );
        let (p, _) = problem("[profile.p]\ntarget = 1\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\n");
        assert_at(&p, ProblemKind::WrongType, "profile.p.target", 2, 10);
    }

    /// Without `target` the direction is inferred as before; `source = "aws"` is → Google.
    #[test]
    fn without_target_source_aws_means_google_tokens() {
        let config = parse_at(&format!(
            "[profile.p]\nsource = \"aws\"\naudience = \"{PROVIDER}\"\ngce_metadata_listen = \"127.0.0.1:1\"\n"
        ))
        .unwrap();
        let ProfileConfig::AwsToGcp(p) = &config.profiles["p"] else {
            panic!("p is → Google");
        };
        assert_eq!(p.token_source.to_string(), "aws");
        // `source = "aws"` alone says which direction, so what is missing is the audience.
        let (p, _) =
            problem("[profile.p]\nsource = \"aws\"\ngce_metadata_listen = \"127.0.0.1:1\"\n");
        assert_at(&p, ProblemKind::MissingKey, "profile.p.audience", 1, 10);
    }

    #[test]
    fn a_profile_key_at_the_top_level_says_where_it_belongs() {
        let error = parse_at("role_arn = \"x\"\n").unwrap_err().to_string();
        assert!(
            error.contains("keyless.toml:1:1: unknown key `role_arn` at the top level"),
            "{error}"
        );
        assert!(error.contains("under a [profile.NAME] table"), "{error}");
    }

    #[test]
    fn a_profile_of_neither_direction_points_at_its_header() {
        let (p, message) = problem("\n[profile.lost]\naudience = \"sts.amazonaws.com\"\n");
        assert_at(&p, ProblemKind::NoDirection, "profile.lost", 2, 10);
        assert!(message.contains("with role_arn"), "{message}");
    }

    #[test]
    fn a_profile_mixing_directions_names_the_foreign_key() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nservice_account = \"sa@p.iam.gserviceaccount.com\"\n",
        );
        assert_at(
            &p,
            ProblemKind::MixedDirections,
            "profile.deploy.service_account",
            4,
            1,
        );
        assert!(message.contains("split it into two profiles"), "{message}");
    }

    #[test]
    fn bad_arns_and_audiences_are_refused_with_the_fix() {
        let (p, message) =
            problem("[profile.d]\nrole_arn = \"arn:aws:iam::12345:role/R\"\ntoken_file = \"t\"\n");
        assert_at(&p, ProblemKind::InvalidValue, "profile.d.role_arn", 2, 12);
        assert!(message.contains("12 digits"), "{message}");
        let (p, message) = problem(
            "[profile.c]\naudience = \"//iam.googleapis.com/projects/x/pools\"\nservice_account = \"a@b\"\ngce_metadata_listen = \"127.0.0.1:1\"\n",
        );
        assert_at(&p, ProblemKind::InvalidValue, "profile.c.audience", 2, 12);
        assert!(
            message.contains("workloadIdentityPools/POOL/providers/PROVIDER"),
            "{message}"
        );
        let (p, _) = problem("[profile.d]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\naudience = \"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x\"\ntoken_file = \"t\"\n");
        assert_at(&p, ProblemKind::InvalidValue, "profile.d.audience", 3, 12);
    }

    #[test]
    fn keys_that_need_another_key_say_so() {
        let (p, _) = problem("[profile.d]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nauth_token_file = \"a\"\n");
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.d.auth_token_file",
            4,
            1,
        );
        let (p, _) = problem("[profile.c]\naudience = \"projects/1/locations/global/workloadIdentityPools/p/providers/x\"\nlifetime = 600\ngce_metadata_listen = \"127.0.0.1:1\"\n");
        assert_at(&p, ProblemKind::InvalidValue, "profile.c.lifetime", 3, 1);
    }

    #[test]
    fn an_empty_file_has_no_profiles() {
        let (p, _) = problem("");
        assert_eq!(p.kind, ProblemKind::NoProfiles);
    }
}

#[cfg(test)]
mod proptests {
    use std::path::Path;

    use super::{all_profile_keys, TOP_KEYS};
    use crate::config::parse;
    use proptest::prelude::*;

    /// A TOML value of any type, often one a key expects.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "\"arn:aws:iam::123456789012:role/R\"",
                "\"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x\"",
                "\"127.0.0.1:9911\"",
                "\"0.0.0.0:0\"",
                "\"[::1]:80\"",
                "\"localhost:1\"",
                "\"metadata\"",
                "\"file:t\"",
                "\"impersonate:a@b\"",
                "\"https://x\"",
                "\"eu-west-1\"",
                "\"a@b.iam.gserviceaccount.com\"",
                "\"\"",
                "\"é\\u0000\"",
                "3600",
                "-1",
                "0x7fffffffffffffff",
                "1e3",
                "true",
                "[\"a\", \"b\"]",
                "[1, \"a\"]",
                "{ a = 1 }",
                "2024-01-01T00:00:00Z",
            ])
            .prop_map(String::from),
            "\"[ -~]{0,12}\"",
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(
                all_profile_keys()
                    .chain(TOP_KEYS.iter().copied())
                    .chain(["listen", "path", "rol_arn"])
                    .collect::<Vec<_>>()
            )
            .prop_map(String::from),
            "[a-z_]{1,8}",
        ]
    }

    /// A plausible keyless.toml: top-level keys, then profiles of random keys and values.
    fn config_text() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((key(), value()), 0..3),
            prop::collection::vec(
                ("[a-z]{1,3}", prop::collection::vec((key(), value()), 0..8)),
                0..4,
            ),
        )
            .prop_map(|(top, profiles)| {
                let mut text = String::new();
                for (k, v) in top {
                    text.push_str(&format!("{k} = {v}\n"));
                }
                for (name, entries) in profiles {
                    text.push_str(&format!("\n[profile.{name}]\n"));
                    for (k, v) in entries {
                        text.push_str(&format!("{k} = {v}\n"));
                    }
                }
                text
            })
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        let path = Path::new("/nonexistent/keyless.toml");
        match parse(text, path) {
            Ok(config) => prop_assert!(!config.profiles.is_empty()),
            Err(e) => {
                let lines = text.split('\n').count();
                let message = e.to_string();
                prop_assert!(!e.problems().is_empty());
                for p in e.problems() {
                    prop_assert!(
                        (1..=lines).contains(&p.line) && p.column >= 1,
                        "{:?} in {} lines",
                        p,
                        lines
                    );
                    let place = format!("/nonexistent/keyless.toml:{}:{}", p.line, p.column);
                    prop_assert!(message.contains(&place));
                }
            }
        }
        Ok(())
    }

    proptest! {
        /// Any text: a configuration, or problems with a line and column inside the file.
        #[test]
        fn any_text_is_a_config_or_placed_problems(text in any::<String>()) {
            check(&text)?;
        }

        /// Configurations made of the real keys with values of every type: the same promise,
        /// deep inside the checker.
        #[test]
        fn generated_configs_are_valid_or_placed_problems(text in config_text()) {
            check(&text)?;
        }
    }
}
