//! [`VerificationRunner`]: drives verifications of one plugin through the sans-I/O step cycle:
//! step -> persist new state + outbox + timers in ONE store call -> perform HTTP actions via
//! [`Egress`] -> feed each result back as the next event. Steps of one verification run strictly
//! one at a time (a per-id async mutex); actions are at-least-once (after a restart,
//! [`VerificationRunner::resume_pending`] performs what was committed but not answered).

use std::collections::HashMap;
use std::sync::Arc;

use plugin_abi::doc::{
    Action, Applicant, Challenge, Event, Status, StepInput, VerificationResult, DOC_VERSION,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::egress::{Egress, EgressPolicy};
use crate::error::PluginError;
use crate::gate::{ActionGate, GateError};
use crate::plugin::Plugin;
use crate::store::{PendingTimer, StoreError, VerificationRecord, VerificationStore};

/// The runner's source of "now" (tests inject a fake clock).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Largest number of HTTP round trips one call drives before giving up (a looping plugin).
pub const MAX_ROUNDS: usize = 32;

/// How a runner behaves.
#[derive(Clone)]
pub struct RunnerOptions {
    /// Perform committed HTTP actions right away (true), or leave them in the outbox for
    /// [`VerificationRunner::resume_pending`] (an outbox worker; also how tests model a crash
    /// between commit and perform).
    pub perform_inline: bool,
    /// Source of the current time.
    pub clock: Clock,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            perform_inline: true,
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }
}

impl std::fmt::Debug for RunnerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerOptions")
            .field("perform_inline", &self.perform_inline)
            .finish_non_exhaustive()
    }
}

/// Why a runner call failed. The verification's committed state is unchanged by a failed step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// No verification with this id.
    #[error("verification {0} not found")]
    NotFound(String),
    /// `start` with an id that exists.
    #[error("verification {0} already exists")]
    AlreadyExists(String),
    /// The verification belongs to another plugin.
    #[error("verification {id} belongs to plugin {plugin}")]
    WrongPlugin {
        /// The id.
        id: String,
        /// Its plugin.
        plugin: String,
    },
    /// The verification already finished.
    #[error("verification {id} already finished ({status:?})")]
    Finished {
        /// The id.
        id: String,
        /// Its final status.
        status: Status,
    },
    /// The event may not be delivered from outside (start, http results) or names no pending timer.
    #[error("event not accepted: {0}")]
    Event(String),
    /// The plugin call failed (crash, timeout, bad output, error status).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A limit refused the actions this event would start; nothing was committed or sent.
    #[error(transparent)]
    Limited(GateError),
    /// The plugin kept asking for HTTP beyond [`MAX_ROUNDS`] in one call.
    #[error("verification {0} exceeded {MAX_ROUNDS} HTTP rounds in one call")]
    TooManyRounds(String),
}

/// What the caller (API layer) sees of a verification.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationView {
    /// The id.
    pub id: String,
    /// Where it stands.
    pub status: Status,
    /// Challenges to show the user.
    pub challenges: Vec<Challenge>,
    /// The result, once set.
    pub result: Option<VerificationResult>,
    /// HTTP actions committed and not yet answered.
    pub pending_actions: usize,
    /// Timers set and not yet fired.
    pub timers: Vec<PendingTimer>,
}

impl VerificationView {
    fn of(r: &VerificationRecord) -> Self {
        VerificationView {
            id: r.id.clone(),
            status: r.status,
            challenges: r.challenges.clone(),
            result: r.result.clone(),
            pending_actions: r.outbox.len(),
            timers: r.timers.clone(),
        }
    }
}

