//! A channel's policy: per application kind and subject type, the steps an applicant walks
//! before a certificate is issued. Data, not code: parsed from the channel file and validated
//! once at start-up.

use serde::{Deserialize, Serialize};

/// The kinds of application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A first certificate.
    New,
    /// A new certificate for the same subject, from `renewal_window_days` before expiry.
    Renewal,
    /// Changed subject information: new certificate, the old one revoked `superseded`.
    Change,
    /// Lost key: new key and certificate, the old one revoked.
    Reissue,
    /// Revocation asked by the subscriber (identity verified again).
    Revocation,
    /// A new verified phone for the subject.
    PhoneChange,
    /// Raises the subject's account in the realm (L2 to L3 by face); issues nothing.
    LevelUp,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 7] = [
        Kind::New,
        Kind::Renewal,
        Kind::Change,
        Kind::Reissue,
        Kind::Revocation,
        Kind::PhoneChange,
        Kind::LevelUp,
    ];

    /// The kind's name in the API, the database and channel files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::New => "new",
            Kind::Renewal => "renewal",
            Kind::Change => "change",
            Kind::Reissue => "reissue",
            Kind::Revocation => "revocation",
            Kind::PhoneChange => "phone_change",
            Kind::LevelUp => "level_up",
        }
    }

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Does this kind end with a newly issued certificate?
    pub fn issues(self) -> bool {
        matches!(
            self,
            Kind::New | Kind::Renewal | Kind::Change | Kind::Reissue
        )
    }

    /// Does this kind act on an existing certificate (`certificate` in the request)?
    pub fn needs_certificate(self) -> bool {
        !matches!(self, Kind::New | Kind::LevelUp)
    }
}

/// The kind of subject an application is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    /// A natural person.
    Person,
    /// An organisation: name, USCC, legal representative and agents.
    Organisation,
}

/// Whose identity a verify step proves (organisation policies): the subject itself (a person,
/// or the organisation by its registry record or corporate account), its legal representative,
/// or the agent acting for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Person {
    /// The subject (default).
    #[default]
    Subject,
    /// The organisation's legal representative.
    LegalRep,
    /// The agent (经办人) applying for the organisation.
    Agent,
}

impl Person {
    /// The name in channel files and in verified-attribute prefixes.
    pub fn name(self) -> &'static str {
        match self {
            Person::Subject => "subject",
            Person::LegalRep => "legal_rep",
            Person::Agent => "agent",
        }
    }
}

/// Try other methods when a verification fails with one of these codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// Failure codes (`phone_not_real_name`, ...) that open the fallback.
    pub on: Vec<String>,
    /// The methods offered instead (one: used at once; several: the applicant chooses).
    pub verify: Vec<String>,
    /// Methods verified next, one after the other, only on this path (SHECA phone change: the
    /// bank card, then face).
    #[serde(default)]
    pub then: Vec<String>,
}

/// One step of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Step {
    /// Verify with one method (a verifier plugin), or one of several the applicant chooses.
    Verify {
        /// Plugin names.
        methods: Vec<String>,
        /// Fallbacks on given failure codes.
        fallback: Vec<Fallback>,
        /// A successful verification of the same subject by the same method within this many
        /// days is reused instead of verifying again (0 = never).
        reuse_days: u32,
        /// Whose identity the step proves (organisation policies).
        #[serde(default)]
        person: Person,
        /// A verification of this step not finished within this many seconds is void and the
        /// method is chosen again (`deposit_expired` for the corporate transfer; 0 = the
        /// plugin's own window).
        #[serde(default)]
        window_secs: u32,
    },
    /// The applicant confirms the verified phone by an SMS code sent to it.
    ConfirmPhone,
    /// The application is signed by an SMS code to the verified phone (and the terms accepted).
    SignBySms,
    /// Materials to upload (kinds); for an organisation whose agent is not the legal
    /// representative, an `authorisation_letter` too.
    Materials {
        /// Material kinds.
        kinds: Vec<String>,
    },
    /// Manual review by RA officers (the last step).
    Review {
        /// Distinct officers who must approve (1 or 2).
        officers: u8,
    },
}

