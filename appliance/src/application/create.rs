//! Creating an application: the request checked (kind, profile, subject, CSR, the certificate
//! acted on), stored with its first audit row, and driven as far as it goes without the applicant.

use serde_json::{json, Value};

use crate::application::machine::{Progress, Status};
use crate::application::policy::{self, Kind, SubjectType};
use crate::application::subject::{subject_hash, SubjectInput};
use crate::ca::issuance::IssuanceError;
use crate::config::ChannelConfig;
use crate::contact::ApplicationEventKind;
use crate::storage::{unix_now, ApplicationRow, AuditEntry, Inserted};
use crate::verification::seal::Field;

use super::{
    new_id, normalise_serial, sealed, App, AppError, ApplicationService, CreateRequest, Doc,
    Failure, Who, SUBSCRIBER_REASONS,
};

impl ApplicationService {
    /// Creates an application and runs it as far as it goes without the applicant.
    pub async fn create(&self, who: &Who, req: CreateRequest) -> Result<Value, Failure> {
        let Who::Channel(channel) = who else {
            return Err(AppError::ChannelOnly("create applications").into());
        };
        let kind = Kind::parse(&req.kind).ok_or_else(|| AppError::UnknownKind(req.kind.clone()))?;
        if !self.issuer.profiles().contains_key(&req.profile) {
            return Err(AppError::UnknownProfile(req.profile.clone()).into());
        }
        if !channel.profiles.contains(&req.profile) {
            return Err(AppError::ProfileNotAllowed {
                channel: channel.name.clone(),
                profile: req.profile.clone(),
            }
            .into());
        }
        let mut subject = req.subject.clone().normalise()?;
        if subject.bank_card.is_some() {
            return Err(AppError::FieldNotExpected(
                "subject.bank_card is given with the bank-card method's choice, not here".into(),
            )
            .into());
        }
        let id_type = subject
            .id_type
            .clone()
            .unwrap_or_else(|| policy::RESIDENT_ID.to_owned());
        let reviewed_person = |p: Option<&SubjectInput>| {
            p.and_then(|p| p.id_type.as_deref())
                .is_some_and(|t| t != policy::RESIDENT_ID)
        };
        if subject.kind() == SubjectType::Organisation
            && (reviewed_person(subject.legal_rep.as_deref())
                || reviewed_person(subject.agent.as_deref()))
        {
            return Err(AppError::IdTypeNotVerifiable(
                "the legal representative and the agent of an organisation need a resident ID: \
                 the organisation steps' vendors (carrier, bank, face) check no other document"
                    .into(),
            )
            .into());
        }
        let policy = match policy::find_for(&channel.policies, kind, subject.kind(), &id_type) {
            Some(p) => p.clone(),
            None if id_type != policy::RESIDENT_ID => {
                return Err(AppError::IdTypeNotVerifiable(format!(
                    "no vendor checks a {id_type} (carrier, bank, face): channel {} offers no \
                     {} application by materials and review for it",
                    channel.name,
                    kind.name()
                ))
                .into())
            }
            None => {
                return Err(AppError::KindNotOffered {
                    channel: channel.name.clone(),
                    kind: kind.name(),
                }
                .into())
            }
        };
        match subject.kind() {
            SubjectType::Person => subject.require_person()?,
            SubjectType::Organisation => subject.require_organisation()?,
        }
        if let Some(r) = &req.reference {
            if r.is_empty() || r.len() > 128 || r.chars().any(char::is_control) {
                return Err(AppError::FieldNotExpected(
                    "reference must be 1 to 128 printable characters".into(),
                )
                .into());
            }
        }
        if let Some(csr) = &req.csr {
            if !kind.issues() {
                return Err(AppError::FieldNotExpected(format!(
                    "a {} application takes no CSR",
                    kind.name()
                ))
                .into());
            }
            self.check_csr(&req.profile, csr)?;
        }
        let reason = match (&req.reason, kind) {
            (None, Kind::Revocation) => Some("unspecified".to_owned()),
            (Some(r), Kind::Revocation) => {
                if !SUBSCRIBER_REASONS.iter().any(|(n, _)| n == r) {
                    return Err(AppError::FieldNotExpected(format!(
                        "unknown revocation reason {r:?} (accepted: {})",
                        SUBSCRIBER_REASONS.map(|x| x.0).join(", ")
                    ))
                    .into());
                }
                Some(r.clone())
            }
            (Some(_), _) => {
                return Err(AppError::FieldNotExpected(
                    "reason belongs to revocation applications".into(),
                )
                .into())
            }
            (None, _) => None,
        };
        let keys = self.keys();
        let active = keys
            .active()
            .map_err(|_| AppError::Unavailable("personal-data sealing"))?;
        let (id_type, id_number) = subject.identity();
        let (id_type, id_number) = (id_type.as_str(), id_number.as_str());
        let hashes = self.hashes(&keys, id_type, id_number);
        let (realm, limit) = crate::account::realm_of(&self.settings.realms, &channel.name);
        // Claimed in the insert's transaction where a phone binds one account of the kind.
        let (account_kind, claimed_phone) = match subject.kind() {
            SubjectType::Person => ("personal", subject.phone.clone().filter(|_| limit == 1)),
            SubjectType::Organisation => ("organisation", {
                let rule =
                    crate::account::organisation_phone_of(&self.settings.realms, &channel.name);
                let person = match rule {
                    crate::account::OrganisationPhone::Agent => subject.agent.as_deref(),
                    crate::account::OrganisationPhone::LegalRep => subject.legal_rep.as_deref(),
                };
                person.and_then(|p| p.phone.clone())
            }),
        };
        if let (Some(phone), "organisation") = (&claimed_phone, account_kind) {
            let phones = self.hashes(&keys, "phone", phone);
            if self
                .rows
                .phone_bound_elsewhere(&realm, account_kind, &phones, &hashes)
                .await?
                > 0
            {
                return Err(AppError::PhoneBound(realm).into());
            }
        }
        if let Some(phone) = subject
            .phone
            .as_ref()
            .filter(|_| account_kind == "personal")
        {
            let phones = self.hashes(&keys, "phone", phone);
            let others = self
                .rows
                .phone_bound_elsewhere(&realm, "personal", &phones, &hashes)
                .await?;
            if others >= i64::from(limit) {
                return Err(AppError::PhoneBound(realm).into());
            }
        }
        if kind == Kind::LevelUp
            && !self
                .rows
                .account_exists(&realm, "personal", &hashes)
                .await?
        {
            return Err(AppError::AccountNotFound(realm).into());
        }
        let now = unix_now();
        let target = match (kind.needs_certificate(), &req.certificate) {
            (false, Some(_)) => return Err(AppError::CertificateNotExpected.into()),
            (false, None) => None,
            (true, None) => return Err(AppError::CertificateRequired(kind.name()).into()),
            (true, Some(serial)) => Some(
                self.check_target(channel, kind, serial, &hashes, now)
                    .await?,
            ),
        };
        let slots: Vec<String> = hashes
            .iter()
            .map(|h| format!("{}:{h}", channel.name))
            .collect();
        if let Some(open) = self.rows.find_open(&slots).await? {
            return Err(AppError::Open(open).into());
        }
        let holds_certificate = self.rows.holds_certificate(&hashes, now).await?;
        let mut progress = Progress::new(subject, policy, req.csr.clone());
        progress.revocation_reason = reason;
        let id = new_id();
        let doc = Doc {
            progress,
            reference: req.reference.clone(),
            holds_certificate,
            challenge: None,
        };
        let hash = subject_hash(active, id_type, id_number);
        let mut keys = keys.clone();
        let mut inserted = None;
        for _ in 0..3 {
            let key = keys.active().map_err(sealed)?;
            let plain = serde_json::to_vec(&doc).map_err(sealed)?;
            let row = ApplicationRow {
                id: id.clone(),
                channel: channel.name.clone(),
                kind: kind.name().to_owned(),
                profile: req.profile.clone(),
                status: Status::Verifying.name().to_owned(),
                subject_hash: subject_hash(key, id_type, id_number),
                open_slot: Some(format!(
                    "{}:{}",
                    channel.name,
                    subject_hash(key, id_type, id_number)
                )),
                target_serial: target.clone(),
                issued_serial: None,
                failure_code: None,
                key_id: key.id(),
                sealed_doc: key.seal(&id, Field::State, &plain).map_err(sealed)?,
                revision: 1,
                created_at: now,
                updated_at: now,
                expires_at: now + self.settings.expire_after_secs as i64,
            };
            let audit = AuditEntry {
                actor: who.actor(),
                action: "application.create".into(),
                target: id.clone(),
                detail: json!({
                    "kind": kind.name(),
                    "profile": req.profile,
                    "certificate": target,
                }),
            };
            let claim = claimed_phone
                .as_ref()
                .map(|phone| crate::storage::PhoneClaim {
                    realm: realm.clone(),
                    kind: account_kind,
                    phone_hash: subject_hash(key, "phone", phone),
                    subject_hash: row.subject_hash.clone(),
                });
            match self
                .rows
                .insert_claiming(&row, &audit, claim.as_ref())
                .await?
            {
                Inserted::Yes => {
                    inserted = Some(row);
                    break;
                }
                Inserted::Open(open) => return Err(AppError::Open(open).into()),
                Inserted::PhoneBound => return Err(AppError::PhoneBound(realm).into()),
                Inserted::StaleKey => keys = self.keyring.reload(&keys).await.map_err(sealed)?,
            }
        }
        let _ = hash;
        let row = inserted.ok_or_else(|| sealed("the active data key kept changing"))?;
        tracing::info!(application = %id, channel = %channel.name, kind = kind.name(), "application created");
        let mut app = App {
            row,
            status: Status::Verifying,
            kind,
            doc,
        };
        self.notify(&app, ApplicationEventKind::Created).await;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let result = self.drive(&mut app, who).await;
        self.answer(app, Status::Verifying, result).await
    }

