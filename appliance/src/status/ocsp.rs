//! The OCSP responder: answers from pre-signed responses, signs live only when it must
//! (nonce echo, several CertIDs, SHA-256 CertIDs on first demand, a cache miss) and only within
//! the live-signing budget, and keeps every known certificate's response fresh in the
//! background.
//!
//! One rule makes every answer agree with the database: a response carries the certificate's
//! status version (`status_seq`) it was signed for, the status is read from the database when
//! signing (never from a queued snapshot), and a response replaces another only if it was signed
//! for the same or a newer version (conditional upsert in the database, compare-and-swap in
//! memory). A stored response for an older version is never loaded; the pre-signer replaces it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ca_status::ocsp::{
    self, CertId, CertStatus, HashAlgorithm, IssuerKeyHashes, OcspErrorStatus, OcspRequest,
    ResponseData, SingleResponse,
};
use ca_status::Reason;
use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::cache::{CachedResponse, CertIdHash, ResponseCache};
use super::live_budget::LiveBudget;
use super::responder;
use super::{serial_bytes, StatusError};
use crate::ca::signing::CaSigner;
use crate::ca::{CertificateAuthority, Hierarchy};
use crate::config::{StatusConfig, UnknownSerialAnswer};
use crate::storage::{unix_now, CertStatusRow, Leases, OcspStore, ResponderRecord, StoredResponse};

/// How long a node following another node's status change waits for the answer that node signs
/// and stores right after its commit, before signing one itself (see [`FeedChange::Missing`]).
pub const ADOPT_WAIT: Duration = Duration::from_secs(1);

/// How long the periodic pre-signing pass leaves a certificate issued or changed that recently
/// and still without an answer for its status version to the node that issued or changed it
/// (which signs one at once), so that the two do not both sign it. Longer than [`ADOPT_WAIT`]
/// plus a second of clock granularity; a change whose node failed to sign is signed by the first
/// pass after it.
pub const SETTLE_SECS: i64 = 3;

/// What a status change read from the change feed found on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedChange {
    /// This node already holds an answer for that status version (or does not answer for it).
    Held,
    /// The stale answer was withdrawn and the one the changing node stored was taken.
    Adopted,
    /// The stale answer was withdrawn; the changing node's answer is not stored yet: call
    /// [`OcspResponder::adopt_or_sign`] after [`ADOPT_WAIT`].
    Missing,
}

/// Rows fetched per pre-signing round.
const PRESIGN_BATCH: i64 = 2000;

/// The signing key and certificate currently answering for one issuer.
#[derive(Debug)]
struct ActiveResponder {
    key: hsm::KeyUri,
    /// How this responder's key signs (from its certificate's key: P-256 or SM2).
    algorithm: hsm::SignatureAlgorithm,
    cert_der: Vec<u8>,
    key_hash: [u8; 20],
    not_after: i64,
}

impl ActiveResponder {
    fn from_record(rec: &ResponderRecord) -> Result<ActiveResponder, StatusError> {
        let hashes = IssuerKeyHashes::from_cert_der(&rec.certificate)
            .map_err(|e| StatusError::Build(format!("stored responder certificate: {e}")))?;
        let cert = <x509_cert::Certificate as der::Decode>::from_der(&rec.certificate)
            .map_err(|e| StatusError::Build(format!("stored responder certificate: {e}")))?;
        let kind = crate::ca::tbs::key_kind_of(&cert.tbs_certificate.subject_public_key_info)
            .map_err(|e| StatusError::Build(format!("stored responder key: {e}")))?;
        Ok(ActiveResponder {
            algorithm: crate::ca::tbs::signature_algorithm_for(kind),
            key: rec
                .key_uri
                .parse()
                .map_err(|_| StatusError::Build("stored responder key URI".into()))?,
            cert_der: rec.certificate.clone(),
            key_hash: hashes.sha1_key,
            not_after: rec.not_after,
        })
    }
}

