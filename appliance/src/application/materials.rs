//! Materials of an application (business licence, ID photos, authorisation letter): the type
//! read from the content (JPEG, PNG, PDF), a size limit, the SHA-256 digest, the content sealed
//! at rest under the active data key; read back only by RA officers. The materials step waits
//! until every kind it names is uploaded (and, for an organisation whose agent is not its legal
//! representative, an authorisation letter).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{open_or_finished, sealed, AppError, ApplicationService, Failure, Who};
use crate::application::machine::{Cursor, Evidence, Progress, Status};
use crate::application::policy::{Step, MATERIAL_KINDS};
use crate::contact::{CodeError, CodePurpose};
use crate::storage::{unix_now, AuditEntry, MaterialRow};
use crate::verification::seal::Field;

/// Largest material accepted (bytes).
pub const MAX_MATERIAL_BYTES: usize = 2 * 1024 * 1024;

/// The authorisation an agent who is not the legal representative needs.
const AUTHORISATION: &str = "authorisation_letter";

/// One uploaded file as the API received it.
#[derive(Debug)]
pub struct Upload {
    /// Material kind.
    pub kind: String,
    /// The media type the client declared for the file part, if any.
    pub declared_type: Option<String>,
    /// The content.
    pub content: Vec<u8>,
}

/// The media type of `content` by its magic bytes, if it is one the appliance accepts.
pub fn sniff(content: &[u8]) -> Option<&'static str> {
    if content.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if content.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if content.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    }
}

fn new_material_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("mat_{}", hex::encode(b))
}

/// Checks an upload: known kind, size, content type (and the declared one agreeing).
fn check(upload: &Upload) -> Result<&'static str, AppError> {
    if !MATERIAL_KINDS.contains(&upload.kind.as_str()) {
        return Err(AppError::MaterialKind(
            upload.kind.chars().take(40).collect(),
        ));
    }
    if upload.content.len() > MAX_MATERIAL_BYTES {
        return Err(AppError::MaterialTooLarge(MAX_MATERIAL_BYTES));
    }
    if upload.content.is_empty() {
        return Err(AppError::MaterialType("the file is empty".into()));
    }
    let found = sniff(&upload.content).ok_or_else(|| {
        AppError::MaterialType("the content is not a JPEG, PNG or PDF file".into())
    })?;
    if let Some(declared) = &upload.declared_type {
        let declared = declared
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let same = declared == found || (declared == "image/jpg" && found == "image/jpeg");
        if !same && declared != "application/octet-stream" {
            return Err(AppError::MaterialType(format!(
                "the content is {found}, not the declared type"
            )));
        }
    }
    Ok(found)
}

impl ApplicationService {
    /// Stores a material for an open application (the channel uploads it); moves a materials
    /// step on when it was the last one missing.
    pub async fn add_material(
        &self,
        who: &Who,
        id: &str,
        upload: Upload,
    ) -> Result<Value, Failure> {
        if !matches!(who, Who::Channel(_)) {
            return Err(AppError::ChannelOnly("upload materials").into());
        }
        let media_type = check(&upload)?;
        let store = self
            .materials
            .clone()
            .ok_or(AppError::Unavailable("materials"))?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        open_or_finished(&app)?;
        if matches!(app.status, Status::AwaitingReview | Status::Approved) {
            return Err(AppError::InputNotExpected(
                "the application is under review; its materials are fixed".into(),
            )
            .into());
        }
        let material_id = new_material_id();
        let sha256 = hex::encode(Sha256::digest(&upload.content));
        let keys = self.keys();
        let key = keys
            .active()
            .map_err(|_| AppError::Unavailable("personal-data sealing"))?;
        let row = MaterialRow {
            id: material_id.clone(),
            application_id: app.row.id.clone(),
            kind: upload.kind.clone(),
            media_type: media_type.to_owned(),
            size: upload.content.len() as i64,
            sha256: sha256.clone(),
            key_id: key.id(),
            sealed: key
                .seal(&material_id, Field::Material, &upload.content)
                .map_err(sealed)?,
            created_at: unix_now(),
        };
        let audit = AuditEntry {
            actor: who.actor(),
            action: "application.material".into(),
            target: app.row.id.clone(),
            detail: json!({"material": material_id, "kind": upload.kind, "sha256": sha256,
                "size": row.size, "media_type": media_type}),
        };
        store.insert(&row, &audit).await.map_err(AppError::from)?;
        tracing::info!(application = %app.row.id, material = %material_id, kind = %upload.kind, "material stored");
        if matches!(app.doc.progress.cursor, Cursor::Materials { .. }) {
            if let Err(e) = self.drive(&mut app, who).await {
                tracing::warn!(application = %app.row.id, error = %e, "application not advanced after a material");
            }
        }
        Ok(json!({
            "id": material_id,
            "kind": row.kind,
            "sha256": row.sha256,
            "size": row.size,
            "media_type": media_type,
            "application_status": app.status.name(),
        }))
    }

