//! The local servers under abuse, as the real binary against the lab: `aws serve` (ECS-style),
//! `aws serve --imds`, `gcp serve` and `--metrics-listen`, driven over raw TCP where a client
//! library would refuse to send what an attacker sends. Oversized heads and bodies, slow and idle
//! connections, many connections, odd methods, path traversal, foreign `Host` headers, CORS
//! probes: each is refused or bounded, and afterwards the server still answers a normal request.
//! `--allow-remote` is the only way to listen beyond loopback.
//!
//! The figures printed (`figure: ...`, run with `--nocapture`) are the ones in RELIABILITY.md.

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{Background, LabWorld};

const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";
/// Time allowed for the binary to start and print its export lines.
const STARTUP: Duration = Duration::from_secs(30);
/// Generous room for a loaded two-core machine on top of any configured timeout.
const MARGIN: Duration = Duration::from_secs(20);
/// How long one raw exchange may take before the test calls the server stuck.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server, and a request it answers with 200.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ecs,
    Imds,
    Gce,
    Metrics,
}

/// A running server and how to ask it something legitimate.
struct Server {
    kind: Kind,
    addr: SocketAddr,
    /// Headers a legitimate client sends (the ECS token, `Metadata-Flavor`).
    auth: Vec<(String, String)>,
}

impl Server {
    /// `METHOD PATH` of a request that answers 200.
    fn ok_request(&self) -> (&'static str, &'static str) {
        match self.kind {
            Kind::Ecs => ("GET", "/creds"),
            Kind::Imds => ("PUT", "/latest/api/token"),
            Kind::Gce => ("GET", "/computeMetadata/v1/project/project-id"),
            Kind::Metrics => ("GET", "/healthz"),
        }
    }

    /// The headers a legitimate client sends with [`Server::ok_request`].
    fn client_headers(&self) -> Vec<(&str, &str)> {
        let mut headers: Vec<(&str, &str)> = self
            .auth
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if self.kind == Kind::Imds {
            headers.push(("X-aws-ec2-metadata-token-ttl-seconds", "60"));
        }
        headers
    }

    /// A raw request to this server with its legitimate headers plus `extra`.
    fn request(&self, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut headers = self.client_headers();
        headers.extend_from_slice(extra);
        let host = self.addr.to_string();
        raw_request(method, path, Some(&host), &headers, body)
    }

    /// Sends the legitimate request and expects 200 (within the usual deadline).
    fn assert_serves(&self, during: &str) -> Duration {
        let (method, path) = self.ok_request();
        let started = Instant::now();
        let answer = exchange(self.addr, &self.request(method, path, &[], b""));
        assert_eq!(
            answer.status,
            Some(200),
            "{:?} did not serve {method} {path} {during}: {answer:?}",
            self.kind
        );
        started.elapsed()
    }
}

/// The four servers on one lab, each its own process (the metrics listener belongs to the ECS
/// one), started with `env` (the hidden limit knobs).
struct Servers {
    ecs: Background,
    imds: Background,
    gce: Background,
    all: Vec<Server>,
}

