//! Revocation and unhold: one transaction each, with its audit row, durable before it returns.

use sqlx::{AnyConnection, AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::{unix_now, StorageError};

/// RFC 5280 CRLReason code of certificateHold.
pub const HOLD_REASON: i64 = 6;
/// RFC 5280 CRLReason code of keyCompromise.
pub const KEY_COMPROMISE: i64 = 1;

/// A revocation to record.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// Serial (lowercase hex).
    pub serial: String,
    /// RFC 5280 reason code; 0 = unspecified, 6 = certificateHold.
    pub reason: i64,
    /// invalidityDate, unix seconds.
    pub invalidity_date: Option<i64>,
}

/// Why a status change was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// No certificate with this serial.
    #[error("no certificate with this serial")]
    NotFound,
    /// The certificate is already revoked (and this is not a keyCompromise upgrade).
    #[error("certificate is already revoked")]
    AlreadyRevoked,
    /// Unhold of a certificate that is not on hold.
    #[error("certificate is not on hold")]
    NotOnHold,
    /// A channel tried to lift a hold an operator placed.
    #[error("the hold was placed by an operator")]
    HeldByOperator,
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for RevocationError {
    fn from(e: sqlx::Error) -> Self {
        RevocationError::Storage(e.into())
    }
}

/// The certificate's status after a change.
#[derive(Debug, Clone)]
pub struct StatusChange {
    /// Serial (hex).
    pub serial: String,
    /// Issuing CA row id.
    pub ca_id: i64,
    /// `valid`, `revoked` or `hold`.
    pub status: String,
    /// revocationTime, unix seconds.
    pub revoked_at: Option<i64>,
    /// Reason code.
    pub revocation_reason: Option<i64>,
    /// invalidityDate.
    pub invalidity_date: Option<i64>,
    /// True when an existing revocation's reason was upgraded to keyCompromise.
    pub upgraded: bool,
    /// The certificate's new status version (`status_seq`): answers signed for older ones are stale.
    pub status_seq: i64,
}

/// Records revocations and unholds.
#[derive(Clone)]
pub struct RevocationStore {
    pool: AnyPool,
}

/// Takes the next `status_seq`; as the first statement of a transaction it also takes the write
/// lock (the counter row's lock on PostgreSQL, so sequence numbers commit in order). Other
/// nodes are told when the transaction commits (see [`super::StatusFeed`]).
async fn next_status_seq(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    let seq = sqlx::query_scalar(
        "UPDATE counters SET value = value + 1 WHERE name = 'status_seq' RETURNING value",
    )
    .fetch_one(&mut *conn)
    .await?;
    super::dialect::notify_status_change(conn).await?;
    Ok(seq)
}

impl RevocationStore {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Revokes (or holds, reason 6) a certificate. A revoked certificate can only be upgraded
    /// to keyCompromise; a held one can be revoked for good (its date stays the hold date).
    pub async fn revoke(
        &self,
        rev: &Revocation,
        actor: &str,
    ) -> Result<StatusChange, RevocationError> {
        let mut tx = self.pool.begin().await?;
        let seq = next_status_seq(&mut tx).await?;
        let row = sqlx::query(
            "SELECT ca_id, status, revoked_at, revocation_reason FROM certificates WHERE serial = $1",
        )
        .bind(&rev.serial)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(RevocationError::NotFound)?;
        let ca_id: i64 = row.try_get("ca_id")?;
        let status: String = row.try_get("status")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let old_reason: Option<i64> = row.try_get("revocation_reason")?;
        let now = unix_now();
        let (new_status, at, upgraded) = match status.as_str() {
            "valid" if rev.reason == HOLD_REASON => ("hold", now, false),
            "valid" => ("revoked", now, false),
            "hold" if rev.reason != HOLD_REASON => ("revoked", revoked_at.unwrap_or(now), false),
            "revoked" if rev.reason == KEY_COMPROMISE && old_reason != Some(KEY_COMPROMISE) => {
                ("revoked", revoked_at.unwrap_or(now), true)
            }
            _ => return Err(RevocationError::AlreadyRevoked),
        };
        let reason = (rev.reason != 0).then_some(rev.reason);
        sqlx::query(
            "UPDATE certificates SET status = $1, revoked_at = $2, revocation_reason = $3,
                 invalidity_date = COALESCE($4, invalidity_date), status_seq = $5, status_changed_at = $6,
                 hold_actor = $7
             WHERE serial = $8",
        )
        .bind(new_status)
        .bind(at)
        .bind(reason)
        .bind(rev.invalidity_date)
        .bind(seq)
        .bind(now)
        .bind((new_status == "hold").then_some(actor))
        .bind(&rev.serial)
        .execute(&mut *tx)
        .await?;
        let action = match (new_status, upgraded) {
            ("hold", _) => "certificate.hold",
            (_, true) => "certificate.revoke_upgrade",
            _ => "certificate.revoke",
        };
        append_in(
            &mut tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: action.into(),
                target: rev.serial.clone(),
                detail: serde_json::json!({
                    "reason": rev.reason,
                    "previous_status": status,
                    "invalidity_date": rev.invalidity_date,
                }),
            },
        )
        .await?;
        let invalidity_date: Option<i64> =
            sqlx::query_scalar("SELECT invalidity_date FROM certificates WHERE serial = $1")
                .bind(&rev.serial)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(StatusChange {
            serial: rev.serial.clone(),
            ca_id,
            status: new_status.into(),
            revoked_at: Some(at),
            revocation_reason: reason,
            invalidity_date,
            upgraded,
            status_seq: seq,
        })
    }

    /// Lifts a certificateHold: the certificate is valid again (removeFromCRL on the next delta).
    pub async fn unhold(&self, serial: &str, actor: &str) -> Result<StatusChange, RevocationError> {
        let mut tx = self.pool.begin().await?;
        let seq = next_status_seq(&mut tx).await?;
        let row =
            sqlx::query("SELECT ca_id, status, hold_actor FROM certificates WHERE serial = $1")
                .bind(serial)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(RevocationError::NotFound)?;
        let ca_id: i64 = row.try_get("ca_id")?;
        let status: String = row.try_get("status")?;
        let hold_actor: Option<String> = row.try_get("hold_actor")?;
        if status != "hold" {
            return Err(RevocationError::NotOnHold);
        }
        // A channel lifts only a hold a channel placed; an operator's hold is the operator's.
        if actor.starts_with("channel:")
            && !hold_actor
                .as_deref()
                .is_some_and(|a| a.starts_with("channel:"))
        {
            return Err(RevocationError::HeldByOperator);
        }
        sqlx::query(
            "UPDATE certificates SET status = 'valid', revoked_at = NULL, revocation_reason = NULL,
                 invalidity_date = NULL, status_seq = $1, status_changed_at = $2, hold_actor = NULL
             WHERE serial = $3",
        )
        .bind(seq)
        .bind(unix_now())
        .bind(serial)
        .execute(&mut *tx)
        .await?;
        append_in(
            &mut tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: "certificate.unhold".into(),
                target: serial.to_owned(),
                detail: serde_json::json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(StatusChange {
            serial: serial.to_owned(),
            ca_id,
            status: "valid".into(),
            revoked_at: None,
            revocation_reason: None,
            invalidity_date: None,
            upgraded: false,
            status_seq: seq,
        })
    }
}
