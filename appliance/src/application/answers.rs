//! What callers and channels see: events announced to the channel, and the masked view of an
//! application.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::application::machine::{Cursor, Status};
use crate::application::organisation::{self as org};
use crate::application::policy::Step;
use crate::contact::{ApplicationEvent, ApplicationEventKind};
use crate::storage::unix_now;

use super::{mask_field, App, AppError, ApplicationService, Failure};

impl ApplicationService {
    pub(super) async fn announce(&self, app: &App, from: Status) {
        let kind = match app.status {
            s if s == from && s != Status::AwaitingApplicant => return,
            Status::AwaitingApplicant => ApplicationEventKind::NeedsApplicant,
            Status::AwaitingChoice => ApplicationEventKind::ChoiceOffered,
            Status::AwaitingReview => ApplicationEventKind::AwaitingReview,
            Status::Issued | Status::Completed => ApplicationEventKind::Issued,
            Status::Rejected | Status::Failed => ApplicationEventKind::Rejected,
            Status::Expired => ApplicationEventKind::Expired,
            Status::Cancelled => ApplicationEventKind::Cancelled,
            Status::Verifying | Status::Approved => return,
        };
        if app.status == from {
            return;
        }
        if !app.status.is_open() {
            let method = app.doc.progress.verified.first().map(|a| a.method.as_str());
            crate::ops::metrics::application_finished(
                &app.row.channel,
                method.unwrap_or("none"),
                app.status.name(),
            );
        }
        self.notify(app, kind).await;
    }

