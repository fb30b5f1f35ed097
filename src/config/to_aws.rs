//! Profiles that end in AWS credentials: the `keyless aws` flags as keys, the session policy,
//! the role chain and the AWS channels.

use std::path::{Path, PathBuf};

use toml::de::DeValue;

use super::channels::{Channel, Claim, ClaimedResource};
use super::checker::{first_line, Checker, ProfileCtx};
use super::to_google::is_provider_name;
use super::{ProblemKind, ProfileBuildError};
use crate::deliver::external_account::normalize_audience;
use crate::deliver::server::AllowedHost;
use crate::exchange::aws_chain::RoleChain;
use crate::exchange::aws_sts::{RetryPolicy, RoleArn, SessionName, StsEndpoint};
use crate::refresh::gcp_token::AWS_TOKEN_SOURCE;
use crate::refresh::AwsRoleProfile;
use crate::source::google::DEFAULT_AWS_AUDIENCE;
use crate::source::{SharedTokenSource, SourceContext};
use crate::types::{
    ExternalId, Region, SessionTag, SourceIdentity, SpecError, TagKey, TokenSourceSpec, UpstreamUrl,
};

/// GCP → AWS: the `keyless aws` flags, as keys.
#[derive(Clone, Debug, PartialEq)]
pub struct GcpToAwsProfile {
    pub role_arn: RoleArn,
    pub audience: String,
    /// `metadata`, `impersonate:EMAIL`, `file:PATH` (made absolute) or `command:CMD`.
    pub token_source: TokenSourceSpec,
    pub session_name: Option<SessionName>,
    pub duration: Option<u32>,
    pub region: Option<Region>,
    /// The session policy, read at load so that editing the policy file counts as a change.
    pub policy: Option<SessionPolicy>,
    pub policy_arns: Vec<String>,
    pub iamcredentials_url: Option<UpstreamUrl>,
    pub sts_endpoint: Option<UpstreamUrl>,
    /// `chain_roles` (or `chain_role`): roles assumed in turn after `role_arn`, with
    /// `external_id`, `source_identity`, `tags = {K = "V"}` and `transitive_tag_keys`.
    pub chain: RoleChain,
    /// Names its endpoints accept in `Host` besides their own (`allowed_hosts`).
    pub allowed_hosts: Vec<AllowedHost>,
    pub channels: Vec<Channel>,
}

/// A session policy file and the JSON it held when the configuration was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    pub path: PathBuf,
    pub text: String,
}

impl GcpToAwsProfile {
    /// The role whose credentials the profile delivers: the last of `chain_roles`, else
    /// `role_arn`.
    pub fn final_role_arn(&self) -> &RoleArn {
        self.chain.roles().last().unwrap_or(&self.role_arn)
    }

    /// The Google token source, with endpoints from the environment as the CLI reads them.
    pub fn google_token_source(&self) -> Result<SharedTokenSource, ProfileBuildError> {
        let iam = match &self.iamcredentials_url {
            Some(url) => Some(url.clone()),
            None => UpstreamUrl::from_env("KEYLESS_IAMCREDENTIALS_URL")?,
        };
        Ok(crate::source::registry::build(
            &self.token_source,
            &SourceContext {
                iamcredentials_url: iam,
                aws: crate::source::aws::AwsSourceOptions {
                    region: match &self.region {
                        Some(region) => Some(region.clone()),
                        None => Region::from_env()?,
                    },
                    ..Default::default()
                },
                sts_endpoint: match &self.sts_endpoint {
                    Some(url) => Some(url.clone()),
                    None => UpstreamUrl::from_env("KEYLESS_STS_ENDPOINT")?,
                },
                ..SourceContext::default()
            },
        )?)
    }

