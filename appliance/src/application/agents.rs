//! An organisation's agents: a durable record per channel (the organisation keyed by its USCC's
//! keyed hash, each agent sealed), filled when an organisation's certificate is issued (the
//! verified agent; the first one main). The main agent adds and removes agents and hands the
//! main role over; each change waits for an SMS code sent to the main agent's phone and is
//! applied, with its audit row, only when the code is right.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::{sealed, AppError, ApplicationService, Who};
use crate::application::subject::SubjectInput;
use crate::contact::{CodeError, CodePurpose};
use crate::storage::{unix_now, AgentChange, AgentRow, AuditEntry};
use crate::verification::seal::Field;

/// How long a change waits for its code.
const CHANGE_TTL_SECS: i64 = 600;

/// An agent as sealed at rest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Agent {
    pub(super) name: String,
    id_type: String,
    pub(super) id_number: String,
    /// A passport's issuing state.
    #[serde(default)]
    id_country: Option<String>,
    pub(super) phone: String,
    #[serde(default)]
    email: Option<String>,
}

/// `POST /api/v1/organisations/{uscc}/agent-changes`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentChangeRequest {
    /// `add`, `remove` or `hand_over`.
    pub action: String,
    /// The new agent (`add`): name, id_type, id_number, phone, email.
    #[serde(default)]
    pub agent: Option<SubjectInput>,
    /// The agent removed or made main.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// `POST /api/v1/organisations/{uscc}/agent-changes/{id}/confirm`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfirmRequest {
    /// The code sent to the main agent.
    pub code: String,
}

/// A change waiting for its code.
#[derive(Debug, Clone)]
struct Pending {
    channel: String,
    subject_hash: String,
    change: AgentChange,
    expires_at: i64,
}

/// The pending changes of this process (a restart voids them: ask again).
#[derive(Debug, Default)]
pub struct PendingChanges(Mutex<HashMap<String, Pending>>);

impl PendingChanges {
    fn put(&self, id: String, p: Pending) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix_now();
        m.retain(|_, p| p.expires_at > now);
        m.insert(id, p);
    }

    fn get(&self, id: &str) -> Option<Pending> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id).filter(|p| p.expires_at > unix_now()).cloned()
    }

    fn remove(&self, id: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(id);
    }
}

fn random_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

/// An agent from a request or an application: a normalised person with name, ID and phone.
fn agent_of(p: &SubjectInput) -> Result<Agent, AppError> {
    if p.subject_type.is_some() || p.uscc.is_some() || p.legal_rep.is_some() || p.agent.is_some() {
        return Err(AppError::FieldNotExpected(
            "an agent is a person: name, id_type, id_number, phone, email".into(),
        ));
    }
    let p = p.clone().normalise()?;
    let (Some(name), Some(id_type), Some(id_number), Some(phone)) =
        (p.name, p.id_type, p.id_number, p.phone)
    else {
        return Err(AppError::FieldNotExpected(
            "an agent needs name, id_type, id_number and phone".into(),
        ));
    };
    Ok(Agent {
        name,
        id_type,
        id_number,
        id_country: p.id_country,
        phone,
        email: p.email,
    })
}

impl Agent {
    /// The identity the agent's hash is keyed by (as [`SubjectInput::identity`]).
    fn identity(&self) -> (String, String) {
        super::document_identity(&self.id_type, &self.id_number, self.id_country.as_deref())
    }

    /// The agent's keyed hash under `key`.
    fn hash(&self, key: &crate::verification::DataKey) -> String {
        let (id_type, id_number) = self.identity();
        super::subject_hash(key, &id_type, &id_number)
    }
}

impl ApplicationService {
    /// Wires the agents store.
    pub fn with_agents(mut self, agents: crate::storage::AgentRows) -> Self {
        self.agents = Some(agents);
        self
    }

    fn agent_store(&self) -> Result<crate::storage::AgentRows, AppError> {
        self.agents.clone().ok_or(AppError::Unavailable("agents"))
    }

    /// The organisation's hashes (every key held, the active one first).
    fn org_hashes(&self, uscc: &str) -> Result<Vec<String>, AppError> {
        let probe = SubjectInput {
            subject_type: Some(super::SubjectType::Organisation),
            uscc: Some(uscc.to_owned()),
            ..Default::default()
        }
        .normalise()?;
        let (id_type, id_number) = probe.identity();
        Ok(self.hashes(&self.keys(), &id_type, &id_number))
    }

