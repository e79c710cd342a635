//! [`VerificationService`]: what the API calls. Decides who may start which plugin, keeps a
//! channel to its own verifications, and drives the runners; plus the background task that
//! performs committed-but-unperformed actions after a restart and fires due timers.

use std::sync::Arc;
use std::time::Duration;

use plugin_abi::doc::{Applicant, ChallengeKind, Event, VerificationResult};
use plugin_host::{PendingTimer, RunnerError, VerificationView};
use rand::RngCore;

use super::callbacks::{CallbackError, CallbackVerifier, SECRET_NAME};
use super::limits::{LimitError, Limits};
use super::registry::{PluginRegistry, PluginSlot, Runner};
use super::store::{SqlVerificationStore, StartIntent, StoredVerification};

/// Why a verification request failed. Messages carry no personal data.
#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    /// No `[[plugin]]` of that name.
    #[error("no verification plugin named {0:?}")]
    UnknownPlugin(String),
    /// The channel's `verifications` list does not include the plugin.
    #[error("channel {channel} may not use verification plugin {plugin}")]
    NotAllowed {
        /// Channel.
        channel: String,
        /// Plugin.
        plugin: String,
    },
    /// The plugin was refused at start-up.
    #[error("verification plugin {plugin} is unavailable: {reason}")]
    Unavailable {
        /// Plugin.
        plugin: String,
        /// Why (names the fault, e.g. a hash mismatch).
        reason: String,
    },
    /// No such verification visible to the caller.
    #[error("no verification {0}")]
    NotFound(String),
    /// The verification has not succeeded (still open, or failed).
    #[error("verification {0} has not succeeded")]
    NotVerified(String),
    /// A limit of the channel or of a subject is reached; nothing was started or sent.
    #[error(transparent)]
    Limited(#[from] LimitError),
    /// The runner refused or failed.
    #[error("{source}")]
    Runner {
        /// Plugin.
        plugin: String,
        /// Why.
        source: RunnerError,
    },
}

/// A verification as the API shows it.
#[derive(Debug, Clone)]
pub struct VerificationInfo {
    /// The runner's view (status, challenges, result, pending work).
    pub view: VerificationView,
    /// Plugin name.
    pub plugin: String,
    /// The caller's idempotency key.
    pub reference: Option<String>,
    /// The applicant (mask before showing).
    pub applicant: Applicant,
    /// False when a start with an existing reference returned the earlier verification.
    pub created: bool,
}

/// Who is asking: an operator sees every verification, a channel only its own.
#[derive(Debug, Clone)]
pub enum Requester<'a> {
    /// An operator (`operator:<cn>`).
    Operator(&'a str),
    /// A channel, with the plugins it may use.
    Channel {
        /// Channel name.
        name: &'a str,
        /// Its `verifications` list.
        allowed: &'a [String],
    },
}

impl Requester<'_> {
    fn owner(&self) -> String {
        match self {
            Requester::Operator(cn) => format!("operator:{cn}"),
            Requester::Channel { name, .. } => format!("channel:{name}"),
        }
    }

    fn may_see(&self, owner: &str) -> bool {
        match self {
            Requester::Operator(_) => true,
            Requester::Channel { .. } => owner == self.owner(),
        }
    }
}

/// The verification service.
pub struct VerificationService {
    registry: PluginRegistry,
    store: Arc<SqlVerificationStore>,
    tick: Duration,
    limits: Option<Arc<Limits>>,
    callbacks: Option<CallbackVerifier>,
}

/// What became of an authenticated vendor callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Delivered to the verification as its `callback` event.
    Delivered,
    /// The verification had already finished; nothing to do (the vendor may stop retrying).
    AlreadyFinished,
}

/// Why a vendor callback was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum CallbackFailure {
    /// Refused before delivery: authentication, window, replay, body.
    #[error(transparent)]
    Refused(#[from] CallbackError),
    /// Authenticated, but the verification could not take it.
    #[error(transparent)]
    Verification(#[from] VerificationError),
}

impl std::fmt::Debug for VerificationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationService")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("vrf_{}", hex::encode(b))
}

fn view_of(r: &plugin_host::VerificationRecord) -> VerificationView {
    VerificationView {
        id: r.id.clone(),
        status: r.status,
        challenges: r.challenges.clone(),
        result: r.result.clone(),
        pending_actions: r.outbox.len(),
        timers: r.timers.clone(),
    }
}

