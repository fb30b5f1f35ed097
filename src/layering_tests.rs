//! Dependencies point one way (DESIGN.md): `cli → daemon → deliver → refresh → exchange → source
//! → wire`, the leaves (`policy`, `types`, `secret`, `private_file`, `duration`, `credentials`,
//! `classify`, `audit`) import only other leaves, the `lab` uses the leaves and `policy` and is used by no
//! production path, and nothing imports `cli`.
//!
//! The test reads every file under `src/` and every `crate::X` path in it (`use crate::X`,
//! `crate::X::…`, `use crate::{X, …}`, `super::` that climbs to the crate root), test modules
//! excepted. Today's exceptions are listed in [`ALLOWED`], each with its reason; an import that
//! breaks the rules and is not listed fails the test, and so does a listed exception that is no
//! longer needed (delete it: the list only shrinks).

use std::collections::BTreeSet;
use std::path::Path;

/// Where a top-level module sits. Lower ranks may import higher ones, never the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// In the flow: a smaller rank is closer to the user.
    Layer(u8),
    /// Imports only other leaves; anyone may import it.
    Leaf,
    /// The offline emulation: leaves and `policy` only; imported by no production module.
    Lab,
    /// Test and fuzz support: anything but `cli`.
    Harness,
}

/// Every top-level module and where it sits. A module missing here fails the test, so a new one
/// is placed on purpose.
const PLACES: &[(&str, Place)] = &[
    ("main", Place::Layer(0)),
    ("cli", Place::Layer(1)),
    ("setup", Place::Layer(2)),
    // `keyless audit`: reads what the clouds recorded; uses sources for credentials.
    ("cloud_audit", Place::Layer(2)),
    ("daemon", Place::Layer(3)),
    // keyless.toml: read by the daemon and the command line; names channels and sources.
    ("config", Place::Layer(4)),
    ("deliver", Place::Layer(5)),
    ("refresh", Place::Layer(6)),
    ("cache", Place::Layer(7)),
    ("exchange", Place::Layer(8)),
    ("source", Place::Layer(9)),
    ("wire", Place::Layer(10)),
    ("policy", Place::Leaf),
    ("types", Place::Leaf),
    ("secret", Place::Leaf),
    ("private_file", Place::Leaf),
    ("duration", Place::Leaf),
    ("credentials", Place::Leaf),
    ("classify", Place::Leaf),
    // keyless's own audit trail: the event, its sinks and counters; emitted from exchange/ and refresh/.
    ("audit", Place::Leaf),
    ("lab", Place::Lab),
    ("fuzzing", Place::Harness),
];

/// Imports that break the rules today, `(from, to, why)`, each with the reason it is tolerated
/// and what would remove it. Shrink it; never grow it. Empty at this writing: the lab's use of
/// the SigV4 signer in `exchange/` is in its tests only, and `source/` no longer imports
/// `exchange/`. A merge that brings an upward import back adds its pair here, with the plan.
const ALLOWED: &[(&str, &str, &str)] = &[];

fn place(module: &str) -> Option<Place> {
    PLACES.iter().find(|(m, _)| *m == module).map(|(_, p)| *p)
}

/// Whether `from` may import `to` by the rules alone.
fn may_import(from: Place, to: Place, to_name: &str) -> bool {
    if to_name == "cli" {
        return from == Place::Layer(0);
    }
    match (from, to) {
        (_, Place::Harness) => false,
        (Place::Harness, _) => true,
        (_, Place::Leaf) => true,
        (Place::Leaf, _) => false,
        (Place::Lab, Place::Layer(_)) | (Place::Lab, Place::Lab) => false,
        // Only the command line starts the lab (`keyless lab`, `keyless demo`).
        (Place::Layer(rank), Place::Lab) => rank <= 1,
        (Place::Layer(a), Place::Layer(b)) => a < b,
    }
}

/// One `crate::` path found in a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    from: String,
    to: String,
    file: String,
    line: usize,
}

/// The top-level module a file under `src/` belongs to and its module path (`["deliver",
/// "aws_files", "ini"]`); `None` for `lib.rs` and test-only files.
fn module_of(relative: &str) -> Option<Vec<String>> {
    let path = relative.strip_suffix(".rs")?;
    let mut parts: Vec<String> = path.split('/').map(str::to_owned).collect();
    let file = parts.last()?.clone();
    if file == "lib" || file == "tests" || file.starts_with("tests_") || file.ends_with("_tests") {
        return None;
    }
    if file == "mod" {
        parts.pop();
    }
    Some(parts)
}

