//! RFC 7512 PKCS#11 URIs naming a CA key: `pkcs11:token=<label>;object=<label>;type=private`.

use std::fmt;
use std::str::FromStr;

use crate::error::HsmError;

/// RFC 7512 URI of a key: pkcs11:token=<label>;object=<label>;type=private  (percent-encoding both ways).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyUri {
    /// The token label (CKA_LABEL of the token, at most 32 bytes).
    pub token: String,
    /// The key object label (CKA_LABEL shared by the private and public halves).
    pub object: String,
}

const SCHEME: &str = "pkcs11:";

/// Path attributes RFC 7512 defines that identify a token or module; accepted and ignored.
const IGNORED_ATTRIBUTES: &[&str] = &[
    "manufacturer",
    "model",
    "serial",
    "library-manufacturer",
    "library-description",
    "library-version",
    "slot-manufacturer",
    "slot-description",
    "slot-id",
];

impl KeyUri {
    /// A URI for `object` on `token`.
    pub fn new(token: impl Into<String>, object: impl Into<String>) -> KeyUri {
        KeyUri {
            token: token.into(),
            object: object.into(),
        }
    }
}

fn invalid(reason: impl Into<String>) -> HsmError {
    HsmError::InvalidKeyUri(reason.into())
}

/// Percent-encode everything outside RFC 3986 `unreserved`, which is always a valid pchar.
fn encode(value: &str, out: &mut fmt::Formatter<'_>) -> fmt::Result {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            write!(out, "{}", byte as char)?;
        } else {
            write!(out, "%{byte:02X}")?;
        }
    }
    Ok(())
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Decode `%XX` escapes; the result must be UTF-8 and non-empty.
fn decode(name: &str, value: &str) -> Result<String, HsmError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(invalid(format!("bad percent-escape in {name}"))),
                }
                i += 3;
            }
            b'/' | b'?' | b'#' => {
                return Err(invalid(format!(
                    "character {:?} must be percent-encoded in {name}",
                    bytes[i] as char
                )))
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    let decoded =
        String::from_utf8(out).map_err(|_| invalid(format!("{name} is not UTF-8 once decoded")))?;
    if decoded.is_empty() {
        return Err(invalid(format!("{name} is empty")));
    }
    Ok(decoded)
}

impl FromStr for KeyUri {
    type Err = HsmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = match s.get(..SCHEME.len()) {
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => &s[SCHEME.len()..],
            _ => return Err(invalid("must start with \"pkcs11:\"")),
        };
        if rest.contains('?') {
            // The query holds things like pin-value: a PIN never travels inside a key URI.
            return Err(invalid("query attributes (after '?') are not accepted"));
        }
        let mut token = None;
        let mut object = None;
        for attribute in rest.split(';') {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| invalid(format!("attribute {attribute:?} has no '='")))?;
            match name {
                "token" | "object" => {
                    let slot = if name == "token" {
                        &mut token
                    } else {
                        &mut object
                    };
                    if slot.is_some() {
                        return Err(invalid(format!("{name} given twice")));
                    }
                    *slot = Some(decode(name, value)?);
                }
                "type" => {
                    if value != "private" {
                        return Err(invalid(format!(
                            "type={value} is not supported, only type=private"
                        )));
                    }
                }
                "id" => return Err(invalid("keys are named by object label, not by id")),
                other if IGNORED_ATTRIBUTES.contains(&other) => {}
                other => return Err(invalid(format!("unknown attribute {other:?}"))),
            }
        }
        match (token, object) {
            (Some(token), Some(object)) => Ok(KeyUri { token, object }),
            (None, _) => Err(invalid("missing token=")),
            (_, None) => Err(invalid("missing object=")),
        }
    }
}

impl fmt::Display for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkcs11:token=")?;
        encode(&self.token, f)?;
        f.write_str(";object=")?;
        encode(&self.object, f)?;
        f.write_str(";type=private")
    }
}
