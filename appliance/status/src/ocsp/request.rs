//! `OCSPRequest` (RFC 6960 4.1.1), parsed strictly.
//!
//! ```text
//! OCSPRequest ::= SEQUENCE {
//!     tbsRequest              TBSRequest,
//!     optionalSignature   [0] EXPLICIT Signature OPTIONAL }
//! TBSRequest ::= SEQUENCE {
//!     version             [0] EXPLICIT Version DEFAULT v1,
//!     requestorName       [1] EXPLICIT GeneralName OPTIONAL,
//!     requestList             SEQUENCE OF Request,
//!     requestExtensions   [2] EXPLICIT Extensions OPTIONAL }
//! Request ::= SEQUENCE {
//!     reqCert                     CertID,
//!     singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
//! ```

use super::cert_id::CertId;
use super::response::OcspErrorStatus;
use crate::der_read::{single, DerError, Reader};
use crate::der_write::{BOOLEAN, INTEGER, OCTET_STRING, OID, SEQUENCE};
use const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE;

/// Largest nonce accepted (RFC 9654; RFC 8954 said 32).
pub const MAX_NONCE_LEN: usize = 128;

/// Why a request was refused. Each maps to an OCSP error status via
/// [`OcspRequestError::response_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspRequestError {
    /// Not DER, truncated, trailing bytes, wrong tags or values.
    #[error("malformed OCSP request: {0}")]
    Malformed(#[from] DerError),
    /// The version is not v1.
    #[error("unsupported OCSP request version")]
    UnsupportedVersion,
    /// `requestList` is empty.
    #[error("OCSP request lists no certificates")]
    NoRequests,
    /// A CertID uses a hash other than SHA-1 or SHA-256.
    #[error("unsupported CertID hash algorithm")]
    UnsupportedHashAlgorithm,
    /// A CertID hash has the wrong length for its algorithm.
    #[error("CertID hash length does not match its algorithm")]
    HashLengthMismatch,
    /// The nonce extension is not an OCTET STRING of 1..=128 octets.
    #[error("OCSP nonce invalid (length {len}, allowed 1..=128)")]
    InvalidNonce {
        /// Length of the nonce value found (0 if it was not an OCTET STRING).
        len: usize,
    },
    /// An extension marked critical that we do not understand.
    #[error("unsupported critical extension in OCSP request")]
    UnsupportedCriticalExtension,
    /// The same extension appears twice in one list.
    #[error("duplicate extension in OCSP request")]
    DuplicateExtension,
}

impl OcspRequestError {
    /// The OCSP status to answer with: `unauthorized` for a CertID hash we cannot map to an
    /// issuer, `malformedRequest` for everything else (RFC 8954 asks that for bad nonces too).
    pub fn response_status(&self) -> OcspErrorStatus {
        match self {
            OcspRequestError::UnsupportedHashAlgorithm => OcspErrorStatus::Unauthorized,
            _ => OcspErrorStatus::MalformedRequest,
        }
    }
}

/// The value of the request nonce extension: 1..=128 octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nonce(Vec<u8>);

impl Nonce {
    /// Wraps nonce octets, refusing empty or longer than [`MAX_NONCE_LEN`].
    pub fn new(bytes: &[u8]) -> Result<Nonce, OcspRequestError> {
        if bytes.is_empty() || bytes.len() > MAX_NONCE_LEN {
            return Err(OcspRequestError::InvalidNonce { len: bytes.len() });
        }
        Ok(Nonce(bytes.to_vec()))
    }

    /// The nonce octets (the inner OCTET STRING's value).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A parsed request: the certificates asked about, in order, and the nonce if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspRequest {
    /// One CertID per `Request`, in request order; answer them in one response.
    pub cert_ids: Vec<CertId>,
    /// The request nonce, if the client sent one.
    pub nonce: Option<Nonce>,
}

