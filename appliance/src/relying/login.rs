//! QR login: a relying party creates a challenge and shows its payload as a QR code; the phone
//! app signs the payload's exact UTF-8 bytes with its certificate's key and posts certificate
//! and signature through its channel; the appliance checks signature, chain, validity, status
//! (its own database, read in the transaction that records the answer), level, and that the
//! challenge is pending, unexpired and bound to the relying party that reads it.

use base64::Engine as _;
use der::Decode;
use rand::RngCore;
use serde::Serialize;
use x509_cert::Certificate;

use super::callback::{CallbackBody, CallbackRefusal, CallbackTargets};
use super::signature::{self, Scheme, SignatureError};
use super::trust::{Level, Refusal, Trust};
use crate::storage::{
    Answer, Answered, AuditEntry, ChallengeRow, LoginRows, NewChallenge, NewNotification,
    StorageError,
};

/// Largest certificate PEM accepted in a response.
const MAX_CERTIFICATE_PEM: usize = 16 * 1024;
/// Largest signature accepted (RSA-8192 is 1 KiB).
const MAX_SIGNATURE: usize = 2048;

/// Why a login request was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// `min_level` is not L1, L2 or L3.
    #[error("min_level must be L1, L2 or L3")]
    InvalidLevel,
    /// The callback URL may not be used by this relying party.
    #[error("{0}")]
    CallbackRefused(CallbackRefusal),
    /// The callback delivery could not be queued.
    #[error("the callback could not be queued: {0}")]
    Callback(String),
    /// No such challenge (or not this relying party's).
    #[error("no such login challenge")]
    NotFound,
    /// Already answered.
    #[error("the challenge was already answered")]
    Used,
    /// Past its expiry.
    #[error("the challenge has expired")]
    Expired,
    /// The certificate is not a PEM X.509 certificate.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// The signature is not base64, or too long.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    /// Unknown algorithm name, or one that does not fit the key; unsupported key.
    #[error("{0}")]
    Unsupported(SignatureError),
    /// The signature does not verify over this challenge's payload.
    #[error("the signature does not verify over this challenge with the certificate's key")]
    SignatureInvalid,
    /// The certificate may not be relied on: the challenge is now `refused` with this reason.
    #[error("{0}")]
    Refused(Refusal),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A created challenge.
#[derive(Debug, Serialize)]
pub struct Created {
    /// `lc_...`.
    pub id: String,
    /// The exact text to show as a QR code and to sign.
    pub qr: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A challenge as its relying party reads it.
#[derive(Debug, Serialize)]
pub struct LoginView {
    /// `lc_...`.
    pub id: String,
    /// `pending`, `approved`, `refused` or `expired`.
    pub status: String,
    /// Why refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The certificate subject, personal parts masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<serde_json::Value>,
    /// The certificate's assurance level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The certificate's serial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The level asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_level: Option<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

impl LoginView {
    fn of(row: ChallengeRow, now: i64) -> Self {
        let status = if row.status == "pending" && now >= row.expires_at {
            "expired".to_owned()
        } else {
            row.status
        };
        Self {
            id: row.id,
            status,
            reason: row.reason,
            subject: row.subject.and_then(|s| serde_json::from_str(&s).ok()),
            level: row.level,
            serial: row.serial,
            min_level: row.min_level,
            expires_at: row.expires_at,
        }
    }
}

/// Creates, answers and shows login challenges.
#[derive(Clone)]
pub struct LoginService {
    rows: LoginRows,
    trust: Trust,
    ttl_secs: i64,
    callbacks: Option<Callbacks>,
}

/// What login callbacks need: the relying parties' allowlists and the outbox that delivers.
#[derive(Clone)]
struct Callbacks {
    targets: CallbackTargets,
    outbox: std::sync::Arc<crate::notify::Outbox>,
}

impl LoginService {
    /// A service over the stored challenges, checking certificates with `trust`.
    pub fn new(rows: LoginRows, trust: Trust, settings: &super::LoginSettings) -> Self {
        Self {
            rows,
            trust,
            ttl_secs: i64::from(settings.challenge_ttl_secs),
            callbacks: None,
        }
    }

