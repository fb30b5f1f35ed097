//! A GCE-metadata-compatible endpoint, so unmodified Google SDKs and tools (google-auth,
//! google-cloud-*, gcloud, Terraform's provider) get Google tokens for an AWS identity.
//!
//! The Google libraries already know how to get credentials on Compute Engine: ask the metadata
//! server. Pointing `GCE_METADATA_HOST` and `GCE_METADATA_IP` here makes every one of them use
//! keyless without a line of configuration, and the tokens stay fresh without the SDK knowing
//! anything about AWS. We answer what the SDKs read (see PROTOCOL-NOTES.md "metadata detection
//! per language"): the detection ping `/` (Python), the directories `/computeMetadata/v1/`,
//! `instance/` (Node's gcp-metadata detects GCE with `GET .../instance`, no slash),
//! `project/`, `universe/` and `instance/service-accounts/[NAME/]`, each with or without the
//! trailing slash and with `?recursive=true`; the service account's `token`, `identity`,
//! `email`, `aliases`, `scopes`; `instance/hostname`, `project/project-id`,
//! `project/numeric-project-id` and `universe/universe-domain`; values as text or, with
//! `?alt=json`, JSON. What a workload off Compute Engine has no true answer for (`zone`, `id`,
//! `attributes`, network interfaces) answers 404 naming what is served, which the SDKs
//! tolerate.
//!
//! Like the real server, every answer carries `Metadata-Flavor: Google`; a request under
//! `/computeMetadata/` without that header, or any request carrying `X-Forwarded-For`, gets 403,
//! so a browser page or a proxied request cannot take tokens.
//!
//! Tokens: one refresh engine per distinct scope set asked for (`?scopes=a,b`; none: the
//! server's `--scopes`), one per ID-token audience, each created on first use and kept in a
//! bounded, least-recently-used table (an SDK asking for ever new scopes cannot grow it without
//! bound). An engine gets its background keeper after its first success, so a mistyped scope
//! does not leave a task retrying forever.
//!
//! Callers cannot widen or churn what the endpoint was started with:
//!
//! - **Scopes no wider than configured.** Scopes are normalised once ([`full_scope`]: the short
//!   `devstorage.read_only` is `https://www.googleapis.com/auth/devstorage.read_only`), both the
//!   configured `--scopes` and every `?scopes=`. A requested set is served only when each scope
//!   is configured, or is one of the Cloud APIs' own scopes and `cloud-platform` is configured
//!   ([`scope_is_covered`]); anything else answers 403 naming the scope and the fix, and a
//!   scope that is not an OAuth scope token (RFC 6749 §3.3) answers 400.
//! - **New engines are rate-limited.** Each table has a budget of new engines (as many as it
//!   holds, then one every [`NEW_ENGINE_EVERY`]): cycling scope sets or audiences to make one
//!   upstream exchange per request gets 429 with `Retry-After`, while known ones are served.
//! - **Request values are escaped** ([`crate::deliver::server::escaped`]) wherever they are
//!   logged, named (engine names reach logs and `/metrics`) or shown in an error body.
//!
//! **No work per request beyond the lookup.** SDKs ask for the same token again and again, so
//! each engine keeps the answer it rendered last and every response shares its bytes: an
//! access token's JSON is rendered once per token and second of `expires_in` (which is
//! computed per request, as before), an ID token once per token; the plain values (`email`,
//! `scopes`, `aliases`, `hostname`, the project's, `universe-domain`) once at start, in both
//! their text and `?alt=json` forms. The value is shared with the engine, never copied, and
//! the request's URI and peer are copied only when debug logging is on. The answers are byte
//! for byte what rendering per request gave (unit tests compare them).
//!
//! With `/healthz` served, [`GceMetadataServer::warm`] fetches the default token at start, so
//! `/healthz` 200 means a token is held (see docs/serve.md).
//!
//! Without a service account (the federated token alone) there is no account address: `email`
//! answers `default`, which is what the SDKs re-request under, and `identity` answers 404 (an ID
//! token can only be minted for a service account).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use time::OffsetDateTime;

use crate::deliver::metrics::{MetricsRegistry, ProfileState};
use crate::deliver::server::{escaped, SecretBody};
use crate::exchange::google_sts::CLOUD_PLATFORM_SCOPE;
use crate::refresh::{
    Clock, GcpIdTokenUpstream, GcpToken, GcpTokenProfile, GcpTokenUpstream, RefreshPolicy,
    Refresher, Upstream,
};

/// What `universe/universe-domain` answers: the public Google Cloud universe.
pub const UNIVERSE_DOMAIN: &str = "googleapis.com";
/// At most this many scope sets hold an engine at once; the least recently used is dropped.
pub const MAX_SCOPE_SETS: usize = 8;
/// At most this many ID-token audiences hold an engine at once.
pub const MAX_AUDIENCES: usize = 16;
/// Once a table's budget of new engines (its size) is spent, one more may be made this often.
pub const NEW_ENGINE_EVERY: Duration = Duration::from_secs(15);
/// Where the short scope names live (`devstorage.read_only` is this plus the name).
pub const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";
/// The Cloud APIs' own scopes, which a configured `cloud-platform` covers (each a name under
/// [`SCOPE_PREFIX`], matched exactly or, ending in `.` or `-`, as a prefix). Workspace scopes
/// (Drive, Gmail, ...) are not among them: they must be configured by name.
const CLOUD_PLATFORM_COVERS: &[&str] = &[
    "cloud-platform",
    "cloud-platform.read-only",
    "userinfo.email",
    "devstorage.",
    "bigquery",
    "bigquery.",
    "bigtable.",
    "cloud-",
    "compute",
    "compute.",
    "datastore",
    "logging.",
    "monitoring",
    "monitoring.",
    "ndev.",
    "pubsub",
    "spanner.",
    "sqlservice.admin",
    "trace.",
];

const FLAVOR: &str = "Metadata-Flavor";
const GOOGLE: &str = "Google";
/// The content type the real server gives plain values; google-auth needs *a* content type.
const TEXT: &str = "application/text";
const SERVICE_ACCOUNT_ENTRIES: &[&str] = &["aliases", "email", "identity", "scopes", "token"];

