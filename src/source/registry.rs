//! The token sources keyless knows, by the name users write (`--token-source NAME[:ARG]`,
//! `token_source = "NAME[:ARG]"`).
//!
//! Adding a source is one file in `source/` that implements [`TokenSource`](crate::source::TokenSource) and exports a
//! [`Registration`], plus one line in [`SOURCES`]. Help texts, the "unknown token source" hint
//! and keyless.toml's checks all read this list, so none of them needs to change.

use crate::source::{SharedTokenSource, SourceError};
use crate::types::{TokenSourceSpec, UpstreamUrl};

/// Every JWT source, in the order help texts list them.
pub static SOURCES: &[&Registration] = &[
    &crate::source::google::METADATA,
    &crate::source::google::IMPERSONATE,
    &crate::source::local::FILE,
    &crate::source::local::COMMAND,
    &crate::source::k8s::KUBERNETES,
    &crate::source::github::GITHUB,
    &crate::source::aws_oidc::AWS_OIDC,
];

/// Whether a source takes the part after the colon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Argument {
    /// `NAME` only.
    None,
    /// `NAME` or `NAME:VALUE`; the text names the value (`PATH`).
    Optional(&'static str),
    /// `NAME:VALUE` only.
    Required(&'static str),
}

/// One source: its name, what it takes, a line for help texts, and how to build it.
#[derive(Debug)]
pub struct Registration {
    pub name: &'static str,
    pub argument: Argument,
    pub summary: &'static str,
    /// Builds the source from the argument (checked against [`Self::argument`] already).
    pub build: fn(Option<&str>, &SourceContext) -> Result<SharedTokenSource, SourceError>,
}

impl Registration {
    /// How users write it: `metadata`, `impersonate:EMAIL`, `k8s[:PATH]`.
    pub fn spelling(&self) -> String {
        match self.argument {
            Argument::None => self.name.to_string(),
            Argument::Optional(value) => format!("{}[:{value}]", self.name),
            Argument::Required(value) => format!("{}:{value}", self.name),
        }
    }
}

/// What building a source may need from its surroundings: endpoints and settings the command
/// line, keyless.toml or the environment provide. Sources read what they need and ignore the
/// rest.
#[derive(Clone, Debug, Default)]
pub struct SourceContext {
    /// IAM Credentials (for `impersonate:`), when not Google's.
    pub iamcredentials_url: Option<UpstreamUrl>,
    /// The spec being built, named in errors.
    pub spec: Option<TokenSourceSpec>,
    /// The AWS identity (profile, region, role) that signs for `aws-oidc`.
    pub aws: crate::source::aws::AwsSourceOptions,
    /// AWS STS's URL when set by a flag or keyless.toml (`aws-oidc`; otherwise
    /// `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else the region's endpoint).
    pub sts_endpoint: Option<UpstreamUrl>,
    /// What `aws-oidc` asks GetWebIdentityToken for besides the audience.
    pub aws_oidc: crate::source::aws_oidc::AwsOidcSettings,
}

impl SourceContext {
    /// IAM Credentials' base URL.
    pub fn iamcredentials_url(&self) -> &str {
        self.iamcredentials_url.as_ref().map_or(
            crate::source::google::DEFAULT_IAMCREDENTIALS_URL,
            UpstreamUrl::as_str,
        )
    }

    /// A source's refusal of its argument, naming the spec as written.
    pub fn invalid(&self, name: &str, reason: &str) -> SourceError {
        SourceError::UnknownTokenSource {
            spec: self
                .spec
                .as_ref()
                .map_or_else(|| name.to_string(), ToString::to_string),
            reason: reason.to_string(),
            spellings: spellings(),
        }
    }
}

/// Every spelling, for hints: `metadata, impersonate:EMAIL, file:PATH, command:CMD`.
pub fn spellings() -> String {
    SOURCES
        .iter()
        .map(|r| r.spelling())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The registration `spec` names, with its argument checked.
pub fn check(spec: &TokenSourceSpec) -> Result<&'static Registration, SourceError> {
    let unknown = |reason: String| SourceError::UnknownTokenSource {
        spec: spec.to_string(),
        reason,
        spellings: spellings(),
    };
    let registration = SOURCES
        .iter()
        .copied()
        .find(|r| r.name == spec.name())
        .ok_or_else(|| unknown(format!("no token source is called {:?}", spec.name())))?;
    match (registration.argument, spec.argument()) {
        (Argument::None, Some(_)) => {
            Err(unknown(format!("{} takes no argument", registration.name)))
        }
        (Argument::Required(value), None) => Err(unknown(format!(
            "{} needs {value} after a colon",
            registration.name
        ))),
        _ => Ok(registration),
    }
}

/// Parses and checks a spec as written: what clap's `value_parser` and keyless.toml call.
pub fn parse(value: &str) -> Result<TokenSourceSpec, SourceError> {
    let spec = TokenSourceSpec::parse(value).map_err(|e| SourceError::UnknownTokenSource {
        spec: value.to_string(),
        reason: match e {
            crate::types::SpecError::InvalidTokenSource { why, .. } => why.to_string(),
            other => other.to_string(),
        },
        spellings: spellings(),
    })?;
    check(&spec)?;
    Ok(spec)
}

/// Builds the source `spec` names.
pub fn build(
    spec: &TokenSourceSpec,
    context: &SourceContext,
) -> Result<SharedTokenSource, SourceError> {
    let registration = check(spec)?;
    let context = SourceContext {
        spec: Some(spec.clone()),
        ..context.clone()
    };
    (registration.build)(spec.argument(), &context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_spelled_as_documented() {
        let mut names: Vec<_> = SOURCES.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SOURCES.len());
        let spellings = spellings();
        for documented in [
            "metadata",
            "impersonate:EMAIL",
            "file:PATH",
            "command:CMD",
            "k8s[:PATH]",
            "github",
            "aws-oidc",
        ] {
            assert!(spellings.contains(documented), "{spellings}");
        }
    }

    #[test]
    fn specs_are_checked_against_the_registry() {
        let context = SourceContext {
            iamcredentials_url: Some(UpstreamUrl::parse("http://127.0.0.1:9/").unwrap()),
            ..SourceContext::default()
        };
        let build = |s: &str| build(&parse(s)?, &context);
        assert!(build("metadata")
            .unwrap()
            .describe()
            .starts_with("metadata("));
        assert_eq!(
            build("impersonate:sa@p.iam.gserviceaccount.com")
                .unwrap()
                .describe(),
            "impersonate:sa@p.iam.gserviceaccount.com@http://127.0.0.1:9"
        );
        assert_eq!(build("file:/tmp/t").unwrap().describe(), "file:/tmp/t");
        for (bad, says) in [
            ("gcloud", "no token source is called \"gcloud\""),
            ("impersonate:nobody", "takes a service account's email"),
            ("metadata:x", "takes no argument"),
            ("file", "needs PATH after a colon"),
        ] {
            let text = build(bad).unwrap_err().to_string();
            assert!(text.contains(says), "{bad}: {text}");
            assert!(
                text.contains("hint: use metadata, impersonate:EMAIL"),
                "{text}"
            );
        }
    }
}