/// Drives the verifications of one plugin.
pub struct VerificationRunner<S: VerificationStore> {
    plugin: Arc<Plugin>,
    store: Arc<S>,
    egress: Egress,
    policy: EgressPolicy,
    options: RunnerOptions,
    /// Limits on the plugin's HTTP actions (see [`ActionGate`]); `None` admits everything.
    gate: Option<Arc<dyn ActionGate>>,
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl<S: VerificationStore> std::fmt::Debug for VerificationRunner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationRunner")
            .field("plugin", &self.plugin.name())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl<S: VerificationStore> VerificationRunner<S> {
    /// A runner for `plugin` persisting into `store`, performing HTTP through `egress`.
    pub fn new(plugin: Arc<Plugin>, store: Arc<S>, egress: Egress, options: RunnerOptions) -> Self {
        let policy = plugin.egress_policy();
        VerificationRunner {
            plugin,
            store,
            egress,
            policy,
            options,
            gate: None,
            locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Puts `gate` in front of every HTTP action this runner performs (limits).
    pub fn with_gate(mut self, gate: Arc<dyn ActionGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The plugin this runner drives.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    async fn with_lock<T>(&self, id: &str, f: impl std::future::Future<Output = T>) -> T {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(id.to_owned()).or_default())
        };
        let out = {
            let _guard = lock.lock().await;
            f.await
        };
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&lock) == 2 {
            map.remove(id);
        }
        out
    }

    /// Starts a verification: only the manifest's applicant fields are passed to the plugin.
    pub async fn start(
        &self,
        id: &str,
        applicant: &Applicant,
    ) -> Result<VerificationView, RunnerError> {
        let applicant = applicant.only(&self.plugin.manifest().applicant_fields);
        self.with_lock(id, async {
            if self.store.load(id).await?.is_some() {
                return Err(RunnerError::AlreadyExists(id.to_owned()));
            }
            let mut rec = VerificationRecord {
                id: id.to_owned(),
                plugin: self.plugin.name().to_owned(),
                status: Status::Pending,
                state: serde_json::Value::Null,
                result: None,
                challenges: Vec::new(),
                outbox: Vec::new(),
                timers: Vec::new(),
                revision: 0,
                updated_at: String::new(),
            };
            self.step_and_commit(&mut rec, Event::Start { applicant })
                .await?;
            self.maybe_flush(&mut rec).await?;
            Ok(VerificationView::of(&rec))
        })
        .await
    }

    /// Delivers an outside event: `user_input`, `callback`, `cancel`, or a pending `timer`.
    pub async fn deliver(&self, id: &str, event: Event) -> Result<VerificationView, RunnerError> {
        match &event {
            Event::Start { .. } => return Err(RunnerError::Event("use start() to begin".into())),
            Event::HttpResponse { .. } | Event::HttpError { .. } => {
                return Err(RunnerError::Event(
                    "HTTP results come only from the host's egress".into(),
                ))
            }
            _ => {}
        }
        self.with_lock(id, async {
            let mut rec = self.load_open(id).await?;
            if let Event::Timer { id: timer } = &event {
                if !rec.timers.iter().any(|t| &t.id == timer) {
                    return Err(RunnerError::Event("no such pending timer".into()));
                }
            }
            self.step_and_commit(&mut rec, event).await?;
            self.maybe_flush(&mut rec).await?;
            Ok(VerificationView::of(&rec))
        })
        .await
    }

    /// The current view of a verification.
    pub async fn view(&self, id: &str) -> Result<VerificationView, RunnerError> {
        let rec = self
            .store
            .load(id)
            .await?
            .ok_or_else(|| RunnerError::NotFound(id.to_owned()))?;
        Ok(VerificationView::of(&rec))
    }

    /// Performs every committed-but-unanswered HTTP action of this plugin's verifications (call
    /// at startup, and periodically when `perform_inline` is false). Returns the ids it drove;
    /// one verification's failure does not stop the others (it is logged and retried next time).
    pub async fn resume_pending(&self) -> Result<Vec<String>, RunnerError> {
        let ids = self.store.with_outbox(self.plugin.name()).await?;
        let mut done = Vec::new();
        for id in ids {
            let r = self
                .with_lock(&id, async {
                    let mut rec = self.load_open(&id).await?;
                    self.flush_outbox(&mut rec).await
                })
                .await;
            match r {
                Ok(()) => done.push(id),
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin.name(), verification = %id, error = %e, "resume failed")
                }
            }
        }
        Ok(done)
    }

    /// Fires every timer due now (call periodically). Returns how many fired.
    pub async fn fire_due_timers(&self) -> Result<usize, RunnerError> {
        let now = (self.options.clock)().unix_timestamp();
        let due = self.store.due_timers(self.plugin.name(), now).await?;
        let mut fired = 0;
        for (id, timer) in due {
            match self.deliver(&id, Event::Timer { id: timer }).await {
                Ok(_) => fired += 1,
                Err(RunnerError::Event(_) | RunnerError::Finished { .. }) => {}
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin.name(), verification = %id, error = %e, "timer failed")
                }
            }
        }
        Ok(fired)
    }

    async fn load_open(&self, id: &str) -> Result<VerificationRecord, RunnerError> {
        let rec = self
            .store
            .load(id)
            .await?
            .ok_or_else(|| RunnerError::NotFound(id.to_owned()))?;
        if rec.plugin != self.plugin.name() {
            return Err(RunnerError::WrongPlugin {
                id: id.to_owned(),
                plugin: rec.plugin,
            });
        }
        if rec.status.is_final() {
            return Err(RunnerError::Finished {
                id: id.to_owned(),
                status: rec.status,
            });
        }
        Ok(rec)
    }

    async fn maybe_flush(&self, rec: &mut VerificationRecord) -> Result<(), RunnerError> {
        if self.options.perform_inline {
            self.flush_outbox(rec).await?;
        }
        Ok(())
    }

    async fn flush_outbox(&self, rec: &mut VerificationRecord) -> Result<(), RunnerError> {
        for _ in 0..MAX_ROUNDS {
            if rec.status.is_final() {
                return Ok(());
            }
            let Some(action) = rec.outbox.first().cloned() else {
                return Ok(());
            };
            let event = match self
                .admit(&rec.id, std::slice::from_ref(&action), true)
                .await
            {
                Ok(()) => self.egress.perform(&self.policy, &action).await,
                // Never sent: the plugin hears what a rate-limiting vendor would answer.
                Err(RunnerError::Limited(GateError::Limited { retry_after, .. })) => {
                    Event::HttpResponse {
                        id: action.id.clone(),
                        status: 429,
                        body: serde_json::json!({
                            "error": "rate_limited",
                            "retry_after_secs": retry_after.as_secs(),
                        })
                        .to_string(),
                    }
                }
                Err(e) => return Err(e),
            };
            self.step_and_commit(rec, event).await?;
        }
        if rec.status.is_final() || rec.outbox.is_empty() {
            return Ok(());
        }
        Err(RunnerError::TooManyRounds(rec.id.clone()))
    }

    /// Asks the gate, if any; counters that cannot be read fail closed as a store error.
    async fn admit(
        &self,
        id: &str,
        actions: &[plugin_abi::doc::HttpAction],
        record: bool,
    ) -> Result<(), RunnerError> {
        let Some(gate) = &self.gate else {
            return Ok(());
        };
        match gate.admit(id, actions, record).await {
            Ok(()) => Ok(()),
            Err(GateError::Unavailable(e)) => Err(RunnerError::Store(StoreError::Backend(e))),
            Err(e) => Err(RunnerError::Limited(e)),
        }
    }

    /// One step; on success the new record is committed in one store call (the outbox before
    /// anything is performed) and `rec` is updated. On failure `rec` and the store are unchanged.
    async fn step_and_commit(
        &self,
        rec: &mut VerificationRecord,
        event: Event,
    ) -> Result<(), RunnerError> {
        let now = (self.options.clock)();
        let input = StepInput {
            v: DOC_VERSION,
            verification_id: rec.id.clone(),
            now: rfc3339(now),
            state: (rec.revision > 0).then(|| rec.state.clone()),
            event: event.clone(),
        };
        let out = self.plugin.step(&input).await?;
        let caller_event = matches!(
            event,
            Event::Start { .. } | Event::UserInput { .. } | Event::Callback { .. } | Event::Cancel
        );
        if caller_event {
            let new: Vec<_> = out
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::Http(h) => Some(h.clone()),
                    _ => None,
                })
                .collect();
            if !new.is_empty() {
                self.admit(&rec.id, &new, false).await?;
            }
        }
        let mut next = rec.clone();
        match &event {
            Event::HttpResponse { id, .. } | Event::HttpError { id, .. } => {
                if let Some(pos) = next.outbox.iter().position(|a| &a.id == id) {
                    next.outbox.remove(pos);
                }
            }
            Event::Timer { id } => next.timers.retain(|t| &t.id != id),
            _ => {}
        }
        let mut challenges = Vec::new();
        for action in out.actions {
            match action {
                Action::Http(h) => next.outbox.push(h),
                Action::Challenge(c) => challenges.push(c),
                Action::Timer(t) => {
                    let after = i64::try_from(t.after_ms.div_ceil(1000)).unwrap_or(i64::MAX / 2);
                    let due = now.unix_timestamp().saturating_add(after);
                    let due_at = OffsetDateTime::from_unix_timestamp(due)
                        .map(rfc3339)
                        .unwrap_or_default();
                    next.timers.retain(|x| x.id != t.id);
                    next.timers.push(PendingTimer {
                        id: t.id,
                        due_at,
                        due_unix: due,
                    });
                }
            }
        }
        if !challenges.is_empty() {
            next.challenges = challenges;
        } else if out.status != Status::AwaitingUser {
            next.challenges.clear();
        }
        next.status = out.status;
        next.state = out.state;
        next.result = out.result;
        if out.status.is_final() {
            if !next.outbox.is_empty() {
                tracing::warn!(plugin = %self.plugin.name(), verification = %rec.id, "final step left HTTP actions; dropped");
            }
            next.outbox.clear();
            next.timers.clear();
            next.challenges.clear();
        }
        next.revision = rec.revision + 1;
        next.updated_at = rfc3339(now);
        if rec.revision == 0 {
            self.store.create(&next).await?;
        } else {
            self.store.save(&next).await?;
        }
        *rec = next;
        Ok(())
    }
}
