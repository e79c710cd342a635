//! The verification state machine: one pure step from (config, state, event, now).

use identifiers::{mask_card, Timestamp};
use plugin_abi::doc::{
    Action, Applicant, ApplicantField, Challenge, ChallengeKind, Outcome, Status, StepInput,
    StepOutput, Timer,
};
use plugin_abi::flow::{self, Flow};
use plugin_abi::sdk::{self, StepError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::amount::{parse_entry, CODE_DIGITS};
use crate::config::Config;
use crate::vendor::{post_json, InFlight, RetryPolicy};

/// Id of the request creating the payout.
pub const PAYOUT_CREATE: &str = "payout-create";
/// Id of the request reading the payout's status (and, once paid, its amount).
pub const PAYOUT_QUERY: &str = "payout-query";
/// Id of the timer polling the payout's status.
pub const POLL_TIMER: &str = "poll-payout";

/// Where the verification stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the provider to accept the payout.
    Create,
    /// Waiting for the applicant to enter the amount (and watching for payout failures).
    AwaitAmount,
    /// Finished.
    Done,
}

/// The opaque state the host persists between steps.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Phase.
    pub phase: Phase,
    /// The request in flight.
    #[serde(default)]
    pub inflight: InFlight,
    /// The provider's payout id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    /// Remark code shown on the statement.
    pub remark: String,
    /// Masked account for the challenge.
    pub account_masked: String,
    /// End of the window (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// True once the provider reports the payout paid (no more polling for failures).
    #[serde(default)]
    pub paid: bool,
    /// True while a poll timer is set.
    #[serde(default)]
    pub poll_armed: bool,
    /// An entered amount (fen) waiting for the provider's status to be compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_fen: Option<u32>,
    /// The verification code entered with it (from the statement's remark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_code: Option<String>,
    /// Wrong amounts so far.
    #[serde(default)]
    pub wrong_amounts: u32,
}

#[derive(Deserialize)]
struct CreateAnswer {
    payout_id: String,
}

#[derive(Deserialize)]
struct StatusAnswer {
    status: String,
    #[serde(default)]
    amount_fen: Option<u32>,
    #[serde(default)]
    failure_reason: Option<String>,
    /// The secret code the provider drew and printed in the statement's remark.
    #[serde(default)]
    verification_code: Option<String>,
}

