//! `keyless probe URL`: a health check for images without a shell.
//!
//! The distroless image has no shell and no curl, so Docker `HEALTHCHECK` and ECS `healthCheck`
//! (which run a command inside the container) had nothing to run. `probe` GETs one plain-HTTP
//! URL (a keyless `/healthz`) and exits 0 on a 2xx answer, 1 on anything else, within
//! `--timeout`. It sends no credentials (a URL with a user or password is refused), follows no
//! redirect, ignores `HTTP_PROXY`, and loads no TLS roots: it only ever speaks `http://`.

use crate::duration::Seconds;
use clap::Args;

/// How much of a failing answer's body is shown (`/healthz` says which profile fails and why).
const BODY_EXCERPT: usize = 200;

// `keyless probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to GET, plain http:// (e.g. http://127.0.0.1:9910/healthz, the --metrics-listen
    /// address of `keyless serve`, `aws serve` or `gcp serve`).
    #[arg(value_name = "URL", value_parser = ProbeUrl::parse)]
    pub url: ProbeUrl,

    /// Give up (connect, send, read the answer) after this long, counted as unhealthy: 1s to
    /// 60s, as 5s or plain seconds.
    #[arg(long, value_name = "DUR", default_value_t = Seconds::new(2),
          value_parser = Seconds::parser_within(1..=60))]
    pub timeout: Seconds,
}

/// Why a URL cannot be probed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeUrlError {
    /// Not a URL at all.
    #[error("not a URL ({0}); give one like http://127.0.0.1:9910/healthz")]
    Invalid(String),
    /// https, or anything else than http.
    #[error(
        "{0}:// is not probed: keyless's health endpoints are plain http://, e.g. http://127.0.0.1:9910/healthz"
    )]
    Scheme(String),
    /// `http://user:password@host/`.
    #[error("the URL carries a user name or password; a health check sends no credentials")]
    Credentials,
}

/// A plain `http://` URL with a host and no credentials; the only way to get one is `parse`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeUrl(url::Url);

impl ProbeUrl {
    /// Checks the URL where it enters (clap's value parser).
    pub fn parse(text: &str) -> Result<Self, ProbeUrlError> {
        let url = url::Url::parse(text).map_err(|e| ProbeUrlError::Invalid(e.to_string()))?;
        if url.scheme() != "http" {
            return Err(ProbeUrlError::Scheme(url.scheme().to_string()));
        }
        if url.host().is_none() {
            return Err(ProbeUrlError::Invalid("no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ProbeUrlError::Credentials);
        }
        Ok(Self(url))
    }
}

impl std::fmt::Display for ProbeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// GETs the URL; 0 on a 2xx, 1 otherwise (saying why on stderr).
pub async fn run(args: ProbeArgs) -> anyhow::Result<i32> {
    let timeout = args.timeout.as_duration();
    match tokio::time::timeout(timeout, fetch_status(&args.url)).await {
        Ok(Ok((status, _))) if status.is_success() => Ok(0),
        Ok(Ok((status, body))) => {
            eprintln!("keyless: probe {}: {status} {body}", args.url);
            Ok(super::exit_code::FAILURE)
        }
        Ok(Err(e)) => {
            // reqwest's own message ("error sending request") hides the cause; its innermost
            // source says it ("Connection refused").
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            eprintln!("keyless: probe {}: {e}: {cause}", args.url);
            Ok(super::exit_code::FAILURE)
        }
        Err(_) => {
            eprintln!(
                "keyless: probe {}: no answer within {} (--timeout)",
                args.url, args.timeout
            );
            Ok(super::exit_code::FAILURE)
        }
    }
}

/// One GET: the status and a one-line excerpt of the body.
/// Unbounded itself: the caller's one deadline covers resolving, connecting and reading.
async fn fetch_status(url: &ProbeUrl) -> Result<(reqwest::StatusCode, String), reqwest::Error> {
    let client = reqwest::Client::builder()
        .user_agent(crate::wire::http::USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_root_certs(false)
        .http1_only()
        .build()?;
    let response = client.get(url.0.clone()).send().await?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(BODY_EXCERPT)
        .collect();
    Ok((status, excerpt.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_without_credentials_are_probed() {
        assert!(ProbeUrl::parse("http://127.0.0.1:9090/healthz").is_ok());
        assert!(ProbeUrl::parse("http://keyless:9090/healthz").is_ok());
        assert_eq!(
            ProbeUrl::parse("https://127.0.0.1/healthz"),
            Err(ProbeUrlError::Scheme("https".into()))
        );
        assert_eq!(
            ProbeUrl::parse("http://u:p@127.0.0.1/healthz"),
            Err(ProbeUrlError::Credentials)
        );
        assert!(matches!(
            ProbeUrl::parse("127.0.0.1:9090/healthz"),
            Err(ProbeUrlError::Scheme(_) | ProbeUrlError::Invalid(_))
        ));
        assert!(matches!(
            ProbeUrl::parse("/healthz"),
            Err(ProbeUrlError::Invalid(_))
        ));
    }

    proptest::proptest! {
        /// Whatever is typed, parsing never panics, and what it accepts is plain http with a
        /// host and without credentials.
        #[test]
        fn what_parses_is_plain_http_without_credentials(
            text in "(https?://)?([a-z0-9:@.\\[\\]%/-]{0,40})(\\?[a-z=&]{0,10})?"
        ) {
            if let Ok(ProbeUrl(url)) = ProbeUrl::parse(&text) {
                proptest::prop_assert_eq!(url.scheme(), "http");
                proptest::prop_assert!(url.host().is_some());
                proptest::prop_assert!(url.username().is_empty() && url.password().is_none());
            }
        }
    }
}