/// One issuing CA the responder answers for.
struct IssuerState {
    ca: Arc<CertificateAuthority>,
    hashes: IssuerKeyHashes,
    responder: RwLock<Arc<ActiveResponder>>,
    cache: ResponseCache,
    /// Responses signed (`this_update`) since this time are not loaded yet (other nodes').
    loaded_since: AtomicI64,
}

impl IssuerState {
    fn responder(&self) -> Arc<ActiveResponder> {
        self.responder
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What to send back for one request.
#[derive(Debug)]
pub enum OcspReply {
    /// A pre-signed response (with its caching headers).
    Cached(Arc<CachedResponse>),
    /// A response signed for this request.
    Live {
        /// The DER `OCSPResponse`.
        der: Vec<u8>,
        /// thisUpdate (for `Last-Modified`).
        this_update: i64,
        /// nextUpdate (for `Expires`, `max-age`).
        next_update: i64,
        /// Not for shared caches: it echoes the request's nonce, or the status changed while
        /// it was being signed (correct for this request, not to be kept).
        private: bool,
    },
    /// An error status without `responseBytes`.
    Error(OcspErrorStatus),
}

/// Timing and policy of the responder, from `[status]`.
#[derive(Debug, Clone)]
struct Settings {
    nonce: bool,
    unknown_serial: UnknownSerialAnswer,
    validity_secs: i64,
    refresh_secs: i64,
    responder_validity_days: u32,
    renew_secs: i64,
    interval: Duration,
    concurrency: usize,
    max_cert_ids: usize,
}

/// The OCSP responder for every issuing CA of the hierarchy.
pub struct OcspResponder {
    hsm: hsm::Hsm,
    signer: CaSigner,
    store: OcspStore,
    issuers: Vec<IssuerState>,
    settings: Settings,
    wake: Notify,
    /// Certificates issued since the pre-signer last ran (CA id, serial, notAfter if known):
    /// signed without a scan; those without notAfter have their status read first.
    issued: std::sync::Mutex<Vec<(i64, String, Option<i64>)>>,
    live: LiveBudget,
    /// Several nodes on one database: a CA's periodic pre-signing is done by the holder of lease
    /// `ocsp:<ca id>`; the others load what it stored.
    leases: Option<Leases>,
}

/// Slack when loading other nodes' responses by signing time (their clocks may differ a little).
const CLOCK_SLACK_SECS: i64 = 60;

/// Which cached response kind answers `id`.
fn cert_id_hash(id: &CertId) -> CertIdHash {
    match id.hash_algorithm() {
        HashAlgorithm::Sha1 => CertIdHash::Sha1,
        HashAlgorithm::Sha256 => CertIdHash::Sha256,
        HashAlgorithm::Sm3 => CertIdHash::Sm3,
    }
}

fn ts(unix: i64) -> Result<OffsetDateTime, StatusError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|_| StatusError::Time)
}

/// What [`OcspResponder::answer`] found without the database or the HSM.
enum Lookup<'a> {
    /// The complete answer.
    Done(OcspReply),
    /// A live signature is needed (or wanted: a nonce to echo).
    Live {
        req: OcspRequest,
        issuer: &'a IssuerState,
        now: i64,
        cached: Option<Arc<CachedResponse>>,
        echo: bool,
    },
}

