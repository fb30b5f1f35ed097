//! One profile of the shared credentials file: written (our keys only, under the sidecar lock,
//! atomically and 0600) and read back as `whoami --profile` needs it.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::credentials::{format_expiration, AwsCredentials};
use crate::secret::Secret;

use super::ini::{validate_section_name, IniDocument};
use super::paths::{lock_path, resolve_symlinks};
use super::AwsFilesError;

/// The keys [`write_credentials_profile`] owns in a credentials-file section.
const ACCESS_KEY_ID: &str = "aws_access_key_id";
const SECRET_ACCESS_KEY: &str = "aws_secret_access_key";
const SESSION_TOKEN: &str = "aws_session_token";
/// The legacy (boto2) name of the session token; botocore still reads it when
/// `aws_session_token` is absent, so we keep it in sync when a file already has it.
const LEGACY_SECURITY_TOKEN: &str = "aws_security_token";
/// The expiry key aws-vault and gimme-aws-creds write; the SDKs ignore it, people and scripts read it.
const EXPIRES: &str = "x_security_token_expires";

/// Checks that `profile` can be written as a section header and read back as the same name:
/// non-empty, no surrounding whitespace, no `[`, `]`, newline or other control character.
pub fn validate_profile_name(profile: &str) -> Result<(), AwsFilesError> {
    validate_section_name(profile)
}

/// The section that holds `profile` in the **config** file: `default` stays `default`, every
/// other profile is `profile NAME`. (The credentials file uses the bare name.) A name with
/// spaces works in the credentials file but not here: botocore splits config headers on
/// whitespace.
pub fn config_section_name(profile: &str) -> String {
    if profile == "default" {
        profile.to_owned()
    } else {
        format!("profile {profile}")
    }
}

