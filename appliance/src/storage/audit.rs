//! The tamper-evident audit log: every privileged action, hash-chained row to row.
//!
//! Each row's hash is SHA-256 over the previous row's hash and the row's own fields (each
//! length-prefixed), so editing or deleting a row breaks every hash after it ([`AuditLog::verify`]).

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, AnyPool, Row};

use super::{unix_now, StorageError};

/// One audit event, before it is chained. Never carries PINs or personal numbers.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who: `operator:<cn>`, `channel:<name>`, `cli:<command>`.
    pub actor: String,
    /// What: `ceremony.create_ca`, `certificate.issue`, ...
    pub action: String,
    /// On what: a CA name, a serial.
    pub target: String,
    /// Extra facts as JSON (profile, issuer...).
    pub detail: serde_json::Value,
}

/// Appends to and verifies the audit log.
#[derive(Clone)]
pub struct AuditLog {
    pool: AnyPool,
}

impl AuditLog {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Appends one entry in its own transaction.
    pub async fn append(&self, entry: &AuditEntry) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        append_in(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Recomputes the chain; returns the number of rows, or the first broken sequence number.
    pub async fn verify(&self) -> Result<Result<u64, i64>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit_log ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut prev = vec![0u8; 32];
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let stored_prev: Vec<u8> = row.try_get("prev_hash")?;
            let hash: Vec<u8> = row.try_get("hash")?;
            let expect = chain_hash(
                &prev,
                row.try_get("at")?,
                row.try_get("actor")?,
                row.try_get("action")?,
                row.try_get("target")?,
                row.try_get("detail")?,
            );
            if stored_prev != prev || hash != expect {
                return Ok(Err(seq));
            }
            prev = hash;
        }
        Ok(Ok(rows.len() as u64))
    }
}

/// Appends `entry` inside the caller's transaction, so the action and its record commit together.
pub(super) async fn append_in(
    conn: &mut AnyConnection,
    entry: &AuditEntry,
) -> Result<(), StorageError> {
    ChainTail::open(conn).await?.append(conn, entry).await
}

/// The tail of the audit chain inside one transaction: locked and read once, then extended row
/// by row, so a group-committed batch of N rows costs N inserts, not N lock-and-read round trips.
/// The lock is held until the transaction ends, so no other writer can move the tail meanwhile.
pub(super) struct ChainTail {
    prev: Vec<u8>,
}

impl ChainTail {
    /// Takes the chain's lock in the caller's transaction and reads the newest hash.
    pub(super) async fn open(conn: &mut AnyConnection) -> Result<Self, StorageError> {
        super::dialect::lock_audit_chain(conn).await?;
        let prev: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
        Ok(Self {
            prev: prev.unwrap_or_else(|| vec![0u8; 32]),
        })
    }

    /// Appends `entry` after the tail, in the same transaction as [`ChainTail::open`].
    pub(super) async fn append(
        &mut self,
        conn: &mut AnyConnection,
        entry: &AuditEntry,
    ) -> Result<(), StorageError> {
        let at = unix_now();
        let detail = entry.detail.to_string();
        let hash = chain_hash(
            &self.prev,
            at,
            &entry.actor,
            &entry.action,
            &entry.target,
            &detail,
        );
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(at)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&detail)
        .bind(&self.prev)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
        self.prev = hash;
        Ok(())
    }
}

/// Audit rows chained after a tail, not yet written: their statements are appended to a
/// group-commit batch's SQLite text ([`AuditRows::sql`]) and bound after its other arguments.
pub(super) struct AuditRows {
    at: i64,
    rows: Vec<ChainedRow>,
}

/// One chained audit row's values: actor, action, target, detail, prev_hash, hash.
type ChainedRow = (String, String, String, String, Vec<u8>, Vec<u8>);

impl AuditRows {
    /// Columns per audit row.
    const WIDTH: usize = 7;

