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
use std::fs::{self, File};
use std::io;
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

    /// A symbolic link on the way to the file is not this user's: following it would let its
    /// owner choose where the credentials go (what `fs.protected_symlinks` prevents in sticky
    /// directories, checked here wherever the link is).
    #[error(
        "{} is a symbolic link owned by user id {owner}, not by this user ({me}); keyless follows          only this user's links
           hint: if the link is meant to be there, `sudo chown -h $(id -u) {}`; otherwise remove it,          or pass the real file with --credentials-file",
        link.display(),
        link.display()
    )]
    ForeignSymlink {
        /// The link.
        link: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// The user id keyless runs as.
        me: u32,
    },

    /// A symbolic link of this user's points at a file (or, for a file not created yet, into a
    /// directory) of another user.
    #[error(
        "{} points to {}, which belongs to user id {owner}, not to this user ({me}); keyless writes          credentials through a link only into this user's files
           hint: point the link at a file of yours, or pass the real file with --credentials-file",
        link.display(),
        target.display()
    )]
    ForeignLinkTarget {
        /// The (last) link followed.
        link: PathBuf,
        /// The file it names, or that file's directory when the file does not exist yet.
        target: PathBuf,
        /// The target's owner.
        owner: u32,
        /// The user id keyless runs as.
        me: u32,
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
    crate::private_file::lock_path_for(file)
}

/// Follows symbolic links to the file they finally name, which may not exist yet, as a dotfile
/// manager's link is meant to be followed: only links that belong to this user, to a file of
/// this user's (or, when the file does not exist yet, into a directory of this user's). Anything
/// else is refused naming the link and its owner: a link planted by another user (in a shared
/// or sticky directory, or a home another user can write) must not choose where credentials go.
fn resolve_symlinks(path: &Path) -> Result<PathBuf, AwsFilesError> {
    let mut current = path.to_path_buf();
    let mut last_link: Option<PathBuf> = None;
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                check_link_owner(&current, &meta)?;
                let target = fs::read_link(&current).map_err(|source| AwsFilesError::Io {
                    action: "follow the symbolic link",
                    path: current.clone(),
                    source,
                })?;
                let next = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
                last_link = Some(std::mem::replace(&mut current, next));
            }
            Ok(meta) => {
                if let Some(link) = &last_link {
                    check_link_target(link, &current, &meta)?;
                }
                return Ok(current);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(link) = &last_link {
                    // The file will be created in its directory: that directory must be ours
                    // (a missing one is created by us, 0700).
                    let dir = parent_dir(&current);
                    if let Ok(meta) = fs::metadata(dir) {
                        check_link_target(link, dir, &meta)?;
                    }
                }
                return Ok(current);
            }
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

