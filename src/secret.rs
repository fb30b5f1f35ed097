//! The one type that holds secrets (tokens, secret keys, refresh tokens).
//!
//! Credentials open production accounts, so they must not leak through a stray `{:?}`, a log
//! line, a panic message or an error. `Secret` prints as `Secret(****)`; reading the value is an
//! explicit, greppable call to [`Secret::expose`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string whose `Debug` and `Display` never show the value, whose bytes are wiped when
/// it is dropped, and whose comparison takes the same time wherever the first difference is.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value so that it can only be read on purpose.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The one way to read the value: call it where the secret goes on the wire or into a 0600 file.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when nothing is held (an empty token file, an empty command output).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `candidate` (what a client sent) is this secret, in constant time: how long it
    /// takes says nothing about how much of it matched (only the lengths may differ in time).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(candidate))
    }
}

/// Equality is [`Secret::matches`]: constant-time, so no `==` on secrets leaks a prefix.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Serialization writes the value itself: it is used only for the 0600 cache file and for the
/// credential outputs whose whole purpose is to carry the secret.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl Drop for Secret {
    /// Wipes the bytes before the allocation is returned, so a freed secret does not linger in
    /// memory that a later allocation or a core dump could show.
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The marker zeroize's users look for: the `Drop` above wipes the whole allocation.
impl ZeroizeOnDrop for Secret {}

/// Whether this process's core-file limit is lowered too ([`keep_out_of_core_dumps`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreLimit {
    /// `RLIMIT_CORE` 0 as well: keyless runs to the end itself.
    Zero,
    /// Left alone: keyless will `exec` the user's program, which inherits resource limits (and
    /// whose memory, after `execve`, is no longer keyless's).
    Inherited,
}

/// Keeps the secrets in this process's memory out of core dumps and away from other processes
/// of the same user: `prctl(PR_SET_DUMPABLE, 0)` (no core file, and `/proc/PID/mem`, `environ`
/// and ptrace need `CAP_SYS_PTRACE`) and, with [`CoreLimit::Zero`], `RLIMIT_CORE` 0. Called once
/// at start-up by the binary, before any secret is read; a failure is only logged (the
/// credentials are good either way, and the kernel may forbid it in odd sandboxes).
pub fn keep_out_of_core_dumps(core_limit: CoreLimit) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not make the process non-dumpable");
        }
    }
    #[cfg(unix)]
    if core_limit == CoreLimit::Zero {
        if let Err(e) = rlimit::setrlimit(rlimit::Resource::CORE, 0, 0) {
            tracing::debug!(error = %e, "could not set RLIMIT_CORE to 0");
        }
    }
    #[cfg(not(unix))]
    let _ = core_limit;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("AKIA-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(****)");
        assert_eq!(format!("{s}"), "****");
        assert!(!format!("{:?}", Some(&s)).contains("very-secret"));
    }

    /// Compile-time: the secret type wipes its bytes on drop (the types built from secrets hold
    /// them as `Secret` fields, so they wipe too).
    #[test]
    fn secrets_zeroize_on_drop() {
        fn wipes_on_drop<T: ZeroizeOnDrop>() {}
        wipes_on_drop::<Secret>();
    }

    #[test]
    fn comparison_is_constant_time_equality() {
        let s = Secret::new("s3cret-token");
        assert!(s.matches(b"s3cret-token"));
        assert!(!s.matches(b"s3cret-tokem"));
        assert!(!s.matches(b"s3cret"));
        assert!(!s.matches(b""));
        assert_eq!(s, Secret::new("s3cret-token"));
        assert_ne!(s, Secret::new("other"));
    }

    #[test]
    fn expose_and_serde_carry_the_value() {
        let s = Secret::new("tok");
        assert_eq!(s.expose(), "tok");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"tok\"");
        let back: Secret = serde_json::from_str("\"tok\"").unwrap();
        assert_eq!(back, s);
    }
}
