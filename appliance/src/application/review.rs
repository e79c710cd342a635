//! Manual review by RA officers: the queue (oldest first, with the verification evidence and
//! the materials), approve or reject with a reason the applicant sees, two distinct officers
//! when the policy says so, and the offline paper path (the applicant switches to paper; an
//! officer records the paper check). Decisions are kept in the sealed progress document, so an
//! application waiting for its second officer survives any restart.

use serde_json::{json, Value};

use super::{open_or_finished, App, AppError, ApplicationService, Failure, Who};
use crate::application::machine::{Cursor, Evidence, ReviewRecord, Status};
use crate::application::policy::Step;
use crate::storage::unix_now;
use crate::verification::Requester;

/// The failure code of an application an officer rejected.
pub const REJECTED_BY_REVIEW: &str = "rejected_by_review";

/// RA officers, auditors and operators read the review queue.
fn may_read_queue(who: &Who) -> Result<(), AppError> {
    match who {
        Who::Officer(_) | Who::Auditor(_) | Who::Operator(_) => Ok(()),
        _ => Err(AppError::OfficerOnly("read the review queue")),
    }
}

/// Parses and checks a decision.
fn parse_decision(
    decision: &str,
    reason: Option<&str>,
) -> Result<(bool, Option<String>), AppError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if let Some(r) = reason {
        if r.chars().count() > 500 || r.chars().any(char::is_control) {
            return Err(AppError::DecisionInvalid(
                "reason must be at most 500 printable characters".into(),
            ));
        }
    }
    match decision {
        "approve" => Ok((true, reason.map(str::to_owned))),
        "reject" => match reason {
            Some(r) => Ok((false, Some(r.to_owned()))),
            None => Err(AppError::DecisionInvalid(
                "a rejection needs a reason the applicant can read".into(),
            )),
        },
        _ => Err(AppError::DecisionInvalid(
            "decision must be \"approve\" or \"reject\"".into(),
        )),
    }
}

impl ApplicationService {
    /// The applications waiting for review, oldest first, each with its evidence, materials and
    /// the decisions so far (RA officers; auditors and operators read it).
    pub async fn review_queue(&self, who: &Who) -> Result<Value, AppError> {
        may_read_queue(who)?;
        let ids = self.rows.ids_with_status(&["awaiting_review"]).await?;
        let mut out = Vec::new();
        for id in ids {
            let Ok(app) = self.load(who, &id).await else {
                continue;
            };
            out.push(self.review_view(&app).await?);
        }
        Ok(json!({ "applications": out }))
    }

    /// One application of the review queue, as the queue shows it; `not_found` when it does not
    /// exist or is not awaiting review (the same readers as the queue).
    pub async fn review_entry(&self, who: &Who, id: &str) -> Result<Value, AppError> {
        may_read_queue(who)?;
        let app = self.load(who, id).await?;
        if app.status != Status::AwaitingReview {
            return Err(AppError::NotFound(id.to_owned()));
        }
        self.review_view(&app).await
    }

    /// An application's view with what a reviewer needs: evidence, materials, decisions.
    async fn review_view(&self, app: &App) -> Result<Value, AppError> {
        let p = &app.doc.progress;
        let mut v = self.view(app).await;
        v["evidence"] = json!(p.evidence);
        v["materials"] = json!(self.material_list(&app.row.id).await?);
        v["reviews"] = json!(p.reviews);
        v["offline"] = json!(p.offline);
        v["officers_needed"] = json!(officers_needed(app));
        Ok(v)
    }

