//! Where an identity comes from: a **source** yields a *subject* for a target to trade.
//!
//! Two kinds of subject exist. A JWT (an OIDC ID token: Google's, a Kubernetes service
//! account's, a GitHub Actions job's, AWS outbound federation's, or whatever a file or command
//! holds) comes from a [`TokenSource`]; AWS credentials come from [`aws::AwsIdentitySource`]
//! (the aws-config chain) and are proven to Google by a signed `GetCallerIdentity`.
//!
//! Every JWT source is one file here implementing [`TokenSource`] plus one line in
//! [`registry::SOURCES`]; nothing outside this module names a particular source. Messages,
//! hints and cache keys come from the source ([`TokenSource::describe`],
//! [`TokenSource::cached_identity`]) and from the token's own issuer, never from an assumption
//! that the token is Google's.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine;

use crate::secret::Secret;

pub mod aws;
pub mod aws_oidc;
pub mod github;
pub mod google;
pub mod k8s;
pub mod local;
pub mod registry;

pub use registry::{SourceContext, SOURCES};

/// What [`TokenSource::fetch`] returns: boxed so that sources can live behind `dyn`.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<IdToken, SourceError>> + Send + 'a>>;

/// A token source shared by the exchanges, the refresh engine and the servers.
pub type SharedTokenSource = Arc<dyn TokenSource>;

/// A source of JWTs (OIDC ID tokens) for a target to trade.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A stable description (no secrets): part of the cache key and of every message.
    fn describe(&self) -> String;

    /// Who a token from this source would be, as far as can be known without the network or
    /// running anything: part of the credential cache's key, so credentials obtained for one
    /// identity are never served to another that the same source stands for later. `None`
    /// when it cannot be known now: then the cache is not used and the exchange reports the
    /// problem.
    fn cached_identity(&self) -> Option<String>;

    /// Whether the source mints a token for the audience asked for. A file, a command or a
    /// Kubernetes projected token carries whatever audience it was made with.
    fn chooses_audience(&self) -> bool {
        true
    }

    /// A fresh token for `audience`. Each call may go to the network, read a file or run a
    /// command: tokens are never cached, only what they buy.
    fn fetch<'a>(&'a self, http: &'a reqwest::Client, audience: &'a str) -> TokenFuture<'a>;

    /// [`Self::fetch`], and a warning naming the source when a token it could not mint for
    /// `audience` was made for another one: the target will refuse it, and the warning says why
    /// before the refusal does.
    fn fetch_for<'a>(&'a self, http: &'a reqwest::Client, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let token = self.fetch(http, audience).await?;
            if !self.chooses_audience() && !token.claims().aud.contains(audience) {
                tracing::warn!(
                    source = %self.describe(),
                    token_audience = %token.claims().aud.values().join(","),
                    expected = %audience,
                    "the token's audience is not the one the target expects; the target will likely refuse it (mint the token for that audience, or pass --audience / --token-audience)"
                );
            }
            Ok(token)
        })
    }
}

