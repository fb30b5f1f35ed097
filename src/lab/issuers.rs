//! OIDC issuers besides Google, each with its own signing key, discovery document and JWKS: a
//! GitHub Actions token service and a Kubernetes cluster's service-account issuer.
//!
//! GitHub's service answers `GET /github/idtoken?api-version=2.0&audience=AUD` with
//! `Authorization: Bearer REQUEST_TOKEN` as the runner's `ACTIONS_ID_TOKEN_REQUEST_URL` does
//! (`{"count", "value"}`, 401 without a bearer token, 403 with a wrong one) and mints the claims
//! GitHub documents. The Kubernetes issuer writes projected tokens (`aud` an array,
//! `kubernetes.io` claims) to files, atomically, as the kubelet does. The lab's STS verifies
//! either issuer's tokens with that issuer's key ([`LabState::signing_key_for`]) once the account
//! has an IAM OIDC provider for it ([`super::LabConfig::oidc_providers`]).

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::google_keys::GoogleSigningKey;
use super::state::LabState;
use crate::secret::Secret;

/// Where GitHub's token service is mounted on the Google APIs listener.
pub const GITHUB_PREFIX: &str = "/github";
/// Where the Kubernetes issuer's discovery and JWKS are mounted.
pub const KUBERNETES_PREFIX: &str = "/k8s";

/// The GitHub Actions job the token service stands for.
#[derive(Debug, Clone)]
pub struct LabGithubActions {
    /// `iss`: `https://token.actions.githubusercontent.com` (register it in `oidc_providers`).
    pub issuer: String,
    /// `ORG/REPO`.
    pub repository: String,
    /// `refs/heads/main`.
    pub git_ref: String,
    /// `push`, `pull_request`, `workflow_dispatch`...
    pub event_name: String,
    /// The job's environment, if any: `sub` is then `repo:ORG/REPO:environment:NAME`.
    pub environment: Option<String>,
    /// `GITHUB_RUN_ID`.
    pub run_id: String,
    /// How long its tokens live (GitHub: about five minutes).
    pub token_lifetime: std::time::Duration,
}

impl LabGithubActions {
    /// `repo:ORG/REPO:environment:NAME` or `repo:ORG/REPO:ref:REF`, as GitHub builds `sub`.
    pub fn subject(&self) -> String {
        match &self.environment {
            Some(env) => format!("repo:{}:environment:{env}", self.repository),
            None => format!("repo:{}:ref:{}", self.repository, self.git_ref),
        }
    }
}

/// A Kubernetes cluster's service-account token issuer.
#[derive(Debug, Clone)]
pub struct LabKubernetes {
    /// `iss` (EKS: `https://oidc.eks.REGION.amazonaws.com/id/ID`; register it in `oidc_providers`).
    pub issuer: String,
    /// The audiences projected tokens are made for (`["sts.amazonaws.com"]`).
    pub audiences: Vec<String>,
    /// `expirationSeconds` of the projected volume (Kubernetes: at least 600).
    pub token_lifetime: std::time::Duration,
}

/// The issuers' keys and the token service's state.
pub(crate) struct IssuersState {
    pub github_key: Arc<GoogleSigningKey>,
    pub kubernetes_key: Arc<GoogleSigningKey>,
    /// What `ACTIONS_ID_TOKEN_REQUEST_TOKEN` holds.
    pub github_request_token: Secret,
    pub github_tokens_minted: AtomicU64,
    /// The next this many GitHub tokens are minted already expired (refresh tests).
    pub github_expire_next: AtomicU32,
}

impl IssuersState {
    pub fn new() -> Self {
        Self {
            github_key: shared_key(&GITHUB_KEY),
            kubernetes_key: shared_key(&KUBERNETES_KEY),
            github_request_token: Secret::new(super::ids::container_authorization_token()),
            github_tokens_minted: AtomicU64::new(0),
            github_expire_next: AtomicU32::new(0),
        }
    }
}

