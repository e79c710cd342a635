//! The few places where SQLite and PostgreSQL need different SQL or set-up; every other query
//! is one portable text (`$N` placeholders, which both engines accept) run through sqlx's `Any`.

use std::sync::Once;

use sqlx::AnyConnection;

use super::StorageError;

/// The database engine behind a [`super::Storage`], chosen by its URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (`sqlite://PATH`): one node.
    Sqlite,
    /// A PostgreSQL server (`postgres://` or `postgresql://`): one or several nodes.
    Postgres,
}

impl Backend {
    /// The engine named by `url`'s scheme; any other scheme is refused.
    pub fn of_url(url: &str) -> Result<Self, StorageError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            Err(StorageError::Open(format!(
                "unsupported database URL scheme `{scheme}:` (use sqlite://PATH or postgres://...)"
            )))
        }
    }
}

/// Installs sqlx's `Any` drivers (SQLite and PostgreSQL) once per process.
pub(super) fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// `url` with the SQLite URL parameter `param` (`mode=rwc`) added unless it sets that key.
pub(super) fn sqlite_url(url: &str, param: &str) -> String {
    let key = param.split('=').next().unwrap_or(param);
    match url.split_once('?') {
        Some((_, query)) if query.split('&').any(|p| p.split('=').next() == Some(key)) => {
            url.to_owned()
        }
        Some(_) => format!("{url}&{param}"),
        None => format!("{url}?{param}"),
    }
}

/// `count` numbered placeholders starting at `$first`, comma-separated (an `IN (...)` list).
pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` parenthesised groups of `width` numbered placeholders (`($1, $2), ($3, $4)`): the
/// VALUES list of a multi-row INSERT.
pub(super) fn value_rows(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(r * width + 1, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most rows per multi-row INSERT of a group-committed batch.
pub(super) const MAX_INSERT_ROWS: usize = 64;

/// Splits `len` rows into slices of power-of-two sizes up to [`MAX_INSERT_ROWS`], so a batch
/// costs a few statements (one round trip to the database each) and each statement text is
/// one of seven (prepared once per connection).
pub(super) fn insert_slices(len: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let left = len - at;
        if left == 0 {
            return None;
        }
        let n = MAX_INSERT_ROWS.min(1 << left.ilog2());
        at += n;
        Some(at - n..at)
    })
}

/// Which certificates of a CA a full-CRL chunk read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkScope {
    /// All of the CA's.
    Ca,
    /// Those of one profile (`$5`).
    Profile,
    /// Those of one profile (`$5`) stored with one CRL shard (`$6`).
    Shard,
}

/// One chunk of a full CRL's entries, packed into one text value (`serial,revoked_at,reason,
/// invalidity` joined by `;`), after the key `$3`, `$4` rows at most, narrowed by `scope`:
/// returns `count, last key, packed`. SQLite pages by rowid (the table's own order, no sort);
/// PostgreSQL by serial (the primary key), with `string_agg`.
pub(super) fn crl_chunk_sql(backend: Backend, scope: ChunkScope) -> String {
    let only = match scope {
        ChunkScope::Ca => "",
        ChunkScope::Profile => " AND profile = $5",
        ChunkScope::Shard => " AND profile = $5 AND crl_shard = $6",
    };
    match backend {
        Backend::Sqlite => format!(
            "SELECT count(*), max(rid), group_concat(serial || ',' || ifnull(revoked_at, '') || ',' || \
             ifnull(revocation_reason, '') || ',' || ifnull(invalidity_date, ''), ';') \
             FROM (SELECT rowid AS rid, serial, revoked_at, revocation_reason, invalidity_date \
                   FROM certificates WHERE ca_id = $1 AND status = $2 AND rowid > $3{only} \
                   ORDER BY rowid LIMIT $4)"
        ),
        Backend::Postgres => format!(
            "SELECT count(*), max(serial), string_agg(serial || ',' || \
             coalesce(revoked_at::text, '') || ',' || coalesce(revocation_reason::text, '') || ',' || \
             coalesce(invalidity_date::text, ''), ';') \
             FROM (SELECT serial, revoked_at, revocation_reason, invalidity_date \
                   FROM certificates WHERE ca_id = $1 AND status = $2 AND serial > $3{only} \
                   ORDER BY serial LIMIT $4) AS chunk"
        ),
    }
}

/// Serialises appends to the hash-chained audit log until the caller's transaction ends, so
/// two writers never read the same last hash and fork the chain. PostgreSQL: an advisory lock
/// (several nodes and connections). SQLite: a no-op write that takes the write lock before the
/// read, waiting under the busy timeout (a deferred transaction that reads first and then writes
/// fails at once with "database is locked" when another wrote meanwhile).
pub(super) async fn lock_audit_chain(conn: &mut AnyConnection) -> Result<(), StorageError> {
    let (sql, key) = if conn.backend_name() == "PostgreSQL" {
        (
            "SELECT 1 AS locked FROM pg_advisory_xact_lock($1)",
            AUDIT_CHAIN_LOCK,
        )
    } else {
        ("UPDATE audit_log SET seq = seq WHERE seq < $1", 0)
    };
    sqlx::query(sql).bind(key).execute(&mut *conn).await?;
    Ok(())
}

/// The PostgreSQL notification channel announcing committed status changes to every node.
pub(super) const STATUS_CHANNEL: &str = "ca_status";

/// On PostgreSQL, notifies [`STATUS_CHANNEL`] when the caller's transaction commits (nothing
/// if it rolls back); SQLite has no other node to tell.
pub(super) async fn notify_status_change(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("NOTIFY ca_status").execute(conn).await?;
    }
    Ok(())
}

/// The advisory lock key of the audit chain (any constant no other lock uses).
const AUDIT_CHAIN_LOCK: i64 = 0x4341_5F61_7564_6974; // "CA_audit"

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend_and_others_are_refused() {
        assert_eq!(Backend::of_url("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        let err = Backend::of_url("mysql://u@h/db")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("`mysql:`")));
    }

    #[test]
    fn sqlite_url_adds_the_mode_only_when_absent() {
        assert_eq!(
            sqlite_url("sqlite://a.db", "mode=rwc"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite://a.db?cache=shared", "mode=rwc"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite://a.db?mode=ro", "mode=rwc"),
            "sqlite://a.db?mode=ro"
        );
    }

    #[test]
    fn placeholders_are_numbered_from_first() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(value_rows(2, 2), "($1, $2), ($3, $4)");
    }

    #[test]
    fn insert_slices_cover_every_row_once_in_power_of_two_sizes() {
        for len in [0, 1, 2, 3, 7, 64, 65, 100, 200] {
            let slices: Vec<_> = insert_slices(len).collect();
            let mut next = 0;
            for s in &slices {
                assert_eq!(s.start, next, "{len}: {slices:?}");
                assert!(s.len().is_power_of_two() && s.len() <= MAX_INSERT_ROWS);
                next = s.end;
            }
            assert_eq!(next, len);
        }
        assert_eq!(
            insert_slices(100).map(|s| s.len()).collect::<Vec<_>>(),
            [64, 32, 4]
        );
    }
}
