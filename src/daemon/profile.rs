//! Starting one profile: its refreshers, then each channel (files written on refresh, local
//! endpoints); and why a profile could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::audit::AuditContext;
use crate::classify::{Class, Classify};
use crate::config::{Channel, ProfileConfig};
use crate::deliver::gce_metadata_server::{GceMetadataOptions, GceMetadataServer};
use crate::deliver::metrics::ProfileState;
use crate::deliver::{aws_files, ecs_server, imds_server, server};
use crate::exchange::aws_sts::RoleArn;
use crate::refresh::{
    AwsRoleUpstream, Clock, GoogleIdTokenUpstream, RefreshPolicy, Refresher, Upstream,
};

use super::file_channel::{keep_written, write_token_file};
use super::Daemon;

/// Reports a channel's first delivery attempt: `Err` says why it failed (secret-free).
pub(super) type FirstDelivery = oneshot::Receiver<Result<(), String>>;

/// A refresher's status, for `/metrics` and `/healthz`.
type StatusFn = Box<dyn Fn() -> crate::refresh::RefreshStatus + Send + Sync>;
/// How ready one of a profile's credentials (or endpoints) is, for the ready file.
type StateFn = Box<dyn Fn() -> ProfileState + Send + Sync>;

/// Why a profile could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The profile could not be turned into a working credential source.
    #[error("profile `{profile}`: {cause}")]
    Profile { profile: String, cause: String },
    /// A listener could not be bound (its address is taken, or beyond loopback).
    #[error("profile `{profile}`: {cause}")]
    Listen {
        profile: String,
        cause: server::ServerError,
    },
}

impl StartError {
    /// The profile it is about.
    pub fn profile(&self) -> &str {
        match self {
            Self::Profile { profile, .. } | Self::Listen { profile, .. } => profile,
        }
    }
}

impl Classify for StartError {
    /// A taken address is a failure (a restart may find it free); the rest is configuration.
    fn class(&self) -> Class {
        match self {
            Self::Listen {
                cause: server::ServerError::Bind { .. } | server::ServerError::Serve { .. },
                ..
            } => Class::Failure,
            _ => Class::Usage,
        }
    }
}

/// One started profile: its configuration (to compare on reload), tasks and metric names.
pub(super) struct RunningProfile {
    pub(super) config: ProfileConfig,
    /// Who may reach its endpoints (flags, the file's top level and the profile's own keys).
    pub(super) access: server::Access,
    pub(super) tasks: Vec<JoinHandle<()>>,
    pub(super) metric_names: Vec<String>,
    /// The GCE-style endpoints' views of the registry: their engines, made as requests ask for
    /// them, are unregistered with the profile.
    pub(super) owned_metrics: Vec<crate::deliver::metrics::MetricsRegistry>,
    /// Its refreshers' status, registered for `/metrics` only once it replaces the old version
    /// (both report under the same names).
    pub(super) unregistered_metrics: Vec<(String, StatusFn)>,
    /// Its credentials' readiness: the profile is as ready as the least ready one.
    pub(super) states: Vec<StateFn>,
    /// The generation that started it (unchanged profiles keep theirs across reloads).
    pub(super) started_generation: u64,
    /// `ok`, or why the first delivery failed (the refresher keeps retrying).
    pub(super) first_delivery: String,
    /// The ECS endpoints' tokens and the files they come from, re-read on SIGHUP.
    pub(super) auth_tokens: Vec<(PathBuf, ecs_server::AuthToken)>,
}

impl RunningProfile {
    /// The least ready of its credentials' states (`starting` when it holds none yet).
    pub(super) fn state(&self) -> ProfileState {
        self.states
            .iter()
            .map(|state| state())
            .reduce(ProfileState::worst)
            .unwrap_or(ProfileState::Starting)
    }

    /// Reads each ECS token file again and swaps in a changed token (compared by digest); a
    /// file that became unusable is reported and the old token stays.
    pub(super) fn reread_auth_tokens(&self, name: &str) {
        for (path, token) in &self.auth_tokens {
            match ecs_server::auth_token_from_file(path) {
                Ok(secret) => {
                    if token.replace_if_changed(secret) {
                        tracing::info!(
                            profile = %name,
                            path = %path.display(),
                            "the authorization token changed; the ECS endpoint now accepts the new one only"
                        );
                    }
                }
                Err(e) => tracing::error!(
                    profile = %name,
                    "{e}\n  the endpoint keeps accepting the token it had"
                ),
            }
        }
    }
}

