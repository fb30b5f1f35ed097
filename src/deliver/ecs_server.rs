//! An ECS-style container credentials endpoint, for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
//!
//! Every AWS SDK and the aws CLI already know how to fetch and refresh credentials from a
//! container endpoint, so serving one hands a role to unmodified programs for hours: they ask on
//! their own schedule, and the refresh engine behind it keeps one credential fresh for all of
//! them. Like the ECS agent it requires an `Authorization` token (compared in constant time: the
//! endpoint hands out credentials to whoever knows it), answers 401 without one and 403 with a
//! wrong one, and never serves an expired credential — an SDK gets a JSON error naming the cause.
//!
//! Paths: `GET /creds` (what the exported URI names) and `GET /` answer the same document.
//!
//! The token (`--auth-token-file`, `auth_token_file`) is read with
//! [`crate::private_file::read_private`]: never through a symbolic link, only from a file of
//! this user that nobody else may read, at most 4 KiB, and at least 32 bytes long. The daemon
//! re-reads it on SIGHUP and swaps it in when its digest changed ([`AuthToken`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::credentials::format_expiration;
use crate::deliver::server::SecretBody;
use crate::exchange::aws_sts::AssumedRole;
use crate::private_file::{read_private, write_private_file_atomically, PrivateReadError};
use crate::refresh::{Refresher, Upstream};
use crate::secret::Secret;

/// The path the exported `AWS_CONTAINER_CREDENTIALS_FULL_URI` names.
pub const CREDENTIALS_PATH: &str = "/creds";
/// The shortest authorization token accepted (a random one is 43 characters).
pub const MIN_AUTH_TOKEN_BYTES: usize = 32;
/// The largest authorization token file read (SDKs send the token as one header).
pub const MAX_AUTH_TOKEN_FILE_BYTES: u64 = 4096;

/// The token callers must present: shared by the endpoint and whoever may replace it (the
/// daemon, on SIGHUP). Cheap to clone; comparing takes a read lock and a constant-time compare.
#[derive(Clone)]
pub struct AuthToken {
    current: Arc<RwLock<HeldToken>>,
}

struct HeldToken {
    secret: Secret,
    /// SHA-256 of the token: a changed file is recognised without keeping a second copy.
    digest: [u8; 32],
}

impl HeldToken {
    fn new(secret: Secret) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(secret.expose().as_bytes()).into();
        Self { secret, digest }
    }
}

impl AuthToken {
    /// Holds `secret` as the token.
    pub fn new(secret: Secret) -> Self {
        Self {
            current: Arc::new(RwLock::new(HeldToken::new(secret))),
        }
    }

    /// Whether `candidate` (the `Authorization` value sent) is the token, in constant time.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let held = self.current.read().unwrap_or_else(|e| e.into_inner());
        held.secret.matches(candidate)
    }

    /// Makes `secret` the token if its digest differs from the held one's; true if it did.
    pub fn replace_if_changed(&self, secret: Secret) -> bool {
        let new = HeldToken::new(secret);
        let mut held = self.current.write().unwrap_or_else(|e| e.into_inner());
        if held.digest == new.digest {
            return false;
        }
        *held = new;
        true
    }
}

impl From<Secret> for AuthToken {
    fn from(secret: Secret) -> Self {
        Self::new(secret)
    }
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(****)")
    }
}

/// Why the authorization token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthTokenFileError {
    /// Unsafe (a link, not ours, readable by others), too large, or unreadable.
    #[error("the authorization token file is refused: {0}")]
    Unsafe(#[from] PrivateReadError),
    /// Not one line of text.
    #[error(
        "the authorization token file {} holds a line break or is not UTF-8, which the SDKs \
         refuse to send as a header\n  hint: write it without a newline (printf %s TOKEN > FILE), \
         or delete the file to have a random token written",
        path.display()
    )]
    NotOneLine { path: PathBuf },
    /// Shorter than [`MIN_AUTH_TOKEN_BYTES`].
    #[error(
        "the authorization token in {} is {len} bytes; at least {MIN_AUTH_TOKEN_BYTES} are \
         needed (the endpoint hands out credentials to whoever knows it)\n  hint: delete the \
         file to have a random 256-bit token written, or write a longer one \
         (head -c 32 /dev/urandom | base64 | tr -d '\\n' > FILE; chmod 600 FILE)",
        path.display()
    )]
    TooShort { path: PathBuf, len: usize },
    /// A new token could not be written there.
    #[error(
        "could not write the authorization token file {}: {cause}\n  hint: --auth-token-file \
         must name a file in an existing directory this user can write",
        path.display()
    )]
    Write {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
}

