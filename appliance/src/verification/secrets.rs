//! Reads operator secrets (vendor API keys, the data key) from a 0600 file or an environment
//! variable. Errors name the source, never the value.

use std::os::unix::fs::MetadataExt;

use zeroize::Zeroizing;

use crate::config::SecretSourceConfig;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not UTF-8).
    #[error("{what}: environment variable {var} is not set")]
    MissingEnv {
        /// Which secret.
        what: String,
        /// The variable.
        var: String,
    },
    /// The file could not be read.
    #[error("{what}: cannot read {path}: {reason}")]
    File {
        /// Which secret.
        what: String,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is readable by group or others.
    #[error("{what}: {path} must not be readable by group or others (chmod 600)")]
    Permissions {
        /// Which secret.
        what: String,
        /// The file.
        path: String,
    },
    /// Neither or both sources are set.
    #[error("{what}: needs exactly one of env, file")]
    NoSource {
        /// Which secret.
        what: String,
    },
    /// The value is empty.
    #[error("{what}: the secret is empty")]
    Empty {
        /// Which secret.
        what: String,
    },
}

/// Reads one secret; `what` names it in errors (e.g. `plugin phone-real-name secret sms_api_key`).
pub fn read_secret(
    source: &SecretSourceConfig,
    what: &str,
) -> Result<Zeroizing<String>, SecretError> {
    let value = match (&source.env, &source.file) {
        (Some(var), None) => {
            Zeroizing::new(std::env::var(var).map_err(|_| SecretError::MissingEnv {
                what: what.to_owned(),
                var: var.clone(),
            })?)
        }
        (None, Some(path)) => {
            let file_err = |reason: String| SecretError::File {
                what: what.to_owned(),
                path: path.display().to_string(),
                reason,
            };
            let meta = std::fs::metadata(path).map_err(|e| file_err(e.to_string()))?;
            if meta.mode() & 0o077 != 0 {
                return Err(SecretError::Permissions {
                    what: what.to_owned(),
                    path: path.display().to_string(),
                });
            }
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?)
        }
        _ => {
            return Err(SecretError::NoSource {
                what: what.to_owned(),
            })
        }
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(SecretError::Empty {
            what: what.to_owned(),
        });
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn file_must_be_private_and_errors_hide_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "sk-live-secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let src = SecretSourceConfig {
            env: None,
            file: Some(path.clone()),
        };
        let err = read_secret(&src, "test key").unwrap_err();
        assert!(matches!(err, SecretError::Permissions { .. }), "{err}");
        assert!(!err.to_string().contains("sk-live"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_secret(&src, "test key").unwrap().as_str(),
            "sk-live-secret"
        );
    }

    #[test]
    fn missing_env_and_no_source() {
        let src = SecretSourceConfig {
            env: Some("CA_APPLIANCE_TEST_SURELY_UNSET_VAR".into()),
            file: None,
        };
        assert!(matches!(
            read_secret(&src, "x"),
            Err(SecretError::MissingEnv { .. })
        ));
        assert!(matches!(
            read_secret(&SecretSourceConfig::default(), "x"),
            Err(SecretError::NoSource { .. })
        ));
    }
}