    /// The INSERT statements (each ending in `;`) for these rows, placeholders numbered from
    /// `$first`.
    pub(super) fn sql(&self, first: usize) -> String {
        let mut sql = String::new();
        let mut next = first;
        for slice in super::dialect::insert_slices(self.rows.len()) {
            sql.push_str(
                "INSERT INTO audit_log (at, actor, action, target, detail, prev_hash, hash) VALUES ",
            );
            sql.push_str(&super::dialect::value_rows_from(
                next,
                slice.len(),
                Self::WIDTH,
            ));
            sql.push(';');
            next += slice.len() * Self::WIDTH;
        }
        sql
    }

    /// Binds these rows' values, in the order of [`AuditRows::sql`].
    pub(super) fn bind<'q>(
        &'q self,
        q: super::dialect::AnyQuery<'q>,
    ) -> super::dialect::AnyQuery<'q> {
        self.bind_range(q, 0..self.rows.len())
    }

    /// Binds the values of `range` of these rows, in the order of their INSERT columns.
    fn bind_range<'q>(
        &'q self,
        mut q: super::dialect::AnyQuery<'q>,
        range: std::ops::Range<usize>,
    ) -> super::dialect::AnyQuery<'q> {
        for (actor, action, target, detail, prev, hash) in &self.rows[range] {
            q = q
                .bind(self.at)
                .bind(actor)
                .bind(action)
                .bind(target)
                .bind(detail)
                .bind(prev)
                .bind(hash);
        }
        q
    }
}

/// Begins an immediate (write-locked) transaction on a SQLite connection and reads the chain's
/// tail in the same round trip to the connection's thread. Only for a group-commit writer's
/// dedicated connection: the caller ends the transaction itself (COMMIT in its last statement
/// text, or [`sqlite_finish`], which rolls back on failure).
pub(super) async fn sqlite_begin_tail(conn: &mut AnyConnection) -> Result<ChainTail, StorageError> {
    // Every result of the text is read (`fetch_all`): with a row limit (`fetch_optional`) the
    // driver stops at the BEGIN's empty result and the SELECT's row is never read.
    let prev: Option<Vec<u8>> =
        sqlx::query_scalar("BEGIN IMMEDIATE; SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_all(&mut *conn)
            .await?
            .pop();
    Ok(ChainTail {
        prev: prev.unwrap_or_else(|| vec![0u8; 32]),
    })
}

/// Runs a batch's text (its INSERTs, and `COMMIT` unless more follows) in what
/// [`sqlite_begin_tail`] began; on failure rolls back (best effort: the group-commit writer
/// also drops the connection).
pub(super) async fn sqlite_finish(
    conn: &mut AnyConnection,
    last: super::dialect::AnyQuery<'_>,
) -> Result<(), StorageError> {
    if let Err(e) = last.execute(&mut *conn).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return Err(e.into());
    }
    Ok(())
}

impl ChainTail {
    /// Chains `entries` in order after the tail, without writing them (see [`AuditRows`]).
    pub(super) fn chain(&mut self, entries: &[&AuditEntry]) -> AuditRows {
        let at = unix_now();
        let mut rows = Vec::with_capacity(entries.len());
        for entry in entries {
            let detail = entry.detail.to_string();
            let hash = chain_hash(
                &self.prev,
                at,
                &entry.actor,
                &entry.action,
                &entry.target,
                &detail,
            );
            let prev = std::mem::replace(&mut self.prev, hash.clone());
            rows.push((
                entry.actor.clone(),
                entry.action.clone(),
                entry.target.clone(),
                detail,
                prev,
                hash,
            ));
        }
        AuditRows { at, rows }
    }

