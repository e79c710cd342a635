//! [`DataKey`]: AES-256-GCM sealing of personal data at rest (applicant document, plugin state,
//! result with its evidence, idempotency key). Sealed form: key id (4 bytes, big-endian) || 12-byte
//! random nonce || ciphertext+tag; the associated data binds the verification id, the column
//! ([`Field`]) and the key id, so a sealed value cannot be moved to another row or column
//! unnoticed. [`KeySet`] holds every data key still in use, one of them active.

use std::collections::BTreeMap;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 16;

/// Why sealing or opening failed. Never carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The value was sealed by a data key this process does not hold (destroyed or not loaded).
    #[error("sealed verification data names data key {0}, which is not loaded")]
    UnknownKey(u32),
    /// No data key is active, so nothing can be sealed.
    #[error("no active personal-data key: run `ca-appliance data-key rotate --config FILE`")]
    NoActiveKey,
    /// The blob was not sealed by this key for this id (wrong key, tampering, truncation).
    #[error("sealed verification data cannot be opened (wrong data key or tampered row)")]
    Open,
    /// Encryption failed (should not happen).
    #[error("sealing failed")]
    Seal,
}

/// Which column a sealed value belongs to (part of its associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The applicant document.
    Applicant,
    /// `{state, outbox, challenges}`.
    State,
    /// The result with its evidence.
    Result,
    /// The caller's idempotency key.
    Reference,
    /// A channel-plugin delivery's request (`notify` outbox).
    NotificationRequest,
    /// A channel-plugin delivery's actions (`notify` outbox).
    NotificationActions,
    /// An application's uploaded material (an ID photo, a business licence).
    Material,
    /// An organisation's agent (name, ID, phone, e-mail).
    Agent,
}

impl Field {
    fn label(self) -> &'static [u8] {
        match self {
            Field::Applicant => b"applicant",
            Field::State => b"state",
            Field::Result => b"result",
            Field::Reference => b"reference",
            Field::NotificationRequest => b"notification-request",
            Field::NotificationActions => b"notification-actions",
            Field::Material => b"material",
            Field::Agent => b"agent",
        }
    }
}

/// One data key with its id; cloning shares the cipher.
#[derive(Clone)]
pub struct DataKey {
    id: u32,
    cipher: Aes256Gcm,
    mac: ring::hmac::Key,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({}, [redacted])", self.id)
    }
}

fn aad(id: &str, field: Field, key_id: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(id.len() + 16);
    a.extend_from_slice(id.as_bytes());
    a.push(0);
    a.extend_from_slice(field.label());
    a.push(0);
    a.extend_from_slice(&key_id.to_be_bytes());
    a
}

/// The id of the data key that sealed `sealed`.
pub fn key_id_of(sealed: &[u8]) -> Result<u32, SealError> {
    let head: [u8; KEY_ID_LEN] = sealed
        .get(..KEY_ID_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(SealError::Open)?;
    Ok(u32::from_be_bytes(head))
}

impl DataKey {
    /// Key `id` from 32 raw bytes.
    pub fn from_bytes(id: u32, key: &[u8; 32]) -> Self {
        // The reference MAC key is derived, so it rotates with the data key.
        let derived = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            b"ca-appliance verification reference mac v1",
        );
        Self {
            id,
            cipher: Aes256Gcm::new(key.into()),
            mac: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// A fresh random 32-byte key (zeroed on drop).
    pub fn generate() -> Zeroizing<[u8; 32]> {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(raw.as_mut());
        raw
    }

    /// This key's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Seals `plaintext` as `field` of verification `id`.
    pub fn seal(&self, id: &str, field: Field, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad(id, field, self.id),
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + ct.len());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value sealed by this key as `field` of verification `id`.
    pub fn open(
        &self,
        id: &str,
        field: Field,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN || key_id_of(sealed)? != self.id {
            return Err(SealError::Open);
        }
        let (nonce, ct) = sealed[KEY_ID_LEN..].split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Open)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: &aad(id, field, self.id),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }

    /// Keyed MAC of an idempotency key for `owner`: what the uniqueness look-up compares, so the
    /// reference itself is only stored sealed.
    pub fn reference_mac(&self, owner: &str, reference: &str) -> Vec<u8> {
        let mut msg = Vec::with_capacity(owner.len() + reference.len() + 1);
        msg.extend_from_slice(owner.as_bytes());
        msg.push(0);
        msg.extend_from_slice(reference.as_bytes());
        ring::hmac::sign(&self.mac, &msg).as_ref().to_vec()
    }
}

/// Every data key still in use, one of them active (the one new values are sealed with).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    active: Option<u32>,
    keys: BTreeMap<u32, Arc<DataKey>>,
}

