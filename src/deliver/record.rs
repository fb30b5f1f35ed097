//! The one line a delivery leaves behind: which credential went where, valid until when.
//!
//! At `-v` every hand-over to a program (standard output, an `exec`'d command's environment, a
//! credentials profile, a token file, a file channel of `serve`) logs one info line built here,
//! next to the exchange's own line (`exchanged`, from [`crate::audit`]) — or alone,
//! when the credential came from the cache. Names and times only: never the credential itself.
//! The local servers log each request they answer at debug instead: SDKs poll them, and one
//! line per poll would bury everything else.

use time::OffsetDateTime;

/// One delivery, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// How it was handed over: `stdout`, `exec`, `credentials-file`, `token-file`, ...
    pub channel: &'static str,
    /// Where to: the output format, the command, the file (and profile).
    pub destination: String,
    /// Whose credential: the assumed-role ARN, the service account, the token's subject.
    pub credential: String,
    pub expires_at: Option<OffsetDateTime>,
}

impl DeliveryRecord {
    /// Emits the info line (`delivered`, with every field named).
    pub fn log(&self) {
        tracing::info!(
            channel = %self.channel,
            destination = %self.destination,
            credential = %self.credential,
            expires_at = %self
                .expires_at
                .map(crate::credentials::format_expiration)
                .unwrap_or_else(|| "none".into()),
            "delivered"
        );
    }
}
