//! The command line as people meet it: `--help` of every command (snapshots, each with an
//! example), shell completions, man pages, and flag values taken from keyless.toml with the
//! documented precedence (command line > KEYLESS_* > profile > [defaults] > built-in).
//!
//! Help snapshots live in tests/data/help/; after an intended change regenerate them with
//! `KEYLESS_UPDATE_SNAPSHOTS=1 cargo test --test integration cli::` and review the diff.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use support::{expect_success, LabWorld};

/// Every command path: `[]`, `["aws"]`, `["aws", "credentials"]`, ...
fn command_paths(command: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for sub in command.get_subcommands() {
        let mut path = prefix.clone();
        path.push(sub.get_name().to_string());
        command_paths(sub, path, out);
    }
}

fn all_paths() -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    command_paths(&keyless::cli::Cli::command(), Vec::new(), &mut paths);
    paths
}

/// The binary with nothing from the developer's environment (no KEYLESS_*, no config file).
fn bare_keyless(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyless"));
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("COLUMNS", "100")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/help")
}

#[test]
fn every_command_has_help_with_an_example_matching_its_snapshot() {
    let home = tempfile::tempdir().unwrap();
    let update = std::env::var_os("KEYLESS_UPDATE_SNAPSHOTS").is_some();
    let mut mismatched = Vec::new();
    let paths = all_paths();
    for path in &paths {
        let out = expect_success(bare_keyless(home.path()).args(path).arg("--help"));
        let name = if path.is_empty() {
            "keyless".to_string()
        } else {
            format!("keyless-{}", path.join("-"))
        };
        let file = snapshot_dir().join(format!("{name}.txt"));
        if update {
            std::fs::create_dir_all(snapshot_dir()).unwrap();
            std::fs::write(&file, &out.stdout).unwrap();
        } else {
            let expected = std::fs::read_to_string(&file).unwrap_or_else(|_| {
                panic!(
                    "no snapshot {}; run with KEYLESS_UPDATE_SNAPSHOTS=1",
                    file.display()
                )
            });
            if expected != out.stdout {
                mismatched.push(name.clone());
            }
        }
        let has_subcommands = out.stdout.contains("\nCommands:\n");
        if !has_subcommands {
            assert!(
                out.stdout.contains("Example"),
                "`keyless {}` --help has no example:\n{}",
                path.join(" "),
                out.stdout
            );
        }
    }
    assert!(
        mismatched.is_empty(),
        "--help changed for {mismatched:?}; if intended, run KEYLESS_UPDATE_SNAPSHOTS=1 cargo test --test integration cli:: and review the diff"
    );
    // No stale snapshots of commands that no longer exist.
    let snapshots = std::fs::read_dir(snapshot_dir()).unwrap().count();
    assert_eq!(
        snapshots,
        paths.len(),
        "a snapshot without a command in tests/data/help"
    );
}

/// The example sections of a `--help` text: from a line `Example…:` to the next blank line.
fn example_sections(help: &str) -> Vec<Vec<&str>> {
    let mut sections = Vec::new();
    let mut lines = help.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("Example") && line.ends_with(':') {
            sections.push(lines.by_ref().take_while(|l| !l.is_empty()).collect());
        }
    }
    sections
}