impl Servers {
    async fn start(w: &LabWorld, env: &[(&str, &str)]) -> Self {
        let role = w.role("gcp-deploy");
        let mut ecs = w.spawn_keyless(
            &[
                "-vv",
                "aws",
                "serve",
                "--role-arn",
                &role,
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            env,
        );
        let ecs_vars = ecs
            .exports(
                &[
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                ],
                STARTUP,
            )
            .await;
        let metrics = ecs.line_after("# metrics: http://", STARTUP).await;
        let metrics: SocketAddr = metrics
            .split('/')
            .next()
            .unwrap()
            .parse()
            .expect("metrics address");
        let mut imds =
            w.spawn_keyless(&["-vv", "aws", "serve", "--role-arn", &role, "--imds"], env);
        let imds_vars = imds
            .exports(&["AWS_EC2_METADATA_SERVICE_ENDPOINT"], STARTUP)
            .await;
        let workload = support::lab_world::aws_env(&w.lab.issue_role_credentials(
            "aws-workload",
            "app",
            Duration::from_secs(3600),
        ));
        let mut gce_env: Vec<(&str, &str)> =
            workload.iter().map(|(k, v)| (*k, v.as_str())).collect();
        gce_env.extend_from_slice(env);
        let audience = w.lab.workload_identity_audience();
        let mut gce = w.spawn_keyless(
            &[
                "-vv",
                "gcp",
                "serve",
                "--audience",
                &audience,
                "--service-account",
                COPYCAT,
            ],
            &gce_env,
        );
        let gce_vars = gce.exports(&["GCE_METADATA_HOST"], STARTUP).await;
        let addr_of = |url: &str| -> SocketAddr {
            url.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|e| panic!("{url}: {e}"))
        };
        let all = vec![
            Server {
                kind: Kind::Ecs,
                addr: addr_of(&ecs_vars["AWS_CONTAINER_CREDENTIALS_FULL_URI"]),
                auth: vec![(
                    "Authorization".into(),
                    ecs_vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"].clone(),
                )],
            },
            Server {
                kind: Kind::Imds,
                addr: addr_of(&imds_vars["AWS_EC2_METADATA_SERVICE_ENDPOINT"]),
                auth: vec![],
            },
            Server {
                kind: Kind::Gce,
                addr: addr_of(&gce_vars["GCE_METADATA_HOST"]),
                auth: vec![("Metadata-Flavor".into(), "Google".into())],
            },
            Server {
                kind: Kind::Metrics,
                addr: metrics,
                auth: vec![],
            },
        ];
        Self {
            ecs,
            imds,
            gce,
            all,
        }
    }

    fn get(&self, kind: Kind) -> &Server {
        self.all.iter().find(|s| s.kind == kind).unwrap()
    }

    /// Every server still runs, answers its legitimate request, and never panicked.
    fn assert_all_up(&mut self, after: &str) {
        for server in &self.all {
            server.assert_serves(after);
        }
        for (name, process) in [
            ("aws serve", &mut self.ecs),
            ("aws serve --imds", &mut self.imds),
            ("gcp serve", &mut self.gce),
        ] {
            assert!(
                process.is_running(),
                "{name} died {after}:\n{}",
                process.stderr()
            );
            let log = process.stderr();
            assert!(!log.contains("panicked"), "{name} panicked {after}:\n{log}");
        }
    }
}

/// What came back for one raw request.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    head: String,
    /// Writing failed part-way: the server stopped reading (and closed).
    write_error: Option<ErrorKind>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A raw HTTP/1.1 request (`Connection: close`; `Host` only when given).
fn raw_request(
    method: &str,
    path: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    if let Some(host) = host {
        text.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("Connection: close\r\n\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Sends `request` and reads the answer until the server closes; a server that refuses
/// mid-request may reset the connection, which shows as `write_error` and maybe no status.
fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = connect(addr);
    let write_error = stream.write_all(request).err().map(|e| e.kind());
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{addr} neither answered nor closed within {IO_TIMEOUT:?}")
            }
            Err(_) => break, // reset: whatever arrived before it is the answer
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    Answer {
        status,
        head,
        write_error,
    }
}

/// How long until the server closes `stream`, which keeps `drip` bytes coming (one per
/// `every`), without ever waiting on anything but the socket.
fn time_until_closed(mut stream: TcpStream, drip: &[u8], every: Duration) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(every)).unwrap();
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    loop {
        assert!(
            started.elapsed() < MARGIN * 3,
            "the server kept a slow connection open for {:?}",
            started.elapsed()
        );
        match stream.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {} // an error answer (408) before the close is fine
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if let Some(byte) = drip.get(sent % drip.len().max(1)) {
                    if stream.write_all(std::slice::from_ref(byte)).is_err() {
                        return started.elapsed();
                    }
                    sent += 1;
                }
            }
            Err(_) => return started.elapsed(),
        }
    }
}

