//! The application state machine: its statuses, the transitions allowed between them, and the
//! progress document (sealed at rest) that says where in its policy an application stands.
//!
//! ```text
//!  created ─► verifying ◄──────────────┐          (a step runs: a verification, a code sent)
//!               │  ▲                   │
//!               ▼  │                   │
//!        awaiting_applicant ───────────┤          (a code, a face session, a captcha, a CSR,
//!        awaiting_choice ──────────────┘           a phone to confirm, a method to choose)
//!               │
//!               ├─► awaiting_review ─► approved   (reserved: materials and review)
//!               ▼
//!            approved ─► issued | completed | failed
//!  any open status ─► rejected | cancelled | expired
//! ```
//! Open statuses: verifying, awaiting_applicant, awaiting_choice, awaiting_review, approved.
//! Finished (no further transition): issued, completed, rejected, cancelled, expired, failed.

use serde::{Deserialize, Serialize};

use super::policy::{Kind, Person, Policy, Step, SubjectType};
use super::subject::SubjectInput;

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A step is running in the appliance (a verification with its vendor, a code being sent).
    Verifying,
    /// Waiting for the applicant's input (code, face session, captcha, CSR, phone confirmation).
    AwaitingApplicant,
    /// Waiting for the applicant to choose a method.
    AwaitingChoice,
    /// Waiting for an RA officer (reserved for the organisation flows).
    AwaitingReview,
    /// Every step passed; the certificate (or the revocation, the phone change) is being made.
    Approved,
    /// A certificate was issued.
    Issued,
    /// A revocation or phone change was carried out.
    Completed,
    /// Refused: a verification failed, or too many wrong codes.
    Rejected,
    /// Cancelled by the channel.
    Cancelled,
    /// Not finished before its deadline.
    Expired,
    /// The appliance could not carry it out (the certificate could not be issued).
    Failed,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 11] = [
        Status::Verifying,
        Status::AwaitingApplicant,
        Status::AwaitingChoice,
        Status::AwaitingReview,
        Status::Approved,
        Status::Issued,
        Status::Completed,
        Status::Rejected,
        Status::Cancelled,
        Status::Expired,
        Status::Failed,
    ];

    /// The name in the API and the database.
    pub fn name(self) -> &'static str {
        match self {
            Status::Verifying => "verifying",
            Status::AwaitingApplicant => "awaiting_applicant",
            Status::AwaitingChoice => "awaiting_choice",
            Status::AwaitingReview => "awaiting_review",
            Status::Approved => "approved",
            Status::Issued => "issued",
            Status::Completed => "completed",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
            Status::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Still open (counts as "the open application" of its subject in its channel)?
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Status::Verifying
                | Status::AwaitingApplicant
                | Status::AwaitingChoice
                | Status::AwaitingReview
                | Status::Approved
        )
    }

    /// Is `self -> to` a transition of the machine? (Staying in an open status is allowed: the
    /// step inside it moved on.)
    pub fn may_become(self, to: Status) -> bool {
        use Status as S;
        if !self.is_open() {
            return false;
        }
        match to {
            // After the review only a CSR may still be missing.
            S::AwaitingApplicant if self == S::AwaitingReview => true,
            S::Verifying | S::AwaitingApplicant | S::AwaitingChoice => {
                matches!(
                    self,
                    S::Verifying | S::AwaitingApplicant | S::AwaitingChoice
                )
            }
            S::AwaitingReview => {
                matches!(
                    self,
                    S::Verifying | S::AwaitingApplicant | S::AwaitingChoice
                )
            }
            S::Approved => true,
            S::Issued | S::Completed | S::Failed => self == S::Approved,
            S::Rejected => true,
            S::Cancelled | S::Expired => self != S::Approved,
        }
    }
}

/// One attribute a plugin verified for this application, with the method that proved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedAttribute {
    /// Subject attribute (`name`, `id_number`, `phone`, `bank_card`).
    pub field: String,
    /// The value the plugin verified.
    pub value: String,
    /// The method (plugin) that verified it.
    pub method: String,
    /// The verification that did (`vrf_...`).
    pub verification: String,
}

/// Evidence of one finished verification of the application (kept for audit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Method (plugin).
    pub method: String,
    /// Verification id.
    pub verification: String,
    /// `verified` or the failure code.
    pub outcome: String,
    /// The plugin's assurance level (`L2`, `L3`).
    pub assurance: Option<String>,
    /// Reused from an earlier application (not verified again).
    pub reused: bool,
    /// Unix seconds.
    pub at: i64,
}

/// A code the appliance sent for the current step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSent {
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// Unix seconds before which no new one is sent.
    pub resend_after: i64,
}

