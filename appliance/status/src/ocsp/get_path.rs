//! RFC 5019 GET: `{url}/{url-encoding of base64 of DER OCSPRequest}`.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

/// Why a GET path segment is not a base64 OCSP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetPathError {
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in OCSP GET path")]
    BadPercentEncoding,
    /// Not base64 in the standard or URL-safe alphabet.
    #[error("invalid base64 in OCSP GET path")]
    BadBase64,
}

/// Base64 with the standard alphabet, padding optional.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes the path segment after the OCSP GET prefix into DER request bytes.
///
/// Accepts raw `+ / =` and their percent-encodings, `+` is a literal plus (never a space),
/// standard or URL-safe (`- _`) base64, with or without `=` padding. The router must hand over
/// the whole rest of the path: base64 contains `/`.
pub fn decode_get_path(segment: &str) -> Result<Vec<u8>, GetPathError> {
    let bytes = segment.as_bytes();
    let mut b64 = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| hex_val(*c));
                let lo = bytes.get(i + 2).and_then(|c| hex_val(*c));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        i += 2;
                        (hi << 4) | lo
                    }
                    _ => return Err(GetPathError::BadPercentEncoding),
                }
            }
            c => c,
        };
        b64.push(match c {
            b'-' => b'+',
            b'_' => b'/',
            c => c,
        });
        i += 1;
    }
    LENIENT.decode(&b64).map_err(|_| GetPathError::BadBase64)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_all_spellings() {
        let data: Vec<u8> = (0u8..=255).collect();
        let std = base64::engine::general_purpose::STANDARD.encode(&data);
        assert!(std.contains('+') && std.contains('/') && std.ends_with('='));
        let nopad = std.trim_end_matches('=').to_string();
        let url = base64::engine::general_purpose::URL_SAFE.encode(&data);
        let pct = std
            .replace('+', "%2B")
            .replace('/', "%2f")
            .replace('=', "%3D");
        for s in [&std, &nopad, &url, &pct] {
            assert_eq!(decode_get_path(s).unwrap(), data, "{s}");
        }
    }

    #[test]
    fn plus_is_not_space_and_bad_input_fails() {
        // "+" decodes as base64 62, a space is not base64 at all.
        assert_eq!(decode_get_path("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_get_path(" /8="), Err(GetPathError::BadBase64));
        assert_eq!(decode_get_path("%2"), Err(GetPathError::BadPercentEncoding));
        assert_eq!(
            decode_get_path("%zz"),
            Err(GetPathError::BadPercentEncoding)
        );
        assert_eq!(decode_get_path("A"), Err(GetPathError::BadBase64));
    }
}