fn info_of(v: StoredVerification, created: bool) -> VerificationInfo {
    VerificationInfo {
        view: view_of(&v.record),
        plugin: v.record.plugin.clone(),
        reference: v.reference,
        applicant: v.applicant,
        created,
    }
}

impl VerificationService {
    /// A service over loaded plugins; `tick` paces timers and retries.
    pub fn new(registry: PluginRegistry, store: Arc<SqlVerificationStore>, tick: Duration) -> Self {
        Self {
            registry,
            store,
            tick,
            limits: None,
            callbacks: None,
        }
    }

    /// Enforces channel and subject limits on starts and on the plugins' actions.
    pub fn with_limits(mut self, limits: Arc<Limits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Accepts signed vendor callbacks.
    pub fn with_callbacks(mut self, callbacks: CallbackVerifier) -> Self {
        self.callbacks = Some(callbacks);
        self
    }

    /// The plugin registry.
    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }

    /// The personal-data keys (shared with `notify`, which seals its outbox with them).
    pub fn keyring(&self) -> Arc<super::Keyring> {
        self.store.keyring().clone()
    }

    fn runner(&self, plugin: &str) -> Result<&Arc<Runner>, VerificationError> {
        match self.registry.get(plugin) {
            None => Err(VerificationError::UnknownPlugin(plugin.to_owned())),
            Some(PluginSlot::Unavailable(reason)) => Err(VerificationError::Unavailable {
                plugin: plugin.to_owned(),
                reason: reason.clone(),
            }),
            Some(PluginSlot::Ready(r)) => Ok(r),
        }
    }

