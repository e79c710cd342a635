//! The verification state machine: one pure step from (config, state, event, now).

use identifiers::{BankCard as CardNumber, Mobile, ResidentId, Timestamp};
use plugin_abi::doc::{
    Action, Applicant, ApplicantField, Challenge, ChallengeKind, Outcome, Status, StepInput,
    StepOutput, Timer,
};
use plugin_abi::flow::{self, Flow};
use plugin_abi::sdk::{self, StepError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Config;
use crate::vendor::{post_json, InFlight, RetryPolicy};

/// Id of the 4-element request (the bank sends the code on success).
pub const BANK_INIT: &str = "bank-init";
/// Id of the request confirming the code the user typed.
pub const BANK_CONFIRM: &str = "bank-confirm";
/// Id of the timer that ends the challenge when the code expires.
pub const OTP_EXPIRY_TIMER: &str = "otp-expiry";

/// Where the verification stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the bank's 4-element verdict.
    Init,
    /// Waiting for the user to type the code.
    AwaitCode,
    /// Waiting for the bank to confirm the typed code.
    Confirm,
    /// Finished; the bank token has been dropped.
    Done,
}

/// The opaque state the host persists between steps. Holds no card or ID number: they are only
/// in the `bank-init` request while it is in flight.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Phase.
    pub phase: Phase,
    /// Masked reserved phone for the challenge.
    pub phone_masked: String,
    /// Masked card for the challenge.
    pub card_masked: String,
    /// Whether the card number passed Luhn (a warning only; the bank decides).
    pub luhn_ok: bool,
    /// The request in flight.
    #[serde(default)]
    pub inflight: InFlight,
    /// The bank's token for `confirm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the code expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_expires: Option<i64>,
    /// Wrong codes so far.
    #[serde(default)]
    pub wrong_codes: u32,
    /// Bank's request id (evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_request_id: Option<String>,
}

/// Bank answer to `init`.
#[derive(Deserialize)]
struct InitAnswer {
    result: String,
    #[serde(default)]
    token: Option<String>,
}

/// Bank answer to `confirm`.
#[derive(Deserialize)]
struct ConfirmAnswer {
    result: String,
    #[serde(default)]
    bank_request_id: Option<String>,
}

struct Ctx<'a> {
    cfg: &'a Config,
    vid: &'a str,
    now: Timestamp,
}

/// Runs one step.
pub fn step(cfg: &Config, input: StepInput) -> Result<StepOutput, StepError> {
    let now = Timestamp::parse(&input.now)
        .map_err(|_| StepError::InvalidArgument("now is not an RFC 3339 time".into()))?;
    let ctx = Ctx {
        cfg,
        vid: &input.verification_id,
        now,
    };
    flow::dispatch(&ctx, &input.state, input.event)
}

impl Flow for Ctx<'_> {
    type State = State;
    const NAME: &'static str = "bank-card";
    const CHALLENGE: Option<ChallengeKind> = Some(ChallengeKind::SmsCode);
    const PROVES: &'static [ApplicantField] = &[
        ApplicantField::Name,
        ApplicantField::IdNumber,
        ApplicantField::Phone,
        ApplicantField::BankCard,
    ];
    const ASSURANCE: &'static str = "L2";

    fn in_flight(s: &mut State) -> &mut InFlight {
        &mut s.inflight
    }

    fn retry(&self) -> RetryPolicy {
        self.cfg.retry()
    }

    fn is_finished(s: &State) -> bool {
        s.phase == Phase::Done
    }

    fn status(s: &State) -> Status {
        match s.phase {
            Phase::AwaitCode => Status::AwaitingUser,
            Phase::Done => Status::Failed,
            _ => Status::Pending,
        }
    }

    fn on_input(&self, s: State, data: &str) -> Result<StepOutput, StepError> {
        self.on_code(s, data)
    }

    /// The state kept after the end: nothing in flight, no token.
    fn finished(s: State) -> State {
        State {
            phase: Phase::Done,
            inflight: InFlight::default(),
            token: None,
            code_expires: None,
            ..s
        }
    }

    fn start(&self, a: Applicant) -> Result<StepOutput, StepError> {
        let name = a.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() {
            return Err(StepError::InvalidArgument(
                "applicant name is required".into(),
            ));
        }
        let blank = State {
            phase: Phase::Done,
            phone_masked: String::new(),
            card_masked: String::new(),
            luhn_ok: false,
            inflight: InFlight::default(),
            token: None,
            code_expires: None,
            wrong_codes: 0,
            bank_request_id: None,
        };
        let today = self
            .now
            .utc_date()
            .map_err(|_| StepError::InvalidArgument("now is out of range".into()))?;
        let Ok(id) = ResidentId::parse(a.id_number.as_deref().unwrap_or_default(), today) else {
            return self.fail(blank, Outcome::InvalidIdNumber);
        };
        let Ok(phone) = Mobile::parse(a.phone.as_deref().unwrap_or_default()) else {
            return self.fail(blank, Outcome::InvalidPhone);
        };
        let Ok(card) = CardNumber::parse(a.bank_card.as_deref().unwrap_or_default()) else {
            return self.fail(blank, Outcome::InvalidCard);
        };
        let mut s = State {
            phase: Phase::Init,
            phone_masked: phone.masked(),
            card_masked: card.masked(),
            luhn_ok: card.luhn_ok(),
            ..blank
        };
        let body = json!({
            "order_id": format!("{}:bank", self.vid),
            "name": name,
            "id_number": id.as_str(),
            "card_number": card.as_str(),
            "phone": phone.as_str(),
        });
        let action = s.inflight.send(post_json(
            BANK_INIT,
            &self.cfg.bank_url,
            "/bank/v1/auth/init",
            "bank_api_key",
            &body,
            self.cfg.timeout_ms,
        ));
        self.out(s, vec![action])
    }

    fn on_answer(&self, mut s: State, body: String) -> Result<StepOutput, StepError> {
        match s.phase {
            Phase::Init => {
                let Ok(a) = serde_json::from_str::<InitAnswer>(&body) else {
                    return self.fail(s, Outcome::VendorUnavailable);
                };
                match (a.result.as_str(), a.token) {
                    ("code_sent", Some(token)) => self.challenge(s, token),
                    ("mismatch", _) => self.fail(s, Outcome::Mismatch),
                    ("card_invalid" | "card_expired", _) => self.fail(s, Outcome::CardInvalid),
                    ("card_lost", _) => self.fail(s, Outcome::CardLost),
                    ("card_restricted" | "cnp_disabled", _) => {
                        self.fail(s, Outcome::CardRestricted)
                    }
                    _ => self.fail(s, Outcome::VendorUnavailable),
                }
            }
            Phase::Confirm => {
                let Ok(a) = serde_json::from_str::<ConfirmAnswer>(&body) else {
                    return self.fail(s, Outcome::VendorUnavailable);
                };
                match a.result.as_str() {
                    "verified" => {
                        s.bank_request_id = a.bank_request_id;
                        self.succeed(s)
                    }
                    "wrong_code" => self.wrong_code(s),
                    "unknown_token" | "expired" => self.fail(s, Outcome::OtpExpired),
                    _ => self.fail(s, Outcome::VendorUnavailable),
                }
            }
            Phase::AwaitCode | Phase::Done => self.unchanged(s),
        }
    }

    fn on_timer(&self, s: State, id: &str) -> Result<StepOutput, StepError> {
        match id {
            // Re-armed for the time left when it fires early (host clock ahead of ours).
            OTP_EXPIRY_TIMER if s.phase == Phase::AwaitCode => {
                let expires = s.code_expires.unwrap_or_default();
                match flow::code_expiry_timer(OTP_EXPIRY_TIMER, expires, self.now.unix()) {
                    Some(timer) => self.out(s, vec![timer]),
                    None => self.fail(s, Outcome::OtpExpired),
                }
            }
            _ => self.on_retry_timer(s, id),
        }
    }

    fn evidence(&self, s: &State) -> Value {
        json!({"vendor_request_id": s.bank_request_id, "luhn_ok": s.luhn_ok})
    }
}