impl crate::classify::Classify for AuthTokenFileError {
    /// An unsafe, short or malformed token file is configuration to fix; failing to write a new
    /// one is not.
    fn class(&self) -> crate::classify::Class {
        match self {
            Self::Write { .. } => crate::classify::Class::Failure,
            _ => crate::classify::Class::Usage,
        }
    }
}

/// The endpoint's token from `path` (see the module doc for what is refused), or a new random
/// one written there (0600) when the file is missing or empty.
pub fn auth_token_from_file(path: &Path) -> Result<Secret, AuthTokenFileError> {
    let bytes = match read_private(path, MAX_AUTH_TOKEN_FILE_BYTES) {
        Ok(bytes) if bytes.is_empty() => return write_new_auth_token(path),
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return write_new_auth_token(path),
        Err(e) => return Err(e.into()),
    };
    let not_one_line = || AuthTokenFileError::NotOneLine {
        path: path.to_path_buf(),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| not_one_line())?;
    if text.contains(['\r', '\n']) {
        return Err(not_one_line());
    }
    if text.len() < MIN_AUTH_TOKEN_BYTES {
        return Err(AuthTokenFileError::TooShort {
            path: path.to_path_buf(),
            len: text.len(),
        });
    }
    Ok(Secret::new(text))
}

fn write_new_auth_token(path: &Path) -> Result<Secret, AuthTokenFileError> {
    let token = random_auth_token();
    write_private_file_atomically(path, token.expose().as_bytes()).map_err(|cause| {
        AuthTokenFileError::Write {
            path: path.to_path_buf(),
            cause,
        }
    })?;
    Ok(token)
}

/// What the handlers share: the credential, the token callers must present, and the last
/// answer rendered (SDKs ask for the same credential again and again: it is rendered once per
/// refresh, not once per request). The rendered answer is a [`SecretBody`]: when a refresh
/// replaces it, its bytes are wiped as soon as no response is still sending them.
struct Endpoint<U: Upstream<Value = AssumedRole>> {
    refresher: Refresher<U>,
    auth_token: AuthToken,
    rendered: Mutex<Option<(Arc<AssumedRole>, SecretBody)>>,
}

impl<U: Upstream<Value = AssumedRole>> Endpoint<U> {
    /// The document for `role`, rendered when `role` is not the one rendered last.
    fn body_for(&self, role: &Arc<AssumedRole>) -> Bytes {
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((from, body)) = rendered.as_ref() {
            if Arc::ptr_eq(from, role) {
                return body.body();
            }
        }
        let body = SecretBody::json(&ContainerCredentials::of(role));
        let bytes = body.body();
        // The previous document is dropped here (wiped once in-flight answers are sent).
        *rendered = Some((role.clone(), body));
        bytes
    }
}

/// The endpoint's routes: credentials from `refresher` for requests carrying `auth_token` (a
/// [`Secret`], or an [`AuthToken`] whose holder may replace it).
pub fn router<U: Upstream<Value = AssumedRole>>(
    refresher: Refresher<U>,
    auth_token: impl Into<AuthToken>,
) -> Router {
    let endpoint = Arc::new(Endpoint {
        refresher,
        auth_token: auth_token.into(),
        rendered: Mutex::new(None),
    });
    Router::new()
        .route("/", get(credentials::<U>))
        .route(CREDENTIALS_PATH, get(credentials::<U>))
        .with_state(endpoint)
        .layer(axum::middleware::from_fn(log_request))
}

/// A fresh random authorization token (256 bits, URL-safe), for when the user gives none.
pub fn random_auth_token() -> Secret {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A JSON error shaped like the ECS agent's, so SDKs show `Message` in their error.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"Code": code, "Message": message}))).into_response()
}

async fn credentials<U: Upstream<Value = AssumedRole>>(
    State(endpoint): State<Arc<Endpoint<U>>>,
    request: Request,
) -> Response {
    let Some(sent) = request.headers().get(header::AUTHORIZATION) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "AccessDenied",
            "The Authorization header is missing; set AWS_CONTAINER_AUTHORIZATION_TOKEN (or \
             AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) as `keyless aws serve` printed it.",
        );
    };
    if !endpoint.auth_token.matches(sent.as_bytes()) {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "The Authorization header does not carry this endpoint's token; use the value \
             `keyless aws serve` printed (or the one in its --auth-token-file).",
        );
    }
    match endpoint.refresher.get_shared().await {
        Ok((role, _)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            endpoint.body_for(&role),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "CredentialsUnavailable",
            &e.to_string(),
        ),
    }
}