/// What the endpoint says about the project it pretends to run in.
#[derive(Clone, Debug, Default)]
pub struct GceMetadataOptions {
    /// `project/project-id`; `None`: derived from the service account's address.
    pub project_id: Option<String>,
    /// `project/numeric-project-id`; `None`: the number in the provider's audience.
    pub project_number: Option<String>,
    /// The daemon profile this endpoint serves: its engines appear in `/metrics` and
    /// `/healthz` as `NAME/gce-metadata token`, so two profiles' engines never share a name.
    pub profile_name: Option<String>,
}

/// The endpoint's state: the profile every token derives from and the engines made so far.
/// Cheap to clone.
#[derive(Clone)]
pub struct GceMetadataServer {
    inner: Arc<ServerState>,
}

struct ServerState {
    profile: GcpTokenProfile,
    /// The scopes of a token request without `?scopes=`, as configured.
    default_scopes: Vec<String>,
    /// [`Self::default_scopes`] sorted, without duplicates (how a requested set is compared).
    default_set: Vec<String>,
    project_id: Option<String>,
    project_number: Option<String>,
    /// The values that never change while serving, rendered once (see [`Leaves`]).
    leaves: Leaves,
    http: reqwest::Client,
    tokens: Engines<GcpTokenUpstream>,
    identities: Engines<GcpIdTokenUpstream>,
    metrics: MetricsRegistry,
    /// `NAME/` for a daemon profile's endpoint, else empty: in front of every engine's name.
    engine_prefix: String,
}

impl GceMetadataServer {
    /// An endpoint for `profile`: its scopes (the impersonation's, when there is one) are the
    /// default scope set, its service account the one the endpoint describes.
    pub fn new(
        profile: GcpTokenProfile,
        options: GceMetadataOptions,
        http: reqwest::Client,
    ) -> Self {
        Self::with_metrics(profile, options, http, MetricsRegistry::default())
    }

    /// Like [`GceMetadataServer::new`], reporting its engines in `metrics` (the daemon's one
    /// registry for every profile).
    pub fn with_metrics(
        mut profile: GcpTokenProfile,
        options: GceMetadataOptions,
        http: reqwest::Client,
        metrics: MetricsRegistry,
    ) -> Self {
        // Normalised once: the upstream and every comparison see full scope URLs.
        profile.scopes = profile.scopes.iter().map(|s| full_scope(s)).collect();
        if let Some(impersonation) = &mut profile.impersonation {
            impersonation.scopes = impersonation.scopes.iter().map(|s| full_scope(s)).collect();
        }
        let default_scopes = match &profile.impersonation {
            Some(impersonation) => impersonation.scopes.clone(),
            None => profile.scopes.clone(),
        };
        let service_account = profile
            .impersonation
            .as_ref()
            .map(|i| i.service_account.as_str());
        let project_id = options
            .project_id
            .or_else(|| service_account.and_then(project_id_of_service_account));
        let project_number = options
            .project_number
            .or_else(|| project_number_of_audience(&profile.audience));
        let mut default_set = default_scopes.clone();
        default_set.sort();
        default_set.dedup();
        let email = service_account.unwrap_or("default");
        let host = hostname();
        let leaves = Leaves {
            email: Leaf::new(email.to_string(), email.into()),
            aliases: Leaf::new("default\n".into(), serde_json::json!(["default"])),
            scopes: Leaf::new(
                default_scopes.iter().map(|s| format!("{s}\n")).collect(),
                serde_json::json!(default_scopes),
            ),
            hostname: Leaf::new(host.clone(), host.clone().into()),
            project_id: project_id
                .as_ref()
                .map(|id| Leaf::new(id.clone(), id.clone().into())),
            project_number: project_number
                .as_ref()
                .map(|n| Leaf::new(n.clone(), number_json(n))),
            universe_domain: Leaf::new(UNIVERSE_DOMAIN.to_string(), UNIVERSE_DOMAIN.into()),
            host,
        };
        Self {
            inner: Arc::new(ServerState {
                profile,
                default_scopes,
                default_set,
                project_id,
                project_number,
                leaves,
                http,
                tokens: Engines::new(MAX_SCOPE_SETS, metrics.clone()),
                identities: Engines::new(MAX_AUDIENCES, metrics.clone()),
                metrics,
                engine_prefix: options
                    .profile_name
                    .map(|name| format!("{name}/"))
                    .unwrap_or_default(),
            }),
        }
    }

    /// The engines' state for `/healthz` and `/metrics` (serve its router on its own address).
    pub fn metrics(&self) -> &MetricsRegistry {
        &self.inner.metrics
    }

    /// Makes the default token's engine now and keeps it fresh from now on, so `/healthz` has
    /// a credential to wait for (200 means every engine holds one) and the first SDK request
    /// finds a token. Without it the first engine is made by the first request.
    pub fn warm(&self) {
        let s = &self.inner;
        let key = format!("{}\n{}", s.default_set.join(","), s.subject_identity());
        let Ok(engine) = s.tokens.engine(&key, || s.default_token_engine()) else {
            return; // the budget starts full: unreachable for the first engine
        };
        s.tokens.keep(&key, &engine);
    }

    /// How ready the endpoint is: its least ready engine's state; `starting` before any.
    pub fn state(&self) -> ProfileState {
        let mut states = self.inner.tokens.states();
        states.extend(self.inner.identities.states());
        states
            .into_iter()
            .reduce(ProfileState::worst)
            .unwrap_or(ProfileState::Starting)
    }

    /// The project id the endpoint answers, if it knows one.
    pub fn project_id(&self) -> Option<&str> {
        self.inner.project_id.as_deref()
    }

