//! The verification state machine: one pure step from (config, state, event, now).

use identifiers::{Mobile, ResidentId, Timestamp};
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

/// Id of the carrier 3-element request.
pub const CARRIER_CHECK: &str = "carrier-check";
/// Id of the request asking the SMS gateway to send a code.
pub const SMS_SEND: &str = "sms-send";
/// Id of the request checking the code the user typed.
pub const SMS_VERIFY: &str = "sms-verify";
/// Id of the timer that ends the challenge when the code expires.
pub const OTP_EXPIRY_TIMER: &str = "otp-expiry";

/// Where the verification stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the carrier's verdict.
    Carrier,
    /// Waiting for the SMS gateway to accept the send.
    SmsSend,
    /// Waiting for the user to type the code.
    AwaitCode,
    /// Waiting for the gateway to check the typed code.
    SmsVerify,
    /// Finished (succeeded or failed); personal data has been dropped.
    Done,
}

/// The opaque state the host persists between steps.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Phase.
    pub phase: Phase,
    /// Normalised phone, kept only until the code is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Masked phone shown in the challenge.
    pub phone_masked: String,
    /// The request in flight.
    #[serde(default)]
    pub inflight: InFlight,
    /// Gateway id of the code sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp_id: Option<String>,
    /// When the code expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_expires: Option<i64>,
    /// Wrong codes so far.
    #[serde(default)]
    pub wrong_codes: u32,
    /// Carrier's request id (evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_request_id: Option<String>,
}

/// Carrier answer (`POST /carrier/v1/verify`).
#[derive(Deserialize)]
struct CarrierAnswer {
    result: String,
    #[serde(default)]
    carrier_request_id: Option<String>,
}

/// SMS gateway answer to `send`.
#[derive(Deserialize)]
struct SendAnswer {
    otp_id: String,
    #[serde(default)]
    expires_in: Option<u32>,
}

/// SMS gateway answer to `verify`.
#[derive(Deserialize)]
struct VerifyAnswer {
    result: String,
}

