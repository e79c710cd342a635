//! What the applicant types back: the deposit amount (`0.37`, `.37`, `¥0.37`, `0.37元`, in fen)
//! and the verification code printed in the statement's remark.
//!
//! Guessing: the payout provider draws the amount (1-99 fen) and a [`CODE_DIGITS`]-digit code,
//! both unknown to the applicant without the statement; the plugin accepts the pair only. With
//! at most 10 attempts ([`crate::Config::max_attempts`]) a guesser succeeds with probability at
//! most 10 / 10^6 even if the amount were known ([`guess_probability`]), against 10 / 99 ≈ 10%
//! for an amount alone.

/// Why an entered amount could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not a yuan amount with at most two decimals.
    Format,
}

/// Digits of the provider's verification code the applicant must enter with the amount.
pub const CODE_DIGITS: u32 = 6;

/// Upper bound of a guesser's success over `attempts` tries: each try names one code out of
/// 10^CODE_DIGITS (the amount, which only makes it smaller, is ignored).
pub fn guess_probability(attempts: u32) -> f64 {
    f64::from(attempts) / 10f64.powi(CODE_DIGITS as i32)
}

/// Parses `AMOUNT CODE` (separated by spaces or a comma): fen and the code's digits.
pub fn parse_entry(input: &str) -> Result<(u32, String), AmountError> {
    let mut parts = input
        .split(|c: char| c.is_whitespace() || c == ',' || c == '，')
        .filter(|p| !p.is_empty());
    let (Some(amount), Some(code), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AmountError::Format);
    };
    if code.len() != CODE_DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError::Format);
    }
    Ok((parse_fen(amount)?, code.to_owned()))
}

/// Parses a yuan amount into fen; at most two decimals, at most 1 000 000 yuan.
pub fn parse_fen(input: &str) -> Result<u32, AmountError> {
    let s = input.trim();
    let s = s
        .strip_prefix('¥')
        .or_else(|| s.strip_prefix('￥'))
        .unwrap_or(s)
        .trim();
    let s = s
        .strip_suffix('元')
        .or_else(|| s.strip_suffix("CNY"))
        .unwrap_or(s)
        .trim();
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) || frac.len() > 2 {
        return Err(AmountError::Format);
    }
    if whole.len() > 7 {
        return Err(AmountError::Format);
    }
    let yuan: u32 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| AmountError::Format)?
    };
    let fen: u32 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u32>().map_err(|_| AmountError::Format)? * 10,
        _ => frac.parse().map_err(|_| AmountError::Format)?,
    };
    if yuan > 1_000_000 {
        return Err(AmountError::Format);
    }
    Ok(yuan * 100 + fen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_people_type() {
        assert_eq!(parse_fen("0.37"), Ok(37));
        assert_eq!(parse_fen(" .37 "), Ok(37));
        assert_eq!(parse_fen("0.3"), Ok(30));
        assert_eq!(parse_fen("¥0.05"), Ok(5));
        assert_eq!(parse_fen("0.05元"), Ok(5));
        assert_eq!(parse_fen("1"), Ok(100));
        assert_eq!(parse_fen("1."), Ok(100));
    }

    #[test]
    fn amount_and_code_together() {
        assert_eq!(parse_entry("0.37 123456"), Ok((37, "123456".into())));
        assert_eq!(parse_entry(" ¥0.37 , 004711 "), Ok((37, "004711".into())));
        for bad in [
            "0.37",
            "0.37 12345",
            "0.37 1234567",
            "0.37 12a456",
            "0.37 123456 1",
            "",
        ] {
            assert_eq!(parse_entry(bad), Err(AmountError::Format), "{bad}");
        }
    }

    #[test]
    fn guessing_succeeds_with_probability_under_one_percent() {
        // Every allowed max_attempts (1-10), with the amount known to the guesser.
        for attempts in 1..=10 {
            let p = guess_probability(attempts);
            assert!(p < 0.01, "{attempts} attempts: {p}");
        }
        assert!((guess_probability(10) - 1e-5).abs() < 1e-12);
        // The amount and the code together: 10 / (99 * 10^6) ~ 1.0e-7.
        let both = 10.0 / (99.0 * 1e6);
        assert!(both < guess_probability(10));
        // What it replaces: an amount of 1-99 fen alone, 10 attempts.
        let amount_only = 10.0 / 99.0;
        assert!(amount_only > 0.10, "{amount_only}");
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            "", ".", "0.375", "-0.37", "0,37", "abc", "0.3a", "12345678", "0..3",
        ] {
            assert_eq!(parse_fen(bad), Err(AmountError::Format), "{bad}");
        }
    }
}
