//! CRL publication: a full and a delta CRL per issuing CA, signed by the CA key, streamed from
//! the database through `CrlBuilder`, written atomically to the publication directory and
//! served from there.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::HeaderValue;
use ca_status::crl::{CrlBuilder, CrlDigest, CrlParams, RevokedEntry};
use ca_status::Reason;
use der::Encode;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::cache::http_date;
use super::{serial_bytes, StatusError};
use crate::ca::issuance::generation_profile;
use crate::ca::signing::{CaSigner, CrlToSign, SigningError};
use crate::ca::{CertificateAuthority, Hierarchy};
use crate::config::StatusConfig;
use crate::profile::{crl_shard_file, crl_shard_of, crl_shard_url, Profile};
use crate::storage::{unix_now, CrlDocuments, CrlRecord, CrlRow, CrlStore, Leases};

/// A published CRL file and its HTTP caching data.
#[derive(Debug, Clone)]
pub struct PublishedCrl {
    /// Where it is.
    pub path: PathBuf,
    /// CRLNumber.
    pub number: i64,
    /// thisUpdate (`Last-Modified`).
    pub this_update: i64,
    /// nextUpdate (`Expires`, bounds `max-age`).
    pub next_update: i64,
    /// Quoted hex SHA-256 of the file.
    pub etag: String,
    /// Number of entries.
    pub entries: i64,
}