impl KeySet {
    /// A set of `keys` with `active` the sealing one.
    pub fn new(keys: Vec<DataKey>, active: Option<u32>) -> Self {
        Self {
            active,
            keys: keys.into_iter().map(|k| (k.id, Arc::new(k))).collect(),
        }
    }

    /// The key new values are sealed with.
    pub fn active(&self) -> Result<&Arc<DataKey>, SealError> {
        self.active
            .and_then(|id| self.keys.get(&id))
            .ok_or(SealError::NoActiveKey)
    }

    /// The key with this id.
    pub fn get(&self, id: u32) -> Result<&Arc<DataKey>, SealError> {
        self.keys.get(&id).ok_or(SealError::UnknownKey(id))
    }

    /// Every key (for reference look-ups during a rotation).
    pub fn all(&self) -> impl Iterator<Item = &Arc<DataKey>> {
        self.keys.values()
    }

    /// Opens `sealed` with whichever key sealed it.
    pub fn open(
        &self,
        id: &str,
        field: Field,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.get(key_id_of(sealed)?)?.open(id, field, sealed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn key(id: u32) -> DataKey {
        DataKey::from_bytes(id, &DataKey::generate())
    }

    #[test]
    fn round_trip_and_binding_to_row_column_and_key() {
        let k = key(1);
        let sealed = k
            .seal("vrf_1", Field::Applicant, b"11010519491231002X")
            .unwrap();
        assert_eq!(key_id_of(&sealed).unwrap(), 1);
        assert!(!sealed.windows(6).any(|w| w == b"110105"));
        assert_eq!(
            &k.open("vrf_1", Field::Applicant, &sealed).unwrap()[..],
            b"11010519491231002X"
        );
        assert!(matches!(
            k.open("vrf_2", Field::Applicant, &sealed),
            Err(SealError::Open)
        ));
        assert!(matches!(
            k.open("vrf_1", Field::State, &sealed),
            Err(SealError::Open)
        ));
        // Same id, other bytes: refused.
        let other = key(1);
        assert!(matches!(
            other.open("vrf_1", Field::Applicant, &sealed),
            Err(SealError::Open)
        ));
        // Relabelling the key id in the blob does not help.
        let two = key(2);
        let mut relabelled = sealed.clone();
        relabelled[..4].copy_from_slice(&2u32.to_be_bytes());
        assert!(matches!(
            two.open("vrf_1", Field::Applicant, &relabelled),
            Err(SealError::Open)
        ));
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(matches!(
            k.open("vrf_1", Field::Applicant, &bad),
            Err(SealError::Open)
        ));
        assert!(matches!(
            k.open("vrf_1", Field::Applicant, &sealed[..10]),
            Err(SealError::Open)
        ));
    }

    #[test]
    fn key_set_opens_with_the_sealing_key_and_names_an_unknown_one() {
        let (k1, k2) = (key(1), key(2));
        let s1 = k1.seal("v", Field::Result, b"{\"score\":96.5}").unwrap();
        let set = KeySet::new(vec![k1.clone(), k2.clone()], Some(2));
        assert_eq!(set.active().unwrap().id(), 2);
        assert_eq!(
            &set.open("v", Field::Result, &s1).unwrap()[..],
            b"{\"score\":96.5}"
        );
        let only2 = KeySet::new(vec![k2], Some(2));
        assert!(matches!(
            only2.open("v", Field::Result, &s1),
            Err(SealError::UnknownKey(1))
        ));
        assert!(matches!(
            KeySet::default().active(),
            Err(SealError::NoActiveKey)
        ));
    }

    #[test]
    fn reference_mac_is_keyed_and_per_owner() {
        let (k1, k2) = (key(1), key(2));
        let m = k1.reference_mac("channel:a", "order-1");
        assert_eq!(m, k1.reference_mac("channel:a", "order-1"));
        assert_ne!(m, k1.reference_mac("channel:b", "order-1"));
        assert_ne!(m, k2.reference_mac("channel:a", "order-1"));
        assert!(!m.windows(5).any(|w| w == b"order"));
    }
}
