//! Key objects on the token: generation templates, lookup by label, kind, and public key export.

use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::asn1::{BitString, OctetString, UintRef};
use der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::algorithm::KeyKind;
use crate::error::HsmError;
use crate::pool::OpError;
use crate::sm2::Sm2Mechanisms;
use crate::uri::KeyUri;

/// DER of the namedCurve OID for P-256 (1.2.840.10045.3.1.7), as CKA_EC_PARAMS holds it.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the namedCurve OID for P-384 (1.3.132.0.34).
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER of the namedCurve OID sm2p256v1 (1.2.156.10197.1.301).
const SM2_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];
/// AlgorithmIdentifier rsaEncryption with NULL parameters (RFC 3279 2.3.1).
const RSA_ENCRYPTION: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// RSA public exponent 65537.
const F4: &[u8] = &[0x01, 0x00, 0x01];

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1).
#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

fn malformed(what: impl std::fmt::Display) -> HsmError {
    HsmError::Malformed(what.to_string())
}

/// The SM2 table's constants as cryptoki types (vendor-defined values, or CKK_EC).
fn sm2_key_type(table: &Sm2Mechanisms) -> Result<KeyType, HsmError> {
    if table.key_type == u64::from(KeyType::EC) {
        return Ok(KeyType::EC);
    }
    KeyType::new_vendor_defined(table.key_type).map_err(|_| HsmError::InvalidArgument {
        what: "SM2 key type",
        reason: format!("{:#x} is neither CKK_EC nor vendor-defined", table.key_type),
    })
}

/// A vendor-defined mechanism without parameters.
pub(crate) fn vendor_mechanism(value: u64) -> Result<Mechanism<'static>, HsmError> {
    let kind = MechanismType::new_vendor_defined(value).map_err(|_| HsmError::InvalidArgument {
        what: "SM2 mechanism",
        reason: format!("{value:#x} is not vendor-defined (CKM_VENDOR_DEFINED and up)"),
    })?;
    Ok(Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
        kind, None,
    )))
}

/// The generation mechanism and the two templates (public, private) for a new key pair.
pub(crate) fn templates(
    kind: KeyKind,
    label: &str,
    id: &[u8],
    sm2: Option<&Sm2Mechanisms>,
) -> Result<(Mechanism<'static>, Vec<Attribute>, Vec<Attribute>), HsmError> {
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    let mechanism = match kind {
        KeyKind::EcP256 | KeyKind::EcP384 => {
            let params = if kind == KeyKind::EcP256 {
                P256_PARAMS
            } else {
                P384_PARAMS
            };
            public.push(Attribute::EcParams(params.to_vec()));
            Mechanism::EccKeyPairGen
        }
        KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096 => {
            let bits = kind.rsa_bits().unwrap_or(2048) as u64;
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(F4.to_vec()));
            Mechanism::RsaPkcsKeyPairGen
        }
        KeyKind::Sm2 => {
            let table = sm2.ok_or_else(no_sm2_table)?;
            public.push(Attribute::EcParams(SM2_PARAMS.to_vec()));
            let key_type = sm2_key_type(table)?;
            public.push(Attribute::KeyType(key_type));
            vendor_mechanism(table.keygen_mechanism)?
        }
    };
    Ok((mechanism, public, private))
}

/// The error for SM2 use on a token configured without an SM2 table.
pub(crate) fn no_sm2_table() -> HsmError {
    HsmError::InvalidArgument {
        what: "key kind",
        reason: "this token has no SM2 mechanism table in the configuration".into(),
    }
}

/// The single token object of `class` labelled `uri.object`, if any.
pub(crate) fn find(
    session: &Session,
    class: ObjectClass,
    uri: &KeyUri,
) -> Result<Option<ObjectHandle>, OpError> {
    let found = session.find_objects(&[
        Attribute::Token(true),
        Attribute::Class(class),
        Attribute::Label(uri.object.as_bytes().to_vec()),
    ])?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(HsmError::AmbiguousKey { uri: uri.clone() }.into()),
    }
}

