//! Travel permits: the Mainland travel permit for HK/Macau residents ("home-return permit") and
//! the Mainland travel permit for Taiwan residents. Residence permits (areas 81/82/83) use the
//! resident ID format: see [`crate::ResidentId`].

use std::fmt;

use crate::mask::mask_middle;

/// Why a permit number was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitError {
    /// The number does not match the permit's pattern.
    Format,
}

impl fmt::Display for PermitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("permit number has an invalid format")
    }
}

impl std::error::Error for PermitError {}

/// A home-return permit number `^[HM]\d{8}(\d{2})?$` (H: Hong Kong, M: Macau).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HomeReturnPermit(String);

impl HomeReturnPermit {
    /// Parses a number (trimmed, upper-cased).
    pub fn parse(input: &str) -> Result<HomeReturnPermit, PermitError> {
        let v = input.trim().to_ascii_uppercase();
        let b = v.as_bytes();
        let ok = matches!(b.first(), Some(b'H' | b'M'))
            && (b.len() == 9 || b.len() == 11)
            && b[1..].iter().all(u8::is_ascii_digit);
        if ok {
            Ok(HomeReturnPermit(v))
        } else {
            Err(PermitError::Format)
        }
    }

    /// The normalised number.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a Hong Kong resident's permit (`H`), false for Macau (`M`).
    pub fn is_hong_kong(&self) -> bool {
        self.0.starts_with('H')
    }
}

impl fmt::Debug for HomeReturnPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HomeReturnPermit({})", mask_middle(&self.0, 1, 2))
    }
}

/// A Taiwan compatriot permit number in the current 8-digit form `^\d{8}$`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TaiwanPermit(String);

impl TaiwanPermit {
    /// Parses a number (trimmed).
    pub fn parse(input: &str) -> Result<TaiwanPermit, PermitError> {
        let v = input.trim();
        if v.len() == 8 && v.bytes().all(|c| c.is_ascii_digit()) {
            Ok(TaiwanPermit(v.to_owned()))
        } else {
            Err(PermitError::Format)
        }
    }

    /// The number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TaiwanPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaiwanPermit({})", mask_middle(&self.0, 0, 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_return_permit_forms() {
        assert!(HomeReturnPermit::parse("H12345678").unwrap().is_hong_kong());
        assert!(!HomeReturnPermit::parse("m1234567801")
            .unwrap()
            .is_hong_kong());
        for bad in ["H1234567", "H123456789", "X12345678", "H1234567a", "", "H"] {
            assert_eq!(
                HomeReturnPermit::parse(bad),
                Err(PermitError::Format),
                "{bad}"
            );
        }
    }

    #[test]
    fn taiwan_permit_forms() {
        assert_eq!(
            TaiwanPermit::parse(" 12345678 ").unwrap().as_str(),
            "12345678"
        );
        for bad in ["1234567", "123456789", "1234567a", ""] {
            assert_eq!(TaiwanPermit::parse(bad), Err(PermitError::Format), "{bad}");
        }
    }

    #[test]
    fn debug_masks() {
        let p = HomeReturnPermit::parse("H12345678").unwrap();
        assert_eq!(format!("{p:?}"), "HomeReturnPermit(H******78)");
        let t = TaiwanPermit::parse("12345678").unwrap();
        assert_eq!(format!("{t:?}"), "TaiwanPermit(******78)");
    }
}
