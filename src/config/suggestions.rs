//! The likely fix for an unknown key: a flag that has another name in the file, or a near miss.

/// Flags whose key has another name in the file, with the hint to give.
pub(super) const RENAMED_FLAGS: &[(&str, &str)] = &[
    ("listen", "a channel names what listens: ecs_listen, imds_listen (GCP → AWS) or gce_metadata_listen (AWS → GCP)"),
    ("imds", "use imds_listen = \"127.0.0.1:PORT\""),
    ("path", "use token_file = \"PATH\""),
    ("profile", "use credentials_profile = \"NAME\" (with credentials_file)"),
    ("format", "the daemon delivers through channels, not standard output; remove it"),
];

/// The closest known key, if it is close enough to be a typo.
pub(super) fn suggestion<'k>(
    unknown: &str,
    known: impl Iterator<Item = &'k str>,
) -> Option<String> {
    known
        .map(|k| (edit_distance(unknown, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::checker::all_profile_keys;
    use crate::config::testing::*;

    #[test]
    fn an_unknown_key_is_named_with_its_place_and_the_likely_key() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nsesion_name = \"x\"\n",
        );
        assert_at(
            &p,
            ProblemKind::UnknownKey,
            "profile.deploy.sesion_name",
            4,
            1,
        );
        assert!(
            message.contains(
                "/etc/keyless/keyless.toml:4:1: unknown key `sesion_name` in [profile.deploy]"
            ),
            "{message}"
        );
        assert!(
            message.contains("did you mean `session_name`?"),
            "{message}"
        );
    }

    #[test]
    fn a_flag_name_that_is_a_channel_here_says_which_key_to_use() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nlisten = \"127.0.0.1:1\"\n",
        );
        assert_at(&p, ProblemKind::UnknownKey, "profile.deploy.listen", 4, 1);
        assert!(message.contains("ecs_listen, imds_listen"), "{message}");
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(edit_distance("rol_arn", "role_arn"), 1);
        assert_eq!(
            suggestion("rol_arn", all_profile_keys()).as_deref(),
            Some("did you mean `role_arn`?")
        );
        assert_eq!(suggestion("colour", all_profile_keys()), None);
    }
}
