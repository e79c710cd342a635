//! What API answers may show of an applicant: personal numbers and names masked.

use identifiers::mask::{mask_card, mask_id_number, mask_middle, mask_phone};
use plugin_abi::doc::Applicant;
use serde_json::{Map, Value};

/// Masks a person's name: the first character, then one `*` per other character.
pub fn mask_name(s: &str) -> String {
    mask_middle(s, 1, 0)
}

/// The applicant with every personal field masked; organisation fields are public and kept.
pub fn masked_applicant(a: &Applicant) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: &Option<String>, f: fn(&str) -> String| {
        if let Some(v) = v {
            m.insert(k.to_owned(), Value::String(f(v)));
        }
    };
    put("name", &a.name, mask_name);
    put("id_number", &a.id_number, mask_id_number);
    put("phone", &a.phone, mask_phone);
    put("bank_card", &a.bank_card, mask_card);
    put("org_name", &a.org_name, str::to_owned);
    put("uscc", &a.uscc, str::to_owned);
    put("legal_rep_name", &a.legal_rep_name, mask_name);
    put("legal_rep_id", &a.legal_rep_id, mask_id_number);
    put("bank_account", &a.bank_account, mask_card);
    put("bank_name", &a.bank_name, str::to_owned);
    Value::Object(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn personal_fields_are_masked() {
        let a: Applicant = serde_json::from_value(serde_json::json!({
            "name": "张三", "id_number": "11010519491231002X", "phone": "13800138000",
            "bank_card": "6222020000000000018", "org_name": "示例科技有限公司"
        }))
        .unwrap();
        let m = masked_applicant(&a);
        assert_eq!(m["name"], "张*");
        assert_eq!(m["id_number"], "110***********002X");
        assert_eq!(m["phone"], "138****8000");
        assert_eq!(m["bank_card"], "6222***********0018");
        assert_eq!(m["org_name"], "示例科技有限公司");
        assert!(m.get("uscc").is_none());
    }
}
