//! What every local credential server shares: binding (loopback unless told otherwise), the
//! limits that keep a hostile or broken client from taking the server down, the checks that keep
//! a web page from reading it, serving until SIGTERM/SIGINT, and a clean shutdown.
//!
//! The servers hand out credentials to anything that can reach them, so:
//!
//! - **Binding.** A non-loopback address (including `0.0.0.0` and `::`) is refused unless the
//!   user says `--allow-remote` (`KEYLESS_ALLOW_REMOTE`, `allow_remote = true` in keyless.toml),
//!   and then it is logged as a warning. `/metrics` and `/healthz` hold no credential and may
//!   bind anywhere (Prometheus scrapes over the network).
//! - **DNS rebinding.** A web page can make a browser resolve its own name to 127.0.0.1 (or to
//!   any address of this machine) and read a server as "same origin"; the `Host` header still
//!   carries the page's name. Each listener decides from its *own* bound address, never from a
//!   daemon-wide flag: a loopback listener accepts only loopback names and addresses, the bound
//!   address, the names the emulated service really has (`169.254.170.2` for ECS,
//!   `169.254.169.254` for IMDS, `metadata.google.internal` for GCE) and the explicit allow-list
//!   (`--allowed-host`, `allowed_hosts` in keyless.toml). A non-loopback credential listener
//!   also accepts any IP literal, but a DNS name only from that list: rebinding always carries
//!   a DNS name. Anything else answers 403. `/metrics` on a non-loopback address (no
//!   credentials) accepts any `Host`.
//! - **No CORS.** No answer carries `Access-Control-*` headers, so a browser never lets a
//!   cross-origin page read one (and preflights fail).
//! - **Limits** ([`Limits`]): the request head (line and headers) is at most 16 KiB (431), a body
//!   at most 8 KiB (413), the head must arrive within 10 s of the connection opening or of the
//!   previous answer (slow clients and idle kept-alive connections are closed), and at most 4096
//!   connections are open per listener (fewer when the file-descriptor limit is lower); beyond
//!   that new connections wait in the kernel's backlog until one closes.
//! - **Requests.** Methods the endpoint does not serve answer 405; a path with `.` or `..`
//!   segments (raw or percent-encoded), encoded slashes or NUL answers 404. No server here reads
//!   files, so this is defence in depth: no path ever reaches a handler un-normalised.
//! - **Request values in logs and answers.** Whatever a request carries (path, query values once
//!   decoded, header values) goes into a log line, an engine name, a metric label or an error
//!   body only through [`escaped`]: control characters, line and paragraph separators and
//!   bidirectional overrides are written as `\u{..}` escapes, so `%0A` in a query cannot forge
//!   a log line, and a long value is cut short.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A name or address clients may send in `Host` besides the listener's own (`--allowed-host`,
/// `allowed_hosts` in keyless.toml): a DNS name without port (lower-cased, without a trailing
/// dot) or an IP address. Parsed once where it enters; the only way to get one is `parse`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowedHost(String);

/// Why a `--allowed-host` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllowedHostError {
    /// A wildcard would let any name a rebinding page controls through.
    #[error(
        "allowed host {0:?} has a wildcard: name each host clients use
           hint: --allowed-host host.docker.internal (repeat the flag for more names)"
    )]
    Wildcard(String),
    /// A port: the check is on the name, the listener fixes the port.
    #[error(
        "allowed host {0:?} has a port: give the name alone (the port is the listener's)
           hint: --allowed-host {1}"
    )]
    Port(String, String),
    /// Not a DNS name or an IP address.
    #[error(
        "allowed host {0:?} is not a DNS name or an IP address
           hint: a name such as keyless.internal (letters, digits, `-`, `_`, dots; at most 253          characters) or an address such as 10.0.0.5 or [fd00::5]"
    )]
    Invalid(String),
}

impl AllowedHost {
    /// Whether `name` (as [`host_name`] returns it: lower-cased, no port, brackets or trailing
    /// dot) is this host.
    fn matches(&self, name: &str) -> bool {
        match (self.0.parse::<IpAddr>(), name.parse::<IpAddr>()) {
            (Ok(allowed), Ok(ip)) => allowed == ip.to_canonical(),
            (Err(_), Err(_)) => self.0 == name,
            _ => false,
        }
    }

    /// The host as it is matched.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AllowedHost {
    type Err = AllowedHostError;

