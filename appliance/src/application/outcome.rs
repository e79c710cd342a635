//! How an application ends: an approved one issues, revokes, binds or raises an account or
//! changes the phone; a rejected or closed one says why.

use serde_json::{json, Value};

use crate::application::machine::{Cursor, Progress, Status};
use crate::application::policy::Kind;
use crate::application::subject::subject_hash;
use crate::ca::issuance::{IssuanceError, IssuanceRequest};
use crate::storage::{unix_now, AuditEntry, Revocation, RevocationError};
use crate::verification::seal::Field;
use crate::verification::Requester;

use super::{App, AppError, ApplicationService, Who, SUBSCRIBER_REASONS};

impl ApplicationService {
    /// Every step passed and the application is approved (committed): issue, revoke or change
    /// the phone.
    pub(super) async fn carry_out(&self, app: &mut App, who: &Who) -> Result<(), AppError> {
        let from = app.status;
        let actor = format!("channel:{}", app.row.channel);
        let p = app.doc.progress.clone();
        // An organisation's certificate carries no person's phone.
        let verified_phone = p
            .confirmed_phone
            .clone()
            .or_else(|| p.verified("phone").map(str::to_owned))
            .filter(|_| !p.is_organisation());
        match app.kind {
            Kind::New | Kind::Renewal | Kind::Change | Kind::Reissue => {
                let subject = p.certificate_subject();
                let mut extra = Vec::new();
                if let Some(oid) = p.assurance().and_then(|l| self.assurance_oids.get(&l)) {
                    extra.push(*oid);
                }
                // Issued before a crash, but the application not yet marked: take that one.
                if let Some(serial) = self.rows.issued_for(&app.row.id).await? {
                    tracing::warn!(application = %app.row.id, %serial, "issuance found after a restart; not issuing again");
                    app.row.issued_serial = Some(serial);
                    app.status = Status::Issued;
                    self.save(app, from, &actor).await?;
                    self.announce(app, from).await;
                    return Ok(());
                }
                let issued = self
                    .issuer
                    .issue(IssuanceRequest {
                        profile: app.row.profile.clone(),
                        csr_pem: p.csr.clone().unwrap_or_default(),
                        subject,
                        channel: Some(app.row.channel.clone()),
                        actor: actor.clone(),
                        extra_policies: extra,
                        application: Some(app.row.id.clone()),
                    })
                    .await;
                let issued = match issued {
                    Ok(i) => i,
                    Err(IssuanceError::Hsm(h)) if h.is_unavailable() => {
                        // Stays approved: the background task retries.
                        return Err(IssuanceError::Hsm(h).into());
                    }
                    Err(IssuanceError::Storage(s)) => return Err(s.into()),
                    Err(e) => {
                        tracing::warn!(application = %app.row.id, error = %e, "issuance failed");
                        app.doc.progress.failure = Some(("issuance_failed".into(), e.to_string()));
                        app.status = Status::Failed;
                        return Ok(());
                    }
                };
                crate::fault::crash_point("after-application-issuance");
                self.status.certificate_issued(issued.ca_id, &issued.serial);
                app.row.issued_serial = Some(issued.serial.clone());
                app.status = Status::Issued;
                self.save(app, from, &actor).await?;
                self.record_agent(app).await;
                if let (Some(old), Kind::Change | Kind::Reissue) =
                    (&app.row.target_serial, app.kind)
                {
                    let reason = if app.kind == Kind::Reissue { 1 } else { 4 };
                    self.revoke(old, reason, &actor).await;
                }
            }
            Kind::Revocation => {
                let reason = SUBSCRIBER_REASONS
                    .iter()
                    .find(|(n, _)| Some(*n) == p.revocation_reason.as_deref())
                    .map_or(0, |(_, c)| *c);
                if let Some(old) = &app.row.target_serial {
                    self.revoke(old, reason, &actor).await;
                }
                app.status = Status::Completed;
                self.save(app, from, &actor).await?;
            }
            Kind::PhoneChange | Kind::LevelUp => {
                app.status = Status::Completed;
                self.save(app, from, &actor).await?;
            }
        }
        if app.kind == Kind::LevelUp && app.status == Status::Completed {
            self.raise_account(app, &actor).await;
        }
        if let Some(phone) = verified_phone {
            self.set_subject_phone(app, &phone, &actor).await;
            if matches!(app.status, Status::Issued | Status::Completed) {
                self.bind_account(app, &phone, &actor).await;
            }
        }
        if p.is_organisation() && app.status == Status::Issued {
            let rule =
                crate::account::organisation_phone_of(&self.settings.realms, &app.row.channel);
            let phone = match rule {
                crate::account::OrganisationPhone::Agent => p.applicant_phone(),
                crate::account::OrganisationPhone::LegalRep => {
                    p.verified("legal_rep.phone").map(str::to_owned)
                }
            };
            match phone {
                Some(phone) => self.bind_account(app, &phone, &actor).await,
                None => {
                    tracing::info!(application = %app.row.id, "no verified phone for the organisation's account")
                }
            }
        }
        self.announce(app, from).await;
        let _ = who;
        Ok(())
    }

