//! The schema is written once, as SQLite migrations (appliance/migrations/); PostgreSQL runs the
//! same migrations with their types mapped (`storage::dialect`). Both engines must end with the
//! same migration versions, tables, columns with mapped types, nullability, primary keys, unique
//! constraints and named indexes.

use std::collections::BTreeSet;
use std::process::Command;

use ca_appliance::storage::Storage;
use system_tests::postgres::PgDatabase;
use system_tests::workspace_root;

fn sqlite(db: &std::path::Path, sql: &str) -> Vec<Vec<String>> {
    let out = Command::new("sqlite3")
        .args(["-readonly", "-separator", "|"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 runs (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rows(&String::from_utf8_lossy(&out.stdout))
}

fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

/// SQLite's declared type as PostgreSQL's `data_type` (the mapping the PostgreSQL files use).
fn mapped(sqlite_type: &str) -> String {
    match sqlite_type.to_ascii_uppercase().as_str() {
        "INTEGER" | "BIGINT" => "bigint",
        "TEXT" => "text",
        "BLOB" => "bytea",
        other => panic!("unmapped SQLite column type {other}"),
    }
    .to_owned()
}

/// (table, column, type, not null, part of the primary key) of every application table.
type Columns = BTreeSet<(String, String, String, bool, bool)>;
/// (table, index name or "" for a constraint's, columns, unique, partial).
type Indexes = BTreeSet<(String, String, String, bool, bool)>;

fn sqlite_schema(db: &std::path::Path) -> (Columns, Indexes) {
    let columns = sqlite(
        db,
        "SELECT m.name, p.name, p.type, p.\"notnull\", p.pk FROM sqlite_master m, \
         pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
         AND m.name <> '_sqlx_migrations'",
    )
    .into_iter()
    .map(|r| {
        let pk = r[4] != "0";
        (
            r[0].clone(),
            r[1].clone(),
            mapped(&r[2]),
            r[3] == "1" || pk,
            pk,
        )
    })
    .collect();
    let indexes = sqlite(
        db,
        "SELECT m.name, il.name, il.origin, il.\"unique\", il.partial, \
         (SELECT group_concat(name, ',') FROM (SELECT ii.name FROM pragma_index_info(il.name) ii \
          ORDER BY ii.seqno)) FROM sqlite_master m, pragma_index_list(m.name) il \
         WHERE m.type = 'table' AND m.name <> '_sqlx_migrations' AND il.origin <> 'pk'",
    )
    .into_iter()
    .map(|r| {
        let name = if r[2] == "c" {
            r[1].clone()
        } else {
            String::new()
        };
        (r[0].clone(), name, r[5].clone(), r[3] == "1", r[4] == "1")
    })
    .collect();
    (columns, indexes)
}

fn postgres_schema(db: &PgDatabase) -> (Columns, Indexes) {
    let columns = rows(&db.psql(
        "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'NO', \
         EXISTS (SELECT 1 FROM information_schema.table_constraints t \
                 JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) \
                 WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_name = c.table_name \
                   AND k.column_name = c.column_name) \
         FROM information_schema.columns c WHERE c.table_schema = 'public' \
         AND c.table_name <> '_sqlx_migrations'",
    ))
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3] == "t", r[4] == "t"))
    .collect();
    let indexes = rows(&db.psql(
        "SELECT t.relname, i.relname, ix.indisunique, ix.indpred IS NOT NULL, \
         EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid), \
         array_to_string(ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY k(n, o) \
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o), ',') \
         FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_namespace s ON s.oid = t.relnamespace \
         WHERE s.nspname = 'public' AND t.relname <> '_sqlx_migrations' AND NOT ix.indisprimary",
    ))
    .into_iter()
    .map(|r| {
        let name = if r[4] == "t" {
            String::new()
        } else {
            r[1].clone()
        };
        (r[0].clone(), name, r[5].clone(), r[2] == "t", r[3] == "t")
    })
    .collect();
    (columns, indexes)
}

#[tokio::test]
async fn both_engines_build_the_same_schema_from_one_set_of_migrations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.db");
    let s = Storage::open(&format!("sqlite://{}", file.display()))
        .await
        .expect("open sqlite");
    s.close().await;
    let pg = PgDatabase::create();
    let p = Storage::open(&pg.url()).await.expect("open postgres");
    p.close().await;

    // The same migrations, recorded with the same versions and descriptions, none failed.
    let applied = "SELECT version, description, success FROM _sqlx_migrations ORDER BY version";
    let sqlite_applied = sqlite(&file, applied);
    let files = std::fs::read_dir(workspace_root().join("appliance/migrations"))
        .expect("migrations directory")
        .count();
    assert_eq!(sqlite_applied.len(), files, "{sqlite_applied:?}");
    let pg_applied: Vec<Vec<String>> = rows(&pg.psql(applied))
        .into_iter()
        .map(|mut r| {
            r[2] = if r[2] == "t" { "1" } else { "0" }.to_owned();
            r
        })
        .collect();
    assert_eq!(sqlite_applied, pg_applied);
    assert!(
        sqlite_applied.iter().all(|r| r[2] == "1"),
        "{sqlite_applied:?}"
    );

    let (sqlite_columns, sqlite_indexes) = sqlite_schema(&file);
    let (pg_columns, pg_indexes) = postgres_schema(&pg);
    assert!(
        sqlite_columns.len() > 100,
        "{} columns",
        sqlite_columns.len()
    );
    let only_sqlite: Vec<_> = sqlite_columns.difference(&pg_columns).collect();
    let only_pg: Vec<_> = pg_columns.difference(&sqlite_columns).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "columns differ:\nonly SQLite: {only_sqlite:#?}\nonly PostgreSQL: {only_pg:#?}"
    );
    assert!(
        sqlite_indexes.len() > 20,
        "{} indexes",
        sqlite_indexes.len()
    );
    let only_sqlite: Vec<_> = sqlite_indexes.difference(&pg_indexes).collect();
    let only_pg: Vec<_> = pg_indexes.difference(&sqlite_indexes).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "indexes differ:\nonly SQLite: {only_sqlite:#?}\nonly PostgreSQL: {only_pg:#?}"
    );
}