static GITHUB_KEY: OnceLock<Arc<GoogleSigningKey>> = OnceLock::new();
static KUBERNETES_KEY: OnceLock<Arc<GoogleSigningKey>> = OnceLock::new();

/// One key per issuer per process (RSA key generation is slow in debug builds).
fn shared_key(cell: &OnceLock<Arc<GoogleSigningKey>>) -> Arc<GoogleSigningKey> {
    cell.get_or_init(|| Arc::new(GoogleSigningKey::generate()))
        .clone()
}

impl LabState {
    /// The key that signs tokens of `iss`: the GitHub or Kubernetes issuer's own, else the
    /// lab's (Google's, and the tokens tests sign for other registered issuers).
    pub(crate) fn signing_key_for(&self, iss: Option<&str>) -> &GoogleSigningKey {
        let github = self
            .config
            .github_actions
            .as_ref()
            .map(|g| g.issuer.as_str());
        let kubernetes = self.config.kubernetes.as_ref().map(|k| k.issuer.as_str());
        match iss {
            Some(iss) if Some(iss) == github => &self.issuers.github_key,
            Some(iss) if Some(iss) == kubernetes => &self.issuers.kubernetes_key,
            _ => &self.key,
        }
    }

    /// A GitHub Actions token for `audience` (GitHub's default: `https://github.com/OWNER`).
    pub(crate) fn mint_github_token(&self, audience: Option<&str>) -> Option<String> {
        let github = self.config.github_actions.as_ref()?;
        let owner = github.repository.split('/').next().unwrap_or_default();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let expired = self
            .issuers
            .github_expire_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let lifetime = if expired {
            0
        } else {
            i64::try_from(github.token_lifetime.as_secs()).unwrap_or(300)
        };
        let (iat, exp) = if expired {
            (now - 600, now - 60)
        } else {
            (now, now + lifetime)
        };
        let mut claims = json!({
            "jti": uuid(&rand::random::<[u8; 16]>()),
            "sub": github.subject(),
            "aud": audience.map_or_else(|| format!("https://github.com/{owner}"), str::to_string),
            "ref": github.git_ref,
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "repository": github.repository,
            "repository_owner": owner,
            "repository_owner_id": "1000001",
            "repository_id": "2000002",
            "repository_visibility": "private",
            "run_id": github.run_id,
            "run_number": "7",
            "run_attempt": "1",
            "actor": "octocat",
            "actor_id": "583231",
            "workflow": "deploy",
            "workflow_ref": format!("{}/.github/workflows/deploy.yml@{}", github.repository, github.git_ref),
            "job_workflow_ref": format!("{}/.github/workflows/deploy.yml@{}", github.repository, github.git_ref),
            "event_name": github.event_name,
            "ref_type": "branch",
            "runner_environment": "github-hosted",
            "iss": github.issuer,
            "nbf": iat - 5,
            "iat": iat,
            "exp": exp,
        });
        if let Some(env) = &github.environment {
            claims["environment"] = env.clone().into();
        }
        let token = self.issuers.github_key.sign(&claims);
        self.record(&token);
        self.issuers
            .github_tokens_minted
            .fetch_add(1, Ordering::Relaxed);
        Some(token)
    }

    /// A projected token of the cluster for `system:serviceaccount:NAMESPACE:NAME`.
    pub(crate) fn mint_kubernetes_token(&self, namespace: &str, name: &str) -> Option<String> {
        let cluster = self.config.kubernetes.as_ref()?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let lifetime = i64::try_from(cluster.token_lifetime.as_secs()).unwrap_or(3600);
        let uid = |what: &str| {
            uuid(&sha2::Sha256::digest(format!("{what}/{namespace}/{name}").as_bytes())[..16])
        };
        let token = self.issuers.kubernetes_key.sign(&json!({
            "aud": cluster.audiences,
            "exp": now + lifetime,
            "iat": now,
            "nbf": now,
            "iss": cluster.issuer,
            "jti": uuid(&rand::random::<[u8; 16]>()),
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "kubernetes.io": {
                "namespace": namespace,
                "node": {"name": "ip-10-0-0-1.ec2.internal", "uid": uid("node")},
                "pod": {"name": format!("{name}-6d4cf56db6-x7k2p"), "uid": uid("pod")},
                "serviceaccount": {"name": name, "uid": uid("serviceaccount")},
            },
        }));
        self.record(&token);
        Some(token)
    }
}