fn no_cors(answer: &Answer) -> bool {
    !answer
        .head
        .to_ascii_lowercase()
        .lines()
        .any(|l| l.starts_with("access-control-"))
}

/// Oversized request heads (one 1 MiB header; many small ones) answer 431 or are cut off;
/// declared bodies over the limit answer 413; a large chunked body is never buffered; the
/// server answers normally afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_and_bodies_are_refused_and_the_servers_stay_up() {
    let w = LabWorld::start().await;
    let mut servers = Servers::start(&w, &[]).await;
    let huge = "a".repeat(1024 * 1024);
    let many: Vec<(String, String)> = (0..200)
        .map(|i| (format!("X-Filler-{i}"), "x".repeat(10)))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let body = vec![b'b'; 1024 * 1024];
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let pids = [servers.ecs.id(), servers.imds.id(), servers.gce.id()];
    let rss_before: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    let started = Instant::now();
    for server in &servers.all {
        let (method, path) = server.ok_request();
        let answer = exchange(
            server.addr,
            &server.request(method, path, &[("X-Huge", &huge)], b""),
        );
        assert!(
            answer.status == Some(431) || (answer.status.is_none() && answer.write_error.is_some()),
            "{:?} 1 MiB header: {answer:?}",
            server.kind
        );
        let answer = exchange(server.addr, &server.request(method, path, &many, b""));
        assert_eq!(
            answer.status,
            Some(431),
            "{:?} 200 headers: {answer:?}",
            server.kind
        );
        let answer = exchange(server.addr, &server.request(method, path, &[], &body));
        assert!(
            answer.status == Some(413) || (answer.status.is_none() && answer.write_error.is_some()),
            "{:?} 1 MiB body: {answer:?}",
            server.kind
        );
        // A body the request does not declare up front: answered without being read.
        let answer = exchange(
            server.addr,
            &server.request(method, path, &[("Transfer-Encoding", "chunked")], &chunked),
        );
        assert!(
            answer.status.is_some() || answer.write_error.is_some(),
            "{:?} chunked body: {answer:?}",
            server.kind
        );
        server.assert_serves("after oversized requests");
    }
    let rss_after: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    eprintln!(
        "figure: oversized heads/bodies against 4 servers answered in {:?}; RSS of aws serve, \
         aws serve --imds, gcp serve: {rss_before:?} KiB before, {rss_after:?} KiB after",
        started.elapsed()
    );
    for (before, after) in rss_before.iter().zip(&rss_after) {
        assert!(
            after.saturating_sub(*before) < 8 * 1024,
            "megabyte requests grew a server by {} KiB",
            after - before
        );
    }
    servers.assert_all_up("after oversized requests");
}

