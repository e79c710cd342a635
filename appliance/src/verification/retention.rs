//! Retention: the applicant data and materials of finished verifications (applicant document,
//! plugin state with its outbox and challenges, the caller's reference) are purged
//! `[verification] retention_days` after they finished; their result and vendor evidence stay,
//! sealed, as the issuance record the Electronic Signature Law asks to keep (5 years after the
//! certificate expires; verifications are not linked to certificates yet, so evidence is kept
//! without an end). Open verifications are never purged. Each purge is one audited transaction.

use std::sync::Arc;
use std::time::Duration;

use super::store::SqlVerificationStore;
use crate::storage::{unix_now, StorageError};

/// Who the audit log names for a purge.
pub const PURGE_ACTOR: &str = "system:retention";

/// Purges what finished more than `retention_days` ago; returns the ids purged.
pub async fn purge_once(
    store: &SqlVerificationStore,
    retention_days: u32,
) -> Result<Vec<String>, StorageError> {
    let cutoff = unix_now() - i64::from(retention_days) * 86_400;
    let ids = store
        .purge_finished(
            cutoff,
            PURGE_ACTOR,
            serde_json::json!({
                "retention_days": retention_days,
                "finished_before": cutoff,
                "kept": "result and evidence",
            }),
        )
        .await?;
    if !ids.is_empty() {
        tracing::info!(
            purged = ids.len(),
            retention_days,
            "purged applicant data of finished verifications"
        );
    }
    Ok(ids)
}

/// Runs [`purge_once`] now and then every `every`.
pub fn spawn(
    store: Arc<SqlVerificationStore>,
    retention_days: u32,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = purge_once(&store, retention_days).await {
                tracing::warn!(error = %e, "retention purge failed; retried next period");
            }
        }
    })
}
