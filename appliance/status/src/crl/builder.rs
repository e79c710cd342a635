//! Streaming CRL builder: entries go to an unnamed temp file, so memory stays bounded at any
//! entry count; the TBS digest is computed over the exact bytes later written.

use super::entry::{encode_entry, RevokedEntry};
use crate::der_read::single;
use crate::der_write::{
    push_extension, push_header, push_tlv, tlv, tlv_len, uint_content, BIT_STRING, INTEGER,
    SEQUENCE,
};
use crate::serial::InvalidSerial;
use crate::time_enc::{push_x509_time, TimeOutOfRange};
use const_oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_CRL_NUMBER, ID_CE_DELTA_CRL_INDICATOR,
    ID_CE_FRESHEST_CRL, ID_CE_ISSUING_DISTRIBUTION_POINT,
};
use der::Encode;
use sha2::{Digest, Sha256, Sha384};
use spki::AlgorithmIdentifierOwned;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use time::OffsetDateTime;

/// Spool and copy buffer size.
const CHUNK: usize = 64 * 1024;

/// Hash the signer needs over the TBSCertList (must match `sig_alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrlDigest {
    /// SHA-256 (ecdsa-with-SHA256, sha256WithRSAEncryption, ...).
    Sha256,
    /// SHA-384 (ecdsa-with-SHA384, ...).
    Sha384,
    /// SM3withSM2: e = SM3(Z || TBS), with Z (from the CA key and signer ID) given.
    Sm3WithZ([u8; 32]),
}

/// Everything about a CRL except its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlParams {
    /// The issuer's subject Name DER, byte-identical to the CA certificate's subject.
    pub issuer_name_der: Vec<u8>,
    /// The CA's subjectKeyIdentifier, written as AKI keyIdentifier.
    pub authority_key_id: Vec<u8>,
    /// CRLNumber; full and delta CRLs share one strictly increasing sequence.
    pub crl_number: u128,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate (always written; the caller keeps it within its policy, e.g. 10 days).
    pub next_update: OffsetDateTime,
    /// `Some(base)` makes this a delta CRL against full CRL number `base` (< `crl_number`).
    pub delta_of: Option<u128>,
    /// freshestCRL URI pointing at the delta CRLs; full CRLs only.
    pub freshest_crl_url: Option<String>,
    /// `Some(uri)` makes this a partition (shard) CRL: a critical issuingDistributionPoint
    /// naming `uri` (the CRL distribution point of the certificates it covers) with
    /// onlyContainsUserCerts, as RFC 5280 5.2.5 requires for a CRL that covers only a subset.
    pub issuing_distribution_point: Option<String>,
    /// signature AlgorithmIdentifier, written in the TBS and outside it.
    pub sig_alg: AlgorithmIdentifierOwned,
    /// Digest [`PendingCrl::digest`] computes; must be the one `sig_alg` names.
    pub digest: CrlDigest,
}

