//! CRL numbering, CRL history and the revoked-certificate streams CRLs are built from.

use futures_util::TryStreamExt;
use sqlx::{AnyPool, Row};

use super::dialect::{crl_chunk_sql, Backend, ChunkScope};
use super::StorageError;

/// A published CRL.
#[derive(Debug, Clone)]
pub struct CrlRecord {
    /// CRLNumber (shared sequence of full and delta CRLs).
    pub number: i64,
    /// Issuing CA row id.
    pub ca_id: i64,
    /// `full` or `delta`.
    pub kind: String,
    /// For a delta: the full CRL number it is based on.
    pub base_number: Option<i64>,
    /// The `status_seq` snapshot the CRL covers.
    pub status_seq: i64,
    /// Number of entries.
    pub entries: i64,
    /// thisUpdate, unix seconds.
    pub this_update: i64,
    /// nextUpdate, unix seconds.
    pub next_update: i64,
    /// Strong ETag (hex SHA-256 of the DER).
    pub etag: String,
}

/// A certificate as a CRL needs it.
#[derive(Debug, Clone)]
pub struct CrlRow {
    /// Serial (lowercase hex).
    pub serial: String,
    /// `valid` (only on deltas: unheld), `revoked` or `hold`.
    pub status: String,
    /// revocationDate.
    pub revoked_at: Option<i64>,
    /// Reason code.
    pub revocation_reason: Option<i64>,
    /// invalidityDate.
    pub invalidity_date: Option<i64>,
    /// When the status last changed.
    pub status_changed_at: Option<i64>,
}

fn crl_record(r: &sqlx::any::AnyRow) -> Result<CrlRecord, sqlx::Error> {
    Ok(CrlRecord {
        number: r.try_get("number")?,
        ca_id: r.try_get("ca_id")?,
        kind: r.try_get("kind")?,
        base_number: r.try_get("base_number")?,
        status_seq: r.try_get("status_seq")?,
        entries: r.try_get("entries")?,
        this_update: r.try_get("this_update")?,
        next_update: r.try_get("next_update")?,
        etag: r.try_get("etag")?,
    })
}

/// CRL bookkeeping.
#[derive(Clone)]
pub struct CrlStore {
    pool: AnyPool,
    backend: Backend,
}

impl CrlStore {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Self {
        Self { pool, backend }
    }

    /// Revoked CA generations signed by CA row `parent_id` (entries of the parent's CRL):
    /// (certificate DER, revoked at, reason).
    pub async fn revoked_children(
        &self,
        parent_id: i64,
    ) -> Result<Vec<(Vec<u8>, i64, Option<i64>)>, StorageError> {
        super::CaStore::new(self.pool.clone())
            .revoked_children(parent_id)
            .await
    }

