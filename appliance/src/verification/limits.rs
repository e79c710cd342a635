//! [`Limits`]: what a channel and a person may spend. Counts verification starts and the vendor
//! actions that cost money or reach a person (SMS sends, carrier and bank checks, face sessions,
//! payouts) per rolling hour and day, with a least gap between two events (the SMS resend
//! cooldown), per channel (`[[channel]] limits`) and per subject (`[verification.subject_limits]`:
//! each phone number, ID number, USCC and bank account the plugin is given). Counters live in the
//! database, so a restart forgets nothing; subjects are keyed by an HMAC of the normalised value
//! under a key derived from the data key, never stored in clear.
//!
//! Which HTTP action spends which class is declared per plugin (`limited_actions`: class -> URL
//! paths, exact or a prefix ending in `*`, matched against the action's percent-decoded,
//! dot-segment-resolved, lowercased path). The runner asks [`PluginGate`] before it performs an action, so nothing beyond a limit
//! reaches the vendor; a start is refused up front when any class its plugin spends is exhausted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plugin_abi::doc::{Applicant, HttpAction};
use plugin_host::gate::{ActionGate, GateError, GateFuture};
use ring::hmac;

use crate::config::{ApplianceConfig, LimitClass, LimitSet};
use crate::storage::{unix_now, LimitRows, StorageError};

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// Why a limit check did not admit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitError {
    /// A limit is reached (or a cooldown not yet over).
    #[error("{scope} limit on {} reached; retry after {} s", class.name(), retry_after.as_secs())]
    Limited {
        /// The class.
        class: LimitClass,
        /// `channel` or `subject`.
        scope: &'static str,
        /// When a slot frees up.
        retry_after: Duration,
    },
    /// An action's URL path cannot be read, so what it spends is unknown: it is not sent.
    #[error("an action's URL path cannot be classified; not sent")]
    Unclassifiable,
    /// The counters could not be read or written.
    #[error("limit counters unavailable: {0}")]
    Storage(String),
}

impl From<StorageError> for LimitError {
    fn from(e: StorageError) -> Self {
        LimitError::Storage(e.to_string())
    }
}

impl From<LimitError> for GateError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Limited {
                class,
                scope,
                retry_after,
            } => GateError::Limited {
                class: class.name().to_owned(),
                scope: scope.to_owned(),
                retry_after,
            },
            LimitError::Unclassifiable => GateError::Limited {
                class: "unclassifiable".to_owned(),
                scope: "action".to_owned(),
                retry_after: Duration::from_secs(DAY.unsigned_abs()),
            },
            LimitError::Storage(m) => GateError::Unavailable(m),
        }
    }
}

/// The key subjects are keyed under (HMAC-SHA256), derived from the data key.
pub struct SubjectKey(hmac::Key);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey([redacted])")
    }
}

impl SubjectKey {
    /// Derives the key from the raw data key: HMAC(data key, label). Rotating the data key
    /// starts subject counters afresh.
    pub fn derive(data_key: &[u8]) -> Self {
        let outer = hmac::Key::new(hmac::HMAC_SHA256, data_key);
        let tag = hmac::sign(&outer, b"ca-appliance limits subject key v1");
        SubjectKey(hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref()))
    }

    /// A random key (no plugins, so no data key: nothing is ever limited per subject).
    pub fn random() -> Self {
        let mut b = zeroize::Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, b.as_mut_slice());
        Self::derive(b.as_slice())
    }

    /// `subject:<32 hex>` for a normalised value of a kind (`phone`, `id`, `uscc`, `account`).
    fn scope(&self, kind: &str, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(kind.as_bytes());
        ctx.update(b":");
        ctx.update(value.as_bytes());
        let tag = ctx.sign();
        format!("subject:{}", hex::encode(&tag.as_ref()[..16]))
    }
}

