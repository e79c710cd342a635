//! `OCSPResponse` building (RFC 6960 4.2), in two phases: [`ResponseData::tbs_der`] gives the
//! bytes to sign, [`assemble`] wraps them with the signature into the final message.
//!
//! ```text
//! OCSPResponse ::= SEQUENCE {
//!    responseStatus         OCSPResponseStatus,
//!    responseBytes      [0] EXPLICIT ResponseBytes OPTIONAL }
//! BasicOCSPResponse ::= SEQUENCE {
//!    tbsResponseData      ResponseData,
//!    signatureAlgorithm   AlgorithmIdentifier,
//!    signature            BIT STRING,
//!    certs            [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
//! ResponseData ::= SEQUENCE {
//!    version              [0] EXPLICIT Version DEFAULT v1,
//!    responderID              ResponderID,
//!    producedAt               GeneralizedTime,
//!    responses                SEQUENCE OF SingleResponse,
//!    responseExtensions   [1] EXPLICIT Extensions OPTIONAL }
//! SingleResponse ::= SEQUENCE {
//!    certID                       CertID,
//!    certStatus                   CertStatus,
//!    thisUpdate                   GeneralizedTime,
//!    nextUpdate         [0]       EXPLICIT GeneralizedTime OPTIONAL,
//!    singleExtensions   [1]       EXPLICIT Extensions OPTIONAL }
//! ```

use super::cert_id::CertId;
use super::request::Nonce;
use crate::der_read::single;
use crate::der_write::{
    push_extension, push_header, push_tlv, tlv, BIT_STRING, ENUMERATED, OCTET_STRING, OID, SEQUENCE,
};
use crate::reason::Reason;
use crate::time_enc::{push_generalized, TimeOutOfRange};
use const_oid::db::rfc6960::{
    ID_PKIX_OCSP_BASIC, ID_PKIX_OCSP_EXTENDED_REVOKE, ID_PKIX_OCSP_NONCE,
};
use der::Encode;
use spki::AlgorithmIdentifierOwned;
use time::OffsetDateTime;

/// OCSP error statuses: answers that carry no `responseBytes` (RFC 6960 4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OcspErrorStatus {
    /// malformedRequest (1): garbage, truncated, trailing bytes, bad nonce.
    MalformedRequest,
    /// internalError (2): our fault.
    InternalError,
    /// tryLater (3): e.g. the HSM is unreachable.
    TryLater,
    /// sigRequired (5): never used by us, listed for completeness.
    SigRequired,
    /// unauthorized (6): an issuer we do not serve.
    Unauthorized,
}

impl OcspErrorStatus {
    /// The `OCSPResponseStatus` ENUMERATED value.
    pub fn code(self) -> u8 {
        match self {
            OcspErrorStatus::MalformedRequest => 1,
            OcspErrorStatus::InternalError => 2,
            OcspErrorStatus::TryLater => 3,
            OcspErrorStatus::SigRequired => 5,
            OcspErrorStatus::Unauthorized => 6,
        }
    }
}

/// The complete DER `OCSPResponse` for an error status (5 bytes, no `responseBytes`).
pub fn error_response(status: OcspErrorStatus) -> Vec<u8> {
    vec![SEQUENCE, 3, ENUMERATED, 1, status.code()]
}

/// Status of one certificate (RFC 6960 `CertStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by us, unexpired, not revoked.
    Good,
    /// Revoked at `time`; `reason` `None` means unspecified (omitted on the wire).
    Revoked {
        /// revocationTime.
        time: OffsetDateTime,
        /// revocationReason, omitted when `None`.
        reason: Option<Reason>,
    },
    /// The responder does not know the certificate.
    Unknown,
}