    pub(super) fn check_csr(&self, profile: &str, csr: &str) -> Result<(), AppError> {
        let verified = crate::ca::csr::verify_pem(csr).map_err(IssuanceError::Csr)?;
        let p = self
            .issuer
            .profiles()
            .get(profile)
            .ok_or_else(|| AppError::UnknownProfile(profile.to_owned()))?;
        if !p.key_types.contains(&verified.key_kind) {
            return Err(
                IssuanceError::Csr(crate::ca::csr::CsrError::UnsupportedKey(format!(
                    "key type {} is not allowed by profile {}",
                    verified.key_kind, p.name
                )))
                .into(),
            );
        }
        Ok(())
    }

    /// The certificate a renewal/change/reissue/revocation/phone change acts on: issued through
    /// this channel by an application of the same subject, still valid; renewals in the window.
    pub(super) async fn check_target(
        &self,
        channel: &ChannelConfig,
        kind: Kind,
        serial: &str,
        hashes: &[String],
        now: i64,
    ) -> Result<String, AppError> {
        let serial = normalise_serial(serial)
            .ok_or_else(|| AppError::CertificateNotFound(serial.chars().take(42).collect()))?;
        let not_found = || AppError::CertificateNotFound(serial.clone());
        let cert = self
            .certificates
            .get(&serial)
            .await?
            .ok_or_else(not_found)?;
        if cert.channel.as_deref() != Some(channel.name.as_str()) {
            return Err(not_found());
        }
        let origin = self
            .rows
            .by_issued_serial(&serial)
            .await?
            .ok_or_else(not_found)?;
        if !hashes.contains(&origin.subject_hash) {
            return Err(not_found());
        }
        if cert.status != "valid" || cert.not_after <= now {
            return Err(AppError::CertificateNotValid(serial));
        }
        if kind == Kind::Renewal {
            let window = i64::from(self.settings.renewal_window_days) * 86_400;
            if cert.not_after - now > window {
                return Err(AppError::RenewalNotAllowed {
                    window_days: self.settings.renewal_window_days,
                    from: cert.not_after - window,
                });
            }
        }
        Ok(serial)
    }
}