/// A client that drips its request head one byte at a time, one that connects and sends nothing,
/// and a kept-alive connection gone quiet are all closed once the header timeout (2 s here)
/// runs out, however long the drip would go on; meanwhile the server serves others at once.
#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_connections_are_closed_at_the_header_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let w = LabWorld::start().await;
    let mut servers = Servers::start(&w, &[("KEYLESS_SERVER_HEADER_TIMEOUT", "2")]).await;
    for server in &servers.all {
        let addr = server.addr;
        let drip = server.request("GET", "/", &[("X-Slow", &"s".repeat(200))], b"");
        let slow = std::thread::spawn(move || {
            time_until_closed(connect(addr), &drip, Duration::from_millis(250))
        });
        let idle = std::thread::spawn(move || {
            time_until_closed(connect(addr), b"", Duration::from_millis(250))
        });
        // A complete request on a kept-alive connection, then silence.
        let mut kept = connect(addr);
        let (method, path) = server.ok_request();
        let mut request = server.request(method, path, &[], b"");
        let close = b"Connection: close\r\n\r\n";
        let at = request.len() - close.len();
        request.truncate(at);
        request.extend_from_slice(b"\r\n");
        kept.write_all(&request).unwrap();
        let mut first = [0u8; 12];
        kept.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200", "{:?}", server.kind);
        let kept_alive = std::thread::spawn(move || {
            let mut rest = Vec::new();
            let started = Instant::now();
            // Reads the rest of the answer, then EOF when the server closes the idle connection.
            let _ = kept.read_to_end(&mut rest);
            started.elapsed()
        });
        // While the slow ones hang on, others are served at once.
        let served_in = server.assert_serves("during a slow-client attack");
        for (what, handle) in [("drip", slow), ("idle", idle), ("kept-alive", kept_alive)] {
            let closed_after = handle.join().unwrap();
            eprintln!(
                "figure: {:?} {what} connection closed after {closed_after:?} (timeout {TIMEOUT:?}); a normal request meanwhile took {served_in:?}",
                server.kind
            );
            assert!(
                closed_after <= TIMEOUT + MARGIN,
                "{:?} {what}: closed after {closed_after:?}",
                server.kind
            );
            if what != "kept-alive" {
                assert!(
                    closed_after >= TIMEOUT - Duration::from_millis(100),
                    "{:?} {what}: closed after {closed_after:?}, before the timeout",
                    server.kind
                );
            }
        }
    }
    servers.assert_all_up("after slow clients");
}

fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:")
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The server's descriptor count once it reaches `at_least`, or what it is after `within`.
fn wait_for_fds(pid: u32, at_least: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let fds = open_fds(pid);
        if fds >= at_least || Instant::now() >= deadline {
            return fds;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many idle connections this test can open: 2,000, or fewer if the file-descriptor limit
/// (raised to its hard limit first) leaves less room.
fn idle_connection_count() -> usize {
    let soft = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let room = usize::try_from(soft.saturating_sub(512)).unwrap_or(usize::MAX);
    2000.min(room)
}

/// 2,000 connections that never send anything, twice: the server accepts them all, a normal
/// request is still answered at once, memory stays bounded (and does not grow from one round to
/// the next), and every one is closed (its descriptor freed) at the header timeout.
#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_idle_connections_neither_block_nor_exhaust_the_server() {
    // The default header timeout: opening thousands of connections on a loaded machine must not
    // outlast it.
    const TIMEOUT: Duration = Duration::from_secs(10);
    // Descriptors the server may open or close on its own meanwhile (upstream connections).
    const SLACK: usize = 8;
    let w = LabWorld::start().await;
    let servers = Servers::start(&w, &[]).await;
    let server = servers.get(Kind::Ecs);
    let pid = servers.ecs.id();
    server.assert_serves("before the idle connections");
    let (rss_start, fds_before) = (rss_kib(pid), open_fds(pid));
    let count = idle_connection_count();
    let mut rss_after_rounds = Vec::new();
    for round in 1..=2 {
        let rss_before = rss_kib(pid);
        let opened = Instant::now();
        let idle: Vec<TcpStream> = (0..count).map(|_| connect(server.addr)).collect();
        // The server holds one descriptor per accepted connection: wait (bounded) until it
        // holds them all, then a normal request must still be answered at once.
        let fds_during = wait_for_fds(
            pid,
            fds_before + count - SLACK,
            TIMEOUT - Duration::from_secs(2),
        );
        let served_in = server.assert_serves("with thousands of idle connections");
        let rss_during = rss_kib(pid);
        let mut closed = 0;
        for mut stream in idle {
            stream.set_read_timeout(Some(TIMEOUT + MARGIN)).unwrap();
            let mut buf = [0u8; 64];
            match stream.read(&mut buf) {
                Ok(0) => closed += 1,
                Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    closed += 1
                }
                other => panic!("an idle connection was not closed: {other:?}"),
            }
        }
        let all_closed_after = opened.elapsed();
        server.assert_serves("after the idle connections closed");
        let fds_after = wait_for_fds_at_most(pid, fds_before + SLACK, MARGIN);
        let rss_after = rss_kib(pid);
        eprintln!(
            "figure: round {round}: {count} idle connections: RSS {rss_before} KiB before, \
             {rss_during} KiB with them open (+{} B per connection), {rss_after} KiB after; \
             descriptors {fds_before} → {fds_during} → {fds_after}; a normal request meanwhile \
             took {served_in:?}; all closed {all_closed_after:?} after opening (timeout {TIMEOUT:?})",
            (rss_during.saturating_sub(rss_before) * 1024) / count as u64,
        );
        assert_eq!(closed, count);
        assert!(
            fds_during + SLACK >= fds_before + count,
            "not all connections were accepted: {fds_before} → {fds_during}"
        );
        assert!(
            fds_after <= fds_before + SLACK,
            "descriptors leaked: {fds_before} → {fds_after}"
        );
        assert!(
            rss_during.saturating_sub(rss_start) < 64 * 1024,
            "{count} idle connections took {} KiB",
            rss_during - rss_start
        );
        rss_after_rounds.push(rss_after);
    }
    // The allocator keeps what the first round took and the second round reuses most of it: a
    // leak per connection would make the second round grow as much as the first. (Over four
    // rounds the growth was 21, 9.5, 4.3 and 1.4 MiB: a plateau, not a leak.)
    let first = rss_after_rounds[0].saturating_sub(rss_start);
    let second = rss_after_rounds[1].saturating_sub(rss_after_rounds[0]);
    assert!(
        second < first,
        "RSS grew as much in the second round as in the first: {rss_start} KiB, then {rss_after_rounds:?} KiB"
    );
}