    /// The organisation's agents in this channel, opened; refused when it has none here.
    pub(super) async fn org_agents(
        &self,
        channel: &str,
        uscc: &str,
    ) -> Result<(String, Vec<(AgentRow, Agent)>), AppError> {
        let hashes = self.org_hashes(uscc)?;
        let rows = self.agent_store()?.list(channel, &hashes).await?;
        let Some(first) = rows.first() else {
            return Err(AppError::OrganisationUnknown);
        };
        let subject_hash = first.subject_hash.clone();
        let keys = self.keys();
        let mut out = Vec::new();
        for r in rows {
            let key = keys.get(r.key_id).map_err(sealed)?;
            let plain = key.open(&r.id, Field::Agent, &r.sealed).map_err(sealed)?;
            let a: Agent = serde_json::from_slice(&plain).map_err(sealed)?;
            out.push((r, a));
        }
        Ok((subject_hash, out))
    }

    fn new_agent_row(
        &self,
        channel: &str,
        subject_hash: &str,
        agent: &Agent,
        is_main: bool,
    ) -> Result<AgentRow, AppError> {
        let keys = self.keys();
        let key = keys
            .active()
            .map_err(|_| AppError::Unavailable("personal-data sealing"))?;
        let id = random_id("agt");
        let plain = serde_json::to_vec(agent).map_err(sealed)?;
        Ok(AgentRow {
            id_hash: agent.hash(key),
            sealed: key.seal(&id, Field::Agent, &plain).map_err(sealed)?,
            key_id: key.id(),
            id,
            channel: channel.to_owned(),
            subject_hash: subject_hash.to_owned(),
            is_main,
            created_at: unix_now(),
        })
    }

    /// After an organisation's certificate is issued: its verified agent joins its agents (the
    /// first one main); an agent already recorded is not added twice.
    pub(super) async fn record_agent(&self, app: &super::App) {
        let p = &app.doc.progress;
        if !p.is_organisation() {
            return;
        }
        let s = &p.subject;
        let Some(person) = s.agent.as_deref().or(s.legal_rep.as_deref()) else {
            return;
        };
        let Some(uscc) = s.uscc.as_deref() else {
            return;
        };
        let result = async {
            let agent = agent_of(person)?;
            let channel = &app.row.channel;
            let hashes = self.org_hashes(uscc)?;
            let store = self.agent_store()?;
            let existing = store.list(channel, &hashes).await?;
            let subject_hash = existing
                .first()
                .map(|r| r.subject_hash.clone())
                .or_else(|| hashes.first().cloned())
                .ok_or(AppError::Unavailable("personal-data sealing"))?;
            let row = self.new_agent_row(channel, &subject_hash, &agent, existing.is_empty())?;
            let keys = self.keys();
            let known: Vec<String> = keys.all().map(|k| agent.hash(k)).collect();
            if existing.iter().any(|r| known.contains(&r.id_hash)) {
                return Ok(());
            }
            let audit = AuditEntry {
                actor: format!("channel:{channel}"),
                action: "organisation.agent_recorded".into(),
                target: row.id.clone(),
                detail: json!({"application": app.row.id, "main": row.is_main}),
            };
            store
                .apply(channel, &subject_hash, &AgentChange::Add(row), &audit)
                .await?;
            Ok::<(), AppError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(application = %app.row.id, error = %e, "agent not recorded");
        }
    }

    /// The organisation's agents in the caller's channel, masked.
    pub async fn list_agents(&self, who: &Who, uscc: &str) -> Result<Value, AppError> {
        let channel = super::channel_of(who, "read an organisation's agents")?;
        let (_, agents) = self.org_agents(&channel.name, uscc).await?;
        Ok(json!({ "agents": agents.iter().map(|(r, a)| json!({
            "agent_id": r.id,
            "main": r.is_main,
            "name": crate::verification::mask::mask_name(&a.name),
            "id_number": identifiers::mask::mask_id_number(&a.id_number),
            "phone": identifiers::mask::mask_phone(&a.phone),
            "email": a.email.as_deref().map(crate::application::subject::mask_email),
            "created_at": r.created_at,
        })).collect::<Vec<_>>() }))
    }