    fn from_str(text: &str) -> Result<Self, AllowedHostError> {
        let value = text.trim();
        if value.contains('*') {
            return Err(AllowedHostError::Wildcard(text.to_string()));
        }
        let bracketed = value.strip_prefix('[').map(|rest| rest.split_once(']'));
        match bracketed {
            Some(Some((inside, ""))) => {
                return match inside.parse::<std::net::Ipv6Addr>() {
                    Ok(ip) => Ok(Self(IpAddr::V6(ip).to_canonical().to_string())),
                    Err(_) => Err(AllowedHostError::Invalid(text.to_string())),
                };
            }
            Some(Some((inside, after))) if after.strip_prefix(':').is_some_and(is_port) => {
                return Err(AllowedHostError::Port(
                    text.to_string(),
                    format!("[{inside}]"),
                ));
            }
            Some(_) => return Err(AllowedHostError::Invalid(text.to_string())),
            None => {}
        }
        if let Ok(ip) = value.parse::<IpAddr>() {
            return Ok(Self(ip.to_canonical().to_string()));
        }
        if let Some((host, port)) = value.rsplit_once(':') {
            if is_port(port) && !host.contains(':') && !host.is_empty() {
                return Err(AllowedHostError::Port(text.to_string(), host.to_string()));
            }
        }
        let name = value
            .strip_suffix('.')
            .unwrap_or(value)
            .to_ascii_lowercase();
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(AllowedHostError::Invalid(text.to_string()));
        }
        Ok(Self(name))
    }
}

/// Who may reach a listener: whether it may bind beyond loopback, and which extra `Host` names
/// its clients use. One value for a whole command or profile; each listener applies it to its
/// own address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// `--allow-remote`: a credential endpoint may bind a non-loopback address.
    pub allow_remote: bool,
    /// `--allowed-host`: names (and addresses) accepted in `Host` besides the listener's own.
    pub allowed_hosts: Vec<AllowedHost>,
}

impl Access {
    /// Loopback only, no extra names.
    pub fn local() -> Self {
        Self::default()
    }
}

/// At most this many characters of a request value are shown by [`escaped`].
pub const MAX_SHOWN_CHARS: usize = 256;

/// `value` (from a request: a path, a decoded query value, a header) as it may be shown in a log
/// line, an engine name, a metric label or an error body: see [`Escaped`].
pub fn escaped(value: &str) -> Escaped<'_> {
    Escaped(value)
}

/// A request value that displays on one line, unambiguously: a backslash is doubled, control
/// characters (`\n`, `\r`, `\t`, `\u{1b}`, C1), Unicode line and paragraph separators and
/// bidirectional-text controls become escapes, and after [`MAX_SHOWN_CHARS`] characters the rest
/// is summarised as `…(N more bytes)`. The one helper every server logs request values through.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(&'a str);

impl Escaped<'_> {
    fn needs_escape(c: char) -> bool {
        c == '\\' || Self::needs_escape_except_backslash(c)
    }

    /// What may never appear in the shown form (a backslash does, doubled or as an escape).
    fn needs_escape_except_backslash(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
    }
}

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for (shown, (at, c)) in self.0.char_indices().enumerate() {
            if shown == MAX_SHOWN_CHARS {
                return write!(f, "…({} more bytes)", self.0.len() - at);
            }
            if Self::needs_escape(c) {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    _ => write!(f, "{}", c.escape_unicode())?,
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A rendered answer that holds credentials (a JSON document, a token): its bytes live in one
/// exactly-sized buffer that is wiped when the last reference to it goes away: the copy a server
/// keeps to answer from, and every response body still being written. Cloning shares the
/// buffer (no copy per request); the only way to make one is to render into such a buffer.
#[derive(Clone)]
pub struct SecretBody(axum::body::Bytes);

/// The buffer behind a [`SecretBody`]: zeroised on drop.
struct WipedOnDrop(Vec<u8>);

impl AsRef<[u8]> for WipedOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for WipedOnDrop {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
        #[cfg(test)]
        WIPED.with(|wiped| wiped.set(wiped.get() + 1));
    }
}

#[cfg(test)]
thread_local! {
    /// Buffers wiped on this thread (tests watch a replacement wipe the old one).
    pub(crate) static WIPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl SecretBody {
    /// `value` as JSON, written once into a buffer of exactly its size (a buffer that grew while
    /// writing would leave unwiped copies behind in freed memory).
    pub fn json<T: serde::Serialize>(value: &T) -> Self {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        // Serialising plain structs of strings cannot fail; an error leaves an empty document.
        let _ = serde_json::to_writer(&mut count, value);
        let mut buffer = Vec::with_capacity(count.0);
        let _ = serde_json::to_writer(&mut buffer, value);
        Self::from_buffer(buffer)
    }

    /// `text` (a token) as the body.
    pub fn text(text: &str) -> Self {
        Self::from_buffer(text.as_bytes().to_vec())
    }

    fn from_buffer(buffer: Vec<u8>) -> Self {
        Self(axum::body::Bytes::from_owner(WipedOnDrop(buffer)))
    }

    /// The bytes as a response body: shares the buffer (a reference count, not a copy).
    pub fn body(&self) -> axum::body::Bytes {
        self.0.clone()
    }
}

impl std::fmt::Debug for SecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBody({} bytes)", self.0.len())
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("could not listen on {addr}: {cause}\n  hint: pick a free port, e.g. --listen 127.0.0.1:0 for any")]
    Bind { addr: String, cause: String },
    /// A credential endpoint was asked to listen beyond this machine without `--allow-remote`.
    #[error(
        "refusing to listen on {addr} ({resolved}): it is not a loopback address, and anything that \
         can reach it could take the credentials this endpoint hands out\n  \
         hint: listen on 127.0.0.1 (the default), or pass --allow-remote (KEYLESS_ALLOW_REMOTE=true; \
         allow_remote = true in keyless.toml) if other hosts or containers must reach it"
    )]
    RemoteNotAllowed { addr: String, resolved: SocketAddr },
    /// Serving failed.
    #[error("the server on {addr} stopped: {cause}")]
    Serve { addr: SocketAddr, cause: String },
}

