//! Where a profile's credentials go, and the listeners and files channels claim: two claims on
//! one resource, or a credential endpoint off loopback without `allow_remote`, are problems.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::DeValue;
use toml::Spanned;

use super::checker::{Checker, ProfileCtx};
use super::ProblemKind;

/// A way of handing a profile's credentials to programs.
///
/// The daemon starts one task (or server) per channel; which channels a build can run is the
/// daemon's business, the configuration only says what was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    /// GCP → AWS: the ECS container-credentials endpoint (`ecs_listen`, `auth_token_file`).
    EcsServer {
        listen: SocketAddr,
        auth_token_file: Option<PathBuf>,
    },
    /// GCP → AWS: the IMDSv2-style endpoint (`imds_listen`).
    ImdsServer { listen: SocketAddr },
    /// GCP → AWS: the Google ID token, for `AWS_WEB_IDENTITY_TOKEN_FILE` (`token_file`).
    TokenFile { path: PathBuf },
    /// GCP → AWS: a profile of the shared credentials file (`credentials_file`,
    /// `credentials_profile`); `path: None` is the SDKs' default file.
    CredentialsFile {
        path: Option<PathBuf>,
        profile: String,
    },
    /// AWS → GCP: the GCE-metadata-style endpoint (`gce_metadata_listen`).
    GceMetadataServer { listen: SocketAddr },
}

impl Channel {
    /// The key that asks for this channel.
    pub fn key(&self) -> &'static str {
        match self {
            Self::EcsServer { .. } => "ecs_listen",
            Self::ImdsServer { .. } => "imds_listen",
            Self::TokenFile { .. } => "token_file",
            Self::CredentialsFile { .. } => "credentials_file",
            Self::GceMetadataServer { .. } => "gce_metadata_listen",
        }
    }

    /// The address this channel listens on, if it is a server.
    pub fn listen(&self) -> Option<SocketAddr> {
        match self {
            Self::EcsServer { listen, .. }
            | Self::ImdsServer { listen }
            | Self::GceMetadataServer { listen } => Some(*listen),
            Self::TokenFile { .. } | Self::CredentialsFile { .. } => None,
        }
    }
}

/// A listener or file claimed by a channel, to find two claims on one resource.
pub(super) struct Claim {
    pub(super) resource: ClaimedResource,
    pub(super) key: String,
    pub(super) span: Range<usize>,
}

#[derive(PartialEq)]
pub(super) enum ClaimedResource {
    Listen(SocketAddr),
    File(PathBuf),
    CredentialsProfile(Option<PathBuf>, String),
}

pub(super) fn conflicts(a: &ClaimedResource, b: &ClaimedResource) -> bool {
    match (a, b) {
        (ClaimedResource::Listen(x), ClaimedResource::Listen(y)) => {
            x.port() != 0
                && x.port() == y.port()
                && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
        }
        (ClaimedResource::File(x), ClaimedResource::File(y)) => x == y,
        (ClaimedResource::File(x), ClaimedResource::CredentialsProfile(Some(y), _))
        | (ClaimedResource::CredentialsProfile(Some(y), _), ClaimedResource::File(x)) => x == y,
        (
            ClaimedResource::CredentialsProfile(f1, p1),
            ClaimedResource::CredentialsProfile(f2, p2),
        ) => f1 == f2 && p1 == p2,
        _ => false,
    }
}

