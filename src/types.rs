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

    /// An endpoint override that is not an http(s) URL, or that would send a token over plain
    /// `http://` to a host that is not this machine.
    #[error("{value:?} is not a usable endpoint: {why}\n  hint: use an https:// URL; plain http:// is accepted only for 127.0.0.1, [::1] or localhost (tokens are sent there)")]
    InvalidEndpoint { value: String, why: &'static str },

    /// A `--token-source` / `token_source` that is not `NAME` or `NAME:ARGUMENT`.
    #[error("{value:?} is not a token source: {why}\n  hint: a token source is a name, with an argument after a colon where it takes one (metadata, impersonate:EMAIL, file:PATH, command:CMD, k8s[:PATH], github, aws-oidc, aws)")]
    InvalidTokenSource { value: String, why: &'static str },

    /// An `--external-id` / `external_id` STS would refuse.
    #[error("{value:?} is not an external ID: {why}\n  hint: an external ID is 2 to 1224 letters, digits and _+=,.@:/- (use the value the role's owner gave you)")]
    InvalidExternalId { value: String, why: &'static str },

    /// A `--source-identity` / `source_identity` STS would refuse.
    #[error("{value:?} is not a source identity: {why}\n  hint: a source identity is 2 to 64 letters, digits and _+=,.@- and cannot start with aws:")]
    InvalidSourceIdentity { value: String, why: &'static str },

    /// A `--tag K=V` / `--transitive-tag-key K` STS would refuse.
    #[error("{value:?} is not a session tag: {why}\n  hint: a tag is KEY=VALUE; the key is 1 to 128 and the value at most 256 letters, digits, spaces and _.:/=+-@")]
    InvalidSessionTag { value: String, why: &'static str },

    /// Role-chaining options that cannot work together (AWS's limits, options without a chain).
    #[error("{problem}\n  hint: {hint}")]
    InvalidRoleChain { problem: String, hint: &'static str },

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

/// A value that does not parse is always the command line's or the configuration's to fix.
impl crate::classify::Classify for SpecError {
    fn class(&self) -> crate::classify::Class {
        crate::classify::Class::Usage
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
        // `xn--…` and the other reserved "??--" labels are IDNA's: no region is one, and a
        // punycode label that does not decode makes the STS URL unparseable (found by fuzzing).
        if text.get(2..4) == Some("--") {
            return Err(invalid(
                "hyphens in its third and fourth characters mark an IDNA label, not a region",
            ));
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

/// Where a token-bearing request goes when an override says so (`--sts-endpoint`,
/// `--token-url`, `--iamcredentials-url`, `AWS_ENDPOINT_URL[_STS]`, keyless.toml, an ADC
/// file's `token_uri`): an `https://` URL, or `http://` to loopback only (the lab, moto, a
/// local proxy), so a typo or a leftover variable cannot send an ID token, a subject token or
/// a refresh token in clear text across a network. Kept without a trailing `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamUrl(String);

impl UpstreamUrl {
    /// Checks scheme and host.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let invalid = |why| SpecError::InvalidEndpoint {
            value: text.to_string(),
            why,
        };
        let url = url::Url::parse(text.trim()).map_err(|_| invalid("it is not a URL"))?;
        let host = url.host().ok_or(invalid("it names no host"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "it carries a user name or password, which would end up in logs",
            ));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(invalid(
                    "plain http:// goes only to this machine (loopback)",
                ))
            }
            _ => {
                return Err(invalid(
                    "only https:// (or http:// to loopback) is accepted",
                ))
            }
        }
        Ok(Self(text.trim().trim_end_matches('/').to_string()))
    }

    /// The override in environment variable `variable`, if set and not blank. A variable that
    /// redirects an exchange is easy to leave behind (`AWS_ENDPOINT_URL` pointing at a local
    /// emulator), so the first time each one is used it is named in a warning with its URL.
    pub fn from_env(variable: &'static str) -> Result<Option<Self>, SpecError> {
        let Some(value) = std::env::var(variable)
            .ok()
            .filter(|v| !v.trim().is_empty())
        else {
            return Ok(None);
        };
        let url = Self::parse(&value).map_err(|e| e.in_env(variable))?;
        warn_once(variable, &url);
        Ok(Some(url))
    }

    /// One of keyless's built-in https endpoints (a constant, so it always parses).
    pub fn builtin(url: &'static str) -> Self {
        Self::parse(url).expect("built-in endpoints are https URLs")
    }

    /// The URL as text, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `127.0.0.0/8`, `::1` (and `::ffff:127.x`), `localhost`.
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Names `variable` and its URL in a warning, once per variable per process.
fn warn_once(variable: &'static str, url: &UpstreamUrl) {
    static WARNED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.contains(&variable) {
        warned.push(variable);
        tracing::warn!(
            variable,
            url = url.as_str(),
            "{variable}={} redirects a token exchange away from the cloud's own endpoint",
            url.as_str()
        );
    }
}

impl FromStr for UpstreamUrl {
    type Err = SpecError;
    fn from_str(text: &str) -> Result<Self, SpecError> {
        Self::parse(text)
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An STS `ExternalId`: what a third party's role requires in `sts:ExternalId` (botocore's
/// `externalIdType`: 2 to 1224 characters of `[\w+=,.@:/-]`). Not a secret, but not logged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExternalId(String);

impl ExternalId {
    /// Checks `text` against STS's rule.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let invalid = |why| SpecError::InvalidExternalId {
            value: text.to_string(),
            why,
        };
        check_sts_text(text, 2, 1224, "_+=,.@:/-").map_err(invalid)?;
        Ok(Self(text.to_string()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ExternalId {
    type Err = SpecError;
    fn from_str(text: &str) -> Result<Self, SpecError> {
        Self::parse(text)
    }
}

/// An STS `SourceIdentity`: set once in a role chain, it stays on every later session and in
/// CloudTrail (botocore's `sourceIdentityType`: 2 to 64 characters of `[\w+=,.@-]`; `aws:` is
/// reserved).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceIdentity(String);

impl SourceIdentity {
    /// Checks `text` against STS's rule.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let invalid = |why| SpecError::InvalidSourceIdentity {
            value: text.to_string(),
            why,
        };
        check_sts_text(text, 2, 64, "_+=,.@-").map_err(invalid)?;
        if text.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid("the prefix aws: is reserved by AWS"));
        }
        Ok(Self(text.to_string()))
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SourceIdentity {
    type Err = SpecError;
    fn from_str(text: &str) -> Result<Self, SpecError> {
        Self::parse(text)
    }
}

/// `text` is `min..=max` characters of ASCII letters, digits and `extra` (Java's `\w` is ASCII).
fn check_sts_text(text: &str, min: usize, max: usize, extra: &str) -> Result<(), &'static str> {
    let length = text.chars().count();
    if length < min {
        return Err("it is shorter than STS allows");
    }
    if length > max {
        return Err("it is longer than STS allows");
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    {
        return Err("it has a character STS does not allow");
    }
    Ok(())
}

/// A session tag key (botocore's `tagKeyType`: 1 to 128 characters of
/// `[\p{L}\p{Z}\p{N}_.:/=+\-@]`), for `--tag K=V` and `--transitive-tag-key K`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagKey(String);

impl TagKey {
    /// Checks `text` against STS's rule.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        check_tag_text(text, 1, 128).map_err(|why| SpecError::InvalidSessionTag {
            value: text.to_string(),
            why,
        })?;
        Ok(Self(text.to_string()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// STS compares tag keys without regard to case (`Dept` and `dept` are one key).
    pub fn same_as(&self, other: &TagKey) -> bool {
        self.0.to_lowercase() == other.0.to_lowercase()
    }
}

impl FromStr for TagKey {
    type Err = SpecError;
    fn from_str(text: &str) -> Result<Self, SpecError> {
        Self::parse(text)
    }
}

impl fmt::Display for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session tag, `KEY=VALUE` (split at the first `=`; the value may be empty, at most 256
/// characters of the key's alphabet). Policies see it as `aws:PrincipalTag/KEY`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionTag {
    pub key: TagKey,
    value: String,
}

impl SessionTag {
    /// Parses `KEY=VALUE`.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(SpecError::InvalidSessionTag {
                value: text.to_string(),
                why: "it has no `=` between key and value",
            });
        };
        Self::new(key, value).map_err(|e| match e {
            SpecError::InvalidSessionTag { why, .. } => SpecError::InvalidSessionTag {
                value: text.to_string(),
                why,
            },
            other => other,
        })
    }

    /// A tag from its parts (keyless.toml's `tags = {KEY = "VALUE"}`).
    pub fn new(key: &str, value: &str) -> Result<Self, SpecError> {
        let key = TagKey::parse(key)?;
        check_tag_text(value, 0, 256).map_err(|why| SpecError::InvalidSessionTag {
            value: value.to_string(),
            why,
        })?;
        Ok(Self {
            key,
            value: value.to_string(),
        })
    }

    /// The value as text.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl FromStr for SessionTag {
    type Err = SpecError;
    fn from_str(text: &str) -> Result<Self, SpecError> {
        Self::parse(text)
    }
}

impl fmt::Display for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// `text` is `min..=max` characters of letters, digits, separators (spaces) and `_.:/=+-@`.
fn check_tag_text(text: &str, min: usize, max: usize) -> Result<(), &'static str> {
    let length = text.chars().count();
    if length < min {
        return Err("the key is empty");
    }
    if length > max {
        return Err("it is longer than STS allows (keys 128, values 256 characters)");
    }
    let allowed = |c: char| {
        c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
    };
    if !text.chars().all(allowed) {
        return Err("it has a character STS does not allow");
    }
    Ok(())
}

/// A token source as written (`--token-source`, `token_source =`): a registered name and, for
/// the sources that take one, the argument after the first colon (`file:/a:b` is `file` with
/// `/a:b`). Only the syntax is checked here; `source::registry` knows which names exist and
/// which take an argument, and builds the source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenSourceSpec {
    name: String,
    argument: Option<String>,
}

impl TokenSourceSpec {
    /// Parses `NAME` or `NAME:ARGUMENT` (surrounding white space is ignored; the argument is
    /// kept as written, a command may need its spaces).
    pub fn parse(value: &str) -> Result<Self, SpecError> {
        let invalid = |why| SpecError::InvalidTokenSource {
            value: value.to_string(),
            why,
        };
        let trimmed = value.trim();
        let (name, argument) = match trimmed.split_once(':') {
            Some((name, argument)) => (name, Some(argument.to_string())),
            None => (trimmed, None),
        };
        if name.is_empty() {
            return Err(invalid("it has no name"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("a name is lowercase letters, digits and hyphens"));
        }
        if argument.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err(invalid("nothing follows the colon"));
        }
        Ok(Self {
            name: name.to_string(),
            argument,
        })
    }

    /// A spec from its parts (the library builder, tests).
    pub fn new(name: &str, argument: Option<&str>) -> Result<Self, SpecError> {
        match argument {
            Some(a) => Self::parse(&format!("{name}:{a}")),
            None => Self::parse(name),
        }
    }

    /// The registered name: `metadata`, `file`, `k8s`...
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What follows the first colon, if anything.
    pub fn argument(&self) -> Option<&str> {
        self.argument.as_deref()
    }

    /// The same source with another argument (keyless.toml resolves `file:` paths against
    /// the file's directory).
    pub fn with_argument(&self, argument: String) -> Self {
        Self {
            name: self.name.clone(),
            argument: Some(argument),
        }
    }
}

impl FromStr for TokenSourceSpec {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl fmt::Display for TokenSourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.argument {
            Some(argument) => write!(f, "{}:{argument}", self.name),
            None => f.write_str(&self.name),
        }
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
            "XN--c",
            "xn--us-east-1",
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

    #[test]
    fn plain_http_goes_only_to_loopback() {
        for good in [
            "https://sts.amazonaws.com",
            "https://sts.googleapis.com/v1/token",
            "https://example.com:8443/",
            "http://127.0.0.1:5000",
            "http://127.9.9.9/",
            "http://[::1]:4566",
            "http://localhost:4566/",
            "http://LOCALHOST",
        ] {
            let url = UpstreamUrl::parse(good).unwrap();
            assert!(!url.as_str().ends_with('/'), "{url}");
        }
        for bad in [
            "http://example.com",
            "http://169.254.169.254",
            "http://10.0.0.1:5000",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "ftp://127.0.0.1",
            "file:///etc/passwd",
            "sts.amazonaws.com",
            "https://user:pw@sts.amazonaws.com",
            "",
        ] {
            let err = UpstreamUrl::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("is not a usable endpoint"),
                "{err}"
            );
        }
    }

    proptest! {
        /// Whatever is accepted goes over TLS, or stays on this machine.
        #[test]
        fn an_accepted_endpoint_is_https_or_loopback(text in "(https?|ftp)://[a-z0-9.:\\[\\]@-]{0,30}(/[a-z]{0,5})?") {
            if let Ok(endpoint) = UpstreamUrl::parse(&text) {
                let url = url::Url::parse(endpoint.as_str()).unwrap();
                let host = url.host().unwrap();
                prop_assert!(url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&host)), "{}", text);
            }
        }

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

    #[test]
    fn role_chaining_values_follow_botocores_shapes() {
        assert!(ExternalId::parse("payments-prod:2024/x@y").is_ok());
        assert!(ExternalId::parse(&"a".repeat(1224)).is_ok());
        for bad in ["x", "has space", "é-id", &"a".repeat(1225)] {
            let e = ExternalId::parse(bad).unwrap_err();
            assert!(e.to_string().contains("is not an external ID"), "{e}");
        }
        assert!(SourceIdentity::parse("alice@example.com").is_ok());
        for bad in ["a", "a:b", "aws-x:y", &"a".repeat(65)] {
            assert!(SourceIdentity::parse(bad).is_err(), "{bad}");
        }
        let tag = SessionTag::parse("team=payments=eu").unwrap();
        assert_eq!((tag.key.as_str(), tag.value()), ("team", "payments=eu"));
        assert_eq!(tag.to_string(), "team=payments=eu");
        assert_eq!(SessionTag::parse("Cost Center=").unwrap().value(), "");
        for bad in [
            "team",
            "=x",
            "a=b;c",
            &format!("{}=v", "k".repeat(129)),
            &format!("k={}", "v".repeat(257)),
        ] {
            let e = SessionTag::parse(bad).unwrap_err();
            assert!(e.to_string().contains("is not a session tag"), "{e}");
        }
        assert!(TagKey::parse("Dept")
            .unwrap()
            .same_as(&TagKey::parse("dept").unwrap()));
    }

    #[test]
    fn token_source_specs_split_at_the_first_colon() {
        let spec = TokenSourceSpec::parse(" file:/a:b ").unwrap();
        assert_eq!((spec.name(), spec.argument()), ("file", Some("/a:b")));
        assert_eq!(spec.to_string(), "file:/a:b");
        let spec = TokenSourceSpec::parse("k8s").unwrap();
        assert_eq!((spec.name(), spec.argument()), ("k8s", None));
        let spec = TokenSourceSpec::parse("command:gcloud auth print-identity-token").unwrap();
        assert_eq!(spec.argument(), Some("gcloud auth print-identity-token"));
        for bad in ["", ":x", "File:/x", "k8s:", "k8s:  ", "a b"] {
            assert!(TokenSourceSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Any text: a role-chaining value exactly as given, within STS's limits, or an error;
        /// an accepted value prints back to itself.
        #[test]
        fn chain_values_are_what_was_given_within_stss_limits(
            text in prop_oneof![any::<String>(), "[A-Za-z0-9_+=,.@:/ -]{0,70}", "[a-zA-Z ]{1,10}=[a-z=;]{0,10}"],
        ) {
            if let Ok(id) = ExternalId::parse(&text) {
                prop_assert_eq!(id.as_str(), text.as_str());
                prop_assert!((2..=1224).contains(&text.len()) && text.is_ascii());
                prop_assert_eq!(ExternalId::parse(id.as_str()), Ok(id));
            }
            match SourceIdentity::parse(&text) {
                Ok(id) => {
                    prop_assert_eq!(id.as_str(), text.as_str());
                    prop_assert!((2..=64).contains(&text.len()));
                    prop_assert!(!text.to_ascii_lowercase().starts_with("aws:"));
                }
                Err(e) => prop_assert!(e.to_string().contains("is not a source identity")),
            }
            if let Ok(key) = TagKey::parse(&text) {
                prop_assert_eq!(key.to_string(), text.clone());
                prop_assert!((1..=128).contains(&text.chars().count()));
            }
            match SessionTag::parse(&text) {
                Ok(tag) => {
                    prop_assert_eq!(tag.to_string(), text.clone());
                    prop_assert_eq!(SessionTag::parse(&tag.to_string()), Ok(tag.clone()));
                    prop_assert_eq!(SessionTag::new(tag.key.as_str(), tag.value()), Ok(tag));
                }
                Err(e) => prop_assert!(e.to_string().contains("is not a session tag")),
            }
        }

        /// botocore's patterns for these fields are accepted.
        #[test]
        fn botocore_shaped_chain_values_are_accepted(
            id in "[a-zA-Z0-9_+=,.@:/-]{2,64}",
            identity in "[a-zA-Z0-9+=,.@-]{2,64}",
            key in "[a-zA-Z0-9 _.:/+@-]{1,128}",
            value in "[a-zA-Z0-9 _.:/=+@-]{0,256}",
        ) {
            prop_assert!(ExternalId::parse(&id).is_ok(), "{}", id);
            prop_assume!(!identity.to_ascii_lowercase().starts_with("aws:"));
            prop_assert!(SourceIdentity::parse(&identity).is_ok(), "{}", identity);
            prop_assert!(SessionTag::new(&key, &value).is_ok(), "{}={}", key, value);
        }
    }

    proptest::proptest! {
        #[test]
        fn a_parsed_spec_prints_back_to_itself(value in "\\PC{0,40}") {
            if let Ok(spec) = TokenSourceSpec::parse(&value) {
                proptest::prop_assert_eq!(TokenSourceSpec::parse(&spec.to_string()), Ok(spec));
            }
        }
    }
}