impl PublishedCrl {
    /// `Last-Modified` value.
    pub fn last_modified(&self) -> HeaderValue {
        HeaderValue::from_str(&http_date(self.this_update))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Expires` value.
    pub fn expires(&self) -> HeaderValue {
        HeaderValue::from_str(&http_date(self.next_update))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Generates, writes and indexes CRLs.
pub struct CrlPublisher {
    signer: CaSigner,
    store: CrlStore,
    cas: Vec<Arc<CertificateAuthority>>,
    dir: PathBuf,
    public_url: String,
    validity_secs: i64,
    root_offline: bool,
    root_validity_secs: i64,
    interval_secs: i64,
    delay: Duration,
    published: RwLock<HashMap<String, Arc<PublishedCrl>>>,
    dirty: Mutex<BTreeSet<i64>>,
    wake: Notify,
    sharded: Vec<Profile>,
    shared: Option<SharedCrls>,
}

/// Several nodes on one database: a lease per CA decides which node generates its CRLs; the
/// others serve the signed documents it stored.
struct SharedCrls {
    leases: Leases,
    documents: CrlDocuments,
}

/// How long a node's lease on a CA's CRL generation lasts; renewed on every pass (each
/// [`SHARED_TICK`]), so a dead holder is replaced within this time plus one tick.
const CRL_LEASE_SECS: i64 = 30;

/// How often a node sharing the database renews its leases and picks up other nodes' CRLs.
const SHARED_TICK: Duration = Duration::from_secs(5);

/// What one CRL is, besides its entries.
struct CrlPlan {
    number: i64,
    now: i64,
    next_update: i64,
    base: Option<CrlRecord>,
    kind: String,
    file: String,
}

/// Writes everything also into a SHA-256 (the ETag of the file).
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn ts(unix: i64) -> Result<OffsetDateTime, StatusError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|_| StatusError::Time)
}

/// The CRL entry for a row: `None` for a valid certificate on a full CRL.
fn entry(row: &CrlRow, delta: bool) -> Result<Option<RevokedEntry>, StatusError> {
    let serial = serial_bytes(&row.serial)
        .ok_or_else(|| StatusError::Build(format!("stored serial {:?}", row.serial)))?;
    let (reason, date, invalidity) = match row.status.as_str() {
        "revoked" => (
            row.revocation_reason
                .and_then(|c| u8::try_from(c).ok())
                .and_then(Reason::from_code),
            row.revoked_at,
            row.invalidity_date,
        ),
        "hold" => (Some(Reason::CertificateHold), row.revoked_at, None),
        "valid" if delta => (Some(Reason::RemoveFromCrl), row.status_changed_at, None),
        _ => return Ok(None),
    };
    Ok(Some(RevokedEntry {
        serial,
        revocation_date: ts(date.unwrap_or(0))?,
        reason,
        invalidity_date: invalidity.map(ts).transpose()?,
    }))
}

impl CrlPublisher {
    /// A publisher for every CA of `hierarchy`; indexes CRLs already on disk.
    pub async fn new(
        signer: CaSigner,
        store: CrlStore,
        hierarchy: &Hierarchy,
        config: &StatusConfig,
        public_url: &str,
    ) -> Result<CrlPublisher, StatusError> {
        std::fs::create_dir_all(&config.crl_dir)
            .map_err(|e| StatusError::Io(format!("{}: {e}", config.crl_dir.display())))?;
        // Every CA, the root included: `-crl_check_all` needs a CRL for each chain level.
        // Every unexpired generation: a re-keyed CA's older generation keeps its own CRL.
        let cas: Vec<_> = hierarchy.unexpired(unix_now()).cloned().collect();
        let publisher = CrlPublisher {
            signer,
            store,
            cas,
            dir: config.crl_dir.clone(),
            public_url: public_url.trim_end_matches('/').to_owned(),
            validity_secs: i64::from(config.crl_validity_hours) * 3600,
            root_offline: config.root_offline,
            root_validity_secs: i64::from(config.root_crl_validity_days) * 86_400,
            interval_secs: i64::from(config.crl_interval_minutes) * 60,
            delay: Duration::from_secs(u64::from(config.crl_delay_secs)),
            published: RwLock::new(HashMap::new()),
            dirty: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
            sharded: Vec::new(),
            shared: None,
        };
        publisher.index_existing().await?;
        Ok(publisher)
    }

    /// Also publishes the partitioned CRLs of `profiles` with `crl_shards` (see
    /// [`Profile::crl_shard`]); indexes shard CRLs already on disk.
    pub async fn with_sharded_profiles<'p>(
        mut self,
        profiles: impl IntoIterator<Item = &'p Profile>,
    ) -> Result<CrlPublisher, StatusError> {
        self.sharded = profiles
            .into_iter()
            .filter(|p| p.crl_shards >= 2 && p.crl_url.is_some())
            .cloned()
            .collect();
        for p in &self.sharded {
            // Rows stored before the shard column: the shard their CRLDP names.
            let n = p.crl_shards;
            let of = |serial: &str| {
                let bytes = hex::decode(serial).ok()?;
                crl_shard_of(&bytes, n).map(i64::from)
            };
            self.store.backfill_crl_shards(&p.name, of).await?;
        }
        self.index_existing().await?;
        Ok(self)
    }

    /// Shares generation with other nodes on the same database: only the holder of lease
    /// `crl:<ca id>` generates that CA's CRLs and stores them in `documents`; the others
    /// serve the newest stored ones.
    pub fn shared_through(mut self, leases: Leases, documents: CrlDocuments) -> CrlPublisher {
        self.shared = Some(SharedCrls { leases, documents });
        self
    }

    /// Whether this node generates `ca`'s CRLs now (always, alone on its database); takes or
    /// renews the lease. A database error counts as not holding it (the next pass retries).
    async fn generates(&self, ca: &CertificateAuthority, now: i64) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        match shared
            .leases
            .take(&format!("crl:{}", ca.id), now, CRL_LEASE_SECS)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(ca = %ca.name, error = %e, "CRL lease not taken");
                false
            }
        }
    }

    /// Serves the newest CRLs another node stored for `ca`: each stored document newer than the
    /// one served is written to the publication directory and indexed.
    async fn pick_up_stored(&self, ca: &CertificateAuthority) -> Result<(), StatusError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        for (_, file) in self.files_of(ca) {
            let Some(number) = shared.documents.number(&file).await? else {
                continue;
            };
            if self.get(&file).is_some_and(|p| p.number >= number) {
                continue;
            }
            let Some((number, der)) = shared.documents.get(&file).await? else {
                continue;
            };
            let Some(rec) = self.store.by_number(number).await? else {
                continue;
            };
            let path = self.dir.join(&file);
            write_atomically(&path, |w| {
                w.write_all(&der)
                    .map_err(|e| StatusError::Io(format!("{}: {e}", path.display())))
            })?;
            self.index(&file, path, &rec);
            tracing::debug!(ca = %ca.name, number, %file, "CRL from another node served");
        }
        Ok(())
    }

    /// (kind, file) of every CRL `ca` publishes: full, delta, then each shard.
    fn files_of(&self, ca: &CertificateAuthority) -> Vec<(String, String)> {
        let mut out = vec![
            ("full".to_owned(), full_name(&ca.stem())),
            ("delta".to_owned(), delta_name(&ca.stem())),
        ];
        for p in self.sharded.iter().filter(|p| p.issuer == ca.name) {
            for shard in 0..p.crl_shards {
                let file = crl_shard_file(&ca.stem(), &p.name, shard);
                out.push((shard_kind(&file), file));
            }
        }
        out
    }

    async fn index_existing(&self) -> Result<(), StatusError> {
        let publisher = self;
        for ca in &publisher.cas {
            for (kind, file) in publisher.files_of(ca) {
                let Some(rec) = publisher.store.latest(ca.id, &kind).await? else {
                    continue;
                };
                let path = publisher.dir.join(&file);
                if path.exists() {
                    publisher.index(&file, path, &rec);
                }
            }
        }
        Ok(())
    }

    fn index(&self, file: &str, path: PathBuf, rec: &CrlRecord) {
        let published = Arc::new(PublishedCrl {
            path,
            number: rec.number,
            this_update: rec.this_update,
            next_update: rec.next_update,
            etag: rec.etag.clone(),
            entries: rec.entries,
        });
        self.published
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file.to_owned(), published);
    }

    /// The published CRL served as `/crl/{file}`.
    pub fn get(&self, file: &str) -> Option<Arc<PublishedCrl>> {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(file)
            .cloned()
    }

    /// Schedules regeneration of `ca_id`'s CRLs after the configured short delay.
    pub fn mark_dirty(&self, ca_id: i64) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ca_id);
        self.wake.notify_one();
    }

    /// Whether `ca` is a root whose key `serve` never uses (`[status] root_offline`).
    fn offline(&self, ca: &CertificateAuthority) -> bool {
        self.root_offline && ca.parent_id.is_none()
    }

    /// Publishes a full then a delta CRL for `ca` (an offline root: a full CRL only).
    pub async fn publish(&self, ca: &CertificateAuthority) -> Result<(), StatusError> {
        if self.offline(ca) {
            self.generate(ca, None, None, &full_name(&ca.stem()))
                .await?;
            return Ok(());
        }
        let full = self.publish_full(ca).await?;
        self.publish_delta(ca, &full).await?;
        self.publish_shards(ca).await?;
        Ok(())
    }

    /// Generates and publishes the full CRL of `ca`; returns its record.
    pub async fn publish_full(&self, ca: &CertificateAuthority) -> Result<CrlRecord, StatusError> {
        let freshest = format!("{}/crl/{}", self.public_url, delta_name(&ca.stem()));
        self.generate(ca, None, Some(freshest), &full_name(&ca.stem()))
            .await
    }

    async fn publish_delta(
        &self,
        ca: &CertificateAuthority,
        newest_full: &CrlRecord,
    ) -> Result<CrlRecord, StatusError> {
        // Based on the oldest full CRL a relying party may still hold, so every valid full
        // CRL plus this delta gives the current status.
        let base = self
            .store
            .oldest_valid(ca.id, "full", unix_now())
            .await?
            .unwrap_or_else(|| newest_full.clone());
        self.generate(ca, Some(&base), None, &delta_name(&ca.stem()))
            .await
    }

    /// Allocates a CRL number and fixes the times of a CRL of `ca`.
    async fn plan(
        &self,
        ca: &CertificateAuthority,
        base: Option<&CrlRecord>,
        kind: &str,
        file: &str,
    ) -> Result<CrlPlan, StatusError> {
        let number = self.store.next_crl_number().await?;
        let now = unix_now();
        let next_update = now
            + if self.offline(ca) {
                self.root_validity_secs
            } else {
                self.validity_secs
            };
        Ok(CrlPlan {
            number,
            now,
            next_update,
            base: base.cloned(),
            kind: kind.to_owned(),
            file: file.to_owned(),
        })
    }

    /// A builder for the CRL `plan` of `ca`.
    fn builder(
        ca: &CertificateAuthority,
        sm2_signer_id: &str,
        plan: &CrlPlan,
        freshest_crl_url: Option<String>,
        issuing_distribution_point: Option<String>,
    ) -> Result<CrlBuilder, StatusError> {
        let digest = match ca.signature_algorithm.hash_len() {
            _ if ca.signature_algorithm.is_sm2() => {
                let spki = &ca.certificate.tbs_certificate.subject_public_key_info;
                let z = crate::ca::sm2::z(spki, sm2_signer_id)
                    .map_err(|e| StatusError::Build(e.to_string()))?;
                CrlDigest::Sm3WithZ(z)
            }
            32 => CrlDigest::Sha256,
            48 => CrlDigest::Sha384,
            n => return Err(StatusError::Build(format!("no CRL digest of {n} bytes"))),
        };
        Ok(CrlBuilder::new(CrlParams {
            issuer_name_der: issuer_name_der(ca)?,
            authority_key_id: ca.subject_key_id.clone(),
            crl_number: u128::try_from(plan.number).map_err(|_| StatusError::Time)?,
            this_update: ts(plan.now)?,
            next_update: ts(plan.next_update)?,
            delta_of: plan.base.as_ref().map(|b| b.number as u128),
            freshest_crl_url,
            issuing_distribution_point,
            sig_alg: ca.signature_algorithm.algorithm_identifier(),
            digest,
        })?)
    }

    async fn generate(
        &self,
        ca: &CertificateAuthority,
        base: Option<&CrlRecord>,
        freshest_crl_url: Option<String>,
        file: &str,
    ) -> Result<CrlRecord, StatusError> {
        let kind = if base.is_some() { "delta" } else { "full" };
        let plan = self.plan(ca, base, kind, file).await?;
        let mut builder = Self::builder(
            ca,
            self.signer.sm2_signer_id(),
            &plan,
            freshest_crl_url,
            None,
        )?;
        let delta = base.is_some();
        let seq = self
            .store
            .stream_entries(ca.id, base.map(|b| b.status_seq), None, |row| {
                if let Some(e) = entry(&row, delta)? {
                    builder.push(&e)?;
                }
                Ok::<(), StatusError>(())
            })
            .await?;
        // A CA's CRL also lists the revoked CA generations it signed (the root's CRL).
        for (der, revoked_at, reason) in self.store.revoked_children(ca.id).await? {
            let cert = <x509_cert::Certificate as der::Decode>::from_der(&der)
                .map_err(|e| StatusError::Build(format!("stored CA certificate: {e}")))?;
            builder.push(&RevokedEntry {
                serial: cert.tbs_certificate.serial_number.as_bytes().to_vec(),
                revocation_date: ts(revoked_at)?,
                reason: reason
                    .and_then(|c| u8::try_from(c).ok())
                    .and_then(Reason::from_code),
                invalidity_date: None,
            })?;
        }
        self.sign_and_write(ca, plan, builder, seq).await
    }

    /// Publishes every shard CRL of `ca`'s sharded profiles in one pass over their revoked
    /// certificates (each row goes to its shard's builder); returns the records.
    pub async fn publish_shards(
        &self,
        ca: &CertificateAuthority,
    ) -> Result<Vec<CrlRecord>, StatusError> {
        let mut records = Vec::new();
        for profile in self.sharded.iter().filter(|p| p.issuer == ca.name) {
            records.extend(self.publish_profile_shards(ca, profile, None).await?);
        }
        Ok(records)
    }

    /// Publishes shard `only` (every shard when `None`) of `profile`'s CRL under `ca`.
    pub async fn publish_profile_shards(
        &self,
        ca: &CertificateAuthority,
        profile: &Profile,
        only: Option<u16>,
    ) -> Result<Vec<CrlRecord>, StatusError> {
        let gen_profile = generation_profile(profile, ca);
        let Some(crl_url) = &gen_profile.crl_url else {
            return Ok(Vec::new());
        };
        let shards: Vec<u16> = match only {
            Some(k) if k < profile.crl_shards => vec![k],
            Some(k) => return Err(StatusError::Build(format!("no CRL shard {k}"))),
            None => (0..profile.crl_shards).collect(),
        };
        // One shard at a time, each read through the stored shard column and its index.
        let mut records = Vec::with_capacity(shards.len());
        for k in shards {
            let file = crl_shard_file(&ca.stem(), &profile.name, k);
            let plan = self.plan(ca, None, &shard_kind(&file), &file).await?;
            let url = crl_shard_url(crl_url, &ca.stem(), &profile.name, k);
            let mut builder =
                Self::builder(ca, self.signer.sm2_signer_id(), &plan, None, Some(url))?;
            let seq = self
                .store
                .stream_shard(ca.id, &profile.name, i64::from(k), |row| {
                    if let Some(e) = entry(&row, false)? {
                        builder.push(&e)?;
                    }
                    Ok::<(), StatusError>(())
                })
                .await?;
            records.push(self.sign_and_write(ca, plan, builder, seq).await?);
        }
        Ok(records)
    }

    /// Hashes, signs (through the CA signing path), writes, records and indexes one CRL.
    async fn sign_and_write(
        &self,
        ca: &CertificateAuthority,
        plan: CrlPlan,
        builder: CrlBuilder,
        seq: i64,
    ) -> Result<CrlRecord, StatusError> {
        let issuer_name_der = issuer_name_der(ca)?;
        let pending = builder.finish()?;
        let entries = pending.entry_count() as i64;
        let sig_alg = ca.signature_algorithm.algorithm_identifier();
        let signature = self
            .signer
            .sign_crl(
                ca,
                CrlToSign {
                    issuer_name_der: &issuer_name_der,
                    authority_key_id: &ca.subject_key_id,
                    algorithm: &sig_alg,
                    number: plan.number,
                    base: plan.base.as_ref().map(|b| b.number),
                    this_update: plan.now,
                    next_update: plan.next_update,
                    digest: pending.digest(),
                },
                "system:crl",
            )
            .await
            .map_err(|e| match e {
                SigningError::Hsm(h) => StatusError::Hsm(h),
                SigningError::Storage(s) => StatusError::Storage(s),
                other => StatusError::Build(other.to_string()),
            })?;
        let path = self.dir.join(&plan.file);
        let etag = write_atomically(&path, |w| {
            pending
                .write_signed(&signature, w)
                .map(|_| ())
                .map_err(StatusError::from)
        })?;
        let rec = CrlRecord {
            number: plan.number,
            ca_id: ca.id,
            kind: plan.kind,
            base_number: plan.base.as_ref().map(|b| b.number),
            status_seq: seq,
            entries,
            this_update: plan.now,
            next_update: plan.next_update,
            etag,
        };
        self.store.record(&rec).await?;
        if let Some(shared) = &self.shared {
            let der = std::fs::read(&path)
                .map_err(|e| StatusError::Io(format!("{}: {e}", path.display())))?;
            shared.documents.put(&plan.file, rec.number, &der).await?;
        }
        self.index(&plan.file, path, &rec);
        tracing::info!(ca = %ca.name, number = rec.number, entries, kind = %rec.kind, "CRL published");
        Ok(rec)
    }

    /// Publishes every CA whose CRLs are missing or older than the interval, or marked dirty.
    pub async fn publish_due(&self, include_dirty: bool) -> Result<(), StatusError> {
        let dirty: BTreeSet<i64> = if include_dirty {
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
        } else {
            BTreeSet::new()
        };
        let now = unix_now();
        let mut result = Ok(());
        for ca in &self.cas {
            if self.offline(ca) {
                // Signed by `root sign-crl` only: pick up the newest file it wrote.
                if let Ok(Some(rec)) = self.store.latest(ca.id, "full").await {
                    let file = full_name(&ca.stem());
                    let path = self.dir.join(&file);
                    if path.exists() && self.get(&file).is_none_or(|p| p.number < rec.number) {
                        self.index(&file, path, &rec);
                    }
                }
                continue;
            }
            if !self.generates(ca, now).await {
                if dirty.contains(&ca.id) {
                    // Kept: should this node take the lease over (its holder died before
                    // regenerating), it regenerates at once rather than at the next interval.
                    self.mark_dirty_quiet(ca.id);
                }
                if let Err(e) = self.pick_up_stored(ca).await {
                    tracing::warn!(ca = %ca.name, error = %e, "stored CRL not picked up");
                    result = Err(e);
                }
                continue;
            }
            let stale = |file: String| {
                self.get(&file)
                    .is_none_or(|p| now - p.this_update >= self.interval_secs)
            };
            if dirty.contains(&ca.id) || self.files_of(ca).into_iter().any(|(_, f)| stale(f)) {
                if let Err(e) = self.publish(ca).await {
                    tracing::warn!(ca = %ca.name, error = %e, "CRL publication failed");
                    if include_dirty {
                        self.mark_dirty_quiet(ca.id);
                    }
                    result = Err(e);
                }
            }
        }
        result
    }

    fn mark_dirty_quiet(&self, ca_id: i64) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ca_id);
    }

    /// Publishes on schedule, and a few seconds after revocations.
    pub async fn run(self: Arc<Self>) {
        let tick = if self.shared.is_some() {
            SHARED_TICK
        } else {
            Duration::from_secs(30)
        };
        loop {
            let _ = self.publish_due(true).await;
            if let Some(shared) = &self.shared {
                // Per-row claims (deliveries, verifications) end here an hour after expiry.
                if let Err(e) = shared.leases.purge_expired(unix_now() - 3600).await {
                    tracing::warn!(error = %e, "expired leases not purged");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = self.wake.notified() => { tokio::time::sleep(self.delay).await; }
            }
        }
    }
}

/// The `crls.kind` of a shard CRL: `shard:{file}`.
fn shard_kind(file: &str) -> String {
    format!("shard:{file}")
}

/// The issuer Name DER a CRL of `ca` carries (byte-identical to the CA's subject).
fn issuer_name_der(ca: &CertificateAuthority) -> Result<Vec<u8>, StatusError> {
    ca.certificate
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|e| StatusError::Build(e.to_string()))
}

/// `{stem}.crl` (stem: [`CertificateAuthority::stem`]).
pub fn full_name(ca: &str) -> String {
    format!("{ca}.crl")
}

/// `{stem}-delta.crl`.
pub fn delta_name(ca: &str) -> String {
    format!("{ca}-delta.crl")
}

/// Writes `path` through a temp file in the same directory, fsync, rename; returns the
/// quoted hex SHA-256 of what was written.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut HashingWriter<std::io::BufWriter<std::fs::File>>) -> Result<(), StatusError>,
) -> Result<String, StatusError> {
    let io = |e: std::io::Error| StatusError::Io(format!("{}: {e}", path.display()));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = HashingWriter {
        inner: std::io::BufWriter::with_capacity(256 * 1024, file),
        hash: Sha256::new(),
    };
    write(&mut w)?;
    w.flush().map_err(io)?;
    let etag = format!("\"{}\"", hex::encode(w.hash.finalize()));
    let file = w.inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(etag)
}