/// Why a CRL could not be built. Never contains entry data beyond its kind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// Spool file I/O or writing the output failed.
    #[error("CRL I/O: {0}")]
    Io(#[from] io::Error),
    /// A timestamp outside 0000..=9999.
    #[error(transparent)]
    Time(#[from] TimeOutOfRange),
    /// An entry serial is not a valid certificate serial.
    #[error(transparent)]
    InvalidSerial(#[from] InvalidSerial),
    /// removeFromCRL on a full CRL (RFC 5280 5.3.1: delta CRLs only).
    #[error("removeFromCRL is only allowed on delta CRLs")]
    RemoveFromCrlOnFullCrl,
    /// freshestCRL on a delta CRL (RFC 5280 5.2.6: not in delta CRLs).
    #[error("freshestCRL is only allowed on full CRLs")]
    FreshestCrlOnDelta,
    /// The freshestCRL or issuingDistributionPoint URI is empty or not IA5 (ASCII).
    #[error("CRL URIs must be non-empty ASCII")]
    InvalidUrl,
    /// The delta's base CRL number is not below its own number.
    #[error("delta CRL base number must be below the CRL number")]
    DeltaBaseNotBelowNumber,
    /// `issuer_name_der` is not one DER SEQUENCE.
    #[error("issuer name is not a DER Name")]
    InvalidIssuerName,
    /// The authority key identifier is empty.
    #[error("authority key identifier is empty")]
    EmptyAuthorityKeyId,
    /// nextUpdate is not after thisUpdate.
    #[error("CRL nextUpdate not after thisUpdate")]
    NextUpdateNotAfterThisUpdate,
    /// The signature algorithm identifier could not be encoded.
    #[error("signature algorithm identifier not encodable")]
    SignatureAlgorithm,
    /// The signature is empty.
    #[error("empty signature")]
    EmptySignature,
}

/// Accumulates entries for one CRL; [`CrlBuilder::finish`] yields the digest to sign.
#[derive(Debug)]
pub struct CrlBuilder {
    params: CrlParams,
    sig_alg_der: Vec<u8>,
    spool: BufWriter<File>,
    entries_len: usize,
    count: u64,
    scratch: Vec<u8>,
}

impl CrlBuilder {
    /// Validates `params` and opens the unnamed spool file (in the system temp dir).
    pub fn new(params: CrlParams) -> Result<Self, CrlError> {
        if single(&params.issuer_name_der, SEQUENCE).is_err() {
            return Err(CrlError::InvalidIssuerName);
        }
        if params.authority_key_id.is_empty() {
            return Err(CrlError::EmptyAuthorityKeyId);
        }
        if params.next_update <= params.this_update {
            return Err(CrlError::NextUpdateNotAfterThisUpdate);
        }
        if let Some(base) = params.delta_of {
            if base >= params.crl_number {
                return Err(CrlError::DeltaBaseNotBelowNumber);
            }
            if params.freshest_crl_url.is_some() {
                return Err(CrlError::FreshestCrlOnDelta);
            }
        }
        for url in [&params.freshest_crl_url, &params.issuing_distribution_point]
            .into_iter()
            .flatten()
        {
            if url.is_empty() || !url.is_ascii() {
                return Err(CrlError::InvalidUrl);
            }
        }
        let sig_alg_der = params
            .sig_alg
            .to_der()
            .map_err(|_| CrlError::SignatureAlgorithm)?;
        let spool = BufWriter::with_capacity(CHUNK, tempfile::tempfile()?);
        Ok(Self {
            params,
            sig_alg_der,
            spool,
            entries_len: 0,
            count: 0,
            scratch: Vec::with_capacity(128),
        })
    }

    /// Appends one entry. The caller supplies each serial once (entries are not deduplicated).
    pub fn push(&mut self, entry: &RevokedEntry) -> Result<(), CrlError> {
        encode_entry(&mut self.scratch, entry, self.params.delta_of.is_some())?;
        self.spool.write_all(&self.scratch)?;
        self.entries_len += self.scratch.len();
        self.count += 1;
        Ok(())
    }

    /// Number of entries pushed so far.
    pub fn entry_count(&self) -> u64 {
        self.count
    }

    /// Closes the entry list and hashes the complete TBSCertList.
    pub fn finish(self) -> Result<PendingCrl, CrlError> {
        let p = &self.params;
        let mut fields = Vec::with_capacity(512);
        fields.extend_from_slice(&[INTEGER, 1, 1]); // v2
        fields.extend_from_slice(&self.sig_alg_der);
        fields.extend_from_slice(&p.issuer_name_der);
        push_x509_time(&mut fields, p.this_update)?;
        push_x509_time(&mut fields, p.next_update)?;
        let tail = crl_extensions(p)?;

        let revoked_len = if self.count == 0 {
            0 // no revokedCertificates field at all, never an empty SEQUENCE
        } else {
            tlv_len(self.entries_len)
        };
        let tbs_content_len = fields.len() + revoked_len + tail.len();
        let mut head = Vec::with_capacity(fields.len() + 16);
        push_header(&mut head, SEQUENCE, tbs_content_len);
        head.extend_from_slice(&fields);
        if self.count > 0 {
            push_header(&mut head, SEQUENCE, self.entries_len);
        }

        let mut spool = self.spool.into_inner().map_err(|e| e.into_error())?;
        let mut hasher = Hasher::new(p.digest);
        hasher.update(&head);
        spool.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; CHUNK];
        let mut remaining = self.entries_len;
        while remaining > 0 {
            let n = spool.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            let n = n.min(remaining);
            hasher.update(&buf[..n]);
            remaining -= n;
        }
        hasher.update(&tail);
        Ok(PendingCrl {
            head,
            spool,
            entries_len: self.entries_len,
            tail,
            sig_alg_der: self.sig_alg_der,
            digest: hasher.finish(),
            tbs_len: tlv_len(tbs_content_len),
            count: self.count,
        })
    }
}

/// A CRL whose TBS is fixed and hashed, waiting for its signature. Consumed by
/// [`PendingCrl::write_signed`], so one TBS is signed and written at most once.
#[derive(Debug)]
pub struct PendingCrl {
    head: Vec<u8>,
    spool: File,
    entries_len: usize,
    tail: Vec<u8>,
    sig_alg_der: Vec<u8>,
    digest: Vec<u8>,
    tbs_len: usize,
    count: u64,
}

impl PendingCrl {
    /// Hash of the exact TBSCertList bytes, under `CrlParams::digest`: what the HSM signs
    /// (CKM_ECDSA takes it as is; RSA PKCS#1 v1.5 needs it wrapped in a DigestInfo).
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// Number of revoked entries on this CRL.
    pub fn entry_count(&self) -> u64 {
        self.count
    }

    /// Length in bytes of the TBSCertList.
    pub fn tbs_len(&self) -> usize {
        self.tbs_len
    }

    /// Streams the TBSCertList alone (for a pre-sign lint with a throwaway key).
    pub fn write_tbs(&mut self, out: &mut impl Write) -> Result<(), CrlError> {
        out.write_all(&self.head)?;
        copy_spool(&mut self.spool, self.entries_len, out)?;
        out.write_all(&self.tail)?;
        Ok(())
    }

    /// Streams the signed DER `CertificateList` into `out`; returns the bytes written.
    /// `signature` is in X.509 form (ECDSA: DER `Ecdsa-Sig-Value`).
    pub fn write_signed(mut self, signature: &[u8], out: &mut impl Write) -> Result<u64, CrlError> {
        if signature.is_empty() {
            return Err(CrlError::EmptySignature);
        }
        let mut trailer = Vec::with_capacity(self.sig_alg_der.len() + signature.len() + 8);
        trailer.extend_from_slice(&self.sig_alg_der);
        push_header(&mut trailer, BIT_STRING, signature.len() + 1);
        trailer.push(0);
        trailer.extend_from_slice(signature);
        let content_len = self.tbs_len + trailer.len();
        let mut outer = Vec::with_capacity(8);
        push_header(&mut outer, SEQUENCE, content_len);
        out.write_all(&outer)?;
        self.write_tbs(out)?;
        out.write_all(&trailer)?;
        out.flush()?;
        Ok((outer.len() + content_len) as u64)
    }
}

/// Copies the first `len` spooled bytes to `out`.
fn copy_spool(spool: &mut File, len: usize, out: &mut impl Write) -> Result<(), CrlError> {
    spool.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    let mut remaining = len;
    while remaining > 0 {
        let n = spool.read(&mut buf[..CHUNK.min(remaining)])?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        out.write_all(&buf[..n])?;
        remaining -= n;
    }
    Ok(())
}

/// The `[0] EXPLICIT Extensions` of the CRL: AKI, CRLNumber, then deltaCRLIndicator
/// (critical, deltas) or freshestCRL (full CRLs with a delta URL), then the critical
/// issuingDistributionPoint of a partition CRL.
fn crl_extensions(p: &CrlParams) -> Result<Vec<u8>, CrlError> {
    let mut exts = Vec::with_capacity(256);
    let aki = tlv(SEQUENCE, &tlv(0x80, &p.authority_key_id));
    push_extension(
        &mut exts,
        ID_CE_AUTHORITY_KEY_IDENTIFIER.as_bytes(),
        false,
        &aki,
    );
    let number = tlv(INTEGER, &uint_content(p.crl_number));
    push_extension(&mut exts, ID_CE_CRL_NUMBER.as_bytes(), false, &number);
    if let Some(base) = p.delta_of {
        let base = tlv(INTEGER, &uint_content(base));
        push_extension(&mut exts, ID_CE_DELTA_CRL_INDICATOR.as_bytes(), true, &base);
    }
    if let Some(url) = &p.freshest_crl_url {
        // CRLDistributionPoints ::= SEQUENCE OF DistributionPoint
        // DistributionPoint { distributionPoint [0] { fullName [0] GeneralNames { [6] URI } } }
        let uri = tlv(0x86, url.as_bytes());
        let full_name = tlv(0xa0, &uri);
        let dp_name = tlv(0xa0, &full_name);
        let dp = tlv(SEQUENCE, &dp_name);
        let value = tlv(SEQUENCE, &dp);
        push_extension(&mut exts, ID_CE_FRESHEST_CRL.as_bytes(), false, &value);
    }
    if let Some(url) = &p.issuing_distribution_point {
        // IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0] { fullName [0] { [6] URI } },
        //                                         onlyContainsUserCerts [1] BOOLEAN TRUE }
        let uri = tlv(0x86, url.as_bytes());
        let full_name = tlv(0xa0, &uri);
        let mut idp = tlv(0xa0, &full_name);
        idp.extend_from_slice(&[0x81, 1, 0xff]);
        let value = tlv(SEQUENCE, &idp);
        push_extension(
            &mut exts,
            ID_CE_ISSUING_DISTRIBUTION_POINT.as_bytes(),
            true,
            &value,
        );
    }
    let mut out = Vec::with_capacity(exts.len() + 8);
    let seq = tlv(SEQUENCE, &exts);
    push_tlv(&mut out, 0xa0, &seq);
    Ok(out)
}

/// The running TBS hash.
enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sm3(sm3::Sm3),
}

impl Hasher {
    fn new(d: CrlDigest) -> Self {
        match d {
            CrlDigest::Sha256 => Hasher::Sha256(Sha256::new()),
            CrlDigest::Sha384 => Hasher::Sha384(Sha384::new()),
            CrlDigest::Sm3WithZ(z) => {
                let mut h = sm3::Sm3::new();
                h.update(z);
                Hasher::Sm3(h)
            }
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sm3(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sm3(h) => h.finalize().to_vec(),
        }
    }
}