/// The remark code for a verification: 6 digits derived from its id (FNV-1a), so retries and
/// replays of the same verification always carry the same remark.
pub fn remark_code(verification_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in verification_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("CA{:06}", h % 1_000_000)
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
    const NAME: &'static str = "corporate-transfer";
    const CHALLENGE: Option<ChallengeKind> = Some(ChallengeKind::DepositAmount);
    const PROVES: &'static [ApplicantField] = &[
        ApplicantField::OrgName,
        ApplicantField::BankAccount,
        ApplicantField::BankName,
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
            Phase::Create => Status::Pending,
            Phase::AwaitAmount if s.entered_fen.is_some() => Status::Pending,
            Phase::AwaitAmount => Status::AwaitingUser,
            Phase::Done => Status::Failed,
        }
    }

    fn on_input(&self, s: State, data: &str) -> Result<StepOutput, StepError> {
        self.on_amount(s, data)
    }

    /// A payout notice only says "look now"; its body is not trusted.
    fn on_callback(&self, s: State, body: &Value) -> Result<StepOutput, StepError> {
        let ours = body.get("payout_id").and_then(Value::as_str) == s.payout_id.as_deref();
        if ours {
            self.query(s)
        } else {
            self.unchanged(s)
        }
    }

    /// The state kept after the end: nothing in flight, no timers, no entered amount.
    fn finished(s: State) -> State {
        State {
            phase: Phase::Done,
            inflight: InFlight::default(),
            poll_armed: false,
            entered_fen: None,
            entered_code: None,
            ..s
        }
    }

    fn start(&self, a: Applicant) -> Result<StepOutput, StepError> {
        let org = a.org_name.as_deref().map(str::trim).unwrap_or_default();
        if org.is_empty() {
            return Err(StepError::InvalidArgument(
                "organisation name is required".into(),
            ));
        }
        let account: String = a
            .bank_account
            .as_deref()
            .unwrap_or_default()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        let mut s = State {
            phase: Phase::Create,
            inflight: InFlight::default(),
            payout_id: None,
            remark: remark_code(self.vid),
            account_masked: mask_card(&account),
            deadline: None,
            paid: false,
            poll_armed: false,
            entered_fen: None,
            entered_code: None,
            wrong_amounts: 0,
        };
        let account_ok =
            (8..=32).contains(&account.len()) && account.bytes().all(|b| b.is_ascii_digit());
        if !account_ok {
            return self.fail(s, Outcome::AccountInvalid);
        }
        let mut body = json!({
            "request_id": format!("{}:payout", self.vid),
            "account_name": org,
            "account_number": account,
            "bank_name": a.bank_name.as_deref().unwrap_or_default().trim(),
            "remark": s.remark,
        });
        if let Some(u) = &self.cfg.callback_url {
            body["callback_url"] = json!(u.replace("{verification_id}", self.vid));
        }
        let action = s.inflight.send(post_json(
            PAYOUT_CREATE,
            &self.cfg.payout_url,
            "/payout/v1/transfers",
            "payout_api_key",
            &body,
            self.cfg.timeout_ms,
        ));
        self.out(s, vec![action])
    }

    fn on_answer(&self, s: State, body: String) -> Result<StepOutput, StepError> {
        match s.phase {
            Phase::Create => match serde_json::from_str::<CreateAnswer>(&body) {
                Ok(a) if !a.payout_id.is_empty() => self.challenge(s, a.payout_id),
                _ => self.fail(s, Outcome::VendorUnavailable),
            },
            Phase::AwaitAmount => match serde_json::from_str::<StatusAnswer>(&body) {
                Ok(a) => self.on_status(s, a),
                Err(_) => self.fail(s, Outcome::VendorUnavailable),
            },
            Phase::Done => self.unchanged(s),
        }
    }

    fn on_timer(&self, mut s: State, id: &str) -> Result<StepOutput, StepError> {
        match id {
            POLL_TIMER => {
                s.poll_armed = false;
                if s.phase == Phase::AwaitAmount && self.past_deadline(&s) {
                    return self.fail(s, Outcome::Expired);
                }
                if s.paid && s.entered_fen.is_none() {
                    return self.unchanged(s); // nothing left to watch for
                }
                self.query(s)
            }
            _ => self.on_retry_timer(s, id),
        }
    }

    fn evidence(&self, s: &State) -> Value {
        json!({"vendor_request_id": s.payout_id, "remark": s.remark})
    }
}