impl Checker<'_> {
    /// A credential endpoint on a non-loopback address without `allow_remote` (`/metrics` holds
    /// no credential and may listen anywhere).
    pub(super) fn remote_listens(&mut self, claims: &[Claim]) {
        for claim in claims {
            let ClaimedResource::Listen(addr) = claim.resource else {
                continue;
            };
            if addr.ip().is_loopback() || claim.key == "metrics_listen" {
                continue;
            }
            self.problem(
                ProblemKind::InvalidValue,
                claim.span.clone(),
                &claim.key,
                format!(
                    "{} = \"{addr}\" is not a loopback address: anything that can reach it could \
                     take the credentials it hands out",
                    claim.key
                ),
                Some(
                    "listen on 127.0.0.1:PORT, or put allow_remote = true at the top of the file \
                     (or pass --allow-remote) if other hosts or containers must reach it"
                        .into(),
                ),
            );
        }
    }

    pub(super) fn duplicates(&mut self, claims: &[Claim]) {
        for (i, claim) in claims.iter().enumerate() {
            let Some(first) = claims[..i]
                .iter()
                .find(|c| conflicts(&c.resource, &claim.resource))
            else {
                continue;
            };
            let (line, column) = self.position(first.span.start);
            let (kind, what, hint) = match &claim.resource {
                ClaimedResource::Listen(addr) => (
                    ProblemKind::DuplicateListen,
                    format!("listen address {addr}"),
                    "give each listener its own port",
                ),
                ClaimedResource::File(path) => (
                    ProblemKind::DuplicateFile,
                    format!("file {}", path.display()),
                    "give each channel its own file",
                ),
                ClaimedResource::CredentialsProfile(_, profile) => (
                    ProblemKind::DuplicateFile,
                    format!("credentials profile [{profile}] of the same file"),
                    "give each one its own credentials_profile",
                ),
            };
            self.problem(
                kind,
                claim.span.clone(),
                &claim.key,
                format!(
                    "{} uses the {what}, already used by {} at line {line}, column {column}",
                    claim.key, first.key
                ),
                Some(hint.into()),
            );
        }
    }

    pub(super) fn require_channel(
        &mut self,
        ctx: &ProfileCtx<'_, '_, '_>,
        channels: &[Channel],
        keys: &[&str],
    ) {
        let asked = keys
            .iter()
            .any(|k| *k != "auth_token_file" && ctx.keys.contains_key(k));
        if channels.is_empty() && !asked && !self.reader.one_shot {
            let offered: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| *k != "auth_token_file")
                .collect();
            self.problem(
                ProblemKind::NoChannel,
                ctx.header.clone(),
                ctx.table_key,
                format!("[{}] delivers its credentials nowhere", ctx.table_key),
                Some(format!("add at least one of {}", offered.join(", "))),
            );
        }
    }

    pub(super) fn listen(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        ctx: &ProfileCtx<'_, '_, '_>,
        key: &str,
        claims: &mut Vec<Claim>,
    ) -> Option<SocketAddr> {
        let dotted = ctx.dotted(key);
        let addr = self.addr(value, &dotted)?;
        claims.push(Claim {
            resource: ClaimedResource::Listen(addr),
            key: dotted,
            span: value.span(),
        });
        Some(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn a_channel_of_the_other_direction_is_refused() {
        let (p, message) = problem(
            "[profile.deploy]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\ngce_metadata_listen = \"127.0.0.1:9912\"\n",
        );
        assert_at(
            &p,
            ProblemKind::WrongDirectionChannel,
            "profile.deploy.gce_metadata_listen",
            3,
            1,
        );
        assert!(message.contains("GCP → AWS (it has role_arn)"), "{message}");
        assert!(message.contains("ecs_listen"), "{message}");
    }

    #[test]
    fn a_non_loopback_endpoint_needs_allow_remote() {
        let text = r#"metrics_listen = "0.0.0.0:9090"
[profile.a]
role_arn = "arn:aws:iam::123456789012:role/a"
imds_listen = "0.0.0.0:9911"
"#;
        let (p, message) = problem(text);
        assert_at(
            &p,
            ProblemKind::InvalidValue,
            "profile.a.imds_listen",
            4,
            15,
        );
        assert!(message.contains("not a loopback address"), "{message}");
        assert!(message.contains("allow_remote = true"), "{message}");
        assert!(message.contains("--allow-remote"), "{message}");
        // The file's key or the flag accepts it; /metrics alone never needs it.
        let config = parse_at(&format!("allow_remote = true\n{text}")).unwrap();
        assert!(config.allow_remote);
        let reader = ReadFor {
            allow_remote: true,
            ..ReadFor::default()
        };
        let config = parse_for(text, Path::new("/etc/keyless/keyless.toml"), &reader).unwrap();
        assert!(!config.allow_remote);
        parse_at(&text.replace("0.0.0.0:9911", "127.0.0.1:9911")).unwrap();
    }

    #[test]
    fn duplicate_listen_addresses_across_profiles_name_both_places() {
        let text = r#"allow_remote = true
[profile.a]
role_arn = "arn:aws:iam::123456789012:role/a"
ecs_listen = "127.0.0.1:9911"
[profile.b]
audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x"
gce_metadata_listen = "0.0.0.0:9911"
"#;
        let (p, message) = problem(text);
        assert_at(
            &p,
            ProblemKind::DuplicateListen,
            "profile.b.gce_metadata_listen",
            7,
            23,
        );
        assert!(
            message.contains("already used by profile.a.ecs_listen at line 4, column 14"),
            "{message}"
        );
        // Port 0 means "any free port": never a clash.
        let text = text.replace(":9911", ":0");
        parse_at(&text).unwrap();
    }

    #[test]
    fn two_channels_writing_one_file_are_refused() {
        let (p, _) = problem(
            "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\ntoken_file = \"t.jwt\"\n\
             [profile.b]\nrole_arn = \"arn:aws:iam::123456789012:role/b\"\ntoken_file = \"./t.jwt\"\n",
        );
        assert_at(
            &p,
            ProblemKind::DuplicateFile,
            "profile.b.token_file",
            6,
            14,
        );
        let (p, message) = problem(
            "[profile.a]\nrole_arn = \"arn:aws:iam::123456789012:role/a\"\ncredentials_profile = \"x\"\n\
             [profile.b]\nrole_arn = \"arn:aws:iam::123456789012:role/b\"\ncredentials_profile = \"x\"\n",
        );
        assert_at(
            &p,
            ProblemKind::DuplicateFile,
            "profile.b.credentials_profile",
            6,
            23,
        );
        assert!(message.contains("credentials profile [x]"), "{message}");
    }

    #[test]
    fn a_profile_without_a_channel_says_which_to_add() {
        let (p, message) =
            problem("[profile.d]\nrole_arn = \"arn:aws:iam::123456789012:role/R\"\n");
        assert_at(&p, ProblemKind::NoChannel, "profile.d", 1, 10);
        assert!(message.contains("token_file"), "{message}");
    }
}
