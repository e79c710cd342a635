//! The on-disk state: where tokens live, their files, and the sealing of keys under PINs.
//!
//! Layout: `<tokendir>/<serial>/token.json` (label, KDF parameters, the master key sealed under
//! the SO PIN and under the user PIN) and `<tokendir>/<serial>/objects/<name>.json` (one key
//! object each; a private key's scalar sealed under the master key). PIN keys come from
//! Argon2id (memory-hard), sealing is AES-256-GCM with the token serial (and object name) as
//! associated data, so a sealed blob cannot be moved to another token or object. Files are
//! written 0600 through a temporary file and a rename.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Environment variable naming a config file with a `tokendir = <path>` (or SoftHSM2's
/// `directories.tokendir = <path>`) line, as SOFTHSM2_CONF does for SoftHSM2.
pub(crate) const CONF_ENV: &str = "CA_SOFTTOKEN_CONF";
/// Environment variable naming the token directory directly.
pub(crate) const DIR_ENV: &str = "CA_SOFTTOKEN_DIR";

/// A 256-bit key: the token master key or a PIN-derived key.
pub(crate) type Key = Zeroizing<[u8; 32]>;

/// Argon2id cost parameters, stored per token so they can be raised later.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

/// OWASP's minimum for Argon2id (19 MiB, 2 passes): memory-hard yet a login stays well under 0.1 s.
pub(crate) const DEFAULT_KDF: KdfParams = KdfParams {
    m_kib: 19 * 1024,
    t: 2,
    p: 1,
};

/// The master key sealed under one PIN.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PinSeal {
    salt: String,
    nonce: String,
    sealed: String,
}

/// `token.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenFile {
    pub label: String,
    pub serial: String,
    pub kdf: KdfParams,
    pub so: PinSeal,
    pub user: Option<PinSeal>,
}

/// A secret sealed under the master key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sealed {
    nonce: String,
    sealed: String,
}

/// Why the store could not be used.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// Neither environment variable is set, or the config file has no `tokendir`.
    NoStateDir,
    /// A file could not be read or written.
    Io,
    /// A file is not what this token wrote.
    Corrupt,
}

impl From<std::io::Error> for StoreError {
    fn from(_: std::io::Error) -> Self {
        StoreError::Io
    }
}

/// The token directory from `CA_SOFTTOKEN_CONF` (its `tokendir = ...`) or `CA_SOFTTOKEN_DIR`.
pub(crate) fn state_dir() -> Result<PathBuf, StoreError> {
    if let Some(conf) = std::env::var_os(CONF_ENV) {
        let text = fs::read_to_string(conf)?;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                // `directories.tokendir` too, so a SoftHSM2 config file serves both modules.
                let key = key.trim();
                if (key == "tokendir" || key == "directories.tokendir") && !value.trim().is_empty()
                {
                    return Ok(PathBuf::from(value.trim()));
                }
            }
        }
        return Err(StoreError::NoStateDir);
    }
    std::env::var_os(DIR_ENV)
        .map(PathBuf::from)
        .ok_or(StoreError::NoStateDir)
}

/// Every token under `dir`, in creation order (serials start with the creation time).
pub(crate) fn list_tokens(dir: &Path) -> Result<Vec<(PathBuf, TokenFile)>, StoreError> {
    fs::create_dir_all(dir)?;
    let mut tokens = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let file = path.join("token.json");
        if !file.is_file() {
            continue;
        }
        let token: TokenFile =
            serde_json::from_slice(&fs::read(&file)?).map_err(|_| StoreError::Corrupt)?;
        tokens.push((path, token));
    }
    tokens.sort_by(|a, b| a.1.serial.cmp(&b.1.serial));
    Ok(tokens)
}

/// Write `bytes` to `path` atomically with mode 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Save `token.json` in `dir`.
pub(crate) fn save_token(dir: &Path, token: &TokenFile) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(token).map_err(|_| StoreError::Corrupt)?;
    write_atomic(&dir.join("token.json"), &bytes)
}

