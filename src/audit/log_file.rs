//! `--audit-log PATH`: the audit trail as JSON lines, one event per line.
//!
//! The contract: the file is created 0600 and never written through a symbolic link (`O_NOFOLLOW`:
//! a link planted by another user would send our records elsewhere); one that another user owns
//! or may write is refused, since a forged line would be read as keyless's own. Each event is one
//! `write` of one whole line to a descriptor opened `O_APPEND`, under an exclusive `flock`: the
//! kernel appends it at the end whatever other writers do, and the lock keeps lines whole across
//! processes even where a large write could be split (many `credential_process` runs and a
//! daemon may share one file). Nothing is buffered, so nothing is lost when the process ends.
//!
//! logrotate: the daemon reopens the path on SIGHUP ([`AuditLog::reopen`]), so after
//! `postrotate kill -HUP` the next line goes to the new file; a one-shot command opens the path
//! when it starts and lives seconds.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::event::AuditEvent;

/// Why the audit log cannot be used; names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error("cannot open the audit log {path}: {cause} (check --audit-log and the directory's permissions)")]
    Open { path: PathBuf, cause: String },
    #[error("refusing the audit log {path}: {problem}, so others could forge or remove records; run: {fix}")]
    Unsafe {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    #[error("cannot write to the audit log {path}: {cause}")]
    Write { path: PathBuf, cause: String },
}

impl crate::classify::Classify for AuditLogError {
    fn class(&self) -> crate::classify::Class {
        match self {
            Self::Open { .. } | Self::Unsafe { .. } => crate::classify::Class::Usage,
            Self::Write { .. } => crate::classify::Class::Failure,
        }
    }
}

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating 0600) `path` for appending; refuses a link or a file others control.
    pub fn open(path: &Path) -> Result<Self, AuditLogError> {
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(open_append(path)?),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again (after logrotate moved the file away); keeps the old descriptor
    /// when the path cannot be opened, so no record is lost.
    pub fn reopen(&self) -> Result<(), AuditLogError> {
        let fresh = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Appends one event as one line.
    pub fn append(&self, event: &AuditEvent) -> Result<(), AuditLogError> {
        let mut line = serde_json::to_vec(event).map_err(|e| self.write_error(e))?;
        line.push(b'\n');
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.lock().map_err(|e| self.write_error(e))?;
        let written = (&*file).write_all(&line);
        let _ = file.unlock();
        written.map_err(|e| self.write_error(e))
    }

    fn write_error(&self, cause: impl std::fmt::Display) -> AuditLogError {
        AuditLogError::Write {
            path: self.path.clone(),
            cause: cause.to_string(),
        }
    }
}

fn open_append(path: &Path) -> Result<File, AuditLogError> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    let file = options.open(path).map_err(|e| AuditLogError::Open {
        path: path.to_path_buf(),
        cause: if e.raw_os_error() == Some(libc::ELOOP) {
            "it is a symbolic link (name the file itself)".to_string()
        } else {
            e.to_string()
        },
    })?;
    let meta = file.metadata().map_err(|e| AuditLogError::Open {
        path: path.to_path_buf(),
        cause: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(AuditLogError::Open {
            path: path.to_path_buf(),
            cause: "it is not a regular file".into(),
        });
    }
    if let Some(exposure) = crate::private_file::tampering_of(&meta).first() {
        return Err(AuditLogError::Unsafe {
            path: path.to_path_buf(),
            problem: exposure.problem(),
            fix: exposure.fix(path),
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::*;

    fn sample(n: u64) -> AuditEvent {
        AuditEvent {
            time: time::macros::datetime!(2026-12-04 23:40:01 UTC),
            keyless_version: "0.1.0".into(),
            host: "node-1".into(),
            pid: 42,
            profile: Some("ci".into()),
            channel: Some("credential-process".into()),
            source: AuditSource {
                kind: "github".into(),
                issuer: Some("https://token.actions.githubusercontent.com".into()),
                subject: Some("repo:acme/app:ref:refs/heads/main".into()),
                ..AuditSource::default()
            },
            target: AuditTarget::aws("arn:aws:iam::123456789012:role/deploy"),
            session_name: Some("keyless-node-1".into()),
            requested_duration_secs: Some(3600),
            granted_duration_secs: Some(3600),
            expires_at: Some(time::macros::datetime!(2026-12-05 00:40:01 UTC)),
            upstream: vec![UpstreamCall {
                service: AWS_STS.into(),
                action: "AssumeRoleWithWebIdentity".into(),
                request_id: Some(format!("request-{n}")),
                status: Some(200),
                error_code: None,
            }],
            outcome: Outcome::Ok,
            error_class: None,
            error: None,
            latency_ms: n,
        }
    }

    fn lines(path: &Path) -> Vec<AuditEvent> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn events_are_appended_as_json_lines_to_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::remove_file(&path).unwrap();
        let log = AuditLog::open(&path).unwrap();
        log.append(&sample(1)).unwrap();
        let again = AuditLog::open(&path).unwrap();
        again.append(&sample(2)).unwrap();
        assert_eq!(lines(&path), vec![sample(1), sample(2)]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn eight_concurrent_writers_lose_and_tear_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    // Each writer has its own descriptor, as separate processes would.
                    let log = AuditLog::open(&path).unwrap();
                    for i in 0..200 {
                        let mut event = sample(w * 1000 + i);
                        // Long lines: larger than a pipe buffer's atomic write guarantee.
                        event.error = Some("x".repeat(5000));
                        log.append(&event).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let mut seen: Vec<u64> = lines(&path).iter().map(|e| e.latency_ms).collect();
        seen.sort_unstable();
        let mut want: Vec<u64> = (0..8)
            .flat_map(|w| (0..200).map(move |i| w * 1000 + i))
            .collect();
        want.sort_unstable();
        assert_eq!(seen, want);
    }

    #[test]
    fn reopen_follows_the_path_after_logrotate_moves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let log = AuditLog::open(&path).unwrap();
        log.append(&sample(1)).unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        log.append(&sample(2)).unwrap();
        log.reopen().unwrap();
        log.append(&sample(3)).unwrap();
        assert_eq!(lines(&rotated), vec![sample(1), sample(2)]);
        assert_eq!(lines(&path), vec![sample(3)]);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_or_a_file_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let link = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = AuditLog::open(&link).unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        assert!(!target.exists(), "nothing is written through the link");

        let shared = dir.path().join("shared.jsonl");
        std::fs::write(&shared, "").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = AuditLog::open(&shared).unwrap_err().to_string();
        assert!(error.contains("writable by others"), "{error}");
        assert!(error.contains("chmod go-w"), "{error}");
    }
}
