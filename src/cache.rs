//! The on-disk cache that lets `credential_process` answer without a round trip to STS.
//!
//! The SDKs run `credential_process` again and again; a cold exchange each time costs a token
//! mint and an STS call. One file per (role, audience, token source, **the identity behind the
//! source**, session options, endpoint) in a user-private directory holds the last answer. The
//! identity is part of the key because the same source can stand for someone else tomorrow (a
//! replaced token file, another ADC account): an entry is only ever served to the identity it
//! was obtained for. An entry is reused only while more than [`MIN_REMAINING`] is left, because
//! boto3 calls the process on *every* API call once fewer than 15 minutes remain: handing out
//! short-lived credentials would make each call slow.
//!
//! Files are 0600 in a 0700 directory and replaced atomically, so concurrent SDK processes
//! never read half a file. An entry is opened without following links and checked on the open
//! descriptor (ours, 0600, a regular file); the directory must be ours and 0700. Each entry
//! carries the full hash of its key, so a file renamed or planted under another key's name is
//! not served; a corrupt, foreign or mismatched entry is ignored and overwritten.
//!
//! The `gcp` one-shot commands keep Google tokens here too, under their own kind and margin
//! ([`crate::refresh::gcp_cache`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::private_file::{
    create_private_dir, exposure_of, open_no_follow, write_private_file_atomically,
};

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
    /// The directory is not private to this user, so its entries cannot be trusted.
    #[error("the credential cache directory {path} is not private to this user: {why}\n  hint: {fix}, or pass --no-cache")]
    NotPrivate {
        path: PathBuf,
        why: String,
        fix: String,
    },
}

/// A directory of cached answers, one file per key.
#[derive(Clone, Debug)]
pub struct CredentialCache {
    dir: PathBuf,
}

/// What an entry holds: the full hash of its key, then the value.
#[derive(Serialize)]
struct EntryOut<'a, T> {
    key: &'a str,
    value: &'a T,
}

#[derive(Deserialize)]
struct EntryIn<T> {
    key: String,
    value: T,
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