impl crate::classify::Classify for ServerError {
    /// Listening beyond loopback without `--allow-remote` is configuration; a taken port is not.
    fn class(&self) -> crate::classify::Class {
        match self {
            Self::RemoteNotAllowed { .. } => crate::classify::Class::Usage,
            Self::Bind { .. } | Self::Serve { .. } => crate::classify::Class::Failure,
        }
    }
}

/// What a listener serves: it decides the `Host` names it answers to, the methods it accepts and
/// whether binding beyond loopback needs `--allow-remote`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The ECS-style container credentials endpoint (`aws serve`, `ecs_listen`).
    EcsCredentials,
    /// The IMDSv2-style endpoint (`aws serve --imds`, `imds_listen`).
    Imds,
    /// The GCE-metadata-style endpoint (`gcp serve`, `gce_metadata_listen`).
    GceMetadata,
    /// `/healthz` and `/metrics` (`--metrics-listen`, `metrics_listen`).
    Metrics,
}

impl Endpoint {
    /// Whether it hands out credentials (and so binds beyond loopback only on purpose).
    pub fn hands_out_credentials(self) -> bool {
        !matches!(self, Self::Metrics)
    }

    /// The names and addresses clients of the real service use, besides loopback: what an SDK
    /// sends when the real address is routed (or `/etc/hosts`-mapped) to keyless.
    pub fn service_hosts(self) -> &'static [&'static str] {
        match self {
            Self::EcsCredentials => &["169.254.170.2", "169.254.170.23", "fd00:ec2::23"],
            Self::Imds => &["169.254.169.254", "fd00:ec2::254"],
            Self::GceMetadata => &["metadata.google.internal", "metadata", "169.254.169.254"],
            Self::Metrics => &[],
        }
    }

    /// The methods it serves; anything else answers 405.
    pub fn methods(self) -> &'static [Method] {
        const READ: &[Method] = &[Method::GET, Method::HEAD];
        const IMDS: &[Method] = &[Method::GET, Method::HEAD, Method::PUT];
        match self {
            Self::Imds => IMDS,
            _ => READ,
        }
    }
}

/// The limits every server applies to every connection. [`Limits::current`] is the defaults,
/// with the hidden test and operator knobs `KEYLESS_SERVER_HEADER_TIMEOUT` (seconds, may be
/// fractional) and `KEYLESS_SERVER_MAX_CONNECTIONS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers together; larger heads answer 431.
    pub max_head_bytes: usize,
    /// Header fields per request; more answer 431.
    pub max_headers: usize,
    /// A request body; larger ones answer 413. The endpoints take no bodies at all.
    pub max_body_bytes: usize,
    /// How long a connection may take to send a request head, counted from when it opens or
    /// from the previous answer: slow clients and idle kept-alive connections are closed.
    pub header_read_timeout: Duration,
    /// Connections open at once per listener; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// After shutdown is asked for, how long requests in flight may still take.
    pub shutdown_grace: Duration,
}

/// Default for [`Limits::max_connections`] (lowered to fit the file-descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// File descriptors left for everything but connections (upstream calls, files, listeners).
const RESERVED_FDS: u64 = 256;
/// The read buffer hyper may grow to (its minimum): bounds what a connection can make us hold.
const MAX_BUFFER_BYTES: usize = 16 * 1024;
/// How long accepting pauses after an error such as "too many open files".
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// The defaults, adjusted by the hidden environment knobs and fitted to the process's
    /// file-descriptor limit (raised to its hard limit first, as Go's runtime does).
    pub fn current() -> Self {
        let mut limits = Self::default();
        if let Some(secs) =
            env_number::<f64>("KEYLESS_SERVER_HEADER_TIMEOUT").filter(|s| s.is_finite() && *s > 0.0)
        {
            limits.header_read_timeout = Duration::from_secs_f64(secs);
        }
        if let Some(n) = env_number::<usize>("KEYLESS_SERVER_MAX_CONNECTIONS").filter(|n| *n > 0) {
            limits.max_connections = n;
        }
        limits.max_connections = limits.max_connections.min(connection_budget());
        limits
    }
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// How many connections the file-descriptor limit leaves room for, after raising the soft limit
/// to the hard one.
fn connection_budget() -> usize {
    let soft = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024);
    usize::try_from(soft.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX)
}