    /// Appends `entries` in order after the tail, a multi-row INSERT per slice (see
    /// [`super::dialect::insert_slices`]): one round trip to the database for up to 64 rows.
    pub(super) async fn append_all(
        &mut self,
        conn: &mut AnyConnection,
        entries: &[&AuditEntry],
    ) -> Result<(), StorageError> {
        let rows = self.chain(entries);
        for slice in super::dialect::insert_slices(rows.rows.len()) {
            let sql = format!(
                "INSERT INTO audit_log (at, actor, action, target, detail, prev_hash, hash) VALUES {}",
                super::dialect::value_rows(slice.len(), AuditRows::WIDTH)
            );
            rows.bind_range(sqlx::query(&sql), slice)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

fn chain_hash(
    prev: &[u8],
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(at.to_be_bytes());
    for field in [actor, action, target, detail] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().to_vec()
}

/// One stored audit row, as read back for verification and export.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Sequence number (1, 2, ...).
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Extra facts (JSON text).
    pub detail: String,
    /// The previous row's hash as stored.
    pub prev_hash: Vec<u8>,
    /// This row's hash as stored.
    pub hash: Vec<u8>,
}

impl AuditRow {
    /// Reads one `audit_log` row (all its columns) as the storage layer's queries return it.
    pub(crate) fn from_row(r: &sqlx::any::AnyRow) -> Result<AuditRow, sqlx::Error> {
        Ok(AuditRow {
            seq: r.try_get("seq")?,
            at: r.try_get("at")?,
            actor: r.try_get("actor")?,
            action: r.try_get("action")?,
            target: r.try_get("target")?,
            detail: r.try_get("detail")?,
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
        })
    }

    /// The hash this row should have after `prev`.
    pub fn expected_hash(&self, prev: &[u8]) -> Vec<u8> {
        chain_hash(
            prev,
            self.at,
            &self.actor,
            &self.action,
            &self.target,
            &self.detail,
        )
    }
}

/// A signed statement: the log up to `seq` has chain hash `hash`.
#[derive(Debug, Clone)]
pub struct AuditCheckpoint {
    /// Last row covered.
    pub seq: i64,
    /// That row's chain hash.
    pub hash: Vec<u8>,
    /// When it was signed, unix seconds.
    pub at: i64,
    /// The audit key that signed it.
    pub key_id: i64,
    /// ECDSA P-256 signature (DER).
    pub signature: Vec<u8>,
}

/// An audit signing key: its HSM URI and public key.
#[derive(Debug, Clone)]
pub struct AuditKeyRecord {
    /// Row id.
    pub id: i64,
    /// RFC 7512 URI of the key in the HSM.
    pub key_uri: String,
    /// SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
}

impl AuditLog {
    /// Rows with `seq >= since`, in order.
    pub async fn rows_since(&self, since: i64) -> Result<Vec<AuditRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit_log
             WHERE seq >= $1 ORDER BY seq",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(AuditRow::from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    /// The newest row's sequence number and hash (`None` for an empty log).
    pub async fn tail(&self) -> Result<Option<(i64, Vec<u8>)>, StorageError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("seq")?, r.try_get("hash")?)))
            .transpose()
            .map_err(|e: sqlx::Error| e.into())
    }

    /// Every checkpoint, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<AuditCheckpoint>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditCheckpoint {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    at: r.try_get("at")?,
                    key_id: r.try_get("key_id")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    /// The newest checkpoint's sequence number (0 when there is none).
    pub async fn last_checkpoint_seq(&self) -> Result<i64, StorageError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// Stores a signed checkpoint (an existing one for the same row is kept).
    pub async fn insert_checkpoint(&self, cp: &AuditCheckpoint) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(cp.seq)
        .bind(&cp.hash)
        .bind(cp.at)
        .bind(cp.key_id)
        .bind(&cp.signature)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every audit key, oldest first.
    pub async fn keys(&self) -> Result<Vec<AuditKeyRecord>, StorageError> {
        let rows = sqlx::query("SELECT id, key_uri, public_key FROM audit_keys ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditKeyRecord {
                    id: r.try_get("id")?,
                    key_uri: r.try_get("key_uri")?,
                    public_key: r.try_get("public_key")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    /// Stores a new audit key with its audit row; returns its id.
    pub async fn insert_key(
        &self,
        key_uri: &str,
        public_key: &[u8],
        audit: &AuditEntry,
    ) -> Result<i64, StorageError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_keys (key_uri, public_key, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(key_uri)
        .bind(public_key)
        .bind(unix_now())
        .fetch_one(&mut *tx)
        .await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(id)
    }
}
