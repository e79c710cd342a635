//! ASN.1 time encodings: GeneralizedTime (OCSP, invalidity dates) and the RFC 5280 `Time`
//! choice (UTCTime through 2049, GeneralizedTime from 2050), always UTC, whole seconds.

use crate::der_write::{push_header, GENERALIZED_TIME, UTC_TIME};
use time::{OffsetDateTime, UtcOffset};

/// A timestamp that no ASN.1 time type here can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("time outside years 0000..=9999")]
pub struct TimeOutOfRange;

/// Splits a timestamp into UTC calendar fields, dropping sub-seconds.
fn fields(t: OffsetDateTime) -> Result<(u16, u8, u8, u8, u8, u8), TimeOutOfRange> {
    let t = t.to_offset(UtcOffset::UTC);
    let year = u16::try_from(t.year()).map_err(|_| TimeOutOfRange)?;
    if year > 9999 {
        return Err(TimeOutOfRange);
    }
    Ok((
        year,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    ))
}

fn push2(out: &mut Vec<u8>, v: u8) {
    out.push(b'0' + v / 10);
    out.push(b'0' + v % 10);
}

/// Appends a GeneralizedTime TLV `YYYYMMDDHHMMSSZ` (15 content bytes, no fractions).
pub(crate) fn push_generalized(out: &mut Vec<u8>, t: OffsetDateTime) -> Result<(), TimeOutOfRange> {
    let (y, mo, d, h, mi, s) = fields(t)?;
    push_header(out, GENERALIZED_TIME, 15);
    // y <= 9999 so both halves are below 100.
    push2(out, (y / 100) as u8);
    push2(out, (y % 100) as u8);
    for v in [mo, d, h, mi, s] {
        push2(out, v);
    }
    out.push(b'Z');
    Ok(())
}

/// Appends an RFC 5280 `Time`: UTCTime `YYMMDDHHMMSSZ` for 1950..=2049, else GeneralizedTime.
pub(crate) fn push_x509_time(out: &mut Vec<u8>, t: OffsetDateTime) -> Result<(), TimeOutOfRange> {
    let (y, mo, d, h, mi, s) = fields(t)?;
    if !(1950..=2049).contains(&y) {
        return push_generalized(out, t);
    }
    push_header(out, UTC_TIME, 13);
    // y % 100 < 100.
    push2(out, (y % 100) as u8);
    for v in [mo, d, h, mi, s] {
        push2(out, v);
    }
    out.push(b'Z');
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn text(v: &[u8]) -> String {
        String::from_utf8(v[2..].to_vec()).unwrap()
    }

    #[test]
    fn utc_time_through_2049_generalized_after() {
        let mut v = Vec::new();
        push_x509_time(&mut v, datetime!(2049-12-31 23:59:59.9 UTC)).unwrap();
        assert_eq!(v[0], UTC_TIME);
        assert_eq!(text(&v), "491231235959Z");
        v.clear();
        push_x509_time(&mut v, datetime!(2050-01-01 00:00:00 UTC)).unwrap();
        assert_eq!(v[0], GENERALIZED_TIME);
        assert_eq!(text(&v), "20500101000000Z");
        v.clear();
        push_x509_time(&mut v, datetime!(1949-06-01 00:00:00 UTC)).unwrap();
        assert_eq!(v[0], GENERALIZED_TIME);
    }

    #[test]
    fn offsets_are_converted_to_utc_and_fractions_dropped() {
        let mut v = Vec::new();
        push_generalized(&mut v, datetime!(2026-01-01 08:00:00.123 +08:00)).unwrap();
        assert_eq!(text(&v), "20260101000000Z");
    }

    #[test]
    fn out_of_range_years_fail() {
        let mut v = Vec::new();
        assert_eq!(
            push_generalized(&mut v, datetime!(-0001-01-01 00:00:00 UTC)),
            Err(TimeOutOfRange)
        );
    }
}