    /// Allocates the next CRL number (durably, so it only grows across restarts).
    pub async fn next_crl_number(&self) -> Result<i64, StorageError> {
        Ok(sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = 'crl_number' RETURNING value",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records a published CRL.
    pub async fn record(&self, rec: &CrlRecord) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO crls (number, ca_id, kind, base_number, status_seq, entries, this_update, next_update, etag)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(rec.number)
        .bind(rec.ca_id)
        .bind(&rec.kind)
        .bind(rec.base_number)
        .bind(rec.status_seq)
        .bind(rec.entries)
        .bind(rec.this_update)
        .bind(rec.next_update)
        .bind(&rec.etag)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest CRL of `kind` for `ca_id`.
    pub async fn latest(&self, ca_id: i64, kind: &str) -> Result<Option<CrlRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT number, ca_id, kind, base_number, status_seq, entries, this_update, next_update, etag
             FROM crls WHERE ca_id = $1 AND kind = $2 ORDER BY number DESC LIMIT 1",
        )
        .bind(ca_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(crl_record)
            .transpose()
            .map_err(StorageError::from)
    }

    /// The oldest CRL of `kind` for `ca_id` whose nextUpdate is after `now`.
    pub async fn oldest_valid(
        &self,
        ca_id: i64,
        kind: &str,
        now: i64,
    ) -> Result<Option<CrlRecord>, StorageError> {
        let number: Option<i64> = sqlx::query_scalar(
            "SELECT number FROM crls WHERE ca_id = $1 AND kind = $2 AND next_update > $3
             ORDER BY number ASC LIMIT 1",
        )
        .bind(ca_id)
        .bind(kind)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        match number {
            None => Ok(None),
            Some(n) => self.by_number(n).await,
        }
    }

    /// The CRL numbered `number`.
    pub async fn by_number(&self, number: i64) -> Result<Option<CrlRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT number, ca_id, kind, base_number, status_seq, entries, this_update, next_update, etag
             FROM crls WHERE number = $1",
        )
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(crl_record)
            .transpose()
            .map_err(StorageError::from)
    }

    /// The current `status_seq` counter.
    pub async fn status_seq(&self) -> Result<i64, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'status_seq'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Streams the certificates of `ca_id` changed after `since_seq` (all revoked and held
    /// ones when `since_seq` is `None`), only those of `profile` when given, into `visit`, in
    /// one read transaction; returns the `status_seq` snapshot they are consistent with.
    /// Memory stays bounded at any count.
    pub async fn stream_entries<E, F>(
        &self,
        ca_id: i64,
        since_seq: Option<i64>,
        profile: Option<&str>,
        mut visit: F,
    ) -> Result<i64, E>
    where
        E: From<StorageError>,
        F: FnMut(CrlRow) -> Result<(), E>,
    {
        let mut tx = self.pool.begin().await.map_err(StorageError::from)?;
        let seq: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'status_seq'")
            .fetch_one(&mut *tx)
            .await
            .map_err(StorageError::from)?;
        if since_seq.is_none() {
            for status in ["revoked", "hold"] {
                let scope = match profile {
                    Some(p) => Scope::Profile(p),
                    None => Scope::Ca,
                };
                stream_full_chunks(&mut tx, self.backend, ca_id, status, scope, &mut visit).await?;
            }
            tx.commit().await.map_err(StorageError::from)?;
            return Ok(seq);
        }
        let cols =
            "serial, status, revoked_at, revocation_reason, invalidity_date, status_changed_at";
        let only_profile = if profile.is_some() {
            " AND profile = $4"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {cols} FROM certificates WHERE ca_id = $1 AND status_seq > $2 AND status_seq <= $3{only_profile}"
        );
        let since = since_seq.unwrap_or_default();
        let mut q = sqlx::query(&sql).bind(ca_id).bind(since).bind(seq);
        if let Some(profile) = profile {
            q = q.bind(profile);
        }
        let mut rows = q.fetch(&mut *tx);
        let get = |e: sqlx::Error| E::from(StorageError::from(e));
        while let Some(r) = rows.try_next().await.map_err(get)? {
            // By position: a by-name lookup per column per row shows in a million-row profile.
            let row = CrlRow {
                serial: r.try_get(0).map_err(get)?,
                status: r.try_get(1).map_err(get)?,
                revoked_at: r.try_get(2).map_err(get)?,
                revocation_reason: r.try_get(3).map_err(get)?,
                invalidity_date: r.try_get(4).map_err(get)?,
                status_changed_at: r.try_get(5).map_err(get)?,
            };
            visit(row)?;
        }
        drop(rows);
        tx.commit().await.map_err(StorageError::from)?;
        Ok(seq)
    }

    /// Streams the revoked and held certificates of `profile` under `ca_id` stored with CRL
    /// shard `shard` into `visit` (through the `(ca_id, profile, crl_shard, status)` index: a
    /// shard's cost is its own size, not the profile's), in one read transaction; returns the
    /// `status_seq` snapshot they are consistent with.
    pub async fn stream_shard<E, F>(
        &self,
        ca_id: i64,
        profile: &str,
        shard: i64,
        mut visit: F,
    ) -> Result<i64, E>
    where
        E: From<StorageError>,
        F: FnMut(CrlRow) -> Result<(), E>,
    {
        let mut tx = self.pool.begin().await.map_err(StorageError::from)?;
        let seq: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'status_seq'")
            .fetch_one(&mut *tx)
            .await
            .map_err(StorageError::from)?;
        for status in ["revoked", "hold"] {
            let scope = Scope::Shard(profile, shard);
            stream_full_chunks(&mut tx, self.backend, ca_id, status, scope, &mut visit).await?;
        }
        tx.commit().await.map_err(StorageError::from)?;
        Ok(seq)
    }

    /// Stores the CRL shard of every certificate of `profile` that has none (rows older than
    /// the `crl_shard` column), as `shard_of` computes it from the serial (hex); returns how
    /// many rows it set. Idempotent; done at start before shard CRLs are published.
    pub async fn backfill_crl_shards(
        &self,
        profile: &str,
        shard_of: impl Fn(&str) -> Option<i64>,
    ) -> Result<u64, StorageError> {
        const BATCH: i64 = 10_000;
        let mut set = 0u64;
        // Per CA, so the lookup goes through the (ca_id, profile, crl_shard, status) index and
        // costs nothing at each start once every row has its shard.
        let cas: Vec<i64> = sqlx::query_scalar("SELECT id FROM certificate_authorities")
            .fetch_all(&self.pool)
            .await?;
        for ca_id in cas {
            set += self.backfill_ca(ca_id, profile, &shard_of, BATCH).await?;
        }
        Ok(set)
    }

    /// [`Self::backfill_crl_shards`] for the certificates of one CA, `batch` rows per transaction.
    async fn backfill_ca(
        &self,
        ca_id: i64,
        profile: &str,
        shard_of: &impl Fn(&str) -> Option<i64>,
        batch: i64,
    ) -> Result<u64, StorageError> {
        let mut after = String::new();
        let mut set = 0u64;
        loop {
            let serials: Vec<String> = sqlx::query_scalar(
                "SELECT serial FROM certificates WHERE ca_id = $1 AND profile = $2
                 AND crl_shard IS NULL AND serial > $3 ORDER BY serial LIMIT $4",
            )
            .bind(ca_id)
            .bind(profile)
            .bind(&after)
            .bind(batch)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = serials.last() else {
                return Ok(set);
            };
            after = last.clone();
            let mut tx = self.pool.begin().await?;
            for serial in &serials {
                if let Some(shard) = shard_of(serial) {
                    sqlx::query("UPDATE certificates SET crl_shard = $1 WHERE serial = $2")
                        .bind(shard)
                        .bind(serial)
                        .execute(&mut *tx)
                        .await?;
                    set += 1;
                }
            }
            tx.commit().await?;
            if (serials.len() as i64) < batch {
                return Ok(set);
            }
        }
    }
}