    /// Enables callbacks: URLs checked against `targets`, results delivered by `outbox`.
    pub fn with_callbacks(
        mut self,
        targets: CallbackTargets,
        outbox: std::sync::Arc<crate::notify::Outbox>,
    ) -> Self {
        outbox.set_callback_targets(targets.clone());
        self.callbacks = Some(Callbacks { targets, outbox });
        self
    }

    /// The sealed callback delivery of a decided challenge, if it asked for one.
    async fn callback_delivery(
        &self,
        row: &ChallengeRow,
        answer: &Answer,
        now: i64,
        reload: bool,
    ) -> Result<Option<NewNotification>, LoginError> {
        let (Some(url), Some(cb)) = (&row.callback, &self.callbacks) else {
            return Ok(None);
        };
        let body = |delivery_id: &str| {
            let body = CallbackBody {
                v: 1,
                delivery_id: delivery_id.to_owned(),
                event: if answer.status == "expired" {
                    "login.expired".into()
                } else {
                    "login.decided".into()
                },
                challenge: row.id.clone(),
                status: answer.status.to_owned(),
                reason: answer.reason.clone(),
                subject: answer
                    .subject
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok()),
                level: answer.level.clone(),
                serial: answer.serial.clone(),
                decided_at: now,
            };
            serde_json::to_string(&body).unwrap_or_default()
        };
        cb.outbox
            .seal_callback(&row.relying_party, url, body, reload)
            .await
            .map(Some)
            .map_err(|e| LoginError::Callback(e.to_string()))
    }

    /// A new challenge bound to `relying_party`, asking for `min_level`, its result POSTed to
    /// `callback` (which must be under one of the relying party's allowed URLs).
    pub async fn create(
        &self,
        relying_party: &str,
        min_level: Option<&str>,
        callback: Option<&str>,
        actor: &str,
    ) -> Result<Created, LoginError> {
        let min_level = match min_level {
            None => None,
            Some(l) => Some(Level::parse(l).ok_or(LoginError::InvalidLevel)?),
        };
        let callback = match callback {
            None => None,
            Some(url) => {
                let targets = self
                    .callbacks
                    .as_ref()
                    .map(|c| &c.targets)
                    .ok_or(LoginError::CallbackRefused(CallbackRefusal::NotConfigured))?;
                let (url, _) = targets
                    .check(relying_party, url)
                    .map_err(LoginError::CallbackRefused)?;
                Some(url)
            }
        };
        let mut id = [0u8; 16];
        let mut nonce = [0u8; 32];
        {
            let mut rng = rand::thread_rng();
            rng.fill_bytes(&mut id);
            rng.fill_bytes(&mut nonce);
        }
        let id = format!("lc_{}", hex::encode(id));
        let now = crate::storage::unix_now();
        let expires_at = now + self.ttl_secs;
        let payload = payload(&id, &nonce, expires_at, relying_party);
        let challenge = NewChallenge {
            id: id.clone(),
            relying_party: relying_party.to_owned(),
            payload: payload.clone(),
            min_level: min_level.map(|l| l.as_str().to_owned()),
            created_at: now,
            expires_at,
            callback,
        };
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "login.challenge".into(),
            target: id.clone(),
            detail: serde_json::json!({
                "min_level": challenge.min_level,
                "expires_at": expires_at,
                "callback": challenge.callback,
            }),
        };
        self.rows.insert(&challenge, &audit).await?;
        Ok(Created {
            id,
            qr: payload,
            expires_at,
        })
    }

    /// The challenge `id` as `relying_party` sees it (another relying party's is not found).
    pub async fn view(&self, id: &str, relying_party: &str) -> Result<LoginView, LoginError> {
        let row = self
            .rows
            .get(id)
            .await?
            .filter(|r| r.relying_party == relying_party)
            .ok_or(LoginError::NotFound)?;
        Ok(LoginView::of(row, crate::storage::unix_now()))
    }

