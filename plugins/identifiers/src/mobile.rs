//! Mainland China mobile numbers.

use std::fmt;

use crate::mask::mask_phone;

/// Why a mobile number was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MobileError {
    /// After stripping spaces, dashes and the `+86`/`0086` prefix it is not `1[3-9]` + 9 digits.
    Format,
}

impl fmt::Display for MobileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a mainland mobile number")
    }
}

impl std::error::Error for MobileError {}

/// A normalised 11-digit mainland mobile number; `Debug` masks it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Mobile(String);

impl Mobile {
    /// Strips spaces, dashes and a `+86` / `0086` / `86 ` prefix, then checks `^1[3-9]\d{9}$`.
    pub fn parse(input: &str) -> Result<Mobile, MobileError> {
        let compact: String = input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\t'))
            .collect();
        let rest = if let Some(r) = compact.strip_prefix("+86") {
            r
        } else if let Some(r) = compact.strip_prefix("0086") {
            r
        } else if compact.len() == 13 && compact.starts_with("86") {
            &compact[2..]
        } else {
            &compact
        };
        let b = rest.as_bytes();
        let ok = b.len() == 11
            && b[0] == b'1'
            && (b'3'..=b'9').contains(&b[1])
            && b.iter().all(u8::is_ascii_digit);
        if ok {
            Ok(Mobile(rest.to_owned()))
        } else {
            Err(MobileError::Format)
        }
    }

    /// The 11 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked form (`138****5678`).
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

impl fmt::Debug for Mobile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mobile({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_spaces_are_stripped() {
        for input in [
            "13812345678",
            "+8613812345678",
            "+86 138 1234 5678",
            "008613812345678",
            "0086 138-1234-5678",
            "8613812345678",
            " 138 1234 5678 ",
        ] {
            assert_eq!(
                Mobile::parse(input).unwrap().as_str(),
                "13812345678",
                "{input}"
            );
        }
    }

    #[test]
    fn invalid_numbers_are_rejected() {
        for input in [
            "",
            "12812345678",  // second digit 2
            "23812345678",  // not starting with 1
            "1381234567",   // 10 digits
            "138123456789", // 12 digits
            "1381234567a",
            "+1 13812345678",
            "+85213812345678",
            "１３８12345678",
        ] {
            assert_eq!(Mobile::parse(input), Err(MobileError::Format), "{input}");
        }
    }

    #[test]
    fn debug_masks() {
        let m = Mobile::parse("13812345678").unwrap();
        assert_eq!(format!("{m:?}"), "Mobile(138****5678)");
    }
}
