//! RFC 3339 instants as whole UTC seconds: plugins read "now" from the host's StepInput and
//! compute expiries (`now + 5 min`) without a clock of their own.

use std::fmt;

use crate::date::{Date, DateError};

/// An instant in UTC, whole seconds since 1970-01-01T00:00:00Z (fractions are truncated).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn two(b: &[u8]) -> Option<i64> {
    if b.len() == 2 && b.iter().all(u8::is_ascii_digit) {
        Some(i64::from(b[0] - b'0') * 10 + i64::from(b[1] - b'0'))
    } else {
        None
    }
}

impl Timestamp {
    /// From seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Timestamp {
        Timestamp(secs)
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 (`2026-11-24T12:00:00Z`, `...12:00:00.123+08:00`).
    pub fn parse(s: &str) -> Result<Timestamp, DateError> {
        let date = Date::parse(s)?;
        let b = s.as_bytes();
        if b.len() < 20 || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
            return Err(DateError::Format);
        }
        let h = two(&b[11..13]).ok_or(DateError::Format)?;
        let mi = two(&b[14..16]).ok_or(DateError::Format)?;
        let se = two(&b[17..19]).ok_or(DateError::Format)?;
        if h > 23 || mi > 59 || se > 60 {
            return Err(DateError::NotADay);
        }
        let mut rest = &b[19..];
        if rest.first() == Some(&b'.') {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(DateError::Format);
            }
            rest = &rest[1 + digits..];
        }
        let offset = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
                let oh = two(&[*oh1, *oh2]).ok_or(DateError::Format)?;
                let om = two(&[*om1, *om2]).ok_or(DateError::Format)?;
                if oh > 23 || om > 59 {
                    return Err(DateError::Format);
                }
                let off = oh * 3600 + om * 60;
                if *sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return Err(DateError::Format),
        };
        let days = days_from_civil(
            i64::from(date.year()),
            i64::from(date.month()),
            i64::from(date.day()),
        );
        Ok(Timestamp(days * 86_400 + h * 3600 + mi * 60 + se - offset))
    }

    /// This instant plus `secs` seconds (saturating).
    pub fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs))
    }

    /// The UTC calendar date (for "today" in birth-date checks).
    pub fn utc_date(self) -> Result<Date, DateError> {
        let (y, m, d) = civil_from_days(self.0.div_euclid(86_400));
        let y = u16::try_from(y).map_err(|_| DateError::NotADay)?;
        Date::new(y, m as u8, d as u8)
    }
}

impl fmt::Display for Timestamp {
    /// Formats as `YYYY-MM-DDTHH:MM:SSZ`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(Timestamp::parse("1970-01-01T00:00:00Z").unwrap().unix(), 0);
        // date -d 2026-11-24T12:00:00Z +%s
        assert_eq!(
            Timestamp::parse("2026-11-24T12:00:00Z").unwrap().unix(),
            1_795_521_600
        );
        assert_eq!(
            Timestamp::parse("2000-02-29T23:59:59Z").unwrap().unix(),
            951_868_799
        );
    }

    #[test]
    fn offsets_and_fractions() {
        let utc = Timestamp::parse("2026-11-24T12:00:00Z").unwrap();
        assert_eq!(Timestamp::parse("2026-11-24T20:00:00+08:00").unwrap(), utc);
        assert_eq!(Timestamp::parse("2026-11-24T07:30:00-04:30").unwrap(), utc);
        assert_eq!(Timestamp::parse("2026-11-24T12:00:00.999Z").unwrap(), utc);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2026-11-24T12:00:00Z",
            "2024-02-29T01:02:03Z",
            "1949-12-31T23:59:59Z",
        ] {
            assert_eq!(Timestamp::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn arithmetic_crosses_days_months_years() {
        let t = Timestamp::parse("2026-12-31T23:55:00Z")
            .unwrap()
            .plus_secs(600);
        assert_eq!(t.to_string(), "2027-01-01T00:05:00Z");
        let t = Timestamp::parse("2026-11-24T12:00:00Z")
            .unwrap()
            .plus_secs(72 * 3600);
        assert_eq!(t.to_string(), "2026-11-27T12:00:00Z");
    }

    #[test]
    fn utc_date_is_today() {
        let t = Timestamp::parse("2026-11-24T20:00:00-08:00").unwrap();
        assert_eq!(t.utc_date().unwrap(), Date::new(2026, 11, 25).unwrap());
    }

    #[test]
    fn malformed_is_rejected() {
        for bad in [
            "",
            "2026-11-24",
            "2026-11-24T12:00:00",
            "2026-11-24T12:00Z",
            "2026-11-24 12:00:00Z",
            "2026-11-24T12:00:00+0800",
            "2026-11-24T12:00:00.Z",
            "2026-11-24T12:00:00ZZ",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Timestamp::parse("2026-11-24T24:00:00Z"),
            Err(DateError::NotADay)
        );
        assert_eq!(
            Timestamp::parse("2026-02-30T12:00:00Z"),
            Err(DateError::NotADay)
        );
    }
}
