//! The outbox's second delivery kind, `callback`: a relying party's login result POSTed to the
//! callback URL it gave, signed by the host like a channel webhook (`x-ca-timestamp`,
//! `x-ca-signature` = hex HMAC-SHA256 of `timestamp + "." + body` under the relying party's
//! `callback_secret`). The row is sealed like any delivery and committed by the caller in the
//! transaction that decides the challenge; retries, backoff and restarts are the outbox's.

use std::collections::BTreeMap;

use plugin_abi::channel::{ChannelHttp, Signing};
use plugin_abi::doc::HttpMethod;
use plugin_host::channel::{attempt, Attempt};
use plugin_host::{EgressPolicy, Secret};

use super::outbox::{new_id, storage, Outbox, Step};
use crate::contact::NotifyError;
use crate::relying::callback::{CallbackRequest, CallbackTargets};
use crate::storage::{unix_now, NewNotification};
use crate::verification::seal::{Field, SealError};

/// `notifications.kind` of a relying-party callback.
pub const CALLBACK_KIND: &str = "callback";
/// Name of the signing secret inside the per-delivery egress policy.
const SECRET_NAME: &str = "callback";
/// Timeout of one callback attempt.
const TIMEOUT_MS: u32 = 10_000;

impl Outbox {
    /// Sets the relying parties' callback settings (allowlists and signing keys).
    pub fn set_callback_targets(&self, targets: CallbackTargets) {
        *self
            .callback_targets
            .write()
            .unwrap_or_else(|p| p.into_inner()) = targets;
    }

    /// A callback delivery for `relying_party` to `url`, its body made by `body` from the
    /// delivery id, sealed under the active data key (after reloading the keys when `reload`),
    /// for the caller to commit in its own transaction.
    pub async fn seal_callback(
        &self,
        relying_party: &str,
        url: &str,
        body: impl FnOnce(&str) -> String,
        reload: bool,
    ) -> Result<NewNotification, NotifyError> {
        let mut keys = self.keyring.current();
        if reload {
            keys = self.keyring.reload(&keys).await.map_err(storage)?;
        }
        let key = keys
            .active()
            .map_err(|e: SealError| storage(e.to_string()))?;
        let id = new_id();
        let request = CallbackRequest {
            relying_party: relying_party.to_owned(),
            url: url.to_owned(),
            body: body(&id),
        };
        let bytes = serde_json::to_vec(&request).map_err(storage)?;
        let sealed = key
            .seal(&id, Field::NotificationRequest, &bytes)
            .map_err(storage)?;
        Ok(NewNotification {
            id,
            channel: format!("relying_party:{relying_party}"),
            plugin: CALLBACK_KIND.to_owned(),
            kind: CALLBACK_KIND,
            key_id: key.id(),
            sealed_request: sealed,
            now: unix_now(),
        })
    }

    /// Wakes the delivery task (a caller committed a delivery itself).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// One attempt at a callback whose opened request is `bytes`.
    pub(super) async fn attempt_callback(&self, bytes: &[u8]) -> Step {
        let Ok(request) = serde_json::from_slice::<CallbackRequest>(bytes) else {
            return Step::Failed("the stored callback is not valid".into());
        };
        let (target, host_port) = {
            let targets = self
                .callback_targets
                .read()
                .unwrap_or_else(|p| p.into_inner());
            // Checked again: the operator may have withdrawn the URL or the relying party.
            match targets.check(&request.relying_party, &request.url) {
                Ok((_, host_port)) => match targets.get(&request.relying_party) {
                    Some(t) => (t.clone(), host_port),
                    None => return Step::Failed("the relying party has no callbacks".into()),
                },
                Err(e) => return Step::Failed(e.to_string()),
            }
        };
        let policy = EgressPolicy {
            plugin: format!("relying_party:{}", request.relying_party),
            hosts: vec![host_port],
            allow_plain_http: target.allow_plain_http(),
            secrets: BTreeMap::from([(SECRET_NAME.to_owned(), Secret::new(target.secret()))]),
        };
        let http = ChannelHttp {
            id: "callback".into(),
            method: HttpMethod::POST,
            url: request.url,
            headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
            body: Some(request.body),
            timeout_ms: TIMEOUT_MS,
            sign: Some(Signing {
                secret: SECRET_NAME.into(),
            }),
        };
        match attempt(&self.egress, &policy, &http).await {
            Attempt::Delivered { .. } => Step::Delivered,
            Attempt::Transient(e) => Step::Retry(format!("callback: {e}")),
            Attempt::Permanent(e) => Step::Failed(format!("callback: {e}")),
        }
    }
}
