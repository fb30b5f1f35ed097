//! The one HTTP client every exchange and source uses.
//!
//! Built with rustls verifying against [`roots`](super::roots), which reads the trusted roots
//! on the first `https://` connection and not before (the `http://` lab and metadata endpoints
//! never pay for them); bounded timeouts so a dead endpoint fails instead of hanging an SDK that
//! called `credential_process`; and a user agent that shows up in CloudTrail as keyless.

use std::sync::Arc;
use std::time::Duration;

use super::roots::LazyRoots;

/// The `Content-Type` of an answer, for messages (`(none)` when absent).
pub fn content_type_of(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_string()
}

/// The `Date` header of an answer, if it has a readable one.
pub fn date_header(headers: &http::HeaderMap) -> Option<time::OffsetDateTime> {
    let text = headers.get(http::header::DATE)?.to_str().ok()?;
    let time = httpdate::parse_http_date(text).ok()?;
    Some(time::OffsetDateTime::from(time))
}

/// What keyless sends as `User-Agent`, so operators can find its calls in audit logs.
pub const USER_AGENT: &str = concat!("keyless/", env!("CARGO_PKG_VERSION"));

/// The most of an upstream answer keyless reads. STS, Google STS, IAM Credentials, OAuth and the
/// metadata server answer in a few KiB; anything near this is not the service asked for (a
/// wrong endpoint, a proxy's page, an attack), and reading on would only fill memory.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why an answer's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The connection dropped (or timed out) mid-answer: no answer, worth retrying.
    #[error("the answer was cut short: {}", chain(.0))]
    CutShort(#[source] reqwest::Error),
    /// The answer is larger than anything the service sends.
    #[error("the answer is larger than {} KiB, more than this service ever sends\n  hint: check that the endpoint is the one meant (a proxy or another service answers like this)", .limit / 1024)]
    TooLarge { limit: usize },
}

impl BodyError {
    /// Only a body cut short is worth asking again for.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::CutShort(_))
    }
}

fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads `response`'s body as text, at most [`MAX_BODY_BYTES`]: chunk by chunk, refusing as soon
/// as the answer (or its `Content-Length`) passes the cap. Invalid UTF-8 is replaced, as
/// `reqwest`'s `text()` does.
pub async fn read_body(response: reqwest::Response) -> Result<String, BodyError> {
    read_body_capped(response, MAX_BODY_BYTES).await
}

/// [`read_body`] with another cap.
pub async fn read_body_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<String, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::CutShort)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The shared client, built on first use: a cache hit has no use for a connection pool, a
/// resolver or a TLS configuration (the roots themselves wait for the first `https://`
/// connection, [`super::roots`]).
#[derive(Debug, Default)]
pub struct LazyClient(std::sync::OnceLock<reqwest::Client>);

impl LazyClient {
    /// The client, built now if this is the first call.
    pub fn get(&self) -> Result<&reqwest::Client, reqwest::Error> {
        if let Some(client) = self.0.get() {
            return Ok(client);
        }
        let client = build()?;
        Ok(self.0.get_or_init(|| client))
    }
}

/// Builds the shared client, trusting this process's roots ([`super::roots::process`]).
/// Failure here means the TLS stack could not start at all.
pub fn build() -> Result<reqwest::Client, reqwest::Error> {
    build_with(&super::roots::process())
}

/// [`build`] trusting `roots` (tests give their own).
pub fn build_with(roots: &Arc<LazyRoots>) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_preconfigured_tls(roots.client_config())
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lazy_client_is_built_once() {
        let lazy = LazyClient::default();
        let first: *const reqwest::Client = lazy.get().unwrap();
        let second: *const reqwest::Client = lazy.get().unwrap();
        assert_eq!(first, second);
    }

    /// A one-shot HTTP server on loopback that answers with `head`, then writes `chunk` until
    /// the client hangs up (an endless body when `endless`), else once.
    async fn server(head: &'static str, chunk: Vec<u8>, endless: bool) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            socket.write_all(head.as_bytes()).await.unwrap();
            loop {
                if socket.write_all(&chunk).await.is_err() || !endless {
                    break;
                }
            }
        });
        url
    }

    async fn fetch(url: &str, limit: usize) -> Result<String, BodyError> {
        let response = build().unwrap().get(url).send().await.unwrap();
        read_body_capped(response, limit).await
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_cap() {
        // Chunked, so no Content-Length warns in advance: the reading itself must stop.
        let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000)).into_bytes();
        let url = server(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunk,
            true,
        )
        .await;
        let err = fetch(&url, MAX_BODY_BYTES).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { .. }), "{err}");
        assert!(!err.is_transient());
        assert!(err.to_string().contains("larger than 1024 KiB"), "{err}");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        let url = server(
            "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n",
            b"x".to_vec(),
            false,
        )
        .await;
        let err = fetch(&url, MAX_BODY_BYTES).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole_and_one_cut_short_is_transient() {
        let url = server(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            b"hello".to_vec(),
            false,
        )
        .await;
        assert_eq!(fetch(&url, 5).await.unwrap(), "hello");
        let url = server(
            "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n",
            b"hello".to_vec(),
            false,
        )
        .await;
        let err = fetch(&url, 100).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("cut short"), "{err}");
    }
}