impl Ctx<'_> {
    fn challenge(&self, mut s: State, token: String) -> Result<StepOutput, StepError> {
        let expires = self.now.plus_secs(i64::from(self.cfg.code_ttl_secs));
        s.phase = Phase::AwaitCode;
        s.token = Some(token);
        s.code_expires = Some(expires.unix());
        let challenge = code_challenge(&s);
        let timer = Action::Timer(Timer {
            id: OTP_EXPIRY_TIMER.into(),
            after_ms: u64::from(self.cfg.code_ttl_secs) * 1000,
        });
        self.out(s, vec![challenge, timer])
    }

    fn expired(&self, s: &State) -> bool {
        s.code_expires.is_some_and(|t| self.now.unix() >= t)
    }

    fn on_code(&self, mut s: State, data: &str) -> Result<StepOutput, StepError> {
        if s.phase != Phase::AwaitCode {
            return Err(StepError::InvalidArgument(
                "no code is being asked for".into(),
            ));
        }
        if self.expired(&s) {
            return self.fail(s, Outcome::OtpExpired);
        }
        let code = data.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return self.wrong_code(s);
        }
        let Some(token) = s.token.clone() else {
            return Err(StepError::State(
                "no bank token while awaiting a code".into(),
            ));
        };
        s.phase = Phase::Confirm;
        let action = s.inflight.send(post_json(
            BANK_CONFIRM,
            &self.cfg.bank_url,
            "/bank/v1/auth/confirm",
            "bank_api_key",
            &json!({"token": token, "code": code}),
            self.cfg.timeout_ms,
        ));
        self.out(s, vec![action])
    }

    fn wrong_code(&self, mut s: State) -> Result<StepOutput, StepError> {
        s.wrong_codes += 1;
        if s.wrong_codes >= self.cfg.max_attempts {
            return self.fail(s, Outcome::OtpAttemptsExceeded);
        }
        s.phase = Phase::AwaitCode;
        let evidence = json!({"attempts_left": self.cfg.max_attempts - s.wrong_codes});
        let again = code_challenge(&s); // shown again: the same code, the same expiry
        let mut out = self.out(s, vec![again])?;
        out.result = sdk::failed(Value::Null, Outcome::OtpWrong, evidence).result;
        Ok(out)
    }
}

/// The `sms_code` challenge for the code in `s` (its expiry is the code's).
fn code_challenge(s: &State) -> Action {
    let expires = Timestamp::from_unix(s.code_expires.unwrap_or_default());
    Action::Challenge(Challenge {
        kind: ChallengeKind::SmsCode,
        payload: json!({
            "phone_masked": s.phone_masked,
            "card_masked": s.card_masked,
            "length": 6,
            "sent_by": "bank",
        }),
        expires_at: expires.to_string(),
    })
}
