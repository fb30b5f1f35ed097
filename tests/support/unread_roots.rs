//! An `SSL_CERT_FILE` that tells whether anything opened it: a FIFO whose writer end (a thread
//! here) gets through `open` only once some reader has opened the other end. A run that reads
//! its roots opens it (and reads an empty file, since the writer closes at once); a run that
//! never needs TLS leaves the writer waiting.

use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct UnreadRoots {
    path: PathBuf,
    opened: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl UnreadRoots {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roots.pem");
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        let opened = Arc::new(AtomicBool::new(false));
        let writer = {
            let (path, opened) = (path.clone(), opened.clone());
            std::thread::spawn(move || {
                if let Ok(file) = OpenOptions::new().write(true).open(&path) {
                    opened.store(true, Ordering::SeqCst);
                    drop(file);
                }
            })
        };
        Self {
            path,
            opened,
            writer: Some(writer),
            _dir: dir,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether anything opened the file so far. Then opens the read end itself (without
    /// blocking), so the waiting writer returns and its thread ends.
    pub fn was_opened(mut self) -> bool {
        let opened = self.opened.load(Ordering::SeqCst);
        self.release();
        opened
    }

    fn release(&mut self) {
        if let Some(writer) = self.writer.take() {
            let _reader = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path);
            writer.join().unwrap();
        }
    }
}

impl Drop for UnreadRoots {
    fn drop(&mut self) {
        self.release();
    }
}
