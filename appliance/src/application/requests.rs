//! The requests on an open application: read it, give input, choose a method, confirm the
//! phone, send the CSR, cancel.

use plugin_abi::doc::{ChallengeKind, Status as VStatus};
use serde_json::Value;

use crate::application::machine::{Cursor, Evidence, Status};
use crate::application::organisation::{self as org, Delivery};
use crate::application::policy::Step;
use crate::application::subject::SubjectInput;
use crate::config::ChannelConfig;
use crate::contact::{CaptchaError, CodeError, CodePurpose};
use crate::storage::{unix_now, StorageError};
use crate::verification::Requester;

use super::{
    channel_of, cursor_name, next_step, open_or_finished, App, AppError, ApplicationService,
    Failure, Who,
};

impl ApplicationService {
    /// The application, advanced first if it waits on a vendor.
    pub async fn get(&self, who: &Who, id: &str) -> Result<Value, Failure> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = if app.status.is_open() {
            self.drive(&mut app, who).await
        } else {
            Ok(())
        };
        self.answer(app, found, result).await
    }

    /// The applicant's input for the current step: `captcha`, `sms_code`, `deposit_amount`, ...
    pub async fn input(
        &self,
        who: &Who,
        id: &str,
        kind: &str,
        value: &str,
    ) -> Result<Value, Failure> {
        let channel = channel_of(who, "give input")?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = self
            .input_locked(&mut app, who, &channel, kind, value)
            .await;
        self.answer(app, found, result).await
    }

    pub(super) async fn input_locked(
        &self,
        app: &mut App,
        who: &Who,
        channel: &ChannelConfig,
        kind: &str,
        value: &str,
    ) -> Result<(), AppError> {
        open_or_finished(app)?;
        let from = app.status;
        if kind == "captcha" {
            let Some((cap_id, _, _)) = app.doc.progress.captcha.clone() else {
                return Err(AppError::InputNotExpected(
                    "no captcha is shown at this step".into(),
                ));
            };
            let captchas = self
                .captchas
                .clone()
                .ok_or(AppError::Unavailable("captcha"))?;
            let outcome = captchas.redeem(&app.row.id, &cap_id, value.trim()).await;
            app.doc.progress.captcha = None;
            match outcome {
                Ok(()) => {
                    app.doc.progress.captcha_solved = true;
                    self.save(app, from, &who.actor()).await?;
                    return self.drive(app, who).await;
                }
                Err(e) => {
                    // The captcha is used up either way: show a new one.
                    self.show_captcha(app).await?;
                    self.save(app, from, &who.actor()).await?;
                    return Err(match e {
                        CaptchaError::Wrong => AppError::CaptchaWrong,
                        CaptchaError::Unknown => AppError::CaptchaExpired,
                        CaptchaError::Storage(m) => AppError::Storage(StorageError::Database(m)),
                    });
                }
            }
        }
        if app.doc.progress.captcha.is_some() {
            return Err(AppError::CaptchaRequired);
        }
        let challenge: ChallengeKind = serde_json::from_value(Value::String(kind.to_owned()))
            .map_err(|_| {
                AppError::InputNotExpected(format!(
                    "unknown input kind {kind:?} (captcha, sms_code, deposit_amount, face_url)"
                ))
            })?;
        match app.doc.progress.cursor.clone() {
            Cursor::Materials { .. } if challenge == ChallengeKind::SmsCode => {
                self.check_authorisation(app, who, value.trim()).await
            }
            Cursor::CodeSent { .. } => {
                if challenge != ChallengeKind::SmsCode {
                    return Err(AppError::InputNotExpected(
                        "this step takes the SMS code (kind sms_code)".into(),
                    ));
                }
                let purpose = self.code_purpose(app);
                let codes = self
                    .codes
                    .clone()
                    .ok_or(AppError::Unavailable("one-time codes"))?;
                match codes.check(&app.row.id, purpose, value.trim()).await {
                    Ok(()) => {
                        if purpose == CodePurpose::ConfirmPhone {
                            app.doc.progress.evidence.push(Evidence {
                                method: "confirm_phone".into(),
                                verification: String::new(),
                                outcome: "verified".into(),
                                assurance: None,
                                reused: false,
                                at: unix_now(),
                            });
                        }
                        app.doc.progress.failure = None;
                        next_step(&mut app.doc.progress);
                        self.save(app, from, &who.actor()).await?;
                        self.drive(app, who).await
                    }
                    Err(CodeError::Wrong { attempts_left }) => {
                        app.doc.progress.failure = Some((
                            "otp_wrong".into(),
                            format!("the code is wrong; {attempts_left} attempts left"),
                        ));
                        self.save(app, from, &who.actor()).await?;
                        Err(AppError::OtpWrong { attempts_left })
                    }
                    Err(CodeError::Expired) => Err(AppError::OtpExpired),
                    Err(CodeError::AttemptsExceeded | CodeError::NoCode) => {
                        self.reject(app, "otp_attempts_exceeded", "too many wrong codes", who)
                            .await?;
                        Err(AppError::OtpAttemptsExceeded)
                    }
                    Err(CodeError::ResendTooSoon { retry_after }) => {
                        Err(AppError::ResendTooSoon(retry_after))
                    }
                    Err(CodeError::Notify(e)) => {
                        Err(AppError::Storage(StorageError::Database(e.to_string())))
                    }
                    Err(CodeError::Storage(m)) => Err(AppError::Storage(StorageError::Database(m))),
                }
            }
            Cursor::Verifying {
                method,
                verification,
            } => {
                if org::window_passed(&app.doc.progress, unix_now()) {
                    self.expire_verification(app, &method, &verification).await;
                    self.save(app, from, &who.actor()).await?;
                    self.drive(app, who).await?;
                    return Err(AppError::DepositExpired(method));
                }
                let requester = Requester::Channel {
                    name: &channel.name,
                    allowed: &channel.verifications,
                };
                let info = self
                    .verifications
                    .input(&requester, &verification, challenge, value.to_owned())
                    .await?;
                let wrong = info
                    .view
                    .result
                    .as_ref()
                    .filter(|_| info.view.status != VStatus::Failed)
                    .and_then(|r| {
                        crate::verification::service::failure_code(Some(r)).map(|c| {
                            let left = r.evidence.get("attempts_left").and_then(Value::as_u64);
                            (c, left)
                        })
                    });
                let _ = method;
                self.drive(app, who).await?;
                if let Some((code, left)) = wrong {
                    if code == "otp_wrong" && app.status.is_open() {
                        return Err(AppError::OtpWrong {
                            attempts_left: left.unwrap_or(0) as u32,
                        });
                    }
                }
                Ok(())
            }
            // The window passed (seen by the background task first): the deposit is void.
            _ if challenge == ChallengeKind::DepositAmount
                && app.doc.progress.failure.as_ref().map(|f| f.0.as_str())
                    == Some(org::DEPOSIT_EXPIRED) =>
            {
                Err(AppError::DepositExpired("corporate-transfer".into()))
            }
            _ => Err(AppError::InputNotExpected(format!(
                "the current step ({}) takes no {kind} input",
                cursor_name(&app.doc.progress.cursor)
            ))),
        }
    }

    /// The applicant chooses a method (with the extra fields it needs).
    pub async fn choose(
        &self,
        who: &Who,
        id: &str,
        method: &str,
        extra: Option<SubjectInput>,
        delivery: Option<&str>,
    ) -> Result<Value, Failure> {
        channel_of(who, "choose methods")?;
        let delivery = match delivery {
            None => Delivery::OnTheSpot,
            Some(d) => Delivery::parse(d).ok_or_else(|| {
                AppError::FieldNotExpected(
                    "delivery must be \"on_the_spot\" or \"sms_link\"".into(),
                )
            })?,
        };
        if delivery == Delivery::SmsLink && method != "face" {
            return Err(AppError::FieldNotExpected(
                "delivery \"sms_link\" belongs to the face method".into(),
            )
            .into());
        }
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = self
            .choose_locked(&mut app, who, method, extra, delivery)
            .await;
        self.answer(app, found, result).await
    }

    pub(super) async fn choose_locked(
        &self,
        app: &mut App,
        who: &Who,
        method: &str,
        extra: Option<SubjectInput>,
        delivery: Delivery,
    ) -> Result<(), AppError> {
        open_or_finished(app)?;
        let from = app.status;
        let offered = match &app.doc.progress.cursor {
            Cursor::Choose { options } => options.clone(),
            Cursor::Needs { method, .. } => vec![method.clone()],
            _ => {
                return Err(AppError::InputNotExpected(
                    "no method is to be chosen at this step".into(),
                ))
            }
        };
        if !offered.iter().any(|m| m == method) {
            return Err(AppError::MethodNotAllowed(method.to_owned()));
        }
        let fields = self.method_fields(method)?;
        if let Some(extra) = extra {
            if extra.subject_type.is_some() || extra.id_type.is_some() {
                return Err(AppError::FieldNotExpected(
                    "a choice's subject takes only the fields the method needs".into(),
                ));
            }
            for f in extra.present() {
                let allowed = fields.iter().any(|x| x == f)
                    && !["name", "id_number", "uscc", "organisation"].contains(&f);
                if !allowed {
                    return Err(AppError::FieldNotExpected(format!(
                        "subject.{f} is not expected by method {method}"
                    )));
                }
            }
            let extra = extra.normalise()?;
            let key = org::extra_key(app.doc.progress.person(), method);
            app.doc.progress.extra.insert(key, extra);
        }
        app.doc.progress.face_by_sms = delivery == Delivery::SmsLink;
        app.doc.progress.cursor = Cursor::Ready {
            method: method.to_owned(),
        };
        self.prepare(app, method)?;
        self.save(app, from, &who.actor()).await?;
        self.drive(app, who).await
    }

    /// The applicant confirms the verified phone (a code is then sent to it), or asks for the
    /// code again.
    pub async fn confirm(&self, who: &Who, id: &str, phone: &str) -> Result<Value, Failure> {
        channel_of(who, "confirm phones")?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = self.confirm_locked(&mut app, who, phone).await;
        self.answer(app, found, result).await
    }

    pub(super) async fn confirm_locked(
        &self,
        app: &mut App,
        who: &Who,
        phone: &str,
    ) -> Result<(), AppError> {
        open_or_finished(app)?;
        let from = app.status;
        let at_code_step = matches!(
            app.doc.progress.policy.steps.get(app.doc.progress.step),
            Some(Step::ConfirmPhone | Step::SignBySms)
        ) && app.doc.progress.queued.is_empty();
        let ok_cursor = matches!(
            app.doc.progress.cursor,
            Cursor::ConfirmPhone | Cursor::CodeSent { .. } | Cursor::SendCode
        );
        if !at_code_step || !ok_cursor {
            return Err(AppError::InputNotExpected(
                "no phone is to be confirmed at this step".into(),
            ));
        }
        let phone = SubjectInput {
            phone: Some(phone.to_owned()),
            ..Default::default()
        }
        .normalise()?
        .phone
        .unwrap_or_default();
        if app.doc.progress.verified("phone") != Some(phone.as_str()) {
            return Err(AppError::PhoneNotVerified);
        }
        app.doc.progress.confirmed_phone = Some(phone);
        let previous = app.doc.progress.cursor.clone();
        app.doc.progress.cursor = Cursor::SendCode;
        self.save(app, from, &who.actor()).await?;
        match self.drive(app, who).await {
            Err(AppError::ResendTooSoon(at)) => {
                if matches!(previous, Cursor::CodeSent { .. }) {
                    // The code out there stays valid.
                    let now = app.status;
                    app.doc.progress.cursor = previous;
                    self.save(app, now, &who.actor()).await?;
                }
                Err(AppError::ResendTooSoon(at))
            }
            other => other,
        }
    }

    /// The applicant's CSR (when not given at creation).
    pub async fn csr(&self, who: &Who, id: &str, csr: &str) -> Result<Value, Failure> {
        channel_of(who, "send CSRs")?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = async {
            open_or_finished(&app)?;
            if !app.kind.issues() {
                return Err(AppError::FieldNotExpected(format!(
                    "a {} application takes no CSR",
                    app.kind.name()
                )));
            }
            if app.status == Status::Approved {
                return Err(AppError::InputNotExpected(
                    "the application is approved; its CSR is fixed".into(),
                ));
            }
            self.check_csr(&app.row.profile, csr)?;
            let from = app.status;
            app.doc.progress.csr = Some(csr.to_owned());
            if app.doc.progress.cursor == Cursor::NeedsCsr {
                app.doc.progress.cursor = Cursor::Done;
            }
            self.save(&mut app, from, &who.actor()).await?;
            self.drive(&mut app, who).await
        }
        .await;
        self.answer(app, found, result).await
    }

    /// Cancels an open application (not once approved).
    pub async fn cancel(&self, who: &Who, id: &str) -> Result<Value, Failure> {
        if matches!(who, Who::System | Who::Officer(_) | Who::Auditor(_)) {
            return Err(AppError::ChannelOnly("cancel").into());
        }
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = async {
            open_or_finished(&app)?;
            if app.status == Status::Approved {
                return Err(AppError::InputNotExpected(
                    "the application is approved and being carried out".into(),
                ));
            }
            self.close(&mut app, Status::Cancelled, None, who).await
        }
        .await;
        self.answer(app, found, result).await
    }
}