impl OcspRequest {
    /// Parses DER; everything but the exact grammar (and one whole message) is an error.
    /// Any request signature is skipped unverified; unknown non-critical extensions are ignored.
    pub fn parse(der: &[u8]) -> Result<OcspRequest, OcspRequestError> {
        let outer = single(der, SEQUENCE)?;
        let mut r = Reader::new(outer.content);
        let tbs = r.expect(SEQUENCE)?;
        r.optional(0xa0)?; // optionalSignature: not verified (RFC 5019 clients never sign)
        r.finish()?;

        let mut t = Reader::new(tbs.content);
        if let Some(version) = t.optional(0xa0)? {
            // DER omits the DEFAULT, but some clients write v1 explicitly; accept only v1.
            let v = single(version.content, INTEGER)?;
            if v.content != [0] {
                return Err(OcspRequestError::UnsupportedVersion);
            }
        }
        t.optional(0xa1)?; // requestorName: informational only
        let list = t.expect(SEQUENCE)?;
        let mut nonce = None;
        if let Some(exts) = t.optional(0xa2)? {
            nonce = request_extensions(exts.content)?;
        }
        t.finish()?;

        let mut cert_ids = Vec::new();
        let mut l = Reader::new(list.content);
        while !l.is_empty() {
            let req = l.expect(SEQUENCE)?;
            let mut q = Reader::new(req.content);
            let id = q.expect(SEQUENCE)?;
            if let Some(exts) = q.optional(0xa0)? {
                for_each_extension(exts.content, |_, critical, _| {
                    if critical {
                        Err(OcspRequestError::UnsupportedCriticalExtension)
                    } else {
                        Ok(())
                    }
                })?;
            }
            q.finish()?;
            cert_ids.push(CertId::parse(id.raw, id.content)?);
        }
        if cert_ids.is_empty() {
            return Err(OcspRequestError::NoRequests);
        }
        Ok(OcspRequest { cert_ids, nonce })
    }
}

/// Reads `[2] EXPLICIT Extensions` content and returns the nonce, if present.
fn request_extensions(content: &[u8]) -> Result<Option<Nonce>, OcspRequestError> {
    let mut nonce = None;
    let mut seen_nonce = false;
    for_each_extension(content, |oid, critical, value| {
        if oid != ID_PKIX_OCSP_NONCE.as_bytes() {
            return if critical {
                Err(OcspRequestError::UnsupportedCriticalExtension)
            } else {
                Ok(())
            };
        }
        if seen_nonce {
            return Err(OcspRequestError::DuplicateExtension);
        }
        seen_nonce = true;
        let inner =
            single(value, OCTET_STRING).map_err(|_| OcspRequestError::InvalidNonce { len: 0 })?;
        nonce = Some(Nonce::new(inner.content)?);
        Ok(())
    })?;
    Ok(nonce)
}

/// Walks the `Extensions` inside an EXPLICIT wrapper, calling `handle(oid, critical, value)`
/// for each; the handler decides what it understands. Duplicate OIDs are refused here.
fn for_each_extension(
    wrapper: &[u8],
    mut handle: impl FnMut(&[u8], bool, &[u8]) -> Result<(), OcspRequestError>,
) -> Result<(), OcspRequestError> {
    let list = single(wrapper, SEQUENCE)?;
    let mut r = Reader::new(list.content);
    let mut oids: Vec<&[u8]> = Vec::new();
    while !r.is_empty() {
        let ext = r.expect(SEQUENCE)?;
        let mut e = Reader::new(ext.content);
        let oid = e.expect(OID)?;
        let critical = match e.optional(BOOLEAN)? {
            None => false,
            Some(b) => match b.content {
                [0xff] => true,
                [0x00] => false,
                _ => return Err(DerError::BadValue.into()),
            },
        };
        let value = e.expect(OCTET_STRING)?;
        e.finish()?;
        if oid.content.is_empty() {
            return Err(DerError::BadValue.into());
        }
        if oids.contains(&oid.content) {
            return Err(OcspRequestError::DuplicateExtension);
        }
        oids.push(oid.content);
        handle(oid.content, critical, value.content)?;
    }
    Ok(())
}