/// The server's descriptor count once it is at most `at_most`, or what it is after `within`.
fn wait_for_fds_at_most(pid: u32, at_most: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let fds = open_fds(pid);
        if fds <= at_most || Instant::now() >= deadline {
            return fds;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With the cap at 8 connections, a ninth waits in the backlog until an idle one is closed at
/// the header timeout, then is served: the cap holds and the server recovers by itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_connection_cap_makes_newcomers_wait_not_fail() {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let w = LabWorld::start().await;
    let servers = Servers::start(
        &w,
        &[
            ("KEYLESS_SERVER_HEADER_TIMEOUT", "3"),
            ("KEYLESS_SERVER_MAX_CONNECTIONS", "8"),
        ],
    )
    .await;
    let server = servers.get(Kind::Imds);
    server.assert_serves("before the cap is reached");
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..8).map(|_| connect(server.addr)).collect();
    let waited = server.assert_serves("once a slot is free");
    eprintln!(
        "figure: at the cap (8), a new request was served after {waited:?} (header timeout {TIMEOUT:?})"
    );
    assert!(
        started.elapsed() >= TIMEOUT - Duration::from_millis(100),
        "served after {:?}: the cap did not hold",
        started.elapsed()
    );
    assert!(waited <= TIMEOUT + MARGIN, "served only after {waited:?}");
    drop(idle);
}

