//! `~/.aws/credentials` and `~/.aws/config`: read them as the AWS CLI does, edit one profile and
//! leave every other byte alone.
//!
//! `keyless aws write-profile` hands temporary credentials to programs that only know the shared
//! credentials file. That file is the user's: it holds hand-written comments, long-lived keys for
//! other accounts and settings other tools wrote. Losing a comment, reordering a section or
//! leaving a half-written file behind after a crash would be worse than not having the feature,
//! so an edit here is surgical (only the lines of the keys we own change), atomic (temp file,
//! fsync, rename, fsync the directory), private (0600) and serialised between keyless processes
//! by a lock on a sidecar file.
//!
//! The INI handling is hand-written on purpose. No crate we know of preserves comments, blank
//! lines, ordering, spacing and line endings byte for byte: `rust-ini` and `configparser`
//! normalise on write, and the AWS SDK's own profile parser only reads. The parser below
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

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::credentials::{format_expiration, AwsCredentials};
use crate::secret::Secret;

/// The keys [`write_credentials_profile`] owns in a credentials-file section.
const ACCESS_KEY_ID: &str = "aws_access_key_id";
const SECRET_ACCESS_KEY: &str = "aws_secret_access_key";
const SESSION_TOKEN: &str = "aws_session_token";
/// The legacy (boto2) name of the session token; botocore still reads it when
/// `aws_session_token` is absent, so we keep it in sync when a file already has it.
const LEGACY_SECURITY_TOKEN: &str = "aws_security_token";
/// The expiry key aws-vault and gimme-aws-creds write; the SDKs ignore it, people and scripts read it.
const EXPIRES: &str = "x_security_token_expires";

const BOM: char = '\u{feff}';

/// What went wrong reading or editing an AWS shared file; never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum AwsFilesError {
    /// No home directory, so no default location for the file.
    #[error(
        "could not find your home directory, so there is no default {what}\n  \
         hint: set {env_var} or pass the path explicitly (--credentials-file)"
    )]
    NoHomeDirectory {
        /// `~/.aws/credentials` or `~/.aws/config`.
        what: &'static str,
        /// The environment variable that overrides the location.
        env_var: &'static str,
    },

    /// The profile name would not survive a round trip through the file.
    #[error(
        "{name:?} cannot be used as an AWS profile name: {reason}\n  \
         hint: use letters, digits, `-`, `_` or `.`, e.g. --profile keyless-deploy"
    )]
    InvalidProfileName {
        /// The rejected name (names are not secret).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A key or value passed to [`IniDocument::set_entries`] would break the file.
    #[error("cannot write key {key:?} in [{section}]: {reason}")]
    InvalidEntry {
        /// The section being edited.
        section: String,
        /// The offending key (keys are not secret; values are never shown).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// Reading, locking or replacing the file failed.
    #[error(
        "could not {action} {}: {source}\n  \
         hint: check that you own the file and its directory and that they are writable",
        path.display()
    )]
    Io {
        /// What we were doing, e.g. "lock" or "replace".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },

    /// The file is not UTF-8, so it cannot be edited without risking its other bytes.
    #[error(
        "{} is not UTF-8 text, so keyless will not edit it\n  \
         hint: re-save it as UTF-8 (the AWS CLI requires that too) or use another --credentials-file",
        path.display()
    )]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },

    /// Following symbolic links from the path never reached a file.
    #[error(
        "{} is a chain of more than 40 symbolic links (a loop?)\n  \
         hint: point it at a real file or pass that file with --credentials-file",
        path.display()
    )]
    SymlinkLoop {
        /// The path we started from.
        path: PathBuf,
    },

    /// The profile exists but does not hold keys (it may use `role_arn`, `credential_process`...).
    #[error(
        "profile [{profile}] in {} has no {missing}\n  \
         hint: it may be configured another way (role_arn, credential_process, sso); \
         keyless reads only keys stored in the credentials file",
        path.display()
    )]
    IncompleteProfile {
        /// The credentials file.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// The first missing key.
        missing: &'static str,
    },
}

// ---------------------------------------------------------------------------------------------
// The lossless document
// ---------------------------------------------------------------------------------------------

/// How one line ends; kept per line so mixed files render back unchanged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    None,
    Lf,
    CrLf,
}