    fn runner_err(plugin: &str) -> impl FnOnce(RunnerError) -> VerificationError + '_ {
        move |source| VerificationError::Runner {
            plugin: plugin.to_owned(),
            source,
        }
    }

    async fn load_visible(
        &self,
        who: &Requester<'_>,
        id: &str,
    ) -> Result<StoredVerification, VerificationError> {
        let found = self
            .store
            .load_full(id)
            .await
            .map_err(|e| VerificationError::Runner {
                plugin: String::new(),
                source: RunnerError::Store(e),
            })?;
        match found {
            Some(v) if who.may_see(&v.owner) => Ok(v),
            _ => Err(VerificationError::NotFound(id.to_owned())),
        }
    }

    /// Starts a verification with `plugin`. With a `reference` the caller already used, returns
    /// that verification instead (`created = false`): a retried request never starts twice.
    pub async fn start(
        &self,
        who: &Requester<'_>,
        plugin: &str,
        applicant: Applicant,
        reference: Option<String>,
    ) -> Result<VerificationInfo, VerificationError> {
        if let Requester::Channel { name, allowed } = who {
            if self.registry.get(plugin).is_none() {
                return Err(VerificationError::UnknownPlugin(plugin.to_owned()));
            }
            if !allowed.iter().any(|p| p == plugin) {
                return Err(VerificationError::NotAllowed {
                    channel: (*name).to_owned(),
                    plugin: plugin.to_owned(),
                });
            }
        }
        let owner = who.owner();
        if let Some(existing) = self.existing(who, &owner, reference.as_deref()).await? {
            return Ok(existing);
        }
        let runner = self.runner(plugin)?;
        let id = new_id();
        if let Some(limits) = &self.limits {
            // Only the subjects this plugin is given count (a channel cannot spend another
            // person's allowance by sending fields the plugin never sees).
            let seen = applicant.only(&runner.plugin().manifest().applicant_fields);
            limits.admit_start(&id, plugin, &owner, &seen).await?;
        }
        self.store.register_intent(
            &id,
            StartIntent {
                owner: owner.clone(),
                reference: reference.clone(),
                applicant: applicant.clone(),
            },
        );
        let started = runner.start(&id, &applicant).await;
        self.store.forget_intent(&id);
        if started.is_err() {
            if let Some(limits) = &self.limits {
                limits.forget(&id).await;
            }
        }
        match started {
            Ok(view) => {
                tracing::info!(verification = %id, %plugin, status = ?view.status, "verification started");
                Ok(VerificationInfo {
                    view,
                    plugin: plugin.to_owned(),
                    reference,
                    applicant,
                    created: true,
                })
            }
            // The same reference raced in from a concurrent request.
            Err(RunnerError::Store(plugin_host::StoreError::Conflict(_))) => {
                match self.existing(who, &owner, reference.as_deref()).await? {
                    Some(existing) => Ok(existing),
                    None => Err(VerificationError::Runner {
                        plugin: plugin.to_owned(),
                        source: RunnerError::AlreadyExists(id),
                    }),
                }
            }
            Err(e) => Err(Self::runner_err(plugin)(e)),
        }
    }

    async fn existing(
        &self,
        who: &Requester<'_>,
        owner: &str,
        reference: Option<&str>,
    ) -> Result<Option<VerificationInfo>, VerificationError> {
        let Some(reference) = reference else {
            return Ok(None);
        };
        let id = self
            .store
            .find_reference(owner, reference)
            .await
            .map_err(|e| VerificationError::Runner {
                plugin: String::new(),
                source: RunnerError::Store(plugin_host::StoreError::Backend(e.to_string())),
            })?;
        match id {
            Some(id) => Ok(Some(info_of(self.load_visible(who, &id).await?, false))),
            None => Ok(None),
        }
    }

    /// Delivers what the user entered for a challenge.
    pub async fn input(
        &self,
        who: &Requester<'_>,
        id: &str,
        challenge: ChallengeKind,
        data: String,
    ) -> Result<VerificationInfo, VerificationError> {
        self.deliver(who, id, Event::UserInput { challenge, data })
            .await
    }

    /// Cancels a verification.
    pub async fn cancel(
        &self,
        who: &Requester<'_>,
        id: &str,
    ) -> Result<VerificationInfo, VerificationError> {
        self.deliver(who, id, Event::Cancel).await
    }

    async fn deliver(
        &self,
        who: &Requester<'_>,
        id: &str,
        event: Event,
    ) -> Result<VerificationInfo, VerificationError> {
        let stored = self.load_visible(who, id).await?;
        let plugin = stored.record.plugin.clone();
        let runner = self.runner(&plugin)?;
        let view = runner
            .deliver(id, event)
            .await
            .map_err(Self::runner_err(&plugin))?;
        Ok(VerificationInfo {
            view,
            plugin,
            reference: stored.reference,
            applicant: stored.applicant,
            created: false,
        })
    }

    /// Authenticates a vendor callback for verification `id` of `plugin` and delivers its body
    /// as the `callback` event. A refused callback changes nothing.
    pub async fn callback(
        &self,
        plugin: &str,
        id: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<CallbackOutcome, CallbackFailure> {
        let not_accepted = || CallbackError::NotAccepted(plugin.to_owned());
        let (Some(verifier), Some(PluginSlot::Ready(runner))) =
            (&self.callbacks, self.registry.get(plugin))
        else {
            return Err(not_accepted().into());
        };
        let secret = runner
            .plugin()
            .spec()
            .secrets
            .get(SECRET_NAME)
            .ok_or_else(not_accepted)?;
        let body = verifier
            .verify(
                plugin,
                secret.expose().as_bytes(),
                timestamp,
                signature,
                body,
            )
            .await?;
        match runner.deliver(id, Event::Callback { body }).await {
            Ok(view) => {
                tracing::info!(verification = %id, %plugin, status = ?view.status, "vendor callback delivered");
                Ok(CallbackOutcome::Delivered)
            }
            Err(RunnerError::Finished { .. }) => Ok(CallbackOutcome::AlreadyFinished),
            Err(RunnerError::NotFound(_) | RunnerError::WrongPlugin { .. }) => {
                Err(VerificationError::NotFound(id.to_owned()).into())
            }
            Err(e) => Err(Self::runner_err(plugin)(e).into()),
        }
    }

    /// The current state of a verification.
    pub async fn get(
        &self,
        who: &Requester<'_>,
        id: &str,
    ) -> Result<VerificationInfo, VerificationError> {
        Ok(info_of(self.load_visible(who, id).await?, false))
    }

    /// Every configured plugin with its state (operators only: for monitoring).
    pub async fn plugins_status(&self) -> serde_json::Value {
        let mut out = Vec::new();
        for name in self.registry.names() {
            let entry = match self.registry.get(name) {
                Some(PluginSlot::Ready(r)) => {
                    let plugin = r.plugin();
                    let health = plugin.health().await;
                    serde_json::json!({
                        "name": name,
                        "status": "ready",
                        "version": plugin.manifest().version,
                        "methods": plugin.manifest().methods,
                        "isolation": if health.is_some() { "worker" } else { "in_process" },
                        "worker": health.map(|h| serde_json::json!({
                            "spawns": h.spawns,
                            "failures": h.failures,
                            "circuit_open": h.circuit_open,
                            "running": h.running,
                        })),
                    })
                }
                Some(PluginSlot::Unavailable(reason)) => {
                    serde_json::json!({"name": name, "status": "unavailable", "reason": reason})
                }
                None => continue,
            };
            out.push(entry);
        }
        for (name, plugin) in self.registry.channel_plugins() {
            let health = plugin.health().await;
            out.push(serde_json::json!({
                "name": name,
                "kind": "channel",
                "status": "ready",
                "version": plugin.manifest().version,
                "methods": plugin.manifest().methods,
                "isolation": if health.is_some() { "worker" } else { "in_process" },
                "worker": health.map(|h| serde_json::json!({
                    "spawns": h.spawns,
                    "failures": h.failures,
                    "circuit_open": h.circuit_open,
                    "running": h.running,
                })),
            }));
        }
        serde_json::Value::Array(out)
    }

    /// The verified attributes of a succeeded verification, keyed as certificate profiles name
    /// subject placeholders (`name`, `organisation`, `id_number`, `phone`, ...): what an
    /// issuance request that cites this verification may put in the subject.
    pub async fn verified_subject(
        &self,
        who: &Requester<'_>,
        id: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, VerificationError> {
        let v = self.load_visible(who, id).await?;
        let result = match (&v.record.status, &v.record.result) {
            (plugin_abi::doc::Status::Succeeded, Some(r)) => r,
            _ => return Err(VerificationError::NotVerified(id.to_owned())),
        };
        let mut subject = std::collections::BTreeMap::new();
        for field in &result.verified_attributes {
            if let Some(value) = v.applicant.get(*field) {
                subject.insert(subject_key(*field).to_owned(), value.to_owned());
            }
        }
        Ok(subject)
    }

    /// Performs every committed-but-unperformed action now (start-up after a crash).
    pub async fn resume_all(&self) {
        for runner in self.registry.ready() {
            match runner.resume_pending().await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(plugin = %runner.plugin().name(), resumed = ids.len(), "resumed verifications with unperformed actions")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(plugin = %runner.plugin().name(), error = %e, "resume failed")
                }
            }
        }
    }

    async fn fire_timers(&self) {
        for runner in self.registry.ready() {
            if let Err(e) = runner.fire_due_timers().await {
                tracing::warn!(plugin = %runner.plugin().name(), error = %e, "timers failed");
            }
        }
    }

    /// Spawns the background task: resume at once, then fire due timers every tick and retry
    /// unperformed actions every ten ticks.
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.resume_all().await;
            let mut interval = tokio::time::interval(this.tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                interval.tick().await;
                n = n.wrapping_add(1);
                this.fire_timers().await;
                if n.is_multiple_of(10) {
                    this.resume_all().await;
                }
            }
        })
    }
}

/// The subject-attribute name a profile uses for an applicant field.
pub fn subject_key(field: plugin_abi::doc::ApplicantField) -> &'static str {
    use plugin_abi::doc::ApplicantField as F;
    match field {
        F::Name => "name",
        F::IdNumber => "id_number",
        F::Phone => "phone",
        F::BankCard => "bank_card",
        F::OrgName => "organisation",
        F::Uscc => "uscc",
        F::LegalRepName => "legal_rep_name",
        F::LegalRepId => "legal_rep_id",
        F::BankAccount => "bank_account",
        F::BankName => "bank_name",
    }
}

/// The result's failure code (`otp_wrong`, `mismatch`, ...), if the outcome is not `verified`.
pub fn failure_code(result: Option<&VerificationResult>) -> Option<String> {
    let r = result?;
    if r.outcome == plugin_abi::doc::Outcome::Verified {
        return None;
    }
    serde_json::to_value(r.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

/// Timers as the API shows them (id and due time).
pub fn timers_json(timers: &[PendingTimer]) -> serde_json::Value {
    serde_json::Value::Array(
        timers
            .iter()
            .map(|t| serde_json::json!({"id": t.id, "due_at": t.due_at}))
            .collect(),
    )
}