impl OcspResponder {
    /// Makes sure every issuing CA has a current responder certificate (creating it in the
    /// HSM if missing or near expiry) and loads the stored pre-signed responses.
    pub async fn start(
        hsm: hsm::Hsm,
        signer: CaSigner,
        store: OcspStore,
        hierarchy: &Hierarchy,
        config: &StatusConfig,
        concurrency: usize,
    ) -> Result<OcspResponder, StatusError> {
        let settings = Settings {
            nonce: config.ocsp_nonce,
            unknown_serial: config.unknown_serial,
            validity_secs: i64::from(config.ocsp_validity_hours) * 3600,
            refresh_secs: i64::from(config.ocsp_refresh_hours) * 3600,
            responder_validity_days: config.responder_validity_days,
            renew_secs: i64::from(config.responder_renew_days) * 86_400,
            interval: Duration::from_secs(u64::from(config.presign_interval_secs)),
            concurrency: concurrency.max(1),
            max_cert_ids: config.ocsp_max_cert_ids as usize,
        };
        let now = unix_now();
        let mut issuers = Vec::new();
        // Every unexpired issuing CA generation keeps answering for its certificates.
        for ca in hierarchy.unexpired(now).filter(|c| c.parent_id.is_some()) {
            let mut rec = store.current_responder(ca.id).await?;
            // Resolve the stored key now: a key missing from the token means a new responder,
            // and a resolved key keeps signing (or fails as unavailable) if the token goes away.
            if let Some(r) = &rec {
                let key: Option<hsm::KeyUri> = r.key_uri.parse().ok();
                let usable = match key {
                    Some(k) => match hsm.key_kind(&k).await {
                        Ok(_) => true,
                        Err(hsm::HsmError::KeyNotFound { .. }) => false,
                        Err(e) => return Err(e.into()),
                    },
                    None => false,
                };
                if !usable {
                    tracing::warn!(ca = %ca.name, "OCSP responder key missing from the token; issuing a new responder");
                    rec = None;
                }
            }
            if responder::needs_renewal(rec.as_ref(), now, settings.renew_secs, ca.validity().1) {
                rec = Some(
                    responder::create(&hsm, &signer, &store, ca, settings.responder_validity_days)
                        .await?,
                );
            }
            let rec = rec.ok_or_else(|| StatusError::Build("responder missing".into()))?;
            let hashes = IssuerKeyHashes::from_cert_der(&ca.certificate_der)
                .map_err(|e| StatusError::Build(format!("CA {} certificate: {e}", ca.name)))?;
            let cache = ResponseCache::default();
            let stored = store.load_responses(ca.id, now).await?;
            let count = stored.len();
            cache.offer_all(stored.into_iter().filter_map(|r| {
                let serial = serial_bytes(&r.serial)?;
                Some((
                    serial,
                    r.status_seq,
                    Arc::new(CachedResponse::new(r.der, r.this_update, r.next_update)),
                ))
            }));
            tracing::info!(ca = %ca.name, responses = count, "OCSP responses loaded");
            issuers.push(IssuerState {
                ca: ca.clone(),
                hashes,
                responder: RwLock::new(Arc::new(ActiveResponder::from_record(&rec)?)),
                cache,
                loaded_since: AtomicI64::new(now),
            });
        }
        Ok(OcspResponder {
            hsm,
            signer,
            store,
            issuers,
            settings,
            wake: Notify::new(),
            issued: std::sync::Mutex::new(Vec::new()),
            live: LiveBudget::new(
                config.ocsp_live_concurrency as usize,
                config.ocsp_live_per_second,
            ),
            leases: None,
        })
    }

    /// Divides the periodic pre-signing with other nodes on the same database (see `leases`).
    pub fn shared_through(mut self, leases: Leases) -> Self {
        self.leases = Some(leases);
        self
    }