/// The issuers' routes, mounted on the Google APIs listener.
pub(crate) fn router() -> Router<Arc<LabState>> {
    Router::new()
        .route(&format!("{GITHUB_PREFIX}/idtoken"), get(github_token))
        .route(
            &format!("{GITHUB_PREFIX}/.well-known/openid-configuration"),
            get(github_discovery),
        )
        .route(
            &format!("{GITHUB_PREFIX}/.well-known/jwks"),
            get(github_jwks),
        )
        .route(
            &format!("{KUBERNETES_PREFIX}/.well-known/openid-configuration"),
            get(kubernetes_discovery),
        )
        .route(
            &format!("{KUBERNETES_PREFIX}/openid/v1/jwks"),
            get(kubernetes_jwks),
        )
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such issuer in this lab").into_response()
}

/// `GET …/idtoken?audience=AUD` with the request token, as the runner's token service.
async fn github_token(
    State(state): State<Arc<LabState>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if state.config.github_actions.is_none() {
        return not_found();
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(bearer) = bearer else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials: no bearer token"})),
        )
            .into_response();
    };
    let expected = state.issuers.github_request_token.expose().as_bytes();
    if !bool::from(bearer.as_bytes().ct_eq(expected)) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "The request token is not valid for this job"})),
        )
            .into_response();
    }
    let audience = query
        .iter()
        .find(|(k, _)| k == "audience")
        .map(|(_, v)| v.as_str());
    match state.mint_github_token(audience) {
        Some(value) => Json(json!({"count": value.len(), "value": value})).into_response(),
        None => not_found(),
    }
}

fn discovery(issuer: &str, jwks_uri: String, claims: &[&str]) -> Response {
    Json(json!({
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": claims,
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
    }))
    .into_response()
}

async fn github_discovery(State(state): State<Arc<LabState>>) -> Response {
    let Some(github) = &state.config.github_actions else {
        return not_found();
    };
    discovery(
        &github.issuer,
        format!(
            "{}{GITHUB_PREFIX}/.well-known/jwks",
            state.google_apis_url()
        ),
        &[
            "sub",
            "aud",
            "exp",
            "iat",
            "iss",
            "jti",
            "nbf",
            "ref",
            "repository",
            "repository_owner",
            "job_workflow_ref",
            "event_name",
            "environment",
        ],
    )
}

async fn github_jwks(State(state): State<Arc<LabState>>) -> Response {
    if state.config.github_actions.is_none() {
        return not_found();
    }
    Json(json!({"keys": [state.issuers.github_key.jwk()]})).into_response()
}

async fn kubernetes_discovery(State(state): State<Arc<LabState>>) -> Response {
    let Some(cluster) = &state.config.kubernetes else {
        return not_found();
    };
    discovery(
        &cluster.issuer,
        format!(
            "{}{KUBERNETES_PREFIX}/openid/v1/jwks",
            state.google_apis_url()
        ),
        &["sub", "aud", "exp", "iat", "iss", "nbf", "kubernetes.io"],
    )
}

async fn kubernetes_jwks(State(state): State<Arc<LabState>>) -> Response {
    if state.config.kubernetes.is_none() {
        return not_found();
    }
    Json(json!({"keys": [state.issuers.kubernetes_key.jwk()]})).into_response()
}

/// Writes `token` to `path` as the kubelet does: whole or not at all (a temp file renamed).
pub(crate) fn write_atomically(path: &Path, token: &str) -> std::io::Result<()> {
    crate::private_file::write_private_file_atomically(path, token.as_bytes())
}