/// Reads a file as text; a missing file reads as empty.
fn read_text(path: &Path) -> Result<Option<String>, AwsFilesError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| AwsFilesError::NotUtf8 {
                path: path.to_path_buf(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AwsFilesError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Opens and exclusively locks the sidecar lock file; the lock lasts as long as the `File`.
/// A symbolic link planted at the lock's name is refused rather than followed.
fn lock_exclusive(target: &Path) -> Result<File, AwsFilesError> {
    let path = lock_path(target);
    let io_err = |action, source| AwsFilesError::Io {
        action,
        path: path.clone(),
        source,
    };
    let file = crate::private_file::open_lock_file(&path)
        .map_err(|e| io_err("open the lock file (not following links)", e))?;
    file.lock().map_err(|e| io_err("lock", e))?;
    Ok(file)
}

/// Replaces `target` with `contents`: temp file in the same directory, 0600, fsync, rename,
/// fsync the directory, so readers see the old file or the new one and a crash leaves one of
/// them on disk.
fn replace_atomically(target: &Path, contents: &[u8]) -> Result<(), AwsFilesError> {
    crate::private_file::write_private_file_atomically(target, contents).map_err(|source| {
        AwsFilesError::Io {
            action: "replace",
            path: target.to_path_buf(),
            source,
        }
    })
}

/// Writes `creds` into `[profile]` of the shared credentials file at `path`.
///
/// Sets `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token` (removed for
/// long-lived keys) and `x_security_token_expires` (RFC 3339, as aws-vault and gimme-aws-creds
/// write it; removed when the credentials do not expire). If the section already has the legacy
/// `aws_security_token`, it is kept equal to the session token (or removed with it) so that it
/// can never shadow fresh credentials with stale ones. Every other key of the section, and
/// every other byte of the file, stays as it was.
///
/// The edit is safe against crashes and against other keyless processes:
/// - an exclusive lock on the sidecar [`lock_path`] (`credentials.lock`) is held while the
///   file is read, edited and replaced, so concurrent writers of different profiles all land;
/// - the new content goes to a temp file in the same directory (mode 0600), is fsynced and
///   renamed over the target, then the directory is fsynced;
/// - a missing directory (`~/.aws`) is created with mode 0700;
/// - if `path` is a symbolic link (dotfile managers do that), the file it points to is edited
///   and the link stays a link; a link planted at the lock file's name is refused;
/// - temp files left by a writer killed mid-write are removed under the lock;
/// - a file readable by others or owned by another user is rewritten 0600 and ours, with a
///   warning saying so.
pub fn write_credentials_profile(
    path: &Path,
    profile: &str,
    creds: &AwsCredentials,
) -> Result<(), AwsFilesError> {
    validate_profile_name(profile)?;
    let target = resolve_symlinks(path)?;
    let dir = crate::private_file::parent_dir(&target);
    crate::private_file::create_private_dir(dir).map_err(|source| AwsFilesError::Io {
        action: "create the directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let _lock = lock_exclusive(&target)?;
    // Under the lock no live writer has a temp file: any left belong to writers killed mid-write.
    match crate::private_file::remove_stale_temp_files(&target) {
        Ok(0) => {}
        Ok(n) => tracing::info!(path = %target.display(), removed = n,
            "removed temp files left by a writer that was killed mid-write"),
        Err(e) => {
            tracing::debug!(path = %target.display(), "could not sweep stale temp files: {e}")
        }
    }
    warn_before_rewrite(&target);

    let current = read_text(&target)?.unwrap_or_default();
    let mut doc = IniDocument::parse(&current);
    let token = creds.session_token.as_ref().map(Secret::expose);
    let expires = creds.expiration.map(format_expiration);
    let mut entries = vec![
        (ACCESS_KEY_ID, Some(creds.access_key_id.as_str())),
        (SECRET_ACCESS_KEY, Some(creds.secret_access_key.expose())),
        (SESSION_TOKEN, token),
        (EXPIRES, expires.as_deref()),
    ];
    let has_legacy = doc
        .section_entries(profile)
        .is_some_and(|e| e.iter().any(|(k, _)| k == LEGACY_SECURITY_TOKEN));
    if has_legacy {
        entries.push((LEGACY_SECURITY_TOKEN, token));
    }
    doc.set_entries(profile, &entries)?;
    replace_atomically(&target, doc.render().as_bytes())?;
    tracing::debug!(path = %target.display(), profile, "wrote AWS credentials profile");
    Ok(())
}

/// The rewrite makes the file ours and 0600; say so when it was not, since that changes who
/// can read it (a file written with sudo stops being root's).
fn warn_before_rewrite(target: &Path) {
    use crate::private_file::Exposure;
    for problem in crate::private_file::exposure(target) {
        match problem {
            Exposure::Readable { mode } => tracing::warn!(
                "{} was readable by others (mode {mode:04o}); the rewritten file is 0600",
                target.display()
            ),
            Exposure::ForeignOwner { .. } | Exposure::Writable { .. } => tracing::warn!(
                "{}; the rewritten file belongs to this user",
                problem.hint(target)
            ),
        }
    }
}

/// Reads the keys stored in `[profile]` of the shared credentials file, as `whoami --profile`
/// needs them. `Ok(None)` when the file or the profile does not exist; an error when the
/// profile exists without an access key or secret key. The session token is
/// `aws_session_token`, else the legacy `aws_security_token`; the expiry is
/// `x_security_token_expires` when it parses as RFC 3339.
pub fn read_credentials_profile(
    path: &Path,
    profile: &str,
) -> Result<Option<AwsCredentials>, AwsFilesError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    crate::private_file::warn_if_exposed(path);
    let Some(entries) = IniDocument::parse(&text).section_entries(profile) else {
        return Ok(None);
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let missing = |missing| AwsFilesError::IncompleteProfile {
        path: path.to_path_buf(),
        profile: profile.to_owned(),
        missing,
    };
    let access_key_id = get(ACCESS_KEY_ID).ok_or_else(|| missing(ACCESS_KEY_ID))?;
    let secret_access_key = get(SECRET_ACCESS_KEY).ok_or_else(|| missing(SECRET_ACCESS_KEY))?;
    let session_token = get(SESSION_TOKEN).or_else(|| get(LEGACY_SECURITY_TOKEN));
    let expiration = get(EXPIRES).and_then(|v| match OffsetDateTime::parse(v, &Rfc3339) {
        Ok(t) => Some(t),
        Err(_) => {
            tracing::warn!(path = %path.display(), profile, value = v,
                "ignoring {EXPIRES}: not an RFC 3339 time");
            None
        }
    });
    Ok(Some(AwsCredentials {
        access_key_id: access_key_id.to_owned(),
        secret_access_key: Secret::new(secret_access_key),
        session_token: session_token.map(Secret::new),
        expiration,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;
    use time::macros::datetime;

    const FIXTURE: &str = include_str!("../../../tests/data/ini/credentials");
    const GOLDEN_UPDATE_MIDDLE: &str =
        include_str!("../../../tests/data/ini/credentials.update-middle");
    const GOLDEN_UPDATE_CI: &str = include_str!("../../../tests/data/ini/credentials.update-ci");
    const GOLDEN_ADD_NEW: &str = include_str!("../../../tests/data/ini/credentials.add-new");
    const GOLDEN_REMOVE_TOKEN: &str =
        include_str!("../../../tests/data/ini/credentials.remove-token");
    const GOLDEN_TOKEN_INTO_DEFAULT: &str =
        include_str!("../../../tests/data/ini/credentials.token-into-default");

    fn session_creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "ASIANEWNEWNEWNEWNEW0".into(),
            secret_access_key: Secret::new("newSecretNewSecretNewSecretNewSecret0000"),
            session_token: Some(Secret::new("NewSessionTokenNewSessionToken")),
            expiration: Some(datetime!(2030-05-06 07:08:09 UTC)),
        }
    }

    fn static_creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIASTATICSTATICSTA0".into(),
            secret_access_key: Secret::new("staticSecretStaticSecretStaticSecret0000"),
            session_token: None,
            expiration: None,
        }
    }

    fn crlf(text: &str) -> String {
        text.replace('\n', "\r\n")
    }

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Writes `input` to a fresh file, writes `creds` into `profile`, returns the result.
    fn write_into(input: &str, profile: &str, creds: &AwsCredentials) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        fs::write(&path, input).unwrap();
        write_credentials_profile(&path, profile, creds).unwrap();
        fs::read_to_string(&path).unwrap()
    }

    // --- editing ------------------------------------------------------------------------------

    #[test]
    fn golden_update_existing_profile_in_the_middle() {
        assert_eq!(
            write_into(FIXTURE, "deploy", &session_creds()),
            GOLDEN_UPDATE_MIDDLE
        );
        assert_eq!(
            write_into(&crlf(FIXTURE), "deploy", &session_creds()),
            crlf(GOLDEN_UPDATE_MIDDLE)
        );
    }

    #[test]
    fn golden_update_keeps_spacing_and_key_case_and_appends_before_trailing_comment() {
        assert_eq!(
            write_into(FIXTURE, "ci", &session_creds()),
            GOLDEN_UPDATE_CI
        );
        assert_eq!(
            write_into(&crlf(FIXTURE), "ci", &session_creds()),
            crlf(GOLDEN_UPDATE_CI)
        );
    }

    #[test]
    fn golden_add_new_profile() {
        assert_eq!(
            write_into(FIXTURE, "keyless-new", &session_creds()),
            GOLDEN_ADD_NEW
        );
        assert_eq!(
            write_into(&crlf(FIXTURE), "keyless-new", &session_creds()),
            crlf(GOLDEN_ADD_NEW)
        );
    }

    #[test]
    fn golden_remove_session_token() {
        assert_eq!(
            write_into(FIXTURE, "deploy", &static_creds()),
            GOLDEN_REMOVE_TOKEN
        );
        assert_eq!(
            write_into(&crlf(FIXTURE), "deploy", &static_creds()),
            crlf(GOLDEN_REMOVE_TOKEN)
        );
    }

    #[test]
    fn golden_missing_keys_go_after_the_last_key_not_after_the_next_sections_comment() {
        assert_eq!(
            write_into(FIXTURE, "default", &session_creds()),
            GOLDEN_TOKEN_INTO_DEFAULT
        );
    }

    #[test]
    fn writing_twice_changes_nothing() {
        for creds in [session_creds(), static_creds()] {
            for profile in ["deploy", "ci", "fresh"] {
                let once = write_into(FIXTURE, profile, &creds);
                assert_eq!(write_into(&once, profile, &creds), once, "{profile}");
            }
        }
    }

    #[test]
    fn small_files_keep_their_shape() {
        let creds = session_creds();
        let expected_new = "[p]\naws_access_key_id = ASIANEWNEWNEWNEWNEW0\n\
            aws_secret_access_key = newSecretNewSecretNewSecretNewSecret0000\n\
            aws_session_token = NewSessionTokenNewSessionToken\n\
            x_security_token_expires = 2030-05-06T07:08:09Z\n";
        assert_eq!(write_into("", "p", &creds), expected_new);
        assert_eq!(
            write_into("\u{feff}", "p", &creds),
            format!("\u{feff}{expected_new}")
        );
        assert_eq!(
            write_into("[a]\nx = 1", "p", &creds),
            format!("[a]\nx = 1\n\n{expected_new}")
        );
        assert_eq!(
            write_into("[a]\nx = 1\n\n", "p", &creds),
            format!("[a]\nx = 1\n\n{expected_new}")
        );
        // No trailing newline, key missing in the last section: the file still ends without one.
        let out = write_into("[p]\nregion=x", "p", &static_creds());
        assert_eq!(
            out,
            "[p]\nregion=x\naws_access_key_id=AKIASTATICSTATICSTA0\n\
             aws_secret_access_key=staticSecretStaticSecretStaticSecret0000"
        );
        // A BOM and CRLF survive an in-place update.
        let out = write_into(
            "\u{feff}[p]\r\naws_access_key_id = old\r\n",
            "p",
            &static_creds(),
        );
        assert_eq!(
            out,
            "\u{feff}[p]\r\naws_access_key_id = AKIASTATICSTATICSTA0\r\n\
             aws_secret_access_key = staticSecretStaticSecretStaticSecret0000\r\n"
        );
    }

    #[test]
    fn empty_values_and_duplicates() {
        let mut doc = IniDocument::parse("[p]\nk =\nk = dup\n[p]\nK: third\n");
        doc.set_entries("p", &[("k", Some("v"))]).unwrap();
        assert_eq!(doc.render(), "[p]\nk = v\n[p]\n");
        let mut doc = IniDocument::parse("[p]\nk=\n");
        doc.set_entries("p", &[("k", Some("v"))]).unwrap();
        assert_eq!(doc.render(), "[p]\nk=v\n");
        // Only `None`s never create a section.
        let mut doc = IniDocument::parse("[a]\n");
        doc.set_entries("p", &[("k", None)]).unwrap();
        assert_eq!(doc.render(), "[a]\n");
    }

    #[test]
    fn indented_headers_stay_headers_after_an_insert() {
        // After `[p]` no entry is open, so `  [q]` is a header; a key inserted at column 0
        // would turn it into a continuation of that key.
        let mut doc = IniDocument::parse("[p]\n  [q]\nz = 1\n");
        doc.set_entries("p", &[("k", Some("v"))]).unwrap();
        assert_eq!(doc.section_names(), ["p", "q"]);
        assert_eq!(doc.section_entries("q").unwrap(), entries(&[("z", "1")]));
        assert_eq!(doc.section_entries("p").unwrap(), entries(&[("k", "v")]));
    }

    #[test]
    fn legacy_security_token_is_kept_in_sync() {
        let out = write_into("[p]\naws_security_token = stale\n", "p", &session_creds());
        let doc = IniDocument::parse(&out);
        let e = doc.section_entries("p").unwrap();
        assert!(e.contains(&(
            "aws_security_token".into(),
            "NewSessionTokenNewSessionToken".into()
        )));
        let out = write_into(&out, "p", &static_creds());
        assert!(!out.contains("aws_security_token"), "{out}");
        assert!(!out.contains("aws_session_token"), "{out}");
    }

    #[test]
    fn bad_names_and_values_are_refused_without_showing_values() {
        for name in ["", " p", "p ", "a]b", "[p", "a\nb", "a\rb"] {
            let err = validate_profile_name(name).unwrap_err();
            assert!(
                matches!(err, AwsFilesError::InvalidProfileName { .. }),
                "{name:?}"
            );
        }
        validate_profile_name("keyless deploy.prod_1").unwrap();
        let mut doc = IniDocument::parse("");
        let err = doc
            .set_entries("p", &[("k", Some("s3cr3t\n[evil]"))])
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(!format!("{err:?}").contains("s3cr3t"), "{err:?}");
        for key in ["", "a b", "a=b", "a:b", "[a", "#a"] {
            assert!(
                doc.set_entries("p", &[(key, Some("v"))]).is_err(),
                "{key:?}"
            );
        }
        assert_eq!(doc.render(), "");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let err = write_credentials_profile(&path, "a]b", &session_creds()).unwrap_err();
        assert!(err.to_string().contains("hint"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn read_profile_returns_keys_or_none_or_explains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        assert!(read_credentials_profile(&path, "deploy").unwrap().is_none());
        fs::write(&path, GOLDEN_UPDATE_MIDDLE).unwrap();
        let creds = read_credentials_profile(&path, "deploy").unwrap().unwrap();
        assert_eq!(creds, session_creds());
        let default = read_credentials_profile(&path, "default").unwrap().unwrap();
        assert_eq!(default.access_key_id, "AKIADEFAULTDEFAULT00");
        assert!(default.session_token.is_none() && default.expiration.is_none());
        assert!(read_credentials_profile(&path, "nope").unwrap().is_none());
        let err = read_credentials_profile(&path, "profile legacy").unwrap_err();
        assert!(
            matches!(
                err,
                AwsFilesError::IncompleteProfile {
                    missing: ACCESS_KEY_ID,
                    ..
                }
            ),
            "{err}"
        );
        fs::write(
            &path,
            "[p]\naws_access_key_id=a\naws_secret_access_key=b\naws_security_token=t\n",
        )
        .unwrap();
        let creds = read_credentials_profile(&path, "p").unwrap().unwrap();
        assert_eq!(creds.session_token.unwrap().expose(), "t");
        fs::write(&path, b"[p]\n\xff\n").unwrap();
        assert!(matches!(
            read_credentials_profile(&path, "p"),
            Err(AwsFilesError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        write_credentials_profile(&path, "p", &session_creds()).unwrap();
        assert_eq!(
            read_credentials_profile(&path, "p").unwrap().unwrap(),
            session_creds()
        );
        write_credentials_profile(&path, "p", &static_creds()).unwrap();
        assert_eq!(
            read_credentials_profile(&path, "p").unwrap().unwrap(),
            static_creds()
        );
    }

    #[cfg(unix)]
    #[test]
    fn file_is_0600_and_a_missing_aws_dir_is_created_0700() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".aws").join("credentials");
        write_credentials_profile(&path, "p", &session_creds()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // An existing, too-open file is tightened by the rewrite.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_credentials_profile(&path, "p", &session_creds()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&lock_path(&path)), 0o600);
        // Nothing but the file and its lock is left behind (no stray temp files).
        let mut names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["credentials", "credentials.lock"]);
    }

    #[test]
    fn writers_wait_for_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let held = lock_exclusive(&path).unwrap();
        assert!(lock_path(&path).exists());
        let (tx, rx) = mpsc::channel();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                write_credentials_profile(&path, "p", &session_creds()).unwrap();
                tx.send(()).unwrap();
            })
        };
        // While we hold the lock the writer cannot finish (a bug could only make this pass
        // spuriously on a very slow machine, never fail spuriously).
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(300)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        assert!(!path.exists());
        drop(held);
        rx.recv().unwrap();
        writer.join().unwrap();
        assert!(read_credentials_profile(&path, "p").unwrap().is_some());
    }

    #[test]
    fn concurrent_writers_of_different_profiles_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        fs::write(&path, FIXTURE).unwrap();
        let n = 8;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut creds = session_creds();
                    creds.access_key_id = format!("ASIATHREAD{i:010}");
                    barrier.wait();
                    for _ in 0..3 {
                        write_credentials_profile(&path, &format!("t{i}"), &creds).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for i in 0..n {
            let creds = read_credentials_profile(&path, &format!("t{i}"))
                .unwrap()
                .unwrap();
            assert_eq!(creds.access_key_id, format!("ASIATHREAD{i:010}"));
        }
        assert!(fs::read_to_string(&path).unwrap().starts_with(FIXTURE));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_file_is_edited_through_the_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dotfiles = dir.path().join("dotfiles");
        let aws = dir.path().join("home").join(".aws");
        fs::create_dir_all(&dotfiles).unwrap();
        fs::create_dir_all(&aws).unwrap();
        let real = dotfiles.join("aws-credentials");
        fs::write(&real, FIXTURE).unwrap();
        let link = aws.join("credentials");
        std::os::unix::fs::symlink("../../dotfiles/aws-credentials", &link).unwrap();

        write_credentials_profile(&link, "deploy", &session_creds()).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), GOLDEN_UPDATE_MIDDLE);
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(lock_path(&real).exists());

        // A dangling link (the dotfile not created yet) gets its target created.
        let dangling = aws.join("other");
        std::os::unix::fs::symlink(dotfiles.join("not-yet"), &dangling).unwrap();
        write_credentials_profile(&dangling, "p", &static_creds()).unwrap();
        assert!(fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(dotfiles.join("not-yet").is_file());

        // A loop is reported, not followed forever.
        let a = aws.join("loop-a");
        std::os::unix::fs::symlink(aws.join("loop-b"), &a).unwrap();
        std::os::unix::fs::symlink(&a, aws.join("loop-b")).unwrap();
        assert!(matches!(
            write_credentials_profile(&a, "p", &static_creds()),
            Err(AwsFilesError::SymlinkLoop { .. })
        ));
    }

    /// Links are followed only when they and what they name are this user's: a link another
    /// user owns, or one pointing at another user's file or directory, is refused by name.
    #[cfg(unix)]
    #[test]
    fn only_this_users_links_to_this_users_files_are_followed() {
        // Only root can give links and files away.
        if crate::private_file::effective_uid() != 0 {
            return;
        }
        const OTHER: u32 = 65534;
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        fs::create_dir_all(&aws).unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir_all(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(OTHER), None).unwrap();
        let mine = dir.path().join("mine");
        fs::write(&mine, FIXTURE).unwrap();

        // A link planted by another user, even to a file of ours.
        let planted = aws.join("credentials");
        std::os::unix::fs::symlink(&mine, &planted).unwrap();
        std::os::unix::fs::lchown(&planted, Some(OTHER), None).unwrap();
        let err = write_credentials_profile(&planted, "p", &static_creds()).unwrap_err();
        assert!(
            matches!(err, AwsFilesError::ForeignSymlink { owner: OTHER, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&planted.display().to_string()), "{text}");
        assert!(text.contains("user id 65534"), "{text}");
        assert_eq!(fs::read_to_string(&mine).unwrap(), FIXTURE);

        // Our link to another user's file.
        let their_file = theirs.join("credentials");
        fs::write(&their_file, FIXTURE).unwrap();
        std::os::unix::fs::chown(&their_file, Some(OTHER), None).unwrap();
        let to_theirs = aws.join("to-theirs");
        std::os::unix::fs::symlink(&their_file, &to_theirs).unwrap();
        let err = write_credentials_profile(&to_theirs, "p", &static_creds()).unwrap_err();
        assert!(
            matches!(err, AwsFilesError::ForeignLinkTarget { owner: OTHER, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&to_theirs.display().to_string()));
        assert_eq!(fs::read_to_string(&their_file).unwrap(), FIXTURE);

        // Our dangling link into another user's directory.
        let dangling = aws.join("dangling");
        std::os::unix::fs::symlink(theirs.join("not-yet"), &dangling).unwrap();
        assert!(matches!(
            write_credentials_profile(&dangling, "p", &static_creds()),
            Err(AwsFilesError::ForeignLinkTarget { .. })
        ));
        assert!(!theirs.join("not-yet").exists());

        // Ours to ours is followed.
        let ok = aws.join("ok");
        std::os::unix::fs::symlink(&mine, &ok).unwrap();
        write_credentials_profile(&ok, "deploy", &session_creds()).unwrap();
        assert_eq!(fs::read_to_string(&mine).unwrap(), GOLDEN_UPDATE_MIDDLE);
    }
}
