//! The steps that verify: captchas, the appliance's own SMS codes, and verifier sessions (started,
//! observed, expired, remembered for reuse).

use plugin_abi::doc::{Applicant, Status as VStatus};
use serde_json::{json, Value};

use crate::application::machine::{CodeSent, Cursor, Evidence, Progress, Status};
use crate::application::organisation::{self as org};
use crate::application::policy::{Kind, Step};
use crate::application::subject::subject_hash;
use crate::contact::{CaptchaError, CodeError, CodePurpose};
use crate::storage::{unix_now, ReusableVerification, StorageError};
use crate::verification::seal::Field;
use crate::verification::Requester;

use super::{field_name, next_step, App, AppError, ApplicationService, Who};

impl ApplicationService {
    /// True when no captcha is needed for the next SMS or one was solved (and is now spent);
    /// otherwise shows one and waits.
    pub(super) async fn captcha_passed(&self, app: &mut App) -> Result<bool, AppError> {
        if !app.doc.progress.policy.captcha {
            return Ok(true);
        }
        if app.doc.progress.captcha_solved {
            app.doc.progress.captcha_solved = false;
            return Ok(true);
        }
        if app.doc.progress.captcha.is_none() {
            self.show_captcha(app).await?;
        }
        app.status = Status::AwaitingApplicant;
        Ok(false)
    }

    pub(super) async fn show_captcha(&self, app: &mut App) -> Result<(), AppError> {
        use base64::Engine;
        let captchas = self
            .captchas
            .clone()
            .ok_or(AppError::Unavailable("captcha"))?;
        let c = captchas.issue(&app.row.id).await.map_err(|e| match e {
            CaptchaError::Storage(m) => AppError::Storage(StorageError::Database(m)),
            other => AppError::Sealed(other.to_string()),
        })?;
        let png = base64::engine::general_purpose::STANDARD.encode(&c.png);
        app.doc.progress.captcha = Some((c.id, png, c.expires_at));
        app.status = Status::AwaitingApplicant;
        Ok(())
    }

    pub(super) fn code_purpose(&self, app: &App) -> CodePurpose {
        match app.doc.progress.policy.steps.get(app.doc.progress.step) {
            Some(Step::SignBySms) => CodePurpose::ApplicationSignature,
            _ if app.kind == Kind::PhoneChange => CodePurpose::NewPhone,
            _ => CodePurpose::ConfirmPhone,
        }
    }

    /// Sends the step's code to the confirmed phone (after a captcha if the policy says so).
    pub(super) async fn send_code(&self, app: &mut App) -> Result<(), AppError> {
        if !self.captcha_passed(app).await? {
            return Ok(());
        }
        let phone = app
            .doc
            .progress
            .confirmed_phone
            .clone()
            .ok_or(AppError::PhoneNotVerified)?;
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        let purpose = self.code_purpose(app);
        match codes
            .send(&app.row.channel, &app.row.id, purpose, &phone)
            .await
        {
            Ok(sent) => {
                app.doc.progress.cursor = Cursor::CodeSent {
                    sent: CodeSent {
                        expires_at: sent.expires_at,
                        resend_after: sent.resend_after,
                    },
                };
                app.status = Status::AwaitingApplicant;
                Ok(())
            }
            Err(CodeError::ResendTooSoon { retry_after }) => {
                // A code is out already (sent before a restart, or a quick repeat).
                if !matches!(app.doc.progress.cursor, Cursor::CodeSent { .. }) {
                    app.doc.progress.cursor = Cursor::CodeSent {
                        sent: CodeSent {
                            expires_at: retry_after + 240,
                            resend_after: retry_after,
                        },
                    };
                    app.status = Status::AwaitingApplicant;
                }
                Err(AppError::ResendTooSoon(retry_after))
            }
            Err(CodeError::Storage(m)) => Err(AppError::Storage(StorageError::Database(m))),
            Err(e) => Err(AppError::Unavailable(match e {
                CodeError::Notify(_) => "the channel's SMS notifier",
                _ => "one-time codes",
            }))
            .inspect_err(|_| tracing::warn!(error = %e, "code not sent")),
        }
    }

