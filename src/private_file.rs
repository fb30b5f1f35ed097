//! Writing files that hold secrets: private, atomic, durable.
//!
//! Caches, credentials files and token files are read by other processes while we replace them
//! (an SDK re-reading a token file, a second `credential_process` run). They must never see a
//! torn or half-written file, and nobody else on the machine may read them.
//!
//! A writer killed mid-write (SIGKILL, OOM, power loss) leaves the target untouched and at
//! worst a private temp file named after it (`.credentials.keyless-XXXXXX`), which the next
//! writer holding the target's lock removes ([`remove_stale_temp_files`]).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The most of a token, token command's output, ADC file or session policy keyless reads: real
/// ones are a few KiB (AWS caps session policies at 2,048 characters), so anything larger is a
/// mistake (a wrong path, a device such as /dev/zero that never ends) or an attack.
pub const MAX_SMALL_FILE_BYTES: u64 = 64 * 1024;

/// Reads `path` as UTF-8 text, at most `max` bytes: a larger file is an error that says so
/// (`InvalidData`), and an endless one (`/dev/zero`, a FIFO fed forever) is never read whole.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// The error for something larger than `max` bytes.
pub fn too_large(max: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "it is larger than {} KiB, more than any real one; check the path",
            max / 1024
        ),
    )
}

/// Creates `dir` and its parents, the last one 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Writes `bytes` to `path` the safe way for secrets: a 0600 temp file in the same directory,
/// fsync, rename over the target, fsync the directory. Readers see the old or the new file,
/// never a torn one.
///
/// A symbolic link at `path` is replaced by the new file, never written through: the files this
/// writes are keyless's own, and following a link planted there would write a secret elsewhere.
/// (The shared credentials file, which users do symlink on purpose, resolves its link first.)
pub fn write_private_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let mut temp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The directory a file lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Temp files are named after their target so a dead writer's leftovers can be told apart from
/// other programs' files and from other targets' temp files in the same directory.
fn temp_prefix(target: &Path) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(target.file_name().unwrap_or_default());
    prefix.push(".keyless-");
    prefix
}

