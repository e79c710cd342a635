//! The subject of an application as the channel declares it (checked, normalised, masked on
//! output), and the keyed hash that finds a person again without storing the number in clear.

use identifiers::mask::{mask_card, mask_id_number, mask_phone};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::policy::{Person, SubjectType};
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
    /// ID document type: `resident_id`, `tw_permit` (Taiwan compatriot permit), `passport`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_type: Option<String>,
    /// ID document number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// Passport only: the issuing state, as ICAO 9303 writes it (`CHN`, `USA`, `D`), since
    /// passport numbers are unique only within their issuing state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_country: Option<String>,
    /// Mobile phone (for the bank card: the bank-reserved phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Bank card number (the bank-card method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_card: Option<String>,
    /// Organisation: unified social credit code (GB 32100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uscc: Option<String>,
    /// Organisation: its legal representative (a person: name, id_type, id_number, phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_rep: Option<Box<SubjectInput>>,
    /// Organisation: the agent applying for it (a person; absent: the legal representative
    /// applies in person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Box<SubjectInput>>,
    /// Organisation: corporate bank account number (the corporate-transfer method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_account: Option<String>,
    /// Organisation: the corporate account's bank (branch) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    /// In a person's view of an organisation ([`SubjectInput::acting`]): the organisation's
    /// name. Never read from a request.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
}