impl Ending {
    fn as_str(self) -> &'static str {
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
struct Line {
    text: String,
    ending: Ending,
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
struct SectionInfo {
    name: String,
    header: usize,
}

/// An AWS `credentials` or `config` file, held so that [`IniDocument::render`] gives back the
/// exact input and edits touch only the lines they must.
///
/// Parsing never fails: lines botocore would reject are kept verbatim and ignored. `Debug`
/// shows the shape, never the content (the file holds secrets).
#[derive(Clone)]
pub struct IniDocument {
    bom: bool,
    lines: Vec<Line>,
    sections: Vec<SectionInfo>,
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
fn normalize_section_name(name: &str) -> String {
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
    /// [`validate_profile_name`]'s rules.
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

    fn matching_sections(&self, name: &str) -> Vec<usize> {
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

fn validate_section_name(name: &str) -> Result<(), AwsFilesError> {
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

/// Checks that `profile` can be written as a section header and read back as the same name:
/// non-empty, no surrounding whitespace, no `[`, `]`, newline or other control character.
pub fn validate_profile_name(profile: &str) -> Result<(), AwsFilesError> {
    validate_section_name(profile)
}

/// The section that holds `profile` in the **config** file: `default` stays `default`, every
/// other profile is `profile NAME`. (The credentials file uses the bare name.) A name with
/// spaces works in the credentials file but not here: botocore splits config headers on
/// whitespace.
pub fn config_section_name(profile: &str) -> String {
    if profile == "default" {
        profile.to_owned()
    } else {
        format!("profile {profile}")
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// Where the AWS SDKs look for the shared credentials file: `AWS_SHARED_CREDENTIALS_FILE` when
/// set (a leading `~/` is expanded, as botocore does), else `~/.aws/credentials`.
pub fn default_credentials_path() -> Result<PathBuf, AwsFilesError> {
    shared_file_path(
        std::env::var_os("AWS_SHARED_CREDENTIALS_FILE"),
        dirs::home_dir(),
        "credentials",
        "AWS_SHARED_CREDENTIALS_FILE",
    )
}

/// Where the AWS SDKs look for the shared config file: `AWS_CONFIG_FILE` when set, else
/// `~/.aws/config`.
pub fn default_config_path() -> Result<PathBuf, AwsFilesError> {
    shared_file_path(
        std::env::var_os("AWS_CONFIG_FILE"),
        dirs::home_dir(),
        "config",
        "AWS_CONFIG_FILE",
    )
}

fn shared_file_path(
    from_env: Option<OsString>,
    home: Option<PathBuf>,
    file: &'static str,
    env_var: &'static str,
) -> Result<PathBuf, AwsFilesError> {
    let what = if file == "config" {
        "~/.aws/config"
    } else {
        "~/.aws/credentials"
    };
    let no_home = || AwsFilesError::NoHomeDirectory { what, env_var };
    match from_env.filter(|v| !v.is_empty()) {
        Some(value) => {
            let path = PathBuf::from(value);
            match path.strip_prefix("~") {
                Ok(rest) => Ok(home.ok_or_else(no_home)?.join(rest)),
                Err(_) => Ok(path),
            }
        }
        None => Ok(home.ok_or_else(no_home)?.join(".aws").join(file)),
    }
}

/// The sidecar file [`write_credentials_profile`] locks: the target's name plus `.lock`
/// (`~/.aws/credentials.lock`). It is created on first use and never deleted, because deleting
/// a lock file races with the next process opening it.
pub fn lock_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(OsString::from).unwrap_or_default();
    name.push(".lock");
    file.with_file_name(name)
}

/// Follows symbolic links to the file they finally name, which may not exist yet.
fn resolve_symlinks(path: &Path) -> Result<PathBuf, AwsFilesError> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current).map_err(|source| AwsFilesError::Io {
                    action: "follow the symbolic link",
                    path: current.clone(),
                    source,
                })?;
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(source) => {
                return Err(AwsFilesError::Io {
                    action: "inspect",
                    path: current,
                    source,
                })
            }
        }
    }
    Err(AwsFilesError::SymlinkLoop {
        path: path.to_path_buf(),
    })
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading and writing the credentials file
// ---------------------------------------------------------------------------------------------

/// Reads a file as text; a missing file reads as empty.
fn read_text(path: &Path) -> Result<Option<String>, AwsFilesError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| AwsFilesError::NotUtf8 {
                path: path.to_path_buf(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AwsFilesError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates the directory (and missing parents) readable by the owner only, as `~/.aws` should be.
fn ensure_private_dir(dir: &Path) -> Result<(), AwsFilesError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| AwsFilesError::Io {
        action: "create the directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Opens and exclusively locks the sidecar lock file; the lock lasts as long as the `File`.
fn lock_exclusive(target: &Path) -> Result<File, AwsFilesError> {
    let path = lock_path(target);
    let io_err = |action, source| AwsFilesError::Io {
        action,
        path: path.clone(),
        source,
    };
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&path)
        .map_err(|e| io_err("open the lock file", e))?;
    file.lock().map_err(|e| io_err("lock", e))?;
    Ok(file)
}

/// Replaces `target` with `contents`: temp file in the same directory, 0600, fsync, rename,
/// fsync the directory, so readers see the old file or the new one and a crash leaves one of
/// them on disk.
fn replace_atomically(target: &Path, contents: &[u8]) -> Result<(), AwsFilesError> {
    let dir = parent_dir(target);
    let io_err = |action, path: &Path, source| AwsFilesError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| io_err("create a temporary file in", dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err("restrict permissions of", temp.path(), e))?;
    }
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io_err("write", temp.path(), e))?;
    temp.persist(target)
        .map_err(|e| io_err("replace", target, e.error))?;
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync the directory", dir, e))?;
    Ok(())
}

/// Writes `creds` into `[profile]` of the shared credentials file at `path`.
///
/// Sets `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token` (removed for
/// long-lived keys) and `x_security_token_expires` (RFC 3339, as aws-vault and gimme-aws-creds
/// write it; removed when the credentials do not expire). If the section already has the legacy
/// `aws_security_token`, it is kept equal to the session token (or removed with it) so that it
/// can never shadow fresh credentials with stale ones. Every other key of the section, and
/// every other byte of the file, stays as it was.
///
/// The edit is safe against crashes and against other keyless processes:
/// - an exclusive lock on the sidecar [`lock_path`] (`credentials.lock`) is held while the
///   file is read, edited and replaced, so concurrent writers of different profiles all land;
/// - the new content goes to a temp file in the same directory (mode 0600), is fsynced and
///   renamed over the target, then the directory is fsynced;
/// - a missing directory (`~/.aws`) is created with mode 0700;
/// - if `path` is a symbolic link (dotfile managers do that), the file it points to is edited
///   and the link stays a link.
pub fn write_credentials_profile(
    path: &Path,
    profile: &str,
    creds: &AwsCredentials,
) -> Result<(), AwsFilesError> {
    validate_profile_name(profile)?;
    let target = resolve_symlinks(path)?;
    ensure_private_dir(parent_dir(&target))?;
    let _lock = lock_exclusive(&target)?;

    let current = read_text(&target)?.unwrap_or_default();
    let mut doc = IniDocument::parse(&current);
    let token = creds.session_token.as_ref().map(Secret::expose);
    let expires = creds.expiration.map(format_expiration);
    let mut entries = vec![
        (ACCESS_KEY_ID, Some(creds.access_key_id.as_str())),
        (SECRET_ACCESS_KEY, Some(creds.secret_access_key.expose())),
        (SESSION_TOKEN, token),
        (EXPIRES, expires.as_deref()),
    ];
    let has_legacy = doc
        .section_entries(profile)
        .is_some_and(|e| e.iter().any(|(k, _)| k == LEGACY_SECURITY_TOKEN));
    if has_legacy {
        entries.push((LEGACY_SECURITY_TOKEN, token));
    }
    doc.set_entries(profile, &entries)?;
    replace_atomically(&target, doc.render().as_bytes())?;
    tracing::debug!(path = %target.display(), profile, "wrote AWS credentials profile");
    Ok(())
}

/// Reads the keys stored in `[profile]` of the shared credentials file, as `whoami --profile`
/// needs them. `Ok(None)` when the file or the profile does not exist; an error when the
/// profile exists without an access key or secret key. The session token is
/// `aws_session_token`, else the legacy `aws_security_token`; the expiry is
/// `x_security_token_expires` when it parses as RFC 3339.
pub fn read_credentials_profile(
    path: &Path,
    profile: &str,
) -> Result<Option<AwsCredentials>, AwsFilesError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    let Some(entries) = IniDocument::parse(&text).section_entries(profile) else {
        return Ok(None);
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let missing = |missing| AwsFilesError::IncompleteProfile {
        path: path.to_path_buf(),
        profile: profile.to_owned(),
        missing,
    };
    let access_key_id = get(ACCESS_KEY_ID).ok_or_else(|| missing(ACCESS_KEY_ID))?;
    let secret_access_key = get(SECRET_ACCESS_KEY).ok_or_else(|| missing(SECRET_ACCESS_KEY))?;
    let session_token = get(SESSION_TOKEN).or_else(|| get(LEGACY_SECURITY_TOKEN));
    let expiration = get(EXPIRES).and_then(|v| match OffsetDateTime::parse(v, &Rfc3339) {
        Ok(t) => Some(t),
        Err(_) => {
            tracing::warn!(path = %path.display(), profile, value = v,
                "ignoring {EXPIRES}: not an RFC 3339 time");
            None
        }
    });
    Ok(Some(AwsCredentials {
        access_key_id: access_key_id.to_owned(),
        secret_access_key: Secret::new(secret_access_key),
        session_token: session_token.map(Secret::new),
        expiration,
    }))
}
