//! The on-disk cache that lets `credential_process` answer without a round trip to STS.
//!
//! The SDKs run `credential_process` again and again; a cold exchange each time costs a token
//! mint and an STS call. One file per (role, audience, token source, session options, endpoint)
//! in a user-private directory holds the last answer. An entry is reused only while more than
//! [`MIN_REMAINING`] is left, because boto3 calls the process on *every* API call once fewer
//! than 15 minutes remain: handing out short-lived credentials would make each call slow.
//!
//! Files are 0600 in a 0700 directory and replaced atomically, so concurrent SDK processes
//! never read half a file; a corrupt or foreign entry is simply ignored and overwritten.

use std::path::PathBuf;

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::private_file::{create_private_dir, write_private_file_atomically};

/// Cached credentials are handed out only while at least this much validity is left.
pub const MIN_REMAINING: Duration = Duration::minutes(20);

/// Where the cache lives, and what it failed at.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No home or cache directory could be found.
    #[error("no cache directory: set XDG_CACHE_HOME or HOME, or pass --no-cache")]
    NoDirectory,
    /// The directory or file could not be written.
    #[error("could not write the credential cache at {path}: {cause}\n  hint: fix the permissions or pass --no-cache")]
    Write { path: PathBuf, cause: String },
}

/// A directory of cached answers, one file per key.
#[derive(Clone, Debug)]
pub struct CredentialCache {
    dir: PathBuf,
}

impl CredentialCache {
    /// `$XDG_CACHE_HOME/keyless/<kind>` (else `~/.cache/keyless/<kind>`).
    pub fn user_default(kind: &str) -> Result<Self, CacheError> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(dirs::cache_dir)
            .ok_or(CacheError::NoDirectory)?;
        Ok(Self::at(base.join("keyless").join(kind)))
    }

    /// A cache in `dir` (tests, or a daemon's own state directory).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file for a key: the key's parts are hashed so no secret or path ends up in a name.
    pub fn path_for(&self, key_parts: &[&str]) -> PathBuf {
        let mut hasher = Sha256::new();
        for part in key_parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        self.dir
            .join(format!("{}.json", hex::encode(&hasher.finalize()[..16])))
    }

    /// The cached value, if present, readable and still good for [`MIN_REMAINING`] at `now`.
    pub fn load<T: DeserializeOwned>(
        &self,
        key_parts: &[&str],
        now: OffsetDateTime,
        expiration: impl Fn(&T) -> Option<OffsetDateTime>,
    ) -> Option<T> {
        let path = self.path_for(key_parts);
        // An entry someone else could have written or read is not trusted: re-exchange.
        if !crate::private_file::exposure(&path).is_empty() {
            tracing::warn!(path = %path.display(), "ignoring a cache entry that is not private to this user");
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let value: T = serde_json::from_str(&text).ok()?;
        match expiration(&value) {
            Some(exp) if exp - now > MIN_REMAINING => Some(value),
            _ => None,
        }
    }

    /// Stores a value atomically, 0600, creating the directory 0700.
    pub fn store<T: Serialize>(&self, key_parts: &[&str], value: &T) -> Result<(), CacheError> {
        let path = self.path_for(key_parts);
        let write_err = |cause: String| CacheError::Write {
            path: path.clone(),
            cause,
        };
        create_private_dir(&self.dir).map_err(|e| write_err(e.to_string()))?;
        let json = serde_json::to_vec(value).map_err(|e| write_err(e.to_string()))?;
        write_private_file_atomically(&path, &json).map_err(|e| write_err(e.to_string()))?;
        tracing::debug!(path = %path.display(), "cache: stored the answer");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Entry {
        #[serde(with = "time::serde::rfc3339")]
        exp: OffsetDateTime,
    }

    #[test]
    fn entries_are_reused_only_with_more_than_twenty_minutes_left() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::at(dir.path().join("aws"));
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let key = ["role", "aud"];
        cache
            .store(
                &key,
                &Entry {
                    exp: now + Duration::minutes(21),
                },
            )
            .unwrap();
        assert!(cache.load::<Entry>(&key, now, |e| Some(e.exp)).is_some());
        cache
            .store(
                &key,
                &Entry {
                    exp: now + Duration::minutes(19),
                },
            )
            .unwrap();
        assert!(cache.load::<Entry>(&key, now, |e| Some(e.exp)).is_none());
        assert!(cache
            .load::<Entry>(&["other"], now, |e| Some(e.exp))
            .is_none());
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::at(dir.path().join("aws"));
        cache
            .store(
                &["k"],
                &Entry {
                    exp: OffsetDateTime::now_utc(),
                },
            )
            .unwrap();
        let file_mode = std::fs::metadata(cache.path_for(&["k"]))
            .unwrap()
            .permissions()
            .mode();
        let dir_mode = std::fs::metadata(dir.path().join("aws"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(file_mode & 0o777, 0o600);
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[cfg(unix)]
    #[test]
    fn entries_readable_by_others_are_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::at(dir.path().join("aws"));
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let entry = Entry {
            exp: now + Duration::hours(1),
        };
        cache.store(&["k"], &entry).unwrap();
        assert!(cache.load::<Entry>(&["k"], now, |e| Some(e.exp)).is_some());
        let path = cache.path_for(&["k"]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.load::<Entry>(&["k"], now, |e| Some(e.exp)).is_none());
    }

    #[test]
    fn key_parts_cannot_collide_by_concatenation() {
        let cache = CredentialCache::at("/x");
        assert_ne!(cache.path_for(&["ab", "c"]), cache.path_for(&["a", "bc"]));
    }

    #[test]
    fn corrupt_entries_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::at(dir.path());
        std::fs::write(cache.path_for(&["k"]), "{not json").unwrap();
        assert!(cache
            .load::<Entry>(&["k"], OffsetDateTime::now_utc(), |e| Some(e.exp))
            .is_none());
    }
}