impl Ctx<'_> {
    fn challenge(&self, mut s: State, payout_id: String) -> Result<StepOutput, StepError> {
        let deadline = self.now.plus_secs(i64::from(self.cfg.window_secs));
        s.phase = Phase::AwaitAmount;
        s.payout_id = Some(payout_id);
        s.deadline = Some(deadline.unix());
        s.poll_armed = true;
        let challenge = self.amount_challenge(&s);
        self.out(s, vec![challenge, self.poll_timer()])
    }

    /// The `deposit_amount` challenge (expires with the window).
    fn amount_challenge(&self, s: &State) -> Action {
        let deadline = Timestamp::from_unix(s.deadline.unwrap_or_default());
        Action::Challenge(Challenge {
            kind: ChallengeKind::DepositAmount,
            payload: json!({
                "remark": s.remark,
                "code_digits": CODE_DIGITS,
                "enter": "the amount and the code printed after the remark, e.g. 0.37 123456",
                "account_masked": s.account_masked,
                "attempts_left": self.cfg.max_attempts.saturating_sub(s.wrong_amounts),
            }),
            expires_at: deadline.to_string(),
        })
    }

    fn poll_timer(&self) -> Action {
        Action::Timer(Timer {
            id: POLL_TIMER.into(),
            after_ms: self.cfg.poll_interval_ms,
        })
    }

    fn past_deadline(&self, s: &State) -> bool {
        s.deadline.is_some_and(|d| self.now.unix() >= d)
    }

    /// Reads the payout's status now unless a request is already in flight.
    fn query(&self, mut s: State) -> Result<StepOutput, StepError> {
        if s.phase != Phase::AwaitAmount || s.inflight.id().is_some() {
            return self.unchanged(s);
        }
        let Some(id) = s.payout_id.clone() else {
            return Err(StepError::State("no payout id while awaiting".into()));
        };
        let action = s.inflight.send(post_json(
            PAYOUT_QUERY,
            &self.cfg.payout_url,
            "/payout/v1/transfers/query",
            "payout_api_key",
            &json!({"payout_id": id}),
            self.cfg.timeout_ms,
        ));
        self.out(s, vec![action])
    }

    fn on_amount(&self, s: State, data: &str) -> Result<StepOutput, StepError> {
        if s.phase != Phase::AwaitAmount || s.entered_fen.is_some() {
            return Err(StepError::InvalidArgument(
                "no amount is being asked for".into(),
            ));
        }
        if self.past_deadline(&s) {
            return self.fail(s, Outcome::Expired);
        }
        let Ok((fen, code)) = parse_entry(data) else {
            return self.wrong_amount(s); // cannot be right: an attempt spent
        };
        let mut s = s;
        s.entered_fen = Some(fen);
        s.entered_code = Some(code);
        if s.inflight.id().is_some() {
            return self.unchanged(s); // the status read in flight will settle it
        }
        self.query(s)
    }

    fn on_status(&self, mut s: State, a: StatusAnswer) -> Result<StepOutput, StepError> {
        match a.status.as_str() {
            "failed" => match a.failure_reason.as_deref() {
                Some("account_name_mismatch") => self.fail(s, Outcome::AccountNameMismatch),
                _ => self.fail(s, Outcome::AccountInvalid),
            },
            "paid" => {
                s.paid = true;
                // Without the provider's code the check would be an amount alone (1 in 99 per
                // guess): refuse to decide on it.
                let (Some(paid_fen), Some(paid_code)) = (a.amount_fen, a.verification_code) else {
                    return self.fail(s, Outcome::VendorUnavailable);
                };
                if paid_code.len() < CODE_DIGITS as usize
                    || !paid_code.bytes().all(|b| b.is_ascii_digit())
                {
                    return self.fail(s, Outcome::VendorUnavailable);
                }
                let code = s.entered_code.take();
                match s.entered_fen.take() {
                    Some(fen) if fen == paid_fen && code.as_deref() == Some(&paid_code) => {
                        self.succeed(s)
                    }
                    Some(_) => self.wrong_amount(s),
                    None => self.unchanged(s),
                }
            }
            "processing" => {
                if self.past_deadline(&s) {
                    return self.fail(s, Outcome::Expired);
                }
                if s.poll_armed {
                    return self.unchanged(s);
                }
                s.poll_armed = true;
                let timer = self.poll_timer();
                self.out(s, vec![timer])
            }
            _ => self.fail(s, Outcome::VendorUnavailable),
        }
    }

    fn wrong_amount(&self, mut s: State) -> Result<StepOutput, StepError> {
        s.wrong_amounts += 1;
        s.entered_fen = None;
        s.entered_code = None;
        if s.wrong_amounts >= self.cfg.max_attempts {
            return self.fail(s, Outcome::AttemptsExceeded);
        }
        let evidence = json!({"attempts_left": self.cfg.max_attempts - s.wrong_amounts});
        let again = self.amount_challenge(&s); // shown again with the attempts left
        let mut out = self.out(s, vec![again])?;
        out.result = sdk::failed(Value::Null, Outcome::WrongAmount, evidence).result;
        Ok(out)
    }
}