impl CertStatus {
    /// The RFC 6960 2.2 / BR answer for a serial never issued by a known issuer:
    /// revoked, certificateHold, at 1970-01-01. Pair it with
    /// [`ResponseData::extended_revoke`] set to `true`.
    pub fn never_issued_revoked() -> CertStatus {
        CertStatus::Revoked {
            time: OffsetDateTime::UNIX_EPOCH,
            reason: Some(Reason::CertificateHold),
        }
    }
}

/// The answer for one CertID. `next_update` is mandatory for us (BR 4.9.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleResponse {
    /// Echoed exactly (its DER is copied).
    pub cert_id: CertId,
    /// The status.
    pub status: CertStatus,
    /// When the status was known correct; also the HTTP `Last-Modified`.
    pub this_update: OffsetDateTime,
    /// When newer information will be available; also the HTTP `Expires`.
    pub next_update: OffsetDateTime,
}

/// Unsigned response content; [`ResponseData::tbs_der`] produces the bytes to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseData {
    /// SHA-1 of the signer's subjectPublicKey BIT STRING value (ResponderID `byKey`); take
    /// `IssuerKeyHashes::from_cert_der(signer_cert)?.sha1_key`.
    pub responder_key_hash: [u8; 20],
    /// producedAt: when this response was signed.
    pub produced_at: OffsetDateTime,
    /// One entry per CertID asked about, in request order.
    pub responses: Vec<SingleResponse>,
    /// The request's nonce to echo (only when signing live for that request).
    pub nonce: Option<Nonce>,
    /// Adds `id-pkix-ocsp-extended-revoke`: required when any answer is
    /// [`CertStatus::never_issued_revoked`].
    pub extended_revoke: bool,
}

/// Why a response could not be encoded or assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// `responses` is empty.
    #[error("OCSP response has no single responses")]
    NoResponses,
    /// A `next_update` is not after its `this_update`.
    #[error("OCSP nextUpdate not after thisUpdate")]
    NextUpdateNotAfterThisUpdate,
    /// A timestamp outside 0000..=9999.
    #[error(transparent)]
    Time(#[from] TimeOutOfRange),
    /// The TBS bytes given to `assemble` are not one DER SEQUENCE.
    #[error("bytes to assemble are not a DER ResponseData")]
    MalformedTbs,
    /// The signature algorithm identifier could not be encoded.
    #[error("signature algorithm identifier not encodable")]
    SignatureAlgorithm,
    /// The signature is empty.
    #[error("empty signature")]
    EmptySignature,
    /// Certificate number `index` in `certs` is not one DER SEQUENCE.
    #[error("certificate {index} for the response is not DER")]
    MalformedCertificate {
        /// Position in the `certs` slice.
        index: usize,
    },
}

impl ResponseData {
    /// Starts a response signed by the key whose hash is `responder_key_hash`.
    pub fn new(responder_key_hash: [u8; 20], produced_at: OffsetDateTime) -> Self {
        Self {
            responder_key_hash,
            produced_at,
            responses: Vec::new(),
            nonce: None,
            extended_revoke: false,
        }
    }

    /// Adds one answer (builder style).
    pub fn with_response(mut self, response: SingleResponse) -> Self {
        self.responses.push(response);
        self
    }

    /// The DER `ResponseData`: exactly the bytes the signer must sign.
    pub fn tbs_der(&self) -> Result<Vec<u8>, ResponseError> {
        if self.responses.is_empty() {
            return Err(ResponseError::NoResponses);
        }
        let mut body = Vec::with_capacity(256);
        // responderID byKey [2] EXPLICIT KeyHash (OCTET STRING of 20).
        push_header(&mut body, 0xa2, 22);
        push_tlv(&mut body, OCTET_STRING, &self.responder_key_hash);
        push_generalized(&mut body, self.produced_at)?;

        let mut list = Vec::with_capacity(128 * self.responses.len());
        for r in &self.responses {
            single_response(&mut list, r)?;
        }
        push_tlv(&mut body, SEQUENCE, &list);

        let mut exts = Vec::new();
        if let Some(nonce) = &self.nonce {
            let value = tlv(OCTET_STRING, nonce.as_bytes());
            push_extension(&mut exts, ID_PKIX_OCSP_NONCE.as_bytes(), false, &value);
        }
        if self.extended_revoke {
            push_extension(
                &mut exts,
                ID_PKIX_OCSP_EXTENDED_REVOKE.as_bytes(),
                false,
                &[crate::der_write::NULL, 0],
            );
        }
        if !exts.is_empty() {
            let seq = tlv(SEQUENCE, &exts);
            push_tlv(&mut body, 0xa1, &seq);
        }
        Ok(tlv(SEQUENCE, &body))
    }
}

