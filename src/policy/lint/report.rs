//! The three ways `keyless lint` reports: text for a person, JSON for scripts, SARIF 2.1.0 for
//! GitHub code scanning (and every other SARIF viewer).
//!
//! All three carry the same facts (rule, severity, file, line, JSON path, what, why, fix), so a
//! finding seen in a pull-request annotation reads the same as on a terminal.

use serde_json::{json, Value};

use super::{rule, Finding, Severity, RULES};

/// What was linted, per file, in command-line order (files without findings included, so the
/// text report can say they were checked).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `(file, findings)` in the order the files were given.
    pub files: Vec<(String, Vec<Finding>)>,
    /// Files that could not be linted, with the reason (SARIF reports them as notifications, so
    /// an upload never looks clean because an input was unreadable).
    pub errors: Vec<(String, String)>,
}

impl Report {
    /// Every finding, file by file.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.files.iter().flat_map(|(_, f)| f.iter())
    }

    /// The most severe finding's severity, if any (what `--fail-on` compares).
    pub fn worst(&self) -> Option<Severity> {
        self.findings().map(|f| f.severity).max()
    }

    /// `N findings (x critical, y high, z medium, w low)`.
    pub fn summary(&self) -> String {
        let total = self.findings().count();
        let counts: Vec<String> = Severity::DESCENDING
            .iter()
            .map(|s| {
                format!(
                    "{} {s}",
                    self.findings().filter(|f| f.severity == *s).count()
                )
            })
            .collect();
        let noun = if total == 1 { "finding" } else { "findings" };
        let files = self.files.len();
        let file_noun = if files == 1 { "file" } else { "files" };
        format!(
            "{total} {noun} ({}) in {files} {file_noun}",
            counts.join(", ")
        )
    }

    /// Human-first: one block per finding, grouped by file, then the summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (file, findings) in &self.files {
            if findings.is_empty() {
                out.push_str(&format!("{file}: no findings\n\n"));
                continue;
            }
            out.push_str(&format!("{file}\n"));
            for f in findings {
                out.push_str(&format!(
                    "  {} {} {}:{}  {}\n",
                    f.severity.as_str().to_uppercase(),
                    f.rule,
                    file,
                    f.line,
                    if f.path.is_empty() {
                        "(document)"
                    } else {
                        &f.path
                    }
                ));
                out.push_str(&format!("    {}\n", f.message));
                out.push_str(&format!("    why: {}\n", f.why));
                out.push_str(&format!("    fix: {}\n\n", f.fix));
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// A JSON array of findings.
    pub fn to_json(&self) -> Value {
        Value::Array(self.findings().map(finding_json).collect())
    }

    /// SARIF 2.1.0: every rule in `tool.driver.rules` (so viewers can show rules with no
    /// result), one result per finding with the file, line and JSON path.
    pub fn to_sarif(&self) -> Value {
        let rules: Vec<Value> = RULES
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "name": r.name,
                    "shortDescription": {"text": r.summary},
                    "fullDescription": {"text": r.summary},
                    "help": {"text": r.help},
                    "defaultConfiguration": {"level": sarif_level(r.severity)},
                    "properties": {
                        "tags": ["security"],
                        "precision": "high",
                        "security-severity": security_severity(r.severity),
                    },
                })
            })
            .collect();
        let results: Vec<Value> = self
            .findings()
            .map(|f| {
                let rule_index = RULES.iter().position(|r| r.id == f.rule).unwrap_or(0);
                json!({
                    "ruleId": f.rule,
                    "ruleIndex": rule_index,
                    "level": sarif_level(f.severity),
                    "message": {"text": format!("{}\nwhy: {}\nfix: {}", f.message, f.why, f.fix)},
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": {"uri": file_uri(&f.file)},
                            "region": {"startLine": f.line},
                        },
                        "logicalLocations": [{
                            "fullyQualifiedName": f.path,
                            "kind": "member",
                        }],
                    }],
                    "partialFingerprints": {
                        "keylessFinding/v1": format!("{}:{}:{}", f.rule, f.file, f.path),
                    },
                    "properties": {"severity": f.severity.as_str()},
                })
            })
            .collect();
        let notifications: Vec<Value> = self
            .errors
            .iter()
            .map(|(file, message)| {
                json!({
                    "level": "error",
                    "message": {"text": message},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": file_uri(file)}}}],
                })
            })
            .collect();
        json!({
            "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "keyless",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }},
                "invocations": [{
                    "executionSuccessful": self.errors.is_empty(),
                    "toolExecutionNotifications": notifications,
                }],
                "results": results,
            }],
        })
    }
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "rule": f.rule,
        "name": rule(f.rule).name,
        "severity": f.severity.as_str(),
        "file": f.file,
        "line": f.line,
        "path": f.path,
        "message": f.message,
        "why": f.why,
        "fix": f.fix,
    })
}

