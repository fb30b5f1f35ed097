//! A fault-injecting HTTP proxy in front of one upstream endpoint (AWS STS, Google STS, IAM
//! Credentials — the lab's listeners, or moto).
//!
//! Why a proxy rather than the lab's own fault queue (`lab.faults()`): the lab answers at the
//! HTTP level, after axum has framed the response, so it cannot refuse a connection, reset it,
//! cut a body short of its `Content-Length`, trickle a body byte by byte or never answer at all.
//! The proxy owns the TCP connection, so every fault a network, a load balancer or a broken
//! upstream produces can be injected, in front of any upstream, without touching the lab.
//!
//! Faults are scripted per request, deterministically: `push(Fault::Status(503), 2)` fails the
//! next two requests and lets the third through; `set_steady(fault)` says what requests get once
//! the script is used up (`Pass` by default), which is how the soak test flaps the upstream.
//! `requests()` counts the requests that reached the proxy: the attempts keyless made.
//!
//! Each connection carries one request (the proxy answers `Connection: close`), so a fault
//! never leaks into the next attempt through a kept-alive connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The largest request the proxy reads (keyless's requests are a few KiB).
const MAX_REQUEST: usize = 1 << 20;

/// What happens to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and relay the answer unchanged.
    Pass,
    /// Nothing listens: connections are refused. Only as the steady state (`set_steady`): a
    /// refused connection never reaches the proxy, so it cannot be counted or scripted.
    Refuse,
    /// Read the request, then reset the connection (RST) without a word.
    Reset,
    /// Read the request and never answer (until the client gives up).
    Hang,
    /// Wait this long, then forward and answer normally: a slow upstream.
    Delay(Duration),
    /// Forward, send the head at once and the body in pieces spread over this long.
    Trickle(Duration),
    /// Answer this instead of forwarding.
    Respond {
        status: u16,
        content_type: String,
        body: String,
    },
    /// Forward, but send only the first half of the body (with the full `Content-Length`), then
    /// close the connection.
    Truncate,
    /// Forward, and relay the answer with this `Content-Type`.
    ContentType(String),
    /// Forward, and shift the `Date` header and every RFC 3339 time in the body by this many
    /// seconds: the upstream's clock is that far ahead (negative: behind) of ours.
    Skew(i64),
}

impl Fault {
    /// A plain HTTP error (`text/plain` body), as a load balancer in front of anything sends.
    pub fn status(status: u16) -> Self {
        Self::Respond {
            status,
            content_type: "text/plain".into(),
            body: format!("upstream said {status} (injected by the fault proxy)"),
        }
    }