    /// The routes, with the `Metadata-Flavor` and `X-Forwarded-For` checks and the request log.
    pub fn router(&self) -> Router {
        const V1: &str = "/computeMetadata/v1";
        const SA: &str = "/computeMetadata/v1/instance/service-accounts";
        Router::new()
            .route("/", get(root))
            // Directories answer with and without the trailing slash: Node's gcp-metadata
            // detects GCE with `GET .../instance` (no slash) and needs a 200.
            .route(V1, get(root_directory))
            .route(&format!("{V1}/"), get(root_directory))
            .route(&format!("{V1}/instance"), get(instance_directory))
            .route(&format!("{V1}/instance/"), get(instance_directory))
            .route(&format!("{V1}/project"), get(project_directory))
            .route(&format!("{V1}/project/"), get(project_directory))
            .route(&format!("{V1}/universe"), get(universe_directory))
            .route(&format!("{V1}/universe/"), get(universe_directory))
            .route(
                &format!("{V1}/instance/hostname"),
                get(
                    |State(s): State<Arc<ServerState>>,
                     Query(q): Query<HashMap<String, String>>| async move {
                        value(&q, &s.leaves.hostname)
                    },
                ),
            )
            .route(
                &format!("{V1}/project/project-id"),
                get(
                    |State(s): State<Arc<ServerState>>,
                     Query(q): Query<HashMap<String, String>>| async move {
                        match &s.leaves.project_id {
                            Some(id) => value(&q, id),
                            None => not_found(
                                "the project id is unknown: pass --project-id (it is derived only \
                                 from a service account address NAME@PROJECT.iam.gserviceaccount.com)",
                            ),
                        }
                    },
                ),
            )
            .route(
                &format!("{V1}/project/numeric-project-id"),
                get(
                    |State(s): State<Arc<ServerState>>,
                     Query(q): Query<HashMap<String, String>>| async move {
                        match &s.leaves.project_number {
                            Some(number) => value(&q, number),
                            None => not_found("the project number is unknown: pass --project-number"),
                        }
                    },
                ),
            )
            .route(
                &format!("{V1}/universe/universe-domain"),
                get(
                    |State(s): State<Arc<ServerState>>,
                     Query(q): Query<HashMap<String, String>>| async move {
                        value(&q, &s.leaves.universe_domain)
                    },
                ),
            )
            .route(SA, get(list_accounts))
            .route(&format!("{SA}/"), get(list_accounts))
            .route(&format!("{SA}/{{account}}"), get(account))
            .route(&format!("{SA}/{{account}}/"), get(account))
            .route(&format!("{SA}/{{account}}/{{item}}"), get(account_item))
            .fallback(|| async { not_found(NOT_SERVED) })
            .layer(axum::middleware::from_fn(guard))
            .with_state(self.inner.clone())
    }
}

/// What a 404 for a path outside the served tree says.
const NOT_SERVED: &str = "no such metadata path here. keyless emulates only what the Google \
    client libraries read for credentials: instance/hostname, instance/service-accounts/ \
    (default and the service account: email, aliases, scopes, token, identity), \
    project/project-id, project/numeric-project-id and universe/universe-domain, each directory \
    with or without its trailing slash, ?recursive=true and ?alt=json|text. It does not serve \
    instance/zone, instance/id, instance/name, attributes, network-interfaces or other \
    Compute Engine facts: this workload does not run on Compute Engine";

/// This machine's host name (what `instance/hostname` answers, read once at start).
fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// A number as JSON when it is one (the real server answers `numeric-project-id` as a number).
fn number_json(number: &str) -> serde_json::Value {
    number
        .parse::<u64>()
        .map_or_else(|_| serde_json::Value::from(number), serde_json::Value::from)
}

/// How an answer is asked for: `?alt=json|text`, and `?recursive=true` (JSON unless `alt=text`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Alt {
    Text,
    Json,
}

/// `?alt=` (`default` when absent); `Err` is the 400 for another value.
fn alt(query: &HashMap<String, String>, default: Alt) -> Result<Alt, Box<Response>> {
    match query.get("alt").map(String::as_str) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("json") => Ok(Alt::Json),
        Some(v) if v.eq_ignore_ascii_case("text") => Ok(Alt::Text),
        Some(other) => Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            &format!("alt must be json or text, not {}", escaped(other)),
        ))),
    }
}

/// A value that does not change while the endpoint serves (the account's address, the
/// project, the host name...), rendered once in both forms: each answer shares the bytes.
struct Leaf {
    text: Bytes,
    json: Bytes,
}

impl Leaf {
    fn new(as_text: String, as_json: serde_json::Value) -> Self {
        Self {
            text: Bytes::from(as_text),
            json: Bytes::from(as_json.to_string()),
        }
    }
}

/// Every [`Leaf`] the endpoint answers.
struct Leaves {
    email: Leaf,
    aliases: Leaf,
    scopes: Leaf,
    hostname: Leaf,
    project_id: Option<Leaf>,
    project_number: Option<Leaf>,
    universe_domain: Leaf,
    /// This machine's host name when the endpoint started (the recursive trees show it).
    host: String,
}

/// A leaf value: text by default, JSON with `?alt=json`.
fn value(query: &HashMap<String, String>, leaf: &Leaf) -> Response {
    match alt(query, Alt::Text) {
        Ok(Alt::Text) => ([(header::CONTENT_TYPE, TEXT)], leaf.text.clone()).into_response(),
        Ok(Alt::Json) => (
            [(header::CONTENT_TYPE, "application/json")],
            leaf.json.clone(),
        )
            .into_response(),
        Err(refusal) => *refusal,
    }
}

/// A directory: its entries one per line (subdirectories end in `/`), or with `?recursive=true`
/// or `?alt=json` the whole subtree as JSON (as Compute Engine's server answers).
fn directory(
    query: &HashMap<String, String>,
    entries: &[&str],
    tree: impl FnOnce() -> serde_json::Value,
) -> Response {
    let default = if recursive(query) {
        Alt::Json
    } else {
        Alt::Text
    };
    match alt(query, default) {
        Ok(Alt::Text) => text(entries.iter().map(|e| format!("{e}\n")).collect::<String>()),
        Ok(Alt::Json) => json(&tree()),
        Err(refusal) => *refusal,
    }
}

async fn root_directory(
    State(s): State<Arc<ServerState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    directory(&query, &["instance/", "project/", "universe/"], || {
        serde_json::json!({
            "instance": s.instance_tree(),
            "project": s.project_tree(),
            "universe": {"universeDomain": UNIVERSE_DOMAIN},
        })
    })
}

async fn instance_directory(
    State(s): State<Arc<ServerState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    directory(&query, &["hostname", "service-accounts/"], || {
        s.instance_tree()
    })
}

async fn project_directory(
    State(s): State<Arc<ServerState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut entries = Vec::new();
    if s.project_number.is_some() {
        entries.push("numeric-project-id");
    }
    if s.project_id.is_some() {
        entries.push("project-id");
    }
    directory(&query, &entries, || s.project_tree())
}

async fn universe_directory(Query(query): Query<HashMap<String, String>>) -> Response {
    directory(
        &query,
        &["universe-domain"],
        || serde_json::json!({"universeDomain": UNIVERSE_DOMAIN}),
    )
}

/// The project of a service account address `NAME@PROJECT.iam.gserviceaccount.com`.
pub fn project_id_of_service_account(email: &str) -> Option<String> {
    let (_, domain) = email.split_once('@')?;
    let project = domain.strip_suffix(".iam.gserviceaccount.com")?;
    (!project.is_empty()).then(|| project.to_string())
}

