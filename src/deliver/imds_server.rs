//! An IMDSv2-style endpoint, for programs that only know the EC2 instance metadata service.
//!
//! Some tools (and older SDKs) take credentials only from instance metadata. On GCE the address
//! 169.254.169.254 belongs to Google's metadata server, so this emulation is reached through
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` (boto3, the aws CLI and the JS SDK honour it). It speaks
//! IMDSv2 only, as hardened instances do: `PUT /latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds` (1–21600, else 400; refused with 403 when relayed by a
//! proxy, i.e. carrying `X-Forwarded-For`) gives a session token, and every `GET` must carry a
//! live one in `X-aws-ec2-metadata-token` (else 401). Session tokens are kept hashed, and at
//! most [`MAX_SESSIONS`] of them: an overflowing client evicts the ones closest to expiry, never
//! grows our memory.
//!
//! Paths: `/latest/meta-data/iam/security-credentials/` (the role name) and `.../ROLE` (the
//! credentials), `/latest/meta-data/iam/info`, `/latest/dynamic/instance-identity/document`,
//! `/latest/meta-data/placement/region`, `.../placement/availability-zone` and
//! `/latest/meta-data/instance-id`. The instance profile and instance id are stand-ins derived
//! from the role and this host; the credentials are the role's, refreshed by the engine.
//!
//! Tools ask for the same credentials again and again: the credentials document is rendered
//! once per credential (its `LastUpdated` is when its access key was first served, as before)
//! and every answer shares its bytes; the credential is shared with the engine, not copied;
//! the role name, region, zone and instance id are answer bodies made once at start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::credentials::format_expiration;
use crate::deliver::server::SecretBody;
use crate::exchange::aws_sts::{AssumedRole, RoleArn};
use crate::refresh::{Refresher, Upstream};
use crate::secret::Secret;

/// The longest IMDSv2 session EC2 grants (6 hours).
pub const MAX_TTL_SECONDS: u64 = 21_600;
/// How many session tokens are remembered at once.
pub const MAX_SESSIONS: usize = 4096;

/// What the instance-identity paths report: the role's name and account, a region, and a
/// stable stand-in instance id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub role_name: String,
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
}

impl InstanceIdentity {
    /// The identity of an "instance" whose profile carries `role`, in `region` (default
    /// `us-east-1`, where IMDS-only tools would otherwise guess nothing). The instance id is
    /// derived from the host name and role, so it is stable across restarts.
    pub fn for_role(role: &RoleArn, region: Option<&str>) -> Self {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let digest = Sha256::digest(format!("{host}\n{}", role.as_str()).as_bytes());
        Self {
            role_name: role.name().to_string(),
            account_id: role.account().to_string(),
            region: region.unwrap_or("us-east-1").to_string(),
            instance_id: format!("i-{}", &hex::encode(digest)[..17]),
        }
    }

    fn instance_profile_arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:instance-profile/{}",
            self.account_id, self.role_name
        )
    }

    /// `AIPA` + 17 characters derived from the profile ARN, the shape of a real profile id.
    fn instance_profile_id(&self) -> String {
        let digest = Sha256::digest(self.instance_profile_arn().as_bytes());
        let id: String = hex::encode(digest)[..17].to_ascii_uppercase();
        format!("AIPA{id}")
    }
}

/// The live IMDSv2 session tokens, by SHA-256 (so lookups leak nothing useful through timing).
#[derive(Debug)]
pub struct SessionTokens {
    live: Mutex<HashMap<[u8; 32], Instant>>,
    capacity: usize,
}

impl SessionTokens {
    /// Remembers at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// A new random token valid for `ttl`; makes room by dropping expired tokens, then the ones
    /// closest to expiry.
    pub fn issue(&self, ttl: Duration) -> Secret {
        use base64::Engine as _;
        use rand::RngCore as _;
        let mut bytes = [0u8; 42];
        rand::thread_rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.len() >= self.capacity {
            live.retain(|_, expires| *expires > now);
        }
        while live.len() >= self.capacity {
            let soonest = live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k);
            match soonest {
                Some(key) => live.remove(&key),
                None => break,
            };
        }
        live.insert(hash(&token), now + ttl);
        Secret::new(token)
    }

    /// Whether `token` was issued here and has not expired.
    pub fn is_valid(&self, token: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(&hash(token))
            .is_some_and(|expires| *expires > Instant::now())
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What the handlers share. Tools ask for the same credentials again and again: the document
/// is rendered once per credential (not once per request) and every answer shares its bytes;
/// the identity's plain values are rendered once at start.
struct Endpoint<U: Upstream<Value = AssumedRole>> {
    refresher: Refresher<U>,
    identity: InstanceIdentity,
    /// `role_name`, `region`, its availability zone and `instance_id`, as answer bodies.
    role_name: Bytes,
    region: Bytes,
    zone: Bytes,
    instance_id: Bytes,
    sessions: SessionTokens,
    rendered: Mutex<Option<Rendered>>,
}

/// The credentials document last rendered, a [`SecretBody`]: when a refresh replaces it, its
/// bytes are wiped as soon as no response is still sending them.
struct Rendered {
    role: Arc<AssumedRole>,
    /// When its access key was first served: IMDS's `LastUpdated`.
    last_updated: OffsetDateTime,
    body: SecretBody,
}

impl<U: Upstream<Value = AssumedRole>> Endpoint<U> {
    fn new(refresher: Refresher<U>, identity: InstanceIdentity) -> Self {
        Self {
            refresher,
            role_name: Bytes::from(identity.role_name.clone()),
            region: Bytes::from(identity.region.clone()),
            zone: Bytes::from(format!("{}a", identity.region)),
            instance_id: Bytes::from(identity.instance_id.clone()),
            identity,
            sessions: SessionTokens::new(MAX_SESSIONS),
            rendered: Mutex::new(None),
        }
    }

    /// The credentials document for `role`, rendered when `role` is not the one rendered last
    /// (`now`: its `LastUpdated` when its access key is new).
    fn body_for(&self, role: &Arc<AssumedRole>, now: OffsetDateTime) -> Bytes {
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        let last_updated = match rendered.as_ref() {
            Some(last) if Arc::ptr_eq(&last.role, role) => return last.body.body(),
            Some(last) if last.role.credentials.access_key_id == role.credentials.access_key_id => {
                last.last_updated
            }
            _ => now,
        };
        let body = credentials_body(role, last_updated);
        let bytes = body.body();
        // The previous document is dropped here (wiped once in-flight answers are sent).
        *rendered = Some(Rendered {
            role: role.clone(),
            last_updated,
            body,
        });
        bytes
    }
}

/// The IMDSv2 routes, serving `refresher`'s credentials as the instance profile's role.
pub fn router<U: Upstream<Value = AssumedRole>>(
    refresher: Refresher<U>,
    identity: InstanceIdentity,
) -> Router {
    let endpoint = Arc::new(Endpoint::new(refresher, identity));
    Router::new()
        .route("/latest/api/token", put(issue_token::<U>))
        .fallback(metadata::<U>)
        .with_state(endpoint)
        .layer(axum::middleware::from_fn(super::ecs_server::log_request))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body.into()).into_response()
}

/// `PUT /latest/api/token`.
async fn issue_token<U: Upstream<Value = AssumedRole>>(
    State(endpoint): State<Arc<Endpoint<U>>>,
    headers: HeaderMap,
) -> Response {
    if headers.contains_key("x-forwarded-for") {
        // IMDSv2's guard against SSRF: a token request relayed by a proxy is refused.
        return text(StatusCode::FORBIDDEN, "Forbidden");
    }
    let ttl = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|t| (1..=MAX_TTL_SECONDS).contains(t));
    let Some(ttl) = ttl else {
        return text(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let token = endpoint.sessions.issue(Duration::from_secs(ttl));
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        SecretBody::text(token.expose()).body(),
    )
        .into_response();
    response.headers_mut().insert(
        "x-aws-ec2-metadata-token-ttl-seconds",
        HeaderValue::from(ttl),
    );
    response
}

/// Every other request: a `GET` with a live session token, then the path tree.
async fn metadata<U: Upstream<Value = AssumedRole>>(
    State(endpoint): State<Arc<Endpoint<U>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let token = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !endpoint.sessions.is_valid(token) {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let id = &endpoint.identity;
    let credentials_path = "/latest/meta-data/iam/security-credentials/";
    match uri.path() {
        "/latest/meta-data/iam/security-credentials"
        | "/latest/meta-data/iam/security-credentials/" => {
            text(StatusCode::OK, endpoint.role_name.clone())
        }
        "/latest/meta-data/iam/info" => Json(json!({
            "Code": "Success",
            "LastUpdated": format_expiration(OffsetDateTime::now_utc()),
            "InstanceProfileArn": id.instance_profile_arn(),
            "InstanceProfileId": id.instance_profile_id(),
        }))
        .into_response(),
        "/latest/dynamic/instance-identity/document" => Json(json!({
            "accountId": id.account_id,
            "architecture": "x86_64",
            "availabilityZone": format!("{}a", id.region),
            "imageId": "ami-00000000000000000",
            "instanceId": id.instance_id,
            "instanceType": "keyless.emulated",
            "pendingTime": "1970-01-01T00:00:00Z",
            "privateIp": "127.0.0.1",
            "region": id.region,
            "version": "2017-09-30",
        }))
        .into_response(),
        "/latest/meta-data/placement/region" => text(StatusCode::OK, endpoint.region.clone()),
        "/latest/meta-data/placement/availability-zone" => {
            text(StatusCode::OK, endpoint.zone.clone())
        }
        "/latest/meta-data/instance-id" => text(StatusCode::OK, endpoint.instance_id.clone()),
        path if path.strip_prefix(credentials_path) == Some(id.role_name.as_str()) => {
            role_credentials(&endpoint).await
        }
        _ => text(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// The role-credentials document, borrowing the secrets.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceCredentials<'a> {
    code: &'a str,
    last_updated: String,
    #[serde(rename = "Type")]
    kind: &'a str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: Option<&'a str>,
    expiration: Option<String>,
}

/// The role-credentials document for `role`, rendered straight into a buffer that is wiped
/// when replaced (no copies of the secrets in an intermediate JSON value).
fn credentials_body(role: &AssumedRole, last_updated: OffsetDateTime) -> SecretBody {
    let c = &role.credentials;
    SecretBody::json(&InstanceCredentials {
        code: "Success",
        last_updated: format_expiration(last_updated),
        kind: "AWS-HMAC",
        access_key_id: &c.access_key_id,
        secret_access_key: c.secret_access_key.expose(),
        token: c.session_token.as_ref().map(Secret::expose),
        expiration: c.expiration.map(format_expiration),
    })
}

async fn role_credentials<U: Upstream<Value = AssumedRole>>(endpoint: &Endpoint<U>) -> Response {
    let now = OffsetDateTime::now_utc();
    match endpoint.refresher.get_shared().await {
        Ok((role, _)) => (
            [(header::CONTENT_TYPE, "application/json")],
            endpoint.body_for(&role, now),
        )
            .into_response(),
        // A non-200 makes the SDKs retry, then report that no credentials could be found; the
        // body says why for whoever looks.
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "Code": "CredentialsUnavailable",
                "Message": e.to_string(),
                "LastUpdated": format_expiration(now),
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::ecs_server::tests::{serve_for_test, FakeSts};
    use crate::refresh::{Clock, RefreshPolicy};
    use std::sync::atomic::Ordering;

    fn identity() -> InstanceIdentity {
        let role = RoleArn::parse("arn:aws:iam::123456789012:role/deploy").unwrap();
        InstanceIdentity::for_role(&role, Some("eu-west-1"))
    }

    async fn start(fake: FakeSts) -> String {
        let refresher = Refresher::new("deploy", fake, RefreshPolicy::default(), Clock::System);
        serve_for_test(router(refresher, identity())).await
    }

    async fn session(client: &reqwest::Client, url: &str) -> String {
        let response = client
            .put(format!("{url}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-aws-ec2-metadata-token-ttl-seconds"],
            "60"
        );
        response.text().await.unwrap()
    }

    async fn get(
        client: &reqwest::Client,
        url: &str,
        path: &str,
        token: &str,
    ) -> reqwest::Response {
        client
            .get(format!("{url}{path}"))
            .header("X-aws-ec2-metadata-token", token)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_session_reads_the_role_and_its_credentials() {
        let url = start(FakeSts::default()).await;
        let client = reqwest::Client::new();
        let token = session(&client, &url).await;
        let role = get(
            &client,
            &url,
            "/latest/meta-data/iam/security-credentials/",
            &token,
        )
        .await;
        assert_eq!(role.text().await.unwrap(), "deploy");
        let doc: serde_json::Value = get(
            &client,
            &url,
            "/latest/meta-data/iam/security-credentials/deploy",
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(doc["Code"], "Success");
        assert_eq!(doc["Type"], "AWS-HMAC");
        assert_eq!(doc["AccessKeyId"], "ASIAFAKE000000000001");
        assert_eq!(doc["Token"], "fake-session-token");
        assert_eq!(doc["Expiration"].as_str().unwrap().len(), 20);
        let other = get(
            &client,
            &url,
            "/latest/meta-data/iam/security-credentials/other",
            &token,
        )
        .await;
        assert_eq!(other.status(), 404);
        let info: serde_json::Value = get(&client, &url, "/latest/meta-data/iam/info", &token)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            info["InstanceProfileArn"],
            "arn:aws:iam::123456789012:instance-profile/deploy"
        );
        assert!(info["InstanceProfileId"]
            .as_str()
            .unwrap()
            .starts_with("AIPA"));
        let document: serde_json::Value = get(
            &client,
            &url,
            "/latest/dynamic/instance-identity/document",
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(document["region"], "eu-west-1");
        assert_eq!(document["accountId"], "123456789012");
        let region = get(&client, &url, "/latest/meta-data/placement/region", &token).await;
        assert_eq!(region.text().await.unwrap(), "eu-west-1");
    }

    #[tokio::test]
    async fn imdsv2_refusals() {
        let fake = FakeSts::default();
        let url = start(fake.clone()).await;
        let client = reqwest::Client::new();
        let creds = "/latest/meta-data/iam/security-credentials/deploy";
        // No session token, or one we never issued: 401, and upstream is not asked.
        let none = client.get(format!("{url}{creds}")).send().await.unwrap();
        assert_eq!(none.status(), 401);
        assert_eq!(get(&client, &url, creds, "forged").await.status(), 401);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
        // TTLs outside 1..=21600 or missing: 400.
        for ttl in [Some("0"), Some("21601"), Some("soon"), None] {
            let mut request = client.put(format!("{url}/latest/api/token"));
            if let Some(ttl) = ttl {
                request = request.header("X-aws-ec2-metadata-token-ttl-seconds", ttl);
            }
            assert_eq!(request.send().await.unwrap().status(), 400, "{ttl:?}");
        }
        // A relayed token request: 403.
        let relayed = client
            .put(format!("{url}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
            .header("X-Forwarded-For", "10.0.0.1")
            .send()
            .await
            .unwrap();
        assert_eq!(relayed.status(), 403);
    }

    #[tokio::test]
    async fn upstream_failure_is_not_success() {
        let fake = FakeSts::default();
        fake.failing.store(true, Ordering::SeqCst);
        let url = start(fake).await;
        let client = reqwest::Client::new();
        let token = session(&client, &url).await;
        let response = get(
            &client,
            &url,
            "/latest/meta-data/iam/security-credentials/deploy",
            &token,
        )
        .await;
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["Code"], "CredentialsUnavailable");
        assert!(body["Message"]
            .as_str()
            .unwrap()
            .contains("ServiceUnavailable"));
    }

    #[tokio::test(start_paused = true)]
    async fn session_tokens_expire_and_stay_bounded() {
        let sessions = SessionTokens::new(3);
        let short = sessions.issue(Duration::from_secs(10));
        let long: Vec<_> = (0..2)
            .map(|_| sessions.issue(Duration::from_secs(100)))
            .collect();
        assert!(sessions.is_valid(short.expose()));
        // A fourth evicts the one closest to expiry.
        let fourth = sessions.issue(Duration::from_secs(100));
        assert_eq!(sessions.len(), 3);
        assert!(!sessions.is_valid(short.expose()));
        assert!(long.iter().all(|t| sessions.is_valid(t.expose())));
        assert!(sessions.is_valid(fourth.expose()));
        tokio::time::advance(Duration::from_secs(101)).await;
        assert!(!sessions.is_valid(fourth.expose()));
        // Expired tokens make room first.
        for _ in 0..10 {
            sessions.issue(Duration::from_secs(5));
        }
        assert_eq!(sessions.len(), 3);
    }

    /// The document is rendered once per credential, byte for byte what was rendered per
    /// request before; `LastUpdated` stays while the access key does; a replaced one is wiped.
    #[test]
    fn the_credentials_document_is_rendered_once_per_credential() {
        let endpoint = Endpoint::new(
            Refresher::new(
                "deploy",
                FakeSts::default(),
                RefreshPolicy::default(),
                Clock::System,
            ),
            identity(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let role = |key: &str| {
            let mut role = runtime.block_on(FakeSts::default().fetch()).unwrap().0;
            role.credentials.access_key_id = key.into();
            role.credentials.expiration = Some(time::macros::datetime!(2030-01-01 12:00 UTC));
            Arc::new(role)
        };
        let (first, same_key, second) = (role("ASIAFIRST"), role("ASIAFIRST"), role("ASIASECOND"));
        let t0 = time::macros::datetime!(2026-12-05 00:00:00 UTC);
        let t1 = t0 + time::Duration::minutes(5);
        let wiped = || crate::deliver::server::WIPED.with(|w| w.get());
        let before = wiped();
        let in_flight = endpoint.body_for(&first, t0);
        assert_eq!(
            &in_flight[..],
            br#"{"Code":"Success","LastUpdated":"2026-12-05T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAFIRST","SecretAccessKey":"fake-secret-key","Token":"fake-session-token","Expiration":"2030-01-01T12:00:00Z"}"#
        );
        let again = endpoint.body_for(&first, t1);
        assert_eq!(
            in_flight.as_ptr(),
            again.as_ptr(),
            "shared, not rendered again"
        );
        assert_eq!(
            endpoint.body_for(&same_key, t1),
            in_flight,
            "LastUpdated kept"
        );
        assert_eq!(wiped(), before, "answers still send the first document");
        drop((in_flight, again));
        assert_eq!(wiped(), before + 1, "the replaced document was wiped");
        let doc: serde_json::Value =
            serde_json::from_slice(&endpoint.body_for(&second, t1)).unwrap();
        assert_eq!(doc["LastUpdated"], "2026-12-05T00:05:00Z");
        assert_eq!(doc["AccessKeyId"], "ASIASECOND");
    }

    #[test]
    fn instance_identity_is_stable_and_shaped_like_ec2() {
        let (a, b) = (identity(), identity());
        assert_eq!(a, b);
        assert_eq!(a.instance_id.len(), 19);
        assert!(a.instance_id.starts_with("i-"));
        assert_eq!(a.instance_profile_id().len(), 21);
    }
}