    /// Starts a change: checks it against the record and sends a code to the main agent.
    pub async fn request_agent_change(
        &self,
        who: &Who,
        uscc: &str,
        req: AgentChangeRequest,
    ) -> Result<Value, AppError> {
        let channel = super::channel_of(who, "change an organisation's agents")?;
        let (subject_hash, agents) = self.org_agents(&channel.name, uscc).await?;
        let find = |id: &Option<String>| -> Result<AgentRow, AppError> {
            let id = id
                .as_deref()
                .ok_or_else(|| AppError::FieldNotExpected("agent_id is required".into()))?;
            agents
                .iter()
                .find(|(r, _)| r.id == id)
                .map(|(r, _)| r.clone())
                .ok_or_else(|| AppError::UnknownAgent(id.chars().take(40).collect()))
        };
        let change = match (req.action.as_str(), &req.agent, &req.agent_id) {
            ("add", Some(p), None) => {
                let agent = agent_of(p)?;
                let keys = self.keys();
                let known: Vec<String> = keys.all().map(|k| agent.hash(k)).collect();
                if agents.iter().any(|(r, _)| known.contains(&r.id_hash)) {
                    return Err(AppError::AgentExists);
                }
                AgentChange::Add(self.new_agent_row(&channel.name, &subject_hash, &agent, false)?)
            }
            ("remove", None, id) => {
                let r = find(id)?;
                if r.is_main {
                    return Err(AppError::CannotRemoveMainAgent);
                }
                AgentChange::Remove(r.id)
            }
            ("hand_over", None, id) => {
                let r = find(id)?;
                if r.is_main {
                    return Err(AppError::InputNotExpected(
                        "this agent is already the main agent".into(),
                    ));
                }
                AgentChange::HandOver(r.id)
            }
            ("add" | "remove" | "hand_over", _, _) => {
                return Err(AppError::FieldNotExpected(
                    "add takes agent; remove and hand_over take agent_id".into(),
                ))
            }
            (other, _, _) => {
                return Err(AppError::FieldNotExpected(format!(
                    "unknown action {:?} (add, remove, hand_over)",
                    other.chars().take(20).collect::<String>()
                )))
            }
        };
        let main = agents
            .iter()
            .find(|(r, _)| r.is_main)
            .map(|(_, a)| a.phone.clone())
            .ok_or(AppError::OrganisationUnknown)?;
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        let id = random_id("agc");
        let sent = match codes
            .send(&channel.name, &id, CodePurpose::AgentChange, &main)
            .await
        {
            Ok(s) => s,
            Err(CodeError::ResendTooSoon { retry_after }) => {
                return Err(AppError::ResendTooSoon(retry_after))
            }
            Err(e) => {
                tracing::warn!(error = %e, "agent change code not sent");
                return Err(AppError::Unavailable("one-time codes"));
            }
        };
        self.pending_agent_changes.put(
            id.clone(),
            Pending {
                channel: channel.name.clone(),
                subject_hash,
                change,
                expires_at: unix_now() + CHANGE_TTL_SECS,
            },
        );
        Ok(json!({
            "id": id,
            "action": req.action,
            "code_sent_to": identifiers::mask::mask_phone(&main),
            "expires_at": sent.expires_at,
        }))
    }

    /// Applies a change once the main agent's code is right.
    pub async fn confirm_agent_change(
        &self,
        who: &Who,
        uscc: &str,
        id: &str,
        req: AgentConfirmRequest,
    ) -> Result<Value, AppError> {
        let channel = super::channel_of(who, "change an organisation's agents")?;
        let pending = self
            .pending_agent_changes
            .get(id)
            .filter(|p| p.channel == channel.name)
            .ok_or_else(|| AppError::NotFound(id.chars().take(40).collect()))?;
        let hashes = self.org_hashes(uscc)?;
        if !hashes.contains(&pending.subject_hash) {
            return Err(AppError::ChangeOfAnotherOrganisation);
        }
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        match codes
            .check(id, CodePurpose::AgentChange, req.code.trim())
            .await
        {
            Ok(()) => {}
            Err(CodeError::Wrong { attempts_left }) => {
                return Err(AppError::OtpWrong { attempts_left })
            }
            Err(CodeError::Expired) => return Err(AppError::OtpExpired),
            Err(CodeError::AttemptsExceeded | CodeError::NoCode) => {
                self.pending_agent_changes.remove(id);
                return Err(AppError::OtpAttemptsExceeded);
            }
            Err(e) => {
                return Err(AppError::Storage(crate::storage::StorageError::Database(
                    e.to_string(),
                )))
            }
        }
        self.pending_agent_changes.remove(id);
        // The record may have changed since the code was sent: check again.
        let (_, agents) = self.org_agents(&channel.name, uscc).await?;
        let (action, target) = match &pending.change {
            AgentChange::Add(r) => ("add", r.id.clone()),
            AgentChange::Remove(a) => ("remove", a.clone()),
            AgentChange::HandOver(a) => ("hand_over", a.clone()),
        };
        if action != "add" {
            let r = agents
                .iter()
                .find(|(r, _)| r.id == target)
                .ok_or_else(|| AppError::UnknownAgent(target.clone()))?;
            if action == "remove" && r.0.is_main {
                return Err(AppError::CannotRemoveMainAgent);
            }
        }
        let audit = AuditEntry {
            actor: who.actor(),
            action: format!("organisation.agent_{action}"),
            target: target.clone(),
            detail: json!({"change": id}),
        };
        self.agent_store()?
            .apply(
                &channel.name,
                &pending.subject_hash,
                &pending.change,
                &audit,
            )
            .await?;
        tracing::info!(change = %id, %action, agent = %target, "agent change applied");
        let mut v = self.list_agents(who, uscc).await?;
        v["applied"] = json!(action);
        v["agent_id"] = json!(target);
        Ok(v)
    }
}