    /// An AWS query-protocol error document, as STS sends them.
    pub fn aws_error(status: u16, code: &str) -> Self {
        let kind = if status >= 500 { "Receiver" } else { "Sender" };
        Self::Respond {
            status,
            content_type: "text/xml".into(),
            body: format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <Error><Type>{kind}</Type><Code>{code}</Code>\
                 <Message>{code} (injected by the fault proxy)</Message></Error>\
                 <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            ),
        }
    }

    /// A Google API error document (`{"error": {"code", "message", "status"}}`).
    pub fn google_error(status: u16, status_name: &str) -> Self {
        Self::Respond {
            status,
            content_type: "application/json; charset=UTF-8".into(),
            body: serde_json::json!({"error": {
                "code": status,
                "message": format!("{status_name} (injected by the fault proxy)"),
                "status": status_name,
            }})
            .to_string(),
        }
    }

    /// A 200 whose body is not what the endpoint answers (a proxy's or portal's page, garbage).
    pub fn ok_with(content_type: &str, body: &str) -> Self {
        Self::Respond {
            status: 200,
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    /// A short name for tables and messages.
    pub fn label(&self) -> String {
        match self {
            Self::Pass => "pass".into(),
            Self::Refuse => "connection refused".into(),
            Self::Reset => "connection reset".into(),
            Self::Hang => "no answer".into(),
            Self::Delay(d) => format!("slow answer ({d:?})"),
            Self::Trickle(d) => format!("body trickled over {d:?}"),
            Self::Respond {
                status,
                content_type,
                ..
            } => format!("{status} {content_type}"),
            Self::Truncate => "truncated body".into(),
            Self::ContentType(ct) => format!("Content-Type {ct}"),
            Self::Skew(s) => format!("clock skew {s:+} s"),
        }
    }
}

/// The proxy's state shared with its connections.
struct Shared {
    name: &'static str,
    upstream: String,
    http: reqwest::Client,
    script: Mutex<VecDeque<(Fault, u32)>>,
    steady: Mutex<Fault>,
    requests: AtomicU64,
    faulted: AtomicU64,
}

impl Shared {
    /// The fault for the request that just arrived: the script's head, else the steady one.
    fn next_fault(&self) -> Fault {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut script = self.script.lock().unwrap();
        let fault = match script.front_mut() {
            Some((fault, times)) => {
                let fault = fault.clone();
                *times -= 1;
                if *times == 0 {
                    script.pop_front();
                }
                fault
            }
            None => self.steady.lock().unwrap().clone(),
        };
        if fault != Fault::Pass {
            self.faulted.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }
}

/// A running proxy; stops (and drops every held connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Whether the listener should be open (false: refuse connections).
    open: watch::Sender<bool>,
    /// Whether it is open now (the accept loop's acknowledgement).
    is_open: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://HOST:PORT`).
    pub async fn start(name: &'static str, upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fault proxy binds a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let shared = Arc::new(Shared {
            name,
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            script: Mutex::new(VecDeque::new()),
            steady: Mutex::new(Fault::Pass),
            requests: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
        });
        let (open, open_rx) = watch::channel(true);
        let (ack, is_open) = watch::channel(true);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            shared.clone(),
            open_rx,
            ack,
            shutdown_rx,
        ));
        Self {
            addr,
            shared,
            open,
            is_open,
            shutdown,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`: what keyless is pointed at instead of the upstream.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to the next `times` requests (after what is already scripted).
    pub fn push(&self, fault: Fault, times: u32) {
        assert_ne!(
            fault,
            Fault::Refuse,
            "a refused connection never reaches the proxy: use set_steady(Fault::Refuse)"
        );
        if times > 0 {
            self.shared.script.lock().unwrap().push_back((fault, times));
        }
    }

    /// What requests get once the script is used up. `Refuse` closes the listener; anything
    /// else (re)opens it. Returns once the listener is in that state.
    pub async fn set_steady(&self, fault: Fault) {
        let open = fault != Fault::Refuse;
        *self.shared.steady.lock().unwrap() = fault;
        self.open.send_replace(open);
        let mut is_open = self.is_open.clone();
        tokio::time::timeout(
            Duration::from_secs(30),
            is_open.wait_for(|now| *now == open),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the {} proxy could not {} its listener within 30 s",
                self.shared.name,
                if open { "reopen" } else { "close" }
            )
        })
        .expect("the accept loop runs");
    }

    /// Drops what is left of the script and lets everything through.
    pub async fn heal(&self) {
        self.shared.script.lock().unwrap().clear();
        self.set_steady(Fault::Pass).await;
    }

    /// Requests that reached the proxy so far (refused connections are not requests).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests that got a fault (anything but `Pass`).
    pub fn faulted(&self) -> u64 {
        self.shared.faulted.load(Ordering::SeqCst)
    }

    /// Scripted faults not used yet.
    pub fn pending(&self) -> u32 {
        self.shared
            .script
            .lock()
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut open: watch::Receiver<bool>,
    ack: watch::Sender<bool>,
    shutdown: watch::Receiver<bool>,
) {
    let mut listener = Some(listener);
    loop {
        if !*open.borrow_and_update() {
            // Refusing: no socket listens on the port until told to reopen.
            listener = None;
            ack.send_replace(false);
            if open.changed().await.is_err() {
                return;
            }
            continue;
        }
        let current = match listener.take() {
            Some(l) => l,
            None => rebind(addr, shared.name).await,
        };
        ack.send_replace(true);
        loop {
            tokio::select! {
                accepted = current.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(handle(stream, shared.clone(), shutdown.clone()));
                    }
                }
                changed = open.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !*open.borrow() {
                        break;
                    }
                }
            }
        }
        drop(current);
    }
}

/// Binds `addr` again after refusing (SO_REUSEADDR lets it past connections in TIME_WAIT);
/// retried briefly in case the port is still being released.
async fn rebind(addr: SocketAddr, name: &str) -> TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("the {name} proxy cannot rebind {addr} yet: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the {name} proxy could not listen on {addr} again: {e}"),
        }
    }
}

/// A request as read off the wire.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// An answer to write back.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn handle(mut stream: TcpStream, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let fault = shared.next_fault();
    let answer = match &fault {
        Fault::Reset => {
            let _ = stream.set_zero_linger();
            return;
        }
        Fault::Hang => {
            // Hold the connection until the client gives up or the proxy stops.
            let mut sink = [0u8; 1024];
            loop {
                tokio::select! {
                    read = stream.read(&mut sink) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        }
        Fault::Respond {
            status,
            content_type,
            body,
        } => Answer {
            status: *status,
            headers: vec![
                ("content-type".into(), content_type.clone()),
                ("date".into(), httpdate::fmt_http_date(SystemTime::now())),
            ],
            body: body.clone().into_bytes(),
        },
        _ => {
            if let Fault::Delay(d) = &fault {
                tokio::time::sleep(*d).await;
            }
            match forward(&shared, request).await {
                Ok(answer) => answer,
                Err(e) => Answer {
                    status: 502,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: format!("the fault proxy could not reach the upstream: {e}").into_bytes(),
                },
            }
        }
    };
    let _ = write_answer(&mut stream, answer, &fault).await;
}

/// Reads one request (head and `Content-Length` body); `None` if the client went away first.
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf).ok()? {
            httparse::Status::Partial if buf.len() < MAX_REQUEST => continue,
            httparse::Status::Partial => return None,
            httparse::Status::Complete(head_len) => {
                let headers: Vec<(String, Vec<u8>)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                    .collect();
                let length = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let method = parsed.method?.to_string();
                let target = parsed.path?.to_string();
                let mut body = buf[head_len..].to_vec();
                while body.len() < length {
                    let n = stream.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(length);
                return Some(Request {
                    method,
                    target,
                    headers,
                    body,
                });
            }
        }
    }
}

async fn forward(shared: &Shared, request: Request) -> Result<Answer, reqwest::Error> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or_default();
    let mut builder = shared
        .http
        .request(method, format!("{}{}", shared.upstream, request.target));
    for (name, value) in &request.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "keep-alive" | "transfer-encoding"
        ) {
            builder = builder.header(name.as_str(), value.as_slice());
        }
    }
    let response = builder.body(request.body).send().await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.bytes().await?.to_vec();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn write_answer(
    stream: &mut TcpStream,
    mut answer: Answer,
    fault: &Fault,
) -> std::io::Result<()> {
    match fault {
        Fault::ContentType(ct) => set_header(&mut answer.headers, "content-type", ct.clone()),
        Fault::Skew(seconds) => {
            let upstream_date = header(&answer.headers, "date")
                .and_then(|d| httpdate::parse_http_date(d).ok())
                .unwrap_or_else(SystemTime::now);
            let shifted = shift(upstream_date, *seconds);
            set_header(
                &mut answer.headers,
                "date",
                httpdate::fmt_http_date(shifted),
            );
            if let Ok(text) = std::str::from_utf8(&answer.body) {
                answer.body = shift_timestamps(text, *seconds).into_bytes();
            }
        }
        _ => {}
    }
    answer.headers.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        )
    });
    let reason = http::StatusCode::from_u16(answer.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (k, v) in &answer.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        answer.body.len()
    ));
    stream.write_all(head.as_bytes()).await?;
    match fault {
        Fault::Truncate => {
            stream
                .write_all(&answer.body[..answer.body.len() / 2])
                .await?;
        }
        Fault::Trickle(total) => {
            let pieces = 8;
            let size = answer.body.len().div_ceil(pieces).max(1);
            for piece in answer.body.chunks(size) {
                tokio::time::sleep(*total / pieces as u32).await;
                stream.write_all(piece).await?;
                stream.flush().await?;
            }
        }
        _ => stream.write_all(&answer.body).await?,
    }
    stream.flush().await?;
    stream.shutdown().await
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value));
}

fn shift(time: SystemTime, seconds: i64) -> SystemTime {
    let by = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        time + by
    } else {
        time - by
    }
}

/// Shifts every RFC 3339 date-time in `text` (`2026-01-02T03:04:05Z`, with optional fraction
/// and offset) by `seconds`, keeping the rest byte for byte.
pub fn shift_timestamps(text: &str, seconds: i64) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i + 20 <= bytes.len() {
        let Some(len) = rfc3339_at(&bytes[i..]) else {
            i += 1;
            continue;
        };
        let original = &text[i..i + len];
        let Ok(parsed) = OffsetDateTime::parse(original, &Rfc3339) else {
            i += 1;
            continue;
        };
        let shifted = parsed + time::Duration::seconds(seconds);
        let shifted = if original.contains('.') {
            shifted
        } else {
            shifted.replace_nanosecond(0).unwrap_or(shifted)
        };
        out.push_str(&text[copied..i]);
        out.push_str(&shifted.format(&Rfc3339).unwrap_or_else(|_| original.into()));
        i += len;
        copied = i;
    }
    out.push_str(&text[copied..]);
    out
}

/// The length of the RFC 3339 date-time starting at `b[0]`, if one does.
fn rfc3339_at(b: &[u8]) -> Option<usize> {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() + 1 {
        return None;
    }
    for (c, s) in b.iter().zip(shape) {
        let ok = if *s == b'd' {
            c.is_ascii_digit()
        } else {
            c == s
        };
        if !ok {
            return None;
        }
    }
    let mut i = shape.len();
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    match b.get(i) {
        Some(b'Z') => Some(i + 1),
        Some(b'+' | b'-') if b.len() >= i + 6 => Some(i + 6),
        _ => None,
    }
}