/// `text` without its test modules (`#[cfg(test)]` followed by `mod NAME {` … the matching `}`
/// at the same indentation) and without comment lines; line numbers are kept.
fn production_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim() == "#[cfg(test)]" {
            if let Some(next) = lines.get(i + 1) {
                let indent = &next[..next.len() - next.trim_start().len()];
                let rest = next.trim_start();
                if rest.starts_with("mod ") && rest.ends_with('{') {
                    let end = format!("{indent}}}");
                    i += 2;
                    while i < lines.len() && lines[i] != end {
                        i += 1;
                    }
                    i += 1;
                    continue;
                }
            }
        }
        if !line.trim_start().starts_with("//") {
            out.push((i + 1, line));
        }
        i += 1;
    }
    out
}

/// The top-level modules `crate::` (and root-reaching `super::`) paths in `text` name.
fn imports_of(relative: &str, text: &str) -> Vec<Import> {
    let Some(module) = module_of(relative) else {
        return Vec::new();
    };
    let from = module[0].clone();
    let mut found = Vec::new();
    let mut add = |to: &str, line: usize| {
        if !to.is_empty() && to != from && to != "self" {
            found.push(Import {
                from: from.clone(),
                to: to.to_owned(),
                file: relative.to_owned(),
                line,
            });
        }
    };
    let lines = production_lines(text);
    // Grouped `use crate::{a, b::c}` may span lines: work on the joined text, mapping offsets
    // back to line numbers.
    let mut joined = String::new();
    let mut starts = Vec::new();
    for (number, line) in &lines {
        starts.push((joined.len(), *number));
        joined.push_str(line);
        joined.push('\n');
    }
    let line_at = |offset: usize| {
        starts
            .iter()
            .take_while(|(start, _)| *start <= offset)
            .last()
            .map_or(0, |(_, n)| *n)
    };
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut roots: Vec<(usize, &str)> = joined
        .match_indices("crate::")
        .filter(|(at, _)| {
            // `keyless::crate::` does not exist; skip `$crate::` and identifiers ending in crate.
            !joined[..*at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(at, m)| (at, &joined[at + m.len()..]))
        .collect();
    // `super::` chains that climb above the top-level module reach the crate root.
    let depth = module.len();
    for (at, _) in joined.match_indices("super::") {
        if joined[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            continue;
        }
        let mut rest = &joined[at..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r;
        }
        // A `mod.rs` or top-level file is its module; another file is a child of its directory.
        if climbs >= depth {
            roots.push((at, rest));
        }
    }
    for (at, rest) in roots {
        let line = line_at(at);
        if let Some(group) = rest.strip_prefix('{') {
            // Each item's first identifier, at the line it is on.
            let group_at = joined.len() - group.len();
            let mut level = 0;
            let mut item_start = Some(0);
            for (offset, c) in group.char_indices() {
                match c {
                    '{' => level += 1,
                    '}' if level == 0 => break,
                    '}' => level -= 1,
                    ',' if level == 0 => item_start = Some(offset + 1),
                    c if level == 0 && item_start.is_some() && !c.is_whitespace() => {
                        add(&ident(&group[offset..]), line_at(group_at + offset));
                        item_start = None;
                    }
                    _ => {}
                }
            }
        } else {
            add(&ident(rest), line);
        }
    }
    found
}

/// What breaks the rules in `files` (relative path, text), given `allowed`: one message per
/// broken rule, plus one per allowed exception that nothing needs any more.
fn violations(files: &[(String, String)], allowed: &[(&str, &str, &str)]) -> Vec<String> {
    let mut problems = BTreeSet::new();
    let mut used = BTreeSet::new();
    for (relative, text) in files {
        if let Some(module) = module_of(relative) {
            if place(&module[0]).is_none() {
                problems.insert(format!(
                    "src/{relative}: module `{}` has no place in PLACES; add it where it belongs",
                    module[0]
                ));
            }
        }
        for import in imports_of(relative, text) {
            let (Some(from), Some(to)) = (place(&import.from), place(&import.to)) else {
                continue;
            };
            if may_import(from, to, &import.to) {
                continue;
            }
            if let Some(entry) = allowed
                .iter()
                .find(|(f, t, _)| *f == import.from && *t == import.to)
            {
                used.insert((entry.0, entry.1));
                continue;
            }
            problems.insert(format!(
                "src/{}:{}: `{}` imports `{}`, against the layering (DESIGN.md: cli → daemon → \
                 deliver → refresh → exchange → source → wire; leaves import only leaves; lab \
                 only leaves and policy; nothing imports cli); move the shared piece down instead",
                import.file, import.line, import.from, import.to
            ));
        }
    }
    for (from, to, _) in allowed {
        if !used.contains(&(*from, *to)) {
            problems.insert(format!(
                "ALLOWED lists `{from}` → `{to}`, which nothing needs any more: delete the entry"
            ));
        }
    }
    problems.into_iter().collect()
}

/// Every `.rs` file under `dir`, as (path relative to `root`, text).
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("a readable src/ directory") {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .expect("under src/")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((
                relative,
                std::fs::read_to_string(&path).expect("UTF-8 source"),
            ));
        }
    }
}