/// A bound listener and what it serves.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    endpoint: Endpoint,
    /// How `Host` is checked, decided from this listener's own bound address.
    host_check: HostCheck,
    /// Names accepted besides the listener's own (`--allowed-host`).
    allowed_hosts: Arc<[AllowedHost]>,
}

/// How a listener checks `Host`: decided per listener from the address it is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostCheck {
    /// Loopback: loopback names and addresses, the service's names, the allow-list.
    Local,
    /// A credential endpoint beyond loopback: as `Local`, plus any IP literal; DNS names only
    /// from the allow-list.
    Remote,
    /// `/metrics` and `/healthz` beyond loopback hold no credential: any `Host`.
    Any,
}

impl Listener {
    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// What it serves.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }
}

/// Resolves and binds `addr` for `endpoint`; a credential endpoint beyond loopback needs
/// `access.allow_remote` (and is then logged as a warning).
pub async fn bind(
    addr: &str,
    endpoint: Endpoint,
    access: &Access,
) -> Result<Listener, ServerError> {
    let bind_error = |cause: String| ServerError::Bind {
        addr: addr.to_string(),
        cause,
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| bind_error(e.to_string()))?
        .collect();
    if let Some(remote) = resolved.iter().find(|a| !a.ip().is_loopback()) {
        check_exposure(addr, *remote, endpoint, access.allow_remote)?;
    }
    let mut last_error = None;
    for candidate in &resolved {
        match listen_on(*candidate) {
            Ok(tcp) => return listener(tcp, endpoint, access),
            Err(e) => last_error = Some(e),
        }
    }
    Err(bind_error(last_error.map_or_else(
        || "the name resolves to no address".to_string(),
        |e| e.to_string(),
    )))
}

/// A listening socket on `addr` with a backlog as deep as the connection cap (the kernel caps it
/// at `net.core.somaxconn`), so a burst of connections waits in the queue instead of having its
/// handshakes dropped and retried.
///
/// A socket kept for `addr` (passed by systemd, or bound earlier by this process and still
/// wanted: see [`super::listen_fds`]) is used instead of binding anew, so the port is never left
/// free for another local user to take.
fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if let Some(kept) = super::listen_fds::take(addr) {
        tracing::debug!(%addr, "serving on a kept socket");
        return TcpListener::from_std(kept?);
    }
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let tcp = socket
        .listen(u32::try_from(DEFAULT_MAX_CONNECTIONS).unwrap_or(1024))?
        .into_std()?;
    super::listen_fds::keep(addr, &tcp);
    TcpListener::from_std(tcp)
}

/// Binds `addr` at once (the daemon reports a clash when a profile starts), with the rules of
/// [`bind`]. Must run inside the tokio runtime.
pub fn bind_now(
    addr: SocketAddr,
    endpoint: Endpoint,
    access: &Access,
) -> Result<Listener, ServerError> {
    if !addr.ip().is_loopback() {
        check_exposure(&addr.to_string(), addr, endpoint, access.allow_remote)?;
    }
    let tcp = listen_on(addr).map_err(|cause| ServerError::Bind {
        addr: addr.to_string(),
        cause: cause.to_string(),
    })?;
    listener(tcp, endpoint, access)
}

fn check_exposure(
    addr: &str,
    resolved: SocketAddr,
    endpoint: Endpoint,
    allow_remote: bool,
) -> Result<(), ServerError> {
    if endpoint.hands_out_credentials() && !allow_remote {
        return Err(ServerError::RemoteNotAllowed {
            addr: addr.to_string(),
            resolved,
        });
    }
    Ok(())
}

fn listener(
    tcp: TcpListener,
    endpoint: Endpoint,
    access: &Access,
) -> Result<Listener, ServerError> {
    let local = tcp.local_addr().map_err(|e| ServerError::Bind {
        addr: "(bound socket)".into(),
        cause: e.to_string(),
    })?;
    let remote = !local.ip().is_loopback();
    let host_check = if remote && endpoint.hands_out_credentials() {
        tracing::warn!(
            %local,
            allowed_hosts = %access.allowed_hosts.iter().map(AllowedHost::as_str).collect::<Vec<_>>().join(","),
            "listening on a non-loopback address (--allow-remote): anything that can reach it can \
             take credentials; Host must be an IP address, a name of the service or an \
             --allowed-host"
        );
        HostCheck::Remote
    } else if remote {
        tracing::info!(%local, "serving /metrics and /healthz on a non-loopback address (they hold no credentials)");
        HostCheck::Any
    } else {
        HostCheck::Local
    };
    Ok(Listener {
        tcp,
        endpoint,
        host_check,
        allowed_hosts: access.allowed_hosts.clone().into(),
    })
}