/// The project number of a provider `//iam.googleapis.com/projects/NUMBER/...`.
pub fn project_number_of_audience(audience: &str) -> Option<String> {
    let rest = audience.split_once("/projects/")?.1;
    let number = rest.split('/').next()?;
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then(|| number.to_string())
}

/// A scope as Google's token endpoints want it: a short name (`devstorage.read_only`,
/// `cloud-platform`) gets [`SCOPE_PREFIX`] in front; a URL and the OpenID scopes (`openid`,
/// `email`, `profile`) stay as they are.
pub fn full_scope(scope: &str) -> String {
    let scope = scope.trim();
    if scope.contains("://") || matches!(scope, "openid" | "email" | "profile") {
        scope.to_string()
    } else {
        format!("{SCOPE_PREFIX}{scope}")
    }
}

/// Whether `scope` (normalised) may be served by an endpoint configured with `configured`
/// (normalised): it is configured, or `cloud-platform` is and `scope` is a Cloud API's own.
pub fn scope_is_covered(scope: &str, configured: &[String]) -> bool {
    if configured.iter().any(|c| c == scope) {
        return true;
    }
    let cloud_platform = configured.iter().any(|c| c == CLOUD_PLATFORM_SCOPE);
    let Some(name) = scope.strip_prefix(SCOPE_PREFIX) else {
        return false;
    };
    cloud_platform
        && CLOUD_PLATFORM_COVERS.iter().any(|covered| {
            name == *covered
                || (covered.ends_with(['.', '-'])
                    && name.strip_prefix(covered).is_some_and(|rest| {
                        !rest.is_empty()
                            && rest
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                    }))
        })
}

/// Why a requested scope set is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeRefusal {
    /// A scope is not an OAuth scope token (RFC 6749 §3.3: visible ASCII but `"` and `\`).
    #[error("{scope} is not an OAuth scope (scopes are URLs such as {SCOPE_PREFIX}cloud-platform, comma-separated)")]
    Malformed { scope: String },
    /// A scope is wider than (or not among) the configured ones.
    #[error(
        "the scope {scope} is not among this endpoint's scopes ({configured}); it serves only \
         those (or a Cloud API's own scope when cloud-platform is one of them)\n  hint: start \
         `keyless gcp serve` with --scopes including it"
    )]
    Wider { scope: String, configured: String },
}

/// `?scopes=a,b` as a set: split on commas and white space, each normalised ([`full_scope`]),
/// sorted, without duplicates, so two requests naming the same scopes share one engine; each
/// must be an OAuth scope token and covered by `configured` ([`scope_is_covered`]).
pub fn scope_set(scopes: &str, configured: &[String]) -> Result<Vec<String>, ScopeRefusal> {
    let mut set = Vec::new();
    for scope in scopes
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let valid = scope
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !valid {
            return Err(ScopeRefusal::Malformed {
                scope: escaped(scope).to_string(),
            });
        }
        let scope = full_scope(scope);
        if !scope_is_covered(&scope, configured) {
            return Err(ScopeRefusal::Wider {
                scope: escaped(&scope).to_string(),
                configured: configured.join(","),
            });
        }
        set.push(scope);
    }
    set.sort();
    set.dedup();
    Ok(set)
}

/// Refuses what the real server refuses, stamps `Metadata-Flavor: Google` on every answer and
/// logs one line per request (path and query hold no secrets; answers are never logged).
async fn guard(request: Request, next: Next) -> Response {
    // Nothing to log (the default): no copies of the method, URI and peer on the request path.
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return flavored(request, next).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let response = flavored(request, next).await;
    tracing::debug!(
        %method,
        uri = %escaped(&uri.to_string()),
        status = response.status().as_u16(),
        peer = ?peer,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "gce metadata request"
    );
    response
}

/// The checks and the `Metadata-Flavor` answer header of [`guard`].
async fn flavored(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut response = if headers.contains_key("x-forwarded-for") {
        refuse(
            StatusCode::FORBIDDEN,
            "refusing a request with X-Forwarded-For: the metadata endpoint serves local \
             processes directly, never through a proxy",
        )
    } else if request.uri().path().starts_with("/computeMetadata/") && !has_flavor(headers) {
        refuse(
            StatusCode::FORBIDDEN,
            "missing the header Metadata-Flavor: Google (the metadata endpoint requires it, as \
             Compute Engine's does)",
        )
    } else {
        next.run(request).await
    };
    response
        .headers_mut()
        .insert(FLAVOR, HeaderValue::from_static(GOOGLE));
    response
}

fn has_flavor(headers: &HeaderMap) -> bool {
    headers
        .get_all(FLAVOR)
        .iter()
        .any(|v| v.as_bytes() == GOOGLE.as_bytes())
}

/// The detection ping (google-auth checks the status and the `Metadata-Flavor` answer).
async fn root() -> Response {
    text("computeMetadata/\n")
}

async fn list_accounts(
    State(s): State<Arc<ServerState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let email = s.email();
    let mut names = vec!["default"];
    if email != "default" {
        names.push(email);
    }
    let entries: Vec<String> = names.iter().map(|n| format!("{n}/")).collect();
    let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
    directory(&query, &entries, || s.accounts_tree())
}

async fn account(
    State(s): State<Arc<ServerState>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !s.is_account(&name) {
        return s.unknown_account(&name);
    }
    directory(&query, SERVICE_ACCOUNT_ENTRIES, || s.account_info())
}

