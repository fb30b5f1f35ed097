//! What keyless generates and ships, through the tools that consume it: `keyless setup`'s
//! outputs (shellcheck, cfn-lint, python-hcl2, the lab's STS) and `deploy/` (kubectl,
//! systemd-analyze, hadolint, Helm's engine, the Kubernetes schemas).
//!
//! Separate from `tests/integration` because it needs system tools `tools/test` does not
//! install: without one, its checks skip with a note saying which; with `CI` set, a missing tool
//! fails the test (`.ci/run` installs them).

#[path = "../support/mod.rs"]
mod support;

mod deploy;
mod setup;
