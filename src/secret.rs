//! Secrets (tokens, passwords) in a type that never prints its value.

use std::fmt;
use std::path::Path;

/// A secret string. `Debug` and `Display` print `[redacted]`, so a secret that reaches a log
/// line or an error message by accident shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that sends it (an Authorization header, a bind).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a secret could not be read. It names where scimsync looked, never what it found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    #[error("cannot read secret file {}: {source}", .path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {0} is not set or not valid UTF-8")]
    Env(String),
    #[error("no secret configured")]
    None,
    #[error("{0} is empty")]
    Empty(String),
}

/// Reads a secret from a file (a systemd credential is a file under `$CREDENTIALS_DIRECTORY`)
/// or an environment variable. The error names where it looked, never what it found.
pub(crate) fn read(file: Option<&Path>, env: Option<&str>) -> Result<Secret, SecretError> {
    let value = match (file, env) {
        (Some(path), _) => {
            warn_if_open(path);
            std::fs::read_to_string(path).map_err(|source| SecretError::File {
                path: path.to_owned(),
                source,
            })?
        }
        (None, Some(var)) => std::env::var(var).map_err(|_| SecretError::Env(var.to_owned()))?,
        (None, None) => return Err(SecretError::None),
    };
    let value = value.trim_end_matches(['\r', '\n']).to_owned();
    if value.is_empty() {
        let at = match (file, env) {
            (Some(p), _) => format!("secret file {}", p.display()),
            (None, Some(v)) => format!("environment variable {v}"),
            (None, None) => String::new(),
        };
        return Err(SecretError::Empty(at));
    }
    Ok(Secret(value))
}

/// Warns when a secret file may be read or changed by others than its owner and group
/// (systemd's credentials and a `chmod 600` file pass).
fn warn_if_open(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path).and_then(|m| {
        if m.is_file() {
            Ok(m)
        } else {
            Err(std::io::Error::other("not a file"))
        }
    }) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "The secret file is readable or writable by every user of this machine; make it owner-only (chmod 600)."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
    }

    #[test]
    fn reads_a_file_without_its_newline_and_names_a_missing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("token");
        std::fs::write(&p, "abc\n").expect("write");
        assert_eq!(read(Some(&p), None).expect("read").expose(), "abc");
        let e = read(Some(&dir.path().join("nope")), None).expect_err("missing");
        assert!(e.to_string().starts_with("cannot read secret file "), "{e}");
        std::fs::write(&p, "\n").expect("write");
        assert!(read(Some(&p), None)
            .expect_err("empty")
            .to_string()
            .ends_with("is empty"));
    }
}
