//! Replays every committed fuzz input on stable Rust: the seeds in `fuzz/corpus/<target>/` and
//! every crash the fuzzers ever found, kept in `fuzz/regressions/<target>/`. The fuzz targets
//! and this test call the same functions (`keyless::fuzzing`), so a crash fixed once stays
//! fixed without nightly or cargo-fuzz. `tools/fuzz` runs the fuzzers themselves.

use std::path::{Path, PathBuf};

use keyless::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("a readable directory entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Targets whose harness sets variables in its process (`router_gce_metadata`: fake AWS keys for
/// its AWS source). The integration tests share one process, so these replay in a child.
const SETS_PROCESS_ENV: &[&str] = &["router_gce_metadata"];

/// Set in the child that replays a [`SETS_PROCESS_ENV`] target.
const IN_CHILD: &str = "KEYLESS_FUZZ_REPLAY_CHILD";

fn replay(target: &str) {
    if SETS_PROCESS_ENV.contains(&target) && std::env::var_os(IN_CHILD).is_none() {
        return replay_in_child(target);
    }
    let run = TARGETS
        .iter()
        .find(|t| t.name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"))
        .run;
    let seeds = inputs("corpus", target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target}/ has no seeds");
    for file in seeds.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(file).expect("a readable input");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} fails {target}", file.display());
    }
}

/// Runs this binary again, filtered to the test replaying `target`, with [`IN_CHILD`] set.
fn replay_in_child(target: &str) {
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([&format!("fuzz_corpus::{target}"), "--test-threads=1"])
        .env(IN_CHILD, "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "replaying {target} in a child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every directory under `fuzz/corpus` and `fuzz/regressions` belongs to a target, so a
/// renamed target cannot silently stop replaying its crashes.
#[test]
fn every_input_directory_names_a_target() {
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                TARGETS.iter().any(|t| t.name == name),
                "fuzz/{kind}/{name} is not a target of keyless::fuzzing"
            );
        }
    }
}

/// Every target has a cargo-fuzz binary that calls it.
#[test]
fn every_target_has_a_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for target in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{}\"", target.name)),
            "fuzz/Cargo.toml has no [[bin]] {}",
            target.name
        );
        let source = fuzz_dir()
            .join("fuzz_targets")
            .join(format!("{}.rs", target.name));
        let text = std::fs::read_to_string(&source).unwrap_or_default();
        assert!(
            text.contains(&format!("keyless::fuzzing::{}(", target.name)),
            "{} does not call keyless::fuzzing::{}",
            source.display(),
            target.name
        );
    }
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        #[test]
        fn every_target_is_replayed() {
            let replayed = [$(stringify!($name)),*];
            for target in TARGETS {
                assert!(replayed.contains(&target.name), "{} is not replayed here", target.name);
            }
        }
    };
}

replay_tests!(
    id_token,
    lab_id_token,
    sts_xml,
    region,
    upstream_url,
    allowed_host,
    listen_fds,
    google_json,
    aws_ini,
    duration,
    keyless_toml,
    trust_policy,
    lint,
    cel,
    router_ecs,
    router_imds,
    router_gce_metadata,
    router_metrics,
    executable_json,
    github_answer,
    sts_outbound,
    chain_values,
    google_oidc_mapping,
    cloud_audit,
);
