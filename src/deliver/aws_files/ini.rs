//! The INI editor: an AWS `credentials` or `config` file held so that it renders back byte for
//! byte, and edits touch only the lines of the keys they set.
//!
//! The INI handling is hand-written on purpose. No crate we know of preserves comments, blank
//! lines, ordering, spacing and line endings byte for byte: `rust-ini` and `configparser`
//! normalise on write, and the AWS SDK's own profile parser only reads. The parser
//! follows what botocore (Python's `configparser.RawConfigParser`) does, because the AWS CLI is
//! the reader users check with:
//!
//! - a line whose stripped text starts with `#` or `;` is a comment (there are no inline
//!   comments: `key = a # b` has the value `a # b`);
//! - `[name]` starts a section (the name is matched with surrounding whitespace trimmed and
//!   inner runs of whitespace collapsed, so `[ profile  dev ]` is `profile dev`);
//! - `key = value` and `key: value` are entries; key and value are trimmed and the key is
//!   lower-cased (configparser's `optionxform`), so `AWS_ACCESS_KEY_ID` and
//!   `aws_access_key_id` are one key;
//! - a line indented deeper than the entry above it continues that entry's value (this is how
//!   the config file nests `s3 =\n  max_concurrent_requests = 10`);
//! - anything else is kept verbatim and ignored (botocore refuses such files; we do not make
//!   that worse, and we do not try to fix it either).
//!
//! A UTF-8 byte order mark is kept and ignored; line endings may be `\n` or `\r\n`, mixed, and
//! the last line may lack one.

use std::fmt;
use std::ops::Range;

use super::AwsFilesError;

/// A UTF-8 byte order mark: kept and ignored.
pub(super) const BOM: char = '\u{feff}';

/// How one line ends; kept per line so mixed files render back unchanged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    None,
    Lf,
    CrLf,
}

impl Ending {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Ending::None => "",
            Ending::Lf => "\n",
            Ending::CrLf => "\r\n",
        }
    }
}

/// What botocore would make of a line, given the lines above it.
#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Blank,
    Comment,
    Header,
    /// `key = value`: the lower-cased key, the delimiter's byte offset and the trimmed value's range.
    Entry {
        key: String,
        delim: usize,
        value: Range<usize>,
    },
    /// A deeper-indented line continuing the value of the entry on line `owner`.
    Continuation {
        owner: usize,
    },
    Junk,
}

/// One line: its exact text, its ending, and the parser state after it.
#[derive(Clone)]
pub(super) struct Line {
    pub(super) text: String,
    pub(super) ending: Ending,
    kind: Kind,
    /// Leading whitespace, in characters (configparser compares character positions).
    indent: usize,
    /// Index into `IniDocument::sections`; `None` before the first header.
    section: Option<usize>,
    /// configparser's `indent_level` after this line.
    level_after: usize,
    /// Whether an entry is open after this line (configparser's `optname`), so that a deeper
    /// line would continue it.
    open_entry_after: bool,
}

impl Line {
    fn is_significant(&self) -> bool {
        !matches!(self.kind, Kind::Blank | Kind::Comment)
    }
}

/// A section header: its normalised name and the index of its line.
#[derive(Clone)]
pub(super) struct SectionInfo {
    name: String,
    pub(super) header: usize,
}

/// An AWS `credentials` or `config` file, held so that [`IniDocument::render`] gives back the
/// exact input and edits touch only the lines they must.
///
/// Parsing never fails: lines botocore would reject are kept verbatim and ignored. `Debug`
/// shows the shape, never the content (the file holds secrets).
#[derive(Clone)]
pub struct IniDocument {
    pub(super) bom: bool,
    pub(super) lines: Vec<Line>,
    pub(super) sections: Vec<SectionInfo>,
}

impl fmt::Debug for IniDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IniDocument")
            .field("lines", &self.lines.len())
            .field("sections", &self.section_names())
            .finish_non_exhaustive()
    }
}

