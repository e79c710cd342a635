//! [`Outbox`]: the durable outbox of channel-plugin deliveries. Queuing commits one row per
//! (request, plugin) with the request sealed under the active data key, then wakes the delivery
//! task. The task asks the plugin for its actions (stored sealed, so a retry performs the same
//! ones), performs them through the plugin's egress allowlist (signed by the host when asked),
//! records which succeeded, and retries the rest with exponential backoff until they succeed, a
//! permanent failure, or `delivery_max_attempts`. A finished row loses its sealed columns. Rows
//! left pending by a crash are simply due again after a restart: delivery is at least once and
//! receivers de-duplicate by `delivery_id`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use plugin_abi::channel::{
    ChannelAction, ChannelEvent, ChannelInput, ChannelRequest, METHOD_EMAIL, METHOD_SMS,
};
use plugin_abi::doc::DOC_VERSION;
use plugin_abi::StatusCode;
use plugin_host::channel::{attempt, event_for, Attempt};
use plugin_host::{Egress, Plugin, PluginError};
use rand::RngCore;

use super::ChannelPlugins;
use crate::config::ContactSettings;
use crate::contact::{ApplicationEvent, ChannelNotifier, NotifyError};
use crate::storage::{unix_now, NewNotification, NotificationRow, NotifyRows};
use crate::verification::seal::{Field, KeySet, SealError};
use crate::verification::Keyring;

/// Deliveries looked at per pass.
const BATCH: i64 = 64;
/// Longest pause of the delivery task when nothing wakes it.
const IDLE: Duration = Duration::from_secs(1);

/// Retry schedule of deliveries.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Attempts before a delivery fails for good.
    pub max_attempts: u32,
    /// First retry delay, seconds (doubles).
    pub retry_secs: u32,
    /// Longest delay, seconds.
    pub max_backoff_secs: u32,
}

impl Schedule {
    /// From `[contact]`.
    pub fn from_settings(s: &ContactSettings) -> Self {
        Self {
            max_attempts: s.delivery_max_attempts,
            retry_secs: s.delivery_retry_secs,
            max_backoff_secs: s.delivery_max_backoff_secs,
        }
    }

    /// Delay after the `attempts`-th failed attempt (1-based).
    pub fn delay(&self, attempts: u32) -> i64 {
        let exp = attempts.saturating_sub(1).min(20);
        let d = u64::from(self.retry_secs).saturating_mul(1u64 << exp);
        i64::try_from(d.min(u64::from(self.max_backoff_secs))).unwrap_or(i64::MAX)
    }
}

/// What became of one delivery (status views and tests).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryView {
    /// `ntf_...`
    pub id: String,
    /// Channel plugin.
    pub plugin: String,
    /// `event | sms | email`.
    pub kind: String,
    /// `pending | delivered | failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Last failure (no personal data).
    pub last_error: Option<String>,
}

/// The durable outbox; implements [`ChannelNotifier`].
pub struct Outbox {
    rows: NotifyRows,
    pub(super) keyring: Arc<Keyring>,
    plugins: BTreeMap<String, Arc<Plugin>>,
    channels: RwLock<BTreeMap<String, ChannelPlugins>>,
    pub(super) egress: Egress,
    schedule: Schedule,
    pub(super) wake: tokio::sync::Notify,
    /// Relying parties' callback settings (the `callback` kind, `notify::callback`).
    pub(super) callback_targets: RwLock<crate::relying::callback::CallbackTargets>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("plugins", &self.plugins.keys().collect::<Vec<_>>())
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

pub(super) fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("ntf_{}", hex::encode(b))
}

pub(super) fn storage(e: impl std::fmt::Display) -> NotifyError {
    NotifyError::Storage(e.to_string())
}

