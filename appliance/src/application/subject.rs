//! The subject of an application as the channel declares it (checked, normalised, masked on
//! output), and the keyed hash that finds a person again without storing the number in clear.

use identifiers::mask::{mask_card, mask_id_number, mask_phone};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::policy::SubjectType;
use crate::verification::mask::mask_name;
use crate::verification::DataKey;

/// The subject fields a channel may send (`subject` of a new application, or of a choice).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectInput {
    /// `person` (default) or `organisation`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub subject_type: Option<SubjectType>,
    /// Legal name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ID document type: `resident_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_type: Option<String>,
    /// ID document number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// Mobile phone (for the bank card: the bank-reserved phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Bank card number (the bank-card method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_card: Option<String>,
}

/// Why a subject was refused: a field and a reason, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// A required field is missing.
    #[error("subject.{0} is required")]
    Missing(&'static str),
    /// The ID document type is not supported.
    #[error("subject.id_type must be \"resident_id\"")]
    IdType,
    /// The ID number fails its format or check digit.
    #[error("subject.id_number is not a valid resident ID number: {0}")]
    IdNumber(String),
    /// The phone is not a mainland mobile number.
    #[error("subject.phone is not a valid mobile number")]
    Phone,
    /// The bank card number fails its format or Luhn check.
    #[error("subject.bank_card is not a valid card number")]
    BankCard,
    /// The name or e-mail is empty, too long or malformed.
    #[error("subject.{0} is empty, too long or malformed")]
    Malformed(&'static str),
    /// Organisation subjects come with the organisation flows.
    #[error("subject.type organisation is not supported yet")]
    Organisation,
}

fn today() -> identifiers::date::Date {
    let d = time::OffsetDateTime::now_utc().date();
    identifiers::date::Date::new(d.year().clamp(1, 9999) as u16, u8::from(d.month()), d.day())
        .unwrap_or_else(|_| {
            // A calendar date from `time` is always valid; keep a safe fallback anyway.
            identifiers::date::Date::new(2000, 1, 1).unwrap_or_else(|_| unreachable_date())
        })
}

fn unreachable_date() -> identifiers::date::Date {
    // Only reached if `Date::new(2000, 1, 1)` failed, which it cannot.
    std::process::abort()
}

impl SubjectInput {
    /// The subject type (`person` when absent).
    pub fn kind(&self) -> SubjectType {
        self.subject_type.unwrap_or(SubjectType::Person)
    }

    /// Checks and normalises the fields that are present (phone digits only, ID upper-case).
    pub fn normalise(mut self) -> Result<Self, SubjectError> {
        if self.kind() == SubjectType::Organisation {
            return Err(SubjectError::Organisation);
        }
        if let Some(n) = &self.name {
            let n = n.trim();
            if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
                return Err(SubjectError::Malformed("name"));
            }
            self.name = Some(n.to_owned());
        }
        if let Some(t) = &self.id_type {
            if t != "resident_id" {
                return Err(SubjectError::IdType);
            }
        }
        if let Some(id) = &self.id_number {
            let parsed = identifiers::resident_id::ResidentId::parse(id.trim(), today())
                .map_err(|e| SubjectError::IdNumber(e.to_string()))?;
            self.id_number = Some(parsed.as_str().to_owned());
            self.id_type = Some("resident_id".into());
        }
        if let Some(p) = &self.phone {
            let m = identifiers::mobile::Mobile::parse(p).map_err(|_| SubjectError::Phone)?;
            self.phone = Some(m.as_str().to_owned());
        }
        if let Some(c) = &self.bank_card {
            let card =
                identifiers::bank_card::BankCard::parse(c).map_err(|_| SubjectError::BankCard)?;
            if !card.luhn_ok() {
                return Err(SubjectError::BankCard);
            }
            self.bank_card = Some(card.as_str().to_owned());
        }
        if let Some(e) = &self.email {
            let ok = e.is_ascii()
                && e.len() <= 128
                && e.split('@').count() == 2
                && e.split('@').all(|p| !p.is_empty())
                && !e.contains(char::is_whitespace);
            if !ok {
                return Err(SubjectError::Malformed("email"));
            }
        }
        Ok(self)
    }

    /// A new application's subject: a person with name, ID number and phone.
    pub fn require_person(&self) -> Result<(), SubjectError> {
        if self.name.is_none() {
            return Err(SubjectError::Missing("name"));
        }
        if self.id_type.is_none() && self.id_number.is_some() {
            return Err(SubjectError::Missing("id_type"));
        }
        if self.id_number.is_none() {
            return Err(SubjectError::Missing("id_number"));
        }
        if self.phone.is_none() {
            return Err(SubjectError::Missing("phone"));
        }
        Ok(())
    }

    /// The fields present, by API name.
    pub fn present(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (k, v) in [
            ("name", &self.name),
            ("id_number", &self.id_number),
            ("phone", &self.phone),
            ("email", &self.email),
            ("bank_card", &self.bank_card),
        ] {
            if v.is_some() {
                out.push(k);
            }
        }
        out
    }

    /// The value of a field by API name.
    pub fn get(&self, field: &str) -> Option<&str> {
        match field {
            "name" => self.name.as_deref(),
            "id_number" => self.id_number.as_deref(),
            "phone" => self.phone.as_deref(),
            "email" => self.email.as_deref(),
            "bank_card" => self.bank_card.as_deref(),
            _ => None,
        }
    }

    /// This subject with `over`'s present fields taken instead.
    pub fn overlaid(&self, over: &SubjectInput) -> SubjectInput {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        SubjectInput {
            subject_type: self.subject_type,
            name: pick(&self.name, &over.name),
            id_type: pick(&self.id_type, &over.id_type),
            id_number: pick(&self.id_number, &over.id_number),
            phone: pick(&self.phone, &over.phone),
            email: pick(&self.email, &over.email),
            bank_card: pick(&self.bank_card, &over.bank_card),
        }
    }

    /// Every field masked, for answers.
    pub fn masked(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "type".into(),
            Value::String(match self.kind() {
                SubjectType::Person => "person".into(),
                SubjectType::Organisation => "organisation".into(),
            }),
        );
        let mut put = |k: &str, v: &Option<String>, f: fn(&str) -> String| {
            if let Some(v) = v {
                m.insert(k.to_owned(), Value::String(f(v)));
            }
        };
        put("name", &self.name, mask_name);
        put("id_type", &self.id_type, str::to_owned);
        put("id_number", &self.id_number, mask_id_number);
        put("phone", &self.phone, mask_phone);
        put("email", &self.email, mask_email);
        put("bank_card", &self.bank_card, mask_card);
        Value::Object(m)
    }
}