    /// The library's profile; the same one `keyless aws credentials` builds from its flags.
    /// Endpoints the file leaves out come from `KEYLESS_STS_ENDPOINT`, `AWS_ENDPOINT_URL_STS`,
    /// `AWS_REGION`..., as they do for the CLI: they describe the machine, not the profile.
    pub fn role_profile(&self) -> Result<AwsRoleProfile, ProfileBuildError> {
        let region = match &self.region {
            Some(region) => Some(region.clone()),
            None => Region::from_env()?,
        };
        let sts = match &self.sts_endpoint {
            Some(url) => Some(url.clone()),
            None => UpstreamUrl::from_env("KEYLESS_STS_ENDPOINT")?,
        };
        Ok(AwsRoleProfile {
            audit: Default::default(),
            token_source: self.google_token_source()?,
            audience: self.audience.clone(),
            request: crate::exchange::aws_sts::WebIdentityRequest {
                role_arn: self.role_arn.clone(),
                session_name: self.session_name.clone(),
                duration_seconds: self.duration,
                policy: self.policy.as_ref().map(|p| p.text.clone()),
                policy_arns: self.policy_arns.clone(),
            },
            endpoint: StsEndpoint::resolve(sts.as_ref(), region.as_ref())?,
            retry: RetryPolicy::default(),
            chain: self.chain.clone(),
        })
    }
}

/// GCP → AWS keys (flags of `keyless aws`) and its channels.
pub(super) const GCP_TO_AWS_KEYS: &[&str] = &[
    "role_arn",
    "session_name",
    "duration",
    "region",
    "policy",
    "policy_arn",
    "policy_arns",
    "sts_endpoint",
    "no_cache",
    "chain_role",
    "chain_roles",
    "external_id",
    "source_identity",
    "tag",
    "tags",
    "transitive_tag_key",
    "transitive_tag_keys",
];
pub(super) const GCP_TO_AWS_CHANNELS: &[&str] = &[
    "ecs_listen",
    "auth_token_file",
    "imds_listen",
    "token_file",
    "credentials_file",
    "credentials_profile",
];

/// The most of a session policy file keyless reads: AWS accepts policies of at most 2,048
/// characters, so anything much larger is a mistake (a wrong path, a device such as /dev/zero
/// that would never end).
pub(super) const MAX_SESSION_POLICY_BYTES: u64 = crate::private_file::MAX_SMALL_FILE_BYTES;

pub(super) fn read_session_policy(path: &Path) -> std::io::Result<String> {
    crate::private_file::read_capped(path, MAX_SESSION_POLICY_BYTES)
}

