//! The one HTTP client every exchange and source uses.
//!
//! Built once per process with both root stores (the system's, and webpki's bundled roots so
//! that minimal containers without a CA bundle still reach STS), bounded timeouts so a dead
//! endpoint fails instead of hanging an SDK that called `credential_process`, and a user agent
//! that shows up in CloudTrail as keyless.

use std::time::Duration;

/// What keyless sends as `User-Agent`, so operators can find its calls in audit logs.
pub const USER_AGENT: &str = concat!("keyless/", env!("CARGO_PKG_VERSION"));

/// The shared client, built on first use. Building it loads and parses both root stores (the
/// system's certificate files and webpki's bundle): about nine tenths of the instructions of a
/// `credential_process` run, which a cache hit has no use for (BENCHMARKS.md, "Profile").
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

/// Builds the shared client. Failure here means the TLS stack could not start at all.
pub fn build() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
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
}