/// Why a subject was refused: a field and a reason, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// A required field is missing.
    #[error("subject.{0} is required")]
    Missing(&'static str),
    /// The ID document type is not supported.
    #[error("subject.id_type must be \"resident_id\", \"tw_permit\" or \"passport\"")]
    IdType,
    /// The ID number fails its format or check digit.
    #[error("subject.id_number is not a valid ID number of its type: {0}")]
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
    /// The USCC fails its format or GB 32100 check character.
    #[error("subject.uscc is not a valid unified social credit code")]
    Uscc,
    /// A field of the other subject type (`uscc` on a person, a person inside a person).
    #[error("subject.{0} does not belong to this subject type")]
    NotForType(&'static str),
    /// The issuing state is not an ICAO 9303 code, or was given with another document type.
    #[error("subject.id_country is the passport's issuing state: 1 to 3 letters (ICAO 9303, e.g. CHN, USA, D), for a passport only")]
    IdCountry,
}

/// Checks and normalises an ID number of `id_type`: a resident ID (GB 11643 check digit), a
/// Taiwan compatriot permit (8 digits), or a passport (ICAO 9303 document number: 5 to 9 of
/// A-Z and 0-9 with at least one digit, upper-cased).
fn id_number(id_type: &str, id: &str) -> Result<String, SubjectError> {
    let id = id.trim();
    match id_type {
        "tw_permit" => identifiers::permit::TaiwanPermit::parse(id)
            .map(|p| p.as_str().to_owned())
            .map_err(|_| {
                SubjectError::IdNumber("a Taiwan compatriot permit number is 8 digits".into())
            }),
        "passport" => {
            let p = id.to_ascii_uppercase();
            let ok = (5..=9).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                && p.bytes().any(|b| b.is_ascii_digit());
            if ok {
                Ok(p)
            } else {
                Err(SubjectError::IdNumber(
                    "a passport number is 5 to 9 letters and digits (ICAO 9303)".into(),
                ))
            }
        }
        _ => identifiers::resident_id::ResidentId::parse(id, today())
            .map(|p| p.as_str().to_owned())
            .map_err(|e| SubjectError::IdNumber(e.to_string())),
    }
}

/// Masks a permit or passport number (8-9 characters): the first and the last two only, so
/// no more than half of it shows.
fn mask_short_id(s: &str) -> String {
    identifiers::mask::mask_middle(s, 1, 2)
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
        let organisation = self.kind() == SubjectType::Organisation;
        if !organisation && self.legal_rep.is_some() {
            return Err(SubjectError::NotForType("legal_rep"));
        }
        if !organisation && self.agent.is_some() {
            return Err(SubjectError::NotForType("agent"));
        }
        for (field, person) in [
            ("legal_rep", &mut self.legal_rep),
            ("agent", &mut self.agent),
        ] {
            if let Some(p) = person.take() {
                if p.subject_type.is_some()
                    || p.uscc.is_some()
                    || p.legal_rep.is_some()
                    || p.agent.is_some()
                    || p.bank_account.is_some()
                    || p.bank_name.is_some()
                {
                    return Err(SubjectError::NotForType(field));
                }
                *person = Some(Box::new(p.normalise()?));
            }
        }
        if let Some(n) = &self.name {
            let n = n.trim();
            let max = if organisation { 128 } else { 64 };
            if n.is_empty() || n.chars().count() > max || n.chars().any(char::is_control) {
                return Err(SubjectError::Malformed("name"));
            }
            self.name = Some(n.to_owned());
        }
        if let Some(u) = &self.uscc {
            let u = identifiers::uscc::Uscc::parse(u.trim()).map_err(|_| SubjectError::Uscc)?;
            if !u.checksum_valid() {
                return Err(SubjectError::Uscc);
            }
            self.uscc = Some(u.as_str().to_owned());
        }
        if let Some(a) = &self.bank_account {
            let a: String = a.chars().filter(|c| *c != ' ').collect();
            if !(8..=32).contains(&a.len()) || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SubjectError::Malformed("bank_account"));
            }
            self.bank_account = Some(a);
        }
        if let Some(b) = &self.bank_name {
            let b = b.trim();
            if b.is_empty() || b.chars().count() > 64 || b.chars().any(char::is_control) {
                return Err(SubjectError::Malformed("bank_name"));
            }
            self.bank_name = Some(b.to_owned());
        }
        if let Some(t) = &self.id_type {
            if !matches!(t.as_str(), "resident_id" | "tw_permit" | "passport") {
                return Err(SubjectError::IdType);
            }
        }
        if let Some(id) = &self.id_number {
            let id_type = self.id_type.clone().unwrap_or_else(|| "resident_id".into());
            self.id_number = Some(id_number(&id_type, id)?);
            self.id_type = Some(id_type);
        }
        if let Some(c) = &self.id_country {
            let c = c.trim().to_ascii_uppercase();
            let passport = self.id_type.as_deref() == Some("passport");
            if !passport
                || !(1..=3).contains(&c.len())
                || !c.bytes().all(|b| b.is_ascii_uppercase())
            {
                return Err(SubjectError::IdCountry);
            }
            self.id_country = Some(c);
        } else if self.id_type.as_deref() == Some("passport") && self.id_number.is_some() {
            return Err(SubjectError::Missing("id_country"));
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
        for (field, present) in [
            ("uscc", self.uscc.is_some()),
            ("bank_account", self.bank_account.is_some()),
            ("bank_name", self.bank_name.is_some()),
        ] {
            if present {
                return Err(SubjectError::NotForType(field));
            }
        }
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

    /// A new application's organisation: name, USCC, the legal representative (a person) and
    /// the agent (the legal representative when absent).
    pub fn require_organisation(&mut self) -> Result<(), SubjectError> {
        if self.name.is_none() {
            return Err(SubjectError::Missing("name"));
        }
        if self.uscc.is_none() {
            return Err(SubjectError::Missing("uscc"));
        }
        for field in ["id_type", "id_number", "phone", "email", "bank_card"] {
            if self.get(field).is_some() || (field == "id_type" && self.id_type.is_some()) {
                return Err(SubjectError::NotForType(field));
            }
        }
        let rep = self
            .legal_rep
            .as_deref()
            .ok_or(SubjectError::Missing("legal_rep"))?;
        rep.require_person().map_err(|e| match e {
            SubjectError::Missing(f) => SubjectError::Missing(prefixed("legal_rep", f)),
            other => other,
        })?;
        match self.agent.as_deref() {
            Some(agent) => agent.require_person().map_err(|e| match e {
                SubjectError::Missing(f) => SubjectError::Missing(prefixed("agent", f)),
                other => other,
            })?,
            None => self.agent = self.legal_rep.clone(),
        }
        Ok(())
    }

    /// Does the legal representative apply in person (the agent is the same person)?
    pub fn legal_rep_applies(&self) -> bool {
        match (self.legal_rep.as_deref(), self.agent.as_deref()) {
            (Some(r), Some(a)) => r.id_number.is_some() && r.identity() == a.identity(),
            _ => false,
        }
    }

    /// The flat view a verification of `person` sees: that person's fields, with the
    /// organisation's (`organisation`, `uscc`, bank account, legal representative) alongside.
    /// A person subject is its own view.
    pub fn acting(&self, person: Person) -> SubjectInput {
        if self.kind() != SubjectType::Organisation {
            return self.clone();
        }
        let who = match person {
            Person::Subject => None,
            Person::LegalRep => self.legal_rep.as_deref(),
            Person::Agent => self.agent.as_deref(),
        };
        let mut out = who.cloned().unwrap_or_default();
        out.subject_type = Some(SubjectType::Organisation);
        out.organisation = self.name.clone();
        out.uscc = self.uscc.clone();
        out.bank_account = self.bank_account.clone();
        out.bank_name = self.bank_name.clone();
        out.legal_rep = self.legal_rep.clone();
        out.agent = None;
        out
    }

    /// The identity rows are keyed by: (ID type, number) for a person (or a person's view),
    /// the number prefixed by its issuing state for a passport (`CHN:E12345678`), and
    /// (`uscc`, code) for an organisation.
    pub fn identity(&self) -> (String, String) {
        if self.kind() == SubjectType::Organisation && self.id_number.is_none() {
            return (
                "uscc".to_owned(),
                self.uscc.clone().unwrap_or_default().to_ascii_uppercase(),
            );
        }
        let id_type = self
            .id_type
            .clone()
            .unwrap_or_else(|| "resident_id".to_owned());
        document_identity(
            &id_type,
            self.id_number.as_deref().unwrap_or_default(),
            self.id_country.as_deref(),
        )
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
            ("uscc", &self.uscc),
            ("bank_account", &self.bank_account),
            ("bank_name", &self.bank_name),
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
            "uscc" => self.uscc.as_deref(),
            "bank_account" => self.bank_account.as_deref(),
            "bank_name" => self.bank_name.as_deref(),
            "organisation" => self.organisation.as_deref(),
            "legal_rep_name" => self.legal_rep.as_deref().and_then(|r| r.name.as_deref()),
            "legal_rep_id" => self
                .legal_rep
                .as_deref()
                .and_then(|r| r.id_number.as_deref()),
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
            id_country: pick(&self.id_country, &over.id_country),
            phone: pick(&self.phone, &over.phone),
            email: pick(&self.email, &over.email),
            bank_card: pick(&self.bank_card, &over.bank_card),
            uscc: self.uscc.clone(),
            legal_rep: self.legal_rep.clone(),
            agent: self.agent.clone(),
            bank_account: pick(&self.bank_account, &over.bank_account),
            bank_name: pick(&self.bank_name, &over.bank_name),
            organisation: self.organisation.clone(),
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
        let organisation = self.kind() == SubjectType::Organisation;
        put(
            "name",
            &self.name,
            if organisation {
                str::to_owned
            } else {
                mask_name
            },
        );
        put("id_type", &self.id_type, str::to_owned);
        let short_document = self.id_type.as_deref().is_some_and(|t| t != "resident_id");
        put(
            "id_number",
            &self.id_number,
            if short_document {
                mask_short_id
            } else {
                mask_id_number
            },
        );
        put("id_country", &self.id_country, str::to_owned);
        put("phone", &self.phone, mask_phone);
        put("email", &self.email, mask_email);
        put("bank_card", &self.bank_card, mask_card);
        put("uscc", &self.uscc, str::to_owned);
        put("bank_account", &self.bank_account, mask_card);
        put("bank_name", &self.bank_name, str::to_owned);
        for (k, p) in [("legal_rep", &self.legal_rep), ("agent", &self.agent)] {
            if let Some(p) = p {
                let mut v = p.masked();
                if let Value::Object(o) = &mut v {
                    o.remove("type");
                }
                m.insert(k.to_owned(), v);
            }
        }
        Value::Object(m)
    }
}

