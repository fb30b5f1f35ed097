//! What the config modules' tests share: an example file and helpers that parse it.

// What the tests used before the split, so each module's tests read as they did.
pub(super) use std::path::Path;

pub(super) use super::{
    parse, parse_for, Channel, Config, ConfigError, Problem, ProblemKind, ProfileConfig, ReadFor,
};
pub(super) use crate::source::google::DEFAULT_AWS_AUDIENCE;
pub(super) use crate::types::{Region, UpstreamUrl};

pub(super) const EXAMPLE: &str = r#"
metrics_listen = "127.0.0.1:9090"
log_format = "json"

[profile.deploy]            # GCP -> AWS (has role_arn)
role_arn = "arn:aws:iam::123456789012:role/DeploymentRole"
audience = "sts.amazonaws.com"
token_source = "metadata"
ecs_listen = "127.0.0.1:9911"
token_file = "/var/run/keyless/deploy.jwt"

[profile.copycat]           # AWS -> GCP (has audience //iam.googleapis.com/... and no role_arn)
audience = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws"
service_account = "copycat@proj.iam.gserviceaccount.com"
gce_metadata_listen = "127.0.0.1:9912"
"#;

pub(super) fn parse_at(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("/etc/keyless/keyless.toml"))
}

/// The single problem of `text`; panics (showing the message) if there is not exactly one.
pub(super) fn problem(text: &str) -> (Problem, String) {
    let error = parse_at(text).expect_err("the file is invalid");
    let message = error.to_string();
    let problems = error.problems();
    assert_eq!(problems.len(), 1, "{message}");
    (problems[0].clone(), message)
}

pub(super) fn assert_at(p: &Problem, kind: ProblemKind, key: &str, line: usize, column: usize) {
    assert_eq!(
        (p.kind, p.key.as_str(), p.line, p.column),
        (kind, key, line, column),
        "{p:?}"
    );
}
