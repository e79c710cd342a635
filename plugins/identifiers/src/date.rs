//! A proleptic Gregorian calendar date, just enough to check birth dates.

use std::fmt;

/// A calendar date (year, month 1-12, day 1-31), always valid once constructed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

/// Why a date could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateError {
    /// The text is not `YYYY-MM-DD` (or `YYYYMMDD` for [`Date::parse_compact`]).
    Format,
    /// The numbers do not name a real day (e.g. 2023-02-29).
    NotADay,
}

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateError::Format => f.write_str("date is not in the expected format"),
            DateError::NotADay => f.write_str("date does not name a real day"),
        }
    }
}

impl std::error::Error for DateError {}

/// True for Gregorian leap years.
pub fn is_leap_year(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Number of days in `month` of `year` (0 for an invalid month).
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// Builds a date, checking that the day exists.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Date, DateError> {
        if year == 0 || day == 0 || day > days_in_month(year, month) {
            return Err(DateError::NotADay);
        }
        Ok(Date { year, month, day })
    }

    /// Parses `YYYY-MM-DD`; also accepts a longer RFC 3339 timestamp and uses its date part
    /// (as written, without time-zone conversion).
    pub fn parse(s: &str) -> Result<Date, DateError> {
        let b = s.as_bytes();
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(DateError::Format);
        }
        if b.len() > 10 && b[10] != b'T' && b[10] != b't' {
            return Err(DateError::Format);
        }
        let year = digits(&b[0..4]).ok_or(DateError::Format)?;
        let month = digits(&b[5..7]).ok_or(DateError::Format)?;
        let day = digits(&b[8..10]).ok_or(DateError::Format)?;
        Date::from_numbers(year, month, day)
    }

    /// Parses `YYYYMMDD` (the form inside a resident ID number).
    pub fn parse_compact(s: &str) -> Result<Date, DateError> {
        let b = s.as_bytes();
        if b.len() != 8 {
            return Err(DateError::Format);
        }
        let year = digits(&b[0..4]).ok_or(DateError::Format)?;
        let month = digits(&b[4..6]).ok_or(DateError::Format)?;
        let day = digits(&b[6..8]).ok_or(DateError::Format)?;
        Date::from_numbers(year, month, day)
    }

    fn from_numbers(year: u32, month: u32, day: u32) -> Result<Date, DateError> {
        let year = u16::try_from(year).map_err(|_| DateError::NotADay)?;
        let month = u8::try_from(month).map_err(|_| DateError::NotADay)?;
        let day = u8::try_from(day).map_err(|_| DateError::NotADay)?;
        Date::new(year, month, day)
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1-12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, 1-31.
    pub fn day(self) -> u8 {
        self.day
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_years_follow_gregorian_rules() {
        assert!(is_leap_year(2000));
        assert!(is_leap_year(2024));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2023));
    }

    #[test]
    fn new_rejects_days_that_do_not_exist() {
        assert!(Date::new(2024, 2, 29).is_ok());
        assert_eq!(Date::new(2023, 2, 29), Err(DateError::NotADay));
        assert_eq!(Date::new(2023, 4, 31), Err(DateError::NotADay));
        assert_eq!(Date::new(2023, 13, 1), Err(DateError::NotADay));
        assert_eq!(Date::new(2023, 1, 0), Err(DateError::NotADay));
    }

    #[test]
    fn parse_accepts_dates_and_rfc3339_timestamps() {
        let d = Date::parse("2026-11-24").unwrap();
        assert_eq!((d.year(), d.month(), d.day()), (2026, 11, 24));
        assert_eq!(Date::parse("2026-11-24T12:00:00Z").unwrap(), d);
        assert_eq!(d.to_string(), "2026-11-24");
    }

    #[test]
    fn parse_rejects_malformed_text() {
        for bad in [
            "",
            "2026-1-24",
            "2026/11/24",
            "2026-11-24X",
            "20a6-11-24",
            "２026-11-24",
        ] {
            assert_eq!(Date::parse(bad), Err(DateError::Format), "{bad}");
        }
        assert_eq!(Date::parse("2026-02-30"), Err(DateError::NotADay));
    }

    #[test]
    fn parse_compact_reads_yyyymmdd() {
        assert_eq!(
            Date::parse_compact("19491231").unwrap(),
            Date::new(1949, 12, 31).unwrap()
        );
        assert_eq!(Date::parse_compact("1949123"), Err(DateError::Format));
        assert_eq!(Date::parse_compact("19490230"), Err(DateError::NotADay));
    }

    #[test]
    fn dates_order_chronologically() {
        assert!(Date::new(2026, 1, 1).unwrap() > Date::new(2025, 12, 31).unwrap());
        assert!(Date::new(2026, 2, 1).unwrap() > Date::new(2026, 1, 31).unwrap());
    }
}
