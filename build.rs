//! Links the `keyless` binary with packed relative relocations (DT_RELR) where the toolchain and
//! the C library support them.
//!
//! `keyless` is a position-independent executable: its ~40,000 pointers into itself (vtables,
//! string tables, clap's and serde's static data) are relative relocations that the dynamic
//! loader applies at every start, 24 bytes of `.rela.dyn` each. A cached `credential_process`
//! run is short enough that applying them was a sixth of its instructions (BENCHMARKS.md,
//! "Profile"). `-z pack-relative-relocs` stores them as a bitmap of a few kilobytes instead;
//! the executable stays position-independent (ASLR unchanged).
//!
//! It needs binutils ≥ 2.38 (or lld ≥ 15, mold) and, at run time, glibc ≥ 2.36, which the
//! linker records as a `GLIBC_ABI_DT_RELR` version need, so an older glibc refuses to start the
//! binary with a clear message rather than misbehave. The probe links an empty C program with
//! the flag and runs it: where either fails the flag is left out and the binary links as
//! before (an older GNU ld only warns about the unknown keyword and links without DT_RELR). Set
//! `KEYLESS_NO_RELR=1` to leave it out anyway (a binary for machines older than the builder).

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KEYLESS_NO_RELR");
    println!("cargo:rerun-if-env-changed=CC");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    // Only the native Linux glibc build: a cross or musl build keeps its toolchain's defaults.
    if target != host
        || !target.ends_with("-linux-gnu")
        || std::env::var_os("KEYLESS_NO_RELR").is_some()
    {
        return;
    }
    if links_with_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the C compiler rustc links with (`cc`, or `$CC`) accepts the flag, and the program it
/// links starts here (this glibc applies DT_RELR).
fn links_with_relr() -> bool {
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let mut probe = match Command::new(cc)
        .args(["-x", "c", "-", "-o"])
        .arg(out_dir.join("relr-probe"))
        .args(["-Wl,-z,pack-relative-relocs", "-Wl,--fatal-warnings"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => return false,
    };
    if let Some(mut stdin) = probe.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(b"int main(void) { return 0; }\n");
    }
    let linked = probe.wait().is_ok_and(|status| status.success());
    linked
        && Command::new(out_dir.join("relr-probe"))
            .status()
            .is_ok_and(|status| status.success())
}
