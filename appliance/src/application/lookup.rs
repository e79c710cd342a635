//! Order lookup with re-verification: by a person's ID number or an organisation's USCC, the
//! channel sees the subject's agents (masked phones); an SMS code to the chosen agent (or to the
//! legal representative) opens the list of applications and certificates: the agent's own, or
//! all of the subject's in this channel for the legal representative. A grant lives in memory
//! for a few minutes and belongs to the channel that asked (a restart voids it: ask again).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::{AppError, ApplicationService, Who};
use crate::application::subject::SubjectInput;
use crate::contact::{CodeError, CodePurpose};
use crate::storage::unix_now;

/// How long a lookup (and its grant) lives.
const LOOKUP_TTL_SECS: i64 = 600;

/// One person who may receive the lookup's code.
#[derive(Debug, Clone)]
struct Contact {
    /// `agent-1`, ... or `legal_rep`.
    key: String,
    name: String,
    id_number: String,
    phone: String,
    legal_rep: bool,
}

/// A lookup in progress.
#[derive(Debug, Clone)]
pub struct Lookup {
    channel: String,
    hashes: Vec<String>,
    contacts: Vec<Contact>,
    sent_to: Option<String>,
    expires_at: i64,
}

/// The lookups of this process.
#[derive(Debug, Default)]
pub struct Lookups(Mutex<HashMap<String, Lookup>>);

impl Lookups {
    fn put(&self, id: String, l: Lookup) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix_now();
        m.retain(|_, l| l.expires_at > now);
        m.insert(id, l);
    }

    fn get(&self, id: &str) -> Option<Lookup> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id).filter(|l| l.expires_at > unix_now()).cloned()
    }

    fn set_sent(&self, id: &str, to: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = m.get_mut(id) {
            l.sent_to = Some(to.to_owned());
        }
    }

    fn remove(&self, id: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(id);
    }
}

/// `POST /api/v1/lookups`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// `resident_id` (with `id_number`).
    #[serde(default)]
    pub id_type: Option<String>,
    /// A person's ID number.
    #[serde(default)]
    pub id_number: Option<String>,
    /// A passport's issuing state (ICAO 9303 code).
    #[serde(default)]
    pub id_country: Option<String>,
    /// An organisation's USCC.
    #[serde(default)]
    pub uscc: Option<String>,
}

/// `POST /api/v1/lookups/{id}/verify`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Who receives the code (`agent-1`, ..., `legal_rep`); without `code`: send it.
    #[serde(default)]
    pub agent: Option<String>,
    /// The code received.
    #[serde(default)]
    pub code: Option<String>,
}

fn new_lookup_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("lk_{}", hex::encode(b))
}

fn lookup_not_found(id: &str) -> AppError {
    AppError::NotFound(id.chars().take(40).collect())
}

impl ApplicationService {
    /// Starts a lookup: the subject's agents (and legal representative) with masked phones.
    pub async fn lookup(&self, who: &Who, req: LookupRequest) -> Result<Value, AppError> {
        let channel = super::channel_of(who, "look up orders")?;
        let probe = SubjectInput {
            subject_type: req.uscc.as_ref().map(|_| super::SubjectType::Organisation),
            id_type: req.id_type.clone(),
            id_number: req.id_number.clone(),
            id_country: req.id_country.clone(),
            uscc: req.uscc.clone(),
            ..Default::default()
        };
        if req.uscc.is_some() == req.id_number.is_some() {
            return Err(AppError::FieldNotExpected(
                "give either id_number (with id_type) or uscc".into(),
            ));
        }
        let probe = probe.normalise()?;
        let (id_type, id_number) = probe.identity();
        let keys = self.keys();
        let hashes = self.hashes(&keys, &id_type, &id_number);
        let mut contacts: Vec<Contact> = Vec::new();
        for app_id in self.rows.ids_for_subject(&channel.name, &hashes).await? {
            let Ok(app) = self.load(who, &app_id).await else {
                continue;
            };
            let s = &app.doc.progress.subject;
            let people: Vec<(bool, &SubjectInput)> = if s.kind() == super::SubjectType::Organisation
            {
                let mut v = Vec::new();
                if let Some(a) = s.agent.as_deref() {
                    v.push((false, a));
                }
                if let Some(r) = s.legal_rep.as_deref() {
                    v.push((true, r));
                }
                v
            } else {
                vec![(true, s)]
            };
            for (legal_rep, p) in people {
                let (Some(name), Some(idn), Some(phone)) = (&p.name, &p.id_number, &p.phone) else {
                    continue;
                };
                if contacts
                    .iter()
                    .any(|c| &c.id_number == idn && c.legal_rep == legal_rep)
                {
                    continue;
                }
                let key = if legal_rep {
                    "legal_rep".to_owned()
                } else {
                    format!(
                        "agent-{}",
                        contacts.iter().filter(|c| !c.legal_rep).count() + 1
                    )
                };
                contacts.push(Contact {
                    key,
                    name: name.clone(),
                    id_number: idn.clone(),
                    phone: phone.clone(),
                    legal_rep,
                });
            }
        }
        if let Some(uscc) = &req.uscc {
            // The organisation's agents on record (added by its main agent) too.
            if let Ok((_, agents)) = self.org_agents(&channel.name, uscc).await {
                for (_, a) in agents {
                    if contacts
                        .iter()
                        .any(|c| c.id_number == a.id_number && !c.legal_rep)
                    {
                        continue;
                    }
                    let key = format!(
                        "agent-{}",
                        contacts.iter().filter(|c| !c.legal_rep).count() + 1
                    );
                    contacts.push(Contact {
                        key,
                        name: a.name,
                        id_number: a.id_number,
                        phone: a.phone,
                        legal_rep: false,
                    });
                }
            }
        }
        if contacts.is_empty() {
            return Err(AppError::NotFound("of this subject in this channel".into()));
        }
        let id = new_lookup_id();
        let answer = json!({
            "id": id,
            "agents": contacts.iter().map(|c| json!({
                "agent": c.key,
                "legal_rep": c.legal_rep,
                "name": crate::verification::mask::mask_name(&c.name),
                "phone": identifiers::mask::mask_phone(&c.phone),
            })).collect::<Vec<_>>(),
            "expires_at": unix_now() + LOOKUP_TTL_SECS,
        });
        self.lookups.put(
            id,
            Lookup {
                channel: channel.name.clone(),
                hashes,
                contacts,
                sent_to: None,
                expires_at: unix_now() + LOOKUP_TTL_SECS,
            },
        );
        Ok(answer)
    }

