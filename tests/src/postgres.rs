//! A fresh PostgreSQL database per test, on the server `.ci/run` starts (role `ca_test`, trusted
//! on 127.0.0.1). A test needing PostgreSQL fails, never skips, when the server is missing.

use std::process::Command;

/// The server and role tests use, without a database name; `CA_TEST_POSTGRES` overrides it.
pub fn server_url() -> String {
    std::env::var("CA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://ca_test@127.0.0.1:5432".to_owned())
}

/// Runs `sql` with `psql` against database `db` of the test server; returns its unaligned output.
pub fn psql(db: &str, sql: &str) -> String {
    let url = format!("{}/{db}", server_url());
    let out = Command::new("psql")
        .args([&url, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-tA", "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("psql does not run ({e}): run .ci/run to install PostgreSQL"));
    assert!(
        out.status.success(),
        "psql {sql:?} on {url} failed (is PostgreSQL running with role ca_test? see .ci/run): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An empty database of its own, dropped when this value is.
pub struct PgDatabase {
    /// The database name (`cat_` and random hex).
    pub name: String,
}

impl PgDatabase {
    /// Creates an empty database.
    pub fn create() -> PgDatabase {
        let name = format!("cat_{}", hex::encode(rand::random::<[u8; 8]>()));
        psql("postgres", &format!("CREATE DATABASE {name}"));
        PgDatabase { name }
    }

    /// Its `postgres://` URL (no password: the test role is trusted on loopback).
    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    /// Runs `sql` in it (see [`psql`]).
    pub fn psql(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &format!("{}/postgres", server_url()),
                "-X",
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}