/// Collapses whitespace so `[ profile  dev ]` and `profile dev` name the same section.
pub(super) fn normalize_section_name(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Leading whitespace in characters (configparser's `NONSPACECRE.search(line).start()`).
fn indent_of(text: &str) -> usize {
    text.chars().take_while(|c| c.is_whitespace()).count()
}

/// configparser's `SECTCRE` (`\[(?P<header>.+)\]`, matched at the start of the stripped line,
/// greedy): the text between `[` and the last `]`, if there is at least one character.
fn header_name(trimmed: &str) -> Option<&str> {
    let rest = trimmed.strip_prefix('[')?;
    let close = rest.rfind(']')?;
    (close > 0).then(|| &rest[..close])
}

impl IniDocument {
    /// Reads any text; never fails. `IniDocument::parse(x).render() == x` for every `x`.
    pub fn parse(text: &str) -> Self {
        let (bom, body) = match text.strip_prefix(BOM) {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let mut lines = Vec::new();
        let mut sections: Vec<SectionInfo> = Vec::new();
        // configparser's state: the current section, the open entry and the indent level.
        let mut section: Option<usize> = None;
        let mut open_entry: Option<usize> = None;
        let mut level = usize::MAX;

        for raw in body.split_inclusive('\n') {
            let (text, ending) = if let Some(t) = raw.strip_suffix("\r\n") {
                (t, Ending::CrLf)
            } else if let Some(t) = raw.strip_suffix('\n') {
                (t, Ending::Lf)
            } else {
                (raw, Ending::None)
            };
            let index = lines.len();
            let trimmed = text.trim();
            let indent = indent_of(text);
            let kind = if trimmed.starts_with('#') || trimmed.starts_with(';') {
                Kind::Comment
            } else if trimmed.is_empty() {
                Kind::Blank
            } else if let (Some(_), Some(owner)) = (section, open_entry.filter(|_| indent > level))
            {
                Kind::Continuation { owner }
            } else {
                level = indent;
                if let Some(name) = header_name(trimmed) {
                    section = Some(sections.len());
                    sections.push(SectionInfo {
                        name: normalize_section_name(name),
                        header: index,
                    });
                    open_entry = None;
                    Kind::Header
                } else if let Some(pos) = trimmed.find(['=', ':']) {
                    let key = trimmed[..pos].trim_end();
                    if key.is_empty() {
                        // configparser records an error and leaves `optname` falsy.
                        open_entry = None;
                        Kind::Junk
                    } else {
                        let lead = text.len() - text.trim_start().len();
                        let delim = lead + pos;
                        let after = &text[delim + 1..];
                        let start = delim + 1 + (after.len() - after.trim_start().len());
                        let end = start + after.trim().len();
                        open_entry = section.map(|_| index);
                        Kind::Entry {
                            key: key.to_lowercase(),
                            delim,
                            value: start..end,
                        }
                    }
                } else {
                    // configparser records an error and keeps the open entry.
                    Kind::Junk
                }
            };
            lines.push(Line {
                text: text.to_owned(),
                ending,
                kind,
                indent,
                section,
                level_after: level,
                open_entry_after: open_entry.is_some(),
            });
        }
        Self {
            bom,
            lines,
            sections,
        }
    }

    /// The document as text, byte for byte what was parsed plus the edits made since.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.lines.iter().map(|l| l.text.len() + 2).sum());
        if self.bom {
            out.push(BOM);
        }
        for line in &self.lines {
            out.push_str(&line.text);
            out.push_str(line.ending.as_str());
        }
        out
    }

    /// Section names in file order (normalised; duplicates appear once per header).
    pub fn section_names(&self) -> Vec<String> {
        self.sections.iter().map(|s| s.name.clone()).collect()
    }

    /// The entries of `section` as botocore reads them: keys lower-cased and trimmed, values
    /// trimmed (continuation lines joined with `\n`), in file order. Duplicate sections are
    /// merged and a repeated key keeps its first position and its last value. `None` when no
    /// such section exists.
    pub fn section_entries(&self, section: &str) -> Option<Vec<(String, String)>> {
        let matching = self.matching_sections(section);
        if matching.is_empty() {
            return None;
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for (index, line) in self.lines.iter().enumerate() {
            let Kind::Entry { key, .. } = &line.kind else {
                continue;
            };
            if !line.section.is_some_and(|s| matching.contains(&s)) {
                continue;
            }
            let value = self.entry_value(index);
            match out.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => out.push((key.clone(), value)),
            }
        }
        Some(out)
    }

    /// Sets, replaces or removes entries of `section`, touching nothing else.
    ///
    /// - A key that exists (compared case-insensitively, as botocore does) is updated in place:
    ///   its line keeps its position, indentation, key spelling and spacing; only the value
    ///   changes, and any continuation lines of the old value go. Later duplicates are removed.
    /// - A key set to `None` is removed with its continuation lines.
    /// - A missing key is added after the last line of the section's content, so the blank
    ///   lines and comments that lead into the next section stay where they are.
    /// - A missing section is appended at the end of the file after one blank line, in the
    ///   file's line-ending style. Setting only `None`s never creates a section.
    ///
    /// Keys and values that would change the file's structure (newlines, a key with `=`...) are
    /// refused with [`AwsFilesError::InvalidEntry`]; the section name is checked by
    /// [`validate_profile_name`](super::validate_profile_name)'s rules.
    pub fn set_entries(
        &mut self,
        section: &str,
        entries: &[(&str, Option<&str>)],
    ) -> Result<(), AwsFilesError> {
        validate_section_name(section)?;
        for (key, value) in entries {
            validate_entry(section, key, *value)?;
        }
        if self.matching_sections(section).is_empty() {
            if entries.iter().any(|(_, v)| v.is_some()) {
                self.append_section(section, entries);
            }
            return Ok(());
        }
        let missing = self.update_in_place(section, entries);
        if !missing.is_empty() {
            self.insert_entries(section, &missing);
        }
        Ok(())
    }

    pub(super) fn matching_sections(&self, name: &str) -> Vec<usize> {
        let want = normalize_section_name(name);
        (0..self.sections.len())
            .filter(|&s| self.sections[s].name == want)
            .collect()
    }

    /// The last line belonging to the entry on line `index` (its last continuation line).
    fn entry_span_end(&self, index: usize) -> usize {
        let mut end = index;
        for (j, line) in self.lines.iter().enumerate().skip(index + 1) {
            match line.kind {
                Kind::Continuation { owner } if owner == index => end = j,
                Kind::Entry { .. } | Kind::Header => break,
                _ => {}
            }
        }
        end
    }

    /// configparser's value: the first line's value, then continuation lines (blank lines
    /// inside count as empty lines, comments do not), joined with `\n`, right-trimmed.
    fn entry_value(&self, index: usize) -> String {
        let Kind::Entry { value, .. } = &self.lines[index].kind else {
            return String::new();
        };
        let mut out = self.lines[index].text[value.clone()].to_owned();
        for line in &self.lines[index + 1..=self.entry_span_end(index)] {
            match line.kind {
                Kind::Continuation { .. } => {
                    out.push('\n');
                    out.push_str(line.text.trim());
                }
                Kind::Blank => out.push('\n'),
                _ => {}
            }
        }
        out.truncate(out.trim_end().len());
        out
    }

    /// The newline the file mostly uses: that of its first terminated line, else `\n`.
    fn newline(&self) -> Ending {
        self.lines
            .iter()
            .map(|l| l.ending)
            .find(|e| *e != Ending::None)
            .unwrap_or(Ending::Lf)
    }

    fn with_lines(&self, lines: impl IntoIterator<Item = (String, Ending)>) -> Self {
        let mut text = String::new();
        if self.bom {
            text.push(BOM);
        }
        for (t, e) in lines {
            text.push_str(&t);
            text.push_str(e.as_str());
        }
        Self::parse(&text)
    }

    /// Updates and removes existing keys; returns the keys still to be added.
    ///
    /// Replacing a value or removing an entry with its continuation lines cannot change how
    /// any later line parses: the state after the edited span is the same or less inclined to
    /// see continuations, and the next line was not a continuation before.
    fn update_in_place<'a>(
        &mut self,
        section: &str,
        entries: &[(&'a str, Option<&'a str>)],
    ) -> Vec<(&'a str, &'a str)> {
        enum Edit {
            Keep,
            Delete,
            Replace(String),
        }
        let matching = self.matching_sections(section);
        let mut edits: Vec<Edit> = self.lines.iter().map(|_| Edit::Keep).collect();
        let mut missing = Vec::new();
        for (key, value) in entries {
            let wanted = key.to_lowercase();
            let occurrences: Vec<usize> = (0..self.lines.len())
                .filter(|&i| {
                    let line = &self.lines[i];
                    line.section.is_some_and(|s| matching.contains(&s))
                        && matches!(&line.kind, Kind::Entry { key, .. } if *key == wanted)
                        && matches!(edits[i], Edit::Keep)
                })
                .collect();
            match (value, occurrences.split_first()) {
                (Some(value), None) => missing.push((*key, *value)),
                (Some(value), Some((&first, rest))) => {
                    edits[first] = Edit::Replace(self.replace_value(first, value));
                    for edit in &mut edits[first + 1..=self.entry_span_end(first)] {
                        *edit = Edit::Delete;
                    }
                    for &i in rest {
                        for edit in &mut edits[i..=self.entry_span_end(i)] {
                            *edit = Edit::Delete;
                        }
                    }
                }
                (None, _) => {
                    for &i in &occurrences {
                        for edit in &mut edits[i..=self.entry_span_end(i)] {
                            *edit = Edit::Delete;
                        }
                    }
                }
            }
        }
        if edits.iter().any(|e| !matches!(e, Edit::Keep)) {
            let lines = self
                .lines
                .iter()
                .zip(edits)
                .filter_map(|(line, edit)| match edit {
                    Edit::Keep => Some((line.text.clone(), line.ending)),
                    Edit::Delete => None,
                    Edit::Replace(text) => Some((text, line.ending)),
                });
            *self = self.with_lines(lines);
        }
        missing
    }

    /// The text of entry line `index` with its value replaced, keeping everything around it.
    fn replace_value(&self, index: usize, new_value: &str) -> String {
        let line = &self.lines[index];
        let Kind::Entry { delim, value, .. } = &line.kind else {
            return line.text.clone();
        };
        let before = &line.text[..value.start];
        let after = &line.text[value.end..];
        // `key =` with an empty value becomes `key = new`, not `key =new`.
        let space = value.is_empty()
            && !new_value.is_empty()
            && value.start == delim + 1
            && line.text[..*delim].ends_with(char::is_whitespace);
        format!("{before}{}{new_value}{after}", if space { " " } else { "" })
    }

    /// Adds new entries after the last significant line of the first matching section.
    ///
    /// The new lines are indented so that configparser sees them as entries (not continuations)
    /// and so that whatever follows parses as it did: after the anchor line the parser state
    /// is (open entry, level); after our lines it is (our entry, the same level). If no entry
    /// was open, the next header must not become a continuation of ours, so we indent at least
    /// as deep as it is.
    fn insert_entries(&mut self, section: &str, missing: &[(&str, &str)]) {
        let Some(&first) = self.matching_sections(section).first() else {
            return;
        };
        let header = self.sections[first].header;
        let anchor = (header..self.lines.len())
            .rev()
            .find(|&i| self.lines[i].section == Some(first) && self.lines[i].is_significant())
            .unwrap_or(header);
        let anchor_line = &self.lines[anchor];
        let mut indent = anchor_line.level_after;
        if !anchor_line.open_entry_after {
            if let Some(next) = self.lines[anchor + 1..].iter().find(|l| l.is_significant()) {
                indent = indent.max(next.indent);
            }
        }
        // Spacing: copy `key=value` vs `key = value` from the section's last entry.
        let last_entry = (header..=anchor)
            .rev()
            .find(|&i| matches!(self.lines[i].kind, Kind::Entry { .. }));
        let separator = match last_entry.map(|i| (&self.lines[i].text, &self.lines[i].kind)) {
            Some((text, Kind::Entry { delim, value, .. }))
                if !text[..*delim].ends_with(char::is_whitespace) && value.start == delim + 1 =>
            {
                "="
            }
            _ => " = ",
        };
        let newline = self.newline();
        let pad = " ".repeat(indent);
        let mut lines: Vec<(String, Ending)> = Vec::with_capacity(self.lines.len() + missing.len());
        for (i, line) in self.lines.iter().enumerate() {
            if i != anchor {
                lines.push((line.text.clone(), line.ending));
                continue;
            }
            let last_ending = line.ending;
            lines.push((line.text.clone(), newline_if_none(line.ending, newline)));
            for (n, (key, value)) in missing.iter().enumerate() {
                let ending = if n + 1 == missing.len() && last_ending == Ending::None {
                    Ending::None
                } else {
                    newline
                };
                lines.push((format!("{pad}{key}{separator}{value}"), ending));
            }
        }
        *self = self.with_lines(lines);
    }

    /// Appends `[section]` with the non-`None` entries, after one blank line.
    fn append_section(&mut self, section: &str, entries: &[(&str, Option<&str>)]) {
        let newline = self.newline();
        let mut lines: Vec<(String, Ending)> = self
            .lines
            .iter()
            .map(|l| (l.text.clone(), l.ending))
            .collect();
        if let Some(last) = lines.last_mut() {
            last.1 = newline_if_none(last.1, newline);
            if !last.0.trim().is_empty() {
                lines.push((String::new(), newline));
            }
        }
        lines.push((format!("[{section}]"), newline));
        for (key, value) in entries {
            if let Some(value) = value {
                lines.push((format!("{key} = {value}"), newline));
            }
        }
        *self = self.with_lines(lines);
    }
}

fn newline_if_none(ending: Ending, newline: Ending) -> Ending {
    if ending == Ending::None {
        newline
    } else {
        ending
    }
}

pub(super) fn validate_section_name(name: &str) -> Result<(), AwsFilesError> {
    let reason = if name.trim().is_empty() {
        Some("it is empty")
    } else if name.trim() != name {
        Some("it starts or ends with whitespace, which the file would not keep")
    } else if name.contains(['[', ']']) {
        Some("`[` and `]` delimit section headers")
    } else if name.contains(|c: char| c.is_control()) {
        Some("it contains a newline or another control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(AwsFilesError::InvalidProfileName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_entry(section: &str, key: &str, value: Option<&str>) -> Result<(), AwsFilesError> {
    let reason = if key.is_empty() {
        Some("the key is empty")
    } else if key.trim() != key || key.contains(char::is_whitespace) {
        Some("keys cannot contain whitespace")
    } else if key.contains(['=', ':']) {
        Some("`=` and `:` separate keys from values")
    } else if key.starts_with(['[', '#', ';']) {
        Some("a key cannot start with `[`, `#` or `;`")
    } else if key.contains(|c: char| c.is_control()) {
        Some("keys cannot contain control characters")
    } else if value.is_some_and(|v| v.contains(['\n', '\r'])) {
        Some("the value contains a line break")
    } else if value.is_some_and(|v| v.trim() != v) {
        Some("the value starts or ends with whitespace, which readers would trim")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(AwsFilesError::InvalidEntry {
            section: section.to_owned(),
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::aws_files::config_section_name;
    use proptest::prelude::*;

    const FIXTURE: &str = include_str!("../../../tests/data/ini/credentials");
    const CONFIG_FIXTURE: &str = include_str!("../../../tests/data/ini/config");

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // --- reading the way botocore does -------------------------------------------------------

    #[test]
    fn fixture_reads_like_botocore() {
        let doc = IniDocument::parse(FIXTURE);
        assert_eq!(doc.render(), FIXTURE);
        assert_eq!(
            doc.section_names(),
            ["default", "deploy", "profile legacy", "ci"]
        );
        assert_eq!(
            doc.section_entries("ci").unwrap(),
            entries(&[
                ("aws_access_key_id", "AKIACICICICICICICI00"),
                (
                    "aws_secret_access_key",
                    "ciSecretCiSecretCiSecretCiSecretCi000000"
                ),
            ])
        );
        let legacy = doc.section_entries("profile legacy").unwrap();
        assert_eq!(
            legacy[2],
            ("s3".into(), "\nmax_concurrent_requests = 10".into())
        );
        assert_eq!(doc.section_entries("nope"), None);
    }

    #[test]
    fn config_sections_and_nested_values() {
        let doc = IniDocument::parse(CONFIG_FIXTURE);
        assert_eq!(config_section_name("default"), "default");
        assert_eq!(config_section_name("dev"), "profile dev");
        let default = doc
            .section_entries(&config_section_name("default"))
            .unwrap();
        assert_eq!(
            default,
            entries(&[
                ("region", "eu-west-1"),
                (
                    "s3",
                    "\nmax_concurrent_requests = 10\n\nmax_queue_size = 1000"
                ),
                ("output", "json"),
            ])
        );
        // `[profile  dev ]` is the section of profile `dev`.
        let dev = doc.section_entries(&config_section_name("dev")).unwrap();
        assert_eq!(
            dev[0],
            (
                "role_arn".into(),
                "arn:aws:iam::123456789012:role/dev".into()
            )
        );
        // Setting a key under a nested block lands after the block, not inside it.
        let mut edited = doc.clone();
        edited
            .set_entries("default", &[("s3", Some("x")), ("cli_pager", Some(""))])
            .unwrap();
        assert!(edited
            .render()
            .starts_with("[default]\nregion = eu-west-1\ns3 = x\noutput = json\ncli_pager = \n\n"));
    }

    #[test]
    fn odd_lines_are_classified_as_configparser_does() {
        let text = "key = before any section\n[s]\na = 1\n  b = 2\n\n  c = 3\n# x\nd: e # not a comment\n[]\n= no key\nAbC = upper\n";
        let doc = IniDocument::parse(text);
        assert_eq!(doc.render(), text);
        assert_eq!(
            doc.section_entries("s").unwrap(),
            entries(&[
                ("a", "1\nb = 2\n\nc = 3"),
                ("d", "e # not a comment"),
                ("abc", "upper"),
            ])
        );
        // A junk line keeps the entry above open: a deeper line after it continues that entry.
        let doc = IniDocument::parse("[s]\nd = e\n[]\n = more\n");
        assert_eq!(
            doc.section_entries("s").unwrap(),
            entries(&[("d", "e\n= more")])
        );
    }

    #[test]
    fn debug_never_shows_the_content() {
        let doc = IniDocument::parse(FIXTURE);
        let debug = format!("{doc:?}");
        assert!(!debug.contains("Secret"), "{debug}");
        assert!(!debug.contains("AKIA"), "{debug}");
        assert!(debug.contains("deploy"), "{debug}");
    }

    // --- properties ---------------------------------------------------------------------------

    fn ini_line() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "[default]",
                "[ profile dev ]",
                "  [indented]",
                "[]",
                "[a]b]",
                "[",
                "]",
                "key = value",
                "key=value",
                "KEY : v",
                "  nested = 1",
                "s3 =",
                "= no key",
                "# comment",
                "; comment",
                "  # indented comment",
                "",
                "   ",
                "\t",
                "junk",
                "\u{feff}",
                "\r",
                "é = ü",
            ])
            .prop_map(String::from),
            "[ -~\t]{0,16}",
            any::<String>(),
        ]
    }

    fn line_ending() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["\n", "\r\n", "", "\r"])
    }

    fn ini_text() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            prop::collection::vec((ini_line(), line_ending()), 0..30),
        )
            .prop_map(|(bom, lines)| {
                let mut text = if bom {
                    "\u{feff}".to_owned()
                } else {
                    String::new()
                };
                for (line, ending) in lines {
                    text.push_str(&line);
                    text.push_str(ending);
                }
                text
            })
    }

    /// Lines that may appear inside a section; none of them can open a section.
    fn body_line() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "region = us-east-1",
                "output=json",
                "aws_access_key_id = OLD",
                "AWS_SECRET_ACCESS_KEY: OLD",
                "aws_session_token=OLD",
                "x_security_token_expires = 2020-01-01T00:00:00Z",
                "  nested = 1",
                "s3 =",
                "    deeper = 2",
                "# comment",
                "; comment",
                "",
                "  ",
                "junk",
                "= v",
            ])
            .prop_map(String::from),
            "[a-z_ =:#;\t]{0,12}",
        ]
    }

    #[derive(Debug, Clone)]
    struct Layout {
        text: String,
    }

    fn layout() -> impl Strategy<Value = Layout> {
        let others = vec!["[a]", "[ b ]", "[profile c]", "  [d]", "[e]", "[a]"];
        (
            any::<bool>(),
            prop::collection::vec(body_line(), 0..3),
            prop::sample::subsequence(others, 0..=6),
            prop::option::of((
                prop::sample::select(vec!["[target]", "[ target ]", "\t[target]"]),
                any::<prop::sample::Index>(),
            )),
            prop::collection::vec(prop::collection::vec(body_line(), 0..6), 8),
            prop::collection::vec(prop::sample::select(vec!["\n", "\r\n"]), 64),
            any::<bool>(),
        )
            .prop_map(
                |(bom, preamble, mut headers, target, bodies, endings, final_newline)| {
                    if let Some((header, at)) = target {
                        let at = at.index(headers.len() + 1);
                        headers.insert(at, header);
                    }
                    let mut lines = preamble;
                    for (header, body) in headers.iter().zip(bodies) {
                        lines.push(header.to_string());
                        lines.extend(body);
                    }
                    let mut text = if bom {
                        "\u{feff}".to_owned()
                    } else {
                        String::new()
                    };
                    let count = lines.len();
                    for (i, line) in lines.into_iter().enumerate() {
                        text.push_str(&line);
                        if i + 1 < count || final_newline {
                            text.push_str(endings[i % endings.len()]);
                        }
                    }
                    Layout { text }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn render_of_parse_is_the_identity(text in ini_text()) {
            prop_assert_eq!(IniDocument::parse(&text).render(), text);
        }

        #[test]
        fn render_of_parse_is_the_identity_for_any_string(text in any::<String>()) {
            prop_assert_eq!(IniDocument::parse(&text).render(), text);
        }

        #[test]
        fn an_edit_stays_inside_its_section(layout in layout(), session in any::<bool>()) {
            let text = layout.text;
            let (token, expires) = if session {
                (Some("NEWTOKEN"), Some("2030-01-01T00:00:00Z"))
            } else {
                (None, None)
            };
            let wanted: [(&str, Option<&str>); 4] = [
                ("aws_access_key_id", Some("NEWKEY")),
                ("aws_secret_access_key", Some("NEWSECRET")),
                ("aws_session_token", token),
                ("x_security_token_expires", expires),
            ];
            let before = IniDocument::parse(&text);
            let mut doc = before.clone();
            doc.set_entries("target", &wanted).unwrap();
            let after = doc.render();

            // Bytes: everything before and after the section is untouched.
            match before.section_byte_range("target") {
                Some(range) => {
                    prop_assert!(after.starts_with(&text[..range.start]));
                    prop_assert!(after.ends_with(&text[range.end..]));
                }
                None => prop_assert!(after.starts_with(&text)),
            }

            // Meaning: every other section reads the same, in the same order.
            let mut names = before.section_names();
            if before.section_entries("target").is_none() {
                names.push("target".into());
            }
            prop_assert_eq!(doc.section_names(), names.clone());
            for name in names.iter().filter(|n| *n != "target") {
                prop_assert_eq!(before.section_entries(name), doc.section_entries(name));
            }

            // The section itself: our keys set, its other keys as they were.
            let mut expected: Vec<(String, String)> = Vec::new();
            for (k, v) in before.section_entries("target").unwrap_or_default() {
                match wanted.iter().find(|(w, _)| *w == k) {
                    Some((_, Some(new))) => expected.push((k, new.to_string())),
                    Some((_, None)) => {}
                    None => expected.push((k, v)),
                }
            }
            for (k, v) in wanted {
                if let (Some(v), false) = (v, expected.iter().any(|(e, _)| e == k)) {
                    expected.push((k.to_owned(), v.to_owned()));
                }
            }
            prop_assert_eq!(doc.section_entries("target").unwrap(), expected);

            // Idempotent: the same edit again changes nothing.
            let mut again = doc.clone();
            again.set_entries("target", &wanted).unwrap();
            prop_assert_eq!(again.render(), after);
        }
    }
}
