//! The simulator's mutable state: codes sent, sessions, payouts, faults, call counters.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;

/// The simulated vendor APIs (also the unit of fault injection and call counting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Carrier 3-element check.
    Carrier,
    /// SMS gateway.
    Sms,
    /// Bank 4-element check.
    Bank,
    /// Face vendor (API only, not the user page).
    Face,
    /// Payout provider.
    Payout,
    /// Organisation registry.
    Registry,
    /// Mail gateway.
    Mail,
    /// A partner platform's webhook receiver (`/partner/{name}`).
    Partner,
}

impl Api {
    /// The API that owns a request path, if any.
    pub fn from_path(path: &str) -> Option<Api> {
        let first = path.trim_start_matches('/').split('/').next()?;
        Some(match first {
            "carrier" => Api::Carrier,
            "sms" => Api::Sms,
            "bank" => Api::Bank,
            "face" => Api::Face,
            "payout" => Api::Payout,
            "registry" => Api::Registry,
            "mail" => Api::Mail,
            "partner" => Api::Partner,
            _ => return None,
        })
    }
}

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Value required in the `x-api-key` header of every vendor API call.
    pub api_key: String,
    /// Base URL used in links the simulator hands out (face page); empty = bound address.
    pub public_base: String,
    /// How long a payout stays `processing` before it settles.
    pub payout_settle: Duration,
    /// Secret that signs callbacks (`X-CA-Timestamp`, `X-CA-Signature`); `None` sends them
    /// unsigned.
    pub callback_secret: Option<String>,
    /// Secret the partner webhook sink checks signatures with; `None`: recorded, not checked.
    pub partner_secret: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_key: "sim-key".into(),
            public_base: String::new(),
            payout_settle: Duration::ZERO,
            callback_secret: None,
            partner_secret: None,
        }
    }
}

/// What an injected fault does to the next calls of one API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this HTTP status (e.g. 503) and a JSON error body.
    Status {
        /// Status code to return.
        status: u16,
    },
    /// Wait this long before answering normally (to trip the caller's timeout).
    Delay {
        /// Delay in milliseconds.
        delay_ms: u64,
    },
}

/// A pending fault.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// Calls left to affect.
    pub remaining: u32,
    /// What to do.
    pub kind: FaultKind,
}

/// A code "sent" by SMS (readable through `/_sim/sms`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SentSms {
    /// Gateway id of the code.
    pub otp_id: String,
    /// Which API sent it (`sms` or `bank`).
    pub sender: Api,
    /// The code (for a text message: its first run of 4 to 8 digits, if any).
    pub code: String,
    /// The whole text, for messages sent through `/sms/v1/message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// An e-mail "sent" through `/mail/v1/send` (readable through `/_sim/mail`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SentMail {
    /// Sender, if given.
    pub from: Option<String>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
}

/// A call a partner webhook received (readable through `/_sim/webhooks`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceivedHook {
    /// `x-ca-timestamp` header.
    pub timestamp: Option<String>,
    /// `x-ca-signature` header.
    pub signature: Option<String>,
    /// Whether the signature checks out under the partner secret (`None`: no secret set).
    pub signature_valid: Option<bool>,
    /// The body as JSON (`null` if it is not JSON).
    pub body: serde_json::Value,
    /// The HTTP status the sink answered.
    pub answered: u16,
}

/// An issued one-time code.
#[derive(Debug, Clone)]
pub struct Otp {
    /// The code.
    pub code: String,
    /// Set once verified successfully.
    pub used: bool,
}

/// A bank 4-element order awaiting its code.
#[derive(Debug, Clone)]
pub struct BankOrder {
    /// The code sent to the reserved phone.
    pub otp_id: String,
    /// Bank's request id (evidence).
    pub bank_request_id: String,
}

/// State of a face session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaceStatus {
    /// Waiting for the person.
    Pending,
    /// Completed: verdict available.
    Done,
    /// The person cancelled on the page.
    Cancelled,
    /// The token expired.
    Expired,
}

/// A face liveness session.
#[derive(Debug, Clone)]
pub struct FaceSession {
    /// Whose face (ID number; decides the verdict).
    pub id_number: String,
    /// Status.
    pub status: FaceStatus,
    /// Where to POST the notification, if given.
    pub callback_url: Option<String>,
    /// Vendor request id (evidence).
    pub request_id: String,
}

/// Final state of a payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutFinal {
    /// Paid.
    Paid,
    /// Failed: account closed / unknown.
    AccountClosed,
    /// Failed: account frozen.
    AccountFrozen,
    /// Failed: the holder name differs.
    NameMismatch,
}

