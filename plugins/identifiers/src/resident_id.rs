//! GB 11643-1999 resident identity numbers (and the HK/Macau/Taiwan residence permits that
//! share the format, areas 81/82/83).

use std::fmt;

use crate::date::Date;
use crate::mask::mask_id_number;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: &[u8; 11] = b"10X98765432";

/// Why a resident ID number was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidentIdError {
    /// Not 18 characters long.
    Length,
    /// Wrong characters: area code, century, sequence or check character out of pattern.
    Format,
    /// The embedded birth date is not a real day.
    BirthDate,
    /// The embedded birth date is after "today".
    BirthDateInFuture,
    /// The GB 11643 check character does not match.
    Checksum,
}

impl fmt::Display for ResidentIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResidentIdError::Length => "resident ID number must be 18 characters",
            ResidentIdError::Format => "resident ID number has an invalid format",
            ResidentIdError::BirthDate => "resident ID number has an impossible birth date",
            ResidentIdError::BirthDateInFuture => {
                "resident ID number has a birth date in the future"
            }
            ResidentIdError::Checksum => "resident ID number check character does not match",
        })
    }
}

impl std::error::Error for ResidentIdError {}

/// Which document the number belongs to, from its area code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidentIdKind {
    /// A mainland resident identity card.
    Mainland,
    /// Residence permit for Hong Kong residents (area 81).
    HongKongPermit,
    /// Residence permit for Macau residents (area 82).
    MacauPermit,
    /// Residence permit for Taiwan residents (area 83).
    TaiwanPermit,
}

/// A checked 18-character resident ID number (upper-case `X`); `Debug` masks it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidentId {
    value: String,
    birth: Date,
}

/// The GB 11643 check character for the first 17 digits (`None` if they are not 17 digits).
pub fn check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = b
        .iter()
        .zip(WEIGHTS)
        .map(|(&c, w)| u32::from(c - b'0') * w)
        .sum();
    Some(char::from(CHECK_CHARS[(sum % 11) as usize]))
}

impl ResidentId {
    /// Parses and checks a number: format, real birth date not after `today`, check character.
    /// Surrounding whitespace is ignored and a lower-case `x` accepted.
    pub fn parse(input: &str, today: Date) -> Result<ResidentId, ResidentIdError> {
        let value = input.trim().to_ascii_uppercase();
        let b = value.as_bytes();
        if value.chars().count() != 18 {
            return Err(ResidentIdError::Length);
        }
        // ^[1-9]\d{5}(18|19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[0-9X]$
        let digits_ok = b[..17].iter().all(u8::is_ascii_digit);
        let last_ok = b[17].is_ascii_digit() || b[17] == b'X';
        let century_ok = matches!(&b[6..8], b"18" | b"19" | b"20");
        if !digits_ok || !last_ok || b[0] == b'0' || !century_ok {
            return Err(ResidentIdError::Format);
        }
        let birth = Date::parse_compact(&value[6..14]).map_err(|_| ResidentIdError::BirthDate)?;
        if birth > today {
            return Err(ResidentIdError::BirthDateInFuture);
        }
        if check_char(&value[..17]) != Some(char::from(b[17])) {
            return Err(ResidentIdError::Checksum);
        }
        Ok(ResidentId { value, birth })
    }

    /// The normalised number (upper-case).
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The birth date embedded in the number.
    pub fn birth_date(&self) -> Date {
        self.birth
    }

    /// The six-digit administrative area code.
    pub fn area_code(&self) -> &str {
        &self.value[..6]
    }

    /// Mainland card or a HK/Macau/Taiwan residence permit.
    pub fn kind(&self) -> ResidentIdKind {
        match &self.value[..2] {
            "81" => ResidentIdKind::HongKongPermit,
            "82" => ResidentIdKind::MacauPermit,
            "83" => ResidentIdKind::TaiwanPermit,
            _ => ResidentIdKind::Mainland,
        }
    }