/// The address clients should use: an unspecified bind address (0.0.0.0, ::) is reached
/// through loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// What the per-request guard knows.
#[derive(Clone, Debug)]
struct Guard {
    endpoint: Endpoint,
    local: SocketAddr,
    host_check: HostCheck,
    allowed_hosts: Arc<[AllowedHost]>,
    max_body_bytes: usize,
}

/// `router` behind the guard: the checks described in the module doc, for every route and the
/// fallback alike.
fn guarded(router: axum::Router, guard: Guard) -> axum::Router {
    let max_body = guard.max_body_bytes;
    axum::Router::new()
        .fallback_service(router.layer(axum::extract::DefaultBodyLimit::max(max_body)))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            guard_request,
        ))
}

async fn guard_request(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let refusal = if guard.host_check == HostCheck::Any {
        None
    } else {
        host_refusal(&guard, &request)
    }
    .or_else(|| method_refusal(guard.endpoint, request.method()))
    .or_else(|| path_refusal(request.uri().path()))
    .or_else(|| body_refusal(guard.max_body_bytes, &request));
    let mut response = match refusal {
        Some(response) => {
            tracing::debug!(
                method = %request.method(),
                path = %escaped(request.uri().path()),
                host = %escaped(
                    request
                        .headers()
                        .get(header::HOST)
                        .map(|h| String::from_utf8_lossy(h.as_bytes()))
                        .as_deref()
                        .unwrap_or_default()
                ),
                status = response.status().as_u16(),
                "request refused"
            );
            response
        }
        None => next.run(request).await,
    };
    strip_cors(response.headers_mut());
    response
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// 403 for a `Host` that is not this endpoint's (DNS rebinding), 400 for an HTTP/1.1 request
/// without one (RFC 9112 §3.2).
fn host_refusal(guard: &Guard, request: &Request) -> Option<Response> {
    let Some(value) = request.headers().get(header::HOST) else {
        return (request.version() != Version::HTTP_10).then(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "the request has no Host header (HTTP/1.1 requires one)",
            )
        });
    };
    let allowed = |host: Option<&str>| {
        host.and_then(host_name).is_some_and(|name| {
            host_is_allowed(
                &name,
                guard.endpoint,
                guard.local,
                guard.host_check,
                &guard.allowed_hosts,
            )
        })
    };
    // An absolute-form target (`GET http://name/ HTTP/1.1`) names the host too: both must pass.
    let target_ok = request
        .uri()
        .authority()
        .is_none_or(|authority| allowed(Some(authority.as_str())));
    (!(allowed(value.to_str().ok()) && target_ok)).then(|| {
        refuse(
            StatusCode::FORBIDDEN,
            "the Host header does not name this endpoint, so the request may come from a web page \
             through DNS rebinding; use the address keyless printed (127.0.0.1:PORT), or add the \
             name clients use with --allowed-host NAME (allowed_hosts in keyless.toml)",
        )
    })
}

/// The host part of a `Host` value, lower-cased, without port, brackets or a trailing dot.
fn host_name(value: &str) -> Option<String> {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) if is_port(port) && !host.contains(':') => host,
            Some(_) if value.parse::<IpAddr>().is_err() => return None,
            _ => value,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

fn host_is_allowed(
    name: &str,
    endpoint: Endpoint,
    local: SocketAddr,
    check: HostCheck,
    allowed: &[AllowedHost],
) -> bool {
    if check == HostCheck::Any || name == "localhost" {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        // Beyond loopback clients reach us by any of the machine's addresses; an IP literal is
        // never what a rebinding page sends.
        if ip.is_loopback() || ip == local.ip().to_canonical() || check == HostCheck::Remote {
            return true;
        }
    }
    if allowed.iter().any(|host| host.matches(name)) {
        return true;
    }
    endpoint.service_hosts().iter().any(|known| {
        match (known.parse::<IpAddr>(), name.parse::<IpAddr>()) {
            (Ok(known), Ok(ip)) => known == ip.to_canonical(),
            _ => *known == name,
        }
    })
}

fn method_refusal(endpoint: Endpoint, method: &Method) -> Option<Response> {
    if endpoint.methods().contains(method) {
        return None;
    }
    let allow = endpoint
        .methods()
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this endpoint answers {allow} only"),
    );
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Some(response)
}

/// 404 for a path that is not plain: `.`/`..` segments (raw or percent-encoded), encoded `/`,
/// `\` or NUL, backslashes. Handlers only ever see paths that mean what they say.
fn path_refusal(path: &str) -> Option<Response> {
    let lower = path.to_ascii_lowercase();
    let encoded_separator = ["%2f", "%5c", "%00"].iter().any(|e| lower.contains(e));
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let dot_segment = decoded
        .split(['/', '\\'])
        .any(|segment| segment == "." || segment == "..");
    let odd = decoded.contains(['\\', '\0']);
    (encoded_separator || dot_segment || odd).then(|| refuse(StatusCode::NOT_FOUND, "no such path"))
}

