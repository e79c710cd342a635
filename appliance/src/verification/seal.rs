//! [`DataKey`]: AES-256-GCM sealing of personal data at rest (the applicant document and the
//! plugin's state). Sealed form: 12-byte random nonce || ciphertext+tag; the verification id is
//! the associated data, so a sealed blob cannot be moved to another row unnoticed.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::secrets::{read_secret, SecretError};
use crate::config::SecretSourceConfig;

const NONCE_LEN: usize = 12;

/// Why sealing or opening failed. Never carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The key is not 64 hex characters.
    #[error("the verification data key must be 64 hex characters (32 bytes)")]
    BadKey,
    /// The blob was not sealed by this key for this id (wrong key, tampering, truncation).
    #[error("sealed verification data cannot be opened (wrong data key or tampered row)")]
    Open,
    /// Encryption failed (should not happen).
    #[error("sealing failed")]
    Seal,
}

/// The data key; cloning shares the cipher.
#[derive(Clone)]
pub struct DataKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

impl DataKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// A key from 64 hex characters.
    pub fn from_hex(hex_key: &str) -> Result<Self, SealError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_key.trim(), raw.as_mut()).map_err(|_| SealError::BadKey)?;
        Ok(Self::from_bytes(&raw))
    }

    /// Reads the key from its configured source (a 0600 file or an environment variable).
    pub fn load(source: &SecretSourceConfig) -> Result<Self, SealError> {
        let text = read_secret(source, "[verification] data_key")?;
        Self::from_hex(&text)
    }

    /// A fresh random key as hex (what `init --demo` writes).
    pub fn generate_hex() -> Zeroizing<String> {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(raw.as_mut());
        Zeroizing::new(hex::encode(raw.as_ref()))
    }

    /// Seals `plaintext` bound to `id`.
    pub fn seal(&self, id: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a blob sealed for `id`.
    pub fn open(&self, id: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(SealError::Open);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Open)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: id.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = DataKey::from_hex(&DataKey::generate_hex()).unwrap();
        let sealed = key.seal("vrf_1", b"11010519491231002X").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"110105"));
        assert_eq!(
            &key.open("vrf_1", &sealed).unwrap()[..],
            b"11010519491231002X"
        );
        assert!(matches!(key.open("vrf_2", &sealed), Err(SealError::Open)));
        let other = DataKey::from_hex(&DataKey::generate_hex()).unwrap();
        assert!(matches!(other.open("vrf_1", &sealed), Err(SealError::Open)));
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(matches!(key.open("vrf_1", &bad), Err(SealError::Open)));
        assert!(matches!(
            key.open("vrf_1", &sealed[..10]),
            Err(SealError::Open)
        ));
    }

    #[test]
    fn bad_hex_key_is_refused() {
        assert!(matches!(DataKey::from_hex("abc"), Err(SealError::BadKey)));
        assert!(matches!(
            DataKey::from_hex(&"zz".repeat(32)),
            Err(SealError::BadKey)
        ));
    }
}