async fn account_item(
    State(s): State<Arc<ServerState>>,
    Path((name, item)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !s.is_account(&name) {
        return s.unknown_account(&name);
    }
    match item.as_str() {
        "email" => value(&query, &s.leaves.email),
        "aliases" => value(&query, &s.leaves.aliases),
        "scopes" => value(&query, &s.leaves.scopes),
        "token" => s.token(query.get("scopes").map(String::as_str)).await,
        "identity" => s.identity(&query).await,
        _ => not_found("no such service account attribute"),
    }
}

fn recursive(query: &HashMap<String, String>) -> bool {
    query
        .get("recursive")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

impl ServerState {
    fn service_account(&self) -> Option<&str> {
        self.profile
            .impersonation
            .as_ref()
            .map(|i| i.service_account.as_str())
    }

    /// The address the SDKs see; `default` for the federated token (see the module doc).
    fn email(&self) -> &str {
        self.service_account().unwrap_or("default")
    }

    fn is_account(&self, name: &str) -> bool {
        name == "default" || name.eq_ignore_ascii_case(self.email())
    }

    fn unknown_account(&self, name: &str) -> Response {
        not_found(&format!(
            "no service account {} here: this endpoint serves `default` ({})",
            escaped(name),
            self.email()
        ))
    }

    /// `instance/?recursive=true`: what is known about the "instance".
    fn instance_tree(&self) -> serde_json::Value {
        serde_json::json!({
            "hostname": self.leaves.host,
            "serviceAccounts": self.accounts_tree(),
        })
    }

    /// `project/?recursive=true`.
    fn project_tree(&self) -> serde_json::Value {
        let mut tree = serde_json::Map::new();
        if let Some(number) = &self.project_number {
            tree.insert("numericProjectId".into(), number_json(number));
        }
        if let Some(id) = &self.project_id {
            tree.insert("projectId".into(), id.clone().into());
        }
        serde_json::Value::Object(tree)
    }

    /// `instance/service-accounts/?recursive=true`: each name with its attributes.
    fn accounts_tree(&self) -> serde_json::Value {
        let info = self.account_info();
        let mut all = serde_json::Map::new();
        all.insert("default".into(), info.clone());
        if self.email() != "default" {
            all.insert(self.email().to_string(), info);
        }
        serde_json::Value::Object(all)
    }

    fn account_info(&self) -> serde_json::Value {
        serde_json::json!({
            "aliases": ["default"],
            "email": self.email(),
            "scopes": self.default_scopes,
        })
    }

    /// An access token for `scopes` (the default set when absent or empty), with its real
    /// remaining lifetime; refused when a scope is wider than configured or when too many new
    /// scope sets arrive (see the module doc).
    async fn token(&self, scopes: Option<&str>) -> Response {
        let set = match scopes.map(|s| scope_set(s, &self.default_scopes)) {
            None => Vec::new(),
            Some(Ok(set)) => set,
            Some(Err(refusal @ ScopeRefusal::Malformed { .. })) => {
                return refuse(StatusCode::BAD_REQUEST, &refusal.to_string())
            }
            Some(Err(refusal)) => return refuse(StatusCode::FORBIDDEN, &refusal.to_string()),
        };
        let (key, set) = if set.is_empty() || set == self.default_set {
            (self.default_set.join(","), None)
        } else {
            (set.join(","), Some(set))
        };
        // The identity behind the source is part of the key: a token file that now holds
        // another subject gets a new engine, never the previous subject's token.
        let key = format!("{key}\n{}", self.subject_identity());
        let engine = self.tokens.engine(&key, || match set {
            None => self.default_token_engine(),
            Some(set) => {
                let name = format!(
                    "{}gce-metadata token scopes={}",
                    self.engine_prefix,
                    escaped(&set.join(","))
                );
                self.token_engine(name, set)
            }
        });
        let engine = match engine {
            Ok(engine) => engine,
            Err(retry_after) => return too_many_new("scope sets", retry_after),
        };
        match self.tokens.get(&key, &engine).await {
            Ok((token, expires_at)) => {
                let expires_in = seconds_left(expires_at);
                let body = engine.body_for(&token, expires_in, |token| {
                    access_token_body(token, expires_in)
                });
                secret_answer("application/json", body)
            }
            Err(error) => refuse(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
        }
    }

    /// The engine for a token of the configured scopes.
    fn default_token_engine(&self) -> Refresher<GcpTokenUpstream> {
        self.token_engine(
            format!("{}gce-metadata token", self.engine_prefix),
            self.default_scopes.clone(),
        )
    }

    fn token_engine(&self, name: String, scopes: Vec<String>) -> Refresher<GcpTokenUpstream> {
        let upstream = GcpTokenUpstream {
            profile: self.profile_for_scopes(scopes),
            http: self.http.clone(),
        };
        Refresher::new(name, upstream, RefreshPolicy::default(), Clock::System)
    }

    /// An ID token for `?audience=` (required), minted for the service account.
    async fn identity(&self, query: &HashMap<String, String>) -> Response {
        let Some(audience) = query.get("audience").filter(|a| !a.is_empty()) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "non-empty audience parameter required",
            );
        };
        if let Some(format) = query.get("format") {
            if format != "standard" && format != "full" {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "format must be standard or full (both give IAM's generateIdToken token, \
                     with the email claim)",
                );
            }
        }
        if self.service_account().is_none() {
            return not_found(
                "no service account: an ID token is minted for a service account, and the \
                 federated principal is none; start `keyless gcp serve` with --service-account EMAIL",
            );
        }
        let key = format!("{audience}\n{}", self.subject_identity());
        let engine = self.identities.engine(&key, || {
            let upstream = GcpIdTokenUpstream {
                profile: self.federated_for_iam(self.profile.clone()),
                target_audience: audience.clone(),
                http: self.http.clone(),
            };
            Refresher::new(
                format!(
                    "{}gce-metadata id-token audience={}",
                    self.engine_prefix,
                    escaped(audience)
                ),
                upstream,
                RefreshPolicy::default(),
                Clock::System,
            )
        });
        let engine = match engine {
            Ok(engine) => engine,
            Err(retry_after) => return too_many_new("ID-token audiences", retry_after),
        };
        match self.identities.get(&key, &engine).await {
            Ok((token, _)) => {
                let body = engine.body_for(&token, 0, |token| SecretBody::text(token.expose()));
                secret_answer(TEXT, body)
            }
            Err(error) => refuse(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
        }
    }

    /// Who the profile's subject is, as far as known without the network (see
    /// [`crate::refresh::gcp_token::GcpSubject::cached_identity`]); empty when unknown.
    fn subject_identity(&self) -> String {
        self.profile.subject.cached_identity().unwrap_or_default()
    }

    /// The profile for a scope set: the impersonated token gets the scopes; without
    /// impersonation the federated token itself does.
    fn profile_for_scopes(&self, scopes: Vec<String>) -> GcpTokenProfile {
        let mut profile = self.profile.clone();
        match &mut profile.impersonation {
            Some(impersonation) => {
                impersonation.scopes = scopes;
                self.federated_for_iam(profile)
            }
            None => {
                profile.scopes = scopes;
                profile
            }
        }
    }

    /// The federated token that calls IAM Credentials needs `cloud-platform`, whatever the
    /// impersonated token is scoped to (google-auth does the same).
    fn federated_for_iam(&self, mut profile: GcpTokenProfile) -> GcpTokenProfile {
        profile.scopes = vec![CLOUD_PLATFORM_SCOPE.to_string()];
        profile
    }
}

/// The `token` answer: what google-auth and the other SDKs parse.
fn access_token_body(token: &GcpToken, expires_in: i64) -> SecretBody {
    #[derive(serde::Serialize)]
    struct AccessToken<'a> {
        access_token: &'a str,
        expires_in: i64,
        token_type: &'a str,
    }
    SecretBody::json(&AccessToken {
        access_token: token.token.access_token.expose(),
        expires_in,
        token_type: "Bearer",
    })
}