    /// The phone's answer, posted by `channel`: the certificate (PEM), the signature (base64)
    /// over the challenge payload, and the scheme (`None`: the key's default).
    pub async fn answer(
        &self,
        id: &str,
        channel: &str,
        certificate_pem: &str,
        signature_b64: &str,
        algorithm: Option<&str>,
    ) -> Result<LoginView, LoginError> {
        let certificate = parse_certificate(certificate_pem)?;
        let signature = parse_signature(signature_b64)?;
        let spki = &certificate.tbs_certificate.subject_public_key_info;
        let family = signature::key_family(spki).map_err(LoginError::Unsupported)?;
        let scheme = match algorithm {
            None => Scheme::default_for(family),
            Some(name) => Scheme::from_name(name).ok_or_else(|| {
                LoginError::Unsupported(SignatureError::UnsupportedAlgorithm(name.to_owned()))
            })?,
        };
        // Two rounds at most: an approval that lost a race with a revocation is judged again.
        for _ in 0..2 {
            let row = self.rows.get(id).await?.ok_or(LoginError::NotFound)?;
            let now = crate::storage::unix_now();
            if row.status == "expired" {
                return Err(LoginError::Expired);
            }
            if row.status != "pending" {
                return Err(LoginError::Used);
            }
            if now >= row.expires_at {
                return Err(LoginError::Expired);
            }
            match signature::verify(spki, scheme, row.payload.as_bytes(), &signature) {
                Ok(()) => {}
                Err(SignatureError::Invalid) => return Err(LoginError::SignatureInvalid),
                Err(other) => return Err(LoginError::Unsupported(other)),
            }
            let min_level = row.min_level.as_deref().and_then(Level::parse);
            let verdict = self.trust.check(&certificate, now, min_level).await?;
            let answer = match &verdict {
                Ok(known) => Answer {
                    status: "approved",
                    reason: None,
                    serial: Some(known.serial.clone()),
                    level: known.level.map(|l| l.as_str().to_owned()),
                    subject: Some(known.subject.to_string()),
                    channel: channel.to_owned(),
                },
                Err(refusal) => Answer {
                    status: "refused",
                    reason: Some(refusal.code().to_owned()),
                    serial: None,
                    level: None,
                    subject: None,
                    channel: channel.to_owned(),
                },
            };
            let audit = AuditEntry {
                actor: format!("channel:{channel}"),
                action: format!("login.{}", answer.status),
                target: id.to_owned(),
                detail: serde_json::json!({
                    "relying_party": row.relying_party,
                    "serial": answer.serial,
                    "reason": answer.reason,
                }),
            };
            let mut outcome = Answered::KeyChanged;
            let mut reload = false;
            // A rotation between sealing and committing: seal again under the new key.
            while outcome == Answered::KeyChanged {
                let delivery = self.callback_delivery(&row, &answer, now, reload).await?;
                outcome = self
                    .rows
                    .answer(id, now, &answer, &audit, delivery.as_ref())
                    .await?;
                if outcome == Answered::KeyChanged && reload {
                    return Err(LoginError::Callback(
                        "the personal-data key changed twice while queuing".into(),
                    ));
                }
                reload = true;
                if outcome == Answered::Yes && delivery.is_some() {
                    if let Some(cb) = &self.callbacks {
                        cb.outbox.wake();
                    }
                }
            }
            if outcome == Answered::Yes {
                return match verdict {
                    Ok(_) => self.view(id, &row.relying_party).await,
                    Err(refusal) => Err(LoginError::Refused(refusal)),
                };
            }
        }
        // Still racing after two rounds: report what the challenge is now.
        let row = self.rows.get(id).await?.ok_or(LoginError::NotFound)?;
        if row.status != "pending" && row.status != "expired" {
            Err(LoginError::Used)
        } else {
            Err(LoginError::Expired)
        }
    }
}

/// How often expired challenges with a callback are looked for (the callback of an expiry
/// leaves within about this long after it).
pub const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Challenges expired per sweep round.
const EXPIRY_BATCH: i64 = 100;

