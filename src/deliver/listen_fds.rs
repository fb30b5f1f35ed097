//! Listening sockets that outlive one listener: those systemd passes (socket activation), and
//! those `keyless serve` keeps open while a reload swaps a profile.
//!
//! A fixed loopback port left free for a moment (while the service restarts, or while a reload
//! restarts a profile) can be bound by any other local user, who then receives the requests and
//! the ECS authorization token they carry. So:
//!
//! - **Socket activation.** systemd binds the `ListenStream=` addresses of `keyless.socket` and
//!   holds them for as long as that unit runs, across restarts of the service; keyless receives
//!   them as file descriptors 3, 4, … (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, as
//!   sd_listen_fds(3) describes). A listener takes the passed socket whose bound address equals
//!   its listen address exactly: `ListenStream=127.0.0.1:9911` serves
//!   `imds_listen = "127.0.0.1:9911"` or `--listen 127.0.0.1:9911`. Names are only logged.
//! - **Kept sockets.** A socket bound for a fixed port stays open in this process until
//!   [`release_except`] says no listener wants it any more, so the new version of a profile
//!   restarted by a reload serves on the very socket the old one did.
//!
//! Hand-written rather than a crate: the protocol is three variables and consecutive descriptors
//! (a few lines), and keeping sockets across reloads, which no such crate does, is the rest.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// More passed sockets than this is a mistake, not a configuration.
const MAX_FDS: usize = 1024;

/// Why the passed sockets could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListenFdsError {
    /// `LISTEN_FDS` is not a count.
    #[error(
        "LISTEN_FDS={0:?} is not a number of sockets\n  \
         hint: let systemd set it (a keyless.socket unit), or unset LISTEN_FDS and LISTEN_PID"
    )]
    BadCount(String),
    /// A passed descriptor is not a listening TCP socket.
    #[error(
        "socket activation passed descriptor {fd} ({name}), which is not a listening TCP socket\n  \
         hint: keyless.socket may only have ListenStream=IP:PORT lines (no paths, datagrams or \
         Accept=yes)"
    )]
    NotTcpListener { fd: RawFd, name: String },
}

/// What is kept, by bound address.
struct Kept {
    socket: TcpListener,
    /// `Some(name)`: passed by systemd, kept for the life of the process.
    passed: Option<String>,
    /// A listener has taken it since it was passed (for the "unused" warning).
    taken: bool,
}

static KEPT: Mutex<BTreeMap<SocketAddr, Kept>> = Mutex::new(BTreeMap::new());

fn kept() -> std::sync::MutexGuard<'static, BTreeMap<SocketAddr, Kept>> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The descriptors and names the variables pass to process `pid`: none when `LISTEN_PID` names
/// another process (the variables were inherited, not meant for us) or is unset.
pub fn passed_fds(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
    pid: u32,
) -> Result<Vec<(RawFd, String)>, ListenFdsError> {
    let for_us = listen_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid);
    let Some(count) = listen_fds.filter(|_| for_us) else {
        return Ok(Vec::new());
    };
    let n = count
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= MAX_FDS)
        .ok_or_else(|| ListenFdsError::BadCount(count.to_string()))?;
    let mut names = names.unwrap_or_default().split(':');
    Ok((0..n)
        .map(|i| {
            let name = names.next().filter(|n| !n.is_empty()).unwrap_or("unknown");
            (FIRST_FD + i as RawFd, name.to_string())
        })
        .collect())
}

/// Adopts the sockets systemd passed to this process, once, before any listener binds (call it
/// first thing in `main`, while the process has one thread: it removes the variables so that
/// programs keyless starts do not see them, and marks the descriptors close-on-exec). Returns
/// the adopted addresses and names.
pub fn adopt_from_systemd() -> Result<Vec<(SocketAddr, String)>, ListenFdsError> {
    let var = |name: &str| std::env::var(name).ok();
    let passed = passed_fds(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    );
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let mut adopted = Vec::new();
    for (fd, name) in passed? {
        let socket = adopt(fd).ok_or_else(|| ListenFdsError::NotTcpListener {
            fd,
            name: name.clone(),
        })?;
        let addr = socket
            .local_addr()
            .map_err(|_| ListenFdsError::NotTcpListener {
                fd,
                name: name.clone(),
            })?;
        adopted.push((addr, name.clone()));
        kept().insert(
            addr,
            Kept {
                socket,
                passed: Some(name),
                taken: false,
            },
        );
    }
    Ok(adopted)
}