fn seconds_left(expires_at: OffsetDateTime) -> i64 {
    (expires_at - OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0)
}

/// 429 for a caller making new engines faster than the budget allows.
fn too_many_new(what: &str, retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "too many new {what} in a short time: each one costs an upstream exchange, so after \
             the first few this endpoint makes one more every {} s; the ones asked for before \
             are still served. Retry in {seconds} s",
            NEW_ENGINE_EVERY.as_secs()
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// How many new engines a table may still make: as many as it holds at first, then one more
/// every `every` (a token bucket; time while full earns nothing).
#[derive(Debug)]
struct NewEngineBudget {
    capacity: u64,
    left: u64,
    every: Duration,
    /// When the last token was earned (or the bucket was last full).
    earned_at: Instant,
}

impl NewEngineBudget {
    fn new(capacity: usize, every: Duration, now: Instant) -> Self {
        let capacity = capacity.max(1) as u64;
        Self {
            capacity,
            left: capacity,
            every,
            earned_at: now,
        }
    }

    /// Spends one; `Err` says how long until one is earned.
    fn spend(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.earned_at);
        if self.left == self.capacity {
            self.earned_at = now;
        } else {
            let earned = (elapsed.as_nanos() / self.every.as_nanos().max(1)) as u64;
            if earned > 0 {
                self.left = (self.left + earned).min(self.capacity);
                self.earned_at = if self.left == self.capacity {
                    now
                } else {
                    self.earned_at + self.every * u32::try_from(earned).unwrap_or(u32::MAX)
                };
            }
        }
        if self.left == 0 {
            return Err(self
                .every
                .saturating_sub(now.saturating_duration_since(self.earned_at)));
        }
        self.left -= 1;
        Ok(())
    }
}

/// Engines by key, created on demand, at most `max`, the least recently used dropped first;
/// new ones only as fast as the budget allows.
struct Engines<U: Upstream> {
    max: usize,
    metrics: MetricsRegistry,
    table: Mutex<Vec<EngineSlot<U>>>,
    budget: Mutex<NewEngineBudget>,
    /// Orders uses (a counter, not a clock: two uses never tie).
    uses: std::sync::atomic::AtomicU64,
}

struct EngineSlot<U: Upstream> {
    key: String,
    engine: Arc<Engine<U>>,
    last_used: u64,
    /// Started after the first success (see the module doc); stopped when the slot is dropped.
    keeper: Option<tokio::task::JoinHandle<()>>,
}

/// One engine and the last answer rendered from its value: SDKs ask for the same token again
/// and again, so the answer is rendered once per token (and, for an access token, once per
/// second of its `expires_in`), then served as shared bytes. The rendered answer is a
/// [`SecretBody`]: replaced, its bytes are wiped once no response is still sending them.
struct Engine<U: Upstream> {
    refresher: Refresher<U>,
    /// Set once the keeper runs, so later requests skip the table lock.
    kept: std::sync::atomic::AtomicBool,
    rendered: Mutex<Option<Rendered<U::Value>>>,
}

/// The value rendered last, what else the answer depended on, and the answer.
type Rendered<V> = (Arc<V>, i64, SecretBody);

impl<U: Upstream> Engine<U> {
    fn new(refresher: Refresher<U>) -> Self {
        Self {
            refresher,
            kept: Default::default(),
            rendered: Mutex::new(None),
        }
    }

    fn name(&self) -> &str {
        self.refresher.name()
    }

    /// The answer for `value` and `extra` (what else goes into it, e.g. the seconds left),
    /// rendered by `render` only when either differs from the last one's.
    fn body_for(
        &self,
        value: &Arc<U::Value>,
        extra: i64,
        render: impl FnOnce(&U::Value) -> SecretBody,
    ) -> Bytes {
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((from, from_extra, body)) = rendered.as_ref() {
            if Arc::ptr_eq(from, value) && *from_extra == extra {
                return body.body();
            }
        }
        let body = render(value);
        let bytes = body.body();
        // The previous answer is dropped here (wiped once in-flight answers are sent).
        *rendered = Some((value.clone(), extra, body));
        bytes
    }
}

impl<U: Upstream> Engines<U> {
    /// A table of `max` engines whose budget of new ones is `max`, then one every
    /// [`NEW_ENGINE_EVERY`].
    fn new(max: usize, metrics: MetricsRegistry) -> Self {
        Self::with_budget(
            max,
            metrics,
            NewEngineBudget::new(max, NEW_ENGINE_EVERY, Instant::now()),
        )
    }

    fn with_budget(max: usize, metrics: MetricsRegistry, budget: NewEngineBudget) -> Self {
        Self {
            max,
            metrics,
            table: Mutex::new(Vec::new()),
            budget: Mutex::new(budget),
            uses: Default::default(),
        }
    }