/// Methods an endpoint does not serve answer 405 (with `Allow`), paths with dot segments or
/// encoded separators answer 404, on every server; nothing carries CORS headers.
#[tokio::test(flavor = "multi_thread")]
async fn odd_methods_and_path_traversal_are_refused() {
    let w = LabWorld::start().await;
    let mut servers = Servers::start(&w, &[]).await;
    let traversal = [
        "/../creds",
        "/creds/../creds",
        "/./creds",
        "/%2e%2e/creds",
        "/%2E%2E%2Fetc%2Fpasswd",
        "/..%2fcreds",
        "/..%5c..%5cwindows",
        "/latest/meta-data/iam/security-credentials/../security-credentials/gcp-deploy",
        "/computeMetadata/v1/instance/service-accounts/%2e%2e/token",
        "/computeMetadata/v1/../../etc/passwd",
        "/healthz/..",
    ];
    for server in &servers.all {
        for method in [
            "OPTIONS", "TRACE", "DELETE", "PATCH", "POST", "PROPFIND", "FOO",
        ] {
            let answer = exchange(server.addr, &server.request(method, "/", &[], b""));
            assert_eq!(
                answer.status,
                Some(405),
                "{:?} {method}: {answer:?}",
                server.kind
            );
            assert!(answer.header("allow").is_some(), "{answer:?}");
            assert!(no_cors(&answer), "{answer:?}");
        }
        if server.kind != Kind::Imds {
            let answer = exchange(server.addr, &server.request("PUT", "/", &[], b""));
            assert_eq!(
                answer.status,
                Some(405),
                "{:?} PUT: {answer:?}",
                server.kind
            );
        }
        let answer = exchange(
            server.addr,
            &server.request("CONNECT", &server.addr.to_string(), &[], b""),
        );
        assert!(
            matches!(answer.status, Some(400 | 405)),
            "{:?} CONNECT: {answer:?}",
            server.kind
        );
        for path in traversal {
            for method in ["GET", "HEAD"] {
                let answer = exchange(server.addr, &server.request(method, path, &[], b""));
                assert_eq!(
                    answer.status,
                    Some(404),
                    "{:?} {method} {path}: {answer:?}",
                    server.kind
                );
            }
        }
    }
    servers.assert_all_up("after odd requests");
}

/// A `Host` that is not the endpoint's (a web page's name, as DNS rebinding sends) answers 403
/// on every server; loopback names, the bound address and the names the real services have
/// pass; an HTTP/1.1 request without `Host` answers 400.
#[tokio::test(flavor = "multi_thread")]
async fn foreign_host_headers_are_refused() {
    let w = LabWorld::start().await;
    let mut servers = Servers::start(&w, &[]).await;
    for server in &servers.all {
        let (method, path) = server.ok_request();
        let port = server.addr.port();
        let headers = server.client_headers();
        let send = |host: Option<&str>| {
            exchange(server.addr, &raw_request(method, path, host, &headers, b""))
        };
        for host in [
            format!("attacker.example:{port}"),
            "attacker.example".to_string(),
            format!("localhost.attacker.example:{port}"),
            format!("127.0.0.1.nip.io:{port}"),
            "10.1.2.3".to_string(),
        ] {
            let answer = send(Some(&host));
            assert_eq!(
                answer.status,
                Some(403),
                "{:?} Host {host}: {answer:?}",
                server.kind
            );
            assert!(no_cors(&answer), "{answer:?}");
        }
        let mut good = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            "localhost".to_string(),
            format!("[::1]:{port}"),
        ];
        good.extend(
            match server.kind {
                Kind::Ecs => &["169.254.170.2", "169.254.170.23"][..],
                Kind::Imds => &["169.254.169.254"][..],
                Kind::Gce => &["metadata.google.internal", "metadata", "169.254.169.254"][..],
                Kind::Metrics => &[][..],
            }
            .iter()
            .map(|h| h.to_string()),
        );
        for host in good {
            let answer = send(Some(&host));
            assert_eq!(
                answer.status,
                Some(200),
                "{:?} Host {host}: {answer:?}",
                server.kind
            );
        }
        let answer = send(None);
        assert_eq!(
            answer.status,
            Some(400),
            "{:?} no Host: {answer:?}",
            server.kind
        );
        // An absolute-form target naming another host is refused like the header.
        let target = format!("http://attacker.example{path}");
        let answer = exchange(
            server.addr,
            &raw_request(
                method,
                &target,
                Some(&server.addr.to_string()),
                &headers,
                b"",
            ),
        );
        assert_eq!(
            answer.status,
            Some(403),
            "{:?} absolute-form: {answer:?}",
            server.kind
        );
    }
    servers.assert_all_up("after foreign hosts");
}