/// Where the application stands inside its current step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Cursor {
    /// About to run step `step` (nothing started yet).
    Enter,
    /// The applicant must choose one of `options` (with the fields each needs).
    Choose {
        /// Methods offered.
        options: Vec<String>,
    },
    /// The method `method` needs fields the application does not have yet.
    Needs {
        /// Method.
        method: String,
        /// Missing fields.
        fields: Vec<String>,
    },
    /// About to start `method` (fields complete); waits for a captcha first if the policy says so.
    Ready {
        /// Method.
        method: String,
    },
    /// Verification `verification` by `method` runs.
    Verifying {
        /// Method.
        method: String,
        /// Verification id.
        verification: String,
    },
    /// Waiting for the applicant to confirm the verified phone (then a code is sent).
    ConfirmPhone,
    /// About to send the step's code (after a captcha, if the policy asks for one).
    SendCode,
    /// A confirmation or signature code was sent; waiting for it.
    CodeSent {
        /// When it expires, when a new one may be sent.
        sent: CodeSent,
    },
    /// Waiting for the materials the step names (uploaded by the channel).
    Materials {
        /// Kinds still missing.
        missing: Vec<String>,
    },
    /// Waiting for RA officers' decisions (the review step, or the offline paper path).
    Review,
    /// Every step passed; waiting for a CSR (kinds that issue, when none was given).
    NeedsCsr,
    /// Every step passed.
    Done,
}

/// The sealed progress document of an application: the request, the policy snapshot, and how
/// far it got. Persisted whole, sealed, with every transition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    /// What the channel declared (input to verification, never to the certificate).
    pub subject: SubjectInput,
    /// Extra fields given with a choice (bank card, bank-reserved phone), per method.
    pub extra: std::collections::BTreeMap<String, SubjectInput>,
    /// The policy at creation (a later channel-file change does not move a running application).
    pub policy: Policy,
    /// Index of the current step in `policy.steps`.
    pub step: usize,
    /// Methods queued by a fallback's `then`, verified before the next policy step.
    pub queued: Vec<String>,
    /// Inside the current step.
    pub cursor: Cursor,
    /// Fallbacks already taken in this step (each at most once).
    pub fallbacks_taken: usize,
    /// A solved captcha not yet spent on an SMS.
    pub captcha_solved: bool,
    /// The captcha shown for the next SMS (`cap_...`), with its PNG as base64.
    pub captcha: Option<(String, String, i64)>,
    /// Verified attributes so far.
    pub verified: Vec<VerifiedAttribute>,
    /// Evidence of every verification.
    pub evidence: Vec<Evidence>,
    /// The phone the applicant confirmed (the certificate's verified phone).
    pub confirmed_phone: Option<String>,
    /// The CSR (PEM), once given.
    pub csr: Option<String>,
    /// For `revocation`: the RFC 5280 reason name.
    pub revocation_reason: Option<String>,
    /// The last failure shown (a wrong code that left attempts), or the final one.
    pub failure: Option<(String, String)>,
    /// When the running verification started (Unix seconds; a step's `window_secs`).
    #[serde(default)]
    pub started_at: Option<i64>,
    /// Face by SMS link: the appliance sends the face URL to the person's phone.
    #[serde(default)]
    pub face_by_sms: bool,
    /// The verification whose face link was sent by SMS already.
    #[serde(default)]
    pub link_sent: Option<String>,
    /// RA officers' decisions, in order.
    #[serde(default)]
    pub reviews: Vec<ReviewRecord>,
    /// The applicant switched to the offline paper path.
    #[serde(default)]
    pub offline: bool,
    /// Online authorisation: a code was sent to the legal representative (`Some(false)`), or
    /// they confirmed it (`Some(true)`).
    #[serde(default)]
    pub authorised_online: Option<bool>,
}

/// One RA officer's decision on an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// The officer (client certificate name).
    pub officer: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// The reason (shown to the applicant on rejection).
    pub reason: Option<String>,
    /// Unix seconds.
    pub at: i64,
}

impl Progress {
    /// A new application's progress at its first step.
    pub fn new(subject: SubjectInput, policy: Policy, csr: Option<String>) -> Self {
        Self {
            subject,
            extra: Default::default(),
            policy,
            step: 0,
            queued: Vec::new(),
            cursor: Cursor::Enter,
            fallbacks_taken: 0,
            captcha_solved: false,
            captcha: None,
            verified: Vec::new(),
            evidence: Vec::new(),
            confirmed_phone: None,
            csr,
            revocation_reason: None,
            failure: None,
            started_at: None,
            face_by_sms: false,
            link_sent: None,
            reviews: Vec::new(),
            offline: false,
            authorised_online: None,
        }
    }

    /// Whose identity the current step proves.
    pub fn person(&self) -> Person {
        match self.policy.steps.get(self.step) {
            Some(Step::Verify { person, .. }) => *person,
            _ => Person::Subject,
        }
    }

    /// Is the subject an organisation?
    pub fn is_organisation(&self) -> bool {
        self.subject.kind() == SubjectType::Organisation
    }

    /// The verified-attribute name of `field` proved about `person` (`agent.phone`); the
    /// organisation's own fields and a person subject's keep their plain names.
    pub fn attribute(person: Person, field: &str) -> String {
        let personal = ["name", "id_number", "phone", "bank_card"].contains(&field);
        if person == Person::Subject || !personal {
            field.to_owned()
        } else {
            format!("{}.{field}", person.name())
        }
    }

