//! `CertID` (RFC 6960 4.1.1): which certificate a request or response is about.
//!
//! ```text
//! CertID ::= SEQUENCE {
//!     hashAlgorithm       AlgorithmIdentifier,
//!     issuerNameHash      OCTET STRING, -- Hash of issuer's DN
//!     issuerKeyHash       OCTET STRING, -- Hash of issuer's public key
//!     serialNumber        CertificateSerialNumber }
//! ```

use super::issuer::IssuerKeyHashes;
use super::request::OcspRequestError;
use crate::der_read::{DerError, Reader};
use crate::der_write::{
    is_minimal_integer, push_header, push_tlv, tlv_len, INTEGER, NULL, OCTET_STRING, OID, SEQUENCE,
};
use crate::serial::{check_serial, InvalidSerial};
use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_256};

/// Content octets of the SM3 OID 1.2.156.10197.1.401 (GM/T 0006).
const ID_SM3: &[u8] = &[0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x11];

/// Hash algorithm of a CertID. SHA-1 is what RFC 5019 clients and `openssl ocsp` send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-1 (1.3.14.3.2.26), 20-octet hashes.
    Sha1,
    /// SHA-256 (2.16.840.1.101.3.4.2.1), 32-octet hashes.
    Sha256,
    /// SM3 (1.2.156.10197.1.401), 32-octet hashes: what GM/T 0015 relying parties send.
    Sm3,
}

impl HashAlgorithm {
    /// OID content octets.
    fn oid(self) -> &'static [u8] {
        match self {
            HashAlgorithm::Sha1 => ID_SHA_1.as_bytes(),
            HashAlgorithm::Sha256 => ID_SHA_256.as_bytes(),
            HashAlgorithm::Sm3 => ID_SM3,
        }
    }

    /// Length in octets of this algorithm's hashes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha256 | HashAlgorithm::Sm3 => 32,
        }
    }

    /// Identifies the algorithm from the content of an `AlgorithmIdentifier` SEQUENCE.
    /// Parameters must be absent or NULL.
    fn from_alg_id(content: &[u8]) -> Result<Self, OcspRequestError> {
        let mut r = Reader::new(content);
        let oid = r.expect(OID)?;
        if let Some(params) = r.optional(NULL)? {
            if !params.content.is_empty() {
                return Err(DerError::BadValue.into());
            }
        }
        r.finish()?;
        if oid.content == ID_SHA_1.as_bytes() {
            Ok(HashAlgorithm::Sha1)
        } else if oid.content == ID_SHA_256.as_bytes() {
            Ok(HashAlgorithm::Sha256)
        } else if oid.content == ID_SM3 {
            Ok(HashAlgorithm::Sm3)
        } else {
            Err(OcspRequestError::UnsupportedHashAlgorithm)
        }
    }
}

/// A parsed CertID that remembers its exact DER, so a response can echo it byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertId {
    hash_algorithm: HashAlgorithm,
    issuer_name_hash: Vec<u8>,
    issuer_key_hash: Vec<u8>,
    serial: Vec<u8>,
    der: Vec<u8>,
}

impl CertId {
    /// Builds the canonical CertID (hash parameters NULL, as OpenSSL writes them) for a serial
    /// of the issuer whose hashes are given; used to pre-sign responses.
    pub fn new(
        hash_algorithm: HashAlgorithm,
        issuer: &IssuerKeyHashes,
        serial: &[u8],
    ) -> Result<CertId, InvalidSerial> {
        check_serial(serial)?;
        let name_hash = issuer.name_hash(hash_algorithm).to_vec();
        let key_hash = issuer.key_hash(hash_algorithm).to_vec();
        let oid = hash_algorithm.oid();
        let alg_len = tlv_len(oid.len()) + 2;
        let inner = tlv_len(alg_len)
            + tlv_len(name_hash.len())
            + tlv_len(key_hash.len())
            + tlv_len(serial.len());
        let mut der = Vec::with_capacity(tlv_len(inner));
        push_header(&mut der, SEQUENCE, inner);
        push_header(&mut der, SEQUENCE, alg_len);
        push_tlv(&mut der, OID, oid);
        der.extend_from_slice(&[NULL, 0]);
        push_tlv(&mut der, OCTET_STRING, &name_hash);
        push_tlv(&mut der, OCTET_STRING, &key_hash);
        push_tlv(&mut der, INTEGER, serial);
        Ok(CertId {
            hash_algorithm,
            issuer_name_hash: name_hash,
            issuer_key_hash: key_hash,
            serial: serial.to_vec(),
            der,
        })
    }

    /// Parses one CertID from its complete TLV `raw` (tag already checked by the caller).
    pub(crate) fn parse(raw: &[u8], content: &[u8]) -> Result<CertId, OcspRequestError> {
        let mut r = Reader::new(content);
        let alg = r.expect(SEQUENCE)?;
        let name_hash = r.expect(OCTET_STRING)?;
        let key_hash = r.expect(OCTET_STRING)?;
        let serial = r.expect(INTEGER)?;
        r.finish()?;
        if !is_minimal_integer(serial.content) {
            return Err(DerError::BadInteger.into());
        }
        let hash_algorithm = HashAlgorithm::from_alg_id(alg.content)?;
        let want = hash_algorithm.output_len();
        if name_hash.content.len() != want || key_hash.content.len() != want {
            return Err(OcspRequestError::HashLengthMismatch);
        }
        Ok(CertId {
            hash_algorithm,
            issuer_name_hash: name_hash.content.to_vec(),
            issuer_key_hash: key_hash.content.to_vec(),
            serial: serial.content.to_vec(),
            der: raw.to_vec(),
        })
    }

    /// The hash algorithm of both issuer hashes.
    pub fn hash_algorithm(&self) -> HashAlgorithm {
        self.hash_algorithm
    }

    /// Hash of the issuer's subject DN DER.
    pub fn issuer_name_hash(&self) -> &[u8] {
        &self.issuer_name_hash
    }

    /// Hash of the issuer's subjectPublicKey BIT STRING value (without the unused-bits octet).
    pub fn issuer_key_hash(&self) -> &[u8] {
        &self.issuer_key_hash
    }

    /// The serial as the INTEGER content octets (as in the certificate if it is ours).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The exact CertID DER (as received, or canonical if built with [`CertId::new`]).
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}