    /// A material's content and media type, for an RA officer; the digest is checked.
    pub async fn material(
        &self,
        who: &Who,
        id: &str,
        material_id: &str,
    ) -> Result<(String, Vec<u8>), AppError> {
        let Who::Officer(officer) = who else {
            return Err(AppError::OfficerOnly("read materials"));
        };
        let store = self
            .materials
            .clone()
            .ok_or(AppError::Unavailable("materials"))?;
        let not_found = || AppError::MaterialNotFound(material_id.chars().take(40).collect());
        if !material_id.starts_with("mat_") || material_id.len() > 80 {
            return Err(not_found());
        }
        let app = self.load(who, id).await?;
        let row = store
            .get(&app.row.id, material_id)
            .await?
            .ok_or_else(not_found)?;
        let mut keys = self.keys();
        let plain = match keys.open(&row.id, Field::Material, &row.sealed) {
            Ok(p) => p,
            Err(_) => {
                keys = self.keyring.reload(&keys).await.map_err(sealed)?;
                keys.open(&row.id, Field::Material, &row.sealed)
                    .map_err(sealed)?
            }
        };
        if hex::encode(Sha256::digest(&plain)) != row.sha256 {
            return Err(sealed("a material does not match its digest"));
        }
        tracing::info!(application = %app.row.id, material = %row.id, %officer, "material read");
        Ok((row.media_type, plain.to_vec()))
    }

