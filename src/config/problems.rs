//! What is wrong with a keyless.toml: each problem with its file position, key, message and fix.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeValue;
use toml::Spanned;

use super::checker::Checker;

/// Why a configuration was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("could not read the configuration {}: {cause}\n  hint: pass the file with --config PATH", path.display())]
    Read { path: PathBuf, cause: String },
    /// The file can run commands or redirect tokens, yet someone else could change it.
    #[error("{} {power}, but {problem}\n  hint: make it yours (or root's) and writable only by its owner: {fix}", path.display())]
    Unprotected {
        path: PathBuf,
        /// What the file can make keyless do, naming the key.
        power: String,
        problem: String,
        fix: String,
    },
    /// The file was read but is wrong; every problem found is listed.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found (empty for an unreadable file).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Read { .. } | Self::Unprotected { .. } => &[],
            Self::Invalid { problems, .. } => problems,
        }
    }
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{} has {} problem{}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!(
            "\n{}:{}:{}: {}",
            path.display(),
            p.line,
            p.column,
            p.message
        ));
        if let Some(hint) = &p.hint {
            out.push_str(&format!("\n  hint: {hint}"));
        }
    }
    out
}

/// What kind of mistake a [`Problem`] is (for tests and tools; the message is for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not TOML.
    Syntax,
    UnknownKey,
    WrongType,
    InvalidValue,
    MissingKey,
    /// Two spellings of one key (`source` and `token_source`) in one table.
    ConflictingKeys,
    /// Neither `target`, `role_arn` nor a workload identity provider audience.
    NoDirection,
    /// Keys of both directions in one profile.
    MixedDirections,
    /// A channel that delivers the other direction's credentials.
    WrongDirectionChannel,
    NoChannel,
    NoProfiles,
    /// Two listeners on one address.
    DuplicateListen,
    /// Two channels writing one file (or one credentials profile).
    DuplicateFile,
}

/// One mistake in the file: where, which key, what is wrong, and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// Dotted: `profile.deploy.role_arn`.
    pub key: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Checker<'_> {
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    pub(super) fn problem(
        &mut self,
        kind: ProblemKind,
        span: Range<usize>,
        key: &str,
        message: String,
        hint: Option<String>,
    ) {
        let (line, column) = self.position(span.start);
        self.problems.push(Problem {
            kind,
            key: key.to_string(),
            line,
            column,
            message,
            hint,
        });
    }

    pub(super) fn invalid(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        key: &str,
        message: String,
        hint: &str,
    ) {
        self.problem(
            ProblemKind::InvalidValue,
            value.span(),
            key,
            message,
            Some(hint.to_string()),
        );
    }

    pub(super) fn wrong_type(&mut self, value: &Spanned<DeValue<'_>>, key: &str, expected: &str) {
        let last = key.rsplit('.').next().unwrap_or(key);
        self.problem(
            ProblemKind::WrongType,
            value.span(),
            key,
            format!(
                "`{last}` must be {expected}, not a{} {}",
                if value.get_ref().type_str().starts_with(['a', 'i']) {
                    "n"
                } else {
                    ""
                },
                value.get_ref().type_str()
            ),
            Some(format!("write {last} = {}", example_of(expected))),
        );
    }
}

pub(super) fn example_of(expected: &str) -> &'static str {
    match expected {
        "a string" => "\"...\"",
        "a boolean" => "true",
        "an integer" => "3600",
        "a duration" => "\"1h\" (or 3600, in seconds)",
        "an array of strings" => "[\"...\", \"...\"]",
        _ => "{ ... } (or a [section])",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn a_wrong_type_names_the_expected_one() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\nduration = true\n",
        );
        assert_at(&p, ProblemKind::WrongType, "profile.deploy.duration", 4, 12);
        assert!(
            message.contains("`duration` must be a duration, not a boolean"),
            "{message}"
        );
        let (p, _) = problem("metrics_listen = 9090\n[profile.d]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_file = \"t\"\n");
        assert_at(&p, ProblemKind::WrongType, "metrics_listen", 1, 18);
    }

    #[test]
    fn not_toml_is_reported_at_its_position() {
        let (p, message) = problem("[profile.d]\nrole_arn = \n");
        assert_eq!((p.kind, p.line), (ProblemKind::Syntax, 2), "{p:?}");
        assert!(message.contains("not valid TOML"), "{message}");
    }
}
