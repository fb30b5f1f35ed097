//! Values users hand keyless that end up in a host name or a request: parsed once, where they
//! enter (clap's `value_parser`, the environment, `keyless.toml`, the library builder), so that
//! nothing further in can build a URL from an unchecked string.
//!
//! A leaf: it imports nothing from the rest of keyless.

use std::fmt;
use std::str::FromStr;

/// Why a value given on the command line, in the environment or in a file cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The region cannot be one label of a host name (`sts.REGION.amazonaws.com`).
    #[error("{value:?} is not an AWS region: {why}\n  hint: a region looks like us-east-1 (letters, digits and inner hyphens, at most 63)")]
    InvalidRegion { value: String, why: &'static str },

    /// A value read from an environment variable is invalid; names the variable.
    #[error("{variable}: {source}")]
    FromEnv {
        variable: &'static str,
        #[source]
        source: Box<SpecError>,
    },
}

impl SpecError {
    /// The same problem, said to come from the environment variable `variable`.
    pub fn in_env(self, variable: &'static str) -> Self {
        Self::FromEnv {
            variable,
            source: Box::new(self),
        }
    }
}

/// An AWS region as botocore's `validate_region_name` accepts it: one host label (1 to 63
/// letters, digits and hyphens, no hyphen first or last, not all digits). The only way to get
/// one is to parse it, so `sts.{region}.amazonaws.com` always names an AWS host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(String);

/// The longest host label DNS allows.
const HOST_LABEL_MAX: usize = 63;

impl Region {
    /// Checks `text` against the one rule.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let invalid = |why| SpecError::InvalidRegion {
            value: text.to_string(),
            why,
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if text.len() > HOST_LABEL_MAX {
            return Err(invalid("it is longer than 63 characters"));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(
                "only letters, digits and hyphens can be part of a host name",
            ));
        }
        if text.starts_with('-') || text.ends_with('-') {
            return Err(invalid("it starts or ends with a hyphen"));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("it is all digits"));
        }
        Ok(Self(text.to_string()))
    }

    /// The region as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DNS suffix of the region's partition: `amazonaws.com.cn` for China, else
    /// `amazonaws.com`.
    pub fn dns_suffix(&self) -> &'static str {
        if self.0.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        }
    }

    /// The regional STS host: `sts.REGION.amazonaws.com` (`.com.cn` in China).
    pub fn sts_host(&self) -> String {
        format!("sts.{}.{}", self.0, self.dns_suffix())
    }

    /// The region from `AWS_REGION`, else `AWS_DEFAULT_REGION`, as the SDKs read it (a blank
    /// value counts as unset); an invalid value is an error that names its variable.
    pub fn from_env() -> Result<Option<Self>, SpecError> {
        for variable in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            match std::env::var(variable) {
                Ok(v) if !v.trim().is_empty() => {
                    return Self::parse(&v).map(Some).map_err(|e| e.in_env(variable))
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

impl FromStr for Region {
    type Err = SpecError;
    fn from_str(text: &str) -> Result<Self, SpecError> {
        Self::parse(text)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn regions_are_host_labels() {
        for good in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "us-isob-east-1",
            "x",
            "Us-East-1",
        ] {
            assert_eq!(Region::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "x.evil.example/#",
            "us-east-1.evil.com",
            "evil.example?",
            "us east",
            "-x",
            "x-",
            "x/y",
            "x@y",
            "123",
            "é-east-1",
            &"a".repeat(64),
        ] {
            let err = Region::parse(bad).unwrap_err();
            assert!(err.to_string().contains("is not an AWS region"), "{err}");
        }
    }

    #[test]
    fn the_sts_host_follows_the_partition() {
        let host = |r: &str| Region::parse(r).unwrap().sts_host();
        assert_eq!(host("eu-west-1"), "sts.eu-west-1.amazonaws.com");
        assert_eq!(host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn an_invalid_environment_value_names_its_variable() {
        let err = Region::parse("a/b").unwrap_err().in_env("AWS_REGION");
        assert!(err.to_string().starts_with("AWS_REGION: \"a/b\""), "{err}");
    }

    proptest! {
        /// Whatever is accepted stays one label of an AWS host name: the URL built from it has
        /// exactly that host, so no region can send a token anywhere else.
        #[test]
        fn an_accepted_region_always_names_an_aws_host(text in "\\PC{0,70}") {
            if let Ok(region) = Region::parse(&text) {
                let url = url::Url::parse(&format!("https://{}/", region.sts_host())).unwrap();
                let host = url.host_str().unwrap().to_string();
                prop_assert_eq!(host, region.sts_host().to_ascii_lowercase());
                prop_assert!(region.sts_host().ends_with(region.dns_suffix()));
            }
        }

        #[test]
        fn botocore_shaped_regions_are_accepted(text in "[a-z]{2}(-[a-z]{1,10}){1,2}-[0-9]{1,2}") {
            let region = Region::parse(&text).unwrap();
            prop_assert_eq!(region.as_str(), text.as_str());
        }
    }
}