    /// Starts (or, after a crash, finds again) the verification of `method` for this step.
    pub(super) async fn start_verification(
        &self,
        app: &mut App,
        method: &str,
    ) -> Result<(), AppError> {
        let p = &app.doc.progress;
        let subject = self.subject_for(p, method);
        let applicant = Applicant {
            name: subject.name.clone(),
            id_number: subject.id_number.clone(),
            phone: subject.phone.clone(),
            bank_card: subject.bank_card.clone(),
            org_name: subject.organisation.clone(),
            uscc: subject.uscc.clone(),
            legal_rep_name: subject.get("legal_rep_name").map(str::to_owned),
            legal_rep_id: subject.get("legal_rep_id").map(str::to_owned),
            bank_account: subject.bank_account.clone(),
            bank_name: subject.bank_name.clone(),
        };
        // One reference per (application, step, fallback, queue position, method): a retry finds
        // the verification it started before.
        let reference = format!(
            "{}/{}/{}/{}/{}/{}",
            app.row.id,
            p.step,
            p.fallbacks_taken,
            p.queued.len(),
            method,
            p.evidence.len()
        );
        let allowed = p.policy.methods();
        let requester = Requester::Channel {
            name: &app.row.channel,
            allowed: &allowed,
        };
        let info = self
            .verifications
            .start(&requester, method, applicant, Some(reference))
            .await?;
        app.doc.progress.cursor = Cursor::Verifying {
            method: method.to_owned(),
            verification: info.view.id.clone(),
        };
        app.doc.progress.started_at = Some(unix_now());
        app.status = Status::Verifying;
        Ok(())
    }

    /// Looks at the running verification; moves on when it finished.
    pub(super) async fn observe(
        &self,
        app: &mut App,
        method: &str,
        verification: &str,
        _who: &Who,
    ) -> Result<bool, AppError> {
        let info = self
            .verifications
            .get(&Requester::Operator("applications"), verification)
            .await?;
        let view = &info.view;
        if view.status != VStatus::Succeeded && org::window_passed(&app.doc.progress, unix_now()) {
            self.expire_verification(app, method, verification).await;
            return Ok(true);
        }
        match view.status {
            VStatus::Pending | VStatus::AwaitingUser => {
                app.doc.challenge = view
                    .challenges
                    .first()
                    .map(|c| serde_json::to_value(c).unwrap_or(Value::Null));
                self.send_face_link(app, verification).await?;
                app.status = if view.challenges.is_empty() {
                    Status::Verifying
                } else {
                    Status::AwaitingApplicant
                };
                Ok(false)
            }
            VStatus::Succeeded => {
                let result =
                    view.result
                        .clone()
                        .unwrap_or_else(|| plugin_abi::doc::VerificationResult {
                            outcome: plugin_abi::doc::Outcome::Verified,
                            verified_attributes: Vec::new(),
                            assurance: None,
                            evidence: Value::Null,
                        });
                let attrs: Vec<(String, String)> = result
                    .verified_attributes
                    .iter()
                    .filter_map(|f| {
                        info.applicant
                            .get(*f)
                            .map(|v| (field_name(*f).to_owned(), v.to_owned()))
                    })
                    .collect();
                let p = &mut app.doc.progress;
                let person = p.person();
                let recorded: Vec<(String, String)> = attrs
                    .iter()
                    .map(|(f, v)| (Progress::attribute(person, f), v.clone()))
                    .collect();
                p.record_verified(method, verification, &recorded);
                p.started_at = None;
                p.evidence.push(Evidence {
                    method: method.to_owned(),
                    verification: verification.to_owned(),
                    outcome: "verified".into(),
                    assurance: result.assurance.clone(),
                    reused: false,
                    at: unix_now(),
                });
                p.failure = None;
                app.doc.challenge = None;
                self.remember(app, method, verification, &attrs, result.assurance.clone())
                    .await;
                let p = &mut app.doc.progress;
                if p.queued.is_empty() {
                    next_step(p);
                } else {
                    p.cursor = Cursor::Enter;
                }
                app.status = Status::Verifying;
                Ok(true)
            }
            VStatus::Failed => {
                let code = crate::verification::service::failure_code(view.result.as_ref())
                    .unwrap_or_else(|| "verification_failed".into());
                let code = org::failure_code(method, code);
                if code == org::DEPOSIT_EXPIRED {
                    org::choose_again(&mut app.doc.progress, method, verification);
                    app.doc.challenge = None;
                    app.status = Status::Verifying;
                    return Ok(true);
                }
                let p = &mut app.doc.progress;
                p.evidence.push(Evidence {
                    method: method.to_owned(),
                    verification: verification.to_owned(),
                    outcome: code.clone(),
                    assurance: None,
                    reused: false,
                    at: unix_now(),
                });
                app.doc.challenge = None;
                let fallbacks = match p.policy.steps.get(p.step) {
                    Some(Step::Verify { fallback, .. }) => fallback.clone(),
                    _ => Vec::new(),
                };
                let taken = p.fallbacks_taken;
                let next = fallbacks
                    .iter()
                    .enumerate()
                    .skip(taken)
                    .find(|(_, f)| f.on.contains(&code));
                if let Some((i, f)) = next {
                    p.fallbacks_taken = i + 1;
                    p.queued = f.then.clone();
                    p.failure = Some((
                        code.clone(),
                        format!("{method} failed: {code}; falling back"),
                    ));
                    if f.verify.len() == 1 {
                        p.cursor = Cursor::Ready {
                            method: f.verify[0].clone(),
                        };
                        self.prepare(app, &f.verify[0])?;
                    } else {
                        p.cursor = Cursor::Choose {
                            options: f.verify.clone(),
                        };
                        app.status = Status::AwaitingChoice;
                    }
                    tracing::info!(application = %app.row.id, %method, %code, "falling back");
                    return Ok(true);
                }
                let message = format!("verification by {method} failed: {code}");
                app.doc.progress.failure = Some((code, message));
                app.status = Status::Rejected;
                Ok(false)
            }
        }
    }