/// No answer carries `Access-Control-*`: not to a CORS preflight, not to a simple request with
/// an `Origin`, not to a successful one.
#[tokio::test(flavor = "multi_thread")]
async fn no_answer_carries_cors_headers() {
    let w = LabWorld::start().await;
    let servers = Servers::start(&w, &[]).await;
    for server in &servers.all {
        let (method, path) = server.ok_request();
        let origin = ("Origin", "http://attacker.example");
        for request in [
            server.request(
                "OPTIONS",
                path,
                &[
                    origin,
                    ("Access-Control-Request-Method", method),
                    (
                        "Access-Control-Request-Headers",
                        "authorization, metadata-flavor",
                    ),
                ],
                b"",
            ),
            server.request(method, path, &[origin], b""),
            server.request("GET", "/no/such/path", &[origin], b""),
        ] {
            let answer = exchange(server.addr, &request);
            assert!(answer.status.is_some(), "{answer:?}");
            assert!(no_cors(&answer), "{:?}: {answer:?}", server.kind);
        }
        let answer = exchange(server.addr, &server.request(method, path, &[origin], b""));
        assert_eq!(answer.status, Some(200), "{answer:?}");
    }
}

/// A non-loopback `--listen` is refused with exit code 2 and a message naming `--allow-remote`,
/// for every server command and the daemon's file; with the flag (or KEYLESS_ALLOW_REMOTE) the
/// server starts and warns. Beyond loopback `Host` is still checked: an IP address passes, a
/// DNS name (what DNS rebinding sends) only when `--allowed-host` names it.
#[tokio::test(flavor = "multi_thread")]
async fn listening_beyond_loopback_needs_allow_remote() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let audience = w.lab.workload_identity_audience();
    let workload = support::lab_world::aws_env(&w.lab.issue_role_credentials(
        "aws-workload",
        "app",
        Duration::from_secs(3600),
    ));
    let workload: Vec<(&str, &str)> = workload.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let commands: Vec<Vec<&str>> = vec![
        vec!["aws", "serve", "--role-arn", &role, "--listen", "0.0.0.0:0"],
        vec![
            "aws",
            "serve",
            "--role-arn",
            &role,
            "--imds",
            "--listen",
            "0.0.0.0:0",
        ],
        vec![
            "gcp",
            "serve",
            "--audience",
            &audience,
            "--listen",
            "0.0.0.0:0",
        ],
    ];
    for args in &commands {
        let out = w.keyless_env(args, &workload).await;
        assert_eq!(out.code(), 2, "{out}");
        assert!(out.stderr.contains("--allow-remote"), "{out}");
        assert!(out.stderr.contains("not a loopback address"), "{out}");
    }
    let config = w.home.home().join("keyless.toml");
    std::fs::write(
        &config,
        format!("[profile.deploy]\nrole_arn = \"{role}\"\nimds_listen = \"0.0.0.0:0\"\n"),
    )
    .unwrap();
    let out = w
        .keyless(&["serve", "--config", config.to_str().unwrap()])
        .await;
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("keyless.toml:3:15"), "{out}");
    assert!(out.stderr.contains("allow_remote = true"), "{out}");

    // With the flag (or its variable) each starts and warns; the allowed host comes from the
    // flag or its variable.
    for (args, extra) in [
        (
            commands[0].clone(),
            vec!["--allow-remote", "--allowed-host", "App.Internal."],
        ),
        (commands[2].clone(), vec![]),
    ] {
        let mut all = args.clone();
        all.extend(extra.iter().copied());
        let mut env = workload.clone();
        if extra.is_empty() {
            env.push(("KEYLESS_ALLOW_REMOTE", "true"));
            env.push(("KEYLESS_ALLOWED_HOSTS", "app.internal"));
        }
        let mut server = w.spawn_keyless(&all, &env);
        let vars = server
            .exports(
                &[if args[0] == "aws" {
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI"
                } else {
                    "GCE_METADATA_HOST"
                }],
                STARTUP,
            )
            .await;
        let url = vars
            .get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .or_else(|| vars.get("GCE_METADATA_HOST"))
            .unwrap();
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(addr.ip().is_loopback(), "announced {addr}");
        let send = |host: &str| {
            exchange(
                addr,
                &raw_request(
                    "GET",
                    "/",
                    Some(host),
                    &[("Metadata-Flavor", "Google")],
                    b"",
                ),
            )
        };
        for host in ["attacker.example", "attacker.example:80", "10.1.2.3.nip.io"] {
            let answer = send(host);
            assert_eq!(answer.status, Some(403), "{host}: {answer:?}");
        }
        for host in ["10.1.2.3", "192.0.2.9:8080", "[fd00::1]", "app.internal:80"] {
            let answer = send(host);
            assert_ne!(answer.status, Some(403), "{host}: {answer:?}");
            assert!(answer.status.is_some(), "{answer:?}");
        }
        let log = stderr_containing(&server, "non-loopback address");
        assert!(log.contains("WARN"), "{log}");
    }
}