/// Removes the temp files that writers of `target` killed mid-write left behind, returning how
/// many. Call it only while holding a lock every writer of `target` takes before writing (the
/// credentials file's sidecar lock): then no temp file of a live writer can exist.
pub fn remove_stale_temp_files(target: &Path) -> std::io::Result<usize> {
    let prefix = temp_prefix(target);
    let prefix = prefix.as_encoded_bytes();
    let mut removed = 0;
    for entry in std::fs::read_dir(parent_dir(target))? {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(prefix) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Why a file holding secrets looks unsafe: another user owns it, or others may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// Group or world permission bits are set (the mode, e.g. 0o644).
    Readable { mode: u32 },
    /// Owned by another user id than the one keyless runs as.
    ForeignOwner { owner: u32, me: u32 },
    /// Group or world write permission is set (the mode, e.g. 0o664): others could change it.
    Writable { mode: u32 },
}

impl Exposure {
    /// What is wrong, without the file's name: `it is writable by others (mode 0664)`.
    pub fn problem(&self) -> String {
        match self {
            Exposure::Readable { mode } => format!("it is readable by others (mode {mode:04o})"),
            Exposure::ForeignOwner { owner, me } => {
                format!("it belongs to user id {owner}, not to this user ({me})")
            }
            Exposure::Writable { mode } => format!("it is writable by others (mode {mode:04o})"),
        }
    }

    /// The command that fixes it for `path`.
    pub fn fix(&self, path: &Path) -> String {
        match self {
            Exposure::Readable { .. } => format!("chmod 600 {}", path.display()),
            Exposure::ForeignOwner { .. } => format!("sudo chown $(id -u) {}", path.display()),
            Exposure::Writable { .. } => format!("chmod go-w {}", path.display()),
        }
    }

    /// What to run to fix it.
    pub fn hint(&self, path: &Path) -> String {
        match self {
            Exposure::Readable { mode } => format!(
                "{} is readable by others (mode {mode:04o}); run: chmod 600 {}",
                path.display(),
                path.display()
            ),
            Exposure::ForeignOwner { owner, me } => format!(
                "{} belongs to user id {owner}, not to this user ({me}); was it written with sudo? \
                 run: sudo chown $(id -u) {}",
                path.display(),
                path.display()
            ),
            Exposure::Writable { mode } => format!(
                "{} is writable by others (mode {mode:04o}); run: chmod go-w {}",
                path.display(),
                path.display()
            ),
        }
    }
}

/// How an existing secrets file is exposed, following links (the file that will be read or
/// replaced is the one that counts). A missing file is not exposed.
pub fn exposure(path: &Path) -> Vec<Exposure> {
    match std::fs::metadata(path) {
        Ok(meta) => exposure_of(&meta),
        Err(_) => Vec::new(),
    }
}

/// How the file or directory `meta` describes is exposed: owned by another user than the one
/// keyless runs as, or open to group or others. For metadata read from an open descriptor
/// (`File::metadata`), so what is checked is what is read.
pub fn exposure_of(meta: &std::fs::Metadata) -> Vec<Exposure> {
    let mut found = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = effective_uid();
        if meta.uid() != me {
            found.push(Exposure::ForeignOwner {
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            found.push(Exposure::Readable { mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    found
}

/// How a file that decides what keyless runs or where it sends tokens (a `keyless.toml` with
/// `command:` or an endpoint) could be changed by someone else: owned by a user other than this
/// one or root, or writable by group or others. For metadata read from the open descriptor.
pub fn tampering_of(meta: &std::fs::Metadata) -> Vec<Exposure> {
    let mut found = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = effective_uid();
        if meta.uid() != me && meta.uid() != 0 {
            found.push(Exposure::ForeignOwner {
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            found.push(Exposure::Writable { mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    found
}

/// The user id keyless runs as.
#[cfg(unix)]
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail; std offers no safe wrapper.
    unsafe { libc::geteuid() }
}

/// Opens `path` for reading without following a symbolic link at its last component (a link
/// there fails with `ELOOP`): for files and directories keyless owns, where a planted link
/// would make it read something else.
pub fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    options.open(path)
}

/// Logs a warning for each way the secrets file at `path` is exposed (see [`exposure`]).
pub fn warn_if_exposed(path: &Path) {
    for problem in exposure(path) {
        tracing::warn!("{}", problem.hint(path));
    }
}

/// Why [`read_private`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum PrivateReadError {
    /// The file could not be opened or read (missing: [`std::io::ErrorKind::NotFound`]).
    #[error("could not read {}: {cause}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    /// The last component is a symbolic link: another user could point it at any file.
    #[error(
        "{} is a symbolic link; a file holding a secret is read only when it is a plain file
           hint: point the setting at the file itself ({})",
        path.display(),
        std::fs::canonicalize(path).map_or_else(|_| "the link's target".to_string(), |t| t.display().to_string())
    )]
    Link { path: PathBuf },
    /// Not a regular file (a directory, a FIFO, a device).
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    /// Another user owns it, or group/others may read or write it.
    #[error("refusing to read {}: {}", path.display(), exposure.hint(path))]
    Exposed { path: PathBuf, exposure: Exposure },
    /// Larger than the caller's cap.
    #[error("{} is larger than {max_bytes} bytes; it cannot be what it should hold", path.display())]
    TooLarge { path: PathBuf, max_bytes: u64 },
}

impl PrivateReadError {
    /// The file does not exist (callers may create it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads a file that holds a secret, safely: opened without following a symbolic link at its
/// last component (`O_NOFOLLOW`), then checked on the opened descriptor (no race with a rename):
/// a regular file, owned by the effective user, with no group or other permission bits, and at
/// most `max_bytes` long. The bytes are wiped when dropped.
pub fn read_private(
    path: &Path,
    max_bytes: u64,
) -> Result<zeroize::Zeroizing<Vec<u8>>, PrivateReadError> {
    use std::io::Read;
    let io = |cause: std::io::Error| PrivateReadError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO planted at the path must not hang; it is refused below.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(PrivateReadError::Link {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(PrivateReadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail; std offers no safe wrapper.
        let me = unsafe { libc::geteuid() };
        let exposure = if meta.uid() != me {
            Some(Exposure::ForeignOwner {
                owner: meta.uid(),
                me,
            })
        } else if meta.mode() & 0o077 != 0 {
            Some(Exposure::Readable {
                mode: meta.mode() & 0o7777,
            })
        } else {
            None
        };
        if let Some(exposure) = exposure {
            return Err(PrivateReadError::Exposed {
                path: path.to_path_buf(),
                exposure,
            });
        }
    }
    let too_large = || PrivateReadError::TooLarge {
        path: path.to_path_buf(),
        max_bytes,
    };
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Opens `path` for writing without following a symbolic link at its last component, creating
/// it 0600: for lock files, which a planted link could otherwise turn into a file created
/// anywhere the user can write.
pub fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// The file a lock for `target` lives in: its name plus `.lock`.
pub fn lock_path_for(target: &Path) -> PathBuf {
    let mut name = target.file_name().map(OsString::from).unwrap_or_default();
    name.push(".lock");
    target.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_capped_reads_small_files_and_refuses_larger_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "x".repeat(10)).unwrap();
        assert_eq!(read_capped(&path, 10).unwrap(), "x".repeat(10));
        let err = read_capped(&path, 9).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    /// A device that never ends is not read whole.
    #[cfg(unix)]
    #[test]
    fn read_capped_stops_on_an_endless_file() {
        let err = read_capped(Path::new("/dev/zero"), MAX_SMALL_FILE_BYTES).unwrap_err();
        assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
    }

    #[test]
    fn readers_see_the_old_or_the_new_file_never_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let old = vec![b'a'; 64 * 1024];
        let new = vec![b'b'; 64 * 1024];
        write_private_file_atomically(&path, &old).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, stop) = (path.clone(), stop.clone());
            let (old, new) = (old.clone(), new.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                    let seen = std::fs::read(&path).unwrap();
                    assert!(
                        seen == old || seen == new,
                        "torn read: {} bytes",
                        seen.len()
                    );
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..200 {
            write_private_file_atomically(&path, if i % 2 == 0 { &new } else { &old }).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        // No temp file is left after successful writes.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_at_the_target_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "not yours").unwrap();
        let path = dir.path().join("token");
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        write_private_file_atomically(&path, b"secret").unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "not yours");
        assert!(!std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_file_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let planted = dir.path().join("planted");
        let lock = dir.path().join("credentials.lock");
        std::os::unix::fs::symlink(&planted, &lock).unwrap();
        assert!(open_lock_file(&lock).is_err());
        assert!(!planted.exists());
    }

    #[test]
    fn stale_temp_files_of_one_target_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("credentials");
        for name in [
            ".credentials.keyless-abc123",
            ".credentials.keyless-def456",
            ".config.keyless-abc123",
            "credentials",
            ".credentials.lock",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        assert_eq!(remove_stale_temp_files(&target).unwrap(), 2);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [".config.keyless-abc123", ".credentials.lock", "credentials"]
        );
    }

    #[cfg(unix)]
    #[test]
    fn group_or_world_readable_files_are_exposed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        assert!(exposure(&path).is_empty(), "a missing file is not exposed");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(exposure(&path).is_empty());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let found = exposure(&path);
        assert_eq!(found, [Exposure::Readable { mode: 0o644 }]);
        assert!(found[0].hint(&path).contains("chmod 600"));
    }

    /// Only root can give a file away; elsewhere the hint test below covers the wording.
    #[cfg(unix)]
    #[test]
    fn a_file_of_another_user_is_exposed_when_we_can_make_one() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        write_private_file_atomically(&path, b"x").unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        assert_eq!(
            exposure(&path),
            [Exposure::ForeignOwner {
                owner: 65534,
                me: 0
            }]
        );
    }

    #[cfg(unix)]
    #[test]
    fn read_private_reads_only_a_private_plain_file_of_ours_within_the_cap() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_private_file_atomically(&path, b"0123456789").unwrap();
        assert_eq!(&read_private(&path, 10).unwrap()[..], b"0123456789");
        let too_large = read_private(&path, 9).unwrap_err();
        assert!(matches!(
            too_large,
            PrivateReadError::TooLarge { max_bytes: 9, .. }
        ));
        // A link is refused, even to a private file of ours.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let refused = read_private(&link, 100).unwrap_err();
        assert!(
            matches!(refused, PrivateReadError::Link { .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("symbolic link"), "{refused}");
        // Group- or world-readable: refused with the chmod that fixes it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let exposed = read_private(&path, 100).unwrap_err();
        assert!(exposed.to_string().contains("chmod 600"), "{exposed}");
        // Not a file, or missing.
        assert!(matches!(
            read_private(dir.path(), 100).unwrap_err(),
            PrivateReadError::NotAFile { .. }
        ));
        assert!(read_private(&dir.path().join("missing"), 100)
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn a_foreign_owner_hint_says_how_to_take_the_file_back() {
        let hint =
            Exposure::ForeignOwner { owner: 0, me: 1000 }.hint(Path::new("/h/.aws/credentials"));
        assert!(hint.contains("user id 0"), "{hint}");
        assert!(hint.contains("chown"), "{hint}");
    }
}
