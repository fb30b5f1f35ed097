//! Writing files that hold secrets: private, atomic, durable.
//!
//! Caches, credentials files and token files are read by other processes while we replace them
//! (an SDK re-reading a token file, a second `credential_process` run). They must never see a
//! torn or half-written file, and nobody else on the machine may read them.

use std::io::Write;
use std::path::Path;

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
pub fn write_private_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".keyless-")
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
