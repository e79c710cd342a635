//! The verifiable audit log: signed checkpoints over the hash chain, verification and export.
//!
//! The chain (`storage::AuditLog`) makes an edited row visible, unless the whole chain after it
//! is recomputed. Checkpoints close that gap: every N rows, every M minutes, after each operator
//! command and at shutdown, the audit key (ECDSA P-256, generated in the HSM by the ceremony)
//! signs "the log up to row `seq` has hash `h`". A recomputed chain no longer matches a signed
//! hash, deleted rows leave a checkpoint pointing past the end, and nobody without the HSM can
//! sign a new checkpoint. `serve` verifies the tail (last checkpoint to the end) before it starts.

use std::io::Write;
use std::time::Duration;

use rand::RngCore;
use signature::Verifier;
use spki::DecodePublicKey;

use crate::storage::{
    unix_now, AuditCheckpoint, AuditEntry, AuditKeyRecord, AuditLog, AuditRow, Storage,
    StorageError,
};

/// Why the audit log could not be verified, sealed or exported.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The HSM failed.
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// No audit key exists yet.
    #[error("no audit key: run `ca-appliance ceremony` (it creates one in the HSM)")]
    NoKey,
    /// The log is not intact; `seq` is the first bad sequence number.
    #[error("audit log broken at seq {seq}: {reason}")]
    Broken {
        /// The first bad row.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
    /// Writing the export failed.
    #[error("export: {0}")]
    Io(String),
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows checked.
    pub rows: usize,
    /// Checkpoints whose signature and hash were checked.
    pub checkpoints: usize,
    /// The newest row.
    pub last_seq: i64,
}

/// The bytes the audit key signs for a checkpoint.
fn checkpoint_message(seq: i64, hash: &[u8], at: i64) -> Vec<u8> {
    let mut m = b"ca-appliance audit checkpoint v1\0".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&(hash.len() as u64).to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&at.to_be_bytes());
    m
}

/// Creates the audit key in the HSM unless one exists; returns whether it created one.
pub async fn ensure_key(
    hsm: &hsm::Hsm,
    storage: &Storage,
    actor: &str,
) -> Result<bool, AuditError> {
    let log = storage.audit();
    if !log.keys().await?.is_empty() {
        return Ok(false);
    }
    let mut suffix = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let label = format!("audit-g1-{}", hex::encode(suffix));
    let key = hsm.generate_key_pair(&label, hsm::KeyKind::EcP256).await?;
    let public_key = hsm.public_key_der(&key).await?;
    let uri = key.to_string();
    log.insert_key(
        &uri,
        &public_key,
        &AuditEntry {
            actor: actor.to_owned(),
            action: "audit.key_create".into(),
            target: label,
            detail: serde_json::json!({ "key_uri": uri }),
        },
    )
    .await?;
    tracing::info!(key = %uri, "audit key created");
    Ok(true)
}

/// Signs checkpoints with the newest audit key.
#[derive(Clone)]
pub struct Sealer {
    hsm: hsm::Hsm,
    log: AuditLog,
    key: AuditKeyRecord,
    uri: hsm::KeyUri,
}

impl Sealer {
    /// The sealer of the newest audit key, checked against the HSM.
    pub async fn load(hsm: &hsm::Hsm, storage: &Storage) -> Result<Sealer, AuditError> {
        let log = storage.audit();
        let key = log.keys().await?.pop().ok_or(AuditError::NoKey)?;
        let uri: hsm::KeyUri = key.key_uri.parse().map_err(|_| AuditError::Broken {
            seq: 0,
            reason: format!("audit key {} has a malformed URI", key.id),
        })?;
        if hsm.public_key_der(&uri).await? != key.public_key {
            return Err(AuditError::Broken {
                seq: 0,
                reason: format!("audit key {} does not match the key in the HSM", key.id),
            });
        }
        Ok(Sealer {
            hsm: hsm.clone(),
            log,
            key,
            uri,
        })
    }

    /// Signs a checkpoint at the current tail if rows were added since the last one; returns
    /// its sequence number.
    pub async fn checkpoint(&self) -> Result<Option<i64>, AuditError> {
        let Some((seq, hash)) = self.log.tail().await? else {
            return Ok(None);
        };
        if self.log.last_checkpoint_seq().await? >= seq {
            return Ok(None);
        }
        let at = unix_now();
        let signature = self
            .hsm
            .sign(
                &self.uri,
                hsm::SignatureAlgorithm::EcdsaSha256,
                &checkpoint_message(seq, &hash, at),
            )
            .await?;
        self.log
            .insert_checkpoint(&AuditCheckpoint {
                seq,
                hash,
                at,
                key_id: self.key.id,
                signature,
            })
            .await?;
        tracing::debug!(seq, "audit checkpoint signed");
        Ok(Some(seq))
    }

    /// Signs checkpoints forever: every `every_rows` new rows (checked every few seconds) and
    /// at least every `every_secs` while rows arrive.
    pub async fn run(self, every_rows: i64, every_secs: i64) {
        let mut last_at = unix_now();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let due = match (self.log.tail().await, self.log.last_checkpoint_seq().await) {
                (Ok(Some((seq, _))), Ok(covered)) => {
                    seq > covered
                        && (seq - covered >= every_rows || unix_now() - last_at >= every_secs)
                }
                _ => false,
            };
            if due {
                match self.checkpoint().await {
                    Ok(_) => last_at = unix_now(),
                    Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
                }
            }
        }
    }
}

fn broken(seq: i64, reason: impl Into<String>) -> AuditError {
    AuditError::Broken {
        seq,
        reason: reason.into(),
    }
}

