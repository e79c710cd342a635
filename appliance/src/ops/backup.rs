//! `backup` and `restore`: a consistent online copy of one appliance into a directory, and a
//! new appliance directory made from it.
//!
//! The backup holds the database (one SQLite snapshot taken while the server keeps writing),
//! the configuration rewritten so the copy is self-contained, the profiles, the channels
//! directory when configured and the CA certificates, plus `manifest.json`
//! with the SHA-256 of every file. CRLs are not copied: the restored appliance publishes them
//! afresh from its database (CRL numbers continue from the snapshot). It never holds key material: HSM keys stay in the HSM (the
//! operator backs the token up with the vendor's procedure), and secret files (PIN file, TLS
//! server key, plugin secrets) stay where they are; the restored configuration names them by
//! absolute path.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ApplianceConfig;
use crate::storage::{unix_now, Storage, StorageError};

/// The manifest's file name inside a backup.
pub const MANIFEST: &str = "manifest.json";
/// The database's path inside a backup and a restored directory.
const DATABASE: &str = "data/appliance.db";
/// Manifest format version.
const FORMAT: u32 = 1;

/// Why a backup or restore failed (nothing half-written is left claiming to be complete: the
/// manifest is written last, and restore refuses a non-empty target).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The configuration could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The database could not be opened, copied or checked.
    #[error("database: {0}")]
    Storage(#[from] StorageError),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The target directory is not empty.
    #[error("{0} exists and is not empty; choose a new directory")]
    NotEmpty(PathBuf),
    /// The backup is damaged or not a backup.
    #[error("not a usable backup: {0}")]
    Invalid(String),
}

/// One file in the backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the backup directory, `/`-separated.
    pub path: String,
    /// Hex SHA-256 of the contents.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// `manifest.json`: what the backup holds and what it deliberately does not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// The `ca-appliance` version that wrote it.
    pub appliance_version: String,
    /// Unix time the database snapshot was taken.
    pub created_at: i64,
    /// The configuration file the backup was taken from.
    pub source_config: String,
    /// Certificates in the snapshot.
    pub certificates: i64,
    /// Audit rows in the snapshot (the hash chain verified at backup time).
    pub audit_rows: i64,
    /// The last CRL number allocated in the snapshot; a restored appliance continues above it.
    pub crl_number: i64,
    /// Every file and its digest.
    pub files: Vec<ManifestFile>,
    /// What is not in the backup and must be kept by other means.
    pub not_included: Vec<String>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Takes a backup of the appliance configured by `config_path` into the new directory `out`.
