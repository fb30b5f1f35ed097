//! Profiles that end in Google tokens: the `keyless gcp` flags as keys, the subject (the AWS
//! identity or a JWT source) and the GCE-metadata-style channel.

use super::channels::{Channel, Claim};
use super::checker::{Checker, ProfileCtx};
use super::{ProblemKind, ProfileBuildError};
use crate::deliver::external_account::normalize_audience;
use crate::deliver::server::AllowedHost;
use crate::exchange::aws_sts::{RetryPolicy, RoleArn};
use crate::exchange::google_iam::Impersonation;
use crate::exchange::google_sts::{CLOUD_PLATFORM_SCOPE, DEFAULT_TOKEN_URL};
use crate::refresh::gcp_token::{
    default_token_audience, parse_token_source, GcpSubject, AWS_TOKEN_SOURCE,
};
use crate::refresh::GcpTokenProfile;
use crate::source::aws::{AwsIdentitySource, AwsSourceOptions};
use crate::source::google::DEFAULT_IAMCREDENTIALS_URL;
use crate::source::SourceContext;
use crate::types::{Region, TokenSourceSpec, UpstreamUrl};

/// AWS → GCP: the `keyless gcp` flags, as keys.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsToGcpProfile {
    /// Normalised to `//iam.googleapis.com/projects/N/locations/global/...`.
    pub audience: String,
    /// `aws` (the AWS identity; the default) or a JWT source (`file:` paths made absolute).
    pub token_source: TokenSourceSpec,
    /// The audience a JWT source mints for (default: the provider's https:// name).
    pub token_audience: Option<String>,
    pub service_account: Option<String>,
    pub scopes: Vec<String>,
    pub lifetime: Option<u32>,
    pub delegates: Vec<String>,
    pub aws_profile: Option<String>,
    pub aws_region: Option<Region>,
    pub assume_role: Option<String>,
    pub token_url: Option<UpstreamUrl>,
    pub iamcredentials_url: Option<UpstreamUrl>,
    /// Names its endpoint accepts in `Host` besides its own (`allowed_hosts`).
    pub allowed_hosts: Vec<AllowedHost>,
    pub channels: Vec<Channel>,
}

impl AwsToGcpProfile {
    /// The library's profile; the same one `keyless gcp token` builds from its flags. Google
    /// endpoints the file leaves out come from `KEYLESS_TOKEN_URL` and
    /// `KEYLESS_IAMCREDENTIALS_URL`, else Google's.
    pub async fn token_profile(&self) -> Result<GcpTokenProfile, ProfileBuildError> {
        let iamcredentials_url = match &self.iamcredentials_url {
            Some(url) => url.clone(),
            None => UpstreamUrl::from_env("KEYLESS_IAMCREDENTIALS_URL")?
                .unwrap_or_else(|| UpstreamUrl::builtin(DEFAULT_IAMCREDENTIALS_URL)),
        };
        let subject = if self.token_source.name() == AWS_TOKEN_SOURCE {
            GcpSubject::Aws(
                AwsIdentitySource::resolve(AwsSourceOptions {
                    profile: self.aws_profile.clone(),
                    region: self.aws_region.clone(),
                    assume_role: self.assume_role.clone(),
                    assume_role_session_name: None,
                })
                .await?,
            )
        } else {
            GcpSubject::Jwt {
                source: crate::source::registry::build(
                    &self.token_source,
                    &SourceContext {
                        iamcredentials_url: Some(iamcredentials_url.clone()),
                        // aws-oidc asks STS for its token as the AWS identity these keys name.
                        aws: AwsSourceOptions {
                            profile: self.aws_profile.clone(),
                            region: self.aws_region.clone(),
                            assume_role: self.assume_role.clone(),
                            assume_role_session_name: None,
                        },
                        ..SourceContext::default()
                    },
                )?,
                audience: self
                    .token_audience
                    .clone()
                    .unwrap_or_else(|| default_token_audience(&self.audience)),
            }
        };
        Ok(GcpTokenProfile {
            audit: Default::default(),
            subject,
            audience: self.audience.clone(),
            scopes: self.scopes.clone(),
            token_url: match &self.token_url {
                Some(url) => url.clone(),
                None => UpstreamUrl::from_env("KEYLESS_TOKEN_URL")?
                    .unwrap_or_else(|| UpstreamUrl::builtin(DEFAULT_TOKEN_URL)),
            },
            iamcredentials_url,
            impersonation: self.service_account.as_ref().map(|sa| Impersonation {
                service_account: sa.clone(),
                scopes: self.scopes.clone(),
                lifetime: self.lifetime,
                delegates: self.delegates.clone(),
            }),
            retry: RetryPolicy::default(),
        })
    }
}