    pub(super) async fn notify(&self, app: &App, event: ApplicationEventKind) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let p = &app.doc.progress;
        let e = ApplicationEvent {
            channel: app.row.channel.clone(),
            application_id: app.row.id.clone(),
            application_kind: app.kind.name().to_owned(),
            event,
            status: app.status.name().to_owned(),
            reference: app.doc.reference.clone(),
            certificate_serial: app.row.issued_serial.clone(),
            failure_code: p.failure.as_ref().map(|f| f.0.clone()),
            phone: p
                .confirmed_phone
                .clone()
                .or_else(|| p.applicant_phone())
                .or_else(|| p.subject.phone.clone()),
            email: p.applicant_email(),
            at: unix_now(),
        };
        if let Err(err) = notifier.application_event(&e).await {
            tracing::warn!(application = %app.row.id, error = %err, "application event not queued");
        }
    }

    /// The answer to a request that found the application in `from`: a rejection that happened
    /// during the request is an error (422 with the plugin's code), as is any error.
    pub(super) async fn answer(
        &self,
        app: App,
        from: Status,
        result: Result<(), AppError>,
    ) -> Result<Value, Failure> {
        let view = self.view(&app).await;
        match result {
            Ok(()) => match (&app.status, &app.doc.progress.failure) {
                (Status::Rejected, Some((code, _))) if from != Status::Rejected => Err(Failure {
                    error: AppError::Rejected(code.clone()),
                    application: Some(view),
                }),
                _ => Ok(view),
            },
            Err(error) => Err(Failure {
                error,
                application: Some(view),
            }),
        }
    }

    /// The application as the API shows it (personal data masked).
    pub(super) async fn view(&self, app: &App) -> Value {
        let p = &app.doc.progress;
        let certificate = match &app.row.issued_serial {
            Some(serial) => match self.certificates.get(serial).await {
                Ok(Some(c)) => json!({
                    "serial": serial,
                    "pem": crate::ca::pem_rfc7468_encode("CERTIFICATE", &c.der),
                    "not_after": c.not_after,
                }),
                _ => json!({ "serial": serial }),
            },
            None => Value::Null,
        };
        let mut out = json!({
            "id": app.row.id,
            "kind": app.kind.name(),
            "status": app.status.name(),
            "channel": app.row.channel,
            "profile": app.row.profile,
            "reference": app.doc.reference,
            "subject": p.subject.masked(),
            "subject_holds_certificate": app.doc.holds_certificate,
            "step": if app.status.is_open() { self.step_view(app) } else { Value::Null },
            "verified": p.verified.iter().map(|a| json!({
                "field": a.field,
                "method": a.method,
                "value": mask_field(&a.field, &a.value),
            })).collect::<Vec<_>>(),
            "created_at": app.row.created_at,
            "expires_at": app.row.expires_at,
        });
        if let Some((code, message)) = &p.failure {
            out["failure"] = json!({ "code": code, "message": message });
        }
        if let Some(level) = p.assurance() {
            out["assurance_level"] = json!(level);
        }
        if !certificate.is_null() {
            out["certificate"] = certificate;
        }
        if let Some(t) = &app.row.target_serial {
            out["target_certificate"] = json!(t);
        }
        out
    }

    pub(super) fn step_view(&self, app: &App) -> Value {
        let p = &app.doc.progress;
        let captcha = p.captcha.as_ref().map(|(id, png, exp)| {
            json!({"kind": "captcha", "id": id, "image_png_base64": png, "expires_at": exp})
        });
        let step_name = match p.policy.steps.get(p.step) {
            Some(Step::ConfirmPhone) if p.queued.is_empty() => "confirm_phone",
            Some(Step::SignBySms) if p.queued.is_empty() => "sign",
            _ => "verify",
        };
        let mut s = match &p.cursor {
            Cursor::Enter => json!({"name": step_name}),
            Cursor::Choose { options } => {
                let needs: BTreeMap<&String, Vec<String>> = options
                    .iter()
                    .map(|m| {
                        let subject = self.subject_for(p, m);
                        let missing = self
                            .method_fields(m)
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|f| subject.get(f).is_none())
                            .collect();
                        (m, missing)
                    })
                    .collect();
                json!({"name": "verify", "options": options, "needs": needs})
            }
            Cursor::Needs { method, fields } => {
                json!({"name": "verify", "method": method, "needs": fields})
            }
            Cursor::Ready { method } => json!({"name": "verify", "method": method}),
            Cursor::Verifying {
                method,
                verification,
            } => {
                let mut v =
                    json!({"name": "verify", "method": method, "verification": verification});
                if let Some(c) = &app.doc.challenge {
                    let mut ch = json!({"kind": c.get("kind")});
                    if let Some(Value::Object(payload)) = c.get("payload") {
                        for (k, val) in payload {
                            ch[k] = val.clone();
                        }
                    }
                    if let Some(e) = c.get("expires_at") {
                        ch["expires_at"] = e.clone();
                    }
                    if p.face_by_sms && c.get("kind") == Some(&json!("face_url")) {
                        // Sent to the person's phone: the channel shows no QR.
                        if let Value::Object(o) = &mut ch {
                            o.remove("url");
                            o.remove("qr");
                            o.remove("biz_token");
                        }
                        ch["delivery"] = json!("sms_link");
                        ch["sent_to"] =
                            json!(org::link_phone(p).map(|x| identifiers::mask::mask_phone(&x)));
                    }
                    v["challenge"] = ch;
                }
                v
            }
            Cursor::ConfirmPhone => json!({
                "name": "confirm_phone",
                "needs": ["phone"],
                "phone": p.verified("phone").map(identifiers::mask::mask_phone),
            }),
            Cursor::SendCode => json!({"name": step_name}),
            Cursor::CodeSent { sent } => json!({
                "name": step_name,
                "challenge": {
                    "kind": "sms_code",
                    "phone": p.confirmed_phone.as_deref().map(identifiers::mask::mask_phone),
                    "expires_at": sent.expires_at,
                    "resend_after": sent.resend_after,
                },
            }),
            Cursor::Materials { missing } => {
                let mut s = json!({"name": "materials", "needs": missing});
                if missing.iter().any(|k| k == "authorisation_letter") {
                    // Or online: POST .../authorise sends a code to the legal representative.
                    s["authorisation"] = json!(["authorisation_letter", "online"]);
                }
                if p.authorised_online == Some(false) {
                    s["challenge"] = json!({"kind": "sms_code", "to": "legal_rep"});
                }
                s
            }
            Cursor::Review => json!({"name": "review"}),
            Cursor::NeedsCsr => json!({"name": "csr", "needs": ["csr"]}),
            Cursor::Done => json!({"name": "issue"}),
        };
        if let Some(c) = captcha {
            s["challenge"] = c;
        }
        if app.status == Status::AwaitingReview {
            s = json!({"name": "review"});
        }
        s
    }
}