/// A link is followed only if it belongs to the user keyless runs as.
fn check_link_owner(link: &Path, meta: &fs::Metadata) -> Result<(), AwsFilesError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = crate::private_file::effective_uid();
        if meta.uid() != me {
            return Err(AwsFilesError::ForeignSymlink {
                link: link.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (link, meta);
    Ok(())
}

/// What a followed link names must belong to the user keyless runs as.
fn check_link_target(link: &Path, target: &Path, meta: &fs::Metadata) -> Result<(), AwsFilesError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = crate::private_file::effective_uid();
        if meta.uid() != me {
            return Err(AwsFilesError::ForeignLinkTarget {
                link: link.to_path_buf(),
                target: target.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (link, target, meta);
    Ok(())
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
/// A symbolic link planted at the lock's name is refused rather than followed.
fn lock_exclusive(target: &Path) -> Result<File, AwsFilesError> {
    let path = lock_path(target);
    let io_err = |action, source| AwsFilesError::Io {
        action,
        path: path.clone(),
        source,
    };
    let file = crate::private_file::open_lock_file(&path)
        .map_err(|e| io_err("open the lock file (not following links)", e))?;
    file.lock().map_err(|e| io_err("lock", e))?;
    Ok(file)
}

/// Replaces `target` with `contents`: temp file in the same directory, 0600, fsync, rename,
/// fsync the directory, so readers see the old file or the new one and a crash leaves one of
/// them on disk.
fn replace_atomically(target: &Path, contents: &[u8]) -> Result<(), AwsFilesError> {
    crate::private_file::write_private_file_atomically(target, contents).map_err(|source| {
        AwsFilesError::Io {
            action: "replace",
            path: target.to_path_buf(),
            source,
        }
    })
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
///   and the link stays a link; a link planted at the lock file's name is refused;
/// - temp files left by a writer killed mid-write are removed under the lock;
/// - a file readable by others or owned by another user is rewritten 0600 and ours, with a
///   warning saying so.
pub fn write_credentials_profile(
    path: &Path,
    profile: &str,
    creds: &AwsCredentials,
) -> Result<(), AwsFilesError> {
    validate_profile_name(profile)?;
    let target = resolve_symlinks(path)?;
    ensure_private_dir(parent_dir(&target))?;
    let _lock = lock_exclusive(&target)?;
    // Under the lock no live writer has a temp file: any left belong to writers killed mid-write.
    match crate::private_file::remove_stale_temp_files(&target) {
        Ok(0) => {}
        Ok(n) => tracing::info!(path = %target.display(), removed = n,
            "removed temp files left by a writer that was killed mid-write"),
        Err(e) => {
            tracing::debug!(path = %target.display(), "could not sweep stale temp files: {e}")
        }
    }
    warn_before_rewrite(&target);

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

/// The rewrite makes the file ours and 0600; say so when it was not, since that changes who
/// can read it (a file written with sudo stops being root's).
fn warn_before_rewrite(target: &Path) {
    use crate::private_file::Exposure;
    for problem in crate::private_file::exposure(target) {
        match problem {
            Exposure::Readable { mode } => tracing::warn!(
                "{} was readable by others (mode {mode:04o}); the rewritten file is 0600",
                target.display()
            ),
            Exposure::ForeignOwner { .. } | Exposure::Writable { .. } => tracing::warn!(
                "{}; the rewritten file belongs to this user",
                problem.hint(target)
            ),
        }
    }
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
    crate::private_file::warn_if_exposed(path);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::mpsc;
    use std::time::Duration;
    use time::macros::datetime;

    const FIXTURE: &str = include_str!("../../tests/data/ini/credentials");
    const GOLDEN_UPDATE_MIDDLE: &str =
        include_str!("../../tests/data/ini/credentials.update-middle");
    const GOLDEN_UPDATE_CI: &str = include_str!("../../tests/data/ini/credentials.update-ci");
    const GOLDEN_ADD_NEW: &str = include_str!("../../tests/data/ini/credentials.add-new");
    const GOLDEN_REMOVE_TOKEN: &str = include_str!("../../tests/data/ini/credentials.remove-token");
    const GOLDEN_TOKEN_INTO_DEFAULT: &str =
        include_str!("../../tests/data/ini/credentials.token-into-default");
    const CONFIG_FIXTURE: &str = include_str!("../../tests/data/ini/config");

    fn session_creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "ASIANEWNEWNEWNEWNEW0".into(),
            secret_access_key: Secret::new("newSecretNewSecretNewSecretNewSecret0000"),
            session_token: Some(Secret::new("NewSessionTokenNewSessionToken")),
            expiration: Some(datetime!(2030-05-06 07:08:09 UTC)),
        }
    }

    fn static_creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIASTATICSTATICSTA0".into(),
            secret_access_key: Secret::new("staticSecretStaticSecretStaticSecret0000"),
            session_token: None,
            expiration: None,
        }
    }

    fn crlf(text: &str) -> String {
        text.replace('\n', "\r\n")
    }

    /// Writes `input` to a fresh file, writes `creds` into `profile`, returns the result.
    fn write_into(input: &str, profile: &str, creds: &AwsCredentials) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        fs::write(&path, input).unwrap();
        write_credentials_profile(&path, profile, creds).unwrap();
        fs::read_to_string(&path).unwrap()
    }

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

    // --- editing ------------------------------------------------------------------------------

    #[test]
    fn golden_update_existing_profile_in_the_middle() {
        assert_eq!(
            write_into(FIXTURE, "deploy", &session_creds()),
            GOLDEN_UPDATE_MIDDLE
        );
        assert_eq!(
            write_into(&crlf(FIXTURE), "deploy", &session_creds()),
            crlf(GOLDEN_UPDATE_MIDDLE)
        );
    }

    #[test]
    fn golden_update_keeps_spacing_and_key_case_and_appends_before_trailing_comment() {
        assert_eq!(
            write_into(FIXTURE, "ci", &session_creds()),
            GOLDEN_UPDATE_CI
        );
        assert_eq!(
            write_into(&crlf(FIXTURE), "ci", &session_creds()),
            crlf(GOLDEN_UPDATE_CI)
        );
    }

    #[test]
    fn golden_add_new_profile() {
        assert_eq!(
            write_into(FIXTURE, "keyless-new", &session_creds()),
            GOLDEN_ADD_NEW
        );
        assert_eq!(
            write_into(&crlf(FIXTURE), "keyless-new", &session_creds()),
            crlf(GOLDEN_ADD_NEW)
        );
    }

    #[test]
    fn golden_remove_session_token() {
        assert_eq!(
            write_into(FIXTURE, "deploy", &static_creds()),
            GOLDEN_REMOVE_TOKEN
        );
        assert_eq!(
            write_into(&crlf(FIXTURE), "deploy", &static_creds()),
            crlf(GOLDEN_REMOVE_TOKEN)
        );
    }

    #[test]
    fn golden_missing_keys_go_after_the_last_key_not_after_the_next_sections_comment() {
        assert_eq!(
            write_into(FIXTURE, "default", &session_creds()),
            GOLDEN_TOKEN_INTO_DEFAULT
        );
    }

    #[test]
    fn writing_twice_changes_nothing() {
        for creds in [session_creds(), static_creds()] {
            for profile in ["deploy", "ci", "fresh"] {
                let once = write_into(FIXTURE, profile, &creds);
                assert_eq!(write_into(&once, profile, &creds), once, "{profile}");
            }
        }
    }

    #[test]
    fn small_files_keep_their_shape() {
        let creds = session_creds();
        let expected_new = "[p]\naws_access_key_id = ASIANEWNEWNEWNEWNEW0\n\
            aws_secret_access_key = newSecretNewSecretNewSecretNewSecret0000\n\
            aws_session_token = NewSessionTokenNewSessionToken\n\
            x_security_token_expires = 2030-05-06T07:08:09Z\n";
        assert_eq!(write_into("", "p", &creds), expected_new);
        assert_eq!(
            write_into("\u{feff}", "p", &creds),
            format!("\u{feff}{expected_new}")
        );
        assert_eq!(
            write_into("[a]\nx = 1", "p", &creds),
            format!("[a]\nx = 1\n\n{expected_new}")
        );
        assert_eq!(
            write_into("[a]\nx = 1\n\n", "p", &creds),
            format!("[a]\nx = 1\n\n{expected_new}")
        );
        // No trailing newline, key missing in the last section: the file still ends without one.
        let out = write_into("[p]\nregion=x", "p", &static_creds());
        assert_eq!(
            out,
            "[p]\nregion=x\naws_access_key_id=AKIASTATICSTATICSTA0\n\
             aws_secret_access_key=staticSecretStaticSecretStaticSecret0000"
        );
        // A BOM and CRLF survive an in-place update.
        let out = write_into(
            "\u{feff}[p]\r\naws_access_key_id = old\r\n",
            "p",
            &static_creds(),
        );
        assert_eq!(
            out,
            "\u{feff}[p]\r\naws_access_key_id = AKIASTATICSTATICSTA0\r\n\
             aws_secret_access_key = staticSecretStaticSecretStaticSecret0000\r\n"
        );
    }

    #[test]
    fn empty_values_and_duplicates() {
        let mut doc = IniDocument::parse("[p]\nk =\nk = dup\n[p]\nK: third\n");
        doc.set_entries("p", &[("k", Some("v"))]).unwrap();
        assert_eq!(doc.render(), "[p]\nk = v\n[p]\n");
        let mut doc = IniDocument::parse("[p]\nk=\n");
        doc.set_entries("p", &[("k", Some("v"))]).unwrap();
        assert_eq!(doc.render(), "[p]\nk=v\n");
        // Only `None`s never create a section.
        let mut doc = IniDocument::parse("[a]\n");
        doc.set_entries("p", &[("k", None)]).unwrap();
        assert_eq!(doc.render(), "[a]\n");
    }

    #[test]
    fn indented_headers_stay_headers_after_an_insert() {
        // After `[p]` no entry is open, so `  [q]` is a header; a key inserted at column 0
        // would turn it into a continuation of that key.
        let mut doc = IniDocument::parse("[p]\n  [q]\nz = 1\n");
        doc.set_entries("p", &[("k", Some("v"))]).unwrap();
        assert_eq!(doc.section_names(), ["p", "q"]);
        assert_eq!(doc.section_entries("q").unwrap(), entries(&[("z", "1")]));
        assert_eq!(doc.section_entries("p").unwrap(), entries(&[("k", "v")]));
    }

    #[test]
    fn legacy_security_token_is_kept_in_sync() {
        let out = write_into("[p]\naws_security_token = stale\n", "p", &session_creds());
        let doc = IniDocument::parse(&out);
        let e = doc.section_entries("p").unwrap();
        assert!(e.contains(&(
            "aws_security_token".into(),
            "NewSessionTokenNewSessionToken".into()
        )));
        let out = write_into(&out, "p", &static_creds());
        assert!(!out.contains("aws_security_token"), "{out}");
        assert!(!out.contains("aws_session_token"), "{out}");
    }

    #[test]
    fn bad_names_and_values_are_refused_without_showing_values() {
        for name in ["", " p", "p ", "a]b", "[p", "a\nb", "a\rb"] {
            let err = validate_profile_name(name).unwrap_err();
            assert!(
                matches!(err, AwsFilesError::InvalidProfileName { .. }),
                "{name:?}"
            );
        }
        validate_profile_name("keyless deploy.prod_1").unwrap();
        let mut doc = IniDocument::parse("");
        let err = doc
            .set_entries("p", &[("k", Some("s3cr3t\n[evil]"))])
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(!format!("{err:?}").contains("s3cr3t"), "{err:?}");
        for key in ["", "a b", "a=b", "a:b", "[a", "#a"] {
            assert!(
                doc.set_entries("p", &[(key, Some("v"))]).is_err(),
                "{key:?}"
            );
        }
        assert_eq!(doc.render(), "");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let err = write_credentials_profile(&path, "a]b", &session_creds()).unwrap_err();
        assert!(err.to_string().contains("hint"), "{err}");
        assert!(!path.exists());
    }

    // --- files --------------------------------------------------------------------------------

    #[test]
    fn default_paths_follow_the_sdk_environment_variables() {
        let home = Some(PathBuf::from("/home/u"));
        let p = |env: Option<&str>, home: Option<PathBuf>| {
            shared_file_path(env.map(OsString::from), home, "credentials", "X")
        };
        assert_eq!(
            p(None, home.clone()).unwrap(),
            Path::new("/home/u/.aws/credentials")
        );
        assert_eq!(
            p(Some(""), home.clone()).unwrap(),
            Path::new("/home/u/.aws/credentials")
        );
        assert_eq!(p(Some("/etc/c"), None).unwrap(), Path::new("/etc/c"));
        assert_eq!(
            p(Some("~/x/c"), home.clone()).unwrap(),
            Path::new("/home/u/x/c")
        );
        let err = p(None, None).unwrap_err();
        assert!(err.to_string().contains("X"), "{err}");
        assert_eq!(
            shared_file_path(None, home, "config", "AWS_CONFIG_FILE").unwrap(),
            Path::new("/home/u/.aws/config")
        );
        assert_eq!(
            lock_path(Path::new("/home/u/.aws/credentials")),
            Path::new("/home/u/.aws/credentials.lock")
        );
    }

    #[test]
    fn read_profile_returns_keys_or_none_or_explains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        assert!(read_credentials_profile(&path, "deploy").unwrap().is_none());
        fs::write(&path, GOLDEN_UPDATE_MIDDLE).unwrap();
        let creds = read_credentials_profile(&path, "deploy").unwrap().unwrap();
        assert_eq!(creds, session_creds());
        let default = read_credentials_profile(&path, "default").unwrap().unwrap();
        assert_eq!(default.access_key_id, "AKIADEFAULTDEFAULT00");
        assert!(default.session_token.is_none() && default.expiration.is_none());
        assert!(read_credentials_profile(&path, "nope").unwrap().is_none());
        let err = read_credentials_profile(&path, "profile legacy").unwrap_err();
        assert!(
            matches!(
                err,
                AwsFilesError::IncompleteProfile {
                    missing: ACCESS_KEY_ID,
                    ..
                }
            ),
            "{err}"
        );
        fs::write(
            &path,
            "[p]\naws_access_key_id=a\naws_secret_access_key=b\naws_security_token=t\n",
        )
        .unwrap();
        let creds = read_credentials_profile(&path, "p").unwrap().unwrap();
        assert_eq!(creds.session_token.unwrap().expose(), "t");
        fs::write(&path, b"[p]\n\xff\n").unwrap();
        assert!(matches!(
            read_credentials_profile(&path, "p"),
            Err(AwsFilesError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        write_credentials_profile(&path, "p", &session_creds()).unwrap();
        assert_eq!(
            read_credentials_profile(&path, "p").unwrap().unwrap(),
            session_creds()
        );
        write_credentials_profile(&path, "p", &static_creds()).unwrap();
        assert_eq!(
            read_credentials_profile(&path, "p").unwrap().unwrap(),
            static_creds()
        );
    }

    #[cfg(unix)]
    #[test]
    fn file_is_0600_and_a_missing_aws_dir_is_created_0700() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".aws").join("credentials");
        write_credentials_profile(&path, "p", &session_creds()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // An existing, too-open file is tightened by the rewrite.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_credentials_profile(&path, "p", &session_creds()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&lock_path(&path)), 0o600);
        // Nothing but the file and its lock is left behind (no stray temp files).
        let mut names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["credentials", "credentials.lock"]);
    }

    #[test]
    fn writers_wait_for_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let held = lock_exclusive(&path).unwrap();
        assert!(lock_path(&path).exists());
        let (tx, rx) = mpsc::channel();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                write_credentials_profile(&path, "p", &session_creds()).unwrap();
                tx.send(()).unwrap();
            })
        };
        // While we hold the lock the writer cannot finish (a bug could only make this pass
        // spuriously on a very slow machine, never fail spuriously).
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(300)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        assert!(!path.exists());
        drop(held);
        rx.recv().unwrap();
        writer.join().unwrap();
        assert!(read_credentials_profile(&path, "p").unwrap().is_some());
    }

    #[test]
    fn concurrent_writers_of_different_profiles_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        fs::write(&path, FIXTURE).unwrap();
        let n = 8;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut creds = session_creds();
                    creds.access_key_id = format!("ASIATHREAD{i:010}");
                    barrier.wait();
                    for _ in 0..3 {
                        write_credentials_profile(&path, &format!("t{i}"), &creds).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for i in 0..n {
            let creds = read_credentials_profile(&path, &format!("t{i}"))
                .unwrap()
                .unwrap();
            assert_eq!(creds.access_key_id, format!("ASIATHREAD{i:010}"));
        }
        assert!(fs::read_to_string(&path).unwrap().starts_with(FIXTURE));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_file_is_edited_through_the_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dotfiles = dir.path().join("dotfiles");
        let aws = dir.path().join("home").join(".aws");
        fs::create_dir_all(&dotfiles).unwrap();
        fs::create_dir_all(&aws).unwrap();
        let real = dotfiles.join("aws-credentials");
        fs::write(&real, FIXTURE).unwrap();
        let link = aws.join("credentials");
        std::os::unix::fs::symlink("../../dotfiles/aws-credentials", &link).unwrap();

        write_credentials_profile(&link, "deploy", &session_creds()).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), GOLDEN_UPDATE_MIDDLE);
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(lock_path(&real).exists());

        // A dangling link (the dotfile not created yet) gets its target created.
        let dangling = aws.join("other");
        std::os::unix::fs::symlink(dotfiles.join("not-yet"), &dangling).unwrap();
        write_credentials_profile(&dangling, "p", &static_creds()).unwrap();
        assert!(fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(dotfiles.join("not-yet").is_file());

        // A loop is reported, not followed forever.
        let a = aws.join("loop-a");
        std::os::unix::fs::symlink(aws.join("loop-b"), &a).unwrap();
        std::os::unix::fs::symlink(&a, aws.join("loop-b")).unwrap();
        assert!(matches!(
            write_credentials_profile(&a, "p", &static_creds()),
            Err(AwsFilesError::SymlinkLoop { .. })
        ));
    }

    /// Links are followed only when they and what they name are this user's: a link another
    /// user owns, or one pointing at another user's file or directory, is refused by name.
    #[cfg(unix)]
    #[test]
    fn only_this_users_links_to_this_users_files_are_followed() {
        // Only root can give links and files away.
        if crate::private_file::effective_uid() != 0 {
            return;
        }
        const OTHER: u32 = 65534;
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        fs::create_dir_all(&aws).unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir_all(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(OTHER), None).unwrap();
        let mine = dir.path().join("mine");
        fs::write(&mine, FIXTURE).unwrap();

        // A link planted by another user, even to a file of ours.
        let planted = aws.join("credentials");
        std::os::unix::fs::symlink(&mine, &planted).unwrap();
        std::os::unix::fs::lchown(&planted, Some(OTHER), None).unwrap();
        let err = write_credentials_profile(&planted, "p", &static_creds()).unwrap_err();
        assert!(
            matches!(err, AwsFilesError::ForeignSymlink { owner: OTHER, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&planted.display().to_string()), "{text}");
        assert!(text.contains("user id 65534"), "{text}");
        assert_eq!(fs::read_to_string(&mine).unwrap(), FIXTURE);

        // Our link to another user's file.
        let their_file = theirs.join("credentials");
        fs::write(&their_file, FIXTURE).unwrap();
        std::os::unix::fs::chown(&their_file, Some(OTHER), None).unwrap();
        let to_theirs = aws.join("to-theirs");
        std::os::unix::fs::symlink(&their_file, &to_theirs).unwrap();
        let err = write_credentials_profile(&to_theirs, "p", &static_creds()).unwrap_err();
        assert!(
            matches!(err, AwsFilesError::ForeignLinkTarget { owner: OTHER, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&to_theirs.display().to_string()));
        assert_eq!(fs::read_to_string(&their_file).unwrap(), FIXTURE);

        // Our dangling link into another user's directory.
        let dangling = aws.join("dangling");
        std::os::unix::fs::symlink(theirs.join("not-yet"), &dangling).unwrap();
        assert!(matches!(
            write_credentials_profile(&dangling, "p", &static_creds()),
            Err(AwsFilesError::ForeignLinkTarget { .. })
        ));
        assert!(!theirs.join("not-yet").exists());

        // Ours to ours is followed.
        let ok = aws.join("ok");
        std::os::unix::fs::symlink(&mine, &ok).unwrap();
        write_credentials_profile(&ok, "deploy", &session_creds()).unwrap();
        assert_eq!(fs::read_to_string(&mine).unwrap(), GOLDEN_UPDATE_MIDDLE);
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

// Hostile input (the fuzz harness's and property tests' view of the editor) lives beside it.
pub(crate) mod hostile;
