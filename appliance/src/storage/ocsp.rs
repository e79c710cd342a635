//! Delegated OCSP responder certificates and the pre-signed OCSP responses.

use sqlx::{AnyConnection, AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::dialect::{self, Backend};
use super::issuance_writer::IssuanceWriter;
use super::{unix_now, StorageError};

/// Largest number of rows written per transaction.
const CHUNK: usize = 1000;

/// A delegated OCSP responder certificate and its HSM key.
#[derive(Debug, Clone)]
pub struct ResponderRecord {
    /// The issuing CA row id it answers for.
    pub ca_id: i64,
    /// RFC 7512 URI of its key.
    pub key_uri: String,
    /// The responder certificate, DER.
    pub certificate: Vec<u8>,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

/// A pre-signed `OCSPResponse` for one certificate.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// Issuing CA row id.
    pub ca_id: i64,
    /// Serial (lowercase hex).
    pub serial: String,
    /// The complete `OCSPResponse` DER.
    pub der: Vec<u8>,
    /// thisUpdate, unix seconds.
    pub this_update: i64,
    /// nextUpdate, unix seconds.
    pub next_update: i64,
    /// The certificate's `status_seq` this response was signed for.
    pub status_seq: i64,
}

/// What the signer needs to know about a certificate.
#[derive(Debug, Clone)]
pub struct CertStatusRow {
    /// Issuing CA row id.
    pub ca_id: i64,
    /// Serial (lowercase hex).
    pub serial: String,
    /// `valid`, `revoked` or `hold`.
    pub status: String,
    /// revocationTime.
    pub revoked_at: Option<i64>,
    /// Reason code.
    pub revocation_reason: Option<i64>,
    /// notAfter.
    pub not_after: i64,
    /// Version of this status: the `status_seq` of the certificate's last status change.
    pub status_seq: i64,
}

fn status_row(r: &sqlx::any::AnyRow) -> Result<CertStatusRow, sqlx::Error> {
    Ok(CertStatusRow {
        status_seq: r.try_get("status_seq")?,
        ca_id: r.try_get("ca_id")?,
        serial: r.try_get("serial")?,
        status: r.try_get("status")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: r.try_get("revocation_reason")?,
        not_after: r.try_get("not_after")?,
    })
}

/// Reads and writes responder certificates and pre-signed responses.
#[derive(Clone)]
pub struct OcspStore {
    pool: AnyPool,
    backend: Backend,
    /// The issuance path's writer, which saves the pre-signed responses on SQLite.
    writer: IssuanceWriter,
}

/// Placeholders per saved response.
const SAVE_WIDTH: usize = 9;

/// The upsert of one pre-signed response, placeholders from `$first`: inserted only if signed for
/// its certificate's current status version, never over one signed for a newer version; the
/// `RETURNING` row (the response's position `at` in its statement text) says it was kept.
fn save_sql(first: usize, at: usize) -> String {
    let p = |i: usize| format!("${}", first + i);
    format!(
        "INSERT INTO ocsp_responses (ca_id, serial, der, this_update, next_update, status_seq)
         SELECT {}, {}, {}, {}, {}, {} WHERE EXISTS (
             SELECT 1 FROM certificates WHERE ca_id = {} AND serial = {} AND status_seq = {})
         ON CONFLICT (ca_id, serial) DO UPDATE SET der = excluded.der,
             this_update = excluded.this_update, next_update = excluded.next_update,
             status_seq = excluded.status_seq
         WHERE excluded.status_seq >= ocsp_responses.status_seq
         RETURNING {at} AS at",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(7),
        p(8)
    )
}

/// Binds one response's values in the order of [`save_sql`].
fn bind_save<'q>(q: dialect::AnyQuery<'q>, r: &'q StoredResponse) -> dialect::AnyQuery<'q> {
    q.bind(r.ca_id)
        .bind(&r.serial)
        .bind(&r.der)
        .bind(r.this_update)
        .bind(r.next_update)
        .bind(r.status_seq)
        .bind(r.ca_id)
        .bind(&r.serial)
        .bind(r.status_seq)
}

impl OcspStore {
    pub(super) fn new(pool: AnyPool, backend: Backend, writer: IssuanceWriter) -> Self {
        Self {
            pool,
            backend,
            writer,
        }
    }

    /// The responder certificate of `ca_id` that expires last, if any.
    pub async fn current_responder(
        &self,
        ca_id: i64,
    ) -> Result<Option<ResponderRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT ca_id, key_uri, certificate, not_before, not_after FROM ocsp_responders
             WHERE ca_id = $1 ORDER BY not_after DESC, id DESC LIMIT 1",
        )
        .bind(ca_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(ResponderRecord {
            ca_id: r.try_get("ca_id")?,
            key_uri: r.try_get("key_uri")?,
            certificate: r.try_get("certificate")?,
            not_before: r.try_get("not_before")?,
            not_after: r.try_get("not_after")?,
        }))
    }

    /// Stores a new responder certificate with its audit row.
    pub async fn insert_responder(
        &self,
        rec: &ResponderRecord,
        audit: &AuditEntry,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO ocsp_responders (ca_id, key_uri, certificate, not_before, not_after, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(rec.ca_id)
        .bind(&rec.key_uri)
        .bind(&rec.certificate)
        .bind(rec.not_before)
        .bind(rec.not_after)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every stored response of `ca_id` still valid at `now` and signed for its certificate's
    /// current status version (a stale one is never loaded: the pre-signer replaces it).
    pub async fn load_responses(
        &self,
        ca_id: i64,
        now: i64,
    ) -> Result<Vec<StoredResponse>, StorageError> {
        self.load_responses_since(ca_id, now, i64::MIN).await
    }

    /// Like [`OcspStore::load_responses`], only those signed (`this_update`) at or after `since`
    /// (what another node pre-signed since this node last looked).
    pub async fn load_responses_since(
        &self,
        ca_id: i64,
        now: i64,
        since: i64,
    ) -> Result<Vec<StoredResponse>, StorageError> {
        let rows = sqlx::query(
            "SELECT o.ca_id, o.serial, o.der, o.this_update, o.next_update, o.status_seq
             FROM ocsp_responses o
             JOIN certificates c ON c.ca_id = o.ca_id AND c.serial = o.serial
             WHERE o.ca_id = $1 AND o.this_update >= $3 AND o.next_update > $2
               AND o.status_seq = c.status_seq",
        )
        .bind(ca_id)
        .bind(now)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(stored_response)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    /// The stored response of one certificate signed for its status version `status_seq` and
    /// still valid at `now`, if a node stored one (what the node that changed the status signed).
    pub async fn response_for_version(
        &self,
        ca_id: i64,
        serial: &str,
        status_seq: i64,
        now: i64,
    ) -> Result<Option<StoredResponse>, StorageError> {
        let row = sqlx::query(
            "SELECT ca_id, serial, der, this_update, next_update, status_seq FROM ocsp_responses
             WHERE ca_id = $1 AND serial = $2 AND status_seq = $3 AND next_update > $4",
        )
        .bind(ca_id)
        .bind(serial)
        .bind(status_seq)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(stored_response)
            .transpose()
            .map_err(StorageError::from)
    }

    /// Stores pre-signed responses, up to 1000 per transaction, and returns which were kept.
    /// A response is kept only if it was signed for its certificate's current status version,
    /// and it never replaces one signed for a newer version: a response signed from a status
    /// that has since changed is dropped here, whatever order the signers finish in. On SQLite
    /// they go through the issuance path's writer and share its transactions (SQLite has one
    /// write lock: a connection of their own only waited for it); on PostgreSQL, whose writers
    /// do not exclude each other, a transaction of their own, so that a long refresh pass
    /// does not hold issuances up.
    pub async fn save_responses(
        &self,
        responses: Vec<StoredResponse>,
    ) -> Result<Vec<bool>, StorageError> {
        let mut kept = Vec::with_capacity(responses.len());
        let mut responses = responses.into_iter();
        loop {
            // Each response moved once (splitting the vector would move the rest per chunk).
            let chunk: Vec<StoredResponse> = responses.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            let saved = match self.backend {
                Backend::Sqlite => self.writer.save_responses(chunk).await?,
                Backend::Postgres => {
                    let mut tx = self.pool.begin().await?;
                    let saved = postgres_save(&mut tx, &chunk.iter().collect::<Vec<_>>()).await?;
                    tx.commit().await?;
                    saved
                }
            };
            kept.extend(saved);
        }
        Ok(kept)
    }

    /// Up to `limit` certificates of `ca_id` that need a (new) pre-signed response: none stored,
    /// the stored one signed for an older status version, or its nextUpdate before
    /// `refresh_before`. Expired, unrevoked certificates are skipped (they are answered live),
    /// and so are those without an answer for their status version issued or changed after
    /// `settled` (the node that made the change signs them).
    pub async fn due_for_signing(
        &self,
        ca_id: i64,
        refresh_before: i64,
        now: i64,
        settled: i64,
        limit: i64,
    ) -> Result<Vec<CertStatusRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT c.ca_id, c.serial, c.status, c.revoked_at, c.revocation_reason, c.not_after,
                    c.status_seq
             FROM certificates c
             LEFT JOIN ocsp_responses o ON o.ca_id = c.ca_id AND o.serial = c.serial
             WHERE c.ca_id = $1 AND (c.not_after > $2 OR c.status <> 'valid')
               AND (((o.serial IS NULL OR o.status_seq <> c.status_seq)
                     AND COALESCE(c.status_changed_at, c.issued_at) <= $5)
                    OR o.next_update < $3)
             LIMIT $4",
        )
        .bind(ca_id)
        .bind(now)
        .bind(refresh_before)
        .bind(limit)
        .bind(settled)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(status_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    /// The status of one certificate of `ca_id`.
    pub async fn status_of(
        &self,
        ca_id: i64,
        serial: &str,
    ) -> Result<Option<CertStatusRow>, StorageError> {
        let row = sqlx::query(
            "SELECT ca_id, serial, status, revoked_at, revocation_reason, not_after, status_seq
             FROM certificates WHERE ca_id = $1 AND serial = $2",
        )
        .bind(ca_id)
        .bind(serial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(status_row)
            .transpose()
            .map_err(StorageError::from)
    }

    /// The current status of those of `serials` that are certificates of `ca_id`, read now
    /// (the pre-signer signs from this, never from a snapshot taken when work was queued).
    pub async fn statuses_of(
        &self,
        ca_id: i64,
        serials: &[String],
    ) -> Result<Vec<CertStatusRow>, StorageError> {
        let mut out = Vec::with_capacity(serials.len());
        for chunk in serials.chunks(500) {
            let marks = super::dialect::placeholders(2, chunk.len());
            let sql = format!(
                "SELECT ca_id, serial, status, revoked_at, revocation_reason, not_after, status_seq
                 FROM certificates WHERE ca_id = $1 AND serial IN ({marks})"
            );
            let mut query = sqlx::query(&sql).bind(ca_id);
            for serial in chunk {
                query = query.bind(serial);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(status_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Number of stored responses (all CAs).
    pub async fn count_responses(&self) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM ocsp_responses")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Benchmarks only: inserts placeholder certificate rows (empty DER, no audit rows) of
    /// profile `bench` for `rows` (serial hex, CRL shard) under `ca_id`, `revoked` or valid,
    /// many rows per statement and many statements per transaction (millions of rows).
    #[doc(hidden)]
    pub async fn insert_synthetic_certificates(
        &self,
        ca_id: i64,
        rows: &[(String, Option<i64>)],
        revoked: bool,
    ) -> Result<(), StorageError> {
        /// Rows per INSERT statement (two placeholders each, far below both engines' limits).
        const PER_STATEMENT: usize = 500;
        let now = unix_now();
        // Every value but the serial and the shard is the same for all rows: integers the
        // bench computed, written into the text once (one statement text, prepared once).
        let (status, revoked_at, reason, invalidity) = if revoked {
            (
                "'revoked'",
                now.to_string(),
                "1".to_owned(),
                (now - 3600).to_string(),
            )
        } else {
            ("'valid'", "NULL".into(), "NULL".into(), "NULL".into())
        };
        let tail = format!(
            "{ca_id}, 'bench', NULL, 'CN=bench', {}, {}, x'', {now}, {status}, {revoked_at}, {reason}, {invalidity})",
            now - 60,
            now + 86_400 * 365,
        );
        let sql_for = |n: usize| {
            let values = (0..n)
                .map(|i| format!("(${}, ${}, {tail}", 2 * i + 1, 2 * i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "INSERT INTO certificates (serial, crl_shard, ca_id, profile, channel, subject_dn,
                     not_before, not_after, der, issued_at, status, revoked_at, revocation_reason,
                     invalidity_date) VALUES {values}"
            )
        };
        let full_sql = sql_for(PER_STATEMENT);
        for chunk in rows.chunks(100 * PER_STATEMENT) {
            let mut tx = self.pool.begin().await?;
            for part in chunk.chunks(PER_STATEMENT) {
                let partial_sql;
                let sql = if part.len() == PER_STATEMENT {
                    &full_sql
                } else {
                    partial_sql = sql_for(part.len());
                    &partial_sql
                };
                let mut q = sqlx::query(sql);
                for (serial, shard) in part {
                    q = q.bind(serial).bind(*shard);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

/// A stored response from a row of `ocsp_responses` columns.
fn stored_response(r: &sqlx::any::AnyRow) -> Result<StoredResponse, sqlx::Error> {
    Ok(StoredResponse {
        ca_id: r.try_get("ca_id")?,
        serial: r.try_get("serial")?,
        der: r.try_get("der")?,
        this_update: r.try_get("this_update")?,
        next_update: r.try_get("next_update")?,
        status_seq: r.try_get("status_seq")?,
    })
}

/// SQLite: the upserts of `responses` and the `COMMIT` of the transaction the caller began on
/// `conn`, a text per power-of-two slice (a round trip to the connection's thread per slice;
/// a few distinct texts, so their prepared statements stay cached); which were kept. On
/// failure the transaction is rolled back.
pub(super) async fn sqlite_save_and_commit(
    conn: &mut AnyConnection,
    responses: &[&StoredResponse],
) -> Result<Vec<bool>, StorageError> {
    let mut kept = vec![false; responses.len()];
    let mut slices = dialect::insert_slices(responses.len()).peekable();
    while let Some(slice) = slices.next() {
        let part = &responses[slice.clone()];
        let mut sql = String::new();
        for i in 0..part.len() {
            sql.push_str(&save_sql(1 + i * SAVE_WIDTH, i));
            sql.push(';');
        }
        if slices.peek().is_none() {
            sql.push_str("COMMIT;");
        }
        let mut q = sqlx::query(&sql);
        for r in part {
            q = bind_save(q, r);
        }
        let positions = q.fetch_all(&mut *conn).await.and_then(|rows| {
            rows.iter()
                .map(|row| row.try_get::<i64, _>("at"))
                .collect::<Result<Vec<_>, _>>()
        });
        match positions {
            Ok(positions) => {
                for at in positions {
                    if let Some(k) = usize::try_from(at)
                        .ok()
                        .and_then(|at| kept.get_mut(slice.start + at))
                    {
                        *k = true;
                    }
                }
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(e.into());
            }
        }
    }
    Ok(kept)
}

/// PostgreSQL: the upserts of `responses` in `tx`, a statement (a round trip) each; which
/// were kept (see [`OcspStore::save_responses`]).
pub(super) async fn postgres_save(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    responses: &[&StoredResponse],
) -> Result<Vec<bool>, StorageError> {
    let sql = save_sql(1, 0);
    let mut kept = Vec::with_capacity(responses.len());
    for r in responses {
        let row = bind_save(sqlx::query(&sql), r)
            .fetch_optional(&mut **tx)
            .await?;
        kept.push(row.is_some());
    }
    Ok(kept)
}