/// The policy for some kinds and one subject type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The kinds it governs.
    pub kinds: Vec<Kind>,
    /// The subject type it governs.
    pub subject: SubjectType,
    /// Must a solved picture captcha from the appliance precede every SMS (`true`), or does the
    /// channel guard its own SMS sending (`false`)?
    pub captcha: bool,
    /// The ID document types of a person it governs (`resident_id`; `tw_permit`, `passport`);
    /// absent in progress documents sealed before it existed: `resident_id`.
    #[serde(default = "default_id_types")]
    pub id_types: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// A step as written in a channel file (`[[policy.step]]`): exactly one of its keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// `verify = ["phone-real-name"]` or several methods to choose from.
    #[serde(default)]
    pub verify: Option<Vec<String>>,
    /// `fallback = [{ on = ["phone_not_real_name"], verify = ["bank-card"] }]`.
    #[serde(default)]
    pub fallback: Vec<Fallback>,
    /// `reuse_days = 30`.
    #[serde(default)]
    pub reuse_days: u32,
    /// `person = "legal_rep"` or `"agent"` (organisation policies).
    #[serde(default)]
    pub person: Option<Person>,
    /// `window_secs = 259200`: the verification must finish within it.
    #[serde(default)]
    pub window_secs: u32,
    /// `confirm_phone = true`.
    #[serde(default)]
    pub confirm_phone: bool,
    /// `sign = "sms"`.
    #[serde(default)]
    pub sign: Option<String>,
    /// `materials = ["id_front", "id_back"]` (reserved).
    #[serde(default)]
    pub materials: Option<Vec<String>>,
    /// `review = true`.
    #[serde(default)]
    pub review: bool,
    /// `officers = 2`: two distinct RA officers must approve (with `review`).
    #[serde(default)]
    pub officers: Option<u8>,
}

/// A policy as written in a channel file (`[[policy]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Kinds governed.
    pub kinds: Vec<Kind>,
    /// Subject type (default `person`).
    #[serde(default = "default_subject")]
    pub subject: SubjectType,
    /// Appliance captcha before SMS.
    pub captcha: bool,
    /// Person policies: the ID document types it governs (default `["resident_id"]`).
    #[serde(default = "default_id_types")]
    pub id_types: Vec<String>,
    /// Steps.
    #[serde(rename = "step")]
    pub steps: Vec<RawStep>,
}

fn default_subject() -> SubjectType {
    SubjectType::Person
}

fn default_id_types() -> Vec<String> {
    vec![RESIDENT_ID.to_owned()]
}

/// The ID document the verification vendors check (carrier, bank, face): the resident ID.
pub const RESIDENT_ID: &str = "resident_id";
/// ID documents no vendor checks: reached L2 through materials and review only.
pub const REVIEWED_ID_TYPES: &[&str] = &["tw_permit", "passport"];

/// The material kinds an applicant may upload.
pub const MATERIAL_KINDS: &[&str] = &[
    "business_licence",
    "id_front",
    "id_back",
    "authorisation_letter",
];

/// Failure codes a fallback may name: the verifier outcomes.
const FAILURE_CODES: &[&str] = &[
    "invalid_id_number",
    "invalid_phone",
    "invalid_uscc",
    "invalid_card",
    "mismatch",
    "phone_not_real_name",
    "no_record",
    "otp_wrong",
    "otp_expired",
    "otp_attempts_exceeded",
    "card_invalid",
    "card_lost",
    "card_restricted",
    "liveness_failed",
    "not_same_person",
    "cancelled",
    "expired",
    "wrong_amount",
    "attempts_exceeded",
    "account_invalid",
    "account_name_mismatch",
    "deregistered",
    "vendor_unavailable",
];