/// 413 for a declared body over the limit (a chunked one is cut off where it is read).
fn body_refusal(max: usize, request: &Request) -> Option<Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    (declared > max as u64).then(|| {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is larger than {max} bytes; this endpoint takes no body"),
        )
    })
}

fn strip_cors(headers: &mut axum::http::HeaderMap) {
    let cors: Vec<header::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in cors {
        headers.remove(name);
    }
}

/// Serves `router` on `listener` with [`Limits::current`] until `shutdown` completes, then lets
/// requests in flight end (at most [`Limits::shutdown_grace`]).
pub async fn serve(
    listener: Listener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with(listener, router, Limits::current(), shutdown).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: Listener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = listener.local_addr().map_err(|e| ServerError::Serve {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        cause: e.to_string(),
    })?;
    let router = guarded(
        router,
        Guard {
            endpoint: listener.endpoint,
            local,
            host_check: listener.host_check,
            allowed_hosts: listener.allowed_hosts.clone(),
            max_body_bytes: limits.max_body_bytes,
        },
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_head_bytes)
        .max_headers(limits.max_headers)
        .max_buf_size(MAX_BUFFER_BYTES.max(limits.max_head_bytes))
        .keep_alive(true);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    tracing::debug!(%local, ?limits, "serving");
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or memory, or a connection reset before accept: pause
                    // briefly instead of spinning; connections closing will make room.
                    tracing::warn!(%local, "could not accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move {
                    let response = tower_call(router, request.map(axum::body::Body::new)).await;
                    Ok::<_, Infallible>(response)
                }
            },
        );
        let http = http.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let stopping = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                () = stopping => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, "connection closed: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back means all connections done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(%local, grace = ?limits.shutdown_grace, "connections still open at shutdown were closed");
    }
    Ok(())
}

async fn tower_call(mut router: axum::Router, request: Request) -> Response {
    use tower_service::Service as _;
    match router.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C): what systemd, Kubernetes and a terminal send.