pub async fn backup(config_path: &Path, out: &Path) -> Result<Manifest, BackupError> {
    let config = ApplianceConfig::load(config_path)?;
    let text = std::fs::read_to_string(config_path).map_err(|e| io_err(config_path, e))?;
    let mut raw: toml::Table = text
        .parse()
        .map_err(|e| BackupError::Invalid(format!("{}: {e}", config_path.display())))?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    make_empty_dir(out)?;

    // 1. The database: one consistent snapshot, then checked on its own.
    let storage = Storage::open(&config.database.url).await?;
    make_dir(&out.join("data"))?;
    let db = out.join(DATABASE);
    storage.backup_into(&db).await?;
    let copy = Storage::open_snapshot(&db).await?;
    let audit_rows = match copy.audit().verify().await? {
        Ok(n) => i64::try_from(n).unwrap_or(i64::MAX),
        Err(seq) => {
            return Err(BackupError::Invalid(format!(
                "the audit chain of the database breaks at row {seq}; not backed up"
            )))
        }
    };
    let (certificates, _, crl_number) = copy.backup_summary().await?;
    copy.close().await;

    // 2. The files beside it, and the configuration pointing at the copies.
    copy_dir(&config.profiles_dir, &out.join("profiles"))?;
    copy_dir(&config.ca_output_dir, &out.join("ca"))?;
    make_dir(&out.join("tls"))?;
    copy_file(&config.server.tls_cert, &out.join("tls/server.pem"))?;
    copy_file(&config.server.client_ca, &out.join("tls/client-ca.pem"))?;
    set(&mut raw, &["profiles_dir"], "profiles");
    set(&mut raw, &["ca_output_dir"], "ca");
    set(&mut raw, &["database", "url"], "sqlite://data/appliance.db");
    set(&mut raw, &["server", "tls_cert"], "tls/server.pem");
    set(&mut raw, &["server", "client_ca"], "tls/client-ca.pem");
    // No CRL files: the restored appliance publishes fresh ones from its database at start
    // (numbered after the snapshot's counter), never a file older than the revocations it holds.
    set(&mut raw, &["status", "crl_dir"], "crl");
    // Channels as files (`channels_dir`), when the configuration has them.
    if let Some(dir) = raw.get("channels_dir").and_then(|v| v.as_str()) {
        let dir = absolute(base, Path::new(dir));
        copy_dir(&dir, &out.join("channels"))?;
        set(&mut raw, &["channels_dir"], "channels");
    }
    // The ceremony file (the reviewed CA plan), when the configuration names one.
    if let Some(file) = &config.ceremony {
        copy_file(file, &out.join("ceremony.toml"))?;
        set(&mut raw, &["ceremony"], "ceremony.toml");
    }
    // Secrets are not copied: the restored configuration names the originals.
    set(
        &mut raw,
        &["server", "tls_key"],
        &path_str(&config.server.tls_key),
    );
    if let Some(f) = &config.hsm.pin.file {
        set(&mut raw, &["hsm", "pin", "file"], &path_str(f));
    }
    if let Some(f) = &config.hsm.softhsm2_conf {
        set(&mut raw, &["hsm", "softhsm2_conf"], &path_str(f));
    }
    if let Some(plugins) = raw.get_mut("plugin").and_then(|p| p.as_array_mut()) {
        for (table, plugin) in plugins.iter_mut().zip(&config.plugins) {
            let Some(table) = table.as_table_mut() else {
                continue;
            };
            table.insert("path".into(), path_str(&plugin.path).into());
            if let Some(secrets) = table.get_mut("secrets").and_then(|s| s.as_table_mut()) {
                for (name, source) in &plugin.secrets {
                    if let (Some(file), Some(entry)) = (
                        &source.file,
                        secrets.get_mut(name).and_then(|s| s.as_table_mut()),
                    ) {
                        entry.insert("file".into(), path_str(file).into());
                    }
                }
            }
        }
    }
    let rewritten = format!(
        "# Restored by `ca-appliance restore` from a backup of {}.\n# Secrets (PIN, TLS key, plugin secrets) are the originals, by absolute path.\n{}",
        config_path.display(),
        toml::to_string(&raw).map_err(|e| BackupError::Invalid(e.to_string()))?
    );
    write_new(&out.join("appliance.toml"), rewritten.as_bytes())?;

    // 3. The manifest, last: a directory without one is not a finished backup.
    let manifest = Manifest {
        format: FORMAT,
        appliance_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: unix_now(),
        source_config: path_str(config_path),
        certificates,
        audit_rows,
        crl_number,
        files: digest_tree(out)?,
        not_included: vec![
            format!(
                "HSM keys on token {:?} (CA, OCSP responder and data-wrapping keys): back the token up with the HSM vendor's procedure",
                config.hsm.token_label
            ),
            "the HSM PIN, the TLS server key and plugin secrets: kept where they are, named by absolute path".to_owned(),
        ],
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Invalid(e.to_string()))?;
    write_new(&out.join(MANIFEST), &json)?;
    Ok(manifest)
}