fn prefixed(person: &str, field: &'static str) -> &'static str {
    match (person, field) {
        ("legal_rep", "name") => "legal_rep.name",
        ("legal_rep", "id_number") => "legal_rep.id_number",
        ("legal_rep", "id_type") => "legal_rep.id_type",
        ("legal_rep", "id_country") => "legal_rep.id_country",
        ("legal_rep", "phone") => "legal_rep.phone",
        ("agent", "name") => "agent.name",
        ("agent", "id_number") => "agent.id_number",
        ("agent", "id_type") => "agent.id_type",
        ("agent", "id_country") => "agent.id_country",
        ("agent", "phone") => "agent.phone",
        _ => field,
    }
}

/// `z***@example.cn`.
pub fn mask_email(e: &str) -> String {
    match e.split_once('@') {
        Some((user, domain)) => format!("{}@{domain}", identifiers::mask::mask_middle(user, 1, 0)),
        None => identifiers::mask::mask_middle(e, 1, 0),
    }
}

/// The identity a person is keyed by: (ID type, number), the number prefixed by the issuing
/// state for a passport. Normalised input (see [`SubjectInput::normalise`]).
pub fn document_identity(
    id_type: &str,
    id_number: &str,
    id_country: Option<&str>,
) -> (String, String) {
    match (id_type, id_country) {
        ("passport", Some(country)) => (id_type.to_owned(), format!("{country}:{id_number}")),
        _ => (id_type.to_owned(), id_number.to_owned()),
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
        s.id_type = Some("hk_permit".into());
        assert_eq!(s.normalise().unwrap_err(), SubjectError::IdType);
        let mut s = zhang();
        s.id_type = Some("passport".into());
        assert!(matches!(
            s.normalise().unwrap_err(),
            SubjectError::IdNumber(_)
        ));
        let mut s = zhang();
        s.id_type = Some("tw_permit".into());
        s.id_number = Some(" 12345678 ".into());
        assert_eq!(
            s.normalise().unwrap().id_number.as_deref(),
            Some("12345678")
        );
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
    fn a_passport_is_keyed_by_its_issuing_state_and_number() {
        let passport = |country: Option<&str>| {
            let mut s = zhang();
            s.id_type = Some("passport".into());
            s.id_number = Some("e1234567".into());
            s.id_country = country.map(str::to_owned);
            s.normalise()
        };
        assert_eq!(
            passport(None).unwrap_err(),
            SubjectError::Missing("id_country")
        );
        for bad in ["", "C1N", "CHNA", "中国"] {
            assert_eq!(passport(Some(bad)).unwrap_err(), SubjectError::IdCountry);
        }
        let chn = passport(Some(" chn ")).unwrap();
        assert_eq!(chn.id_country.as_deref(), Some("CHN"));
        assert_eq!(chn.identity(), ("passport".into(), "CHN:E1234567".into()));
        let d = passport(Some("D")).unwrap();
        assert_ne!(chn.identity(), d.identity());
        let mut permit = zhang();
        permit.id_country = Some("CHN".into());
        assert_eq!(permit.normalise().unwrap_err(), SubjectError::IdCountry);
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