    /// Whether this node pre-signs `issuer`'s certificates now (always, alone); takes or renews
    /// the lease for three pre-signing intervals. A database error counts as not holding it.
    async fn presigns(&self, issuer: &IssuerState) -> bool {
        let Some(leases) = &self.leases else {
            return true;
        };
        let ttl = 3 * self.settings.interval.as_secs().max(1) as i64;
        match leases
            .take(&format!("ocsp:{}", issuer.ca.id), unix_now(), ttl)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(ca = %issuer.ca.name, error = %e, "OCSP pre-signing lease not taken");
                false
            }
        }
    }

    /// Caches the responses other nodes signed for `issuer` since this node last looked.
    async fn load_signed_elsewhere(&self, issuer: &IssuerState) -> Result<usize, StatusError> {
        let now = unix_now();
        let since = issuer.loaded_since.load(Ordering::Relaxed) - CLOCK_SLACK_SECS;
        let stored = self
            .store
            .load_responses_since(issuer.ca.id, now, since)
            .await?;
        let count = stored.len();
        issuer.cache.offer_all(stored.into_iter().filter_map(|r| {
            let serial = serial_bytes(&r.serial)?;
            Some((
                serial,
                r.status_seq,
                Arc::new(CachedResponse::new(r.der, r.this_update, r.next_update)),
            ))
        }));
        issuer.loaded_since.store(now, Ordering::Relaxed);
        Ok(count)
    }

    /// The responder certificate (DER) currently answering for CA `name`.
    pub fn responder_certificate(&self, name: &str) -> Option<Vec<u8>> {
        self.issuers
            .iter()
            .find(|i| i.ca.name == name)
            .map(|i| i.responder().cert_der.clone())
    }

    /// Number of pre-signed responses held in memory.
    pub fn cached_count(&self) -> usize {
        self.issuers.iter().map(|i| i.cache.len()).sum()
    }

    /// Per issuing CA: its name, the pre-signed responses held and the oldest one's thisUpdate.
    pub fn presigned_summary(&self) -> Vec<(String, usize, Option<i64>)> {
        self.issuers
            .iter()
            .map(|i| {
                let (count, oldest) = i.cache.summary();
                (i.ca.name.clone(), count, oldest)
            })
            .collect()
    }

    /// The pre-signing policy: responses are re-signed when fewer than this many seconds of
    /// validity remain (readiness calls one older than `validity - refresh` + margin stale).
    pub fn refresh_window(&self) -> (i64, i64) {
        (self.settings.validity_secs, self.settings.refresh_secs)
    }

    /// Queues a just-issued certificate for pre-signing and wakes the pre-signer; its status is
    /// read when it is signed.
    pub fn certificate_issued(&self, ca_id: i64, serial: &str) {
        self.queue_issued(ca_id, serial, None);
    }

    /// As [`OcspResponder::certificate_issued`] for a certificate whose notAfter the caller
    /// knows: it is signed `good` for status version 0 (its status at issuance) without reading
    /// it back. Should a revocation have won the race, the store keeps only the response for
    /// the newer version and that change re-signs it.
    pub fn certificate_issued_valid(&self, ca_id: i64, serial: &str, not_after: i64) {
        self.queue_issued(ca_id, serial, Some(not_after));
    }

    fn queue_issued(&self, ca_id: i64, serial: &str, not_after: Option<i64>) {
        self.issued.lock().unwrap_or_else(|p| p.into_inner()).push((
            ca_id,
            serial.to_owned(),
            not_after,
        ));
        self.wake.notify_one();
    }

    /// Pre-signs the queued just-issued certificates (a failure is left to the periodic pass).
    async fn presign_issued(&self) -> usize {
        let queued = std::mem::take(&mut *self.issued.lock().unwrap_or_else(|p| p.into_inner()));
        let mut signed = 0;
        for issuer in &self.issuers {
            let mut rows = Vec::new();
            let mut unread = Vec::new();
            for (ca_id, serial, not_after) in &queued {
                match not_after {
                    _ if *ca_id != issuer.ca.id => {}
                    Some(not_after) => rows.push(CertStatusRow {
                        ca_id: *ca_id,
                        serial: serial.clone(),
                        status: "valid".to_owned(),
                        revoked_at: None,
                        revocation_reason: None,
                        not_after: *not_after,
                        status_seq: 0,
                    }),
                    None => unread.push(serial.clone()),
                }
            }
            for chunk in unread.chunks(PRESIGN_BATCH as usize) {
                match self.store.statuses_of(issuer.ca.id, chunk).await {
                    Ok(read) => rows.extend(read),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading new certificates for pre-signing failed; the periodic pass retries");
                    }
                }
            }
            for chunk in rows.chunks(PRESIGN_BATCH as usize) {
                let (count, err) = self.presign(issuer, chunk).await;
                signed += count;
                if let Some(e) = err {
                    tracing::warn!(error = %e, "pre-signing new certificates failed; the periodic pass retries");
                }
            }
        }
        signed
    }

    fn issuer_of(&self, id: &CertId) -> Option<&IssuerState> {
        self.issuers.iter().find(|i| i.hashes.matches(id))
    }

    /// The answer to `der` when it needs neither the database nor the HSM (a malformed or
    /// foreign request, a pre-signed response without a nonce to echo); `None` otherwise
    /// ([`Self::answer`] then reads the status and signs).
    pub fn answer_ready(&self, der: &[u8]) -> Option<OcspReply> {
        match self.lookup(der) {
            Lookup::Done(reply) => Some(reply),
            Lookup::Live { .. } => None,
        }
    }

    fn lookup(&self, der: &[u8]) -> Lookup<'_> {
        let req = match OcspRequest::parse(der) {
            Ok(r) => r,
            Err(e) => return Lookup::Done(OcspReply::Error(e.response_status())),
        };
        if req.cert_ids.len() > self.settings.max_cert_ids {
            return Lookup::Done(OcspReply::Error(OcspErrorStatus::MalformedRequest));
        }
        let mut issuer: Option<&IssuerState> = None;
        for id in &req.cert_ids {
            let Some(found) = self.issuer_of(id) else {
                return Lookup::Done(OcspReply::Error(OcspErrorStatus::Unauthorized));
            };
            match issuer {
                // One response has one signer: CertIDs of different issuers cannot share it.
                Some(prev) if prev.ca.id != found.ca.id => {
                    return Lookup::Done(OcspReply::Error(OcspErrorStatus::Unauthorized))
                }
                _ => issuer = Some(found),
            }
        }
        let Some(issuer) = issuer else {
            return Lookup::Done(OcspReply::Error(OcspErrorStatus::MalformedRequest));
        };
        let now = unix_now();
        let echo = self.settings.nonce && req.nonce.is_some();
        let cached = match req.cert_ids.as_slice() {
            [id] => issuer.cache.get(id.serial(), cert_id_hash(id), now),
            _ => None,
        };
        if let (Some(hit), false) = (&cached, echo) {
            return Lookup::Done(OcspReply::Cached(hit.clone()));
        }
        Lookup::Live {
            req,
            issuer,
            now,
            cached,
            echo,
        }
    }

    /// Answers one DER `OCSPRequest` (POST body or decoded GET path).
    pub async fn answer(&self, der: &[u8]) -> OcspReply {
        let (req, issuer, now, cached, echo) = match self.lookup(der) {
            Lookup::Done(reply) => return reply,
            Lookup::Live {
                req,
                issuer,
                now,
                cached,
                echo,
            } => (req, issuer, now, cached, echo),
        };
        let Some(_permit) = self.live.acquire().await else {
            // Over budget: a nonce is optional for the responder (RFC 8954), so the pre-signed
            // answer without it is still correct; anything else waits for later.
            return match cached {
                Some(hit) => OcspReply::Cached(hit),
                None => OcspReply::Error(OcspErrorStatus::TryLater),
            };
        };
        match self.sign_live(issuer, &req, echo, now).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(error = %e, "live OCSP signing failed");
                OcspReply::Error(e.ocsp_status())
            }
        }
    }

    /// Signs one response for the whole request from the status read now; keeps it (memory,
    /// and the database for SHA-1) when it is the plain single-CertID kind.
    async fn sign_live(
        &self,
        issuer: &IssuerState,
        req: &OcspRequest,
        echo: bool,
        now: i64,
    ) -> Result<OcspReply, StatusError> {
        let responder = issuer.responder();
        let next_update = (now + self.settings.validity_secs).min(responder.not_after);
        let mut data = ResponseData::new(responder.key_hash, ts(now)?);
        let mut rows = Vec::with_capacity(req.cert_ids.len());
        for id in &req.cert_ids {
            let row = self
                .store
                .status_of(issuer.ca.id, &hex::encode(id.serial()))
                .await?;
            let (status, extended) = self.status_for(row.as_ref(), now)?;
            data.extended_revoke |= extended;
            data.responses.push(SingleResponse {
                cert_id: id.clone(),
                status,
                this_update: ts(now)?,
                next_update: ts(next_update)?,
            });
            rows.push(row);
        }
        if echo {
            data.nonce = req.nonce.clone();
        }
        let der = self.sign(&responder, &data).await?;
        if let ([id], [Some(row)], false) = (req.cert_ids.as_slice(), rows.as_slice(), echo) {
            let hash = cert_id_hash(id);
            let mut kept = true;
            if hash == CertIdHash::Sha1 {
                let stored = StoredResponse {
                    ca_id: issuer.ca.id,
                    serial: row.serial.clone(),
                    der: der.clone(),
                    this_update: now,
                    next_update,
                    status_seq: row.status_seq,
                };
                match self.store.save_responses(vec![stored]).await {
                    Ok(flags) => kept = flags.first().copied().unwrap_or(false),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not store a live-signed OCSP response")
                    }
                }
            }
            let cached = Arc::new(CachedResponse::new(der.clone(), now, next_update));
            if kept
                && issuer
                    .cache
                    .offer(id.serial(), row.status_seq, hash, cached.clone())
            {
                return Ok(OcspReply::Cached(cached));
            }
            // The status changed while this was signed: right for this request, never kept.
            return Ok(OcspReply::Live {
                der,
                this_update: now,
                next_update,
                private: true,
            });
        }
        Ok(OcspReply::Live {
            der,
            this_update: now,
            next_update,
            private: echo,
        })
    }

    /// The status to state for a stored row (or a never-issued serial), and whether the
    /// extended-revoke extension is needed.
    fn status_for(
        &self,
        row: Option<&CertStatusRow>,
        now: i64,
    ) -> Result<(CertStatus, bool), StatusError> {
        let Some(row) = row else {
            return Ok(match self.settings.unknown_serial {
                UnknownSerialAnswer::Unknown => (CertStatus::Unknown, false),
                UnknownSerialAnswer::Revoked => (CertStatus::never_issued_revoked(), true),
            });
        };
        let revoked = |reason: Option<Reason>| -> Result<CertStatus, StatusError> {
            Ok(CertStatus::Revoked {
                time: ts(row.revoked_at.unwrap_or(now))?,
                reason,
            })
        };
        let status = match row.status.as_str() {
            "revoked" => revoked(
                row.revocation_reason
                    .and_then(|c| u8::try_from(c).ok())
                    .and_then(Reason::from_code),
            )?,
            "hold" => revoked(Some(Reason::CertificateHold))?,
            // `good` only for unexpired certificates.
            "valid" if row.not_after > now => CertStatus::Good,
            _ => CertStatus::Unknown,
        };
        Ok((status, false))
    }

    async fn sign(
        &self,
        responder: &ActiveResponder,
        data: &ResponseData,
    ) -> Result<Vec<u8>, StatusError> {
        let tbs = data.tbs_der()?;
        let signature = self
            .hsm
            .sign(&responder.key, responder.algorithm, &tbs)
            .await?;
        Ok(ocsp::assemble(
            &tbs,
            &responder.algorithm.algorithm_identifier(),
            &signature,
            &[&responder.cert_der],
        )?)
    }

    /// Signs the canonical (SHA-1 CertID) response for one stored certificate.
    async fn presign_one(
        &self,
        issuer: &IssuerState,
        row: &CertStatusRow,
        now: i64,
    ) -> Result<(Vec<u8>, StoredResponse), StatusError> {
        let serial = serial_bytes(&row.serial)
            .ok_or_else(|| StatusError::Build(format!("stored serial {:?}", row.serial)))?;
        let cert_id = CertId::new(HashAlgorithm::Sha1, &issuer.hashes, &serial)
            .map_err(|e| StatusError::Build(e.to_string()))?;
        let responder = issuer.responder();
        let next_update = (now + self.settings.validity_secs).min(responder.not_after);
        let (status, extended) = self.status_for(Some(row), now)?;
        let mut data =
            ResponseData::new(responder.key_hash, ts(now)?).with_response(SingleResponse {
                cert_id,
                status,
                this_update: ts(now)?,
                next_update: ts(next_update)?,
            });
        data.extended_revoke = extended;
        let der = self.sign(&responder, &data).await?;
        Ok((
            serial,
            StoredResponse {
                ca_id: issuer.ca.id,
                serial: row.serial.clone(),
                der,
                this_update: now,
                next_update,
                status_seq: row.status_seq,
            },
        ))
    }

    /// Signs, stores and caches responses for `rows`; returns how many succeeded.
    async fn presign(
        &self,
        issuer: &IssuerState,
        rows: &[CertStatusRow],
    ) -> (usize, Option<StatusError>) {
        let now = unix_now();
        let results: Vec<_> = futures_util::stream::iter(rows.to_vec())
            .map(|row| async move { self.presign_one(issuer, &row, now).await })
            .buffer_unordered(self.settings.concurrency)
            .collect()
            .await;
        let mut first_error = None;
        let mut done = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(ok) => done.push(ok),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let stored: Vec<StoredResponse> = done.iter().map(|(_, s)| s.clone()).collect();
        let kept = match self.store.save_responses(stored).await {
            Ok(kept) => kept,
            Err(e) => return (0, Some(e.into())),
        };
        // Only what the database kept (signed for the current status version) is cached; the
        // cache refuses it anyway if a newer version arrived in between.
        let current: Vec<_> = done
            .into_iter()
            .zip(kept)
            .filter_map(|(item, kept)| kept.then_some(item))
            .collect();
        let count = current.len();
        issuer
            .cache
            .offer_all(current.into_iter().map(|(serial, s)| {
                (
                    serial,
                    s.status_seq,
                    Arc::new(CachedResponse::new(s.der, s.this_update, s.next_update)),
                )
            }));
        (count, first_error)
    }

    /// A certificate's status changed to version `status_seq` (committed): its answers for
    /// older versions are withdrawn from memory at once, then it is re-signed from the status
    /// read now. On failure the certificate is answered live (within budget) or `tryLater`
    /// until the periodic pass re-signs it; the stale response is never served again.
    pub async fn on_status_change(
        &self,
        ca_id: i64,
        serial: &str,
        status_seq: i64,
    ) -> Result<(), StatusError> {
        let Some(issuer) = self.issuers.iter().find(|i| i.ca.id == ca_id) else {
            return Ok(()); // not an issuing CA we answer for
        };
        if let Some(bytes) = serial_bytes(serial) {
            issuer.cache.invalidate(&bytes, status_seq);
        }
        let row = self
            .store
            .status_of(ca_id, serial)
            .await?
            .ok_or_else(|| StatusError::Build("certificate vanished".into()))?;
        match self.presign(issuer, std::slice::from_ref(&row)).await {
            (1, _) => Ok(()),
            (_, Some(e)) => Err(e),
            // Not kept: an even newer change won, and its own re-sign covers it.
            _ => Ok(()),
        }
    }

    /// The CA row ids this responder answers for (the issuing CA generations).
    pub fn issuer_ids(&self) -> Vec<i64> {
        self.issuers.iter().map(|i| i.ca.id).collect()
    }

    /// A status change read from the change feed (committed by any node): unless this node
    /// already holds an answer for that version (its own change), the stale answer is withdrawn
    /// and the answer the changing node stored is taken, or reported missing.
    pub async fn on_feed_change(
        &self,
        ca_id: i64,
        serial: &str,
        status_seq: i64,
    ) -> Result<FeedChange, StatusError> {
        let Some(issuer) = self.issuers.iter().find(|i| i.ca.id == ca_id) else {
            return Ok(FeedChange::Held);
        };
        let Some(bytes) = serial_bytes(serial) else {
            return Ok(FeedChange::Held);
        };
        if issuer.cache.holds_version(&bytes, status_seq) {
            return Ok(FeedChange::Held);
        }
        // The stale answer goes at once; until an answer for the new version is cached the
        // certificate is answered live (within budget) or `tryLater`, never from the old one.
        issuer.cache.invalidate(&bytes, status_seq);
        if self.adopt(ca_id, serial, status_seq).await? {
            Ok(FeedChange::Adopted)
        } else {
            Ok(FeedChange::Missing)
        }
    }

    /// A change whose stored answer was [`FeedChange::Missing`], after [`ADOPT_WAIT`]: the
    /// answer the changing node stored if it has come (`true`), else one signed here.
    pub async fn adopt_or_sign(
        &self,
        ca_id: i64,
        serial: &str,
        status_seq: i64,
    ) -> Result<bool, StatusError> {
        if self.adopt(ca_id, serial, status_seq).await? {
            return Ok(true);
        }
        self.on_status_change(ca_id, serial, status_seq).await?;
        Ok(false)
    }

    /// Caches the answer some node stored for `serial` at status version `status_seq`, if there
    /// is one; whether it was there.
    async fn adopt(&self, ca_id: i64, serial: &str, status_seq: i64) -> Result<bool, StatusError> {
        let (Some(issuer), Some(bytes)) = (
            self.issuers.iter().find(|i| i.ca.id == ca_id),
            serial_bytes(serial),
        ) else {
            return Ok(false);
        };
        let stored = self
            .store
            .response_for_version(ca_id, serial, status_seq, unix_now())
            .await?;
        Ok(stored.is_some_and(|r| {
            let cached = CachedResponse::new(r.der, r.this_update, r.next_update);
            issuer
                .cache
                .offer_all([(bytes, status_seq, Arc::new(cached))]);
            true
        }))
    }

    /// One pass: renew responder certificates near expiry, pre-sign every certificate whose
    /// response is missing or due for refresh, drop expired responses from memory.
    pub async fn refresh_once(&self) -> Result<usize, StatusError> {
        let mut signed = 0;
        for issuer in &self.issuers {
            let now = unix_now();
            let current = issuer.responder();
            // Near the CA's own expiry a responder cannot outlive it: renewing would loop.
            if current.not_after - now < self.settings.renew_secs
                && current.not_after < issuer.ca.validity().1
            {
                let rec = responder::create(
                    &self.hsm,
                    &self.signer,
                    &self.store,
                    &issuer.ca,
                    self.settings.responder_validity_days,
                )
                .await?;
                *issuer.responder.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(ActiveResponder::from_record(&rec)?);
            }
            if !self.presigns(issuer).await {
                self.load_signed_elsewhere(issuer).await?;
                issuer.cache.purge_expired(unix_now());
                continue;
            }
            loop {
                let now = unix_now();
                let rows = self
                    .store
                    .due_for_signing(
                        issuer.ca.id,
                        now + self.settings.refresh_secs,
                        now,
                        now - SETTLE_SECS,
                        PRESIGN_BATCH,
                    )
                    .await?;
                if rows.is_empty() {
                    break;
                }
                let (count, err) = self.presign(issuer, &rows).await;
                signed += count;
                if let Some(e) = err {
                    return Err(e);
                }
                // Renewed per batch (a long pass outlives one lease); lost: the new holder goes on.
                if count < rows.len() || !self.presigns(issuer).await {
                    break;
                }
            }
            issuer.cache.purge_expired(unix_now());
        }
        Ok(signed)
    }

    /// Runs the full [`OcspResponder::refresh_once`] pass every interval, and signs newly
    /// issued certificates whenever woken (a wake never scans the certificates table). Under
    /// load the queue fills while a batch is being signed, so batches grow by themselves.
    pub async fn run(self: Arc<Self>) {
        let mut full_pass = true;
        loop {
            if full_pass {
                match self.refresh_once().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(signed = n, "OCSP responses pre-signed"),
                    Err(e) => tracing::warn!(error = %e, "OCSP pre-signing pass failed"),
                }
            }
            let n = self.presign_issued().await;
            if n > 0 {
                tracing::debug!(signed = n, "OCSP responses pre-signed for new certificates");
            }
            full_pass = tokio::select! {
                () = tokio::time::sleep(self.settings.interval) => true,
                () = self.wake.notified() => false,
            };
        }
    }
}