/// The subjects among an applicant's fields, normalised: (kind, value).
fn subjects(a: &Applicant) -> Vec<(&'static str, String)> {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let upper = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase()
    };
    let mut out = Vec::new();
    if let Some(p) = a.phone.as_deref() {
        let d = digits(p);
        let d = match d.strip_prefix("86") {
            Some(rest) if rest.len() == 11 => rest.to_owned(),
            _ => d,
        };
        out.push(("phone", d));
    }
    for id in [a.id_number.as_deref(), a.legal_rep_id.as_deref()]
        .into_iter()
        .flatten()
    {
        out.push(("id", upper(id)));
    }
    if let Some(u) = a.uscc.as_deref() {
        out.push(("uscc", upper(u)));
    }
    for acct in [a.bank_card.as_deref(), a.bank_account.as_deref()]
        .into_iter()
        .flatten()
    {
        out.push(("account", digits(acct)));
    }
    out.retain(|(_, v)| !v.is_empty());
    out.sort();
    out.dedup();
    out
}

/// A URL's path as the vendor will read it: percent-decoded, dot segments resolved, repeated
/// slashes collapsed, lowercased. Anything undecodable matches nothing and is refused upstream.
fn normalised_path(url: &str) -> Option<String> {
    let uri: axum::http::Uri = url.parse().ok()?;
    let raw = uri.path();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut it = raw.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hi = it.next()?;
            let lo = it.next()?;
            let hex = [hi, lo];
            let s = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(s, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    let decoded = String::from_utf8(bytes).ok()?.to_ascii_lowercase();
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = format!("/{}", segments.join("/"));
    if decoded.ends_with('/') && path != "/" {
        path.push('/');
    }
    Some(path)
}

/// One scope an event counts against, with its limits.
struct Scope<'a> {
    key: String,
    kind: &'static str,
    limits: &'a LimitSet,
}

/// Limits of every channel and subject; shared by the service and every plugin's gate.
pub struct Limits {
    rows: LimitRows,
    key: SubjectKey,
    subject: LimitSet,
    channels: BTreeMap<String, LimitSet>,
    /// Per plugin: (class, normalised path prefixes).
    actions: BTreeMap<String, Vec<(LimitClass, Vec<String>)>>,
    /// Check-then-record is one critical section (one appliance process owns the counters).
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("subject", &self.subject)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Limits from the configuration, counting in `rows`, keying subjects under `key`.
    pub fn new(config: &ApplianceConfig, rows: LimitRows, key: SubjectKey) -> Self {
        let channels = config
            .channels
            .iter()
            .map(|c| (c.name.clone(), c.limits.clone()))
            .collect();
        let actions = config
            .plugins
            .iter()
            .map(|p| {
                let classes = p
                    .limited_actions
                    .iter()
                    .map(|(class, prefixes)| {
                        let norm = prefixes
                            .iter()
                            .map(|x| normalised_path(&format!("http://h{x}")).unwrap_or_default())
                            .collect();
                        (*class, norm)
                    })
                    .collect();
                (p.name.clone(), classes)
            })
            .collect();
        Limits {
            rows,
            key,
            subject: config.verification.subject_limits.clone(),
            channels,
            actions,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The classes plugin `name`'s actions may spend.
    fn plugin_classes(&self, plugin: &str) -> Vec<LimitClass> {
        self.actions
            .get(plugin)
            .map(|v| v.iter().map(|(c, _)| *c).collect())
            .unwrap_or_default()
    }

    /// Which class an action of `plugin` spends, if any.
    fn class_of(
        &self,
        plugin: &str,
        action: &HttpAction,
    ) -> Result<Option<LimitClass>, LimitError> {
        let Some(classes) = self.actions.get(plugin).filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let Some(path) = normalised_path(&action.url) else {
            return Err(LimitError::Unclassifiable);
        };
        let path = path.trim_end_matches('/');
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == pattern.trim_end_matches('/'),
        };
        Ok(classes
            .iter()
            .find(|(_, patterns)| patterns.iter().any(matches))
            .map(|(c, _)| *c))
    }

    fn scopes_of(&self, owner: &str, applicant: &Applicant) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(channel) = owner.strip_prefix("channel:") {
            out.push(format!("channel:{channel}"));
        }
        for (kind, value) in subjects(applicant) {
            out.push(self.key.scope(kind, &value));
        }
        out
    }

