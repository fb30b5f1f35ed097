//! A Google ID token kept fresh in a file, for `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`.
//!
//! Every AWS SDK can assume a role with a web-identity token file on its own (EKS's IRSA works
//! this way), calling AssumeRoleWithWebIdentity itself and re-reading the file each time it
//! refreshes. So the file must always hold a token that has not expired, and a reader must never
//! see it half-written: after every refresh of the engine the file is replaced atomically (a 0600
//! temp file, fsync, rename). The token is written without a trailing newline because botocore
//! sends the file's bytes as they are.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::private_file::write_private_file_atomically;
use crate::refresh::{Refresher, ServeError, Upstream};
use crate::secret::Secret;
use crate::source::IdToken;

/// Why the token file could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be written.
    #[error(
        "could not write the web-identity token file {path}: {cause}\n  \
             hint: --path must name a file in an existing directory this user can write"
    )]
    Write { path: PathBuf, cause: String },
    /// No token could be obtained.
    #[error("no Google ID token to write: {0}")]
    Unavailable(#[from] ServeError),
}

/// A token file being kept fresh from a refresher of Google ID tokens.
pub struct TokenFileKeeper<U: Upstream<Value = IdToken>> {
    path: PathBuf,
    refresher: Refresher<U>,
    refreshed: watch::Receiver<u64>,
    /// What the file holds now, so a notification for a token already written writes nothing.
    written: Option<Secret>,
}

impl<U: Upstream<Value = IdToken>> TokenFileKeeper<U> {
    /// Writes the first token to `path` (waiting for the first exchange) and returns the
    /// keeper and that token's expiry. Fails when no token can be had, so a misconfigured
    /// source shows at once instead of as a file that never appears.
    pub async fn start(
        path: impl Into<PathBuf>,
        refresher: Refresher<U>,
    ) -> Result<(Self, OffsetDateTime), TokenFileError> {
        // Subscribe first: a refresh between the first write and the loop is not missed.
        let refreshed = refresher.subscribe();
        let mut keeper = Self {
            path: path.into(),
            refresher,
            refreshed,
            written: None,
        };
        let expires_at = keeper.write_current().await?;
        Ok((keeper, expires_at))
    }

    /// The file being kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the file after every refresh until the refresher is dropped (run it beside the
    /// refresher's keeper, which does the refreshing). Failures are logged, not fatal: the
    /// next refresh tries again, and the file keeps its still-valid token meanwhile.
    pub async fn run(mut self) {
        while self.refreshed.changed().await.is_ok() {
            if let Err(e) = self.write_current().await {
                tracing::warn!(path = %self.path.display(), "{e}");
            }
        }
    }

    /// Writes the refresher's current token unless the file already holds it.
    async fn write_current(&mut self) -> Result<OffsetDateTime, TokenFileError> {
        let (token, expires_at) = self.refresher.get().await?;
        if self.written.as_ref() == Some(token.secret()) {
            return Ok(expires_at);
        }
        write_private_file_atomically(&self.path, token.secret().expose().as_bytes()).map_err(
            |e| TokenFileError::Write {
                path: self.path.clone(),
                cause: e.to_string(),
            },
        )?;
        crate::deliver::record::DeliveryRecord {
            channel: "token-file",
            destination: self.path.display().to_string(),
            credential: crate::audit::source_identity(&crate::audit::jwt_source(token.claims())),
            expires_at: Some(expires_at),
        }
        .log();
        self.written = Some(token.secret().clone());
        Ok(expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refresh::{Clock, RefreshError, RefreshPolicy};
    use base64::Engine as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Mints unsigned JWTs numbered by `sub`, living 60 s.
    #[derive(Clone, Default)]
    struct FakeMetadata {
        calls: Arc<AtomicU64>,
    }

    impl Upstream for FakeMetadata {
        type Value = IdToken;
        async fn fetch(&self) -> Result<(IdToken, OffsetDateTime), RefreshError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let exp = OffsetDateTime::now_utc() + time::Duration::seconds(60);
            let claims = serde_json::json!({
                "iss": "https://accounts.google.com", "aud": "sts.amazonaws.com",
                "sub": n.to_string(), "exp": exp.unix_timestamp(),
            });
            let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
            let jwt = format!("{}.{}.sig", b64(b"{}"), b64(claims.to_string().as_bytes()));
            let token = IdToken::parse(Secret::new(jwt), "fake").unwrap();
            let expires_at = token.claims().expires_at();
            Ok((token, expires_at))
        }
    }

    fn policy() -> RefreshPolicy {
        // Refresh 59 s before a 60 s token expires: about every second.
        RefreshPolicy {
            min_remaining: std::time::Duration::from_secs(59),
            max_remaining_fraction: 59.0 / 60.0,
            jitter_fraction: 0.0,
            ..RefreshPolicy::default()
        }
    }

    fn sub_of(path: &Path) -> String {
        let jwt = std::fs::read_to_string(path).unwrap();
        let token = IdToken::parse(Secret::new(jwt), "file").unwrap();
        token.claims().sub.clone()
    }

    #[tokio::test]
    async fn the_file_is_private_and_follows_every_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let fake = FakeMetadata::default();
        let refresher = Refresher::new("token", fake.clone(), policy(), Clock::System);
        let (keeper, expires_at) = TokenFileKeeper::start(&path, refresher.clone())
            .await
            .unwrap();
        assert!(expires_at > OffsetDateTime::now_utc());
        assert_eq!(sub_of(&path), "1");
        let raw = std::fs::read(&path).unwrap();
        assert!(
            !raw.ends_with(b"\n"),
            "botocore sends the bytes as they are"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _keeper_task = refresher.spawn_keeper();
        let _writer = tokio::spawn(keeper.run());
        // The engine refreshes about every second; the file follows within a bounded wait.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while sub_of(&path) == "1" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the file was never rewritten"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(fake.calls.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn an_unwritable_path_names_the_fix() {
        let refresher = Refresher::new("token", FakeMetadata::default(), policy(), Clock::System);
        let error = TokenFileKeeper::start("/nonexistent-dir/token", refresher)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("/nonexistent-dir/token"), "{error}");
        assert!(error.contains("hint: --path"), "{error}");
    }
}