/// Restores the backup in `from` into the new directory `dir`: every digest checked first,
/// then the files copied, then the database's audit chain verified.
pub async fn restore(from: &Path, dir: &Path) -> Result<Manifest, BackupError> {
    let manifest_path = from.join(MANIFEST);
    let bytes = std::fs::read(&manifest_path).map_err(|e| io_err(&manifest_path, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::Invalid(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Invalid(format!(
            "manifest format {} (this version reads {FORMAT})",
            manifest.format
        )));
    }
    for file in &manifest.files {
        let rel = safe_relative(&file.path)?;
        let path = from.join(rel);
        let actual = sha256_file(&path)?;
        if actual != file.sha256 {
            return Err(BackupError::Invalid(format!(
                "{} does not match its digest in the manifest (damaged or altered)",
                file.path
            )));
        }
    }
    make_empty_dir(dir)?;
    for file in &manifest.files {
        let rel = safe_relative(&file.path)?;
        let dest = dir.join(rel);
        if let Some(parent) = dest.parent() {
            make_dir(parent)?;
        }
        copy_file(&from.join(rel), &dest)?;
    }
    let storage = Storage::open(&format!("sqlite://{}", dir.join(DATABASE).display())).await?;
    match storage.audit().verify().await? {
        Ok(n) if i64::try_from(n).unwrap_or(i64::MAX) == manifest.audit_rows => {}
        Ok(n) => {
            return Err(BackupError::Invalid(format!(
                "the restored audit log has {n} rows, the manifest says {}",
                manifest.audit_rows
            )))
        }
        Err(seq) => {
            return Err(BackupError::Invalid(format!(
                "the restored audit chain breaks at row {seq}"
            )))
        }
    }
    storage.close().await;
    ApplianceConfig::load(&dir.join("appliance.toml"))?;
    Ok(manifest)
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_relative() {
        base.join(p)
    } else {
        p.to_owned()
    }
}

/// Sets a string at a dotted key, creating tables on the way.
fn set(table: &mut toml::Table, keys: &[&str], value: &str) {
    let Some((last, path)) = keys.split_last() else {
        return;
    };
    let mut t = table;
    for k in path {
        let entry = t
            .entry((*k).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(next) = entry.as_table_mut() else {
            return;
        };
        t = next;
    }
    t.insert((*last).to_owned(), toml::Value::String(value.to_owned()));
}

/// A manifest path must stay inside the backup: relative, no `..`, no root.
fn safe_relative(path: &str) -> Result<&Path, BackupError> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(p)
    } else {
        Err(BackupError::Invalid(format!(
            "manifest names {path:?} outside the backup"
        )))
    }
}

fn make_empty_dir(dir: &Path) -> Result<(), BackupError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
        if entries.next().is_some() {
            return Err(BackupError::NotEmpty(dir.to_owned()));
        }
    }
    make_dir(dir)
}

fn make_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err(dir, e))
}

/// Copies the regular files directly in `src` (not hidden ones) into `dest`; a missing `src`
/// copies nothing (e.g. no CRL published yet).
fn copy_dir(src: &Path, dest: &Path) -> Result<(), BackupError> {
    make_dir(dest)?;
    let entries = match std::fs::read_dir(src) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(src, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(src, e))?;
        let name = entry.file_name();
        let hidden = name.to_string_lossy().starts_with('.');
        let file = entry
            .file_type()
            .map_err(|e| io_err(&entry.path(), e))?
            .is_file();
        if file && !hidden {
            copy_file(&entry.path(), &dest.join(name))?;
        }
    }
    Ok(())
}

fn copy_file(src: &Path, dest: &Path) -> Result<(), BackupError> {
    let bytes = std::fs::read(src).map_err(|e| io_err(src, e))?;
    write_new(dest, &bytes)
}

/// Writes a new 0600 file and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(bytes).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let mut f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher).map_err(|e| io_err(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Every regular file under `root` (sorted), with its digest.
fn digest_tree(root: &Path) -> Result<Vec<ManifestFile>, BackupError> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| io_err(&path, e))?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .map_err(|e| io_err(&path, e))?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let bytes = entry.metadata().map_err(|e| io_err(&path, e))?.len();
                out.push(ManifestFile {
                    sha256: sha256_file(&path)?,
                    path: rel,
                    bytes,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_must_stay_inside_the_backup() {
        assert!(safe_relative("data/appliance.db").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "./a"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_creates_tables_on_the_way() {
        let mut t: toml::Table = "a = 1\n[server]\nx = 2\n".parse().unwrap();
        set(&mut t, &["server", "tls_cert"], "tls/server.pem");
        set(&mut t, &["status", "crl_dir"], "crl");
        assert_eq!(t["server"]["tls_cert"].as_str(), Some("tls/server.pem"));
        assert_eq!(t["server"]["x"].as_integer(), Some(2));
        assert_eq!(t["status"]["crl_dir"].as_str(), Some("crl"));
    }
}
