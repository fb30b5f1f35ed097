//! `[defaults]`: flag names of any command, which profiles inherit for their own direction.

use toml::de::{DeTable, DeValue};

use super::checker::{sorted, Checker, KEY_ALIASES};
use super::suggestions::suggestion;
use super::ProblemKind;

impl Checker<'_> {
    /// `[defaults]`: flag names of any command. Only the names are checked here; each value is
    /// checked by the command that uses it (clap), or by a profile that inherits it.
    pub(super) fn defaults(&mut self, table: &DeTable<'_>) {
        for (alias, key) in KEY_ALIASES {
            if let (Some(_), Some((written, _))) = (table.get(*key), table.get_key_value(*alias)) {
                self.problem(
                    ProblemKind::ConflictingKeys,
                    written.span(),
                    &format!("defaults.{alias}"),
                    format!("[defaults] has both `{key}` and `{alias}`, two spellings of one key"),
                    Some(format!(
                        "keep `{key}` and remove `{alias}` (its older spelling)"
                    )),
                );
            }
        }
        let Some(known) = &self.reader.known_flags else {
            return;
        };
        let known = known.clone();
        // A key whose alias is a flag (`source` for --token-source) is known too.
        let is_known = |k: &str| {
            known.iter().any(|f| f == k)
                || KEY_ALIASES
                    .iter()
                    .any(|(alias, key)| *key == k && known.iter().any(|f| f == alias))
        };
        for (key, value) in sorted(table) {
            let k = key.get_ref().as_ref();
            if !is_known(k) {
                let hint = suggestion(k, known.iter().map(String::as_str));
                self.problem(
                    ProblemKind::UnknownKey,
                    key.span(),
                    &format!("defaults.{k}"),
                    format!(
                        "unknown key `{k}` in [defaults]: no command has a --{} flag",
                        k.replace('_', "-")
                    ),
                    hint,
                );
            } else if matches!(value.get_ref(), DeValue::Table(_)) {
                self.wrong_type(
                    value,
                    &format!("defaults.{k}"),
                    "a string, number, boolean or array",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    /// `[defaults]` may name the token source `source` too (one-shot readers accept it as the
    /// --token-source flag's key); both spellings at once is a problem.
    #[test]
    fn defaults_take_source_and_refuse_both_spellings() {
        let text = "[defaults]\nsource = \"file:/t.jwt\"\n\n\
                    [profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"\n";
        let ProfileConfig::GcpToAws(a) = &parse_at(text).unwrap().profiles["a"] else {
            panic!("a is → AWS");
        };
        assert_eq!(a.token_source.to_string(), "file:/t.jwt");
        let reader = ReadFor {
            one_shot: true,
            known_flags: Some(vec!["token_source".into()]),
            allow_remote: false,
        };
        parse_for(text, Path::new("k.toml"), &reader).expect("source is --token-source's key");

        let (p, message) = problem(
            "[defaults]\ntoken_source = \"metadata\"\nsource = \"github\"\n\n\
             [profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"\n",
        );
        assert_at(
            &p,
            ProblemKind::ConflictingKeys,
            "defaults.token_source",
            2,
            1,
        );
        assert!(message.contains("remove `token_source`"), "{message}");
    }

    #[test]
    fn defaults_fill_what_each_profile_leaves_out_for_its_own_direction() {
        let text = "[defaults]\nsts_endpoint = \"http://127.0.0.1:5000\"\nregion = \"eu-west-1\"\n\
                    service_account = \"sa@p.iam.gserviceaccount.com\"\nfail_on = \"medium\"\n\n\
                    [profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"\n\n\
                    [profile.b]\nrole_arn = \"arn:aws:iam::123456789012:role/B\"\nregion = \"us-east-2\"\ntoken_file = \"b.jwt\"\n";
        let config = parse_at(text).unwrap();
        let ProfileConfig::GcpToAws(a) = &config.profiles["a"] else {
            panic!("a is GCP → AWS");
        };
        let ProfileConfig::GcpToAws(b) = &config.profiles["b"] else {
            panic!("b is GCP → AWS");
        };
        assert_eq!(
            a.sts_endpoint.as_ref().map(UpstreamUrl::as_str),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(a.region.as_ref().map(Region::as_str), Some("eu-west-1"));
        assert_eq!(
            b.region.as_ref().map(Region::as_str),
            Some("us-east-2"),
            "the profile's own value wins"
        );
    }

    #[test]
    fn defaults_keys_are_checked_against_the_flags_when_known() {
        let reader = ReadFor {
            one_shot: true,
            known_flags: Some(vec!["sts_endpoint".into(), "fail_on".into()]),
            allow_remote: false,
        };
        let err = parse_for(
            "[defaults]\nsts_endpont = \"x\"\n",
            Path::new("k.toml"),
            &reader,
        )
        .unwrap_err();
        let p = &err.problems()[0];
        assert_at(p, ProblemKind::UnknownKey, "defaults.sts_endpont", 2, 1);
        assert!(
            err.to_string().contains("did you mean `sts_endpoint`"),
            "{err}"
        );
    }

    #[test]
    fn defaults_relative_paths_and_flag_spellings() {
        let config = parse_at(
            r#"
[profile.ci]
role_arn = "arn:aws:iam::123456789012:role/ci"
token_source = "file:tokens/google.jwt"
token_file = "ci.jwt"
credentials_profile = "ci-creds"
policy_arn = "arn:aws:iam::aws:policy/ReadOnlyAccess"
duration = 900
"#,
        )
        .unwrap();
        let ProfileConfig::GcpToAws(ci) = &config.profiles["ci"] else {
            panic!()
        };
        assert_eq!(ci.audience, DEFAULT_AWS_AUDIENCE);
        assert_eq!(
            ci.token_source.to_string(),
            "file:/etc/keyless/tokens/google.jwt"
        );
        assert_eq!(
            ci.policy_arns,
            vec!["arn:aws:iam::aws:policy/ReadOnlyAccess"]
        );
        assert_eq!(ci.duration, Some(900));
        assert!(ci.channels.contains(&Channel::TokenFile {
            path: "/etc/keyless/ci.jwt".into()
        }));
        assert!(ci.channels.contains(&Channel::CredentialsFile {
            path: None,
            profile: "ci-creds".into()
        }));
    }
}