/// Create a new token directory with a fresh master key sealed under `so_pin`.
pub(crate) fn create_token(
    tokendir: &Path,
    label: &str,
    so_pin: &[u8],
) -> Result<(PathBuf, TokenFile, Key), StoreError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let serial = format!("{:08x}{:08x}", secs as u32, OsRng.next_u32());
    let dir = tokendir.join(&serial);
    fs::create_dir_all(dir.join("objects"))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    let master = random_key();
    let token = TokenFile {
        label: label.to_owned(),
        so: seal_master(&master, so_pin, DEFAULT_KDF, &serial)?,
        serial,
        kdf: DEFAULT_KDF,
        user: None,
    };
    save_token(&dir, &token)?;
    Ok((dir, token, master))
}

/// A random 256-bit key.
pub(crate) fn random_key() -> Key {
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(key.as_mut());
    key
}

fn pin_key(pin: &[u8], salt: &[u8], kdf: KdfParams) -> Result<Key, StoreError> {
    let params =
        argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32)).map_err(|_| StoreError::Corrupt)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pin, salt, key.as_mut())
        .map_err(|_| StoreError::Corrupt)?;
    Ok(key)
}

/// Seal the master key under a PIN (fresh salt and nonce).
pub(crate) fn seal_master(
    master: &Key,
    pin: &[u8],
    kdf: KdfParams,
    serial: &str,
) -> Result<PinSeal, StoreError> {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let key = pin_key(pin, &salt, kdf)?;
    let sealed = seal(&key, master.as_ref(), &pin_aad(serial))?;
    Ok(PinSeal {
        salt: hex::encode(salt),
        nonce: sealed.nonce,
        sealed: sealed.sealed,
    })
}

/// The master key if `pin` opens `seal`, `None` for a wrong PIN.
pub(crate) fn open_master(
    seal: &PinSeal,
    pin: &[u8],
    kdf: KdfParams,
    serial: &str,
) -> Result<Option<Key>, StoreError> {
    let salt = hex::decode(&seal.salt).map_err(|_| StoreError::Corrupt)?;
    let key = pin_key(pin, &salt, kdf)?;
    let sealed = Sealed {
        nonce: seal.nonce.clone(),
        sealed: seal.sealed.clone(),
    };
    let Some(plain) = open(&key, &sealed, &pin_aad(serial))? else {
        return Ok(None);
    };
    let master: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt)?;
    Ok(Some(Zeroizing::new(master)))
}

fn pin_aad(serial: &str) -> Vec<u8> {
    format!("ca-softtoken pin v1 {serial}").into_bytes()
}

/// AES-256-GCM seal with a random nonce.
pub(crate) fn seal(key: &Key, plain: &[u8], aad: &[u8]) -> Result<Sealed, StoreError> {
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| StoreError::Corrupt)?;
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| StoreError::Corrupt)?;
    Ok(Sealed {
        nonce: hex::encode(nonce),
        sealed: hex::encode(sealed),
    })
}

/// Open a sealed secret; `None` if the key or associated data is wrong.
pub(crate) fn open(
    key: &Key,
    sealed: &Sealed,
    aad: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| StoreError::Corrupt)?;
    let nonce: [u8; 12] = hex::decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(StoreError::Corrupt)?;
    let body = hex::decode(&sealed.sealed).map_err(|_| StoreError::Corrupt)?;
    Ok(cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: &body, aad })
        .ok()
        .map(Zeroizing::new))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn master_key_opens_only_with_its_pin_and_serial() {
        let master = random_key();
        let kdf = KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        };
        let seal = seal_master(&master, b"1234", kdf, "s1").unwrap();
        assert_eq!(
            *open_master(&seal, b"1234", kdf, "s1").unwrap().unwrap(),
            *master
        );
        assert!(open_master(&seal, b"1235", kdf, "s1").unwrap().is_none());
        assert!(open_master(&seal, b"1234", kdf, "s2").unwrap().is_none());
    }
}