/// What can go wrong while obtaining a subject token, with what to do about it. Each source
/// with failures of its own adds one variant wrapping its error type.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `--token-source` did not parse; `hint` lists the registered spellings.
    #[error("unknown token source {spec:?}: {reason}\n  hint: use {spellings}")]
    UnknownTokenSource {
        spec: String,
        reason: String,
        spellings: String,
    },

    /// The metadata server could not be reached (not on GCE, or `GCE_METADATA_HOST` is wrong).
    #[error("could not reach the Google metadata server at {url}: {cause}\n  hint: outside GCE/GKE/Cloud Run use --token-source impersonate:EMAIL, file:PATH or command:CMD, or set GCE_METADATA_HOST")]
    MetadataUnreachable { url: String, cause: String },

    /// The metadata server answered, but not with a token.
    #[error("the Google metadata server at {url} answered {status}: {body}")]
    MetadataRefused {
        url: String,
        status: u16,
        body: String,
    },

    /// IAM Credentials refused to mint a token for the service account.
    #[error("IAM Credentials refused to mint a token for {service_account} ({status}): {message}\n  hint: the caller ({caller}) needs roles/iam.serviceAccountTokenCreator on {service_account}")]
    ImpersonationRefused {
        service_account: String,
        caller: String,
        status: u16,
        message: String,
    },

    /// IAM Credentials could not be reached.
    #[error("could not reach IAM Credentials at {url}: {cause}")]
    IamCredentialsUnreachable { url: String, cause: String },

    /// Application Default Credentials exist but cannot authorise impersonation.
    #[error("the application default credentials in {path} cannot be used: {reason}")]
    AdcUnusable { path: PathBuf, reason: String },

    /// The token file could not be read.
    #[error("could not read the token file {path}: {cause}")]
    FileUnreadable { path: PathBuf, cause: String },

    /// The token command failed or printed nothing.
    #[error("the token command `{command}` failed ({status}){stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },

    /// What we got does not look like a JWT, so AWS would refuse it anyway.
    #[error("the token from {origin} is not a JWT ({reason})")]
    NotAJwt { origin: String, reason: String },

    /// AWS STS `GetWebIdentityToken` (`aws-oidc`) gave no token.
    #[error(transparent)]
    AwsOidc(#[from] aws_oidc::AwsOidcError),

    /// The token source gave no token within what was left of the overall deadline.
    #[error("the token source {source_name} gave no token within {seconds:.1} s\n  hint: check that it answers (the metadata server, IAM Credentials, the token service or command); --deadline allows more time")]
    TimedOut { source_name: String, seconds: f64 },

    /// A Kubernetes projected token is missing or stale.
    #[error(transparent)]
    Kubernetes(#[from] k8s::KubernetesError),

    /// The GitHub Actions token service is unavailable or refused.
    #[error(transparent)]
    Github(#[from] github::GithubError),

    /// A file or command answered google-auth's executable-source JSON with a failure.
    #[error(transparent)]
    Executable(#[from] local::ExecutableError),
}

impl crate::classify::Classify for SourceError {
    fn class(&self) -> crate::classify::Class {
        use crate::classify::Class;
        match self {
            Self::UnknownTokenSource { .. } => Class::Usage,
            Self::Github(e) if e.is_configuration() => Class::Usage,
            Self::AwsOidc(e) if e.is_refusal() => Class::Refused,
            Self::ImpersonationRefused { status, .. } if *status < 500 && *status != 429 => {
                Class::Refused
            }
            _ if self.is_transient() => Class::Unavailable,
            _ => Class::Failure,
        }
    }
}

impl SourceError {
    /// Worth retrying: the metadata server or IAM Credentials may come back.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::MetadataUnreachable { .. }
            | Self::IamCredentialsUnreachable { .. }
            | Self::TimedOut { .. } => true,
            Self::MetadataRefused { status, .. } => *status >= 500 || *status == 429,
            Self::ImpersonationRefused { status, .. } => *status >= 500 || *status == 429,
            Self::Kubernetes(e) => e.is_transient(),
            Self::Github(e) => e.is_transient(),
            Self::AwsOidc(e) => e.is_transient(),
            _ => false,
        }
    }
}

pub use crate::policy::issuer::{Audience, IdTokenClaims};

/// An ID token (Google's, or any OIDC issuer's): the secret JWT and its (unverified) claims.
#[derive(Clone, Debug)]
pub struct IdToken {
    raw: Secret,
    claims: IdTokenClaims,
}

impl IdToken {
    /// Decodes the claims so that errors and session names can name the identity; `origin`
    /// says where the token came from in the error.
    pub fn parse(raw: Secret, origin: &str) -> Result<Self, SourceError> {
        let not_a_jwt = |reason: &str| SourceError::NotAJwt {
            origin: origin.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = raw.expose().split('.');
        let (Some(_header), Some(payload), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(not_a_jwt("expected three dot-separated parts"));
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| not_a_jwt("the payload is not base64url"))?;
        let claims: IdTokenClaims = serde_json::from_slice(&bytes)
            .map_err(|e| not_a_jwt(&format!("the payload lacks a claim AWS needs: {e}")))?;
        Ok(Self { raw, claims })
    }

    /// The claims, for messages and session names.
    pub fn claims(&self) -> &IdTokenClaims {
        &self.claims
    }

    /// The JWT itself; read only to put it on the wire.
    pub fn secret(&self) -> &Secret {
        &self.raw
    }
}