    /// The running verification outlived its step's window: cancel it, record
    /// `deposit_expired`, and start the step again (the method is chosen again).
    pub(super) async fn expire_verification(
        &self,
        app: &mut App,
        method: &str,
        verification: &str,
    ) {
        let requester = Requester::Operator("applications");
        if let Err(e) = self.verifications.cancel(&requester, verification).await {
            tracing::debug!(error = %e, "verification not cancelled (finished already?)");
        }
        org::choose_again(&mut app.doc.progress, method, verification);
        app.doc.challenge = None;
        app.status = Status::Verifying;
        tracing::info!(application = %app.row.id, %method, "verification window passed");
    }

    /// Face by SMS link: sends the face URL of `verification` to the person's phone once.
    pub(super) async fn send_face_link(
        &self,
        app: &mut App,
        verification: &str,
    ) -> Result<(), AppError> {
        let p = &app.doc.progress;
        if !p.face_by_sms || p.link_sent.as_deref() == Some(verification) {
            return Ok(());
        }
        let Some(url) = app
            .doc
            .challenge
            .as_ref()
            .filter(|c| c.get("kind") == Some(&json!("face_url")))
            .and_then(|c| c.get("payload")?.get("url")?.as_str().map(str::to_owned))
        else {
            return Ok(());
        };
        let phone = org::link_phone(p).ok_or(AppError::PhoneNotVerified)?;
        let notifier = self
            .notifier
            .clone()
            .ok_or(AppError::Unavailable("the channel's SMS notifier"))?;
        notifier
            .send_sms(&app.row.channel, &phone, &org::link_text(&url))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "face link not sent");
                AppError::Unavailable("the channel's SMS notifier")
            })?;
        app.doc.progress.link_sent = Some(verification.to_owned());
        Ok(())
    }

    /// Keeps a successful verification for reuse by later applications of the same person.
    pub(super) async fn remember(
        &self,
        app: &App,
        method: &str,
        verification: &str,
        attrs: &[(String, String)],
        assurance: Option<String>,
    ) {
        let keys = self.keys();
        let Ok(key) = keys.active() else { return };
        let (id_type, id_number) = self.acting_for(&app.doc.progress, method).identity();
        let hash = subject_hash(key, &id_type, &id_number);
        let Ok(plain) = serde_json::to_vec(attrs) else {
            return;
        };
        let Ok(sealed_attributes) = key.seal(verification, Field::Result, &plain) else {
            return;
        };
        let v = ReusableVerification {
            verification_id: verification.to_owned(),
            application_id: app.row.id.clone(),
            assurance,
            key_id: key.id(),
            sealed_attributes,
            verified_at: unix_now(),
        };
        if let Err(e) = self.rows.add_reusable(&hash, method, &v).await {
            tracing::warn!(error = %e, "verification not kept for reuse");
        }
    }
}
