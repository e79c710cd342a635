//! Key objects: what is stored per object, its PKCS#11 attributes, search and templates.

use cryptoki_sys::*;
use serde::{Deserialize, Serialize};

use crate::keys::KeyAlg;
use crate::store::Sealed;
use crate::vendor::{CKK_SM2, CKM_SM2_KEY_PAIR_GEN, P256_EC_PARAMS, SM2_EC_PARAMS};

/// One half of a key pair, or an AES key, as stored (private and secret values sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Object {
    pub class: CK_OBJECT_CLASS,
    /// The key algorithm: the curve, or AES-256.
    pub curve: KeyAlg,
    pub label: Vec<u8>,
    pub id: Vec<u8>,
    pub token: bool,
    pub private: bool,
    pub sign: bool,
    pub verify: bool,
    /// The public point 04 || x || y (both halves keep it, so a private key knows its pair).
    pub point: Vec<u8>,
    /// The private scalar or AES key sealed under the token master key; `None` for public keys.
    pub secret: Option<Sealed>,
    /// AES keys: CKA_ENCRYPT / CKA_DECRYPT.
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default)]
    pub decrypt: bool,
}

/// An attribute as C_GetAttributeValue reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AttrValue {
    /// The value's bytes.
    Value(Vec<u8>),
    /// Exists but may never be revealed (CKR_ATTRIBUTE_SENSITIVE).
    Sensitive,
    /// Not an attribute of this object (CKR_ATTRIBUTE_TYPE_INVALID).
    Invalid,
}

fn ulong(v: CK_ULONG) -> AttrValue {
    AttrValue::Value(v.to_ne_bytes().to_vec())
}

fn flag(v: bool) -> AttrValue {
    AttrValue::Value(vec![u8::from(v)])
}

impl Object {
    /// Whether this is the private half.
    pub(crate) fn is_private_key(&self) -> bool {
        self.class == CKO_PRIVATE_KEY
    }

    /// CKA_KEY_TYPE of the curve.
    pub(crate) fn key_type(&self) -> CK_KEY_TYPE {
        match self.curve {
            KeyAlg::P256 => CKK_EC,
            KeyAlg::Sm2 => CKK_SM2,
            KeyAlg::Aes256 => CKK_AES,
        }
    }

