//! The vendor-defined PKCS#11 constants this token uses for SM2.
//!
//! PKCS#11 3.x defines no SM2 or SM3 identifiers, so every vendor picks its own values in the
//! `CKK_VENDOR_DEFINED` / `CKM_VENDOR_DEFINED` range (`0x8000_0000` and up). This token uses
//! `0x8053_4Dxx` ("SM" in ASCII after the vendor bit). The `hsm` crate does not assume these:
//! its per-token mechanism table names them (the `ca-softtoken` preset).

use cryptoki_sys::{CK_KEY_TYPE, CK_MECHANISM_TYPE};

/// Key type of SM2 keys (`CKA_KEY_TYPE`); `CKA_EC_PARAMS` holds the curve OID 1.2.156.10197.1.301.
pub const CKK_SM2: CK_KEY_TYPE = 0x8053_4D32;
/// SM2 key-pair generation; `CKA_EC_PARAMS` in the public template is optional (SM2 or nothing).
pub const CKM_SM2_KEY_PAIR_GEN: CK_MECHANISM_TYPE = 0x8053_4D00;
/// Raw SM2 signature over a 32-byte `e = SM3(Z || M)` computed by the host; output r || s.
pub const CKM_SM2: CK_MECHANISM_TYPE = 0x8053_4D01;
/// SM3withSM2: the token computes Z with the signer ID and e = SM3(Z || M) itself.
/// Parameter: the signer ID bytes (UTF-8); none means the GM/T 0009 default `1234567812345678`.
pub const CKM_SM3_SM2: CK_MECHANISM_TYPE = 0x8053_4D02;

/// DER of the namedCurve OID sm2p256v1 (1.2.156.10197.1.301), as CKA_EC_PARAMS holds it.
pub const SM2_EC_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];
/// DER of the namedCurve OID prime256v1 (1.2.840.10045.3.1.7).
pub const P256_EC_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The GM/T 0009 default signer ID.
pub const DEFAULT_SIGNER_ID: &str = "1234567812345678";