    fn resolve<'a>(&'a self, keys: &[String]) -> Vec<Scope<'a>> {
        static NONE: std::sync::OnceLock<LimitSet> = std::sync::OnceLock::new();
        keys.iter()
            .map(|k| match k.strip_prefix("channel:") {
                Some(name) => Scope {
                    key: k.clone(),
                    kind: "channel",
                    limits: self
                        .channels
                        .get(name)
                        .unwrap_or_else(|| NONE.get_or_init(LimitSet::default)),
                },
                None => Scope {
                    key: k.clone(),
                    kind: "subject",
                    limits: &self.subject,
                },
            })
            .collect()
    }

    /// Checks one class in one scope, counting `pending` more events already admitted in this
    /// same decision.
    async fn check(
        &self,
        scope: &Scope<'_>,
        class: LimitClass,
        pending: u32,
        now: i64,
    ) -> Result<(), LimitError> {
        let Some(limit) = scope.limits.get(class) else {
            return Ok(());
        };
        let refuse = |secs: i64| LimitError::Limited {
            class,
            scope: scope.kind,
            retry_after: Duration::from_secs(u64::try_from(secs.max(1)).unwrap_or(1)),
        };
        let day = self
            .rows
            .count_since(&scope.key, class.name(), now - DAY + 1)
            .await?;
        if limit.cooldown_secs > 0 {
            if let Some(latest) = day.latest {
                let ready = latest + i64::from(limit.cooldown_secs);
                if now < ready || pending > 0 {
                    return Err(refuse(ready - now));
                }
            }
        }
        for (cap, window) in [(limit.per_hour, HOUR), (limit.per_day, DAY)] {
            let Some(cap) = cap else { continue };
            let since = now - window + 1;
            let used = if window == DAY {
                day.count
            } else {
                self.rows
                    .count_since(&scope.key, class.name(), since)
                    .await?
                    .count
            };
            if used + pending >= cap {
                // A slot frees when enough of the oldest events have left the window: the
                // (used + pending - cap)-th oldest, 0-based.
                let nth = (used + pending).saturating_sub(cap);
                let freed = if nth < used {
                    self.rows
                        .nth_since(&scope.key, class.name(), since, nth)
                        .await?
                        .map_or(window, |at| at + window - now)
                } else {
                    window
                };
                return Err(refuse(freed));
            }
        }
        Ok(())
    }

    /// Checks every (scope, class) event; records them all when admitted and `record`.
    async fn decide(
        &self,
        scopes: &[Scope<'_>],
        classes: &[LimitClass],
        record: bool,
    ) -> Result<(), LimitError> {
        let _guard = self.lock.lock().await;
        let now = unix_now();
        let mut events = Vec::new();
        for scope in scopes {
            let mut seen: BTreeMap<LimitClass, u32> = BTreeMap::new();
            for class in classes {
                let pending = seen.entry(*class).or_default();
                self.check(scope, *class, *pending, now).await?;
                *pending += 1;
                events.push((scope.key.clone(), class.name()));
            }
        }
        if record && !events.is_empty() {
            self.rows.record(&events, now, now - 2 * DAY).await?;
        }
        Ok(())
    }

    /// Admits a new verification `id` of `plugin` by `owner` (`channel:<name>` or an operator):
    /// counts the start for the channel and each subject, and refuses up front when any class
    /// the plugin spends is exhausted. Fixes the scopes its later actions count against.
    pub async fn admit_start(
        &self,
        id: &str,
        plugin: &str,
        owner: &str,
        applicant: &Applicant,
    ) -> Result<(), LimitError> {
        let keys = self.scopes_of(owner, applicant);
        let scopes = self.resolve(&keys);
        let spends = self.plugin_classes(plugin);
        {
            // Peek the classes the verification will spend, then count the start.
            self.decide(&scopes, &spends, false).await?;
            self.decide(&scopes, &[LimitClass::Starts], true).await?;
        }
        self.rows.save_scopes(id, &keys, unix_now()).await?;
        Ok(())
    }

    /// Forgets the scopes of a verification whose start failed.
    pub async fn forget(&self, id: &str) {
        if let Err(e) = self.rows.delete_scopes(id).await {
            tracing::warn!(verification = %id, error = %e, "could not forget limit scopes");
        }
    }

    /// Admits (and with `record` counts) actions of verification `id` of `plugin`.
    pub async fn admit_actions(
        &self,
        id: &str,
        plugin: &str,
        actions: &[HttpAction],
        record: bool,
    ) -> Result<(), LimitError> {
        let mut classes = Vec::new();
        for a in actions {
            if let Some(c) = self.class_of(plugin, a)? {
                classes.push(c);
            }
        }
        if classes.is_empty() {
            return Ok(());
        }
        let keys = self.rows.scopes(id).await?.unwrap_or_default();
        let scopes = self.resolve(&keys);
        self.decide(&scopes, &classes, record).await
    }

    /// The gate for one plugin's runner.
    pub fn gate(self: &Arc<Self>, plugin: &str) -> Arc<dyn ActionGate> {
        Arc::new(PluginGate {
            limits: Arc::clone(self),
            plugin: plugin.to_owned(),
        })
    }
}

