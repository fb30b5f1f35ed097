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

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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
use crate::exchange::aws_sts::AssumedRole;
use crate::refresh::{Refresher, Upstream};
use crate::secret::Secret;

/// The path the exported `AWS_CONTAINER_CREDENTIALS_FULL_URI` names.
pub const CREDENTIALS_PATH: &str = "/creds";

/// What the handlers share: the credential, the token callers must present, and the last
/// answer rendered (SDKs ask for the same credential again and again: it is rendered once per
/// refresh, not once per request).
struct Endpoint<U: Upstream<Value = AssumedRole>> {
    refresher: Refresher<U>,
    auth_token: Secret,
    rendered: Mutex<Option<(Arc<AssumedRole>, Bytes)>>,
}

impl<U: Upstream<Value = AssumedRole>> Endpoint<U> {
    /// The document for `role`, rendered when `role` is not the one rendered last.
    fn body_for(&self, role: &Arc<AssumedRole>) -> Bytes {
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((from, body)) = rendered.as_ref() {
            if Arc::ptr_eq(from, role) {
                return body.clone();
            }
        }
        let body = Bytes::from(container_credentials_json(role).to_string());
        *rendered = Some((role.clone(), body.clone()));
        body
    }
}

/// The endpoint's routes: credentials from `refresher` for requests carrying `auth_token`.
pub fn router<U: Upstream<Value = AssumedRole>>(
    refresher: Refresher<U>,
    auth_token: Secret,
) -> Router {
    let endpoint = Arc::new(Endpoint {
        refresher,
        auth_token,
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
    let c = &role.credentials;
    let mut doc = json!({
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key.expose(),
        "Token": c.session_token.as_ref().map(Secret::expose),
        "Expiration": c.expiration.map(format_expiration),
    });
    if let Some(account) = account_of(&role.assumed_role_arn) {
        doc["AccountId"] = json!(account);
    }
    doc
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

    #[test]
    fn account_comes_from_the_assumed_role_arn() {
        assert_eq!(
            account_of("arn:aws:sts::123456789012:assumed-role/r/s"),
            Some("123456789012")
        );
        assert_eq!(account_of("nonsense"), None);
    }
}
