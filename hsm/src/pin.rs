//! Where the user PIN comes from, and reading it without ever logging it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::HsmError;

/// Where the user PIN comes from: never the config file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file holding the PIN (trailing newline ignored); must not be readable by group/other.
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
    /// A systemd credential: the file `$CREDENTIALS_DIRECTORY/<name>`.
    SystemdCredential(String),
}

impl PinSource {
    /// Read the PIN; the result is wiped from memory when dropped.
    pub fn read(&self) -> Result<Zeroizing<String>, HsmError> {
        match self {
            PinSource::File(path) => {
                let what = format!("file {}", path.display());
                check_private(path, &what)?;
                read_file(path, &what)
            }
            PinSource::Env(name) => {
                let what = format!("environment variable {name}");
                let value =
                    Zeroizing::new(std::env::var(name).map_err(|e| HsmError::PinSource {
                        what: what.clone(),
                        reason: match e {
                            std::env::VarError::NotPresent => "is not set".into(),
                            std::env::VarError::NotUnicode(_) => "is not valid UTF-8".into(),
                        },
                    })?);
                finish(value, &what)
            }
            PinSource::SystemdCredential(name) => {
                let what = format!("systemd credential {name}");
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(HsmError::PinSource {
                        what,
                        reason: "credential name must be a plain file name".into(),
                    });
                }
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    HsmError::PinSource {
                        what: what.clone(),
                        reason: "CREDENTIALS_DIRECTORY is not set (not started by systemd with LoadCredential=?)".into(),
                    }
                })?;
                read_file(&Path::new(&dir).join(name), &what)
            }
        }
    }
}

/// Refuse a PIN file that group or other could read or write.
fn check_private(path: &Path, what: &str) -> Result<(), HsmError> {
    let meta = std::fs::metadata(path).map_err(|e| HsmError::PinSource {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(HsmError::PinSource {
            what: what.to_owned(),
            reason: format!("has mode {mode:04o}; it must be mode 0600 (or stricter)"),
        });
    }
    Ok(())
}

fn read_file(path: &Path, what: &str) -> Result<Zeroizing<String>, HsmError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| HsmError::PinSource {
        what: what.to_owned(),
        reason: e.to_string(),
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| HsmError::PinSource {
        what: what.to_owned(),
        reason: "is not valid UTF-8".into(),
    })?;
    finish(Zeroizing::new(text.to_owned()), what)
}

/// Trim one trailing newline (`\n` or `\r\n`) and refuse an empty PIN.
fn finish(mut pin: Zeroizing<String>, what: &str) -> Result<Zeroizing<String>, HsmError> {
    if pin.ends_with('\n') {
        pin.pop();
        if pin.ends_with('\r') {
            pin.pop();
        }
    }
    if pin.is_empty() {
        return Err(HsmError::PinSource {
            what: what.to_owned(),
            reason: "is empty".into(),
        });
    }
    Ok(pin)
}
