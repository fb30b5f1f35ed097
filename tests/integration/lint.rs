//! `keyless lint`, the real binary, against a corpus of safe and unsafe configurations.
//!
//! `tests/data/lint/expected.json` says which rules each corpus file must trigger (and the safe
//! ones none); every file in the corpus must be listed there, so a new example cannot slip in
//! unchecked. The README's recommended policy is linted straight from the README, so the
//! documentation and the linter cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lint")
}

fn keyless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(args)
        .env_remove("KEYLESS_FAIL_ON")
        .env_remove("KEYLESS_LINT_FORMAT")
        .output()
        .expect("run keyless")
}

fn keyless_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(args)
        .env_remove("KEYLESS_FAIL_ON")
        .env_remove("KEYLESS_LINT_FORMAT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keyless");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn file(name: &str) -> String {
    corpus().join(name).display().to_string()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn expected() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(corpus().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every corpus file yields exactly its expected rule ids, and the exit code follows them.
#[test]
fn corpus_files_trigger_exactly_the_expected_rules() {
    let expected = expected();
    let on_disk: BTreeSet<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "expected.json")
        .collect();
    assert_eq!(
        on_disk,
        expected.keys().cloned().collect::<BTreeSet<_>>(),
        "every corpus file needs an entry in expected.json (and every entry a file)"
    );
    let mut mismatches = Vec::new();
    for (name, rules) in &expected {
        let out = keyless(&["lint", "--fail-on", "low", "--format", "json", &file(name)]);
        let findings = stdout_json(&out);
        let got: BTreeSet<String> = findings
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap().to_string())
            .collect();
        let code = out.status.code();
        let want_code = if rules.is_empty() { Some(0) } else { Some(1) };
        if &got != rules || code != want_code {
            mismatches.push(format!(
                "{name}: expected {rules:?} (exit {want_code:?}), got {got:?} (exit {code:?})"
            ));
        }
        for f in findings.as_array().unwrap() {
            for field in ["severity", "file", "path", "message", "why", "fix"] {
                assert!(
                    f[field]
                        .as_str()
                        .is_some_and(|s| !s.is_empty() || field == "path"),
                    "{name}: finding without {field}: {f}"
                );
            }
            assert!(f["line"].as_u64().unwrap() >= 1, "{f}");
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The policy the README recommends, copied from the README itself, has no finding.
#[test]
fn the_readme_policy_passes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("```json\n")
        .expect("a json block in the README")
        + 8;
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    assert!(block.contains("accounts.google.com:sub"), "{block}");
    let out = keyless_stdin(&["lint", "-"], block);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("<stdin>: no findings"), "{stdout}");
    assert!(
        stdout.contains("0 findings (0 critical, 0 high, 0 medium, 0 low)"),
        "{stdout}"
    );
}

/// The classic copy-pasted policy: the finding says who gets in, where, and proves it.
#[test]
fn the_classic_policy_is_critical_with_a_proof() {
    let out = keyless(&["lint", &file("google-no-condition.json")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("any Google identity in the world can assume this role"),
        "{text}"
    );
    assert!(text.contains("CRITICAL KL001"), "{text}");
    assert!(
        text.contains("google-no-condition.json:4  Statement[0]"),
        "line of the statement: {text}"
    );
    assert!(
        text.contains("allowed by statement \"CopiedFromABlogPost\""),
        "{text}"
    );
    assert!(
        text.contains("1 finding (1 critical, 0 high, 0 medium, 0 low) in 1 file"),
        "{text}"
    );
}

/// The aud/azp confusion points at the condition key and tells where each value belongs.
#[test]
fn aud_confusion_points_at_the_key_with_the_fix() {
    let out = keyless(&[
        "lint",
        "--format",
        "json",
        &file("google-aud-is-audience.json"),
    ]);
    let findings = stdout_json(&out);
    let f = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "KL004")
        .unwrap();
    assert_eq!(
        f["path"],
        r#"Statement[0].Condition.StringEquals."accounts.google.com:aud""#
    );
    assert_eq!(f["line"], 10);
    assert_eq!(f["severity"], "high");
    let fix = f["fix"].as_str().unwrap();
    assert!(
        fix.contains(r#""accounts.google.com:oaud": "sts.amazonaws.com""#)
            && fix.contains(r#""accounts.google.com:aud": "100000000000000000001""#),
        "{fix}"
    );
}

/// `--fail-on` compares with the worst finding; critical counts as high.
#[test]
fn fail_on_thresholds() {
    let low_only = file("google-aud-is-audience.json"); // high + low
    let medium = file("provider-aws-account-condition.json");
    let critical = file("any-principal.json");
    let low = file("provider-oidc-unsupported-cel.json");
    let code = |args: &[&str]| keyless(args).status.code();
    assert_eq!(code(&["lint", "--fail-on", "high", &critical]), Some(1));
    assert_eq!(code(&["lint", "--fail-on", "high", &medium]), Some(0));
    assert_eq!(code(&["lint", "--fail-on", "medium", &medium]), Some(1));
    assert_eq!(code(&["lint", "--fail-on", "medium", &low]), Some(0));
    assert_eq!(
        code(&["lint", &low]),
        Some(0),
        "the default (high) lets a low finding pass"
    );
    assert_eq!(code(&["lint", &critical]), Some(1), "and fails on critical");
    assert_eq!(code(&["lint", "--fail-on", "high", &low_only]), Some(1));
    assert_eq!(
        code(&["lint", "--fail-on", "low", &file("safe-readme.json")]),
        Some(0)
    );
}

/// Unreadable or unknown input exits 2 and names the file and why; the other files are still
/// reported.
#[test]
fn unreadable_input_exits_2_and_says_why() {
    let missing = file("does-not-exist.json");
    let out = keyless(&["lint", &missing, &file("safe-readme.json")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does-not-exist.json") && stderr.contains("could not read"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("safe-readme.json: no findings"));

    for (name, why) in [
        ("invalid/not-json.json", "not JSON"),
        ("invalid/unrecognised.json", "not a trust policy"),
    ] {
        let out = keyless(&["lint", &file(name)]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name) && stderr.contains(why), "{stderr}");
    }
    // SARIF says so too, so an uploaded report never looks clean because an input was broken.
    let out = keyless(&["lint", "--format", "sarif", &missing]);
    assert_eq!(out.status.code(), Some(2));
    let invocation = &stdout_json(&out)["runs"][0]["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    assert!(
        invocation["toolExecutionNotifications"][0]["message"]["text"]
            .as_str()
            .unwrap()
            .contains("does-not-exist.json")
    );
    // Even a critical finding elsewhere does not hide the broken input.
    let out = keyless(&[
        "lint",
        &file("any-principal.json"),
        &file("invalid/not-json.json"),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// SARIF for the whole corpus has what GitHub code scanning reads.
#[test]
fn sarif_is_structurally_valid_for_code_scanning() {
    let names: Vec<String> = expected().keys().map(|n| file(n)).collect();
    let mut args = vec!["lint", "--format", "sarif"];
    args.extend(names.iter().map(String::as_str));
    let out = keyless(&args);
    assert_eq!(out.status.code(), Some(1));
    let sarif = stdout_json(&out);
    assert_eq!(sarif["version"], "2.1.0");
    assert!(sarif["$schema"]
        .as_str()
        .unwrap()
        .contains("sarif-schema-2.1.0"));
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "keyless");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let rule_ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for rule in rules {
        assert!(rule["shortDescription"]["text"].is_string(), "{rule}");
        assert!(
            ["error", "warning", "note"]
                .contains(&rule["defaultConfiguration"]["level"].as_str().unwrap()),
            "{rule}"
        );
        let sev: f64 = rule["properties"]["security-severity"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..=10.0).contains(&sev));
    }
    let results = run["results"].as_array().unwrap();
    let expected_count: usize = expected().values().map(|r| r.len()).sum();
    assert!(results.len() >= expected_count, "{} results", results.len());
    for r in results {
        let id = r["ruleId"].as_str().unwrap();
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rule_ids[index], id, "ruleIndex points at the rule");
        assert!(
            ["error", "warning", "note"].contains(&r["level"].as_str().unwrap()),
            "{r}"
        );
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        let loc = &r["locations"][0];
        let uri = loc["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert!(
            uri.contains("tests/data/lint/") && uri.ends_with(".json") && !uri.contains(' '),
            "{uri}"
        );
        assert!(
            loc["physicalLocation"]["region"]["startLine"]
                .as_u64()
                .unwrap()
                >= 1
        );
        assert!(loc["logicalLocations"][0]["fullyQualifiedName"].is_string());
    }
    let critical = results
        .iter()
        .find(|r| r["ruleId"] == "KL001")
        .expect("KL001 in the corpus");
    assert_eq!(critical["level"], "error");
}