    fn ec_params(&self) -> &'static [u8] {
        match self.curve {
            KeyAlg::P256 => P256_EC_PARAMS,
            KeyAlg::Sm2 => SM2_EC_PARAMS,
            KeyAlg::Aes256 => &[],
        }
    }

    /// Attributes of an AES secret key (its value is sensitive).
    fn secret_attribute(&self, kind: CK_ATTRIBUTE_TYPE) -> AttrValue {
        match kind {
            CKA_CLASS => ulong(self.class),
            CKA_TOKEN => flag(self.token),
            CKA_PRIVATE => flag(self.private),
            CKA_LABEL => AttrValue::Value(self.label.clone()),
            CKA_ID => AttrValue::Value(self.id.clone()),
            CKA_KEY_TYPE => ulong(CKK_AES),
            CKA_VALUE_LEN => ulong(32),
            CKA_VALUE => AttrValue::Sensitive,
            CKA_KEY_GEN_MECHANISM => ulong(CKM_AES_KEY_GEN),
            CKA_ENCRYPT => flag(self.encrypt),
            CKA_DECRYPT => flag(self.decrypt),
            CKA_SENSITIVE | CKA_ALWAYS_SENSITIVE | CKA_NEVER_EXTRACTABLE | CKA_LOCAL => flag(true),
            CKA_EXTRACTABLE | CKA_SIGN | CKA_VERIFY | CKA_WRAP | CKA_UNWRAP | CKA_DERIVE
            | CKA_MODIFIABLE | CKA_COPYABLE => flag(false),
            _ => AttrValue::Invalid,
        }
    }

    /// The attribute `kind` of this object.
    pub(crate) fn attribute(&self, kind: CK_ATTRIBUTE_TYPE) -> AttrValue {
        if self.class == CKO_SECRET_KEY {
            return self.secret_attribute(kind);
        }
        let private = self.is_private_key();
        match kind {
            CKA_CLASS => ulong(self.class),
            CKA_TOKEN => flag(self.token),
            CKA_PRIVATE => flag(self.private),
            CKA_LABEL => AttrValue::Value(self.label.clone()),
            CKA_ID => AttrValue::Value(self.id.clone()),
            CKA_KEY_TYPE => ulong(self.key_type()),
            CKA_KEY_GEN_MECHANISM => ulong(match self.curve {
                KeyAlg::P256 => CKM_EC_KEY_PAIR_GEN,
                KeyAlg::Sm2 => CKM_SM2_KEY_PAIR_GEN,
                KeyAlg::Aes256 => CKM_AES_KEY_GEN,
            }),
            CKA_LOCAL => flag(true),
            CKA_MODIFIABLE | CKA_COPYABLE => flag(false),
            CKA_DESTROYABLE => flag(true),
            CKA_START_DATE | CKA_END_DATE | CKA_SUBJECT => AttrValue::Value(Vec::new()),
            CKA_DERIVE | CKA_ENCRYPT | CKA_DECRYPT | CKA_WRAP | CKA_UNWRAP => flag(false),
            CKA_EC_PARAMS => AttrValue::Value(self.ec_params().to_vec()),
            CKA_SIGN
            | CKA_SIGN_RECOVER
            | CKA_SENSITIVE
            | CKA_ALWAYS_SENSITIVE
            | CKA_NEVER_EXTRACTABLE
            | CKA_EXTRACTABLE
            | CKA_ALWAYS_AUTHENTICATE
            | CKA_WRAP_WITH_TRUSTED
                if private =>
            {
                match kind {
                    CKA_SIGN => flag(self.sign),
                    CKA_SENSITIVE | CKA_ALWAYS_SENSITIVE | CKA_NEVER_EXTRACTABLE => flag(true),
                    _ => flag(false),
                }
            }
            CKA_VALUE if private => AttrValue::Sensitive,
            CKA_VERIFY | CKA_VERIFY_RECOVER | CKA_TRUSTED if !private => {
                flag(kind == CKA_VERIFY && self.verify)
            }
            CKA_EC_POINT if !private => {
                // DER OCTET STRING around the uncompressed point (PKCS#11 2.40+).
                let mut der = vec![0x04, self.point.len() as u8];
                der.extend_from_slice(&self.point);
                AttrValue::Value(der)
            }
            _ => AttrValue::Invalid,
        }
    }

    /// Whether every attribute of `template` has exactly this value on the object.
    pub(crate) fn matches(&self, template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> bool {
        template
            .iter()
            .all(|(kind, value)| self.attribute(*kind) == AttrValue::Value(value.clone()))
    }
}

/// What the two templates of C_GenerateKeyPair ask for, checked.
#[derive(Debug, Default)]
pub(crate) struct KeyPairTemplate {
    pub token: bool,
    pub private: bool,
    pub label: Vec<u8>,
    pub id: Vec<u8>,
    pub sign: bool,
    pub verify: bool,
    pub ec_params: Option<Vec<u8>>,
}

fn as_bool(value: &[u8]) -> Result<bool, CK_RV> {
    match value {
        [b] => Ok(*b != 0),
        _ => Err(CKR_ATTRIBUTE_VALUE_INVALID),
    }
}

fn as_ulong(value: &[u8]) -> Result<CK_ULONG, CK_RV> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| CKR_ATTRIBUTE_VALUE_INVALID)?;
    Ok(CK_ULONG::from_ne_bytes(bytes))
}

