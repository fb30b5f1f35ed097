//! The integration tests: the real `keyless` binary, the library and the real clients (the aws
//! CLI, boto3, google-auth, moto; from the venv `tools/test` prepares) against the lab, one
//! module per area.
//!
//! One binary, not one per area: each test binary links the whole crate graph, and with 22 of
//! them `tools/test` spent more time linking than testing; in one binary the areas' tests also
//! run side by side, so the slow real-time scenarios overlap with everything else instead of
//! running one binary after another. Run an area with `cargo test --test integration AREA::`.
//!
//! Tests share this process: none may change its environment (children get theirs through
//! `Command::env`; `fuzz_corpus` replays the one fuzz target that sets variables in a child).

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod aws_lab;
mod aws_moto;
mod aws_servers;
mod aws_source;
mod cli;
mod daemon;
mod demo_and_lab;
mod doctor;
mod faults;
mod files;
mod fuzz_corpus;
mod gcp_conformance;
mod gcp_lab;
mod gcp_servers;
mod library;
mod lint;
mod secrets;
mod server_hardening;
mod sigv4_conformance;
mod soak;