    /// The masked form for logs and displays (`110***********002X`).
    pub fn masked(&self) -> String {
        mask_id_number(&self.value)
    }
}

impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::new(2026, 11, 24).unwrap()
    }

    /// Builds a valid number from 17 digits by appending the computed check char.
    fn with_check(first17: &str) -> String {
        format!("{first17}{}", check_char(first17).unwrap())
    }

    #[test]
    fn standard_example_is_valid() {
        let id = ResidentId::parse("11010519491231002X", today()).unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(id.birth_date(), Date::new(1949, 12, 31).unwrap());
        assert_eq!(id.area_code(), "110105");
        assert_eq!(id.kind(), ResidentIdKind::Mainland);
    }

    #[test]
    fn lower_case_x_and_whitespace_are_normalised() {
        let id = ResidentId::parse("  11010519491231002x ", today()).unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
    }

    #[test]
    fn check_char_matches_standard_example() {
        assert_eq!(check_char("11010519491231002"), Some('X'));
        assert_eq!(check_char("1101051949123100"), None);
        assert_eq!(check_char("1101051949123100A"), None);
    }

    #[test]
    fn wrong_check_char_is_checksum_error() {
        assert_eq!(
            ResidentId::parse("110105194912310021", today()),
            Err(ResidentIdError::Checksum)
        );
    }

    #[test]
    fn wrong_length_is_length_error() {
        assert_eq!(
            ResidentId::parse("11010519491231002", today()),
            Err(ResidentIdError::Length)
        );
        assert_eq!(ResidentId::parse("", today()), Err(ResidentIdError::Length));
        assert_eq!(
            ResidentId::parse("11010519491231002X1", today()),
            Err(ResidentIdError::Length)
        );
    }

    #[test]
    fn pattern_violations_are_format_errors() {
        for bad in [
            "01010519491231002X",   // leading zero area
            "11010517491231002X",   // century 17
            "11010521491231002X",   // century 21
            "1101051949123100XX",   // X not last
            "11010519491231002Y",   // bad check char
            "11010519491231００2X", // full-width digits
        ] {
            assert_eq!(
                ResidentId::parse(bad, today()),
                Err(ResidentIdError::Format),
                "{bad}"
            );
        }
    }

    #[test]
    fn impossible_birth_dates_are_rejected() {
        for first17 in [
            "11010519490230002",
            "11010519491301002",
            "11010519490000002",
            "11010519230229002",
        ] {
            assert_eq!(
                ResidentId::parse(&with_check(first17), today()),
                Err(ResidentIdError::BirthDate),
                "{first17}"
            );
        }
        // 2000-02-29 existed.
        assert!(ResidentId::parse(&with_check("11010520000229002"), today()).is_ok());
    }

    #[test]
    fn birth_date_after_today_is_rejected_and_today_is_fine() {
        assert_eq!(
            ResidentId::parse(&with_check("11010520261125002"), today()),
            Err(ResidentIdError::BirthDateInFuture)
        );
        assert!(ResidentId::parse(&with_check("11010520261124002"), today()).is_ok());
    }

    #[test]
    fn residence_permit_areas_are_recognised() {
        let hk = ResidentId::parse(&with_check("81000019900101001"), today()).unwrap();
        assert_eq!(hk.kind(), ResidentIdKind::HongKongPermit);
        let mo = ResidentId::parse(&with_check("82000019900101001"), today()).unwrap();
        assert_eq!(mo.kind(), ResidentIdKind::MacauPermit);
        let tw = ResidentId::parse(&with_check("83000019900101001"), today()).unwrap();
        assert_eq!(tw.kind(), ResidentIdKind::TaiwanPermit);
    }

    #[test]
    fn debug_masks_the_number() {
        let id = ResidentId::parse("11010519491231002X", today()).unwrap();
        let dbg = format!("{id:?}");
        assert!(!dbg.contains("19491231"), "{dbg}");
        assert!(dbg.contains("110***********002X"), "{dbg}");
    }
}
