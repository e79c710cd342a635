//! `ca-appliance data-key rotate`: a new personal-data key, online (verifications and pending
//! channel-plugin deliveries are re-sealed). The new key is generated in
//! memory, wrapped by the HSM wrapping key (created on first use) and committed as the active key
//! in one transaction with its audit row; from that commit on the server can no longer write a
//! row under an older key (every write checks its key is the active one, and a refused writer
//! reloads the keys). Then every row under an older key is re-sealed (optimistically, by revision
//! and key id, so it never overwrites a concurrent step), and the retiring keys are deleted once
//! no row refers to them. The running server never needs a signal: it reloads the keys when a
//! write is refused or a value names a key it does not hold.

use hsm::Hsm;

use super::keyring::{Keyring, KeyringError, WRAP_AAD};
use super::seal::DataKey;
use super::store::SqlVerificationStore;
use crate::storage::{Storage, StorageError};

/// Rows re-sealed per look-up.
const BATCH: i64 = 200;
/// Rounds in a row without progress (rows busy, keys still referenced) before giving up.
const MAX_IDLE_ROUNDS: usize = 200;

/// What a rotation did.
#[derive(Debug)]
pub struct RotationReport {
    /// The new active key's id.
    pub new_key: u32,
    /// Rows re-sealed under it.
    pub resealed: usize,
    /// Keys deleted (no longer readable by anyone).
    pub destroyed: Vec<u32>,
    /// True if the HSM wrapping key was created by this run.
    pub created_wrapping_key: bool,
}

/// Why a rotation failed. Rows already re-sealed stay readable; running it again completes it.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The HSM refused (wrapping key missing and not creatable, token unavailable).
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored keys could not be unwrapped.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A row could not be re-sealed (unreadable under every stored key).
    #[error("verification {id} cannot be re-sealed: {reason}")]
    Reseal {
        /// The verification.
        id: String,
        /// Why.
        reason: String,
    },
    /// Rows kept appearing under old keys (should not happen: writes under them are refused).
    #[error("rows under retiring keys remain after {MAX_IDLE_ROUNDS} rounds without progress; run the rotation again")]
    Unfinished,
    /// Another rotation made a newer key active meanwhile; it finishes the work.
    #[error("another data-key rotation made a newer key active; it re-seals the rows")]
    Superseded,
}

/// Runs one rotation as `actor` (audited) with the wrapping key labelled `wrapping_label`.
pub async fn rotate(
    hsm: &Hsm,
    storage: &Storage,
    wrapping_label: &str,
    actor: &str,
) -> Result<RotationReport, RotationError> {
    let wrapping = hsm.key_uri(wrapping_label);
    let created_wrapping_key = if hsm.wrapping_key_exists(&wrapping).await? {
        false
    } else {
        hsm.generate_wrapping_key(wrapping_label).await?;
        true
    };
    let raw = DataKey::generate();
    let wrapped = hsm.wrap_secret(&wrapping, raw.as_ref(), WRAP_AAD).await?;
    drop(raw);
    let keys = storage.data_keys();
    let new_key = keys
        .add_active(
            &wrapping.to_string(),
            &wrapped.iv,
            &wrapped.ciphertext,
            actor,
        )
        .await?;
    tracing::info!(key = new_key, "new personal-data key active; re-sealing");

    let keyring = std::sync::Arc::new(Keyring::load(hsm.clone(), keys.clone()).await?);
    let store = SqlVerificationStore::new(storage.verifications(), keyring.clone());
    let rows = storage.verifications();
    let mut resealed = 0;
    let mut destroyed = Vec::new();
    let mut idle_rounds = 0;
    while idle_rounds < MAX_IDLE_ROUNDS {
        let ids = rows.sealed_by_other_keys(new_key, BATCH).await?;
        if ids.is_empty() {
            // Pending channel-plugin deliveries are sealed under the data key too.
            resealed += crate::notify::Outbox::reseal_all(&storage.notify(), &keyring.current())
                .await
                .map_err(|reason| RotationError::Reseal {
                    id: "notifications".into(),
                    reason,
                })?;
            let (gone, left) = keys.destroy_unused_retiring(actor).await?;
            destroyed.extend(gone);
            if left == 0 {
                return Ok(RotationReport {
                    new_key,
                    resealed,
                    destroyed,
                    created_wrapping_key,
                });
            }
            idle_rounds += 1;
            continue;
        }
        let mut progress = 0;
        for id in ids {
            match store.reseal(&id).await {
                Ok(true) => progress += 1,
                // Changed meanwhile (a step wrote it under the new key): looked at again.
                Ok(false) => {}
                Err(e) => {
                    return Err(RotationError::Reseal {
                        id,
                        reason: e.to_string(),
                    })
                }
            }
        }
        resealed += progress;
        if progress == 0 {
            if keys.active_id().await? != Some(new_key) {
                return Err(RotationError::Superseded);
            }
            idle_rounds += 1;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        } else {
            idle_rounds = 0;
        }
    }
    Err(RotationError::Unfinished)
}