impl Checker<'_> {
    pub(super) fn gcp_to_aws(
        &mut self,
        ctx: &mut ProfileCtx<'_, '_, '_>,
        claims: &mut Vec<Claim>,
    ) -> Option<GcpToAwsProfile> {
        let before = self.problems.len();
        let role_arn = match ctx.keys.get("role_arn") {
            Some((_, v)) => self.string(v, &ctx.dotted("role_arn")).and_then(|arn| {
                RoleArn::parse(&arn)
                    .map_err(|e| {
                        self.problem(
                            ProblemKind::InvalidValue,
                            v.span(),
                            &ctx.dotted("role_arn"),
                            format!("role_arn: {e}"),
                            Some("copy the role's ARN from `aws iam get-role --role-name NAME --query Role.Arn`".into()),
                        )
                    })
                    .ok()
            }),
            None => {
                self.problem(
                    ProblemKind::MissingKey,
                    ctx.header.clone(),
                    &ctx.dotted("role_arn"),
                    format!("[{}] has GCP → AWS keys but no role_arn", ctx.table_key),
                    Some("add role_arn = \"arn:aws:iam::ACCOUNT:role/NAME\"".into()),
                );
                None
            }
        };
        let audience = match ctx.keys.get("audience") {
            Some((_, v)) => {
                let audience = self.string(v, &ctx.dotted("audience"));
                if let Some(a) = &audience {
                    if a.trim().is_empty() || a.trim() != a {
                        self.invalid(v, &ctx.dotted("audience"), "audience is empty or has surrounding spaces".into(), "the audience your role's trust policy expects, e.g. \"sts.amazonaws.com\"");
                    } else if is_provider_name(&normalize_audience(a)) {
                        self.invalid(v, &ctx.dotted("audience"), "audience is a workload identity provider, the audience of an AWS → GCP profile, but this profile has role_arn (GCP → AWS)".into(), "for GCP → AWS use the audience the role's trust policy expects (default \"sts.amazonaws.com\"); for AWS → GCP remove role_arn");
                    }
                }
                audience
            }
            None => Some(DEFAULT_AWS_AUDIENCE.to_string()),
        };
        let iamcredentials_url = self.opt_url(ctx, "iamcredentials_url");
        let source_key = ctx.dotted_as_written("source");
        let token_source = match ctx.keys.get("source") {
            Some((_, v)) => self
                .string(v, &source_key)
                .and_then(|text| {
                    let written = source_key.rsplit('.').next().unwrap_or("source");
                    if text.trim() == AWS_TOKEN_SOURCE {
                        self.invalid(
                            v,
                            &source_key,
                            format!(
                                "{written} = \"{AWS_TOKEN_SOURCE}\" is the AWS identity, which trades for Google tokens, but [{}] makes AWS credentials",
                                ctx.table_key
                            ),
                            &format!(
                                "for AWS credentials use a JWT source, one of {}; for Google tokens set target = \"gcp\" and a workload identity provider audience",
                                crate::source::registry::spellings()
                            ),
                        );
                        return None;
                    }
                    let spec = match crate::source::registry::parse(&text) {
                        Ok(spec) => spec,
                        Err(e) => {
                            self.invalid(
                                v,
                                &source_key,
                                format!("{written} {text:?} is not a token source: {e}"),
                                &format!("use one of {}", crate::source::registry::spellings()),
                            );
                            return None;
                        }
                    };
                    // A relative `file:` path is relative to keyless.toml, not the working directory.
                    match (spec.name(), spec.argument()) {
                        ("file", Some(path)) => {
                            Some(spec.with_argument(self.resolve(path).display().to_string()))
                        }
                        _ => Some(spec),
                    }
                }),
            None => Some(TokenSourceSpec::new("metadata", None).expect("a valid spec")),
        };
        let session_name = ctx.keys.get("session_name").and_then(|(_, v)| {
            let s = self.string(v, &ctx.dotted("session_name"))?;
            SessionName::parse(&s)
                .map_err(|_| {
                    self.invalid(
                        v,
                        &ctx.dotted("session_name"),
                        format!("session_name {s:?} breaks STS's rules"),
                        "at least 2 characters of letters, digits and _+=,.@- (longer than 64 is shortened in the middle)",
                    )
                })
                .ok()
        });
        let duration = ctx
            .keys
            .get("duration")
            .and_then(|(_, v)| self.duration(v, &ctx.dotted("duration"), 900..=43200));
        let region = ctx
            .keys
            .get("region")
            .and_then(|(_, v)| self.region(v, &ctx.dotted("region")));
        let policy = ctx.keys.get("policy").and_then(|(_, v)| {
            let path = self.path(v, &ctx.dotted("policy"))?;
            let text = match read_session_policy(&path) {
                Ok(t) => t,
                Err(e) => {
                    self.invalid(
                        v,
                        &ctx.dotted("policy"),
                        format!("could not read the session policy {}: {e}", path.display()),
                        "policy is the path of a JSON session policy (relative to this file)",
                    );
                    return None;
                }
            };
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                self.invalid(
                    v,
                    &ctx.dotted("policy"),
                    format!("the session policy {} is not JSON: {e}", path.display()),
                    "fix the policy file, or remove `policy`",
                );
                return None;
            }
            Some(SessionPolicy {
                path,
                text: text.trim().to_string(),
            })
        });
        let mut policy_arns = Vec::new();
        for key in ["policy_arn", "policy_arns"] {
            if let Some((_, v)) = ctx.keys.get(key) {
                let dotted = ctx.dotted(key);
                for arn in self.string_list(v, &dotted).unwrap_or_default() {
                    if !arn.starts_with("arn:") || !arn.contains(":policy/") {
                        self.invalid(
                            v,
                            &dotted,
                            format!("{key}: {arn:?} is not a managed policy ARN"),
                            "e.g. \"arn:aws:iam::aws:policy/ReadOnlyAccess\"",
                        );
                    }
                    policy_arns.push(arn);
                }
                if policy_arns.len() > 10 {
                    self.invalid(
                        v,
                        &dotted,
                        format!(
                            "STS accepts at most 10 policy ARNs, got {}",
                            policy_arns.len()
                        ),
                        "combine them into fewer managed policies",
                    );
                }
            }
        }
        let sts_endpoint = self.opt_url(ctx, "sts_endpoint");
        let chain = self.role_chain(ctx, duration);
        if let Some((_, v)) = ctx.keys.get("no_cache") {
            self.boolean(v, &ctx.dotted("no_cache"));
        }

        // Channels.
        let mut channels = Vec::new();
        let auth_token_file = ctx
            .keys
            .get("auth_token_file")
            .and_then(|(_, v)| self.path(v, &ctx.dotted("auth_token_file")));
        match ctx.keys.get("ecs_listen") {
            Some((_, v)) => {
                if let Some(listen) = self.listen(v, ctx, "ecs_listen", claims) {
                    channels.push(Channel::EcsServer {
                        listen,
                        auth_token_file,
                    });
                }
            }
            None => {
                if let Some((k, _)) = ctx.keys.get("auth_token_file") {
                    self.problem(
                        ProblemKind::InvalidValue,
                        k.span(),
                        &ctx.dotted("auth_token_file"),
                        "auth_token_file protects the ECS-style endpoint, but there is no ecs_listen".into(),
                        Some("add ecs_listen = \"127.0.0.1:PORT\", or remove auth_token_file".into()),
                    );
                }
            }
        }
        if let Some((_, v)) = ctx.keys.get("imds_listen") {
            if let Some(listen) = self.listen(v, ctx, "imds_listen", claims) {
                channels.push(Channel::ImdsServer { listen });
            }
        }
        if let Some((_, v)) = ctx.keys.get("token_file") {
            if let Some(path) = self.path(v, &ctx.dotted("token_file")) {
                claims.push(Claim {
                    resource: ClaimedResource::File(path.clone()),
                    key: ctx.dotted("token_file"),
                    span: v.span(),
                });
                channels.push(Channel::TokenFile { path });
            }
        }
        let file = ctx.keys.get("credentials_file");
        let profile = ctx.keys.get("credentials_profile");
        if file.is_some() || profile.is_some() {
            let path = file.and_then(|(_, v)| self.path(v, &ctx.dotted("credentials_file")));
            let name = match profile {
                Some((_, v)) => self.string(v, &ctx.dotted("credentials_profile")),
                None => Some(ctx.name.to_string()),
            };
            if let Some(name) = name {
                let span = profile.or(file).map(|(_, v)| v.span()).unwrap_or_default();
                if let Err(e) = crate::deliver::aws_files::validate_profile_name(&name) {
                    self.problem(
                        ProblemKind::InvalidValue,
                        span.clone(),
                        &ctx.dotted("credentials_profile"),
                        format!("credentials_profile: {e}"),
                        Some("set credentials_profile to a plain name such as \"deploy\"".into()),
                    );
                }
                claims.push(Claim {
                    resource: ClaimedResource::CredentialsProfile(path.clone(), name.clone()),
                    key: ctx.dotted(if profile.is_some() {
                        "credentials_profile"
                    } else {
                        "credentials_file"
                    }),
                    span,
                });
                channels.push(Channel::CredentialsFile {
                    path: path.clone(),
                    profile: name,
                });
            }
        }
        let allowed_hosts = self.profile_allowed_hosts(ctx);
        self.require_channel(ctx, &channels, GCP_TO_AWS_CHANNELS);
        if self.problems.len() != before {
            return None;
        }
        Some(GcpToAwsProfile {
            role_arn: role_arn?,
            audience: audience?,
            token_source: token_source?,
            session_name,
            duration,
            region,
            policy,
            policy_arns,
            iamcredentials_url,
            sts_endpoint,
            chain: chain?,
            allowed_hosts,
            channels,
        })
    }

    /// `chain_roles`, `external_id`, `source_identity`, `tags` and `transitive_tag_keys`, each
    /// parsed as its flag is, then checked together ([`RoleChain::new`]).
    pub(super) fn role_chain(
        &mut self,
        ctx: &ProfileCtx<'_, '_, '_>,
        duration: Option<u32>,
    ) -> Option<RoleChain> {
        let before = self.problems.len();
        let mut roles = Vec::new();
        for key in ["chain_role", "chain_roles"] {
            let Some((_, v)) = ctx.keys.get(key) else {
                continue;
            };
            let dotted = ctx.dotted(key);
            for arn in self.string_list(v, &dotted).unwrap_or_default() {
                match RoleArn::parse(&arn) {
                    Ok(arn) => roles.push(arn),
                    Err(e) => self.invalid(
                        v,
                        &dotted,
                        format!("{key}: {e}"),
                        "each chained role is an ARN, e.g. \"arn:aws:iam::210987654321:role/partner-access\"",
                    ),
                }
            }
        }
        let external_id = self.parsed(ctx, "external_id", ExternalId::parse);
        let source_identity = self.parsed(ctx, "source_identity", SourceIdentity::parse);
        let mut tags = Vec::new();
        for key in ["tag", "tags"] {
            let Some((_, v)) = ctx.keys.get(key) else {
                continue;
            };
            let dotted = ctx.dotted(key);
            let parsed: Vec<Result<SessionTag, SpecError>> = match v.get_ref() {
                DeValue::Table(table) => {
                    let mut parsed = Vec::new();
                    for (k, value) in table.iter() {
                        match value.get_ref() {
                            DeValue::String(text) => {
                                parsed.push(SessionTag::new(k.get_ref(), text))
                            }
                            _ => self.wrong_type(value, &dotted, "a string"),
                        }
                    }
                    parsed
                }
                _ => self
                    .string_list(v, &dotted)
                    .unwrap_or_default()
                    .iter()
                    .map(|t| SessionTag::parse(t))
                    .collect(),
            };
            for tag in parsed {
                match tag {
                    Ok(tag) => tags.push(tag),
                    Err(e) => self.invalid(
                        v,
                        &dotted,
                        format!("{key}: {}", first_line(&e.to_string())),
                        "tags = { team = \"payments\" }: keys of 1 to 128 and values of at most 256 letters, digits, spaces and _.:/=+-@",
                    ),
                }
            }
        }
        let mut transitive = Vec::new();
        for key in ["transitive_tag_key", "transitive_tag_keys"] {
            let Some((_, v)) = ctx.keys.get(key) else {
                continue;
            };
            let dotted = ctx.dotted(key);
            for text in self.string_list(v, &dotted).unwrap_or_default() {
                match TagKey::parse(&text) {
                    Ok(k) => transitive.push(k),
                    Err(e) => self.invalid(
                        v,
                        &dotted,
                        format!("{key}: {}", first_line(&e.to_string())),
                        "a key of one of the tags",
                    ),
                }
            }
        }
        if self.problems.len() != before {
            return None;
        }
        match RoleChain::new(
            roles,
            external_id,
            source_identity,
            tags,
            transitive,
            duration,
        ) {
            Ok(chain) => Some(chain),
            Err(e) => {
                let (problem, hint) = match &e {
                    SpecError::InvalidRoleChain { problem, hint } => {
                        (problem.clone(), hint.to_string())
                    }
                    other => (other.to_string(), String::new()),
                };
                // Name the file's keys rather than the flags.
                let problem = problem
                    .replace("--chain-role", "chain_roles")
                    .replace("--duration ", "duration = ")
                    .replace("--external-id", "external_id")
                    .replace("--source-identity", "source_identity")
                    .replace("--transitive-tag-key", "transitive_tag_keys")
                    .replace("--tag", "tags");
                let at = ["chain_roles", "chain_role", "duration", "tags", "tag"]
                    .iter()
                    .find_map(|k| ctx.keys.get(k).map(|(key, _)| (k, key.span())))
                    .or_else(|| {
                        ["external_id", "source_identity", "transitive_tag_keys"]
                            .iter()
                            .find_map(|k| ctx.keys.get(k).map(|(key, _)| (k, key.span())))
                    });
                let (key, span) = at.unwrap_or((&"chain_roles", ctx.header.clone()));
                self.problem(
                    ProblemKind::InvalidValue,
                    span,
                    &ctx.dotted(key),
                    problem,
                    Some(hint),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;

    /// The AWS identity trades for Google tokens only: as the source of AWS credentials it is a
    /// problem at the key the file wrote.
    #[test]
    fn source_aws_is_only_for_google_tokens() {
        for key in ["source", "token_source"] {
            let (p, message) = problem(&format!(
                "[profile.p]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n{key} = \"aws\"\ntoken_file = \"t\"\n"
            ));
            assert_at(
                &p,
                ProblemKind::InvalidValue,
                &format!("profile.p.{key}"),
                3,
                1 + key.len() + 3,
            );
            assert!(
                message.contains(&format!("{key} = \"aws\" is the AWS identity")),
                "{message}"
            );
            assert!(message.contains("set target = \"gcp\""), "{message}");
        }
        let (p, message) = problem(
            "[profile.p]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\nsource = \"gcloud\"\ntoken_file = \"t\"\n",
        );
        assert_eq!(p.key, "profile.p.source", "{message}");
        assert!(
            message.contains("source \"gcloud\" is not a token source"),
            "{message}"
        );
    }

    /// The chaining keys become the profile's chain; AWS's one-hour limit and a bad value are
    /// problems at the key, in the file's words.
    #[test]
    fn chain_keys_build_the_role_chain_and_its_limits_are_problems() {
        let base = "[profile.p]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"\n\
                    chain_roles = [\"arn:aws:iam::210987654321:role/B\"]\n";
        let text = format!(
            "{base}external_id = \"partner-1\"\nsource_identity = \"alice\"\n\
             tags = {{ team = \"payments\", \"Cost Center\" = \"42\" }}\ntransitive_tag_keys = [\"team\"]\n"
        );
        let config = parse_at(&text).unwrap();
        let ProfileConfig::GcpToAws(p) = &config.profiles["p"] else {
            panic!("GCP → AWS")
        };
        assert_eq!(
            p.final_role_arn().as_str(),
            "arn:aws:iam::210987654321:role/B"
        );
        let parts = p.chain.cache_parts().join("|");
        assert!(parts.contains("team=payments"), "{parts}");
        assert!(parts.contains("Cost Center=42"), "{parts}");
        assert!(parts.contains("|alice|"), "{parts}");
        assert_eq!(p.role_profile().unwrap().final_role().name(), "B");

        let (p, message) = problem(&format!("{base}duration = \"2h\"\n"));
        assert_eq!(p.kind, ProblemKind::InvalidValue);
        assert_eq!(p.key, "profile.p.chain_roles");
        assert!(message.contains("1 hour session limit"), "{message}");
        assert!(message.contains("duration = 7200s"), "{message}");

        let (p, message) = problem(&format!("{base}external_id = \"x\"\n"));
        assert_eq!(p.key, "profile.p.external_id");
        assert!(message.contains("is not an external ID"), "{message}");

        let text = "[profile.p]\nrole_arn = \"arn:aws:iam::123456789012:role/A\"\ntoken_file = \"a.jwt\"\ntags = { team = \"x\" }\n";
        let (_, message) = problem(text);
        assert!(
            message.contains("tags applies to the roles of chain_roles"),
            "{message}"
        );
    }

    #[test]
    fn a_changed_key_or_policy_file_makes_the_profile_unequal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyless.toml");
        std::fs::write(
            dir.path().join("policy.json"),
            r#"{"Version":"2012-10-17"}"#,
        )
        .unwrap();
        let text = |session: &str| {
            format!(
                "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\ntoken_file = \"a.jwt\"\n\
                 [profile.b]\nrole_arn = \"arn:aws:iam::123456789012:role/b\"\nsession_name = \"{session}\"\n\
                 policy = \"policy.json\"\ntoken_file = \"b.jwt\"\n"
            )
        };
        let first = parse(&text("one"), &path).unwrap();
        let second = parse(&text("two"), &path).unwrap();
        assert_eq!(first.profiles["a"], second.profiles["a"]);
        assert_ne!(first.profiles["b"], second.profiles["b"]);
        std::fs::write(
            dir.path().join("policy.json"),
            r#"{"Version":"2012-10-17","Statement":[]}"#,
        )
        .unwrap();
        let third = parse(&text("one"), &path).unwrap();
        assert_ne!(
            first.profiles["b"], third.profiles["b"],
            "policy content counts"
        );
    }

    /// Found reviewing what the keyless_toml fuzz target can reach: a policy path naming a
    /// device that never ends (or a huge file) made the load read forever.
    #[test]
    fn a_policy_file_that_never_ends_is_refused() {
        let text = "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\n\
                    policy = \"/dev/zero\"\ntoken_file = \"a.jwt\"\n";
        let (p, _) = problem(text);
        assert_eq!(p.kind, ProblemKind::InvalidValue);
        assert!(p.message.contains("larger than 64 KiB"), "{}", p.message);
    }
}