/// `z***@example.cn`.
pub fn mask_email(e: &str) -> String {
    match e.split_once('@') {
        Some((user, domain)) => format!("{}@{domain}", identifiers::mask::mask_middle(user, 1, 0)),
        None => identifiers::mask::mask_middle(e, 1, 0),
    }
}

/// The keyed hash of a person (ID type + normalised number) under `key`: how applications,
/// reuse windows and verified phones find the same person without the number in clear.
/// 32 hex characters; a different data key gives a different hash (look-ups try every key held).
pub fn subject_hash(key: &DataKey, id_type: &str, id_number: &str) -> String {
    let mut value = String::with_capacity(id_type.len() + id_number.len() + 1);
    value.push_str(id_type);
    value.push(':');
    value.push_str(&id_number.to_ascii_uppercase());
    let mac = key.reference_mac("application-subject", &value);
    hex::encode(&mac[..16])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn zhang() -> SubjectInput {
        serde_json::from_value(serde_json::json!({
            "type": "person", "name": " 张三 ", "id_type": "resident_id",
            "id_number": "11010519491231002x", "phone": "+86 138 0013 8000"
        }))
        .unwrap()
    }

    #[test]
    fn a_person_is_normalised_and_masked() {
        let s = zhang().normalise().unwrap();
        s.require_person().unwrap();
        assert_eq!(s.name.as_deref(), Some("张三"));
        assert_eq!(s.id_number.as_deref(), Some("11010519491231002X"));
        assert_eq!(s.phone.as_deref(), Some("13800138000"));
        let m = s.masked().to_string();
        assert!(
            !m.contains("13800138000") && !m.contains("11010519491231002X"),
            "{m}"
        );
    }

    #[test]
    fn bad_fields_get_their_own_error_without_the_value() {
        let mut s = zhang();
        s.id_number = Some("110105194912310021".into());
        let e = s.normalise().unwrap_err();
        assert!(matches!(e, SubjectError::IdNumber(_)), "{e}");
        assert!(!e.to_string().contains("110105194912310021"));
        let mut s = zhang();
        s.id_type = Some("passport".into());
        assert_eq!(s.normalise().unwrap_err(), SubjectError::IdType);
        let mut s = zhang();
        s.phone = Some("12345".into());
        assert_eq!(s.normalise().unwrap_err(), SubjectError::Phone);
        let mut s = zhang();
        s.bank_card = Some("6222020000000000019".into());
        assert_eq!(s.normalise().unwrap_err(), SubjectError::BankCard);
        let mut s = zhang().normalise().unwrap();
        s.phone = None;
        assert_eq!(
            s.require_person().unwrap_err(),
            SubjectError::Missing("phone")
        );
        assert!(
            serde_json::from_value::<SubjectInput>(serde_json::json!({"nickname": "x"})).is_err()
        );
    }

    #[test]
    fn the_hash_is_keyed_and_stable() {
        let k1 = DataKey::from_bytes(1, &[7u8; 32]);
        let k2 = DataKey::from_bytes(2, &[8u8; 32]);
        let a = subject_hash(&k1, "resident_id", "11010519491231002X");
        assert_eq!(a, subject_hash(&k1, "resident_id", "11010519491231002x"));
        assert_ne!(a, subject_hash(&k2, "resident_id", "11010519491231002X"));
        assert_ne!(a, subject_hash(&k1, "resident_id", "110105198001010016"));
        assert_eq!(a.len(), 32);
    }
}
