//! The `organisation_agents` table (migration 0013): an organisation's agents per channel,
//! sealed; every change commits with its audit row.

use sqlx::{AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::StorageError;

/// One stored agent.
#[derive(Debug, Clone)]
pub struct AgentRow {
    /// `agt_...`.
    pub id: String,
    /// The channel the organisation applied through.
    pub channel: String,
    /// Keyed hash of the organisation's USCC.
    pub subject_hash: String,
    /// The main agent (exactly one per organisation).
    pub is_main: bool,
    /// Keyed hash of the agent's ID number (duplicates are refused without opening).
    pub id_hash: String,
    /// Data key sealing `sealed`.
    pub key_id: u32,
    /// The sealed agent (name, ID, phone, e-mail as JSON).
    pub sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

/// One change of an organisation's agents, applied atomically.
#[derive(Debug, Clone)]
pub enum AgentChange {
    /// A new agent (the first of an organisation is main).
    Add(AgentRow),
    /// Removes an agent.
    Remove(String),
    /// Makes this agent main (the former main stays an agent).
    HandOver(String),
}

/// The agents table.
#[derive(Clone)]
pub struct AgentRows {
    pool: AnyPool,
}

fn row_of(r: &sqlx::any::AnyRow) -> Result<AgentRow, StorageError> {
    let key_id: i64 = r.try_get("key_id")?;
    let is_main: i64 = r.try_get("is_main")?;
    Ok(AgentRow {
        id: r.try_get("id")?,
        channel: r.try_get("channel")?,
        subject_hash: r.try_get("subject_hash")?,
        is_main: is_main != 0,
        id_hash: r.try_get("id_hash")?,
        key_id: u32::try_from(key_id)
            .map_err(|_| StorageError::Database(format!("key id {key_id} out of range")))?,
        sealed: r.try_get("sealed")?,
        created_at: r.try_get("created_at")?,
    })
}

impl AgentRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// An organisation's agents in a channel (under any of its hashes), main first.
    pub async fn list(
        &self,
        channel: &str,
        hashes: &[String],
    ) -> Result<Vec<AgentRow>, StorageError> {
        let mut out = Vec::new();
        for h in hashes {
            let rows = sqlx::query(
                "SELECT id, channel, subject_hash, is_main, id_hash, key_id, sealed, created_at \
                 FROM organisation_agents WHERE channel = $1 AND subject_hash = $2 \
                 ORDER BY is_main DESC, created_at, id",
            )
            .bind(channel)
            .bind(h)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                out.push(row_of(r)?);
            }
        }
        Ok(out)
    }

    /// Applies one change with its audit row.
    pub async fn apply(
        &self,
        channel: &str,
        subject_hash: &str,
        change: &AgentChange,
        audit: &AuditEntry,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        match change {
            AgentChange::Add(a) => {
                sqlx::query(
                    "INSERT INTO organisation_agents (id, channel, subject_hash, is_main, id_hash, \
                     key_id, sealed, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&a.id)
                .bind(&a.channel)
                .bind(&a.subject_hash)
                .bind(i64::from(a.is_main))
                .bind(&a.id_hash)
                .bind(i64::from(a.key_id))
                .bind(&a.sealed)
                .bind(a.created_at)
                .execute(&mut *tx)
                .await?;
            }
            AgentChange::Remove(id) => {
                sqlx::query(
                    "DELETE FROM organisation_agents WHERE id = $1 AND channel = $2 \
                     AND subject_hash = $3 AND is_main = 0",
                )
                .bind(id)
                .bind(channel)
                .bind(subject_hash)
                .execute(&mut *tx)
                .await?;
            }
            AgentChange::HandOver(id) => {
                sqlx::query(
                    "UPDATE organisation_agents SET is_main = CASE WHEN id = $1 THEN 1 ELSE 0 END \
                     WHERE channel = $2 AND subject_hash = $3",
                )
                .bind(id)
                .bind(channel)
                .bind(subject_hash)
                .execute(&mut *tx)
                .await?;
            }
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