    /// Online authorisation: sends a code to the legal representative's phone (verified, else
    /// declared) instead of an uploaded authorisation letter.
    pub async fn authorise(&self, who: &Who, id: &str) -> Result<Value, Failure> {
        super::channel_of(who, "ask for online authorisation")?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = async {
            open_or_finished(&app)?;
            let p = &app.doc.progress;
            let waiting = matches!(&p.cursor, Cursor::Materials { missing } if missing.iter().any(|k| k == AUTHORISATION));
            if !waiting || !needs_authorisation(p) {
                return Err(AppError::InputNotExpected(
                    "no authorisation is waited for at this step".into(),
                ));
            }
            let phone = p
                .verified("legal_rep.phone")
                .map(str::to_owned)
                .or_else(|| p.subject.legal_rep.as_deref().and_then(|r| r.phone.clone()))
                .ok_or(AppError::PhoneNotVerified)?;
            let codes = self
                .codes
                .clone()
                .ok_or(AppError::Unavailable("one-time codes"))?;
            let from = app.status;
            match codes
                .send(&app.row.channel, &app.row.id, CodePurpose::Authorisation, &phone)
                .await
            {
                Ok(_) => {}
                Err(CodeError::ResendTooSoon { retry_after }) => {
                    return Err(AppError::ResendTooSoon(retry_after))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "authorisation code not sent");
                    return Err(AppError::Unavailable("one-time codes"));
                }
            }
            app.doc.progress.authorised_online = Some(false);
            self.save(&mut app, from, &who.actor()).await
        }
        .await;
        self.answer(app, found, result).await
    }

    /// The legal representative's authorisation code (input `sms_code` at the materials step).
    pub(super) async fn check_authorisation(
        &self,
        app: &mut super::App,
        who: &Who,
        code: &str,
    ) -> Result<(), AppError> {
        if app.doc.progress.authorised_online != Some(false) {
            return Err(AppError::InputNotExpected(
                "ask for online authorisation first (POST .../authorise)".into(),
            ));
        }
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        let from = app.status;
        match codes
            .check(&app.row.id, CodePurpose::Authorisation, code)
            .await
        {
            Ok(()) => {
                let p = &mut app.doc.progress;
                p.authorised_online = Some(true);
                p.evidence.push(Evidence {
                    method: "online_authorisation".into(),
                    verification: String::new(),
                    outcome: "verified".into(),
                    assurance: None,
                    reused: false,
                    at: unix_now(),
                });
                self.save(app, from, &who.actor()).await?;
                self.drive(app, who).await
            }
            Err(CodeError::Wrong { attempts_left }) => Err(AppError::OtpWrong { attempts_left }),
            Err(CodeError::Expired) => Err(AppError::OtpExpired),
            Err(CodeError::AttemptsExceeded | CodeError::NoCode) => {
                app.doc.progress.authorised_online = None;
                self.save(app, from, &who.actor()).await?;
                Err(AppError::OtpAttemptsExceeded)
            }
            Err(CodeError::ResendTooSoon { retry_after }) => {
                Err(AppError::ResendTooSoon(retry_after))
            }
            Err(e) => Err(AppError::Storage(crate::storage::StorageError::Database(
                e.to_string(),
            ))),
        }
    }

    /// The materials of an application (no content), as the review queue lists them.
    pub(super) async fn material_list(&self, id: &str) -> Result<Vec<Value>, AppError> {
        let Some(store) = &self.materials else {
            return Ok(Vec::new());
        };
        Ok(store
            .list(id)
            .await?
            .into_iter()
            .map(|m| {
                json!({"id": m.id, "kind": m.kind, "media_type": m.media_type,
                    "size": m.size, "sha256": m.sha256, "uploaded_at": m.created_at})
            })
            .collect())
    }

    /// The materials step: passes once every kind it names is uploaded; true if it moved on.
    pub(super) async fn check_materials(&self, app: &mut super::App) -> Result<bool, AppError> {
        let p = &app.doc.progress;
        let mut needed = match p.policy.steps.get(p.step) {
            Some(Step::Materials { kinds }) => kinds.clone(),
            _ => Vec::new(),
        };
        if needs_authorisation(p) && !needed.iter().any(|k| k == AUTHORISATION) {
            needed.push(AUTHORISATION.to_owned());
        }
        if p.authorised_online == Some(true) {
            needed.retain(|k| k != AUTHORISATION);
        }
        let store = self
            .materials
            .clone()
            .ok_or(AppError::Unavailable("materials"))?;
        let have: Vec<String> = store
            .list(&app.row.id)
            .await?
            .into_iter()
            .map(|m| m.kind)
            .collect();
        let missing: Vec<String> = needed.into_iter().filter(|k| !have.contains(k)).collect();
        if !missing.iter().any(|k| k == AUTHORISATION)
            && app.doc.progress.authorised_online == Some(false)
        {
            // A letter arrived while the online code was out: the letter stands.
            app.doc.progress.authorised_online = None;
        }
        if missing.is_empty() {
            super::next_step(&mut app.doc.progress);
            app.status = Status::Verifying;
            return Ok(true);
        }
        app.doc.progress.cursor = Cursor::Materials { missing };
        app.status = Status::AwaitingApplicant;
        Ok(false)
    }
}

/// Does this application need the legal representative's authorisation (an organisation whose
/// agent is not the legal representative)?
fn needs_authorisation(p: &Progress) -> bool {
    p.is_organisation() && !p.subject.legal_rep_applies()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(kind: &str, declared: Option<&str>, content: &[u8]) -> Upload {
        Upload {
            kind: kind.into(),
            declared_type: declared.map(str::to_owned),
            content: content.to_vec(),
        }
    }

    #[test]
    fn the_type_comes_from_the_content() {
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nxx"), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a"), None);
        assert!(matches!(
            check(&up("id_front", Some("image/png"), b"%PDF-1.4")),
            Err(AppError::MaterialType(_))
        ));
        assert!(matches!(
            check(&up("selfie", None, b"%PDF-1.4")),
            Err(AppError::MaterialKind(_))
        ));
        // An HTML page labelled a PDF is refused: only `%PDF-` bytes are ever a PDF.
        assert!(matches!(
            check(&up(
                "business_licence",
                Some("application/pdf"),
                b"<html><script>alert(1)</script></html>"
            )),
            Err(AppError::MaterialType(_))
        ));
        let big = vec![0xFFu8; MAX_MATERIAL_BYTES + 1];
        assert!(matches!(
            check(&up("id_front", None, &big)),
            Err(AppError::MaterialTooLarge(_))
        ));
        assert_eq!(
            check(&up(
                "business_licence",
                Some("application/pdf"),
                b"%PDF-1.4"
            ))
            .ok(),
            Some("application/pdf")
        );
    }
}
