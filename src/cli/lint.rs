//! `keyless lint FILE...`: report trust configurations that let the wrong identity in.
//!
//! Exit codes are the contract CI relies on: 0 nothing at or above `--fail-on`, 1 something
//! is, 2 an input could not be read or understood (so a typo in a path never passes as clean).

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::policy::lint::{self, report::Report, LintError, Severity};

/// Nothing at or above `--fail-on`.
pub const CLEAN: i32 = 0;
/// At least one finding at or above `--fail-on`.
pub const FINDINGS: i32 = 1;
/// An input could not be read or understood (also the code clap uses for a bad command line).
pub const UNREADABLE: i32 = 2;

// `keyless lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files to lint (`-` reads stdin): AWS trust policies, `aws iam get-role` output, `gcloud
    /// iam workload-identity-pools providers describe --format=json` output, or `gcloud ...
    /// get-iam-policy --format=json` output; the kind is recognised from the content.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Exit with 1 when a finding is at least this severe (critical counts as high).
    #[arg(long, value_enum, default_value_t = FailOn::High, env = "KEYLESS_FAIL_ON")]
    pub fail_on: FailOn,
    /// Output format: text for people, json for scripts, sarif for GitHub code scanning.
    #[arg(long, value_enum, default_value_t = LintFormat::Text, env = "KEYLESS_LINT_FORMAT")]
    pub format: LintFormat,
}

/// The lowest severity that fails the run.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FailOn {
    Low,
    Medium,
    High,
}

impl FailOn {
    fn threshold(self) -> Severity {
        match self {
            Self::Low => Severity::Low,
            Self::Medium => Severity::Medium,
            Self::High => Severity::High,
        }
    }
}

/// How findings are printed on stdout.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LintFormat {
    Text,
    Json,
    Sarif,
}

/// Lints every file, prints the report, returns the exit code.
pub async fn run(args: LintArgs) -> anyhow::Result<i32> {
    let mut report = Report::default();
    for path in &args.files {
        let stdin = path.as_os_str() == "-";
        let name = if stdin {
            "<stdin>".to_string()
        } else {
            path.display().to_string()
        };
        let result = if stdin {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => lint::lint_text("<stdin>", &text),
                Err(source) => Err(LintError::Read {
                    file: "<stdin>".into(),
                    source,
                }),
            }
        } else {
            lint::lint_file(path)
        };
        match result {
            Ok(findings) => report.files.push((name, findings)),
            Err(error) => {
                eprintln!("keyless lint: {error}");
                report.errors.push((name, error.to_string()));
            }
        }
    }
    match args.format {
        LintFormat::Text => print!("{}", report.to_text()),
        LintFormat::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
        LintFormat::Sarif => println!("{}", serde_json::to_string_pretty(&report.to_sarif())?),
    }
    Ok(if !report.errors.is_empty() {
        UNREADABLE
    } else if report
        .worst()
        .is_some_and(|worst| worst >= args.fail_on.threshold())
    {
        FINDINGS
    } else {
        CLEAN
    })
}