impl RawStep {
    fn into_step(self, known_method: &dyn Fn(&str) -> bool) -> Result<Step, String> {
        let chosen = [
            self.verify.is_some(),
            self.confirm_phone,
            self.sign.is_some(),
            self.materials.is_some(),
            self.review,
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if chosen != 1 {
            return Err(
                "a step needs exactly one of verify, confirm_phone, sign, materials, review".into(),
            );
        }
        if self.verify.is_none()
            && (!self.fallback.is_empty()
                || self.reuse_days != 0
                || self.person.is_some()
                || self.window_secs != 0)
        {
            return Err(
                "fallback, reuse_days, person and window_secs belong to a verify step".into(),
            );
        }
        if self.officers.is_some() && !self.review {
            return Err("officers belongs to a review step".into());
        }
        if self.window_secs > 2_592_000 {
            return Err("window_secs must be 0..=2592000".into());
        }
        if let Some(methods) = self.verify {
            check_methods(&methods, known_method)?;
            for f in &self.fallback {
                check_methods(&f.verify, known_method)?;
                for m in &f.then {
                    check_methods(std::slice::from_ref(m), known_method)?;
                }
                if f.on.is_empty() {
                    return Err("a fallback needs at least one failure code in `on`".into());
                }
                for code in &f.on {
                    if !FAILURE_CODES.contains(&code.as_str()) {
                        return Err(format!("fallback on unknown failure code {code:?}"));
                    }
                }
            }
            if self.reuse_days > 3650 {
                return Err("reuse_days must be 0..=3650".into());
            }
            return Ok(Step::Verify {
                methods,
                fallback: self.fallback,
                reuse_days: self.reuse_days,
                person: self.person.unwrap_or_default(),
                window_secs: self.window_secs,
            });
        }
        if self.confirm_phone {
            return Ok(Step::ConfirmPhone);
        }
        if let Some(sign) = self.sign {
            if sign != "sms" {
                return Err(format!("sign = {sign:?}: only \"sms\" is supported"));
            }
            return Ok(Step::SignBySms);
        }
        if let Some(kinds) = self.materials {
            if kinds.is_empty() {
                return Err("materials needs at least one kind".into());
            }
            for k in &kinds {
                if !MATERIAL_KINDS.contains(&k.as_str()) {
                    return Err(format!(
                        "unknown material kind {k:?} (known: {})",
                        MATERIAL_KINDS.join(", ")
                    ));
                }
            }
            return Ok(Step::Materials { kinds });
        }
        let officers = self.officers.unwrap_or(1);
        if !(1..=2).contains(&officers) {
            return Err("officers must be 1 or 2".into());
        }
        Ok(Step::Review { officers })
    }
}

fn check_methods(methods: &[String], known: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if methods.is_empty() {
        return Err("verify needs at least one method".into());
    }
    for m in methods {
        if !known(m) {
            return Err(format!(
                "method {m:?} is not a configured verification plugin"
            ));
        }
    }
    Ok(())
}

impl RawPolicy {
    /// Validates into a [`Policy`]; `known_method` says whether a plugin name is configured.
    pub fn validate(self, known_method: &dyn Fn(&str) -> bool) -> Result<Policy, String> {
        if self.kinds.is_empty() {
            return Err("a policy needs at least one kind".into());
        }
        if self.steps.is_empty() {
            return Err("a policy needs at least one step".into());
        }
        let steps = self
            .steps
            .into_iter()
            .map(|s| s.into_step(known_method))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(i) = steps.iter().position(|s| matches!(s, Step::Review { .. })) {
            if i + 1 != steps.len() {
                return Err("a review step must be the last step".into());
            }
        }
        let reviewed = self.id_types.iter().any(|t| t != RESIDENT_ID);
        for t in &self.id_types {
            if t != RESIDENT_ID && !REVIEWED_ID_TYPES.contains(&t.as_str()) {
                return Err(format!(
                    "id_types: {t:?} is not one of resident_id, tw_permit, passport"
                ));
            }
        }
        if self.id_types.is_empty() {
            return Err("id_types needs at least one ID document type".into());
        }
        if reviewed {
            // No vendor checks these documents: materials and officers' review prove them.
            if self.id_types.iter().any(|t| t == RESIDENT_ID) {
                return Err(
                    "id_types: tw_permit and passport need a policy of their own \
                            (materials and review), apart from resident_id"
                        .into(),
                );
            }
            if self.subject != SubjectType::Person {
                return Err("id_types other than resident_id belong to person policies".into());
            }
            if steps.iter().any(|s| matches!(s, Step::Verify { .. })) {
                return Err(
                    "a tw_permit / passport policy cannot verify by plugin (no vendor \
                            checks these documents): use materials and review"
                        .into(),
                );
            }
            let has = |f: fn(&Step) -> bool| steps.iter().any(f);
            if !has(|s| matches!(s, Step::Materials { .. }))
                || !has(|s| matches!(s, Step::Review { .. }))
            {
                return Err(
                    "a tw_permit / passport policy needs a materials step and a review step".into(),
                );
            }
        } else if !steps.iter().any(|s| matches!(s, Step::Verify { .. })) {
            return Err("a policy needs at least one verify step".into());
        }
        let names_a_person = steps
            .iter()
            .any(|s| matches!(s, Step::Verify { person, .. } if *person != Person::Subject));
        if names_a_person && self.subject != SubjectType::Organisation {
            return Err(
                "person = \"legal_rep\" / \"agent\" belongs to organisation policies".into(),
            );
        }
        Ok(Policy {
            kinds: self.kinds,
            subject: self.subject,
            captcha: self.captcha,
            id_types: self.id_types,
            steps,
        })
    }
}

impl Policy {
    /// Every method any step may use (what the channel may start verifications with).
    pub fn methods(&self) -> Vec<String> {
        let mut out = Vec::new();
        for step in &self.steps {
            if let Step::Verify {
                methods, fallback, ..
            } = step
            {
                out.extend(methods.iter().cloned());
                for f in fallback {
                    out.extend(f.verify.iter().cloned());
                    out.extend(f.then.iter().cloned());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The policy among `policies` for (`kind`, `subject`), if the channel offers it.
pub fn find(policies: &[Policy], kind: Kind, subject: SubjectType) -> Option<&Policy> {
    find_for(policies, kind, subject, RESIDENT_ID)
}

/// The policy for `kind`, `subject` and (for a person) the ID document type `id_type`.
pub fn find_for<'a>(
    policies: &'a [Policy],
    kind: Kind,
    subject: SubjectType,
    id_type: &str,
) -> Option<&'a Policy> {
    policies.iter().find(|p| {
        p.subject == subject
            && p.kinds.contains(&kind)
            && (subject == SubjectType::Organisation || p.id_types.iter().any(|t| t == id_type))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Policy, String> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.validate(&|m| ["phone-real-name", "bank-card", "face"].contains(&m))
    }

    #[test]
    fn reviewed_documents_take_materials_and_review_and_no_vendor() {
        let doc = |ids: &str, steps: &str| {
            parse(&format!(
                "kinds = [\"new\"]\ncaptcha = false\nid_types = {ids}\n{steps}"
            ))
        };
        let reviewed = "[[step]]\nmaterials = [\"id_front\"]\n[[step]]\nreview = true\n";
        let p = doc(r#"["tw_permit", "passport"]"#, reviewed).unwrap();
        let policies = [p];
        assert!(find_for(&policies, Kind::New, SubjectType::Person, "passport").is_some());
        assert!(find_for(&policies, Kind::New, SubjectType::Person, RESIDENT_ID).is_none());
        assert!(find(&policies, Kind::New, SubjectType::Person).is_none());
        for (ids, steps) in [
            (
                r#"["tw_permit"]"#,
                "[[step]]\nverify = [\"face\"]\n[[step]]\nreview = true\n",
            ),
            (r#"["tw_permit"]"#, "[[step]]\nmaterials = [\"id_front\"]\n"),
            (r#"["tw_permit", "resident_id"]"#, reviewed),
            (r#"["hk_permit"]"#, reviewed),
            ("[]", reviewed),
        ] {
            assert!(doc(ids, steps).is_err(), "{ids} {steps}");
        }
    }

    #[test]
    fn sheca_policy_parses_with_fallback_and_confirmation() {
        let p = parse(
            r#"
kinds = ["new", "renewal"]
captcha = true
[[step]]
verify = ["phone-real-name"]
fallback = [{ on = ["phone_not_real_name"], verify = ["bank-card"] }]
[[step]]
verify = ["face"]
reuse_days = 30
[[step]]
confirm_phone = true
"#,
        )
        .unwrap();
        assert_eq!(p.steps.len(), 3);
        assert_eq!(p.subject, SubjectType::Person);
        assert!(
            matches!(&p.steps[0], Step::Verify { fallback, .. } if fallback[0].verify == ["bank-card"])
        );
        assert!(matches!(&p.steps[1], Step::Verify { reuse_days: 30, .. }));
        assert_eq!(p.steps[2], Step::ConfirmPhone);
        assert_eq!(p.methods(), ["bank-card", "face", "phone-real-name"]);
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        let base = "kinds = [\"new\"]\ncaptcha = false\n";
        for (step, why) in [
            ("verify = [\"nope\"]", "not a configured"),
            ("verify = []", "at least one method"),
            ("confirm_phone = true\nsign = \"sms\"", "exactly one"),
            ("sign = \"paper\"", "only \"sms\""),
            ("materials = [\"selfie\"]", "unknown material kind"),
            ("review = true\nofficers = 3", "1 or 2"),
            (
                "verify = [\"face\"]\nofficers = 2",
                "belongs to a review step",
            ),
            (
                "verify = [\"face\"]\nfallback = [{ on = [\"bogus\"], verify = [\"face\"] }]",
                "unknown failure code",
            ),
            (
                "confirm_phone = true\nreuse_days = 3",
                "belong to a verify step",
            ),
            (
                "verify = [\"face\"]\nperson = \"agent\"",
                "belongs to organisation policies",
            ),
        ] {
            let e = parse(&format!("{base}[[step]]\n{step}\n")).unwrap_err();
            assert!(e.contains(why), "{step}: {e}");
        }
        let e = parse(&format!("{base}[[step]]\nconfirm_phone = true\n")).unwrap_err();
        assert!(e.contains("at least one verify step"), "{e}");
        assert!(
            parse("kinds = [\"nonsense\"]\ncaptcha = true\n[[step]]\nverify=[\"face\"]").is_err()
        );
    }

    #[test]
    fn find_picks_by_kind_and_subject() {
        let p =
            parse("kinds = [\"new\"]\ncaptcha = false\n[[step]]\nverify = [\"face\"]\n").unwrap();
        let ps = vec![p];
        assert!(find(&ps, Kind::New, SubjectType::Person).is_some());
        assert!(find(&ps, Kind::Renewal, SubjectType::Person).is_none());
        assert!(find(&ps, Kind::New, SubjectType::Organisation).is_none());
    }
}