/// Shell words and operators of one command line, as sh reads them (quotes, `\`, `#` comments;
/// no expansion): enough to find the `keyless` invocations in an example.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '#' if word.is_none() => break,
            '|' | '&' | ';' | '<' | '>' => {
                words.extend(word.take());
                let mut op = c.to_string();
                if chars.peek() == Some(&c) {
                    op.extend(chars.next());
                }
                words.push(op);
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Every example copy-pastes as printed, whatever the terminal's width: a command that goes on
/// onto the next line ends with ` \` and the next line is indented further; no printed line
/// starts halfway through a command; and each `keyless …` in an example parses.
#[test]
fn every_example_copy_pastes_as_printed_at_any_width() {
    let home = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut parsed = 0;
    for path in all_paths() {
        for columns in ["40", "80", "100"] {
            let out = expect_success(
                bare_keyless(home.path())
                    .env("COLUMNS", columns)
                    .args(&path)
                    .arg("--help"),
            );
            let at = format!("`keyless {} --help` at {columns} columns", path.join(" "));
            for section in example_sections(&out.stdout) {
                let mut commands: Vec<String> = Vec::new();
                let mut continued = false;
                for line in section {
                    let indent = line.len() - line.trim_start().len();
                    let text = line.trim();
                    if continued {
                        if indent <= 2 {
                            problems.push(format!("{at}: continuation not indented: {line:?}"));
                        }
                        commands.last_mut().unwrap().push_str(text);
                    } else {
                        if indent != 2 || text.starts_with('-') {
                            problems.push(format!(
                                "{at}: a line that starts halfway through a command: {line:?}"
                            ));
                        }
                        commands.push(text.to_string());
                    }
                    continued = text.ends_with(" \\");
                    if continued {
                        let command = commands.last_mut().unwrap();
                        command.truncate(command.len() - 1);
                    }
                }
                if continued {
                    problems.push(format!("{at}: the last example line ends with `\\`"));
                }
                for command in commands {
                    // An INI example: the value of `credential_process = …` is the command.
                    let command = command
                        .strip_prefix("credential_process = ")
                        .unwrap_or(&command);
                    let words = shell_words(command);
                    let mut segments =
                        words.split(|w| ["|", "||", "&", "&&", ";"].contains(&w.as_str()));
                    for segment in segments.by_ref() {
                        if segment.first().map(String::as_str) != Some("keyless") {
                            continue;
                        }
                        // Redirections and their targets are the shell's, not keyless's.
                        let mut args = Vec::new();
                        let mut words = segment.iter();
                        while let Some(w) = words.next() {
                            if [">", ">>", "<"].contains(&w.as_str()) {
                                words.next();
                            } else {
                                args.push(w.clone());
                            }
                        }
                        match keyless::cli::command().try_get_matches_from(&args) {
                            Ok(_) => parsed += 1,
                            Err(e) => problems.push(format!("{at}: {args:?} does not parse: {e}")),
                        }
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        parsed > 20,
        "only {parsed} keyless commands found in examples"
    );
}

/// The flags every command takes have their own heading, after the command's own.
#[test]
fn global_flags_have_their_own_heading_in_every_help() {
    let home = tempfile::tempdir().unwrap();
    for path in all_paths() {
        let out = expect_success(bare_keyless(home.path()).args(&path).arg("--help"));
        let (own, global) = out
            .stdout
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("`keyless {}` --help: no Global options", path.join(" ")));
        // The section runs to the next unindented line (long help has blank lines inside).
        let global = global
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with(' '))
            .collect::<Vec<_>>()
            .join("\n");
        for flag in [
            "--verbose",
            "--quiet",
            "--log-format <",
            "--config <",
            "--config-profile <",
        ] {
            assert!(
                global.contains(flag) && !own.contains(flag),
                "`keyless {}` --help: {flag} is not (only) under Global options:\n{}",
                path.join(" "),
                out.stdout
            );
        }
    }
}

#[test]
fn the_top_level_help_documents_exit_codes_env_and_the_config_file() {
    let home = tempfile::tempdir().unwrap();
    let out = expect_success(bare_keyless(home.path()).arg("--help"));
    for needle in [
        "Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 refused",
        "KEYLESS_* environment variable",
        "--config-profile",
        "--log-format json",
    ] {
        assert!(out.stdout.contains(needle), "{needle}:\n{}", out.stdout);
    }
}

#[test]
fn completions_for_every_shell_know_every_command() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = expect_success(bare_keyless(home.path()).args(["completions", shell]));
        for word in [
            "credentials",
            "write-profile",
            "id-token",
            "role-arn",
            "config-profile",
            "probe",
        ] {
            assert!(out.stdout.contains(word), "{shell} completion lacks {word}");
        }
        // The scripts are at least valid syntax for the shells installed here.
        let check: &[&str] = match shell {
            "bash" => &["bash", "-n"],
            "zsh" => &["zsh", "-n"],
            "fish" => &["fish", "--no-execute"],
            _ => continue,
        };
        let script = home.path().join(format!("keyless.{shell}"));
        std::fs::write(&script, &out.stdout).unwrap();
        match Command::new(check[0])
            .args(&check[1..])
            .arg(&script)
            .output()
        {
            Ok(result) => assert!(
                result.status.success(),
                "{shell} rejects the completion script: {}",
                String::from_utf8_lossy(&result.stderr)
            ),
            Err(_) => assert_ne!(shell, "bash", "bash must be installed"),
        }
    }
}

#[test]
fn man_pages_cover_every_command() {
    let home = tempfile::tempdir().unwrap();
    let page = expect_success(bare_keyless(home.path()).arg("man"));
    assert!(page.stdout.contains(".TH keyless 1"), "{}", page.stdout);
    assert!(
        page.stdout.contains("Exit codes"),
        "the page carries the after-help"
    );
    let dir = home.path().join("man1");
    expect_success(
        bare_keyless(home.path())
            .args(["man", "--out-dir"])
            .arg(&dir),
    );
    for path in all_paths() {
        let name = if path.is_empty() {
            "keyless.1".to_string()
        } else {
            format!("keyless-{}.1", path.join("-"))
        };
        let text = std::fs::read_to_string(dir.join(&name))
            .unwrap_or_else(|_| panic!("no man page {name}"));
        assert!(text.contains(".TH "), "{name} is not a man page");
    }
}

/// keyless.toml supplies flag values to one-shot commands, with the documented precedence.
#[tokio::test(flavor = "multi_thread")]
async fn flags_come_from_keyless_toml_with_the_documented_precedence() {
    let w = LabWorld::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyless.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nsession_name = \"from-defaults\"\n\n\
             [profile.deploy]\nrole_arn = \"{}\"\ntoken_file = \"run/deploy.jwt\"\n\n\
             [profile.ci]\nrole_arn = \"{}\"\nsession_name = \"from-profile\"\n",
            w.role("gcp-deploy"),
            w.role("gcp-deploy"),
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    // Each source in turn wins: (profile, extra flags, environment, the session name used).
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("deploy", &[], &[], "from-defaults"),
        ("ci", &[], &[], "from-profile"),
        ("ci", &["--session-name", "from-flag"], &[], "from-flag"),
        (
            "ci",
            &[],
            &[("KEYLESS_SESSION_NAME", "from-env")],
            "from-env",
        ),
        (
            "ci",
            &["--session-name", "from-flag"],
            &[("KEYLESS_SESSION_NAME", "from-env")],
            "from-flag",
        ),
    ];
    for (profile, extra, env, expected) in cases {
        let mut args = vec![
            "--config-profile",
            profile,
            "aws",
            "credentials",
            "--format",
            "json",
            "--no-cache",
        ];
        args.extend_from_slice(extra);
        // The file itself is found through KEYLESS_CONFIG, as a unit file would set it.
        let mut env = env.to_vec();
        env.push(("KEYLESS_CONFIG", config_arg));
        let out = w.keyless_env(&args, &env).await;
        assert_eq!(out.code(), 0, "{out}");
        let arn = out.json()["AssumedRoleUser"]["Arn"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            arn.ends_with(&format!("assumed-role/gcp-deploy/{expected}")),
            "{profile} {extra:?} {env:?}: {arn}"
        );
    }

    // A profile's channel keys mean the matching one-shot command's flags: write-profile writes
    // the profile named after it, as `serve` would.
    let out = w
        .keyless(&[
            "--config",
            config_arg,
            "--config-profile",
            "deploy",
            "aws",
            "write-profile",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let written = std::fs::read_to_string(w.home.credentials_file()).unwrap();
    assert!(
        written.contains("[deploy]\naws_access_key_id = ASIA"),
        "{written}"
    );
}

/// A profile's chaining keys (`chain_roles`, `external_id`, `tags = {K = "V"}`,
/// `transitive_tag_keys`) become the flags of a one-shot command: the partner account's role.
#[tokio::test(flavor = "multi_thread")]
async fn chain_keys_in_keyless_toml_reach_the_one_shot_commands() {
    let w = LabWorld::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyless.toml");
    std::fs::write(
        &config,
        format!(
            "[profile.partner]\nrole_arn = \"{}\"\n\
             chain_roles = [\"arn:aws:iam::{}:role/{}\"]\nexternal_id = \"{}\"\n\
             tags = {{ team = \"payments\" }}\ntransitive_tag_keys = [\"team\"]\n",
            w.role("gcp-deploy"),
            keyless::lab::DEMO_PARTNER_ACCOUNT_ID,
            keyless::lab::DEMO_PARTNER_ROLE,
            keyless::lab::DEMO_PARTNER_EXTERNAL_ID,
        ),
    )
    .unwrap();
    let out = w
        .keyless(&[
            "--config",
            config.to_str().unwrap(),
            "--config-profile",
            "partner",
            "aws",
            "credentials",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let arn = out.json()["AssumedRoleUser"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        arn.starts_with("arn:aws:sts::210987654321:assumed-role/partner-readonly/"),
        "{arn}"
    );
    assert_eq!(w.lab.stats().assume_role_calls, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_config_file_is_read_from_xdg_config_home() {
    let w = LabWorld::start().await;
    // The home's XDG_CONFIG_HOME is <root>/config; keyless looks in keyless/keyless.toml there.
    let xdg = w.home.home().parent().unwrap().join("config/keyless");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::write(
        xdg.join("keyless.toml"),
        format!(
            "[profile.deploy]\nrole_arn = \"{}\"\n",
            w.role("gcp-deploy")
        ),
    )
    .unwrap();
    let out = w
        .keyless(&[
            "--config-profile",
            "deploy",
            "aws",
            "credentials",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("assumed-role/gcp-deploy/"), "{out}");
}

/// A profile's `source` (and `[defaults]`'s) is `--token-source` for one-shot commands, a
/// relative `file:` path anchored at the file, as `--help` shows; `token_source` still works.
#[test]
fn a_profile_source_is_the_token_source_flag() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("keyless.toml");
    std::fs::write(
        &config,
        "[defaults]\nsource = \"github\"\n\n\
         [profile.ci]\ntarget = \"gcp\"\nsource = \"file:tokens/ci.jwt\"\n\
         audience = \"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x\"\n\n\
         [profile.old]\ntoken_source = \"k8s\"\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n\n\
         [profile.plain]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = bare_keyless(home.path());
        cmd.arg("--config").arg(&config).args(args);
        support::process::run(&mut cmd)
    };
    for (profile, command, expected) in [
        (
            "ci",
            "gcp",
            format!(
                "[default: file:{}]",
                home.path().join("tokens/ci.jwt").display()
            ),
        ),
        ("old", "aws", "[default: k8s]".to_string()),
        ("plain", "aws", "[default: github]".to_string()),
        // A `[defaults]` source is the `aws` commands' (as before `gcp` took one): `gcp`
        // keeps its own default.
        ("plain", "gcp", "[default: aws]".to_string()),
    ] {
        let sub = if command == "gcp" {
            "token"
        } else {
            "credentials"
        };
        let out = run(&["--config-profile", profile, command, sub, "--help"]);
        assert_eq!(out.code(), 0, "{out}");
        assert!(
            out.stdout.contains(&expected),
            "{profile}: {expected}\n{out}"
        );
    }
    // A profile that names its target is for that command only.
    let out = run(&["--config-profile", "ci", "aws", "credentials"]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(
        out.stderr
            .contains("[profile.ci] has target = \"gcp\", but `keyless aws` makes AWS credentials"),
        "{out}"
    );
    assert!(out.stderr.contains("`keyless gcp ...`"), "{out}");
}

/// A keyless.toml that can run a command or send tokens elsewhere is refused while others may
/// write it, by the one-shot commands and the daemon alike; `chmod go-w` is the fix.
#[cfg(unix)]
#[test]
fn a_config_that_runs_commands_must_not_be_writable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("keyless.toml");
    std::fs::write(
        &config,
        "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ntoken_source = \"command:cat /dev/null\"\ntoken_file = \"/tmp/never\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o664)).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = bare_keyless(home.path());
        cmd.arg("--config").arg(&config).args(args);
        support::process::run(&mut cmd)
    };
    for args in [
        &["--config-profile", "deploy", "aws", "credentials"][..],
        &["serve"][..],
    ] {
        let out = run(args);
        assert_eq!(out.code(), 2, "{out}");
        assert!(
            out.stderr
                .contains("runs a command (`profile.deploy.token_source`)"),
            "{out}"
        );
        assert!(
            out.stderr.contains("writable by others (mode 0664)"),
            "{out}"
        );
        assert!(
            out.stderr
                .contains(&format!("chmod go-w {}", config.display())),
            "{out}"
        );
    }
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["--config-profile", "deploy", "aws", "credentials", "--help"]);
    assert_eq!(out.code(), 0, "{out}");
}

#[test]
fn config_mistakes_exit_2_and_say_where_and_how_to_fix() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("keyless.toml");
    std::fs::write(
        &config,
        "[defaults]\nsts_endpont = \"http://127.0.0.1:1\"\n\n[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = bare_keyless(home.path());
        cmd.arg("--config").arg(&config).args(args);
        support::process::run(&mut cmd)
    };
    let out = run(&["aws", "credentials"]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("keyless.toml:2:1"), "{out}");
    assert!(out.stderr.contains("did you mean `sts_endpoint`"), "{out}");

    std::fs::write(
        &config,
        "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n",
    )
    .unwrap();
    let out = run(&["--config-profile", "prod", "aws", "credentials"]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("no [profile.prod]"), "{out}");
    assert!(
        out.stderr.contains("the profiles there are: deploy"),
        "{out}"
    );

    // --config-profile with no file at all names the file it looked for.
    let mut cmd = bare_keyless(home.path());
    cmd.args(["--config-profile", "deploy", "aws", "credentials"]);
    let out = support::process::run(&mut cmd);
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains(".config/keyless/keyless.toml"), "{out}");
}

/// `[defaults]` reaches commands that have no profile at all, like lint's --fail-on.
#[test]
fn defaults_reach_every_command() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("keyless.toml");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lint");
    // One medium finding: the built-in --fail-on high passes it, `medium` from the file fails it.
    let file = corpus.join("provider-aws-account-condition.json");
    let lint = |fail_on: &str| {
        std::fs::write(&config, format!("[defaults]\nfail_on = \"{fail_on}\"\n")).unwrap();
        let mut cmd = bare_keyless(home.path());
        cmd.arg("--config").arg(&config).arg("lint").arg(&file);
        support::process::run(&mut cmd).code()
    };
    assert_eq!(
        lint("medium"),
        1,
        "[defaults] fail_on = medium fails a medium finding"
    );
    assert_eq!(lint("high"), 0);
    // The command line still wins over the file.
    let mut cmd = bare_keyless(home.path());
    cmd.arg("--config")
        .arg(&config)
        .args(["lint", "--fail-on", "medium"])
        .arg(&file);
    assert_eq!(support::process::run(&mut cmd).code(), 1);
}

/// Every duration flag and key takes `90s`, `15m`, `1h` (and plain seconds): `--deadline 3s`
/// and `--duration 1h` on the command line, `duration = "15m"` in a profile, `deadline = "3s"`
/// in `[defaults]`; a value outside the flag's own limits is refused with them, exit 2.
#[tokio::test(flavor = "multi_thread")]
async fn durations_take_units_on_the_command_line_and_in_keyless_toml() {
    let w = LabWorld::start().await;
    let expiry_in = |out: &support::CommandOutput| {
        let expiration = out.json()["Credentials"]["Expiration"]
            .as_str()
            .unwrap()
            .to_string();
        let at = time::OffsetDateTime::parse(
            &expiration,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        (at - time::OffsetDateTime::now_utc()).whole_seconds()
    };
    let role = w.role("gcp-deploy");
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &role,
            "--format",
            "json",
            "--no-cache",
            "--duration",
            "2h",
            "--deadline",
            "3s",
            "--attempt-timeout",
            "2s",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let left = expiry_in(&out);
    assert!(
        (7100..=7200).contains(&left),
        "2h asked, {left}s given: {out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyless.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\ndeadline = \"3s\"\n\n[profile.deploy]\nrole_arn = \"{role}\"\nduration = \"15m\"\n"
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let out = w
        .keyless(&[
            "--config",
            config_arg,
            "--config-profile",
            "deploy",
            "aws",
            "credentials",
            "--format",
            "json",
            "--no-cache",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let left = expiry_in(&out);
    assert!(
        (800..=900).contains(&left),
        "15m asked, {left}s given: {out}"
    );

    for (flag, value, limits) in [
        ("--duration", "10m", "15m to 12h"),
        ("--deadline", "2h", "1s to 1h"),
        ("--attempt-timeout", "1.5s", "90s, 15m, 1h"),
    ] {
        let out = w
            .keyless(&["aws", "credentials", "--role-arn", &role, flag, value])
            .await;
        assert_eq!(out.code(), 2, "{flag} {value}: {out}");
        assert!(out.stderr.contains(limits), "{flag} {value}: {out}");
    }

    // The external_account file gets seconds, whatever the spelling.
    let out = w
        .keyless(&[
            "gcp",
            "config",
            "--audience",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
            "--service-account",
            "sa@p.iam.gserviceaccount.com",
            "--lifetime",
            "1h30m",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        out.json()["service_account_impersonation"]["token_lifetime_seconds"],
        5400,
        "{out}"
    );
}

/// A region becomes the STS host name (`sts.REGION.amazonaws.com`), so one that is not a host
/// label would send the Google ID token elsewhere: every way of giving it (flag, `KEYLESS_*`,
/// `AWS_REGION`, keyless.toml, `--aws-region`) is a usage error that names the value, before
/// any token is fetched.
#[test]
fn a_region_that_is_not_a_host_label_exits_2_wherever_it_comes_from() {
    let home = tempfile::tempdir().unwrap();
    let evil = "x.evil.example/#";
    let aws = [
        "aws",
        "credentials",
        "--no-cache",
        "--role-arn",
        "arn:aws:iam::123456789012:role/R",
        "--token-source",
        "file:/nonexistent/token",
    ];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = bare_keyless(home.path());
        cmd.args(args).envs(env.iter().copied());
        support::process::run(&mut cmd)
    };
    let flag = [&aws[..], &["--region", evil]].concat();
    for (args, env, named) in [
        (&flag[..], &[][..], "--region"),
        (&aws[..], &[("KEYLESS_REGION", evil)][..], "--region"),
        (&aws[..], &[("AWS_REGION", evil)][..], "AWS_REGION"),
        (&aws[..], &[("AWS_DEFAULT_REGION", evil)][..], "AWS_DEFAULT_REGION"),
        (&["gcp", "subject-token", "--audience", "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x", "--aws-region", evil][..], &[][..], "--aws-region"),
    ] {
        let out = run(args, env);
        assert_eq!(out.code(), 2, "{args:?} {env:?}: {out}");
        assert!(out.stderr.contains("is not an AWS region"), "{out}");
        assert!(out.stderr.contains(named), "{named}: {out}");
        assert!(!out.stderr.contains("nonexistent"), "no token was read: {out}");
    }

    let config = home.path().join("keyless.toml");
    std::fs::write(&config, format!("[defaults]\nregion = \"{evil}\"\n")).unwrap();
    let out = run(
        &[&["--config", config.to_str().unwrap()][..], &aws[..]].concat(),
        &[],
    );
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("is not an AWS region"), "{out}");
}

/// Every endpoint flag carries a token to where it points: plain `http://` to another machine
/// is a usage error that names the flag, before anything is fetched.
#[test]
fn endpoint_flags_refuse_plain_http_to_another_host() {
    let home = tempfile::tempdir().unwrap();
    let audience =
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";
    let role = "arn:aws:iam::123456789012:role/R";
    let source = "file:/nonexistent/token";
    for (args, flag) in [
        (
            vec![
                "aws",
                "credentials",
                "--role-arn",
                role,
                "--token-source",
                source,
                "--sts-endpoint",
            ],
            "--sts-endpoint",
        ),
        (
            vec![
                "aws",
                "credentials",
                "--role-arn",
                role,
                "--token-source",
                source,
                "--iamcredentials-url",
            ],
            "--iamcredentials-url",
        ),
        (
            vec![
                "gcp",
                "token",
                "--audience",
                audience,
                "--aws-region",
                "us-east-1",
                "--token-url",
            ],
            "--token-url",
        ),
        (
            vec![
                "gcp",
                "token",
                "--audience",
                audience,
                "--aws-region",
                "us-east-1",
                "--iamcredentials-url",
            ],
            "--iamcredentials-url",
        ),
    ] {
        let mut cmd = bare_keyless(home.path());
        cmd.args(&args).arg("http://example.com/x");
        let out = support::process::run(&mut cmd);
        assert_eq!(out.code(), 2, "{args:?}: {out}");
        assert!(out.stderr.contains(flag), "{out}");
        assert!(out.stderr.contains("is not a usable endpoint"), "{out}");
    }
}