impl LoginService {
    /// Marks every pending challenge with a callback whose lifetime ended `expired` and queues
    /// its callback (event `login.expired`); returns how many. Several nodes may sweep at once:
    /// the database lets one of them mark each challenge.
    pub async fn expire_due(&self) -> Result<usize, LoginError> {
        let Some(cb) = &self.callbacks else {
            return Ok(0);
        };
        let mut expired = 0;
        loop {
            let now = crate::storage::unix_now();
            let rows = self.rows.expired_with_callback(now, EXPIRY_BATCH).await?;
            let full = rows.len() as i64 == EXPIRY_BATCH;
            let mut progressed = false;
            for row in rows {
                let answer = Answer {
                    status: "expired",
                    reason: None,
                    serial: None,
                    level: None,
                    subject: None,
                    channel: String::new(),
                };
                let audit = AuditEntry {
                    actor: "system:login".into(),
                    action: "login.expired".into(),
                    target: row.id.clone(),
                    detail: serde_json::json!({ "relying_party": row.relying_party }),
                };
                let mut reload = false;
                loop {
                    let Some(delivery) = self.callback_delivery(&row, &answer, now, reload).await?
                    else {
                        break;
                    };
                    match self.rows.expire(&row.id, now, &audit, &delivery).await? {
                        Answered::KeyChanged if !reload => reload = true,
                        Answered::KeyChanged => {
                            return Err(LoginError::Callback(
                                "the personal-data key changed twice while queuing".into(),
                            ))
                        }
                        Answered::Yes => {
                            expired += 1;
                            progressed = true;
                            break;
                        }
                        Answered::Lost => break,
                    }
                }
            }
            if !full || !progressed {
                break;
            }
        }
        if expired > 0 {
            cb.outbox.wake();
        }
        Ok(expired)
    }

    /// Runs [`LoginService::expire_due`] every [`EXPIRY_SWEEP`] for ever.
    pub fn spawn_expiry(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRY_SWEEP);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.expire_due().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(expired = n, "login challenges expired; called back"),
                    Err(e) => tracing::warn!(error = %e, "login challenge expiry sweep failed"),
                }
            }
        })
    }
}

/// The signed text: `ca-login:v1;id=<id>;nonce=<base64url 32 bytes>;exp=<unix>;rp=<name>`,
/// the relying party's name percent-encoded outside `[A-Za-z0-9._-]`.
fn payload(id: &str, nonce: &[u8], expires_at: i64, relying_party: &str) -> String {
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce);
    let mut rp = String::new();
    for b in relying_party.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            rp.push(char::from(b));
        } else {
            rp.push_str(&format!("%{b:02X}"));
        }
    }
    format!("ca-login:v1;id={id};nonce={nonce};exp={expires_at};rp={rp}")
}

/// The first certificate of a PEM text.
pub fn parse_certificate(pem: &str) -> Result<Certificate, LoginError> {
    if pem.len() > MAX_CERTIFICATE_PEM {
        return Err(LoginError::MalformedCertificate(format!(
            "larger than {MAX_CERTIFICATE_PEM} bytes"
        )));
    }
    let pem = pem.trim();
    let end = "-----END CERTIFICATE-----";
    let first = pem.find(end).map_or(pem, |i| &pem[..i + end.len()]);
    let (label, der) = pem_rfc7468::decode_vec(first.as_bytes())
        .map_err(|e| LoginError::MalformedCertificate(format!("PEM: {e}")))?;
    if label != "CERTIFICATE" {
        return Err(LoginError::MalformedCertificate(format!(
            "PEM label is {label:?}, expected \"CERTIFICATE\""
        )));
    }
    Certificate::from_der(&der).map_err(|e| LoginError::MalformedCertificate(format!("DER: {e}")))
}

fn parse_signature(b64: &str) -> Result<Vec<u8>, LoginError> {
    if b64.len() > MAX_SIGNATURE * 2 {
        return Err(LoginError::MalformedSignature("too long".into()));
    }
    let sig = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| LoginError::MalformedSignature(format!("base64: {e}")))?;
    if sig.is_empty() || sig.len() > MAX_SIGNATURE {
        return Err(LoginError::MalformedSignature("empty or too long".into()));
    }
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_names_the_challenge_and_encodes_the_relying_party() {
        let p = payload("lc_00", &[0xfb; 3], 1_700_000_000, "portal gov;x");
        assert_eq!(
            p,
            "ca-login:v1;id=lc_00;nonce=-_v7;exp=1700000000;rp=portal%20gov%3Bx"
        );
    }

    #[test]
    fn a_signature_that_is_not_base64_is_malformed() {
        assert!(matches!(
            parse_signature("not base64!"),
            Err(LoginError::MalformedSignature(_))
        ));
    }
}