#[test]
fn dependencies_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&root, &root, &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let problems = violations(&files, ALLOWED);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A fixture file. `CLI_PATH` in `text` stands for the command-line module's path, spelled so
/// that this file itself never holds an import of it (the repository's own checks read it).
fn file(path: &str, text: &str) -> (String, String) {
    (path.to_owned(), with_cli_path(text))
}

fn with_cli_path(text: &str) -> String {
    text.replace("CLI_PATH", concat!("crate", "::", "cli"))
}

#[test]
fn the_checker_catches_an_upward_import_in_every_form() {
    let ok = [
        file("deliver/env.rs", "use crate::refresh::Refresher;\n"),
        file("cli/aws.rs", "use crate::daemon::Options;\n"),
        file("source/github.rs", "use crate::{secret::Secret, types::Region};\n"),
        file("main.rs", "use keyless::cli;\n"),
        file("lab/sigv4.rs", "use crate::policy::Policy;\n"),
        file("fuzzing.rs", "use crate::lab::GoogleSigningKey;\n"),
        // Tests and comments are not production imports.
        file(
            "exchange/aws_sts.rs",
            "//! See [`CLI_PATH`].\nfn f() {}\n\n#[cfg(test)]\nmod tests {\n    use crate::lab::X;\n}\n",
        ),
        file("lab/tests.rs", "use CLI_PATH::Cli;\n"),
    ];
    assert_eq!(violations(&ok, &[]), Vec::<String>::new());

    let bad = [
        (
            "secret.rs",
            "use CLI_PATH::Cli;\n",
            "`secret` imports `cli`",
        ),
        (
            "daemon/mod.rs",
            "let x = CLI_PATH::exit_code::USAGE;\n",
            "`daemon` imports `cli`",
        ),
        (
            "source/github.rs",
            "use crate::{\n    secret::Secret,\n    exchange::aws_sts::RoleArn,\n};\n",
            "src/source/github.rs:3: `source` imports `exchange`",
        ),
        (
            "types.rs",
            "use super::refresh::Refresher;\n",
            "`types` imports `refresh`",
        ),
        (
            "deliver/aws_files/ini.rs",
            "use super::super::super::daemon::Options;\n",
            "`deliver` imports `daemon`",
        ),
        (
            "refresh/engine.rs",
            "use crate::lab::Lab;\n",
            "`refresh` imports `lab`",
        ),
        (
            "lab/mod.rs",
            "use crate::deliver::server;\n",
            "`lab` imports `deliver`",
        ),
        (
            "policy/model.rs",
            "use crate::source::Subject;\n",
            "`policy` imports `source`",
        ),
        ("shiny.rs", "fn f() {}\n", "module `shiny` has no place"),
    ];
    for (path, text, expected) in bad {
        let problems = violations(&[file(path, text)], &[]);
        assert!(
            problems.len() == 1 && problems[0].contains(expected),
            "{path}: {problems:?}"
        );
    }

    // An allowed exception silences its pair only, and an unneeded one is reported.
    let upward = [file("source/x.rs", "use crate::exchange::Y;\n")];
    assert!(violations(&upward, &[("source", "exchange", "why")]).is_empty());
    let problems = violations(&upward, &[("source", "refresh", "why")]);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems
        .iter()
        .any(|p| p.contains("nothing needs any more")));
}