    /// Sends the code to the chosen person (no `code`), or checks it and lists the orders.
    pub async fn verify_lookup(
        &self,
        who: &Who,
        id: &str,
        req: VerifyRequest,
    ) -> Result<Value, AppError> {
        let channel = super::channel_of(who, "look up orders")?;
        let lookup = self
            .lookups
            .get(id)
            .filter(|l| l.channel == channel.name)
            .ok_or_else(|| lookup_not_found(id))?;
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        let Some(code) = req.code else {
            let key = req.agent.clone().unwrap_or_else(|| "agent-1".to_owned());
            let contact = lookup
                .contacts
                .iter()
                .find(|c| c.key == key)
                .ok_or_else(|| {
                    AppError::FieldNotExpected(format!("no agent {key:?} in this lookup"))
                })?;
            return match codes
                .send(&lookup.channel, id, CodePurpose::Lookup, &contact.phone)
                .await
            {
                Ok(sent) => {
                    self.lookups.set_sent(id, &contact.key);
                    Ok(json!({
                        "id": id,
                        "code_sent_to": identifiers::mask::mask_phone(&contact.phone),
                        "expires_at": sent.expires_at,
                    }))
                }
                Err(CodeError::ResendTooSoon { retry_after }) => {
                    Err(AppError::ResendTooSoon(retry_after))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lookup code not sent");
                    Err(AppError::Unavailable("one-time codes"))
                }
            };
        };
        let Some(sent_to) = lookup.sent_to.clone() else {
            return Err(AppError::InputNotExpected("ask for the code first".into()));
        };
        if req.agent.as_ref().is_some_and(|a| a != &sent_to) {
            return Err(AppError::InputNotExpected(
                "the code was sent to another person of this lookup".into(),
            ));
        }
        match codes.check(id, CodePurpose::Lookup, code.trim()).await {
            Ok(()) => {}
            Err(CodeError::Wrong { attempts_left }) => {
                return Err(AppError::OtpWrong { attempts_left })
            }
            Err(CodeError::Expired) => return Err(AppError::OtpExpired),
            Err(CodeError::AttemptsExceeded | CodeError::NoCode) => {
                self.lookups.remove(id);
                return Err(AppError::OtpAttemptsExceeded);
            }
            Err(e) => {
                return Err(AppError::Storage(crate::storage::StorageError::Database(
                    e.to_string(),
                )))
            }
        }
        self.lookups.remove(id);
        let contact = lookup
            .contacts
            .iter()
            .find(|c| c.key == sent_to)
            .ok_or_else(|| lookup_not_found(id))?;
        let mut applications = Vec::new();
        let mut certificates = Vec::new();
        for app_id in self
            .rows
            .ids_for_subject(&lookup.channel, &lookup.hashes)
            .await?
        {
            let Ok(app) = self.load(who, &app_id).await else {
                continue;
            };
            let s = &app.doc.progress.subject;
            let visible = contact.legal_rep
                || s.agent.as_deref().and_then(|a| a.id_number.as_deref())
                    == Some(contact.id_number.as_str());
            if !visible {
                continue;
            }
            if let Some(serial) = &app.row.issued_serial {
                certificates.push(json!({"serial": serial, "application": app.row.id}));
            }
            applications.push(json!({
                "id": app.row.id,
                "kind": app.kind.name(),
                "status": app.status.name(),
                "profile": app.row.profile,
                "created_at": app.row.created_at,
            }));
        }
        tracing::info!(lookup = %id, channel = %lookup.channel, as_legal_rep = contact.legal_rep, "lookup granted");
        Ok(json!({
            "verified_as": if contact.legal_rep { "legal_rep" } else { "agent" },
            "applications": applications,
            "certificates": certificates,
        }))
    }
}