/// `fd` as a listener, if it is a listening TCP (IPv4 or IPv6) stream socket; it becomes
/// close-on-exec and non-blocking.
fn adopt(fd: RawFd) -> Option<TcpListener> {
    let option = |level, name| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes of a c_int; a bad fd only fails.
        let ok = unsafe {
            libc::getsockopt(fd, level, name, (&raw mut value).cast(), &raw mut len) == 0
        };
        ok.then_some(value)
    };
    let stream = option(libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM);
    let listening = option(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1);
    let inet = matches!(
        option(libc::SOL_SOCKET, libc::SO_DOMAIN),
        Some(libc::AF_INET | libc::AF_INET6)
    );
    if !(stream && listening && inet) {
        return None;
    }
    // SAFETY: fcntl on an fd we just checked is open; FD_CLOEXEC is its only descriptor flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: systemd handed this descriptor to this process; nothing else owns it.
    let socket = unsafe { TcpListener::from_raw_fd(fd) };
    socket.set_nonblocking(true).ok()?;
    Some(socket)
}

/// A new handle on the kept socket bound to exactly `addr` (passed by systemd, or bound earlier
/// by [`keep`]), ready for tokio.
pub fn take(addr: SocketAddr) -> Option<std::io::Result<TcpListener>> {
    let mut kept = kept();
    let entry = kept.get_mut(&addr)?;
    entry.taken = true;
    Some(entry.socket.try_clone().and_then(|socket| {
        socket.set_nonblocking(true)?;
        Ok(socket)
    }))
}

/// Keeps a handle on `socket`, bound for `requested` (a fixed port: port 0 is never kept), so
/// that a later listener on the same address gets the same socket.
pub fn keep(requested: SocketAddr, socket: &TcpListener) {
    if requested.port() == 0 {
        return;
    }
    if let Ok(handle) = socket.try_clone() {
        kept().entry(requested).or_insert(Kept {
            socket: handle,
            passed: None,
            taken: true,
        });
    }
}

/// Closes the kept sockets no listener of `in_use` wants; those systemd passed stay.
pub fn release_except(in_use: &[SocketAddr]) {
    kept().retain(|addr, kept| kept.passed.is_some() || in_use.contains(addr));
}

/// The passed sockets no listener has taken (address, name): worth a warning once every
/// listener has started.
pub fn untaken() -> Vec<(SocketAddr, String)> {
    kept()
        .iter()
        .filter(|(_, k)| !k.taken)
        .filter_map(|(addr, k)| Some((*addr, k.passed.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_pass_consecutive_fds_with_their_names_to_the_named_process_only() {
        assert_eq!(
            passed_fds(Some("42"), Some("2"), Some("ecs:imds"), 42).unwrap(),
            [(3, "ecs".to_string()), (4, "imds".to_string())]
        );
        assert_eq!(
            passed_fds(Some(" 42 "), Some("2"), Some("only"), 42).unwrap(),
            [(3, "only".to_string()), (4, "unknown".to_string())]
        );
        assert!(passed_fds(Some("41"), Some("2"), None, 42)
            .unwrap()
            .is_empty());
        assert!(passed_fds(None, Some("2"), None, 42).unwrap().is_empty());
        assert!(passed_fds(Some("42"), None, None, 42).unwrap().is_empty());
        for bad in ["x", "-1", "99999"] {
            let error = passed_fds(Some("42"), Some(bad), None, 42).unwrap_err();
            assert!(error.to_string().contains("hint:"), "{error}");
        }
    }

    /// A non-socket descriptor (a pipe, a file) is refused, not served on.
    #[test]
    fn only_listening_tcp_sockets_are_adopted() {
        let file = tempfile::tempfile().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        assert!(adopt(fd).is_none());
        let connected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(adopt(std::os::fd::AsRawFd::as_raw_fd(&connected)).is_none());
    }

    proptest::proptest! {
        /// Whatever the variables hold, reading them never panics and never passes more than
        /// the cap.
        #[test]
        fn any_variables_are_read_without_panic(
            pid in proptest::option::of("\\PC{0,12}"),
            fds in proptest::option::of("[0-9x -]{0,8}"),
            names in proptest::option::of("\\PC{0,40}"),
        ) {
            if let Ok(passed) = passed_fds(pid.as_deref(), fds.as_deref(), names.as_deref(), 7) {
                proptest::prop_assert!(passed.len() <= MAX_FDS);
            }
        }
    }
}
