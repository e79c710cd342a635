//! OCSP and CRL wire formats (RFC 6960, RFC 5019, RFC 5280 section 5).
//!
//! Pure encoding and decoding: no network, no database, no keys. The only I/O is an unnamed
//! temp file that spools CRL entries so a CRL of any size is built in bounded memory. Signing
//! is two-phase so the HSM call (async, fallible, maybe remote) stays with the caller:
//! this crate produces the bytes (or digest) to sign, the caller signs, this crate assembles.
//!
//! # OCSP: answering a request
//!
//! ```text
//! body / GET segment ──► ocsp::decode_get_path (GET only) ──► OcspRequest::parse
//!     Err(e)  ──► ocsp::error_response(e.response_status())     (HTTP 200, 5 bytes)
//!     Ok(req) ──► for each req.cert_ids: find the issuer by
//!                 (cert_id.hash_algorithm(), cert_id.issuer_key_hash()) in a map built from
//!                 IssuerKeyHashes::from_cert_der(ca_cert), confirm with IssuerKeyHashes::matches
//!                 none ──► error_response(OcspErrorStatus::Unauthorized)
//! ```
//!
//! Then either serve a pre-signed response or sign live:
//!
//! ```text
//! let data = ResponseData::new(responder_hashes.sha1_key, now)
//!     .with_response(SingleResponse { cert_id, status, this_update, next_update });
//! // data.nonce = req.nonce.clone();        only when signing live for this request
//! // data.extended_revoke = true;           with CertStatus::never_issued_revoked()
//! let tbs = data.tbs_der()?;                // bytes to sign
//! let sig = hsm.sign(&tbs).await?;          // X.509 form; signature::ecdsa_raw_to_der for CKM_ECDSA
//! let der = ocsp::assemble(&tbs, &sig_alg, &sig, &[responder_cert_der])?;
//! ```
//!
//! HSM unreachable: `error_response(OcspErrorStatus::TryLater)`. Errors carry no responseBytes.
//!
//! **Pre-signing.** A pre-signed response is the full `OCSPResponse` DER for one certificate,
//! built with `CertId::new(HashAlgorithm::Sha1, &issuer_hashes, serial)` (what `openssl ocsp`
//! and RFC 5019 clients send). Store it keyed by (issuer, serial); serve it when the request
//! has one CertID, SHA-1, matching issuer, and either no nonce or nonces are not echoed.
//! SHA-256 CertIDs: the server signs live (one HSM call) and may cache that response under
//! (issuer, serial, Sha256) until the pre-signed one is refreshed; we do not pre-sign both,
//! to halve HSM load. Several CertIDs in one request: sign live, one `SingleResponse` each.
//! A live response must echo the requested `CertId` (it does: its exact DER is copied).
//! Caching headers come from `this_update` / `next_update`, which the caller chose.
//!
//! # CRL
//!
//! ```text
//! let mut b = CrlBuilder::new(CrlParams { issuer_name_der, authority_key_id, crl_number,
//!     this_update, next_update, delta_of: None, freshest_crl_url: Some(url),
//!     issuing_distribution_point: None,
//!     sig_alg, digest: CrlDigest::Sha256 })?;
//! for row in revoked_rows { b.push(&RevokedEntry { serial, revocation_date, reason, invalidity_date })?; }
//! let pending = b.finish()?;                // hashes the exact TBSCertList
//! let sig = hsm.sign_digest(pending.digest()).await?;
//! pending.write_signed(&sig, &mut file)?;   // streams the CertificateList
//! ```
//!
//! Delta CRLs: `delta_of: Some(base_number)`, no `freshest_crl_url`; `RemoveFromCrl` entries
//! are allowed only there. The caller owns CRL number allocation (strictly increasing, shared
//! by full and delta CRLs), entry uniqueness, and the validity-window policy.

mod der_read;
mod der_write;
mod reason;
mod serial;
mod time_enc;

pub mod crl;
pub mod ocsp;
pub mod signature;

pub use der_read::DerError;
pub use reason::Reason;
pub use serial::{check_serial, InvalidSerial, MAX_SERIAL_LEN};
pub use time_enc::TimeOutOfRange;