    /// An RA officer's decision on an application awaiting review.
    pub async fn review(
        &self,
        who: &Who,
        id: &str,
        decision: &str,
        reason: Option<&str>,
    ) -> Result<Value, Failure> {
        let Who::Officer(officer) = who else {
            return Err(AppError::OfficerOnly("decide reviews").into());
        };
        let (approve, reason) = parse_decision(decision, reason)?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = async {
            if app.status != Status::AwaitingReview {
                return Err(AppError::NotAwaitingReview(app.status.name()));
            }
            if app
                .doc
                .progress
                .reviews
                .iter()
                .any(|r| &r.officer == officer)
            {
                return Err(AppError::AlreadyReviewed(officer.clone()));
            }
            let from = app.status;
            app.doc.progress.reviews.push(ReviewRecord {
                officer: officer.clone(),
                decision: decision.to_owned(),
                reason: reason.clone(),
                at: unix_now(),
            });
            if !approve {
                let reason = reason.unwrap_or_default();
                return self
                    .reject(&mut app, REJECTED_BY_REVIEW, &reason, who)
                    .await;
            }
            let approvals = app
                .doc
                .progress
                .reviews
                .iter()
                .filter(|r| r.decision == "approve")
                .count();
            if approvals < usize::from(officers_needed(&app)) {
                // Waits for the second officer.
                self.save(&mut app, from, &who.actor()).await?;
                return Ok(());
            }
            let p = &mut app.doc.progress;
            if p.offline {
                // The paper check stands for the verification the applicant could not finish.
                let fields = paper_checked(&p.subject);
                p.record_verified("offline", &format!("review:{officer}"), &fields);
                p.step = p.policy.steps.len();
            } else {
                if p.reviewed_document() {
                    // The officers' check of the document stands for a vendor's: L2.
                    let by = format!("review:{officer}");
                    let fields = paper_checked(&p.subject);
                    p.record_verified("review", &by, &fields);
                    p.evidence.push(Evidence {
                        method: "review".into(),
                        verification: by,
                        outcome: "verified".into(),
                        assurance: Some(REVIEWED_LEVEL.into()),
                        reused: false,
                        at: unix_now(),
                    });
                }
                super::next_step(p);
            }
            p.cursor = Cursor::Enter;
            p.failure = None;
            self.save(&mut app, from, &who.actor()).await?;
            self.drive(&mut app, who).await
        }
        .await;
        // A rejection by review is the officer's success, not a failed request.
        match self.answer(app, found, result).await {
            Err(Failure {
                error: AppError::Rejected(_),
                application: Some(v),
            }) => Ok(v),
            other => other,
        }
    }

    /// The applicant switches to the offline paper path: the running step stops and the
    /// application waits for an RA officer's paper check.
    pub async fn offline(&self, who: &Who, id: &str) -> Result<Value, Failure> {
        super::channel_of(who, "switch applications to the offline path")?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = async {
            open_or_finished(&app)?;
            if matches!(app.status, Status::AwaitingReview | Status::Approved) {
                return Err(AppError::InputNotExpected(format!(
                    "the application is {}; it cannot switch to the offline path",
                    app.status.name()
                )));
            }
            let from = app.status;
            if let Cursor::Verifying { verification, .. } = &app.doc.progress.cursor {
                let requester = Requester::Operator("applications");
                if let Err(e) = self.verifications.cancel(&requester, verification).await {
                    tracing::debug!(error = %e, "verification not cancelled (finished already?)");
                }
            }
            let p = &mut app.doc.progress;
            p.offline = true;
            p.cursor = Cursor::Review;
            app.doc.challenge = None;
            app.status = Status::AwaitingReview;
            self.save(&mut app, from, &who.actor()).await?;
            self.announce(&app, from).await;
            Ok(())
        }
        .await;
        self.answer(app, found, result).await
    }
}

/// The level a reviewed permit or passport reaches (documents checked by officers, no vendor).
const REVIEWED_LEVEL: &str = "L2";

/// Distinct approving officers the application needs (the policy's review step; 1 on the
/// offline path of a policy without one).
fn officers_needed(app: &super::App) -> u8 {
    app.doc
        .progress
        .policy
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Review { officers } => Some(*officers),
            _ => None,
        })
        .unwrap_or(1)
}

/// What an officer's paper check proves: an organisation's name and USCC, or a person's name.
fn paper_checked(subject: &crate::application::subject::SubjectInput) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if subject.kind() == crate::application::policy::SubjectType::Organisation {
        if let Some(n) = &subject.name {
            out.push(("organisation".to_owned(), n.clone()));
        }
        if let Some(u) = &subject.uscc {
            out.push(("uscc".to_owned(), u.clone()));
        }
    } else if let Some(n) = &subject.name {
        out.push(("name".to_owned(), n.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_checked() {
        assert!(parse_decision("approve", None).unwrap_or_default().0);
        assert!(matches!(
            parse_decision("reject", Some("  ")),
            Err(AppError::DecisionInvalid(_))
        ));
        assert!(matches!(
            parse_decision("maybe", None),
            Err(AppError::DecisionInvalid(_))
        ));
        let (ok, reason) = parse_decision("reject", Some("licence unreadable")).unwrap_or_default();
        assert!(!ok && reason.as_deref() == Some("licence unreadable"));
    }
}