impl KeyPairTemplate {
    /// Parse both templates: private keys are always sensitive and never extractable; usage
    /// flags this token cannot honour (derive, decrypt, ...) are refused when asked true.
    pub(crate) fn parse(
        public: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
        private: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Result<KeyPairTemplate, CK_RV> {
        let mut t = KeyPairTemplate {
            sign: true,
            verify: true,
            private: true,
            ..Default::default()
        };
        let mut public_label = None;
        let mut public_id = None;
        for (kind, value) in public {
            match *kind {
                CKA_TOKEN => t.token = as_bool(value)?,
                CKA_LABEL => public_label = Some(value.clone()),
                CKA_ID => public_id = Some(value.clone()),
                CKA_VERIFY => t.verify = as_bool(value)?,
                CKA_EC_PARAMS => t.ec_params = Some(value.clone()),
                CKA_CLASS if as_ulong(value)? != CKO_PUBLIC_KEY => {
                    return Err(CKR_TEMPLATE_INCONSISTENT)
                }
                CKA_CLASS => {}
                CKA_PRIVATE if as_bool(value)? => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
                CKA_PRIVATE => {}
                other => common(other, value)?,
            }
        }
        for (kind, value) in private {
            match *kind {
                CKA_TOKEN => t.token = t.token || as_bool(value)?,
                CKA_PRIVATE => t.private = as_bool(value)?,
                CKA_LABEL => t.label = value.clone(),
                CKA_ID => t.id = value.clone(),
                CKA_SIGN => t.sign = as_bool(value)?,
                CKA_SENSITIVE if !as_bool(value)? => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
                CKA_EXTRACTABLE if as_bool(value)? => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
                CKA_SENSITIVE | CKA_EXTRACTABLE => {}
                CKA_CLASS if as_ulong(value)? != CKO_PRIVATE_KEY => {
                    return Err(CKR_TEMPLATE_INCONSISTENT)
                }
                CKA_CLASS => {}
                other => common(other, value)?,
            }
        }
        if t.label.is_empty() {
            t.label = public_label.clone().unwrap_or_default();
        }
        if t.id.is_empty() {
            t.id = public_id.clone().unwrap_or_default();
        }
        // One label and id for the pair (the hsm crate finds both halves by label).
        if public_label.is_some_and(|l| l != t.label) || public_id.is_some_and(|i| i != t.id) {
            return Err(CKR_TEMPLATE_INCONSISTENT);
        }
        Ok(t)
    }

    /// The curve for `mechanism`, checked against CKA_EC_PARAMS.
    pub(crate) fn curve(&self, mechanism: CK_MECHANISM_TYPE) -> Result<KeyAlg, CK_RV> {
        match (mechanism, self.ec_params.as_deref()) {
            (CKM_EC_KEY_PAIR_GEN, Some(P256_EC_PARAMS)) => Ok(KeyAlg::P256),
            (CKM_EC_KEY_PAIR_GEN, Some(_)) => Err(CKR_CURVE_NOT_SUPPORTED),
            (CKM_EC_KEY_PAIR_GEN, None) => Err(CKR_TEMPLATE_INCOMPLETE),
            (CKM_SM2_KEY_PAIR_GEN, None | Some(SM2_EC_PARAMS)) => Ok(KeyAlg::Sm2),
            (CKM_SM2_KEY_PAIR_GEN, Some(_)) => Err(CKR_CURVE_NOT_SUPPORTED),
            _ => Err(CKR_MECHANISM_INVALID),
        }
    }
}

/// What the template of C_GenerateKey (CKM_AES_KEY_GEN, 32 bytes) asks for, checked.
#[derive(Debug, Default)]
pub(crate) struct SecretKeyTemplate {
    pub token: bool,
    pub label: Vec<u8>,
    pub id: Vec<u8>,
    pub encrypt: bool,
    pub decrypt: bool,
}

impl SecretKeyTemplate {
    /// Parse: AES-256 only, always private, sensitive, not extractable.
    pub(crate) fn parse(template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> Result<Self, CK_RV> {
        let mut t = SecretKeyTemplate {
            encrypt: true,
            decrypt: true,
            ..Default::default()
        };
        let mut value_len = None;
        for (kind, value) in template {
            match *kind {
                CKA_TOKEN => t.token = as_bool(value)?,
                CKA_LABEL => t.label = value.clone(),
                CKA_ID => t.id = value.clone(),
                CKA_ENCRYPT => t.encrypt = as_bool(value)?,
                CKA_DECRYPT => t.decrypt = as_bool(value)?,
                CKA_VALUE_LEN => value_len = Some(as_ulong(value)?),
                CKA_CLASS if as_ulong(value)? != CKO_SECRET_KEY => {
                    return Err(CKR_TEMPLATE_INCONSISTENT)
                }
                CKA_KEY_TYPE if as_ulong(value)? != CKK_AES => {
                    return Err(CKR_TEMPLATE_INCONSISTENT)
                }
                CKA_PRIVATE | CKA_SENSITIVE if !as_bool(value)? => {
                    return Err(CKR_ATTRIBUTE_VALUE_INVALID)
                }
                CKA_EXTRACTABLE if as_bool(value)? => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
                CKA_CLASS | CKA_KEY_TYPE | CKA_PRIVATE | CKA_SENSITIVE | CKA_EXTRACTABLE => {}
                other => common(other, value)?,
            }
        }
        match value_len {
            Some(32) => Ok(t),
            Some(_) => Err(CKR_ATTRIBUTE_VALUE_INVALID),
            None => Err(CKR_TEMPLATE_INCOMPLETE),
        }
    }
}

/// Attributes either template may carry that change nothing (or must say false).
fn common(kind: CK_ATTRIBUTE_TYPE, value: &[u8]) -> Result<(), CK_RV> {
    match kind {
        CKA_KEY_TYPE => {
            let t = as_ulong(value)?;
            if t == CKK_EC || t == CKK_SM2 {
                Ok(())
            } else {
                Err(CKR_TEMPLATE_INCONSISTENT)
            }
        }
        // pkcs11-tool asks CKA_DERIVE for every EC pair; this token offers no derivation and
        // reports CKA_DERIVE false rather than refusing the pair.
        CKA_DERIVE => as_bool(value).map(|_| ()),
        CKA_ENCRYPT | CKA_DECRYPT | CKA_WRAP | CKA_UNWRAP | CKA_SIGN_RECOVER
        | CKA_VERIFY_RECOVER => {
            if as_bool(value)? {
                Err(CKR_ATTRIBUTE_VALUE_INVALID)
            } else {
                Ok(())
            }
        }
        CKA_MODIFIABLE | CKA_COPYABLE | CKA_DESTROYABLE | CKA_START_DATE | CKA_END_DATE
        | CKA_SUBJECT => Ok(()),
        _ => Err(CKR_ATTRIBUTE_TYPE_INVALID),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn yes() -> Vec<u8> {
        vec![1]
    }

    #[test]
    fn extractable_or_non_sensitive_private_keys_are_refused() {
        for bad in [(CKA_EXTRACTABLE, yes()), (CKA_SENSITIVE, vec![0])] {
            assert_eq!(
                KeyPairTemplate::parse(&[], &[bad]).err(),
                Some(CKR_ATTRIBUTE_VALUE_INVALID)
            );
        }
    }

    #[test]
    fn private_value_is_sensitive_and_public_point_is_der() {
        let object = Object {
            class: CKO_PRIVATE_KEY,
            curve: KeyAlg::Sm2,
            label: b"k".to_vec(),
            id: vec![1],
            token: true,
            private: true,
            sign: true,
            verify: false,
            point: vec![4; 65],
            secret: None,
            encrypt: false,
            decrypt: false,
        };
        assert_eq!(object.attribute(CKA_VALUE), AttrValue::Sensitive);
        assert_eq!(object.attribute(CKA_EC_POINT), AttrValue::Invalid);
        assert_eq!(object.attribute(CKA_EXTRACTABLE), AttrValue::Value(vec![0]));
        let public = Object {
            class: CKO_PUBLIC_KEY,
            ..object
        };
        let AttrValue::Value(der) = public.attribute(CKA_EC_POINT) else {
            panic!("no point")
        };
        assert_eq!(&der[..2], &[0x04, 65]);
        assert!(public.matches(&[(CKA_LABEL, b"k".to_vec())]));
        assert!(!public.matches(&[(CKA_VALUE, vec![])]));
    }
}
