//! The organisation parts of the application engine: whose data a step verifies (the legal
//! representative, the agent), the legal representative's verified data reused when they apply
//! in person, a verify step's window (the corporate transfer's `deposit_expired`), and the face
//! link sent by SMS to a person who is not present.

use super::machine::{Cursor, Evidence, Progress};
use super::policy::{Person, Step};
use crate::storage::unix_now;

/// The failure code of a verification not finished within its step's window.
pub const DEPOSIT_EXPIRED: &str = "deposit_expired";

/// How a face session reaches the person: the channel shows the URL (QR), or the appliance
/// sends it by SMS to the person's phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The channel shows the URL as a QR code.
    OnTheSpot,
    /// The appliance sends the URL to the person's phone through the channel's notifier.
    SmsLink,
}

impl Delivery {
    /// Parses the API name (`on_the_spot`, `sms_link`).
    pub fn parse(s: &str) -> Option<Delivery> {
        match s {
            "on_the_spot" => Some(Delivery::OnTheSpot),
            "sms_link" => Some(Delivery::SmsLink),
            _ => None,
        }
    }
}

/// The key under which a choice's extra fields are kept: per method, and per person for an
/// organisation's legal representative or agent (the bank card of one is not the other's).
pub fn extra_key(person: Person, method: &str) -> String {
    match person {
        Person::Subject => method.to_owned(),
        other => format!("{}:{method}", other.name()),
    }
}

/// With the current step verifying the agent: when the legal representative applies in person
/// and a step already verified them as a person, their verified data is copied to the agent
/// (evidence marked reused) and the step is passed. True if it was.
pub fn reuse_legal_rep(p: &mut Progress) -> bool {
    if p.person() != Person::Agent || !p.subject.legal_rep_applies() {
        return false;
    }
    let rep: Vec<_> = p
        .verified
        .iter()
        .filter_map(|a| {
            a.field
                .strip_prefix("legal_rep.")
                .map(|f| (f.to_owned(), a.clone()))
        })
        .collect();
    if !rep.iter().any(|(f, _)| f == "id_number") {
        return false;
    }
    for (field, a) in rep {
        let mut copy = a.clone();
        copy.field = format!("agent.{field}");
        p.verified.push(copy);
    }
    let source = p
        .evidence
        .iter()
        .rev()
        .find(|e| e.outcome == "verified")
        .cloned();
    if let Some(e) = source {
        p.evidence.push(Evidence {
            reused: true,
            at: unix_now(),
            ..e
        });
    }
    super::service::next_step(p);
    true
}

/// The current verify step's window, if it has one.
pub fn window(p: &Progress) -> Option<i64> {
    match p.policy.steps.get(p.step) {
        Some(Step::Verify { window_secs, .. }) if *window_secs > 0 => Some(i64::from(*window_secs)),
        _ => None,
    }
}

/// Has the running verification outlived its step's window?
pub fn window_passed(p: &Progress, now: i64) -> bool {
    match (window(p), p.started_at) {
        (Some(w), Some(started)) => now > started + w,
        _ => false,
    }
}

/// The code a failed verification is recorded under: the corporate transfer's own `expired`
/// is the applicant's `deposit_expired`.
pub fn failure_code(method: &str, code: String) -> String {
    if code == "expired" && method == "corporate-transfer" {
        DEPOSIT_EXPIRED.to_owned()
    } else {
        code
    }
}

/// After `deposit_expired`: the verification is void, the step starts again (the method is
/// chosen again).
pub fn choose_again(p: &mut Progress, method: &str, verification: &str) {
    p.evidence.push(Evidence {
        method: method.to_owned(),
        verification: verification.to_owned(),
        outcome: DEPOSIT_EXPIRED.to_owned(),
        assurance: None,
        reused: false,
        at: unix_now(),
    });
    p.failure = Some((
        DEPOSIT_EXPIRED.to_owned(),
        format!("the {method} window has passed; choose the method again"),
    ));
    p.started_at = None;
    p.link_sent = None;
    p.queued.clear();
    p.cursor = Cursor::Enter;
}

/// The phone a face link goes to: the step's person's verified phone, else their declared one.
pub fn link_phone(p: &Progress) -> Option<String> {
    let person = p.person();
    p.verified(&Progress::attribute(person, "phone"))
        .map(str::to_owned)
        .or_else(|| p.subject.acting(person).phone)
}

/// The SMS that carries a face link.
pub fn link_text(url: &str) -> String {
    format!("Certificate application: open {url} on this phone to complete face verification.")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::application::subject::SubjectInput;

    fn org_progress(agent_is_rep: bool) -> Progress {
        let rep = serde_json::json!({"name": "张三", "id_type": "resident_id",
            "id_number": "11010519491231002X", "phone": "13800138000"});
        let agent = if agent_is_rep {
            rep.clone()
        } else {
            serde_json::json!({"name": "李四", "id_type": "resident_id",
                "id_number": "110105198001010016", "phone": "13800138001"})
        };
        let mut subject: SubjectInput = serde_json::from_value(serde_json::json!({
            "type": "organisation", "name": "示例科技有限公司", "uscc": "91350100M000100Y43",
            "legal_rep": rep, "agent": agent,
        }))
        .unwrap();
        subject = subject.normalise().unwrap();
        subject.require_organisation().unwrap();
        let policy: crate::application::policy::Policy = serde_json::from_value(serde_json::json!({
            "kinds": ["new"], "subject": "organisation", "captcha": false,
            "steps": [
                {"type": "verify", "methods": ["face"], "fallback": [], "reuse_days": 0, "person": "legal_rep"},
                {"type": "verify", "methods": ["face"], "fallback": [], "reuse_days": 0, "person": "agent"},
            ]
        }))
        .unwrap();
        let mut p = Progress::new(subject, policy, None);
        p.record_verified(
            "face",
            "vrf_1",
            &[
                ("legal_rep.name".into(), "张三".into()),
                ("legal_rep.id_number".into(), "11010519491231002X".into()),
            ],
        );
        p.step = 1;
        p
    }

    #[test]
    fn the_legal_rep_applying_in_person_is_not_verified_twice() {
        let mut p = org_progress(true);
        assert!(reuse_legal_rep(&mut p));
        assert_eq!(p.step, 2);
        assert_eq!(p.verified("agent.name"), Some("张三"));
        let mut p = org_progress(false);
        assert!(!reuse_legal_rep(&mut p));
        assert_eq!(p.step, 1);
    }

    #[test]
    fn only_the_corporate_transfer_expiry_is_deposit_expired() {
        assert_eq!(
            failure_code("corporate-transfer", "expired".into()),
            DEPOSIT_EXPIRED
        );
        assert_eq!(failure_code("face", "expired".into()), "expired");
        assert_eq!(extra_key(Person::Agent, "bank-card"), "agent:bank-card");
        assert_eq!(extra_key(Person::Subject, "bank-card"), "bank-card");
    }
}