/// The kind of a key object (private or public half): key type plus curve or modulus size.
pub(crate) fn kind_of(
    session: &Session,
    handle: ObjectHandle,
    uri: &KeyUri,
    sm2: Option<&Sm2Mechanisms>,
) -> Result<KeyKind, OpError> {
    let attributes = session.get_attributes(
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::EcParams,
            AttributeType::Modulus,
        ],
    )?;
    let mut key_type = None;
    let mut ec_params = None;
    let mut modulus = None;
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(p) => ec_params = Some(p),
            Attribute::Modulus(m) => modulus = Some(m),
            _ => {}
        }
    }
    let unsupported = |reason: String| -> OpError {
        HsmError::UnsupportedKey {
            uri: uri.clone(),
            reason,
        }
        .into()
    };
    match key_type {
        Some(t) if sm2.is_some_and(|table| u64::from(t) == table.key_type) => {
            match ec_params.as_deref() {
                None | Some(SM2_PARAMS) => Ok(KeyKind::Sm2),
                Some(P256_PARAMS) if t == KeyType::EC => Ok(KeyKind::EcP256),
                Some(P384_PARAMS) if t == KeyType::EC => Ok(KeyKind::EcP384),
                _ => Err(unsupported("an SM2-type key on another curve".into())),
            }
        }
        Some(t) if t == KeyType::EC => match ec_params.as_deref() {
            Some(P256_PARAMS) => Ok(KeyKind::EcP256),
            Some(P384_PARAMS) => Ok(KeyKind::EcP384),
            _ => Err(unsupported(
                "an EC key on a curve other than P-256/P-384".into(),
            )),
        },
        Some(t) if t == KeyType::RSA => {
            let modulus = modulus.unwrap_or_default();
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            match significant * 8 {
                2048 => Ok(KeyKind::Rsa2048),
                3072 => Ok(KeyKind::Rsa3072),
                4096 => Ok(KeyKind::Rsa4096),
                bits => Err(unsupported(format!("an RSA key of {bits} bits"))),
            }
        }
        Some(t) => Err(unsupported(format!("key type {t}"))),
        None => Err(unsupported("no CKA_KEY_TYPE".into())),
    }
}

/// SubjectPublicKeyInfo DER of a public key object.
pub(crate) fn spki_der(
    session: &Session,
    public: ObjectHandle,
    uri: &KeyUri,
    sm2: Option<&Sm2Mechanisms>,
) -> Result<Vec<u8>, OpError> {
    let kind = kind_of(session, public, uri, sm2)?;
    let attributes = session.get_attributes(
        public,
        &[
            AttributeType::EcParams,
            AttributeType::EcPoint,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
        ],
    )?;
    let mut ec_params = None;
    let mut ec_point = None;
    let mut modulus = None;
    let mut exponent = None;
    for attribute in attributes {
        match attribute {
            Attribute::EcParams(p) => ec_params = Some(p),
            Attribute::EcPoint(p) => ec_point = Some(p),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    let spki = if kind.is_ec() {
        let params = match kind {
            // OpenSSL 3 and GM/T 0015 write SM2 keys as id-ecPublicKey on the SM2 curve.
            KeyKind::Sm2 => SM2_PARAMS.to_vec(),
            _ => ec_params.ok_or_else(|| malformed("EC public key without CKA_EC_PARAMS"))?,
        };
        let point = ec_point.ok_or_else(|| malformed("EC public key without CKA_EC_POINT"))?;
        let coordinate_len = if kind == KeyKind::EcP384 { 48 } else { 32 };
        let point = uncompressed_point(&point, coordinate_len)?;
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
                parameters: Some(Any::from_der(&params).map_err(malformed)?),
            },
            subject_public_key: BitString::from_bytes(&point).map_err(malformed)?,
        }
    } else {
        let modulus = modulus.ok_or_else(|| malformed("RSA public key without CKA_MODULUS"))?;
        let exponent =
            exponent.ok_or_else(|| malformed("RSA public key without CKA_PUBLIC_EXPONENT"))?;
        let key = RsaPublicKey {
            modulus: UintRef::new(&modulus).map_err(malformed)?,
            public_exponent: UintRef::new(&exponent).map_err(malformed)?,
        }
        .to_der()
        .map_err(malformed)?;
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned::from_der(RSA_ENCRYPTION).map_err(malformed)?,
            subject_public_key: BitString::from_bytes(&key).map_err(malformed)?,
        }
    };
    Ok(spki.to_der().map_err(malformed)?)
}

/// CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 2.40+); a few tokens give it raw.
fn uncompressed_point(ec_point: &[u8], coordinate_len: usize) -> Result<Vec<u8>, HsmError> {
    let raw_len = 1 + 2 * coordinate_len;
    let point = if ec_point.len() == raw_len && ec_point.first() == Some(&0x04) {
        ec_point.to_vec()
    } else {
        OctetString::from_der(ec_point)
            .map_err(malformed)?
            .into_bytes()
    };
    if point.len() != raw_len || point.first() != Some(&0x04) {
        return Err(malformed("CKA_EC_POINT is not an uncompressed point"));
    }
    Ok(point)
}