///
/// The handlers are installed when this is *called*, not when the future is first polled: call
/// it before announcing readiness, so a supervisor that stops the process right after the export
/// lines appear gets a clean shutdown instead of the default action (death).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async move {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_values_are_shown_on_one_line_and_cut_short() {
        assert_eq!(escaped("plain/value?x=1").to_string(), "plain/value?x=1");
        assert_eq!(
            escaped("aud\nFORGED level=ERROR").to_string(),
            "aud\\nFORGED level=ERROR"
        );
        assert_eq!(escaped("a\r\tb\\c").to_string(), "a\\r\\tb\\\\c");
        assert_eq!(escaped("\u{1b}[31m").to_string(), "\\u{1b}[31m");
        assert_eq!(
            escaped("x\u{2028}y\u{202e}").to_string(),
            "x\\u{2028}y\\u{202e}"
        );
        assert_eq!(escaped("é").to_string(), "é", "printable Unicode is kept");
        let long = "a".repeat(MAX_SHOWN_CHARS + 10);
        let shown = escaped(&long).to_string();
        assert!(shown.ends_with("…(10 more bytes)"), "{shown}");
    }

    #[test]
    fn a_secret_body_is_wiped_when_its_last_reference_goes() {
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            token: &'a str,
        }
        let before = WIPED.with(|w| w.get());
        let kept = SecretBody::json(&Doc { token: "t0ken" });
        assert_eq!(&kept.body()[..], br#"{"token":"t0ken"}"#);
        assert_eq!(format!("{kept:?}"), "SecretBody(17 bytes)");
        let in_flight = kept.body();
        drop(kept);
        assert_eq!(WIPED.with(|w| w.get()), before, "a response still uses it");
        drop(in_flight);
        assert_eq!(WIPED.with(|w| w.get()), before + 1);
        drop(SecretBody::text("id-token"));
        assert_eq!(WIPED.with(|w| w.get()), before + 2);
    }

    proptest! {
        /// Whatever a request carries, the shown form has no control or separator character.
        #[test]
        fn escaped_values_never_break_a_line(value in any::<String>()) {
            let shown = escaped(&value).to_string();
            prop_assert!(!shown.chars().any(Escaped::needs_escape_except_backslash));
        }
    }

    fn local() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    fn allowed(host: &str, endpoint: Endpoint) -> bool {
        allowed_on(host, endpoint, HostCheck::Local, &[])
    }

    fn allowed_on(host: &str, endpoint: Endpoint, check: HostCheck, list: &[&str]) -> bool {
        let list: Vec<AllowedHost> = list.iter().map(|h| h.parse().unwrap()).collect();
        host_name(host).is_some_and(|name| host_is_allowed(&name, endpoint, local(), check, &list))
    }

    /// Beyond loopback an IP literal passes (rebinding never sends one) but a DNS name only
    /// when it is the service's or on the allow-list; the list works on loopback too.
    #[test]
    fn a_remote_listener_takes_ip_literals_and_listed_names_only() {
        let remote = |host: &str, list: &[&str]| {
            allowed_on(host, Endpoint::EcsCredentials, HostCheck::Remote, list)
        };
        for host in [
            "10.1.2.3:9911",
            "192.0.2.7",
            "[fd00::5]:80",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(remote(host, &[]), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:9911",
            "10.1.2.3.nip.io",
            "x",
        ] {
            assert!(!remote(host, &[]), "{host}");
        }
        assert!(remote("Keyless.Internal.:9911", &["keyless.internal"]));
        assert!(!remote("other.internal", &["keyless.internal"]));
        assert!(allowed_on(
            "metadata.google.internal",
            Endpoint::GceMetadata,
            HostCheck::Remote,
            &[]
        ));
        // On loopback an IP literal that is not loopback still fails, a listed name passes.
        assert!(!allowed_on(
            "10.1.2.3",
            Endpoint::Imds,
            HostCheck::Local,
            &[]
        ));
        assert!(allowed_on(
            "host.docker.internal:80",
            Endpoint::Imds,
            HostCheck::Local,
            &["host.docker.internal"]
        ));
        assert!(allowed_on(
            "[::ffff:10.0.0.5]",
            Endpoint::Imds,
            HostCheck::Local,
            &["10.0.0.5"]
        ));
        assert!(allowed_on(
            "anything.example",
            Endpoint::Metrics,
            HostCheck::Any,
            &[]
        ));
    }

    #[test]
    fn allowed_hosts_are_parsed_once_and_name_the_fix() {
        let ok = |text: &str| text.parse::<AllowedHost>().map(|h| h.to_string());
        assert_eq!(ok("Keyless.Internal.").unwrap(), "keyless.internal");
        assert_eq!(
            ok(" host.docker.internal ").unwrap(),
            "host.docker.internal"
        );
        assert_eq!(ok("10.0.0.5").unwrap(), "10.0.0.5");
        assert_eq!(ok("[FD00::5]").unwrap(), "fd00::5");
        assert_eq!(ok("::ffff:10.0.0.5").unwrap(), "10.0.0.5");
        assert_eq!(ok("my_host").unwrap(), "my_host");
        assert!(matches!(
            ok("*.example.com"),
            Err(AllowedHostError::Wildcard(_))
        ));
        let port = ok("keyless.internal:9911").unwrap_err();
        assert!(
            port.to_string().contains("--allowed-host keyless.internal"),
            "{port}"
        );
        assert!(matches!(
            ok("[fd00::5]:80"),
            Err(AllowedHostError::Port(..))
        ));
        for bad in [
            "", ".", "a..b", "-a.b", "a b", "http://x", "x/y", "[fd00::5", "[nope]",
        ] {
            assert!(
                matches!(ok(bad), Err(AllowedHostError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(ok(&"a".repeat(64)).is_err());
    }

    proptest::proptest! {
        /// Whatever the text, parsing never panics, and what it accepts is accepted again as
        /// itself and matches the `Host` a client would send for it.
        #[test]
        fn allowed_host_parsing_round_trips(
            text in proptest::prop_oneof!["\\PC{0,40}", "[a-zA-Z0-9._:\\[\\]*-]{1,30}"]
        ) {
            if let Ok(host) = text.parse::<AllowedHost>() {
                let again: AllowedHost = host.as_str().parse().unwrap();
                proptest::prop_assert_eq!(&again, &host);
                let sent = if host.as_str().contains(':') {
                    format!("[{host}]:80")
                } else {
                    format!("{host}:80")
                };
                let name = host_name(&sent).unwrap();
                proptest::prop_assert!(host.matches(&name), "{} vs {}", host, name);
            }
        }
    }

    #[test]
    fn loopback_and_service_hosts_pass_the_host_check() {
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "127.9.9.9:1",
            "localhost:8080",
            "LOCALHOST.",
            "[::1]:8080",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]:80",
        ] {
            for endpoint in [
                Endpoint::EcsCredentials,
                Endpoint::Imds,
                Endpoint::GceMetadata,
                Endpoint::Metrics,
            ] {
                assert!(allowed(host, endpoint), "{host} {endpoint:?}");
            }
        }
        assert!(allowed("169.254.170.2", Endpoint::EcsCredentials));
        assert!(allowed("169.254.170.23:80", Endpoint::EcsCredentials));
        assert!(allowed("[fd00:ec2::23]", Endpoint::EcsCredentials));
        assert!(allowed("169.254.169.254", Endpoint::Imds));
        assert!(allowed("metadata.google.internal", Endpoint::GceMetadata));
        assert!(allowed(
            "metadata.google.internal.:80",
            Endpoint::GceMetadata
        ));
        assert!(allowed("metadata", Endpoint::GceMetadata));
        assert!(allowed("169.254.169.254:80", Endpoint::GceMetadata));
    }

    #[test]
    fn other_hosts_fail_the_host_check() {
        for (host, endpoint) in [
            ("attacker.example:8080", Endpoint::EcsCredentials),
            ("attacker.example", Endpoint::GceMetadata),
            ("localhost.attacker.example", Endpoint::EcsCredentials),
            ("127.0.0.1.nip.io", Endpoint::Imds),
            ("10.0.0.1", Endpoint::EcsCredentials),
            ("169.254.169.254", Endpoint::EcsCredentials),
            ("metadata.google.internal", Endpoint::Imds),
            ("169.254.170.2", Endpoint::Metrics),
            ("", Endpoint::Metrics),
            ("127.0.0.1:notaport", Endpoint::EcsCredentials),
            ("[::1]x", Endpoint::EcsCredentials),
        ] {
            assert!(!allowed(host, endpoint), "{host} {endpoint:?}");
        }
    }

    #[test]
    fn dot_segments_and_encoded_separators_are_refused() {
        for path in [
            "/../etc/passwd",
            "/creds/..",
            "/latest/./meta-data",
            "/%2e%2e/creds",
            "/%2E%2e%2Fcreds",
            "/creds%2f..",
            "/a\\..\\b",
            "/x%5c..",
            "/nul%00",
            "/.%2e/",
        ] {
            assert!(path_refusal(path).is_some(), "{path}");
        }
        for path in [
            "/",
            "/creds",
            "/latest/meta-data/iam/security-credentials/deploy",
            "/computeMetadata/v1/instance/service-accounts/default/token",
            "/a..b/.hidden/...",
        ] {
            assert!(path_refusal(path).is_none(), "{path}");
        }
    }

    #[test]
    fn only_the_endpoints_methods_pass() {
        assert!(method_refusal(Endpoint::Imds, &Method::PUT).is_none());
        let refused = method_refusal(Endpoint::EcsCredentials, &Method::PUT).unwrap();
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()[header::ALLOW], "GET, HEAD");
        for method in ["OPTIONS", "TRACE", "DELETE", "PATCH", "PROPFIND"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert!(method_refusal(Endpoint::GceMetadata, &method).is_some());
        }
    }

    #[tokio::test]
    async fn credential_endpoints_refuse_a_remote_address_without_the_flag() {
        let local_only = Access::local();
        let remote = Access {
            allow_remote: true,
            allowed_hosts: Vec::new(),
        };
        let error = bind("0.0.0.0:0", Endpoint::EcsCredentials, &local_only)
            .await
            .unwrap_err();
        assert!(matches!(error, ServerError::RemoteNotAllowed { .. }));
        assert!(error.to_string().contains("--allow-remote"), "{error}");
        assert!(bind_now(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            Endpoint::GceMetadata,
            &local_only
        )
        .is_err());
        let allowed = bind("0.0.0.0:0", Endpoint::Imds, &remote).await.unwrap();
        assert_eq!(allowed.host_check, HostCheck::Remote);
        let metrics = bind("0.0.0.0:0", Endpoint::Metrics, &local_only)
            .await
            .unwrap();
        assert_eq!(metrics.host_check, HostCheck::Any);
        let local = bind("127.0.0.1:0", Endpoint::EcsCredentials, &local_only)
            .await
            .unwrap();
        assert_eq!(local.host_check, HostCheck::Local);
    }

    /// A second listener on a fixed address gets the socket the first one bound (kept), instead
    /// of failing with "address in use" or leaving the port free in between: what a reload that
    /// restarts a profile does.
    #[tokio::test]
    async fn a_fixed_address_is_bound_once_and_kept_until_released() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let first = bind_now(addr, Endpoint::Imds, &Access::local()).unwrap();
        let second = bind_now(addr, Endpoint::Imds, &Access::local()).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        drop(first);
        drop(second);
        // Still held: nobody else can bind it.
        assert!(std::net::TcpListener::bind(addr).is_err());
        super::super::listen_fds::release_except(&[]);
        assert!(std::net::TcpListener::bind(addr).is_ok());
    }

    /// `--allow-remote` for one listener (or the whole daemon) leaves every loopback listener's
    /// Host check on: it is decided per listener from its own address.
    #[tokio::test]
    async fn allow_remote_keeps_the_host_check_of_loopback_listeners() {
        let remote = Access {
            allow_remote: true,
            allowed_hosts: Vec::new(),
        };
        for endpoint in [
            Endpoint::EcsCredentials,
            Endpoint::Imds,
            Endpoint::GceMetadata,
        ] {
            let listener = bind("127.0.0.1:0", endpoint, &remote).await.unwrap();
            assert_eq!(listener.host_check, HostCheck::Local, "{endpoint:?}");
            let listener =
                bind_now(SocketAddr::from(([127, 0, 0, 1], 0)), endpoint, &remote).unwrap();
            assert_eq!(listener.host_check, HostCheck::Local, "{endpoint:?}");
        }
    }
}
