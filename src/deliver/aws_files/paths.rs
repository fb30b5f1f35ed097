//! Where the shared files are: the SDKs' environment variables (`AWS_SHARED_CREDENTIALS_FILE`,
//! `AWS_CONFIG_FILE`), `~/.aws` otherwise, and symbolic links followed only when this user owns
//! them and what they name.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::AwsFilesError;

/// Where the AWS SDKs look for the shared credentials file: `AWS_SHARED_CREDENTIALS_FILE` when
/// set (a leading `~/` is expanded, as botocore does), else `~/.aws/credentials`.
pub fn default_credentials_path() -> Result<PathBuf, AwsFilesError> {
    shared_file_path(
        std::env::var_os("AWS_SHARED_CREDENTIALS_FILE"),
        dirs::home_dir(),
        "credentials",
        "AWS_SHARED_CREDENTIALS_FILE",
    )
}

/// Where the AWS SDKs look for the shared config file: `AWS_CONFIG_FILE` when set, else
/// `~/.aws/config`.
pub fn default_config_path() -> Result<PathBuf, AwsFilesError> {
    shared_file_path(
        std::env::var_os("AWS_CONFIG_FILE"),
        dirs::home_dir(),
        "config",
        "AWS_CONFIG_FILE",
    )
}

fn shared_file_path(
    from_env: Option<OsString>,
    home: Option<PathBuf>,
    file: &'static str,
    env_var: &'static str,
) -> Result<PathBuf, AwsFilesError> {
    let what = if file == "config" {
        "~/.aws/config"
    } else {
        "~/.aws/credentials"
    };
    let no_home = || AwsFilesError::NoHomeDirectory { what, env_var };
    match from_env.filter(|v| !v.is_empty()) {
        Some(value) => {
            let path = PathBuf::from(value);
            match path.strip_prefix("~") {
                Ok(rest) => Ok(home.ok_or_else(no_home)?.join(rest)),
                Err(_) => Ok(path),
            }
        }
        None => Ok(home.ok_or_else(no_home)?.join(".aws").join(file)),
    }
}

/// The sidecar file [`write_credentials_profile`](super::write_credentials_profile) locks: the target's name plus `.lock`
/// (`~/.aws/credentials.lock`). It is created on first use and never deleted, because deleting
/// a lock file races with the next process opening it.
pub fn lock_path(file: &Path) -> PathBuf {
    crate::private_file::lock_path_for(file)
}

/// Follows symbolic links to the file they finally name, which may not exist yet, as a dotfile
/// manager's link is meant to be followed: only links that belong to this user, to a file of
/// this user's (or, when the file does not exist yet, into a directory of this user's). Anything
/// else is refused naming the link and its owner: a link planted by another user (in a shared
/// or sticky directory, or a home another user can write) must not choose where credentials go.
pub(super) fn resolve_symlinks(path: &Path) -> Result<PathBuf, AwsFilesError> {
    let mut current = path.to_path_buf();
    let mut last_link: Option<PathBuf> = None;
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                check_link_owner(&current, &meta)?;
                let target = fs::read_link(&current).map_err(|source| AwsFilesError::Io {
                    action: "follow the symbolic link",
                    path: current.clone(),
                    source,
                })?;
                let next = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
                last_link = Some(std::mem::replace(&mut current, next));
            }
            Ok(meta) => {
                if let Some(link) = &last_link {
                    check_link_target(link, &current, &meta)?;
                }
                return Ok(current);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(link) = &last_link {
                    // The file will be created in its directory: that directory must be ours
                    // (a missing one is created by us, 0700).
                    let dir = crate::private_file::parent_dir(&current);
                    if let Ok(meta) = fs::metadata(dir) {
                        check_link_target(link, dir, &meta)?;
                    }
                }
                return Ok(current);
            }
            Err(source) => {
                return Err(AwsFilesError::Io {
                    action: "inspect",
                    path: current,
                    source,
                })
            }
        }
    }
    Err(AwsFilesError::SymlinkLoop {
        path: path.to_path_buf(),
    })
}

/// A link is followed only if it belongs to the user keyless runs as.
fn check_link_owner(link: &Path, meta: &fs::Metadata) -> Result<(), AwsFilesError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = crate::private_file::effective_uid();
        if meta.uid() != me {
            return Err(AwsFilesError::ForeignSymlink {
                link: link.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (link, meta);
    Ok(())
}

/// What a followed link names must belong to the user keyless runs as.
fn check_link_target(link: &Path, target: &Path, meta: &fs::Metadata) -> Result<(), AwsFilesError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = crate::private_file::effective_uid();
        if meta.uid() != me {
            return Err(AwsFilesError::ForeignLinkTarget {
                link: link.to_path_buf(),
                target: target.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (link, target, meta);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- paths --------------------------------------------------------------------------------

    #[test]
    fn default_paths_follow_the_sdk_environment_variables() {
        let home = Some(PathBuf::from("/home/u"));
        let p = |env: Option<&str>, home: Option<PathBuf>| {
            shared_file_path(env.map(OsString::from), home, "credentials", "X")
        };
        assert_eq!(
            p(None, home.clone()).unwrap(),
            Path::new("/home/u/.aws/credentials")
        );
        assert_eq!(
            p(Some(""), home.clone()).unwrap(),
            Path::new("/home/u/.aws/credentials")
        );
        assert_eq!(p(Some("/etc/c"), None).unwrap(), Path::new("/etc/c"));
        assert_eq!(
            p(Some("~/x/c"), home.clone()).unwrap(),
            Path::new("/home/u/x/c")
        );
        let err = p(None, None).unwrap_err();
        assert!(err.to_string().contains("X"), "{err}");
        assert_eq!(
            shared_file_path(None, home, "config", "AWS_CONFIG_FILE").unwrap(),
            Path::new("/home/u/.aws/config")
        );
        assert_eq!(
            lock_path(Path::new("/home/u/.aws/credentials")),
            Path::new("/home/u/.aws/credentials.lock")
        );
    }
}
