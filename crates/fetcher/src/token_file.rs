//! The refresh token file of the `refresh_token` and `authorization_code` grants: read at start,
//! written by `oauth login`, and written again whenever the token endpoint rotates the token.
//!
//! ServiceNow's own `/oauth_token.do` hands back the same refresh token on every renewal, but an
//! OAuth provider behind `auth.token_url` may rotate it (a new one with every renewal, the old one
//! revoked, as RFC 9700 recommends). Without writing the new one back, a restarted fetcher would
//! start from a revoked token, so the client's [`RefreshTokenObserver`] stores each new one here.
//!
//! The refresh token is a long-lived credential: the file is created with mode 0600 and swapped
//! in by rename, so it never exists with wider permissions or half written, and the token never
//! reaches a log line or an error message (only the file's path does).

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};

use nowstream_servicenow::client::RefreshTokenObserver;

use crate::metrics;

/// Why the refresh token file cannot be used. Names the file, never the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read refresh token file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refresh token file {} is empty; run `nowstream-fetcher oauth login`",
        path.display()
    )]
    Empty { path: PathBuf },
}

/// Reads a refresh token stored by `oauth login` or by a rotation (one line; surrounding white
/// space ignored, so a file written by hand with `echo` works too).
pub fn read_refresh_token(path: &Path) -> Result<SecretString, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(SecretString::from(token.to_owned()))
}

/// Writes `token` to `path` so that it never exists with wider permissions than 0600 and
/// never half written: a temporary file in the same directory is created 0600, written,
/// synced and renamed over `path`. A missing parent directory is created (mode 0700).
///
/// `oauth login` stores the first refresh token with it, and the fetcher (through
/// [`write_back_observer`]) each one the token endpoint rotates to.
pub fn store_refresh_token(path: &Path, token: &SecretString) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file (it ends in `..` or `/`)",
        )
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
    }
    let suffix: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(8)
        .map(char::from)
        .collect();
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".{suffix}.tmp"));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        // The umask can only remove bits from 0600; set it anyway in case the file system
        // ignores the creation mode.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(token.expose_secret().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        // Best effort: the temporary file holds the token and must not stay behind.
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // Make the rename itself durable.
    if let Ok(dir) = std::fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// An observer that stores each rotated refresh token of integration `integration_id` in
/// `path` and logs that it did (naming the file, never the token). A failed write is logged as a
/// warning and counted in `nowstream_fetcher_refresh_token_write_failures_total`, not fatal: the
/// new token keeps working from memory until the process restarts.
///
/// The write is synchronous (a few small writes and an fsync) on purpose: the client calls the
/// observer once per rotation, in the order tokens were issued, so the file always ends up with
/// the newest one.
pub fn write_back_observer(integration_id: &str, path: &Path) -> RefreshTokenObserver {
    let integration_id = integration_id.to_owned();
    let path = path.to_path_buf();
    RefreshTokenObserver::new(move |token| {
        // Logged and counted inside; nothing more to do with the outcome here.
        let _ = write_back(&integration_id, &path, token);
    })
}

/// Stores a rotated refresh token and says so in the log (naming the file, never the token). A
/// failed write is logged and counted, not fatal: the new token sits in the client's memory and
/// keeps the fetcher running; only a restart before the next successful write would start from
/// the revoked token in the file.
fn write_back(integration_id: &str, path: &Path, token: &SecretString) -> std::io::Result<()> {
    let stored = store_refresh_token(path, token);
    match &stored {
        Ok(()) => tracing::info!(
            integration_id,
            path = %path.display(),
            "stored the rotated OAuth refresh token"
        ),
        Err(error) => {
            metrics::refresh_token_write_failed(integration_id);
            tracing::warn!(
                integration_id,
                path = %path.display(),
                %error,
                "cannot store the rotated OAuth refresh token; the fetcher keeps running on the \
                 new token in memory, but after a restart it would start from the revoked one in \
                 the file"
            );
        }
    }
    stored
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn stored_tokens_are_private_and_replace_the_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/refresh_token");
        store_refresh_token(&path, &SecretString::from("first-token")).unwrap();
        store_refresh_token(&path, &SecretString::from("second-token")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second-token\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            ["refresh_token"],
            "no temporary file stays behind"
        );
    }

    #[test]
    fn a_stored_token_reads_back_without_its_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh_token");
        store_refresh_token(&path, &SecretString::from("the-token")).unwrap();
        assert_eq!(
            read_refresh_token(&path).unwrap().expose_secret(),
            "the-token"
        );
    }

    #[test]
    fn a_missing_or_blank_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let err = read_refresh_token(&missing).unwrap_err();
        assert!(matches!(err, TokenFileError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("absent"), "{err}");
        let blank = dir.path().join("blank");
        std::fs::write(&blank, " \n").unwrap();
        let err = read_refresh_token(&blank).unwrap_err();
        assert!(matches!(err, TokenFileError::Empty { .. }), "{err:?}");
        assert!(err.to_string().contains("oauth login"), "{err}");
    }

    #[test]
    fn a_write_back_replaces_the_file_and_a_failed_one_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh_token");
        std::fs::write(&path, "old-token\n").unwrap();
        write_back("4711", &path, &SecretString::from("new-token")).unwrap();
        assert_eq!(
            read_refresh_token(&path).unwrap().expose_secret(),
            "new-token"
        );

        // A "directory" that is a file cannot hold the token file.
        let blocked = path.join("refresh_token");
        assert!(write_back("4711", &blocked, &SecretString::from("newer-token")).is_err());
        assert_eq!(
            read_refresh_token(&path).unwrap().expose_secret(),
            "new-token"
        );
    }
}