/// Verifies the log: the chain row by row, every checkpoint's signature (under an audit key
/// that matches the HSM's) and hash. `tail_only` starts at the newest checkpoint (`serve`).
pub async fn verify(
    hsm: &hsm::Hsm,
    storage: &Storage,
    tail_only: bool,
) -> Result<VerifyReport, AuditError> {
    let log = storage.audit();
    let keys = log.keys().await?;
    for key in &keys {
        let uri: hsm::KeyUri = key
            .key_uri
            .parse()
            .map_err(|_| broken(0, format!("audit key {} has a malformed URI", key.id)))?;
        if hsm.public_key_der(&uri).await? != key.public_key {
            return Err(broken(
                0,
                format!("audit key {} does not match the key in the HSM", key.id),
            ));
        }
    }
    let checkpoints = log.checkpoints().await?;
    if !keys.is_empty() && checkpoints.is_empty() && log.tail().await?.is_some() {
        let first_after_key = 1;
        return Err(broken(
            first_after_key,
            "an audit key exists but no checkpoint does (checkpoints deleted?)",
        ));
    }
    let start = match (tail_only, checkpoints.last()) {
        (true, Some(cp)) => cp.seq,
        _ => 1,
    };
    let rows = log.rows_since(start).await?;
    let mut bad: Option<(i64, String)> = None;
    let mut note = |seq: i64, reason: String| {
        if bad.as_ref().is_none_or(|(s, _)| seq < *s) {
            bad = Some((seq, reason));
        }
    };
    // The chain.
    let mut computed = std::collections::BTreeMap::new();
    let mut prev: Option<Vec<u8>> = (start == 1).then(|| vec![0u8; 32]);
    for (expected_seq, row) in (start..).zip(rows.iter()) {
        if row.seq != expected_seq {
            note(
                expected_seq,
                format!("row {expected_seq} is missing (next row is {})", row.seq),
            );
            break;
        }
        let link = prev.clone().unwrap_or_else(|| row.prev_hash.clone());
        if row.prev_hash != link {
            note(row.seq, "does not link to the previous row's hash".into());
            break;
        }
        let hash = row.expected_hash(&link);
        if row.hash != hash {
            note(row.seq, "content does not match its hash (edited)".into());
            break;
        }
        computed.insert(row.seq, hash.clone());
        prev = Some(hash);
    }
    let last_seq = rows.last().map_or(start - 1, |r: &AuditRow| r.seq);
    // The checkpoints.
    let mut checked = 0;
    let mut previous_cp = 0;
    for cp in checkpoints.iter().filter(|c| c.seq >= start) {
        let Some(key) = keys.iter().find(|k| k.id == cp.key_id) else {
            note(
                cp.seq,
                format!("checkpoint at {} names no audit key", cp.seq),
            );
            continue;
        };
        let valid = p256::ecdsa::VerifyingKey::from_public_key_der(&key.public_key)
            .ok()
            .zip(p256::ecdsa::Signature::from_der(&cp.signature).ok())
            .is_some_and(|(k, s)| {
                k.verify(&checkpoint_message(cp.seq, &cp.hash, cp.at), &s)
                    .is_ok()
            });
        if !valid {
            note(
                cp.seq,
                format!("checkpoint at {} has an invalid signature", cp.seq),
            );
        } else if cp.seq > last_seq {
            note(
                last_seq + 1,
                format!(
                    "rows {}..={} were deleted (a signed checkpoint covers row {})",
                    last_seq + 1,
                    cp.seq,
                    cp.seq
                ),
            );
        } else if let Some(hash) = computed.get(&cp.seq) {
            if *hash != cp.hash {
                let from = previous_cp.max(start - 1) + 1;
                note(
                    from,
                    format!(
                        "rows {from}..={} do not match the signed checkpoint at {} \
                         (chain recomputed)",
                        cp.seq, cp.seq
                    ),
                );
            }
        }
        checked += 1;
        previous_cp = cp.seq;
    }
    if let Some((seq, reason)) = bad {
        return Err(AuditError::Broken { seq, reason });
    }
    Ok(VerifyReport {
        rows: rows.len(),
        checkpoints: checked,
        last_seq,
    })
}

/// Writes rows with `seq >= since` as JSON lines, each checkpoint right after the row it covers,
/// with the audit public keys first, for an external archive.
pub async fn export(
    storage: &Storage,
    since: i64,
    out: &mut impl Write,
) -> Result<usize, AuditError> {
    let log = storage.audit();
    let io = |e: std::io::Error| AuditError::Io(e.to_string());
    for key in log.keys().await? {
        let line = serde_json::json!({
            "type": "audit_key",
            "id": key.id,
            "key_uri": key.key_uri,
            "public_key": hex::encode(&key.public_key),
        });
        writeln!(out, "{line}").map_err(io)?;
    }
    let checkpoints = log.checkpoints().await?;
    let rows = log.rows_since(since).await?;
    for row in &rows {
        let detail: serde_json::Value = serde_json::from_str(&row.detail)
            .unwrap_or(serde_json::Value::String(row.detail.clone()));
        let line = serde_json::json!({
            "type": "row",
            "seq": row.seq,
            "at": row.at,
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "detail": detail,
            "detail_text": row.detail,
            "prev_hash": hex::encode(&row.prev_hash),
            "hash": hex::encode(&row.hash),
        });
        writeln!(out, "{line}").map_err(io)?;
        if let Some(cp) = checkpoints.iter().find(|c| c.seq == row.seq) {
            let line = serde_json::json!({
                "type": "checkpoint",
                "seq": cp.seq,
                "hash": hex::encode(&cp.hash),
                "at": cp.at,
                "key_id": cp.key_id,
                "signature": hex::encode(&cp.signature),
            });
            writeln!(out, "{line}").map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    Ok(rows.len())
}