/// Everything a step needs besides the state.
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
    const NAME: &'static str = "phone-real-name";
    const CHALLENGE: Option<ChallengeKind> = Some(ChallengeKind::SmsCode);
    const PROVES: &'static [ApplicantField] = &[
        ApplicantField::Name,
        ApplicantField::IdNumber,
        ApplicantField::Phone,
    ];
    const ASSURANCE: &'static str = "L2";

    fn start(&self, a: Applicant) -> Result<StepOutput, StepError> {
        self.begin(
            a.name.as_deref(),
            a.id_number.as_deref(),
            a.phone.as_deref(),
        )
    }

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

    /// The state kept after the end: no personal data, nothing in flight.
    fn finished(s: State) -> State {
        State {
            phase: Phase::Done,
            phone: None,
            phone_masked: String::new(),
            inflight: InFlight::default(),
            code_expires: None,
            ..s
        }
    }

    fn on_answer(&self, mut s: State, body: String) -> Result<StepOutput, StepError> {
        match s.phase {
            Phase::Carrier => {
                let Ok(a) = serde_json::from_str::<CarrierAnswer>(&body) else {
                    return self.fail(s, Outcome::VendorUnavailable);
                };
                s.carrier_request_id = a.carrier_request_id;
                match a.result.as_str() {
                    "match" => self.send_code(s),
                    "mismatch" => self.fail(s, Outcome::Mismatch),
                    "not_real_name" | "phone_not_real_name" => {
                        self.fail(s, Outcome::PhoneNotRealName)
                    }
                    "no_record" => self.fail(s, Outcome::NoRecord),
                    "phone_invalid" => self.fail(s, Outcome::InvalidPhone),
                    "id_invalid" => self.fail(s, Outcome::InvalidIdNumber),
                    _ => self.fail(s, Outcome::VendorUnavailable),
                }
            }
            Phase::SmsSend => {
                let Ok(a) = serde_json::from_str::<SendAnswer>(&body) else {
                    return self.fail(s, Outcome::VendorUnavailable);
                };
                // The gateway's own lifetime wins when it is shorter than ours.
                let ttl = a
                    .expires_in
                    .map_or(self.cfg.code_ttl_secs, |v| v.min(self.cfg.code_ttl_secs));
                let expires = self.now.plus_secs(i64::from(ttl));
                s.phase = Phase::AwaitCode;
                s.phone = None; // minimisation: the gateway has it now
                s.otp_id = Some(a.otp_id);
                s.code_expires = Some(expires.unix());
                let challenge = code_challenge(&s);
                let timer = Action::Timer(Timer {
                    id: OTP_EXPIRY_TIMER.into(),
                    after_ms: u64::from(ttl) * 1000,
                });
                self.out(s, vec![challenge, timer])
            }
            Phase::SmsVerify => {
                let Ok(a) = serde_json::from_str::<VerifyAnswer>(&body) else {
                    return self.fail(s, Outcome::VendorUnavailable);
                };
                match a.result.as_str() {
                    "ok" => self.succeed(s),
                    "wrong" => self.wrong_code(s),
                    "unknown" | "expired" => self.fail(s, Outcome::OtpExpired),
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
        json!({"vendor_request_id": s.carrier_request_id, "otp_id": s.otp_id})
    }
}

impl Ctx<'_> {
    fn begin(
        &self,
        name: Option<&str>,
        id_number: Option<&str>,
        phone: Option<&str>,
    ) -> Result<StepOutput, StepError> {
        let name = name.map(str::trim).unwrap_or_default();
        if name.is_empty() {
            return Err(StepError::InvalidArgument(
                "applicant name is required".into(),
            ));
        }
        let blank = State {
            phase: Phase::Done,
            phone: None,
            phone_masked: String::new(),
            inflight: InFlight::default(),
            otp_id: None,
            code_expires: None,
            wrong_codes: 0,
            carrier_request_id: None,
        };
        let today = self
            .now
            .utc_date()
            .map_err(|_| StepError::InvalidArgument("now is out of range".into()))?;
        let Ok(id) = ResidentId::parse(id_number.unwrap_or_default(), today) else {
            return self.fail(blank, Outcome::InvalidIdNumber);
        };
        let Ok(phone) = Mobile::parse(phone.unwrap_or_default()) else {
            return self.fail(blank, Outcome::InvalidPhone);
        };
        let mut s = State {
            phase: Phase::Carrier,
            phone: Some(phone.as_str().to_owned()),
            phone_masked: phone.masked(),
            ..blank
        };
        let body = json!({
            "request_id": format!("{}:carrier", self.vid),
            "name": name,
            "id_number": id.as_str(),
            "phone": phone.as_str(),
        });
        let action = s.inflight.send(post_json(
            CARRIER_CHECK,
            &self.cfg.carrier_url,
            "/carrier/v1/verify",
            "carrier_api_key",
            &body,
            self.cfg.timeout_ms,
        ));
        self.out(s, vec![action])
    }

    fn send_code(&self, mut s: State) -> Result<StepOutput, StepError> {
        let Some(phone) = s.phone.clone() else {
            return Err(StepError::State(
                "phone missing before the code is sent".into(),
            ));
        };
        s.phase = Phase::SmsSend;
        let body = json!({"request_id": format!("{}:sms", self.vid), "phone": phone});
        let action = s.inflight.send(post_json(
            SMS_SEND,
            &self.cfg.sms_url,
            "/sms/v1/send",
            "sms_api_key",
            &body,
            self.cfg.timeout_ms,
        ));
        self.out(s, vec![action])
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
            return self.wrong_code(s); // cannot be right: do not bother the gateway
        }
        let Some(otp_id) = s.otp_id.clone() else {
            return Err(StepError::State("no code id while awaiting a code".into()));
        };
        s.phase = Phase::SmsVerify;
        let body = json!({"otp_id": otp_id, "code": code});
        let action = s.inflight.send(post_json(
            SMS_VERIFY,
            &self.cfg.sms_url,
            "/sms/v1/verify",
            "sms_api_key",
            &body,
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
        payload: json!({"phone_masked": s.phone_masked, "length": 6}),
        expires_at: expires.to_string(),
    })
}