    /// The phone the applicant is reached at: a person's verified phone; for an organisation
    /// the agent's verified phone, else the agent's declared one.
    pub fn applicant_phone(&self) -> Option<String> {
        if !self.is_organisation() {
            // No vendor checks the phone of a permit or passport holder: the declared one, whose
            // possession an SMS code proves.
            let declared = self.reviewed_document().then(|| self.subject.phone.clone());
            return self
                .verified("phone")
                .map(str::to_owned)
                .or(declared.flatten());
        }
        self.verified("agent.phone")
            .map(str::to_owned)
            .or_else(|| self.subject.agent.as_deref().and_then(|a| a.phone.clone()))
    }

    /// A person with an ID document no vendor checks (Taiwan permit, passport): proven by
    /// materials and the officers' review.
    pub fn reviewed_document(&self) -> bool {
        !self.is_organisation()
            && self
                .subject
                .id_type
                .as_deref()
                .is_some_and(|t| t != crate::application::policy::RESIDENT_ID)
    }

    /// The applicant's e-mail (a person's, or the organisation's agent's).
    pub fn applicant_email(&self) -> Option<String> {
        if self.is_organisation() {
            return self.subject.agent.as_deref().and_then(|a| a.email.clone());
        }
        self.subject.email.clone()
    }

    /// The value of a verified attribute (the latest verification that proved it).
    pub fn verified(&self, field: &str) -> Option<&str> {
        self.verified
            .iter()
            .rev()
            .find(|a| a.field == field)
            .map(|a| a.value.as_str())
    }

    /// The highest assurance level any verification reached (`L3` > `L2` > `L1`).
    pub fn assurance(&self) -> Option<String> {
        self.evidence
            .iter()
            .filter(|e| e.outcome == "verified")
            .filter_map(|e| e.assurance.clone())
            .filter(|a| ["L1", "L2", "L3"].contains(&a.as_str()))
            .max()
    }

    /// Records what a verification proved: each verified field with its value and method.
    pub fn record_verified(
        &mut self,
        method: &str,
        verification: &str,
        fields: &[(String, String)],
    ) {
        for (field, value) in fields {
            self.verified.push(VerifiedAttribute {
                field: field.clone(),
                value: value.clone(),
                method: method.to_owned(),
                verification: verification.to_owned(),
            });
        }
    }

    /// The certificate subject: only attributes a plugin verified, under the profile's names.
    pub fn certificate_subject(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        if self.is_organisation() {
            // O and CN: the organisation's verified name; organizationIdentifier: its USCC.
            if let Some(org) = self.verified("organisation") {
                out.insert("organisation".to_owned(), org.to_owned());
                out.insert("name".to_owned(), org.to_owned());
            }
            if let Some(uscc) = self.verified("uscc") {
                out.insert("uscc".to_owned(), uscc.to_owned());
            }
            return out;
        }
        if let Some(name) = self.verified("name") {
            out.insert("name".to_owned(), name.to_owned());
        }
        out
    }

    /// Is `kind` one that ends by issuing?
    pub fn issues(kind: Kind) -> bool {
        kind.issues()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_statuses_never_move() {
        for from in Status::ALL.into_iter().filter(|s| !s.is_open()) {
            for to in Status::ALL {
                assert!(!from.may_become(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn issuance_only_after_approval_and_approval_cannot_be_cancelled() {
        for from in Status::ALL {
            assert_eq!(
                from.may_become(Status::Issued),
                from == Status::Approved,
                "{from:?}"
            );
        }
        assert!(!Status::Approved.may_become(Status::Cancelled));
        assert!(!Status::Approved.may_become(Status::Expired));
        assert!(Status::AwaitingApplicant.may_become(Status::Cancelled));
        assert!(Status::Verifying.may_become(Status::Expired));
        assert!(Status::Verifying.may_become(Status::AwaitingChoice));
        assert!(!Status::AwaitingReview.may_become(Status::Verifying));
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.name()), Some(s));
        }
    }

    #[test]
    fn assurance_is_the_highest_verified_level() {
        let policy: Policy = serde_json::from_value(serde_json::json!({
            "kinds": ["new"], "subject": "person", "captcha": false,
            "steps": [{"type": "verify", "methods": ["face"], "fallback": [], "reuse_days": 0}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut p = Progress::new(SubjectInput::default(), policy, None);
        let ev = |m: &str, o: &str, a: &str| Evidence {
            method: m.into(),
            verification: "vrf_1".into(),
            outcome: o.into(),
            assurance: Some(a.into()),
            reused: false,
            at: 0,
        };
        p.evidence.push(ev("phone-real-name", "verified", "L2"));
        p.evidence.push(ev("face", "liveness_failed", "L3"));
        assert_eq!(p.assurance().as_deref(), Some("L2"));
        p.evidence.push(ev("face", "verified", "L3"));
        assert_eq!(p.assurance().as_deref(), Some("L3"));
    }
}
