//! `~/.aws/credentials` and `~/.aws/config`: read them as the AWS CLI does, edit one profile and
//! leave every other byte alone.
//!
//! `keyless aws write-profile` hands temporary credentials to programs that only know the shared
//! credentials file. That file is the user's: it holds hand-written comments, long-lived keys for
//! other accounts and settings other tools wrote. Losing a comment, reordering a section or
//! leaving a half-written file behind after a crash would be worse than not having the feature,
//! so an edit here is surgical (only the lines of the keys we own change), atomic (temp file,
//! fsync, rename, fsync the directory), private (0600) and serialised between keyless processes
//! by a lock on a sidecar file.
//!
//! The pieces, one concept each: [`ini`] is the lossless INI editor (how botocore reads the
//! files), [`paths`] says where the files are (the SDKs' environment variables, symbolic links
//! followed safely), [`profile`] reads and writes one profile's keys under the lock. Writes go
//! through [`crate::private_file`] (0600, atomic, durable).

use std::io;
use std::path::PathBuf;

pub mod ini;
pub mod paths;
pub mod profile;

pub use ini::IniDocument;
pub use paths::{default_config_path, default_credentials_path, lock_path};
pub use profile::{
    config_section_name, read_credentials_profile, validate_profile_name, write_credentials_profile,
};

/// What went wrong reading or editing an AWS shared file; never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum AwsFilesError {
    /// No home directory, so no default location for the file.
    #[error(
        "could not find your home directory, so there is no default {what}\n  \
         hint: set {env_var} or pass the path explicitly (--credentials-file)"
    )]
    NoHomeDirectory {
        /// `~/.aws/credentials` or `~/.aws/config`.
        what: &'static str,
        /// The environment variable that overrides the location.
        env_var: &'static str,
    },

    /// The profile name would not survive a round trip through the file.
    #[error(
        "{name:?} cannot be used as an AWS profile name: {reason}\n  \
         hint: use letters, digits, `-`, `_` or `.`, e.g. --profile keyless-deploy"
    )]
    InvalidProfileName {
        /// The rejected name (names are not secret).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A key or value passed to [`IniDocument::set_entries`] would break the file.
    #[error("cannot write key {key:?} in [{section}]: {reason}")]
    InvalidEntry {
        /// The section being edited.
        section: String,
        /// The offending key (keys are not secret; values are never shown).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// Reading, locking or replacing the file failed.
    #[error(
        "could not {action} {}: {source}\n  \
         hint: check that you own the file and its directory and that they are writable",
        path.display()
    )]
    Io {
        /// What we were doing, e.g. "lock" or "replace".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },

    /// The file is not UTF-8, so it cannot be edited without risking its other bytes.
    #[error(
        "{} is not UTF-8 text, so keyless will not edit it\n  \
         hint: re-save it as UTF-8 (the AWS CLI requires that too) or use another --credentials-file",
        path.display()
    )]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },

    /// Following symbolic links from the path never reached a file.
    #[error(
        "{} is a chain of more than 40 symbolic links (a loop?)\n  \
         hint: point it at a real file or pass that file with --credentials-file",
        path.display()
    )]
    SymlinkLoop {
        /// The path we started from.
        path: PathBuf,
    },

    /// A symbolic link on the way to the file is not this user's: following it would let its
    /// owner choose where the credentials go (what `fs.protected_symlinks` prevents in sticky
    /// directories, checked here wherever the link is).
    #[error(
        "{} is a symbolic link owned by user id {owner}, not by this user ({me}); keyless follows          only this user's links
           hint: if the link is meant to be there, `sudo chown -h $(id -u) {}`; otherwise remove it,          or pass the real file with --credentials-file",
        link.display(),
        link.display()
    )]
    ForeignSymlink {
        /// The link.
        link: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// The user id keyless runs as.
        me: u32,
    },

    /// A symbolic link of this user's points at a file (or, for a file not created yet, into a
    /// directory) of another user.
    #[error(
        "{} points to {}, which belongs to user id {owner}, not to this user ({me}); keyless writes          credentials through a link only into this user's files
           hint: point the link at a file of yours, or pass the real file with --credentials-file",
        link.display(),
        target.display()
    )]
    ForeignLinkTarget {
        /// The (last) link followed.
        link: PathBuf,
        /// The file it names, or that file's directory when the file does not exist yet.
        target: PathBuf,
        /// The target's owner.
        owner: u32,
        /// The user id keyless runs as.
        me: u32,
    },

    /// The profile exists but does not hold keys (it may use `role_arn`, `credential_process`...).
    #[error(
        "profile [{profile}] in {} has no {missing}\n  \
         hint: it may be configured another way (role_arn, credential_process, sso); \
         keyless reads only keys stored in the credentials file",
        path.display()
    )]
    IncompleteProfile {
        /// The credentials file.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// The first missing key.
        missing: &'static str,
    },
}

// Hostile input (the fuzz harness's and property tests' view of the editor) lives beside it.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod hostile;