impl Drop for RunningProfile {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Daemon {
    /// Starts `profile`'s refreshers and channels; returns the first-attempt signals.
    pub(super) async fn start(
        &self,
        name: &str,
        profile: ProfileConfig,
    ) -> Result<(RunningProfile, Vec<FirstDelivery>), StartError> {
        let access = self.access_for(&profile);
        let mut running = RunningProfile {
            config: profile.clone(),
            access: access.clone(),
            tasks: Vec::new(),
            metric_names: Vec::new(),
            owned_metrics: Vec::new(),
            unregistered_metrics: Vec::new(),
            states: Vec::new(),
            started_generation: self.generation,
            first_delivery: "pending".into(),
            auth_tokens: Vec::new(),
        };
        let mut first = Vec::new();
        let failed = |cause: String| StartError::Profile {
            profile: name.to_string(),
            cause,
        };
        match &profile {
            ProfileConfig::GcpToAws(p) => {
                let needs_role = p.channels.iter().any(|c| {
                    matches!(
                        c,
                        Channel::CredentialsFile { .. }
                            | Channel::EcsServer { .. }
                            | Channel::ImdsServer { .. }
                    )
                });
                let role = if needs_role {
                    let mut role_profile = p.role_profile().map_err(|e| failed(e.to_string()))?;
                    role_profile.audit = AuditContext::new(Some(name), "serve");
                    let upstream = AwsRoleUpstream {
                        profile: role_profile,
                        http: self.http.clone(),
                    };
                    Some(self.refresher(name.to_string(), upstream, &mut running))
                } else {
                    None
                };
                let id_token = if p
                    .channels
                    .iter()
                    .any(|c| matches!(c, Channel::TokenFile { .. }))
                {
                    let upstream = GoogleIdTokenUpstream {
                        source: p.google_token_source().map_err(|e| failed(e.to_string()))?,
                        audience: p.audience.clone(),
                        http: self.http.clone(),
                    };
                    Some(self.refresher(format!("{name}/id_token"), upstream, &mut running))
                } else {
                    None
                };
                for channel in &p.channels {
                    let (tx, rx) = oneshot::channel();
                    let task = start_channel(
                        name,
                        channel,
                        ChannelSources {
                            role: role.as_ref(),
                            id_token: id_token.as_ref(),
                            role_arn: p.final_role_arn(),
                            region: p.region.as_ref().map(crate::types::Region::as_str),
                            access: &access,
                        },
                        tx,
                        &mut running.auth_tokens,
                    )?;
                    running.tasks.push(task);
                    first.push(rx);
                }
            }
            ProfileConfig::AwsToGcp(p) => {
                let mut token_profile =
                    p.token_profile().await.map_err(|e| failed(e.to_string()))?;
                token_profile.audit = AuditContext::new(Some(name), "serve:gce");
                for channel in &p.channels {
                    let Channel::GceMetadataServer { listen } = channel else {
                        continue;
                    };
                    // Its engines are named after the profile and leave `/metrics` with it.
                    let metrics = self.registry.for_owner();
                    let endpoint = GceMetadataServer::with_metrics(
                        token_profile.clone(),
                        GceMetadataOptions {
                            profile_name: Some(name.to_string()),
                            ..GceMetadataOptions::default()
                        },
                        self.http.clone(),
                        metrics.clone(),
                    );
                    running.owned_metrics.push(metrics);
                    running.tasks.push(spawn_server(
                        name,
                        *listen,
                        server::Endpoint::GceMetadata,
                        &access,
                        endpoint.router(),
                    )?);
                    // Ready means a token is held: fetch the default one now, keep it fresh.
                    endpoint.warm();
                    let state = endpoint.clone();
                    running.states.push(Box::new(move || state.state()));
                }
            }
        }
        Ok((running, first))
    }

