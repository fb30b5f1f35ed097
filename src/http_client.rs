//! The one HTTP client every exchange and source uses.
//!
//! Built once per process with both root stores (the system's, and webpki's bundled roots so
//! that minimal containers without a CA bundle still reach STS), bounded timeouts so a dead
//! endpoint fails instead of hanging an SDK that called `credential_process`, and a user agent
//! that shows up in CloudTrail as keyless.

use std::time::Duration;

/// What keyless sends as `User-Agent`, so operators can find its calls in audit logs.
pub const USER_AGENT: &str = concat!("keyless/", env!("CARGO_PKG_VERSION"));

/// Builds the shared client. Failure here means the TLS stack could not start at all.
pub fn build() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}
