//! HTML building for the console: escaping, the page frame, masking of subjects.

use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn when(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .map(|s| format!("{s} UTC"))
        .unwrap_or_else(|| t.to_string())
}

/// A subject DN with personal values masked: names keep their first character, anything
/// holding a run of digits (ID, phone, card numbers) keeps only its ends.
pub fn mask_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| match rdn.split_once('=') {
            Some((attr, value)) => {
                let a = attr.trim();
                let masked = if value.chars().filter(char::is_ascii_digit).count() >= 6 {
                    identifiers::mask::mask_middle(value, 3, 4)
                } else if a.eq_ignore_ascii_case("CN") || a.eq_ignore_ascii_case("GN") {
                    identifiers::mask::mask_middle(value, 1, 0)
                } else {
                    value.to_owned()
                };
                format!("{a}={masked}")
            }
            None => rdn.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The page frame: title, the caller (and its CSRF token, for forms), the navigation, `body`.
pub fn page(title: &str, who: &str, role: &str, csrf: &str, body: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf-token\" content=\"{c}\"><title>{t} · CA console</title><link rel=\"stylesheet\" href=\"/console/console.css\">\
         </head><body><header><strong>CA console</strong>\
         <nav><a href=\"/console/\">Overview</a> <a href=\"/console/certificates\">Certificates</a> \
         <a href=\"/console/review\">Review queue</a> <a href=\"/console/audit\">Audit log</a></nav>\
         <span class=\"who\" id=\"who\">{w} ({r})</span></header><main><h1>{t}</h1>{body}</main>\
         </body></html>",
        t = esc(title),
        w = esc(who),
        r = esc(role),
        c = esc(csrf),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_in_a_subject_are_masked() {
        assert_eq!(mask_dn("CN=张三,C=CN"), "CN=张*,C=CN");
        let dn = mask_dn("CN=Li Si,serialNumber=11010519491231002X,C=CN");
        assert!(!dn.contains("11010519491231002X"), "{dn}");
        assert!(dn.starts_with("CN=L"), "{dn}");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
