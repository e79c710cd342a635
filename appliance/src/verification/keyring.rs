//! [`Keyring`]: the data keys a running appliance holds, unwrapped by the HSM from the
//! `data_keys` table at start and again whenever a sealed value names a key it does not hold or a
//! write finds its active key superseded (a rotation ran meanwhile). The clear keys live only in
//! this process's memory.

use std::sync::{Arc, RwLock};

use hsm::{Hsm, KeyUri, WrappedSecret, WRAP_IV_LEN};

use super::seal::{DataKey, KeySet};
use crate::storage::{DataKeyRecord, DataKeyRows, StorageError};

/// Associated data of every wrapped data key: a wrapped value is only ever a data key.
pub const WRAP_AAD: &[u8] = b"ca-appliance verification data key v1";

/// Why the data keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The HSM refused to unwrap (wrong token, missing wrapping key, tampered row).
    #[error("data key {id}: {source}")]
    Hsm {
        /// The data key.
        id: u32,
        /// Why.
        source: hsm::HsmError,
    },
    /// Plugins are configured but no data key exists yet.
    #[error("no personal-data key yet: run `ca-appliance data-key rotate --config FILE` once")]
    NoActiveKey,
    /// A stored row is not a wrapped 32-byte key.
    #[error("data key {0} is malformed in the database")]
    Malformed(u32),
}

/// Unwraps one stored key with the HSM.
pub async fn unwrap_key(hsm: &Hsm, record: &DataKeyRecord) -> Result<DataKey, KeyringError> {
    let id = record.id;
    let uri: KeyUri = record
        .wrapping_key
        .parse()
        .map_err(|_| KeyringError::Malformed(id))?;
    let iv: [u8; WRAP_IV_LEN] = record
        .iv
        .as_slice()
        .try_into()
        .map_err(|_| KeyringError::Malformed(id))?;
    let wrapped = WrappedSecret {
        iv,
        ciphertext: record.wrapped.clone(),
    };
    let raw = hsm
        .unwrap_secret(&uri, &wrapped, WRAP_AAD)
        .await
        .map_err(|source| KeyringError::Hsm { id, source })?;
    let raw: &[u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| KeyringError::Malformed(id))?;
    Ok(DataKey::from_bytes(id, raw))
}

/// Unwraps every stored key.
pub async fn unwrap_all(hsm: &Hsm, rows: &DataKeyRows) -> Result<KeySet, KeyringError> {
    let records = rows.list().await?;
    let mut keys = Vec::with_capacity(records.len());
    let mut active = None;
    for record in &records {
        keys.push(unwrap_key(hsm, record).await?);
        if record.active {
            active = Some(record.id);
        }
    }
    Ok(KeySet::new(keys, active))
}

/// The data keys of a running appliance, reloadable.
pub struct Keyring {
    source: Option<(Hsm, DataKeyRows)>,
    current: RwLock<Arc<KeySet>>,
    reload: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

impl Keyring {
    /// Loads every stored key through the HSM.
    pub async fn load(hsm: Hsm, rows: DataKeyRows) -> Result<Self, KeyringError> {
        let set = unwrap_all(&hsm, &rows).await?;
        Ok(Self {
            source: Some((hsm, rows)),
            current: RwLock::new(Arc::new(set)),
            reload: tokio::sync::Mutex::new(()),
        })
    }

    /// A keyring that never reloads (tests, and appliances without plugins).
    pub fn fixed(set: KeySet) -> Self {
        Self {
            source: None,
            current: RwLock::new(Arc::new(set)),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys held now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the stored keys (after a rotation); returns the new set. Concurrent callers
    /// share one reload.
    pub async fn reload(&self, seen: &Arc<KeySet>) -> Result<Arc<KeySet>, KeyringError> {
        let Some((hsm, rows)) = &self.source else {
            return Ok(self.current());
        };
        let _one = self.reload.lock().await;
        let now = self.current();
        if !Arc::ptr_eq(&now, seen) {
            return Ok(now);
        }
        let set = Arc::new(unwrap_all(hsm, rows).await?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = set.clone();
        tracing::info!(
            active = ?set.active().ok().map(|k| k.id()),
            "personal-data keys reloaded"
        );
        Ok(set)
    }
}
