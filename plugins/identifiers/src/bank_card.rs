//! Bank card numbers (debit / credit, UnionPay and others).

use std::fmt;

use crate::mask::mask_card;

/// Why a card number was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BankCardError {
    /// Not 16-19 digits after removing spaces and dashes.
    Format,
}

impl fmt::Display for BankCardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bank card number must be 16-19 digits")
    }
}

impl std::error::Error for BankCardError {}

/// A 16-19 digit card number with its Luhn verdict (a warning, not a rejection: the bank's
/// 4-element check decides); `Debug` masks it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BankCard {
    digits: String,
    luhn_ok: bool,
}

/// True when `digits` (ASCII digits only) passes the Luhn mod-10 check.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl BankCard {
    /// Parses a card number, ignoring spaces and dashes.
    pub fn parse(input: &str) -> Result<BankCard, BankCardError> {
        let digits: String = input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\t'))
            .collect();
        if !(16..=19).contains(&digits.len()) || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(BankCardError::Format);
        }
        let luhn_ok = luhn_valid(&digits);
        Ok(BankCard { digits, luhn_ok })
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.digits
    }

    /// True when the Luhn check passes; false is a warning only.
    pub fn luhn_ok(&self) -> bool {
        self.luhn_ok
    }

    /// The masked form (`6222********1234`).
    pub fn masked(&self) -> String {
        mask_card(&self.digits)
    }
}

impl fmt::Debug for BankCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BankCard({}, luhn_ok: {})", self.masked(), self.luhn_ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("6222021234567890128"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("41111a1111111111"));
    }

    #[test]
    fn valid_lengths_parse_with_luhn_flag() {
        let c = BankCard::parse("4111 1111 1111 1111").unwrap();
        assert_eq!(c.as_str(), "4111111111111111");
        assert!(c.luhn_ok());
        let c = BankCard::parse("6222-0212-3456-7890-128").unwrap();
        assert!(c.luhn_ok());
        let warn = BankCard::parse("4111111111111112").unwrap();
        assert!(!warn.luhn_ok(), "Luhn failure is a flag, not a rejection");
    }

    #[test]
    fn wrong_lengths_and_characters_are_rejected() {
        for bad in [
            "411111111111111",
            "41111111111111111111",
            "",
            "4111x11111111111",
            "４111111111111111",
        ] {
            assert_eq!(BankCard::parse(bad), Err(BankCardError::Format), "{bad}");
        }
    }

    #[test]
    fn debug_masks() {
        let c = BankCard::parse("6222021234561234").unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("6222********1234"), "{dbg}");
        assert!(!dbg.contains("02123456"), "{dbg}");
    }
}