    /// A refresher kept fresh in the background and reported on `/metrics` as `metric_name`.
    fn refresher<U: Upstream>(
        &self,
        metric_name: String,
        upstream: U,
        running: &mut RunningProfile,
    ) -> Refresher<U> {
        let refresher = Refresher::new(
            metric_name.clone(),
            upstream,
            RefreshPolicy::default(),
            Clock::System,
        );
        running.tasks.push(refresher.spawn_keeper());
        let status = refresher.clone();
        running
            .unregistered_metrics
            .push((metric_name, Box::new(move || status.status())));
        let state = refresher.clone();
        running
            .states
            .push(Box::new(move || ProfileState::of(&state.status())));
        refresher
    }
}

/// Starts one channel's task. Hook: the server channels start here once merged.
fn start_channel(
    profile: &str,
    channel: &Channel,
    sources: ChannelSources<'_>,
    first: oneshot::Sender<Result<(), String>>,
    auth_tokens: &mut Vec<(PathBuf, ecs_server::AuthToken)>,
) -> Result<JoinHandle<()>, StartError> {
    let ChannelSources {
        role,
        id_token,
        role_arn,
        region,
        access,
    } = sources;
    let missing = || StartError::Profile {
        profile: profile.to_string(),
        cause: format!("{} has no credential to deliver", channel.key()),
    };
    match channel {
        Channel::TokenFile { path } => {
            // A minimal web-identity token file writer; to be unified with deliver/token_file.rs.
            let refresher = id_token.ok_or_else(missing)?.clone();
            let path = path.clone();
            let label = format!("token_file {}", path.display());
            Ok(tokio::spawn(keep_written(
                refresher,
                label,
                first,
                move |token: crate::source::google::IdToken| {
                    write_token_file(&path, token.secret().expose())
                },
            )))
        }
        Channel::CredentialsFile {
            path,
            profile: section,
        } => {
            let refresher = role.ok_or_else(missing)?.clone();
            let path = match path {
                Some(p) => p.clone(),
                None => aws_files::default_credentials_path().map_err(|e| StartError::Profile {
                    profile: profile.to_string(),
                    cause: e.to_string(),
                })?,
            };
            let section = section.clone();
            let label = format!("credentials_file {} [{section}]", path.display());
            Ok(tokio::spawn(keep_written(
                refresher,
                label,
                first,
                move |role: crate::exchange::aws_sts::AssumedRole| {
                    aws_files::write_credentials_profile(&path, &section, &role.credentials)
                        .map_err(|e| e.to_string())
                },
            )))
        }
        Channel::EcsServer {
            listen,
            auth_token_file,
        } => {
            let refresher = role.ok_or_else(missing)?.clone();
            let Some(path) = auth_token_file else {
                return Err(StartError::Profile {
                    profile: profile.to_string(),
                    cause: "ecs_listen needs auth_token_file: the endpoint refuses requests without the token, and a daemon has no terminal to print a random one to".into(),
                });
            };
            let token = ecs_server::auth_token_from_file(path)
                .map(ecs_server::AuthToken::new)
                .map_err(|e| StartError::Profile {
                    profile: profile.to_string(),
                    cause: e.to_string(),
                })?;
            let _ = first.send(Ok(()));
            let task = spawn_server(
                profile,
                *listen,
                server::Endpoint::EcsCredentials,
                access,
                ecs_server::router(refresher, token.clone()),
            )?;
            auth_tokens.push((path.clone(), token));
            Ok(task)
        }
        Channel::ImdsServer { listen } => {
            let refresher = role.ok_or_else(missing)?.clone();
            let identity = imds_server::InstanceIdentity::for_role(role_arn, region);
            let _ = first.send(Ok(()));
            spawn_server(
                profile,
                *listen,
                server::Endpoint::Imds,
                access,
                imds_server::router(refresher, identity),
            )
        }
        Channel::GceMetadataServer { .. } => Err(StartError::Profile {
            profile: profile.to_string(),
            cause: "gce_metadata_listen belongs to an AWS → GCP profile".into(),
        }),
    }
}

/// What a GCP → AWS profile's channels deliver from.
struct ChannelSources<'a> {
    role: Option<&'a Refresher<AwsRoleUpstream>>,
    id_token: Option<&'a Refresher<GoogleIdTokenUpstream>>,
    role_arn: &'a RoleArn,
    region: Option<&'a str>,
    /// Who may reach the endpoints.
    access: &'a server::Access,
}

/// Binds `listen` now (so a clash is reported at start) and serves `router` until the profile
/// stops (its task is aborted) or the daemon does.
fn spawn_server(
    profile: &str,
    listen: SocketAddr,
    endpoint: server::Endpoint,
    access: &server::Access,
    router: axum::Router,
) -> Result<JoinHandle<()>, StartError> {
    let listener =
        server::bind_now(listen, endpoint, access).map_err(|cause| StartError::Listen {
            profile: profile.to_string(),
            cause,
        })?;
    let name = profile.to_string();
    Ok(tokio::spawn(async move {
        if let Err(e) = server::serve(listener, router, std::future::pending()).await {
            tracing::error!(profile = %name, "{e}");
        }
    }))
}
