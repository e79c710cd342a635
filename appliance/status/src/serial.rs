//! Certificate serial numbers as the DER INTEGER content octets found in the certificate.

use crate::der_write::is_minimal_integer;

/// Longest serial RFC 5280 4.1.2.2 allows, in content octets.
pub const MAX_SERIAL_LEN: usize = 20;

/// A serial that cannot be a certificate's: empty, not minimally encoded, negative or longer
/// than [`MAX_SERIAL_LEN`] octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("serial number is not a minimal positive INTEGER of at most 20 octets")]
pub struct InvalidSerial;

/// Checks that `serial` is the content of a minimal, non-negative INTEGER of at most 20 octets.
pub fn check_serial(serial: &[u8]) -> Result<(), InvalidSerial> {
    let negative = serial.first().is_some_and(|b| b & 0x80 != 0);
    if serial.len() > MAX_SERIAL_LEN || negative || !is_minimal_integer(serial) {
        return Err(InvalidSerial);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn serial_rules() {
        assert!(check_serial(&[0x01]).is_ok());
        assert!(check_serial(&[0x00, 0x80]).is_ok());
        assert!(check_serial(&[0x7f; 20]).is_ok());
        assert_eq!(check_serial(&[]), Err(InvalidSerial));
        assert_eq!(check_serial(&[0x00, 0x01]), Err(InvalidSerial));
        assert_eq!(check_serial(&[0x80]), Err(InvalidSerial));
        assert_eq!(check_serial(&[0x7f; 21]), Err(InvalidSerial));
    }
}
