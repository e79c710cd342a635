//! Deposit amounts as typed by a person (`0.37`, `.37`, `¥0.37`, `0.37元`) in fen.

/// Why an entered amount could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not a yuan amount with at most two decimals.
    Format,
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
    fn garbage_is_rejected() {
        for bad in [
            "", ".", "0.375", "-0.37", "0,37", "abc", "0.3a", "12345678", "0..3",
        ] {
            assert_eq!(parse_fen(bad), Err(AmountError::Format), "{bad}");
        }
    }
}