/// SARIF has three levels; critical and high are both errors (security-severity tells them apart).
fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// GitHub maps security-severity to its own critical (≥ 9.0), high (≥ 7.0), medium (≥ 4.0), low.
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}

/// A relative URI reference for the file as given (GitHub resolves it against the checkout).
fn file_uri(file: &str) -> String {
    let path = file.replace('\\', "/");
    let path = path.strip_prefix("./").unwrap_or(&path);
    percent_encoding::utf8_percent_encode(path, URI_PATH).to_string()
}

const URI_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &'static str, severity: Severity) -> Finding {
        Finding {
            rule,
            severity,
            file: "./dir/my policy.json".into(),
            path: "Statement[0]".into(),
            line: 3,
            message: "m".into(),
            why: "w".into(),
            fix: "f".into(),
        }
    }

    fn report() -> Report {
        Report {
            files: vec![
                (
                    "a.json".into(),
                    vec![
                        finding("KL001", Severity::Critical),
                        finding("KL003", Severity::Low),
                    ],
                ),
                ("b.json".into(), vec![]),
            ],
            errors: vec![],
        }
    }

    #[test]
    fn summary_counts_by_severity() {
        let r = report();
        assert_eq!(
            r.summary(),
            "2 findings (1 critical, 0 high, 0 medium, 1 low) in 2 files"
        );
        assert_eq!(r.worst(), Some(Severity::Critical));
        assert_eq!(Report::default().worst(), None);
        let text = r.to_text();
        assert!(text.contains("b.json: no findings"), "{text}");
        assert!(
            text.contains("CRITICAL KL001 a.json:3  Statement[0]"),
            "{text}"
        );
    }

    #[test]
    fn sarif_has_rules_results_and_locations() {
        let s = report().to_sarif();
        assert_eq!(s["version"], "2.1.0");
        let run = &s["runs"][0];
        assert_eq!(
            run["tool"]["driver"]["rules"].as_array().unwrap().len(),
            RULES.len()
        );
        let result = &run["results"][0];
        assert_eq!(result["ruleId"], "KL001");
        assert_eq!(result["level"], "error");
        assert_eq!(run["results"][1]["level"], "note");
        let rule_index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(run["tool"]["driver"]["rules"][rule_index]["id"], "KL001");
        let loc = &result["locations"][0];
        assert_eq!(
            loc["physicalLocation"]["artifactLocation"]["uri"],
            "dir/my%20policy.json"
        );
        assert_eq!(loc["physicalLocation"]["region"]["startLine"], 3);
        assert_eq!(
            loc["logicalLocations"][0]["fullyQualifiedName"],
            "Statement[0]"
        );
        assert_eq!(run["invocations"][0]["executionSuccessful"], true);
    }

    #[test]
    fn sarif_reports_unreadable_files() {
        let mut r = report();
        r.errors
            .push(("gone.json".into(), "gone.json: could not read it".into()));
        let s = r.to_sarif();
        let invocation = &s["runs"][0]["invocations"][0];
        assert_eq!(invocation["executionSuccessful"], false);
        let note = &invocation["toolExecutionNotifications"][0];
        assert_eq!(note["level"], "error");
        assert_eq!(
            note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "gone.json"
        );
    }
}