    pub(super) async fn revoke(&self, serial: &str, reason: i64, actor: &str) {
        let r = Revocation {
            serial: serial.to_owned(),
            reason,
            invalidity_date: None,
        };
        match self.status.revoke(&r, actor).await {
            Ok(_) | Err(RevocationError::AlreadyRevoked) => {}
            Err(e) => tracing::error!(%serial, error = %e, "revocation by an application failed"),
        }
    }

    /// Creates the person's account in the channel's realm, or rebinds it to the verified phone
    /// (recovery by face through a phone change), with the level this application reached.
    pub(super) async fn bind_account(&self, app: &App, phone: &str, actor: &str) {
        let keys = self.keys();
        let Ok(key) = keys.active() else { return };
        let p = &app.doc.progress;
        let (realm, limit) = crate::account::realm_of(&self.settings.realms, &app.row.channel);
        let evidence = verified_evidence(p);
        let (id_type, id_number) = p.subject.identity();
        let organisation = p.is_organisation();
        let binding = crate::storage::AccountBinding {
            realm: realm.clone(),
            kind: if organisation {
                "organisation"
            } else {
                "personal"
            },
            subject_hash: subject_hash(key, &id_type, &id_number),
            phone_hash: subject_hash(key, "phone", phone),
            level: p.assurance(),
            evidence: Value::Array(evidence).to_string(),
            exclusive: organisation || limit == 1,
        };
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "account.bind".into(),
            target: binding.subject_hash.clone(),
            detail: json!({ "realm": realm, "kind": binding.kind, "level": binding.level, "application": app.row.id }),
        };
        if let Err(e) = self.rows.bind_account(&binding, &audit).await {
            tracing::warn!(error = %e, "account not bound");
        }
    }

    /// A completed `level_up`: the subject's account takes the level the application reached
    /// (the level only rises; the phone stays).
    pub(super) async fn raise_account(&self, app: &App, actor: &str) {
        let p = &app.doc.progress;
        let Some(level) = p.assurance() else { return };
        let keys = self.keys();
        let (id_type, id_number) = p.subject.identity();
        let hashes = self.hashes(&keys, &id_type, &id_number);
        let (realm, _) = crate::account::realm_of(&self.settings.realms, &app.row.channel);
        let evidence = verified_evidence(p);
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "account.level_up".into(),
            target: app.row.subject_hash.clone(),
            detail: json!({ "realm": realm, "level": level, "application": app.row.id }),
        };
        if let Err(e) = self
            .rows
            .raise_account(
                &realm,
                "personal",
                &hashes,
                &level,
                &Value::Array(evidence).to_string(),
                &audit,
            )
            .await
        {
            tracing::warn!(error = %e, "account level not raised");
        }
    }

    pub(super) async fn set_subject_phone(&self, app: &App, phone: &str, actor: &str) {
        let keys = self.keys();
        let Ok(key) = keys.active() else { return };
        let p = &app.doc.progress;
        let (id_type, id_number) = p.subject.identity();
        let hash = subject_hash(key, &id_type, &id_number);
        let Ok(sealed_phone) = key.seal(&hash, Field::Applicant, phone.as_bytes()) else {
            return;
        };
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "subject.verified_phone".into(),
            target: hash.clone(),
            detail: json!({ "application": app.row.id }),
        };
        if let Err(e) = self
            .rows
            .set_phone(&hash, key.id(), &sealed_phone, unix_now(), &audit)
            .await
        {
            tracing::warn!(error = %e, "verified phone not stored");
        }
    }

    pub(super) async fn reject(
        &self,
        app: &mut App,
        code: &str,
        message: &str,
        who: &Who,
    ) -> Result<(), AppError> {
        let from = app.status;
        app.doc.progress.failure = Some((code.to_owned(), message.to_owned()));
        app.status = Status::Rejected;
        self.save(app, from, &who.actor()).await?;
        self.announce(app, from).await;
        Ok(())
    }

    /// Cancels or expires an open application (its running verification is cancelled too).
    pub(super) async fn close(
        &self,
        app: &mut App,
        to: Status,
        failure: Option<(&str, &str)>,
        who: &Who,
    ) -> Result<(), AppError> {
        let from = app.status;
        if let Cursor::Verifying { verification, .. } = &app.doc.progress.cursor {
            let requester = Requester::Operator("applications");
            if let Err(e) = self.verifications.cancel(&requester, verification).await {
                tracing::debug!(error = %e, "verification not cancelled (finished already?)");
            }
        }
        if let Some((c, m)) = failure {
            app.doc.progress.failure = Some((c.to_owned(), m.to_owned()));
        }
        app.doc.challenge = None;
        app.status = to;
        self.save(app, from, &who.actor()).await?;
        self.announce(app, from).await;
        Ok(())
    }
}

/// The verified evidence an account keeps: method, assurance and time of each verification.
fn verified_evidence(p: &Progress) -> Vec<Value> {
    p.evidence
        .iter()
        .filter(|e| e.outcome == "verified")
        .map(|e| json!({"method": e.method, "assurance": e.assurance, "at": e.at}))
        .collect()
}