/// The `iss` a JWT claims, unverified: which issuer's key to verify it with.
pub(crate) fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// 16 bytes written as a UUID (`8-4-4-4-12` hex digits).
fn uuid(bytes: &[u8]) -> String {
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{demo_lab, http, xml_text};
    use super::super::Lab;
    use super::*;

    fn claims_of(token: &str) -> Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    async fn assume(lab: &Lab, role: &str, token: &str) -> (u16, String) {
        let role_arn = lab.role_arn(role);
        let r = http()
            .post(lab.aws_sts_url())
            .form(&[
                ("Action", "AssumeRoleWithWebIdentity"),
                ("Version", "2011-06-15"),
                ("RoleArn", role_arn.as_str()),
                ("RoleSessionName", "ci"),
                ("WebIdentityToken", token),
            ])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The token service wants the job's bearer token (401 without one, 403 with another),
    /// mints GitHub's claims for the audience asked, and publishes its own key; STS accepts its
    /// tokens for the role that trusts the repository's main branch.
    #[tokio::test]
    async fn github_token_service_mints_githubs_claims_for_the_job() {
        let lab = demo_lab().await;
        let env: std::collections::HashMap<_, _> = lab.github_actions_env().into_iter().collect();
        let url = format!(
            "{}&audience=sts.amazonaws.com",
            env["ACTIONS_ID_TOKEN_REQUEST_URL"]
        );
        assert_eq!(http().get(&url).send().await.unwrap().status(), 401);
        let wrong = http()
            .get(&url)
            .bearer_auth("not-the-job")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403);
        let answer: Value = http()
            .get(&url)
            .bearer_auth(&env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = answer["value"].as_str().unwrap();
        assert_eq!(answer["count"], token.len());
        let claims = claims_of(token);
        assert_eq!(claims["iss"], "https://token.actions.githubusercontent.com");
        assert_eq!(claims["sub"], "repo:keyless-lab/app:ref:refs/heads/main");
        assert_eq!(claims["aud"], "sts.amazonaws.com");
        assert_eq!(claims["repository_owner"], "keyless-lab");
        assert_eq!(claims["event_name"], "push");
        assert!(claims["job_workflow_ref"]
            .as_str()
            .unwrap()
            .starts_with("keyless-lab/app/.github/workflows/"));
        assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 300);
        assert_eq!(lab.github_tokens_minted(), 1);

        let base = lab.google_apis_url();
        let discovery: Value = http()
            .get(format!("{base}/github/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(discovery["issuer"], claims["iss"]);
        let jwks: Value = http()
            .get(discovery["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
        assert_ne!(
            jwks["keys"][0]["kid"],
            lab.jwks()["keys"][0]["kid"],
            "GitHub signs with its own key"
        );

        let (status, body) = assume(&lab, "github-deploy", token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            xml_text(&body, "Provider").unwrap(),
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
        );
        assert_eq!(
            xml_text(&body, "SubjectFromWebIdentityToken").unwrap(),
            "repo:keyless-lab/app:ref:refs/heads/main"
        );
    }

    /// STS verifies each issuer's tokens with that issuer's key, refuses an issuer the account
    /// has no provider for as AWS does, and evaluates trust with the issuer's own keys.
    #[tokio::test]
    async fn sts_verifies_each_issuer_with_its_own_key() {
        let lab = demo_lab().await;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        // Signed with the lab's own key, not the GitHub issuer's.
        let forged = lab.state.key.sign(&json!({
            "iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
            "sub": "repo:keyless-lab/app:ref:refs/heads/main", "iat": now, "exp": now + 300
        }));
        let (status, body) = assume(&lab, "github-deploy", &forged).await;
        assert_eq!(
            (status, xml_text(&body, "Code").unwrap().as_str()),
            (400, "InvalidIdentityToken"),
            "{body}"
        );

        let unknown = lab.sign_claims(&json!({
            "iss": "https://idp.example.com", "aud": "sts.amazonaws.com", "sub": "x", "iat": now, "exp": now + 300
        }));
        let (_, body) = assume(&lab, "github-deploy", &unknown).await;
        assert_eq!(
            xml_text(&body, "Message").unwrap(),
            "No OpenIDConnect provider found in your account for https://idp.example.com"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        lab.write_kubernetes_token(&path, "default", "deployer")
            .unwrap();
        let projected = std::fs::read_to_string(&path).unwrap();
        let claims = claims_of(&projected);
        assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
        assert_eq!(claims["sub"], "system:serviceaccount:default:deployer");
        assert_eq!(
            claims["kubernetes.io"]["serviceaccount"]["name"],
            "deployer"
        );
        let (status, body) = assume(&lab, "k8s-deploy", &projected).await;
        assert_eq!(status, 200, "{body}");
        // A valid token of the cluster is still refused by the role that trusts GitHub.
        let (status, _) = assume(&lab, "github-deploy", &projected).await;
        assert_eq!(status, 403);
        assert!(
            lab.last_denial()
                .unwrap()
                .contains("allows Federated arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/KEYLESSLABCLUSTER0001"),
            "{:?}",
            lab.last_denial()
        );
        // Another service account of the same cluster is refused on HOST/PATH:sub.
        lab.write_kubernetes_token(&path, "default", "stranger")
            .unwrap();
        let (status, _) =
            assume(&lab, "k8s-deploy", &std::fs::read_to_string(&path).unwrap()).await;
        assert_eq!(status, 403);
        assert!(
            lab.last_denial().unwrap().contains(":sub"),
            "{:?}",
            lab.last_denial()
        );
    }

    /// The `github` source against the token service: a token for the audience asked; a
    /// request token of another job is refused with a hint, and is not worth retrying.
    #[tokio::test]
    async fn the_github_source_asks_the_token_service() {
        use crate::source::github::{GithubActions, GithubError};
        use crate::source::TokenSource;
        let lab = demo_lab().await;
        let env = lab.github_actions_env();
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let source = GithubActions::from_env(lookup).unwrap();
        let token = source
            .fetch(&http(), "https://example.com/aud")
            .await
            .unwrap();
        assert_eq!(token.claims().aud, "https://example.com/aud");
        assert_eq!(
            token.claims().sub,
            "repo:keyless-lab/app:ref:refs/heads/main"
        );
        assert!(source
            .cached_identity()
            .unwrap()
            .starts_with("repository=keyless-lab/app run=4242424242 attempt=1 "));

        let other_job = GithubActions::from_env(|name: &str| match name {
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN" => Some("another-jobs-token".to_string()),
            _ => lookup(name),
        })
        .unwrap();
        let err = other_job
            .fetch_token(&http(), "sts.amazonaws.com")
            .await
            .unwrap_err();
        assert!(
            matches!(err, GithubError::Refused { status: 403, .. }),
            "{err}"
        );
        assert!(!err.is_transient());
        let text = err.to_string();
        assert!(
            text.contains("permissions: id-token: write") && !text.contains("another-jobs-token"),
            "{text}"
        );
        assert_eq!(lab.github_tokens_minted(), 1);
    }

    /// Tokens asked to be expired come out expired, and STS says so.
    #[tokio::test]
    async fn expired_github_tokens_are_refused_as_expired() {
        let lab = demo_lab().await;
        lab.expire_next_github_tokens(1);
        let stale = lab.mint_github_token("sts.amazonaws.com");
        let (status, body) = assume(&lab, "github-deploy", &stale).await;
        assert_eq!(
            (status, xml_text(&body, "Code").unwrap().as_str()),
            (400, "ExpiredTokenException"),
            "{body}"
        );
        let fresh = lab.mint_github_token("sts.amazonaws.com");
        assert_eq!(assume(&lab, "github-deploy", &fresh).await.0, 200);
        assert_eq!(
            lab.github_tokens_minted(),
            0,
            "direct mints are not counted"
        );
    }
}