/// The container-credentials document: `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`
/// (plain `YYYY-MM-DDTHH:MM:SSZ`, which every SDK parses) and `AccountId`.
pub fn container_credentials_json(role: &AssumedRole) -> serde_json::Value {
    serde_json::to_value(ContainerCredentials::of(role)).unwrap_or_default()
}

/// [`container_credentials_json`] borrowing the secrets, so rendering it makes no copies of
/// them outside the [`SecretBody`] it is written into.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerCredentials<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: Option<&'a str>,
    expiration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
}

impl<'a> ContainerCredentials<'a> {
    fn of(role: &'a AssumedRole) -> Self {
        let c = &role.credentials;
        Self {
            access_key_id: &c.access_key_id,
            secret_access_key: c.secret_access_key.expose(),
            token: c.session_token.as_ref().map(Secret::expose),
            expiration: c.expiration.map(format_expiration),
            account_id: account_of(&role.assumed_role_arn),
        }
    }
}

/// The account of `arn:aws:sts::ACCOUNT:assumed-role/...` (the fifth field), if it has one.
pub(crate) fn account_of(arn: &str) -> Option<&str> {
    arn.split(':')
        .nth(4)
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
}

/// One debug line per request: method, path, status, time. Never headers or bodies (they carry
/// the authorization token and the credentials).
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    // Nothing to log (the default): no copies of the method and path on the request path.
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        path = %super::server::escaped(&path),
        peer = ?peer,
        status = response.status().as_u16(),
        millis = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::credentials::AwsCredentials;
    use crate::refresh::{Clock, RefreshError, RefreshPolicy};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use time::OffsetDateTime;

    /// An upstream handing out numbered sessions of one role; it can be made to fail.
    #[derive(Clone, Default)]
    pub(crate) struct FakeSts {
        pub calls: Arc<AtomicU64>,
        pub failing: Arc<AtomicBool>,
    }

    impl Upstream for FakeSts {
        type Value = AssumedRole;
        async fn fetch(&self) -> Result<(AssumedRole, OffsetDateTime), RefreshError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.failing.load(Ordering::SeqCst) {
                return Err(RefreshError {
                    message: "AWS STS is unavailable (ServiceUnavailable)".into(),
                    transient: true,
                });
            }
            let expiration = OffsetDateTime::now_utc() + time::Duration::hours(1);
            Ok((
                AssumedRole {
                    credentials: AwsCredentials {
                        access_key_id: format!("ASIAFAKE{n:012}"),
                        secret_access_key: Secret::new("fake-secret-key"),
                        session_token: Some(Secret::new("fake-session-token")),
                        expiration: Some(expiration),
                    },
                    assumed_role_arn: "arn:aws:sts::123456789012:assumed-role/deploy/s".into(),
                    assumed_role_id: "AROAFAKE:s".into(),
                    subject_from_web_identity_token: None,
                    audience: None,
                    provider: None,
                    packed_policy_size: None,
                },
                expiration,
            ))
        }
    }

    /// Serves `router` on a random loopback port for the test's lifetime.
    pub(crate) async fn serve_for_test(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        format!("http://{addr}")
    }

    async fn start(fake: FakeSts) -> (String, Refresher<FakeSts>) {
        let refresher = Refresher::new("deploy", fake, RefreshPolicy::default(), Clock::System);
        let url = serve_for_test(router(refresher.clone(), Secret::new("s3cret-token"))).await;
        (url, refresher)
    }

    #[tokio::test]
    async fn serves_the_container_document_to_the_token_holder() {
        let (url, _) = start(FakeSts::default()).await;
        for path in ["/", CREDENTIALS_PATH] {
            let response = reqwest::Client::new()
                .get(format!("{url}{path}"))
                .header("Authorization", "s3cret-token")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let doc: serde_json::Value = response.json().await.unwrap();
            assert_eq!(doc["AccessKeyId"], "ASIAFAKE000000000001");
            assert_eq!(doc["SecretAccessKey"], "fake-secret-key");
            assert_eq!(doc["Token"], "fake-session-token");
            assert_eq!(doc["AccountId"], "123456789012");
            let exp = doc["Expiration"].as_str().unwrap();
            assert!(exp.len() == 20 && exp.ends_with('Z'), "{exp}");
        }
    }

    #[tokio::test]
    async fn refuses_a_missing_or_wrong_token_without_asking_upstream() {
        let fake = FakeSts::default();
        let (url, _) = start(fake.clone()).await;
        let client = reqwest::Client::new();
        let missing = client.get(format!("{url}/creds")).send().await.unwrap();
        assert_eq!(missing.status(), 401);
        let wrong = client
            .get(format!("{url}/creds"))
            .header("Authorization", "s3cret-tokem")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403);
        let body: serde_json::Value = wrong.json().await.unwrap();
        assert_eq!(body["Code"], "AccessDenied");
        assert!(!body.to_string().contains("s3cret"), "{body}");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn upstream_failure_is_a_503_naming_the_cause() {
        let fake = FakeSts::default();
        fake.failing.store(true, Ordering::SeqCst);
        let (url, _) = start(fake).await;
        let response = reqwest::Client::new()
            .get(format!("{url}/creds"))
            .header("Authorization", "s3cret-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["Code"], "CredentialsUnavailable");
        let message = body["Message"].as_str().unwrap();
        assert!(message.contains("ServiceUnavailable"), "{message}");
        assert!(message.contains("deploy"), "{message}");
    }

    #[test]
    fn random_tokens_differ_and_are_header_safe() {
        let (a, b) = (random_auth_token(), random_auth_token());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert!(axum::http::HeaderValue::from_str(a.expose()).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_token_file_must_be_private_plain_one_line_and_long_enough() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        // Missing: a random token is written, 0600, and read back as the same token.
        let made = auth_token_from_file(&path).unwrap();
        assert_eq!(auth_token_from_file(&path).unwrap(), made);
        let short = "s".repeat(MIN_AUTH_TOKEN_BYTES - 1);
        write_private_file_atomically(&path, short.as_bytes()).unwrap();
        let error = auth_token_from_file(&path).unwrap_err();
        assert!(
            matches!(error, AuthTokenFileError::TooShort { len: 31, .. }),
            "{error}"
        );
        assert!(
            !error.to_string().contains(&short),
            "the token reached the error"
        );
        let long = "L".repeat(MIN_AUTH_TOKEN_BYTES);
        write_private_file_atomically(&path, format!("{long}\n").as_bytes()).unwrap();
        assert!(matches!(
            auth_token_from_file(&path).unwrap_err(),
            AuthTokenFileError::NotOneLine { .. }
        ));
        write_private_file_atomically(&path, long.as_bytes()).unwrap();
        assert_eq!(auth_token_from_file(&path).unwrap().expose(), long);
        // A link to it is refused (and not replaced), as is a file others may read.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let error = auth_token_from_file(&link).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = auth_token_from_file(&path).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
        assert!(
            !error.to_string().contains(&long),
            "the token reached the error"
        );
    }

    /// The cached document is a `SecretBody` (the type says so); a refresh replacing it wipes
    /// the old one once no answer is still sending it.
    #[test]
    fn a_replaced_document_is_wiped() {
        let endpoint = Endpoint {
            refresher: Refresher::new(
                "deploy",
                FakeSts::default(),
                RefreshPolicy::default(),
                Clock::System,
            ),
            auth_token: AuthToken::new(Secret::new("t".repeat(32))),
            rendered: Mutex::new(None),
        };
        let _: &Mutex<Option<(Arc<AssumedRole>, SecretBody)>> = &endpoint.rendered;
        let role = |key: &str| {
            let mut role = block_on(FakeSts::default().fetch()).unwrap().0;
            role.credentials.access_key_id = key.into();
            Arc::new(role)
        };
        let (first, second) = (role("ASIAFIRST"), role("ASIASECOND"));
        let wiped = || crate::deliver::server::WIPED.with(|w| w.get());
        let before = wiped();
        let in_flight = endpoint.body_for(&first);
        assert_eq!(
            endpoint.body_for(&first),
            in_flight,
            "served from the cache"
        );
        let doc: serde_json::Value = serde_json::from_slice(&in_flight).unwrap();
        assert_eq!(doc, container_credentials_json(&first));
        endpoint.body_for(&second);
        assert_eq!(
            wiped(),
            before,
            "an answer is still sending the first document"
        );
        drop(in_flight);
        assert_eq!(wiped(), before + 1, "the replaced document was wiped");
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_replaced_token_is_the_only_one_accepted() {
        let token = AuthToken::new(Secret::new("a".repeat(32)));
        assert!(token.matches("a".repeat(32).as_bytes()));
        assert!(
            !token.replace_if_changed(Secret::new("a".repeat(32))),
            "same digest"
        );
        assert!(token.replace_if_changed(Secret::new("b".repeat(32))));
        assert!(!token.matches("a".repeat(32).as_bytes()));
        assert!(token.matches("b".repeat(32).as_bytes()));
        assert_eq!(format!("{token:?}"), "AuthToken(****)");
    }

    #[test]
    fn account_comes_from_the_assumed_role_arn() {
        assert_eq!(
            account_of("arn:aws:sts::123456789012:assumed-role/r/s"),
            Some("123456789012")
        );
        assert_eq!(account_of("nonsense"), None);
    }
}