    /// The engine for `key`, made by `make` (and registered for metrics) if there is none and
    /// the budget allows (`Err`: retry after). Concurrent callers for a new key get the same
    /// engine, so they share one upstream call.
    fn engine(
        &self,
        key: &str,
        make: impl FnOnce() -> Refresher<U>,
    ) -> Result<Arc<Engine<U>>, Duration> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(slot) = table.iter_mut().find(|s| s.key == key) {
            slot.last_used = now;
            return Ok(slot.engine.clone());
        }
        self.budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spend(Instant::now())?;
        if table.len() >= self.max {
            if let Some(oldest) = table
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)
            {
                let slot = table.swap_remove(oldest);
                if let Some(keeper) = slot.keeper {
                    keeper.abort();
                }
                self.metrics.unregister(slot.engine.name());
                tracing::debug!(
                    engine = slot.engine.name(),
                    "dropped the least recently used engine"
                );
            }
        }
        let engine = Arc::new(Engine::new(make()));
        let status = engine.refresher.clone();
        self.metrics
            .register(engine.name().to_string(), move || status.status());
        table.push(EngineSlot {
            key: key.to_string(),
            engine: engine.clone(),
            last_used: now,
            keeper: None,
        });
        Ok(engine)
    }

    /// Each engine's state.
    fn states(&self) -> Vec<ProfileState> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .iter()
            .map(|slot| ProfileState::of(&slot.engine.refresher.status()))
            .collect()
    }

    /// Starts `engine`'s keeper if it has none.
    fn keep(&self, key: &str, engine: &Engine<U>) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = table.iter_mut().find(|s| s.key == key) {
            if slot.keeper.is_none() {
                slot.keeper = Some(slot.engine.refresher.spawn_keeper());
            }
            engine
                .kept
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// The value `engine` holds, shared (not copied); on the first success its keeper starts.
    async fn get(
        &self,
        key: &str,
        engine: &Engine<U>,
    ) -> Result<(Arc<U::Value>, OffsetDateTime), crate::refresh::ServeError> {
        use std::sync::atomic::Ordering;
        let value = engine.refresher.get_shared().await?;
        if !engine.kept.load(Ordering::Acquire) {
            self.keep(key, engine);
        }
        Ok(value)
    }
}

impl<U: Upstream> Drop for Engines<U> {
    fn drop(&mut self) {
        let table = self.table.get_mut().unwrap_or_else(|e| e.into_inner());
        for slot in table.drain(..) {
            if let Some(keeper) = slot.keeper {
                keeper.abort();
            }
        }
    }
}

/// An answer holding a token: its body (a [`SecretBody`]'s, shared) is wiped once sent.
fn secret_answer(content_type: &'static str, body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn text(body: impl Into<String>) -> Response {
    ([(header::CONTENT_TYPE, TEXT)], body.into()).into_response()
}