/// AWS → GCP keys (flags of `keyless gcp`) and its channels.
pub(super) const AWS_TO_GCP_KEYS: &[&str] = &[
    "service_account",
    "scopes",
    "lifetime",
    "delegates",
    "aws_profile",
    "aws_region",
    "assume_role",
    "token_url",
    "token_audience",
];
pub(super) const AWS_TO_GCP_CHANNELS: &[&str] = &["gce_metadata_listen"];

/// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`
pub(super) fn is_provider_name(audience: &str) -> bool {
    let Some(rest) = audience.strip_prefix("//iam.googleapis.com/projects/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let id = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    matches!(
        parts.as_slice(),
        [number, "locations", "global", "workloadIdentityPools", pool, "providers", provider]
            if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) && id(pool) && id(provider)
    )
}

impl Checker<'_> {
    pub(super) fn aws_to_gcp(
        &mut self,
        ctx: &mut ProfileCtx<'_, '_, '_>,
        claims: &mut Vec<Claim>,
    ) -> Option<AwsToGcpProfile> {
        let before = self.problems.len();
        let audience = match ctx.keys.get("audience") {
            Some((_, v)) => self.string(v, &ctx.dotted("audience")).and_then(|a| {
                let normalized = normalize_audience(&a);
                if is_provider_name(&normalized) {
                    Some(normalized)
                } else {
                    self.invalid(v, &ctx.dotted("audience"), format!("audience {a:?} is not a workload identity provider"), "//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER (`gcloud iam workload-identity-pools providers describe PROVIDER --workload-identity-pool POOL --location global --format 'value(name)'` prints it)");
                    None
                }
            }),
            None => {
                self.problem(
                    ProblemKind::MissingKey,
                    ctx.header.clone(),
                    &ctx.dotted("audience"),
                    format!("[{}] has AWS → GCP keys but no audience", ctx.table_key),
                    Some("add audience = \"//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER\"".into()),
                );
                None
            }
        };
        let service_account = ctx.keys.get("service_account").and_then(|(_, v)| {
            let sa = self.string(v, &ctx.dotted("service_account"))?;
            if sa.contains('@') && !sa.contains(char::is_whitespace) {
                Some(sa)
            } else {
                self.invalid(
                    v,
                    &ctx.dotted("service_account"),
                    format!("service_account {sa:?} is not an email"),
                    "e.g. \"NAME@PROJECT.iam.gserviceaccount.com\"",
                );
                None
            }
        });
        let scopes = match ctx.keys.get("scopes") {
            Some((_, v)) => self
                .string_list(v, &ctx.dotted("scopes"))
                .unwrap_or_default(),
            None => vec![CLOUD_PLATFORM_SCOPE.to_string()],
        };
        let lifetime = ctx
            .keys
            .get("lifetime")
            .and_then(|(_, v)| self.duration(v, &ctx.dotted("lifetime"), 1..=43200));
        let delegates = match ctx.keys.get("delegates") {
            Some((_, v)) => self
                .string_list(v, &ctx.dotted("delegates"))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        if service_account.is_none() && !ctx.keys.contains_key("service_account") {
            for key in ["lifetime", "delegates"] {
                if let Some((k, _)) = ctx.keys.get(key) {
                    self.problem(
                        ProblemKind::InvalidValue,
                        k.span(),
                        &ctx.dotted(key),
                        format!("{key} applies to service account impersonation, but [{}] has no service_account", ctx.table_key),
                        Some(format!("add service_account = \"EMAIL\", or remove {key}")),
                    );
                }
            }
        }
        let aws_profile = ctx
            .keys
            .get("aws_profile")
            .and_then(|(_, v)| self.string(v, &ctx.dotted("aws_profile")));
        let aws_region = ctx
            .keys
            .get("aws_region")
            .and_then(|(_, v)| self.region(v, &ctx.dotted("aws_region")));
        let assume_role = ctx.keys.get("assume_role").and_then(|(_, v)| {
            let arn = self.string(v, &ctx.dotted("assume_role"))?;
            match RoleArn::parse(&arn) {
                Ok(_) => Some(arn),
                Err(e) => {
                    self.invalid(
                        v,
                        &ctx.dotted("assume_role"),
                        format!("assume_role: {e}"),
                        "the ARN of the AWS role to assume before federating",
                    );
                    None
                }
            }
        });
        let token_url = self.opt_url(ctx, "token_url");
        let iamcredentials_url = self.opt_url(ctx, "iamcredentials_url");
        let source_key = ctx.dotted_as_written("source");
        let written = source_key
            .rsplit('.')
            .next()
            .unwrap_or("source")
            .to_string();
        let token_source = match ctx.keys.get("source") {
            Some((_, v)) => {
                self.string(v, &source_key)
                    .and_then(|text| match parse_token_source(&text) {
                        // A relative `file:` path is relative to keyless.toml.
                        Ok(spec) => match (spec.name(), spec.argument()) {
                            ("file", Some(path)) => {
                                Some(spec.with_argument(self.resolve(path).display().to_string()))
                            }
                            _ => Some(spec),
                        },
                        Err(e) => {
                            self.invalid(
                                v,
                                &source_key,
                                format!("{written} {text:?} is not a token source: {e}"),
                                &format!(
                                    "use {AWS_TOKEN_SOURCE} (the default) or one of {}",
                                    crate::source::registry::spellings()
                                ),
                            );
                            None
                        }
                    })
            }
            None => Some(TokenSourceSpec::new(AWS_TOKEN_SOURCE, None).expect("a valid spec")),
        };
        let token_audience = ctx
            .keys
            .get("token_audience")
            .and_then(|(_, v)| self.string(v, &ctx.dotted("token_audience")));
        if let Some(spec) = token_source.as_ref() {
            // aws-oidc signs its STS call as an AWS identity, so it takes the AWS keys too.
            let aws_keys: &[&str] = if spec.name() == AWS_TOKEN_SOURCE {
                &["token_audience"]
            } else if spec.name() == crate::source::aws_oidc::AWS_OIDC.name {
                &[]
            } else {
                &["aws_profile", "aws_region", "assume_role"]
            };
            for key in aws_keys {
                if let Some((k, _)) = ctx.keys.get(key) {
                    self.problem(
                        ProblemKind::InvalidValue,
                        k.span(),
                        &ctx.dotted(key),
                        format!("{key} does not apply to {written} = {:?}", spec.to_string()),
                        Some(match spec.name() {
                            AWS_TOKEN_SOURCE => "token_audience is the audience of a JWT source's token; the AWS identity is bound to audience itself: remove it".into(),
                            _ => format!("{key} applies to {written} = \"aws\" or \"aws-oidc\" (an AWS identity): remove it"),
                        }),
                    );
                }
            }
        }
        let mut channels = Vec::new();
        if let Some((_, v)) = ctx.keys.get("gce_metadata_listen") {
            if let Some(listen) = self.listen(v, ctx, "gce_metadata_listen", claims) {
                channels.push(Channel::GceMetadataServer { listen });
            }
        }
        let allowed_hosts = self.profile_allowed_hosts(ctx);
        self.require_channel(ctx, &channels, AWS_TO_GCP_CHANNELS);
        if self.problems.len() != before {
            return None;
        }
        Some(AwsToGcpProfile {
            audience: audience?,
            token_source: token_source?,
            token_audience,
            service_account,
            scopes,
            lifetime,
            delegates,
            aws_profile,
            aws_region,
            assume_role,
            token_url,
            iamcredentials_url,
            allowed_hosts,
            channels,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;

    /// A `[defaults]` source is the → AWS profiles' (its meaning before → Google profiles took
    /// one): a → Google profile keeps `aws` unless it names its own. `aws-oidc` takes the AWS
    /// keys, since it signs its STS call as that AWS identity.
    #[test]
    fn a_defaults_source_stays_with_aws_profiles_and_aws_oidc_takes_the_aws_keys() {
        let provider =
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";
        let text = format!(
            "[defaults]\nsource = \"metadata\"\n\n\
             [profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n\
             credentials_file = \"creds\"\n\n\
             [profile.gcp]\naudience = \"{provider}\"\ngce_metadata_listen = \"127.0.0.1:9912\"\n\n\
             [profile.outbound]\naudience = \"{provider}\"\nsource = \"aws-oidc\"\n\
             aws_region = \"eu-west-1\"\ngce_metadata_listen = \"127.0.0.1:9913\"\n"
        );
        let config = parse_at(&text).unwrap();
        let ProfileConfig::GcpToAws(deploy) = &config.profiles["deploy"] else {
            panic!("deploy is → AWS");
        };
        assert_eq!(deploy.token_source.to_string(), "metadata");
        let ProfileConfig::AwsToGcp(gcp) = &config.profiles["gcp"] else {
            panic!("gcp is → Google");
        };
        assert_eq!(gcp.token_source.to_string(), "aws");
        let ProfileConfig::AwsToGcp(outbound) = &config.profiles["outbound"] else {
            panic!("outbound is → Google");
        };
        assert_eq!(outbound.token_source.to_string(), "aws-oidc");
        assert_eq!(
            outbound
                .aws_region
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("eu-west-1")
        );
    }

    /// AWS → GCP profiles take `token_source` (default `aws`) and `token_audience`; a JWT
    /// source's `file:` path is relative to the file, and AWS-only keys do not go with it.
    #[test]
    fn aws_to_gcp_profiles_name_their_token_source() {
        let provider =
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";
        let text = format!(
            "[profile.ci]\naudience = \"{provider}\"\ntoken_source = \"file:tokens/ci.jwt\"\n\
             token_audience = \"gcp\"\ngce_metadata_listen = \"127.0.0.1:9912\"\n\n\
             [profile.aws]\naudience = \"{provider}\"\ngce_metadata_listen = \"127.0.0.1:9913\"\n"
        );
        let config = parse_at(&text).unwrap();
        let ProfileConfig::AwsToGcp(ci) = &config.profiles["ci"] else {
            panic!("ci is AWS → GCP");
        };
        assert_eq!(
            ci.token_source.to_string(),
            "file:/etc/keyless/tokens/ci.jwt"
        );
        assert_eq!(ci.token_audience.as_deref(), Some("gcp"));
        let ProfileConfig::AwsToGcp(aws) = &config.profiles["aws"] else {
            panic!("aws is AWS → GCP");
        };
        assert_eq!(aws.token_source.to_string(), "aws");

        let (p, message) = problem(&format!(
            "[profile.ci]\naudience = \"{provider}\"\ntoken_source = \"file:/t\"\n\
             aws_profile = \"x\"\ngce_metadata_listen = \"127.0.0.1:9912\"\n"
        ));
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.ci.aws_profile",
            4,
            1,
        );
        assert!(
            message.contains("applies to token_source = \"aws\" or \"aws-oidc\""),
            "{message}"
        );
        let (p, message) = problem(&format!(
            "[profile.ci]\naudience = \"{provider}\"\ntoken_source = \"gcloud\"\n\
             gce_metadata_listen = \"127.0.0.1:9912\"\n"
        ));
        assert_eq!(p.key, "profile.ci.token_source", "{message}");
        assert!(
            message.contains("use aws (the default) or one of metadata"),
            "{message}"
        );
    }
}