    /// The key's parts, hashed (length-prefixed, so parts cannot collide by concatenation).
    fn key_hash(key_parts: &[&str]) -> String {
        let mut hasher = Sha256::new();
        for part in key_parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// The file for a key: the key's parts are hashed so no secret or path ends up in a name.
    pub fn path_for(&self, key_parts: &[&str]) -> PathBuf {
        let hash = Self::key_hash(key_parts);
        self.dir.join(format!("{}.json", &hash[..32]))
    }

    /// Refuses a cache directory that is a link, not a directory, another user's, or open to
    /// group or others: whoever could write there could hand us credentials.
    fn check_dir(&self) -> Result<(), CacheError> {
        let not_private = |why: String, fix: String| CacheError::NotPrivate {
            path: self.dir.clone(),
            why,
            fix,
        };
        let dir = open_no_follow(&self.dir).map_err(|e| {
            not_private(
                format!("it cannot be opened without following links ({e})"),
                format!(
                    "remove it (rm -r {}) so keyless recreates it",
                    self.dir.display()
                ),
            )
        })?;
        let meta = dir
            .metadata()
            .map_err(|e| not_private(e.to_string(), "check the directory".into()))?;
        if !meta.is_dir() {
            return Err(not_private(
                "it is not a directory".into(),
                format!("remove it (rm {})", self.dir.display()),
            ));
        }
        if let Some(problem) = exposure_of(&meta).into_iter().next() {
            let fix = match problem {
                crate::private_file::Exposure::Readable { .. }
                | crate::private_file::Exposure::Writable { .. } => {
                    format!("run: chmod 700 {}", self.dir.display())
                }
                crate::private_file::Exposure::ForeignOwner { .. } => {
                    format!("run: rm -r {} (keyless recreates it)", self.dir.display())
                }
            };
            return Err(not_private(problem.hint(&self.dir), fix));
        }
        Ok(())
    }

    /// The cached value, if present, ours, made for exactly this key and still good for
    /// [`MIN_REMAINING`] at `now`.
    pub fn load<T: DeserializeOwned>(
        &self,
        key_parts: &[&str],
        now: OffsetDateTime,
        expiration: impl Fn(&T) -> Option<OffsetDateTime>,
    ) -> Option<T> {
        self.load_with_margin(key_parts, now, MIN_REMAINING, expiration)
    }

    /// As [`CredentialCache::load`], for a kind of credential whose consumers need another
    /// margin (Google tokens: [`crate::refresh::gcp_cache::MIN_REMAINING`]).
    pub fn load_with_margin<T: DeserializeOwned>(
        &self,
        key_parts: &[&str],
        now: OffsetDateTime,
        min_remaining: Duration,
        expiration: impl Fn(&T) -> Option<OffsetDateTime>,
    ) -> Option<T> {
        let path = self.path_for(key_parts);
        if let Err(e) = self.check_dir() {
            if self.dir.exists() {
                tracing::warn!("{e}");
            }
            return None;
        }
        let text = read_private_entry(&path)?;
        let entry: EntryIn<T> = serde_json::from_str(&text).ok()?;
        if entry.key != Self::key_hash(key_parts) {
            tracing::warn!(path = %path.display(), "ignoring a cache entry made for another key");
            return None;
        }
        match expiration(&entry.value) {
            Some(exp) if exp - now > min_remaining => Some(entry.value),
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
        self.check_dir()?;
        let key = Self::key_hash(key_parts);
        let json = serde_json::to_vec(&EntryOut { key: &key, value })
            .map_err(|e| write_err(e.to_string()))?;
        write_private_file_atomically(&path, &json).map_err(|e| write_err(e.to_string()))?;
        tracing::debug!(path = %path.display(), "cache: stored the answer");
        Ok(())
    }
}

/// An entry's text, opened without following a link and checked on the open descriptor: a
/// regular file, ours, not open to others. Anything else is not trusted (re-exchange).
fn read_private_entry(path: &Path) -> Option<String> {
    let mut file = open_no_follow(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    if !exposure_of(&meta).is_empty() {
        tracing::warn!(path = %path.display(), "ignoring a cache entry that is not private to this user");
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some(text)
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
        let (_dir, cache, now, _) = cache_holding(&["k"]);
        assert!(cache.load::<Entry>(&["k"], now, |e| Some(e.exp)).is_some());
        let path = cache.path_for(&["k"]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.load::<Entry>(&["k"], now, |e| Some(e.exp)).is_none());
    }

    /// A link planted at an entry's name is not followed, even to a valid entry of ours.
    #[cfg(unix)]
    #[test]
    fn entries_are_opened_without_following_links() {
        let (dir, cache, now, _) = cache_holding(&["k"]);
        let path = cache.path_for(&["k"]);
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(cache.load::<Entry>(&["k"], now, |e| Some(e.exp)).is_none());
    }

    /// A cache directory others may write to (or a link to one) is neither read nor written.
    #[cfg(unix)]
    #[test]
    fn a_directory_open_to_others_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, cache, now, entry) = cache_holding(&["k"]);
        std::fs::set_permissions(
            dir.path().join("aws"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        assert!(cache.load::<Entry>(&["k"], now, |e| Some(e.exp)).is_none());
        let err = cache.store(&["k"], &entry).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");

        std::fs::set_permissions(
            dir.path().join("aws"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let linked = CredentialCache::at(dir.path().join("link"));
        std::os::unix::fs::symlink(dir.path().join("aws"), dir.path().join("link")).unwrap();
        assert!(linked.load::<Entry>(&["k"], now, |e| Some(e.exp)).is_none());
        assert!(matches!(
            linked.store(&["k"], &entry),
            Err(CacheError::NotPrivate { .. })
        ));
    }

    /// An entry copied (or planted) under another key's file name is not served for that key.
    #[test]
    fn an_entry_is_served_only_for_its_own_key() {
        let (_dir, cache, now, _) = cache_holding(&["alice"]);
        std::fs::copy(cache.path_for(&["alice"]), cache.path_for(&["bob"])).unwrap();
        assert!(cache
            .load::<Entry>(&["alice"], now, |e| Some(e.exp))
            .is_some());
        assert!(cache
            .load::<Entry>(&["bob"], now, |e| Some(e.exp))
            .is_none());
    }

    /// A private cache under a fresh directory holding one entry, good for an hour, at `key`.
    fn cache_holding(key: &[&str]) -> (tempfile::TempDir, CredentialCache, OffsetDateTime, Entry) {
        let dir = tempfile::tempdir().unwrap();
        let cache = CredentialCache::at(dir.path().join("aws"));
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let entry = Entry {
            exp: now + Duration::hours(1),
        };
        cache.store(key, &entry).unwrap();
        (dir, cache, now, entry)
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
