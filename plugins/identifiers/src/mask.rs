//! Masking helpers: what logs, errors and displays may show of a personal number.

/// Keeps the first `keep_start` and last `keep_end` characters and replaces every other
/// character with `*`; strings too short to keep anything hidden are fully masked.
pub fn mask_middle(s: &str, keep_start: usize, keep_end: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    if n <= keep_start + keep_end {
        return "*".repeat(n);
    }
    let mut out = String::with_capacity(n);
    out.extend(&chars[..keep_start]);
    out.extend(std::iter::repeat_n('*', n - keep_start - keep_end));
    out.extend(&chars[n - keep_end..]);
    out
}

/// Masks a resident ID number: `110***********1234` (first 3, last 4).
pub fn mask_id_number(s: &str) -> String {
    mask_middle(s, 3, 4)
}

/// Masks a mobile number: `138****5678` (first 3, last 4).
pub fn mask_phone(s: &str) -> String {
    mask_middle(s, 3, 4)
}

/// Masks a card or account number: `6222********1234` (first 4, last 4).
pub fn mask_card(s: &str) -> String {
    mask_middle(s, 4, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_shapes() {
        assert_eq!(mask_id_number("110105194912311234"), "110***********1234");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_card("6222021234561234"), "6222********1234");
        assert_eq!(mask_card("6222021234567890123"), "6222***********0123");
    }

    #[test]
    fn short_inputs_are_fully_masked() {
        assert_eq!(mask_phone("1234567"), "*******");
        assert_eq!(mask_phone(""), "");
        assert_eq!(mask_middle("abc", 1, 1), "a*c");
    }

    #[test]
    fn multibyte_characters_count_as_one() {
        assert_eq!(mask_middle("张三丰", 1, 0), "张**");
    }
}
