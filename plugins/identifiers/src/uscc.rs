//! GB 32100-2015 unified social credit codes of organisations.

use std::fmt;

const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Why a USCC was rejected outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsccError {
    /// Not 18 characters long.
    Length,
    /// A character outside `0-9A-Y` minus `I O S V Z`.
    Alphabet,
}

impl fmt::Display for UsccError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UsccError::Length => "USCC must be 18 characters",
            UsccError::Alphabet => "USCC contains a character outside the GB 32100 alphabet",
        })
    }
}

impl std::error::Error for UsccError {}

/// Outcome of the check character test: a mismatch is a *soft* result, because some early
/// codes fail it; the registry has the last word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsccChecksum {
    /// The check character matches.
    Valid,
    /// The check character does not match: confirm against the registry before trusting.
    Mismatch,
}

/// A well-formed USCC (upper-case) with its checksum verdict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uscc {
    value: String,
    checksum: UsccChecksum,
}

fn index_of(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|i| i as u32)
}

/// The GB 32100 check character for the first 17 characters (`None` if malformed).
pub fn check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in b.iter().zip(WEIGHTS) {
        sum += index_of(c)? * w;
    }
    Some(char::from(ALPHABET[((31 - sum % 31) % 31) as usize]))
}

impl Uscc {
    /// Parses a code: 18 characters of the GB 32100 alphabet (case-insensitive, trimmed).
    /// The checksum verdict is recorded, not enforced.
    pub fn parse(input: &str) -> Result<Uscc, UsccError> {
        let value = input.trim().to_ascii_uppercase();
        if value.chars().count() != 18 {
            return Err(UsccError::Length);
        }
        if !value.bytes().all(|c| index_of(c).is_some()) {
            return Err(UsccError::Alphabet);
        }
        let checksum = if check_char(&value[..17]) == value[17..].chars().next() {
            UsccChecksum::Valid
        } else {
            UsccChecksum::Mismatch
        };
        Ok(Uscc { value, checksum })
    }

    /// The normalised code.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The checksum verdict.
    pub fn checksum(&self) -> UsccChecksum {
        self.checksum
    }

    /// True when the check character matches.
    pub fn checksum_valid(&self) -> bool {
        self.checksum == UsccChecksum::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_valid_codes_pass() {
        // Computed by hand from the GB 32100 weights; cross-checked by check_char below.
        for code in [
            "91350100M000100Y43",
            "91110000600037341L",
            "91110000100000000R",
        ] {
            let u = Uscc::parse(code).unwrap();
            assert_eq!(u.checksum(), UsccChecksum::Valid, "{code}");
        }
    }

    #[test]
    fn check_char_formula() {
        // All zeros: sum 0 -> (31 - 0) % 31 = 0 -> '0'.
        assert_eq!(check_char("00000000000000000"), Some('0'));
        // A single 1 in position 1 (weight 1): (31 - 1) % 31 = 30 -> 'Y'.
        assert_eq!(check_char("10000000000000000"), Some('Y'));
        // Weight 3 in position 2: 31 - 3 = 28 -> 'W'.
        assert_eq!(check_char("01000000000000000"), Some('W'));
        assert_eq!(check_char("0100000000000000I"), None);
        assert_eq!(check_char("0100"), None);
    }

    #[test]
    fn wrong_check_char_is_soft_mismatch() {
        let u = Uscc::parse("91350100M000100Y44").unwrap();
        assert_eq!(u.checksum(), UsccChecksum::Mismatch);
        assert!(!u.checksum_valid());
    }

    #[test]
    fn lower_case_is_normalised() {
        let u = Uscc::parse(" 91350100m000100y43 ").unwrap();
        assert_eq!(u.as_str(), "91350100M000100Y43");
        assert!(u.checksum_valid());
    }

    #[test]
    fn bad_length_and_alphabet_are_hard_errors() {
        assert_eq!(Uscc::parse("91350100M000100Y4"), Err(UsccError::Length));
        assert_eq!(Uscc::parse(""), Err(UsccError::Length));
        for letter in ['I', 'O', 'S', 'V', 'Z', '-'] {
            let code = format!("91350100M000100Y4{letter}");
            assert_eq!(Uscc::parse(&code), Err(UsccError::Alphabet), "{code}");
        }
        assert_eq!(Uscc::parse("91350100M000100Y4３"), Err(UsccError::Alphabet));
    }
}