/// [`ActionGate`] over [`Limits`] for one plugin.
struct PluginGate {
    limits: Arc<Limits>,
    plugin: String,
}

impl ActionGate for PluginGate {
    fn admit<'a>(&'a self, id: &'a str, actions: &'a [HttpAction], record: bool) -> GateFuture<'a> {
        Box::pin(async move {
            self.limits
                .admit_actions(id, &self.plugin, actions, record)
                .await
                .map_err(GateError::from)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_before_matching() {
        for url in [
            "http://h/sms/v1/send",
            "http://h//sms//v1/send",
            "http://h/sms/v1/./send",
            "http://h/sms/x/../v1/send",
            "http://h/SMS/v1/%73end",
            "http://h/sms/v1/send?x=1",
        ] {
            assert_eq!(normalised_path(url).unwrap(), "/sms/v1/send", "{url}");
        }
        assert_eq!(normalised_path("http://h/sms/%zz"), None);
    }

    #[test]
    fn subjects_are_normalised_and_keyed_without_the_value() {
        let key = SubjectKey::derive(&[7u8; 32]);
        let a = Applicant {
            phone: Some("+86 138-0013-8000".into()),
            id_number: Some("11010519491231002x".into()),
            ..Default::default()
        };
        let b = Applicant {
            phone: Some("13800138000".into()),
            id_number: Some("11010519491231002X".into()),
            ..Default::default()
        };
        let scopes = |x: &Applicant| {
            subjects(x)
                .into_iter()
                .map(|(k, v)| key.scope(k, &v))
                .collect::<Vec<_>>()
        };
        assert_eq!(scopes(&a), scopes(&b));
        for s in scopes(&a) {
            assert!(s.starts_with("subject:") && s.len() == 8 + 32, "{s}");
            assert!(!s.contains("13800138000") && !s.contains("8000"));
        }
        // Another key, other scopes: the keys are not a plain hash anyone can recompute.
        let other = SubjectKey::derive(&[8u8; 32]);
        assert_ne!(
            key.scope("phone", "13800138000"),
            other.scope("phone", "13800138000")
        );
    }
}