/// Appends one `SingleResponse`.
fn single_response(out: &mut Vec<u8>, r: &SingleResponse) -> Result<(), ResponseError> {
    if r.next_update <= r.this_update {
        return Err(ResponseError::NextUpdateNotAfterThisUpdate);
    }
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(r.cert_id.der());
    match r.status {
        CertStatus::Good => body.extend_from_slice(&[0x80, 0]),
        CertStatus::Unknown => body.extend_from_slice(&[0x82, 0]),
        CertStatus::Revoked { time, reason } => {
            let mut info = Vec::with_capacity(24);
            push_generalized(&mut info, time)?;
            if let Some(reason) = reason {
                push_tlv(&mut info, 0xa0, &reason.der());
            }
            push_tlv(&mut body, 0xa1, &info);
        }
    }
    push_generalized(&mut body, r.this_update)?;
    let mut next = Vec::with_capacity(17);
    push_generalized(&mut next, r.next_update)?;
    push_tlv(&mut body, 0xa0, &next);
    push_tlv(out, SEQUENCE, &body);
    Ok(())
}

/// Builds the complete successful `OCSPResponse` (id-pkix-ocsp-basic) from the signed TBS.
///
/// `signature` is in X.509 form (ECDSA: DER `Ecdsa-Sig-Value`; RSA: the raw block); `certs`
/// are DER certificates to include (the delegated responder certificate; may be empty when
/// the issuing CA signs itself).
pub fn assemble(
    tbs: &[u8],
    sig_alg: &AlgorithmIdentifierOwned,
    signature: &[u8],
    certs: &[&[u8]],
) -> Result<Vec<u8>, ResponseError> {
    single(tbs, SEQUENCE).map_err(|_| ResponseError::MalformedTbs)?;
    if signature.is_empty() {
        return Err(ResponseError::EmptySignature);
    }
    let alg = sig_alg
        .to_der()
        .map_err(|_| ResponseError::SignatureAlgorithm)?;
    let mut basic = Vec::with_capacity(tbs.len() + alg.len() + signature.len() + 2048);
    basic.extend_from_slice(tbs);
    basic.extend_from_slice(&alg);
    push_header(&mut basic, BIT_STRING, signature.len() + 1);
    basic.push(0);
    basic.extend_from_slice(signature);
    if !certs.is_empty() {
        let mut list = Vec::new();
        for (index, cert) in certs.iter().enumerate() {
            single(cert, SEQUENCE).map_err(|_| ResponseError::MalformedCertificate { index })?;
            list.extend_from_slice(cert);
        }
        let seq = tlv(SEQUENCE, &list);
        push_tlv(&mut basic, 0xa0, &seq);
    }
    let basic = tlv(SEQUENCE, &basic);

    let mut rb = Vec::with_capacity(basic.len() + 32);
    push_tlv(&mut rb, OID, ID_PKIX_OCSP_BASIC.as_bytes());
    push_tlv(&mut rb, OCTET_STRING, &basic);
    let rb = tlv(SEQUENCE, &rb);

    let mut resp = Vec::with_capacity(rb.len() + 16);
    resp.extend_from_slice(&[ENUMERATED, 1, 0]);
    push_tlv(&mut resp, 0xa0, &rb);
    Ok(tlv(SEQUENCE, &resp))
}