fn kind_of(r: &ChannelRequest) -> &'static str {
    match r {
        ChannelRequest::ApplicationEvent { .. } => "event",
        ChannelRequest::Sms { .. } => "sms",
        ChannelRequest::Email { .. } => "email",
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The wire form of an event for channel plugins.
pub fn channel_event(e: &ApplicationEvent) -> ChannelEvent {
    let event = serde_json::to_value(e.event)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    ChannelEvent {
        channel: e.channel.clone(),
        application_id: e.application_id.clone(),
        application_kind: e.application_kind.clone(),
        event,
        status: e.status.clone(),
        reference: e.reference.clone(),
        certificate_serial: e.certificate_serial.clone(),
        failure_code: e.failure_code.clone(),
        phone: e.phone.clone(),
        email: e.email.clone(),
        at: e.at,
    }
}

/// Outcome of one pass over one delivery.
pub(super) enum Step {
    Delivered,
    Retry(String),
    Failed(String),
}

impl Outbox {
    /// An outbox over `rows`, sealing with `keyring`, driving the loaded channel `plugins`.
    pub fn new(
        rows: NotifyRows,
        keyring: Arc<Keyring>,
        plugins: BTreeMap<String, Arc<Plugin>>,
        egress: Egress,
        schedule: Schedule,
    ) -> Self {
        Self {
            rows,
            keyring,
            plugins,
            channels: RwLock::new(BTreeMap::new()),
            egress,
            schedule,
            wake: tokio::sync::Notify::new(),
            callback_targets: RwLock::default(),
        }
    }

    /// Sets (adds or replaces) the channel plugins of each channel in `channels`.
    pub fn set_channels(&self, channels: BTreeMap<String, ChannelPlugins>) {
        let mut map = self.channels.write().unwrap_or_else(|p| p.into_inner());
        map.extend(channels);
    }

    /// The channel plugins of `channel`, if any are set.
    pub fn channel(&self, channel: &str) -> Option<ChannelPlugins> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()
    }

    fn plugin_has(&self, plugin: &str, method: &str) -> bool {
        self.plugins
            .get(plugin)
            .is_some_and(|p| p.manifest().methods.iter().any(|m| m == method))
    }

    /// Seals and commits `requests` (plugin, request) in one transaction; retried once with
    /// reloaded keys if a rotation made another key active meanwhile.
    async fn enqueue(
        &self,
        channel: &str,
        requests: Vec<(String, ChannelRequest)>,
    ) -> Result<(), NotifyError> {
        if requests.is_empty() {
            return Ok(());
        }
        let mut keys = self.keyring.current();
        for round in 0..2 {
            let key = keys
                .active()
                .map_err(|e: SealError| storage(e.to_string()))?
                .clone();
            let now = unix_now();
            let mut rows = Vec::with_capacity(requests.len());
            for (plugin, request) in &requests {
                let id = new_id();
                let bytes = serde_json::to_vec(request).map_err(storage)?;
                let sealed = key
                    .seal(&id, Field::NotificationRequest, &bytes)
                    .map_err(storage)?;
                rows.push(NewNotification {
                    id,
                    channel: channel.to_owned(),
                    plugin: plugin.clone(),
                    kind: kind_of(request),
                    key_id: key.id(),
                    sealed_request: sealed,
                    now,
                });
            }
            if self.rows.enqueue(&rows).await.map_err(storage)? {
                for r in &rows {
                    tracing::info!(delivery = %r.id, channel, plugin = %r.plugin, kind = r.kind, "delivery queued");
                }
                self.wake.notify_one();
                return Ok(());
            }
            if round == 0 {
                keys = self.keyring.reload(&keys).await.map_err(storage)?;
            }
        }
        Err(storage("the personal-data key changed twice while queuing"))
    }

    /// Queues an e-mail through `channel`'s notifier (additive to [`ChannelNotifier`]).
    pub async fn send_email(
        &self,
        channel: &str,
        to: &str,
        subject: &str,
        text: &str,
    ) -> Result<(), NotifyError> {
        let notifier = self
            .channel(channel)
            .and_then(|c| c.notifier)
            .filter(|n| !self.plugins.contains_key(n) || self.plugin_has(n, METHOD_EMAIL))
            .ok_or_else(|| NotifyError::NoSmsNotifier(channel.to_owned()))?;
        let request = ChannelRequest::Email {
            to: to.to_owned(),
            subject: subject.to_owned(),
            text: text.to_owned(),
        };
        self.enqueue(channel, vec![(notifier, request)]).await
    }

    /// Every delivery of `channel`, oldest first.
    pub async fn deliveries(&self, channel: &str) -> Result<Vec<DeliveryView>, NotifyError> {
        let rows = self.rows.of_channel(channel).await.map_err(storage)?;
        Ok(rows
            .into_iter()
            .map(|r| DeliveryView {
                id: r.id,
                plugin: r.plugin,
                kind: r.kind,
                status: r.status,
                attempts: r.attempts,
                last_error: r.last_error,
            })
            .collect())
    }

    /// The delivery task: performs due deliveries, woken by new ones, at least every second.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.deliver_due().await;
                tokio::select! {
                    () = me.wake.notified() => {}
                    () = tokio::time::sleep(IDLE) => {}
                }
            }
        })
    }

    /// One pass: every due delivery, concurrently.
    pub async fn deliver_due(&self) {
        let rows = match self.rows.due(unix_now(), BATCH).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the delivery outbox");
                return;
            }
        };
        futures_util::future::join_all(rows.into_iter().map(|r| self.deliver_one(r))).await;
    }

    /// Opens a sealed column, reloading the keys once if it names a key not held yet.
    async fn open(
        &self,
        id: &str,
        field: Field,
        sealed: &[u8],
    ) -> Result<(Vec<u8>, Arc<KeySet>), String> {
        let keys = self.keyring.current();
        match keys.open(id, field, sealed) {
            Ok(b) => Ok((b.to_vec(), keys)),
            Err(SealError::UnknownKey(_)) => {
                let keys = self
                    .keyring
                    .reload(&keys)
                    .await
                    .map_err(|e| e.to_string())?;
                let b = keys.open(id, field, sealed).map_err(|e| e.to_string())?;
                Ok((b.to_vec(), keys))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn deliver_one(&self, row: NotificationRow) {
        let mut done: BTreeSet<String> =
            serde_json::from_str(&row.done_actions).unwrap_or_default();
        let step = self.attempt_row(&row, &mut done).await;
        let done_json = serde_json::to_string(&done).unwrap_or_else(|_| "[]".into());
        let attempts = row.attempts.saturating_add(1);
        let now = unix_now();
        let result = match step {
            Step::Delivered => {
                tracing::info!(delivery = %row.id, plugin = %row.plugin, attempts, "delivered");
                self.rows
                    .finish(&row.id, "delivered", &done_json, None, now)
                    .await
            }
            Step::Failed(why) => {
                tracing::warn!(delivery = %row.id, plugin = %row.plugin, attempts, error = %why, "delivery failed for good");
                self.rows
                    .finish(&row.id, "failed", &done_json, Some(&why), now)
                    .await
            }
            Step::Retry(why) if attempts >= self.schedule.max_attempts => {
                tracing::warn!(delivery = %row.id, plugin = %row.plugin, attempts, error = %why, "delivery failed: out of attempts");
                let why = format!("{why} (after {attempts} attempts)");
                self.rows
                    .finish(&row.id, "failed", &done_json, Some(&why), now)
                    .await
            }
            Step::Retry(why) => {
                let next = now + self.schedule.delay(attempts);
                tracing::info!(delivery = %row.id, plugin = %row.plugin, attempts, error = %why, next, "delivery will be retried");
                self.rows.retry_later(&row.id, &done_json, &why, next).await
            }
        };
        if let Err(e) = result {
            tracing::warn!(delivery = %row.id, error = %e, "cannot record a delivery attempt");
        }
    }

    async fn attempt_row(&self, row: &NotificationRow, done: &mut BTreeSet<String>) -> Step {
        let Some(sealed) = &row.sealed_request else {
            return Step::Failed("the request is gone".into());
        };
        let (bytes, keys) = match self.open(&row.id, Field::NotificationRequest, sealed).await {
            Ok(x) => x,
            Err(e) => return Step::Failed(format!("the sealed request cannot be opened: {e}")),
        };
        if row.kind == super::callback::CALLBACK_KIND {
            return self.attempt_callback(&bytes).await;
        }
        let Ok(request) = serde_json::from_slice::<ChannelRequest>(&bytes) else {
            return Step::Failed("the stored request is not valid".into());
        };
        let Some(plugin) = self.plugins.get(&row.plugin) else {
            return Step::Retry(format!("channel plugin {} is not loaded", row.plugin));
        };
        let actions: Vec<ChannelAction> = match &row.sealed_actions {
            Some(sealed) => match self.open(&row.id, Field::NotificationActions, sealed).await {
                Ok((b, _)) => match serde_json::from_slice(&b) {
                    Ok(a) => a,
                    Err(_) => return Step::Failed("the stored actions are not valid".into()),
                },
                Err(e) => return Step::Failed(format!("the sealed actions cannot be opened: {e}")),
            },
            None => {
                let input = ChannelInput {
                    v: DOC_VERSION,
                    delivery_id: row.id.clone(),
                    now: rfc3339(unix_now()),
                    request,
                };
                match plugin.deliver(&input).await {
                    Ok(out) => {
                        self.store_actions(row, &keys, &out.actions).await;
                        out.actions
                    }
                    Err(PluginError::Status { status, message })
                        if matches!(
                            status,
                            StatusCode::Unsupported | StatusCode::InvalidArgument
                        ) =>
                    {
                        return Step::Failed(format!(
                            "the plugin refused the request ({}): {}",
                            status.name(),
                            plugin_host::scrub::scrub_plugin_text(&message)
                        ));
                    }
                    Err(e) => return Step::Retry(format!("the plugin failed: {e}")),
                }
            }
        };
        let policy = plugin.egress_policy();
        let mut transient = None;
        for action in &actions {
            if done.contains(action.id()) {
                continue;
            }
            let ChannelAction::Http(http) = action;
            match attempt(&self.egress, &policy, http).await {
                Attempt::Delivered { .. } => {
                    done.insert(action.id().to_owned());
                }
                Attempt::Transient(e) => transient = Some(format!("{}: {e}", action.id())),
                Attempt::Permanent(e) => return Step::Failed(format!("{}: {e}", action.id())),
            }
        }
        match transient {
            Some(e) => Step::Retry(e),
            None => Step::Delivered,
        }
    }

    /// Keeps the plugin's actions (sealed under the row's key when it is still the active
    /// one), so a retry performs the same actions. Best effort: without them the plugin is
    /// asked again (it is deterministic).
    async fn store_actions(&self, row: &NotificationRow, keys: &KeySet, actions: &[ChannelAction]) {
        let Some(key_id) = row.key_id else { return };
        let Ok(key) = keys.get(key_id) else { return };
        let Ok(bytes) = serde_json::to_vec(actions) else {
            return;
        };
        let Ok(sealed) = key.seal(&row.id, Field::NotificationActions, &bytes) else {
            return;
        };
        if let Err(e) = self.rows.set_actions(&row.id, key_id, &sealed).await {
            tracing::warn!(delivery = %row.id, error = %e, "cannot store a delivery's actions");
        }
    }

    /// Re-seals pending deliveries under the active key (a data-key rotation). Returns how many
    /// rows were re-sealed.
    pub async fn reseal_all(rows: &NotifyRows, keys: &KeySet) -> Result<usize, String> {
        let active = keys.active().map_err(|e| e.to_string())?.clone();
        let mut count = 0;
        loop {
            let ids = rows
                .sealed_by_other_keys(active.id(), BATCH)
                .await
                .map_err(|e| e.to_string())?;
            if ids.is_empty() {
                return Ok(count);
            }
            let mut progress = 0;
            for id in ids {
                let Some(row) = rows.get(&id).await.map_err(|e| e.to_string())? else {
                    continue;
                };
                let (Some(old), Some(req)) = (row.key_id, &row.sealed_request) else {
                    continue;
                };
                let request = keys
                    .open(&id, Field::NotificationRequest, req)
                    .map_err(|e| e.to_string())?;
                let new_req = active
                    .seal(&id, Field::NotificationRequest, &request)
                    .map_err(|e| e.to_string())?;
                let new_actions = match &row.sealed_actions {
                    Some(a) => {
                        let plain = keys
                            .open(&id, Field::NotificationActions, a)
                            .map_err(|e| e.to_string())?;
                        Some(
                            active
                                .seal(&id, Field::NotificationActions, &plain)
                                .map_err(|e| e.to_string())?,
                        )
                    }
                    None => None,
                };
                if rows
                    .reseal(&id, old, active.id(), &new_req, new_actions.as_deref())
                    .await
                    .map_err(|e| e.to_string())?
                {
                    progress += 1;
                }
            }
            if progress == 0 {
                // Rows changed meanwhile (finished, or re-sealed by someone else): look again
                // after a moment rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            count += progress;
        }
    }
}

impl ChannelNotifier for Outbox {
    fn application_event<'a>(
        &'a self,
        event: &'a ApplicationEvent,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let Some(channel) = self.channel(&event.channel) else {
                return Ok(());
            };
            let wire = channel_event(event);
            let requests = channel
                .plugins
                .iter()
                .map(|name| {
                    let minimal = match self.plugins.get(name) {
                        Some(p) => event_for(p.manifest(), &wire),
                        // Not loaded: its methods are unknown, so it gets no contact data.
                        None => ChannelEvent {
                            phone: None,
                            email: None,
                            ..wire.clone()
                        },
                    };
                    (
                        name.clone(),
                        ChannelRequest::ApplicationEvent { event: minimal },
                    )
                })
                .collect();
            self.enqueue(&event.channel, requests).await
        })
    }

    fn send_sms<'a>(
        &'a self,
        channel: &'a str,
        phone: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let notifier = self
                .channel(channel)
                .and_then(|c| c.notifier)
                .filter(|n| !self.plugins.contains_key(n) || self.plugin_has(n, METHOD_SMS))
                .ok_or_else(|| NotifyError::NoSmsNotifier(channel.to_owned()))?;
            let request = ChannelRequest::Sms {
                to: phone.to_owned(),
                text: text.to_owned(),
            };
            self.enqueue(channel, vec![(notifier, request)]).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Schedule {
            max_attempts: 10,
            retry_secs: 2,
            max_backoff_secs: 20,
        };
        let delays: Vec<i64> = (1..=6).map(|a| s.delay(a)).collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 20, 20]);
    }
}