/// The child's stderr once it contains `needle` (its reader thread may lag behind stdout);
/// panics with what it holds after the startup deadline.
fn stderr_containing(process: &Background, needle: &str) -> String {
    let deadline = Instant::now() + STARTUP;
    loop {
        let log = process.stderr();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "stderr never said {needle:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// "Max core file size" of a process, soft and hard, from `/proc/PID/limits`.
fn core_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("no core limit in:\n{limits}"));
    let fields: Vec<&str> = line["Max core file size".len()..]
        .split_whitespace()
        .collect();
    (fields[0].to_string(), fields[1].to_string())
}

/// A server holds credentials for hours: it writes no core file (RLIMIT_CORE 0) and is not
/// dumpable, so its `/proc/PID/environ`, `mem` and `fd` belong to root even when it runs as
/// another user (which keeps that user's other processes out of them).
#[tokio::test(flavor = "multi_thread")]
async fn servers_write_no_core_files_and_are_not_dumpable() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let args = ["aws", "serve", "--role-arn", role.as_str()];
    let mut server = w.spawn_keyless(&args, &[]);
    server
        .exports(&["AWS_CONTAINER_CREDENTIALS_FULL_URI"], STARTUP)
        .await;
    assert_eq!(
        core_limit(server.id()),
        ("0".to_string(), "0".to_string()),
        "{}",
        server.stderr()
    );

    // Only root can start a process as another user; then the owner of /proc/PID/environ tells
    // (the kernel gives a non-dumpable process's files to root; /proc/PID itself keeps its user).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    // nobody must reach the binary: a checkout under a private directory (/root, a 0700 temp
    // dir) would refuse it, so run a copy from a directory anyone may enter.
    let shared = tempfile::tempdir().unwrap();
    let binary = shared.path().join("keyless");
    std::fs::copy(support::aws_home::keyless_bin(), &binary).unwrap();
    for (path, mode) in [(shared.path(), 0o755), (binary.as_path(), 0o755)] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut cmd = w.home.command(&binary);
    cmd.args(args);
    w.point_at_lab(&mut cmd, &[]);
    // nobody cannot write the world's audit log (this user's private file).
    cmd.current_dir("/")
        .env_remove("KEYLESS_AUDIT_LOG")
        .env("HOME", "/nonexistent")
        .env("XDG_CACHE_HOME", "/nonexistent/cache")
        .env("XDG_CONFIG_HOME", "/nonexistent/config")
        .uid(NOBODY)
        .gid(NOBODY);
    let mut other = Background::spawn(cmd);
    other
        .exports(&["AWS_CONTAINER_CREDENTIALS_FULL_URI"], STARTUP)
        .await;
    let pid = other.id();
    assert_eq!(proc_status(pid, "Uid:"), u64::from(NOBODY));
    for file in ["environ", "mem", "fd"] {
        let owner = std::fs::metadata(format!("/proc/{pid}/{file}"))
            .unwrap()
            .uid();
        assert_eq!(
            owner, 0,
            "/proc/{pid}/{file} belongs to its user: the process is dumpable"
        );
    }
}
