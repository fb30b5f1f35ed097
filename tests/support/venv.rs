//! The Python virtualenv that `tools/test` prepares: moto, boto3 and the aws CLI, pinned.
//!
//! A missing venv is a failure, not a skip: a green run must mean the real clients ran.

use std::path::{Path, PathBuf};

/// The venv directory: `$KEYLESS_TEST_VENV`, else `.venv` at the repository root.
pub fn dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("KEYLESS_TEST_VENV").filter(|v| !v.is_empty()) {
        Some(dir) => root.join(dir), // an absolute value replaces `root`
        None => root.join(".venv"),
    }
}

/// `bin/NAME` inside the venv; panics with the fix when it is not there.
pub fn bin(name: &str) -> PathBuf {
    let path = dir().join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: the integration tests need the pinned Python clients (moto, boto3, aws CLI).\n  \
         fix: run `tools/test` from the repository root (it creates the venv, then runs the tests),\n  \
         or `tools/test --setup-only` once and set KEYLESS_TEST_VENV to that venv",
        path.display()
    );
    path
}

/// A helper script under `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name);
    assert!(path.is_file(), "no test script {}", path.display());
    path
}
