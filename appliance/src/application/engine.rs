//! The engine: runs an application through its policy's steps until it needs the applicant or
//! finishes, reusing recent verifications where the policy allows.

use crate::application::machine::{Cursor, Evidence, Progress, Status};
use crate::application::organisation::{self as org};
use crate::application::policy::{Kind, Person, Step};
use crate::application::subject::SubjectInput;
use crate::storage::unix_now;
use crate::verification::seal::Field;
use crate::verification::VerificationError;

use super::{field_name, next_step, sealed, App, AppError, ApplicationService, Who};

impl ApplicationService {
    /// Runs the application forward until it needs the applicant (or finishes), saving every
    /// change.
    pub(super) async fn drive(&self, app: &mut App, who: &Who) -> Result<(), AppError> {
        for _ in 0..32 {
            if !app.status.is_open() {
                return Ok(());
            }
            let from = app.status;
            let before = serde_json::to_vec(&app.doc).map_err(sealed)?;
            let revision = app.row.revision;
            let more = self.advance(app, who).await?;
            let changed =
                from != app.status || before != serde_json::to_vec(&app.doc).map_err(sealed)?;
            // A step that committed itself (issuance) has saved and announced already.
            if changed && app.row.revision == revision {
                self.save(app, from, &who.actor()).await?;
                self.announce(app, from).await;
            }
            if !more {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One move of the machine; true when it may move again at once.
    pub(super) async fn advance(&self, app: &mut App, who: &Who) -> Result<bool, AppError> {
        let p = &mut app.doc.progress;
        match p.cursor.clone() {
            Cursor::Enter => {
                if !p.queued.is_empty() {
                    let method = p.queued.remove(0);
                    p.cursor = Cursor::Ready {
                        method: method.clone(),
                    };
                    self.prepare(app, &method)?;
                    return Ok(true);
                }
                let Some(step) = p.policy.steps.get(p.step).cloned() else {
                    p.cursor = if app.kind.issues() && p.csr.is_none() {
                        app.status = Status::AwaitingApplicant;
                        Cursor::NeedsCsr
                    } else {
                        Cursor::Done
                    };
                    return Ok(true);
                };
                match step {
                    Step::Verify {
                        methods,
                        reuse_days,
                        ..
                    } => {
                        if org::reuse_legal_rep(p) {
                            tracing::info!(application = %app.row.id, "the legal representative's verified data reused for the agent");
                            return Ok(true);
                        }
                        if reuse_days > 0 && self.reuse(app, &methods, reuse_days).await? {
                            return Ok(true);
                        }
                        let p = &mut app.doc.progress;
                        if methods.len() == 1 {
                            p.cursor = Cursor::Ready {
                                method: methods[0].clone(),
                            };
                            self.prepare(app, &methods[0])?;
                            Ok(true)
                        } else {
                            p.cursor = Cursor::Choose { options: methods };
                            app.status = Status::AwaitingChoice;
                            Ok(false)
                        }
                    }
                    Step::ConfirmPhone => {
                        p.cursor = Cursor::ConfirmPhone;
                        app.status = Status::AwaitingApplicant;
                        Ok(false)
                    }
                    Step::SignBySms => {
                        p.confirmed_phone = p.applicant_phone();
                        p.cursor = Cursor::SendCode;
                        Ok(true)
                    }
                    Step::Materials { .. } => {
                        p.cursor = Cursor::Materials {
                            missing: Vec::new(),
                        };
                        Ok(true)
                    }
                    Step::Review { .. } => {
                        p.cursor = Cursor::Review;
                        app.status = Status::AwaitingReview;
                        Ok(false)
                    }
                }
            }
            Cursor::Ready { method } => {
                let sends_sms = self.method_fields(&method)?.iter().any(|f| f == "phone");
                if sends_sms && !self.captcha_passed(app).await? {
                    return Ok(false);
                }
                self.start_verification(app, &method).await?;
                Ok(true)
            }
            Cursor::Verifying {
                method,
                verification,
            } => self.observe(app, &method, &verification, who).await,
            Cursor::SendCode => {
                self.send_code(app).await?;
                Ok(false)
            }
            Cursor::Choose { .. } => {
                app.status = Status::AwaitingChoice;
                Ok(false)
            }
            Cursor::Materials { .. } => self.check_materials(app).await,
            Cursor::Review => {
                app.status = Status::AwaitingReview;
                Ok(false)
            }
            Cursor::Needs { .. }
            | Cursor::ConfirmPhone
            | Cursor::CodeSent { .. }
            | Cursor::NeedsCsr => {
                app.status = Status::AwaitingApplicant;
                Ok(false)
            }
            Cursor::Done => {
                if app.status != Status::Approved {
                    if let Some((code, message)) = self.level_too_low(app) {
                        self.reject(app, code, &message, who).await?;
                        return Ok(false);
                    }
                    app.status = Status::Approved;
                    return Ok(true);
                }
                self.carry_out(app, who).await?;
                Ok(false)
            }
        }
    }

    /// `level_too_low` when an issuing application's verifications stayed below its profile's
    /// `min_level` (checked before approval, so nothing is issued).
    pub(super) fn level_too_low(&self, app: &App) -> Option<(&'static str, String)> {
        if !matches!(
            app.kind,
            Kind::New | Kind::Renewal | Kind::Change | Kind::Reissue
        ) {
            return None;
        }
        let need = self.issuer.profiles().get(&app.row.profile)?.min_level?;
        let have = app.doc.progress.assurance();
        let have_level = have.as_deref().and_then(crate::relying::Level::parse);
        if have_level.is_some_and(|h| h >= need) {
            return None;
        }
        Some((
            "level_too_low",
            format!(
                "profile {} needs assurance level {}; the verifications reached {}",
                app.row.profile,
                need.as_str(),
                have.as_deref().unwrap_or("none")
            ),
        ))
    }

    /// Fields (API names) a method's plugin needs.
    pub(super) fn method_fields(&self, method: &str) -> Result<Vec<String>, AppError> {
        match self.verifications.registry().get(method) {
            Some(crate::verification::PluginSlot::Ready(r)) => Ok(r
                .plugin()
                .manifest()
                .applicant_fields
                .iter()
                .map(|f| field_name(*f).to_owned())
                .collect()),
            Some(crate::verification::PluginSlot::Unavailable(reason)) => {
                Err(VerificationError::Unavailable {
                    plugin: method.to_owned(),
                    reason: reason.clone(),
                }
                .into())
            }
            None => Err(VerificationError::UnknownPlugin(method.to_owned()).into()),
        }
    }

    /// The subject a method is given: the declared one with the method's extra fields on top.
    pub(super) fn subject_for(&self, p: &Progress, method: &str) -> SubjectInput {
        let person = p.person();
        let base = p.subject.acting(person);
        match p.extra.get(&org::extra_key(person, method)) {
            Some(extra) => base.overlaid(extra),
            None => base,
        }
    }

    /// Whose identity `method` proves at the current step: the step's person for a method on
    /// a person (name, ID), the organisation itself for the registry and the corporate
    /// transfer.
    pub(super) fn acting_for(&self, p: &Progress, method: &str) -> SubjectInput {
        let personal = self
            .method_fields(method)
            .map(|f| f.iter().any(|x| x == "name" || x == "id_number"))
            .unwrap_or(true);
        if personal {
            p.subject.acting(p.person())
        } else {
            p.subject.acting(Person::Subject)
        }
    }

    /// With the cursor at `Ready { method }`: waits for missing fields instead, if any.
    pub(super) fn prepare(&self, app: &mut App, method: &str) -> Result<(), AppError> {
        let fields = self.method_fields(method)?;
        let subject = self.subject_for(&app.doc.progress, method);
        let missing: Vec<String> = fields
            .into_iter()
            .filter(|f| subject.get(f).is_none())
            .collect();
        if !missing.is_empty() {
            app.doc.progress.cursor = Cursor::Needs {
                method: method.to_owned(),
                fields: missing,
            };
            app.status = Status::AwaitingApplicant;
        } else {
            app.status = Status::Verifying;
        }
        Ok(())
    }

    /// Reuses a recent verification of the same subject by one of `methods`; true if it did.
    pub(super) async fn reuse(
        &self,
        app: &mut App,
        methods: &[String],
        days: u32,
    ) -> Result<bool, AppError> {
        let keys = self.keys();
        let since = unix_now() - i64::from(days) * 86_400;
        for method in methods {
            let p = &app.doc.progress;
            let person = p.person();
            let acting = self.acting_for(p, method);
            let (id_type, id_number) = acting.identity();
            let hashes = self.hashes(&keys, &id_type, &id_number);
            // The name that must match: a person's, or the organisation's own.
            let (name_field, name) = if acting.id_number.is_none() && acting.organisation.is_some()
            {
                ("organisation", acting.organisation.clone())
            } else {
                ("name", acting.name.clone())
            };
            let Some(found) = self.rows.find_reusable(&hashes, method, since).await? else {
                continue;
            };
            let Ok(plain) = keys.open(
                &found.verification_id,
                Field::Result,
                &found.sealed_attributes,
            ) else {
                continue;
            };
            let attrs: Vec<(String, String)> = serde_json::from_slice(&plain).map_err(sealed)?;
            // Reuse only what proves this application's declared person.
            let same_name = attrs
                .iter()
                .any(|(f, v)| f == name_field && Some(v.as_str()) == name.as_deref());
            if !same_name {
                continue;
            }
            let p = &mut app.doc.progress;
            let attrs: Vec<(String, String)> = attrs
                .into_iter()
                .map(|(f, v)| (Progress::attribute(person, &f), v))
                .collect();
            p.record_verified(method, &found.verification_id, &attrs);
            p.evidence.push(Evidence {
                method: method.clone(),
                verification: found.verification_id.clone(),
                outcome: "verified".into(),
                assurance: found.assurance.clone(),
                reused: true,
                at: unix_now(),
            });
            next_step(p);
            tracing::info!(application = %app.row.id, %method, "recent verification reused");
            return Ok(true);
        }
        Ok(false)
    }
}
