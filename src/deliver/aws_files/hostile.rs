//! The INI editor under hostile input: what the fuzz harness (`keyless::fuzzing::aws_ini`) and
//! the property tests below check, on any text a user's `~/.aws/credentials` may hold.
//!
//! The promises: parsing never fails and renders back byte for byte; an edit of one profile
//! leaves every byte outside that profile's first section as it was, and every other section
//! reads the same.

use std::ops::Range;

use super::ini::{IniDocument, BOM};

impl IniDocument {
    /// The bytes an edit of `name` may touch: from the header of the first section of that
    /// name to the next header after the last one (duplicates are merged, so an edit reaches
    /// them all).
    pub(crate) fn section_byte_range(&self, name: &str) -> Option<Range<usize>> {
        let matching = self.matching_sections(name);
        let (first, last) = (*matching.first()?, *matching.last()?);
        let offset = |line: usize| {
            let bom = if self.bom { BOM.len_utf8() } else { 0 };
            bom + self.lines[..line]
                .iter()
                .map(|l| l.text.len() + l.ending.as_str().len())
                .sum::<usize>()
        };
        let start = offset(self.sections[first].header);
        let end = match self.sections.get(last + 1) {
            Some(next) => offset(next.header),
            None => offset(self.lines.len()),
        };
        Some(start..end)
    }
}

/// Edits `profile` in `text` as `write-profile` does and checks the promises; panics (for the
/// fuzzer) when one is broken. Names the editor refuses are skipped.
pub(crate) fn check_edit_locality(text: &str, profile: &str, entries: &[(&str, Option<&str>)]) {
    let before = IniDocument::parse(text);
    assert_eq!(before.render(), text, "parse → render is not the identity");
    let mut doc = before.clone();
    if doc.set_entries(profile, entries).is_err() {
        return;
    }
    let after = doc.render();
    match before.section_byte_range(profile) {
        Some(range) => {
            assert!(
                after.starts_with(&text[..range.start]),
                "an edit of [{profile}] changed bytes before it"
            );
            assert!(
                after.ends_with(&text[range.end..]),
                "an edit of [{profile}] changed bytes after it"
            );
        }
        None => assert!(
            after.starts_with(text),
            "adding [{profile}] changed the existing text"
        ),
    }
    let reread = IniDocument::parse(&after);
    assert_eq!(reread.render(), after);
    let mut names = before.section_names();
    let existed = before.section_entries(profile).is_some();
    if !existed && entries.iter().any(|(_, v)| v.is_some()) {
        names.push(super::ini::normalize_section_name(profile));
    }
    assert_eq!(reread.section_names(), names, "the sections changed");
    let target = super::ini::normalize_section_name(profile);
    for name in names.iter().filter(|n| **n != target) {
        assert_eq!(
            before.section_entries(name),
            reread.section_entries(name),
            "[{name}] reads differently after editing [{profile}]"
        );
    }
    if let Some(read) = reread.section_entries(profile) {
        for (key, value) in entries {
            let found = read.iter().find(|(k, _)| *k == key.to_lowercase());
            assert_eq!(
                found.map(|(_, v)| v.as_str()),
                *value,
                "[{profile}] {key} does not read back as written"
            );
        }
    }
    let mut again = reread.clone();
    again
        .set_entries(profile, entries)
        .expect("the same edit twice");
    assert_eq!(
        again.render(),
        after,
        "the same edit twice changed the file"
    );
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Lines of any kind, so sections, entries, continuations and junk meet in every order.
    fn text() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            prop::sample::select(vec![
                "[p]",
                "[ p ]",
                "[profile p]",
                "  [p]",
                "[q]",
                "[default]",
                "[]",
                "[a]b]",
                "aws_access_key_id = OLD",
                "AWS_SESSION_TOKEN: old",
                "x = 1",
                "   nested = 2",
                "\tcontinued",
                "s3 =",
                "= v",
                "# c",
                "; c",
                "",
                "  ",
                "junk",
                "\u{feff}",
            ])
            .prop_map(String::from),
            any::<String>(),
        ];
        prop::collection::vec(
            (line, prop::sample::select(vec!["\n", "\r\n", "", "\r"])),
            0..20,
        )
        .prop_map(|lines| lines.into_iter().map(|(l, e)| l + e).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Parse any text, set one profile: every byte outside it identical, every other
        /// section the same, our keys read back, and the same edit again changes nothing.
        #[test]
        fn an_edit_of_any_text_touches_only_its_profile(
            text in text(),
            profile in prop_oneof![
                prop::sample::select(vec!["p", "profile p", "q", "default", "new"]).prop_map(String::from),
                "[^\\[\\]\\p{Cc}\\s]([^\\[\\]\\p{Cc}]{0,8}[^\\[\\]\\p{Cc}\\s])?",
            ],
            token in proptest::option::of("[!-~]{1,20}"),
        ) {
            let entries = [
                ("aws_access_key_id", Some("NEWKEY")),
                ("aws_secret_access_key", Some("new/secret+")),
                ("aws_session_token", token.as_deref()),
            ];
            check_edit_locality(&text, &profile, &entries);
        }
    }
}