/// A micro-deposit payout.
#[derive(Debug, Clone)]
pub struct Payout {
    /// Account paid to.
    pub account: String,
    /// Amount in fen (1-99).
    pub amount_fen: u32,
    /// Remark the payer chose (a public reference).
    pub remark: String,
    /// 6-digit verification code drawn by the provider, printed after the remark.
    pub code: String,
    /// What it will settle to.
    pub outcome: PayoutFinal,
    /// When it was created.
    pub created: Instant,
    /// Notification URL, if given.
    pub callback_url: Option<String>,
}

/// Everything mutable.
#[derive(Debug, Default)]
pub struct Inner {
    /// Codes sent, by phone, oldest first.
    pub sms: HashMap<String, Vec<SentSms>>,
    /// Idempotency of text messages: request id -> message id.
    pub message_by_request: HashMap<String, String>,
    /// E-mails sent, by address, oldest first.
    pub mail: HashMap<String, Vec<SentMail>>,
    /// Idempotency of e-mails: request ids seen.
    pub mail_requests: std::collections::HashSet<String>,
    /// Partner webhook calls, by partner name, oldest first.
    pub hooks: HashMap<String, Vec<ReceivedHook>>,
    /// Issued codes by otp id.
    pub otps: HashMap<String, Otp>,
    /// Idempotency: request id -> otp id.
    pub otp_by_request: HashMap<String, String>,
    /// Bank orders by token.
    pub bank_orders: HashMap<String, BankOrder>,
    /// Idempotency: order id -> token.
    pub bank_by_order: HashMap<String, String>,
    /// Face sessions by biz token.
    pub faces: HashMap<String, FaceSession>,
    /// Idempotency: request id -> biz token.
    pub face_by_request: HashMap<String, String>,
    /// Payouts by id.
    pub payouts: HashMap<String, Payout>,
    /// Idempotency: request id -> payout id.
    pub payout_by_request: HashMap<String, String>,
    /// Pending faults per API.
    pub faults: HashMap<Api, Fault>,
    /// Calls received per API.
    pub calls: HashMap<Api, u64>,
    /// Calls received per `METHOD /path` (exact endpoint counts for tests).
    pub paths: std::collections::BTreeMap<String, u64>,
    /// Counter for ids.
    pub next_id: u64,
}

impl Inner {
    /// A fresh id with a prefix (`otp_1`, `face_2`, ...).
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{}", self.next_id)
    }

    /// Issues a 6-digit code and records it as sent to `phone`.
    pub fn send_code(&mut self, phone: &str, sender: Api) -> String {
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32));
        let otp_id = self.new_id("otp");
        self.otps.insert(
            otp_id.clone(),
            Otp {
                code: code.clone(),
                used: false,
            },
        );
        self.sms.entry(phone.to_owned()).or_default().push(SentSms {
            otp_id: otp_id.clone(),
            sender,
            code,
            text: None,
        });
        otp_id
    }

    /// Records a text message to `phone`; its code is the first run of 4-8 digits in it.
    pub fn send_text(&mut self, phone: &str, text: &str) -> String {
        let id = self.new_id("msg");
        let code = text
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| (4..=8).contains(&run.len()))
            .unwrap_or_default()
            .to_owned();
        self.sms.entry(phone.to_owned()).or_default().push(SentSms {
            otp_id: id.clone(),
            sender: Api::Sms,
            code,
            text: Some(text.to_owned()),
        });
        id
    }
}

/// The shared simulator state.
#[derive(Debug)]
pub struct Sim {
    /// Start-up settings.
    pub config: Config,
    inner: Mutex<Inner>,
}

impl Sim {
    /// Fresh state.
    pub fn new(config: Config) -> Sim {
        Sim {
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Locks the state (a poisoned lock is recovered: the data stays usable for a simulator).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clears everything (codes, sessions, payouts, faults, counters).
    pub fn reset(&self) {
        *self.lock() = Inner::default();
    }

    /// Counts a call and takes one unit of a pending fault for `api`.
    pub fn on_call(&self, api: Api) -> Option<FaultKind> {
        let mut inner = self.lock();
        *inner.calls.entry(api).or_default() += 1;
        let fault = inner.faults.get_mut(&api)?;
        let kind = fault.kind;
        fault.remaining = fault.remaining.saturating_sub(1);
        if fault.remaining == 0 {
            inner.faults.remove(&api);
        }
        Some(kind)
    }
}