/// Rows per chunk of a full-CRL read (about 60 bytes each once packed).
const FULL_CHUNK: i64 = 16_384;

/// Which certificates a full-CRL read covers (the bound values of a [`ChunkScope`]).
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// All of the CA's.
    Ca,
    /// One profile's.
    Profile(&'a str),
    /// One profile's stored with one CRL shard.
    Shard(&'a str, i64),
}

/// Where the next chunk of a full-CRL read starts (see [`crl_chunk_sql`]).
enum ChunkKey {
    /// SQLite: after this rowid.
    Rowid(i64),
    /// PostgreSQL: after this serial.
    Serial(String),
}

/// Reads the `status` certificates of `ca_id` (of `profile` when given) in table order, in
/// chunks packed by the database into one text value each (`serial,revoked_at,reason,invalidity`
/// joined by `;`): one row per chunk crosses from the database instead of one per
/// certificate, which dominated a million-entry CRL (thread hand-offs and value copies).
async fn stream_full_chunks<E, F>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    ca_id: i64,
    status: &str,
    scope: Scope<'_>,
    visit: &mut F,
) -> Result<(), E>
where
    E: From<StorageError>,
    F: FnMut(CrlRow) -> Result<(), E>,
{
    let sql = crl_chunk_sql(
        backend,
        match scope {
            Scope::Ca => ChunkScope::Ca,
            Scope::Profile(_) => ChunkScope::Profile,
            Scope::Shard(..) => ChunkScope::Shard,
        },
    );
    let bad = |what: &str| E::from(StorageError::Database(format!("CRL row chunk: {what}")));
    let mut after = match backend {
        Backend::Sqlite => ChunkKey::Rowid(0),
        Backend::Postgres => ChunkKey::Serial(String::new()),
    };
    loop {
        let q = sqlx::query(&sql).bind(ca_id).bind(status);
        let mut q = match &after {
            ChunkKey::Rowid(rowid) => q.bind(*rowid),
            ChunkKey::Serial(serial) => q.bind(serial.clone()),
        }
        .bind(FULL_CHUNK);
        match scope {
            Scope::Ca => {}
            Scope::Profile(p) => q = q.bind(p),
            Scope::Shard(p, shard) => q = q.bind(p).bind(shard),
        }
        let row = q
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| E::from(StorageError::from(e)))?;
        let count: i64 = row.try_get(0).map_err(|e| E::from(StorageError::from(e)))?;
        if count == 0 {
            return Ok(());
        }
        after = match after {
            ChunkKey::Rowid(_) => {
                ChunkKey::Rowid(row.try_get(1).map_err(|e| E::from(StorageError::from(e)))?)
            }
            ChunkKey::Serial(_) => {
                ChunkKey::Serial(row.try_get(1).map_err(|e| E::from(StorageError::from(e)))?)
            }
        };
        let packed: String = row.try_get(2).map_err(|e| E::from(StorageError::from(e)))?;
        let int = |v: &str| -> Result<Option<i64>, E> {
            if v.is_empty() {
                Ok(None)
            } else {
                v.parse().map(Some).map_err(|_| bad("integer"))
            }
        };
        for rec in packed.split(';') {
            let mut f = rec.split(',');
            let (Some(serial), Some(at), Some(reason), Some(inv), None) =
                (f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                return Err(bad("field count"));
            };
            visit(CrlRow {
                serial: serial.to_owned(),
                status: status.to_owned(),
                revoked_at: int(at)?,
                revocation_reason: int(reason)?,
                invalidity_date: int(inv)?,
                status_changed_at: None,
            })?;
        }
        if count < FULL_CHUNK {
            return Ok(());
        }
    }
}