fn json(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

fn not_found(message: &str) -> Response {
    refuse(StatusCode::NOT_FOUND, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_id_comes_from_the_service_account_domain() {
        assert_eq!(
            project_id_of_service_account("copycat@keyless-lab.iam.gserviceaccount.com").as_deref(),
            Some("keyless-lab")
        );
        // Google-managed and default compute accounts do not name the project this way.
        assert_eq!(
            project_id_of_service_account("123-compute@developer.gserviceaccount.com"),
            None
        );
        assert_eq!(project_id_of_service_account("no-at-sign"), None);
    }

    #[test]
    fn project_number_comes_from_the_audience() {
        assert_eq!(
            project_number_of_audience(
                "//iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/p/providers/x"
            )
            .as_deref(),
            Some("424242424242")
        );
        assert_eq!(
            project_number_of_audience("//iam.googleapis.com/projects/my-project/x"),
            None
        );
    }

    /// Counts fetches; every value lives an hour.
    struct Counting(std::sync::atomic::AtomicU64);

    impl Upstream for Counting {
        type Value = u64;

        async fn fetch(&self) -> Result<(u64, OffsetDateTime), crate::refresh::RefreshError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok((n, OffsetDateTime::now_utc() + time::Duration::hours(1)))
        }
    }

    fn counting(name: &str) -> Refresher<Counting> {
        Refresher::new(
            name,
            Counting(Default::default()),
            RefreshPolicy::default(),
            Clock::System,
        )
    }

    #[tokio::test]
    async fn engines_are_bounded_and_the_least_recently_used_goes_first() {
        let metrics = MetricsRegistry::default();
        let budget = NewEngineBudget::new(10, NEW_ENGINE_EVERY, Instant::now());
        let engines = Engines::with_budget(2, metrics.clone(), budget);
        let a = engines.engine("a", || counting("engine a")).unwrap();
        engines.get("a", &a).await.unwrap();
        let b = engines.engine("b", || counting("engine b")).unwrap();
        engines.get("b", &b).await.unwrap();
        // `a` is used again, so `b` is the least recently used when `c` arrives.
        let again = engines.engine("a", || panic!("`a` exists")).unwrap();
        assert_eq!(again.name(), "engine a");
        engines.engine("c", || counting("engine c")).unwrap();
        let keys: Vec<String> = engines
            .table
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.key.clone())
            .collect();
        assert_eq!(keys, ["a", "c"]);
        let rendered = metrics.render();
        assert!(!rendered.contains("engine b"), "{rendered}");
        assert!(rendered.contains("engine a"), "{rendered}");
        // A dropped key comes back as a new engine.
        let b2 = engines.engine("b", || counting("engine b, again")).unwrap();
        assert_eq!(b2.name(), "engine b, again");
    }

    #[tokio::test]
    async fn the_keeper_starts_after_the_first_success_only() {
        let engines = Engines::new(4, MetricsRegistry::default());
        let a = engines.engine("a", || counting("engine a")).unwrap();
        let has_keeper =
            |engines: &Engines<Counting>| engines.table.lock().unwrap()[0].keeper.is_some();
        assert!(!has_keeper(&engines));
        engines.get("a", &a).await.unwrap();
        assert!(has_keeper(&engines));
    }

    /// An answer is rendered once per value and `extra` (an access token's seconds left), then
    /// shared; a replaced answer is wiped once no response still sends it.
    #[test]
    fn answers_are_rendered_once_per_value_and_shared() {
        let engine = Engine::new(counting("engine"));
        let renders = std::cell::Cell::new(0);
        let render = |n: &u64| {
            renders.set(renders.get() + 1);
            SecretBody::text(&format!("token {n}"))
        };
        let (one, two) = (Arc::new(1u64), Arc::new(2u64));
        let wiped = || crate::deliver::server::WIPED.with(|w| w.get());
        let before = wiped();
        let first = engine.body_for(&one, 3599, render);
        let again = engine.body_for(&one, 3599, render);
        assert_eq!(renders.get(), 1, "served from the cache");
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, not a copy");
        assert_eq!(&first[..], b"token 1");
        engine.body_for(&one, 3598, render);
        assert_eq!(renders.get(), 2, "a new second is a new answer");
        drop((first, again));
        assert_eq!(wiped(), before + 1, "the replaced answer was wiped");
        assert_eq!(&engine.body_for(&two, 3598, render)[..], b"token 2");
        assert_eq!(renders.get(), 3, "a new value is a new answer");
    }

    /// The token answer is byte for byte what the endpoint always sent.
    #[test]
    fn the_token_answer_keeps_its_bytes() {
        use crate::secret::Secret;
        let token = GcpToken {
            token: crate::credentials::GoogleAccessToken {
                access_token: Secret::new("ya29.fake"),
                expires_at: OffsetDateTime::now_utc(),
            },
            service_account: None,
            subject: crate::refresh::gcp_token::FederatedSubject::Aws(
                crate::credentials::AwsCredentials {
                    access_key_id: "ASIAFAKE".into(),
                    secret_access_key: Secret::new("s"),
                    session_token: None,
                    expiration: None,
                },
            ),
        };
        assert_eq!(
            &access_token_body(&token, 3599).body()[..],
            br#"{"access_token":"ya29.fake","expires_in":3599,"token_type":"Bearer"}"#
        );
    }

    /// Leaves answer the same bytes as the values rendered per request did.
    #[test]
    fn leaves_keep_their_bytes() {
        let leaf = Leaf::new("a\nb\n".into(), serde_json::json!(["a", "b"]));
        assert_eq!(&leaf.text[..], b"a\nb\n");
        assert_eq!(&leaf.json[..], br#"["a","b"]"#);
        let number = Leaf::new("42".into(), number_json("42"));
        assert_eq!(&number.json[..], b"42");
    }

    fn configured(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| full_scope(s)).collect()
    }

    #[test]
    fn scope_sets_ignore_order_duplicates_and_separators() {
        let all = configured(&["a", "b"]);
        let (a, b) = (full_scope("a"), full_scope("b"));
        assert_eq!(scope_set("b,a, a b", &all).unwrap(), vec![a.clone(), b]);
        assert_eq!(scope_set(&format!("{a},a"), &all).unwrap(), vec![a]);
        assert_eq!(scope_set("", &all).unwrap(), Vec::<String>::new());
        assert_eq!(scope_set(" , ", &all).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn short_and_full_scopes_are_one_scope() {
        assert_eq!(
            full_scope("devstorage.read_only"),
            "https://www.googleapis.com/auth/devstorage.read_only"
        );
        assert_eq!(full_scope(CLOUD_PLATFORM_SCOPE), CLOUD_PLATFORM_SCOPE);
        assert_eq!(full_scope(" cloud-platform "), CLOUD_PLATFORM_SCOPE);
        assert_eq!(full_scope("openid"), "openid");
    }

    /// `--scopes devstorage.read_only` never hands out cloud-platform, whatever is asked.
    #[test]
    fn a_requested_scope_wider_than_configured_is_refused() {
        let read_only = configured(&["devstorage.read_only"]);
        assert!(scope_set("devstorage.read_only", &read_only).is_ok());
        assert!(scope_set(&full_scope("devstorage.read_only"), &read_only).is_ok());
        for wider in [
            "cloud-platform",
            CLOUD_PLATFORM_SCOPE,
            "devstorage.read_only,devstorage.full_control",
            "https://www.googleapis.com/auth/devstorage.read_only.evil",
        ] {
            let refusal = scope_set(wider, &read_only).unwrap_err();
            assert!(matches!(refusal, ScopeRefusal::Wider { .. }), "{wider}");
            assert!(refusal.to_string().contains("--scopes"), "{refusal}");
        }
        // cloud-platform covers the Cloud APIs' scopes, not Workspace ones.
        let cloud = configured(&["cloud-platform"]);
        for covered in [
            "devstorage.full_control",
            "https://www.googleapis.com/auth/devstorage.read_only",
            "pubsub",
            "userinfo.email",
            "cloud-platform.read-only",
        ] {
            assert!(scope_set(covered, &cloud).is_ok(), "{covered}");
        }
        for not_covered in [
            "drive",
            "gmail.send",
            "openid",
            "https://evil.example/auth/x",
        ] {
            assert!(scope_set(not_covered, &cloud).is_err(), "{not_covered}");
        }
        let malformed = scope_set("devstorage.read_only\u{1}\"", &cloud).unwrap_err();
        assert!(matches!(malformed, ScopeRefusal::Malformed { .. }));
        assert!(!malformed.to_string().contains('\u{1}'), "{malformed}");
    }

    proptest::proptest! {
        /// Whatever `?scopes=` holds: a set that is served is normalised, sorted, covered by the
        /// configured scopes, and never carries a control character; a refusal shows none.
        #[test]
        fn served_scope_sets_are_never_wider_than_configured(query in ".{0,200}") {
            let configured = configured(&["devstorage.read_only", "pubsub"]);
            match scope_set(&query, &configured) {
                Ok(set) => {
                    let mut sorted = set.clone();
                    sorted.sort();
                    sorted.dedup();
                    proptest::prop_assert_eq!(&set, &sorted);
                    for scope in &set {
                        proptest::prop_assert!(configured.contains(scope), "{}", scope);
                    }
                }
                Err(refusal) => {
                    let shown = refusal.to_string();
                    proptest::prop_assert!(
                        !shown.chars().any(|c| c.is_control() && c != '\n'),
                        "{:?}",
                        shown
                    );
                }
            }
        }
    }

    #[test]
    fn the_new_engine_budget_allows_a_burst_then_one_per_interval() {
        let start = Instant::now();
        let every = Duration::from_secs(15);
        let mut budget = NewEngineBudget::new(3, every, start);
        for _ in 0..3 {
            budget.spend(start).unwrap();
        }
        assert_eq!(budget.spend(start), Err(every));
        let later = start + Duration::from_secs(5);
        assert_eq!(budget.spend(later), Err(Duration::from_secs(10)));
        budget.spend(start + every).unwrap();
        assert!(budget.spend(start + every).is_err());
        // A long pause refills at most to the capacity.
        let much_later = start + every * 100;
        for _ in 0..3 {
            budget.spend(much_later).unwrap();
        }
        assert!(budget.spend(much_later).is_err());
    }

    /// Cycling keys cannot make one upstream fetch per request: past the budget, new keys are
    /// refused while known ones are still served.
    #[tokio::test]
    async fn cycling_keys_is_refused_past_the_budget() {
        let engines = Engines::new(2, MetricsRegistry::default());
        let a = engines.engine("a", || counting("engine a")).unwrap();
        engines.get("a", &a).await.unwrap();
        engines.engine("b", || counting("engine b")).unwrap();
        let Err(retry_after) = engines.engine("c", || panic!("no engine past the budget")) else {
            panic!("a third new key within the budget's interval was allowed");
        };
        assert!(retry_after <= NEW_ENGINE_EVERY && !retry_after.is_zero());
        assert_eq!(
            engines.engine("a", || panic!("`a` exists")).unwrap().name(),
            "engine a"
        );
    }
}
