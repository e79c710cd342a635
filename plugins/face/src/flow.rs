//! The verification state machine: one pure step from (config, state, event, now).

use identifiers::{ResidentId, Timestamp};
use plugin_abi::doc::{
    Action, Applicant, ApplicantField, Challenge, ChallengeKind, Outcome, Status, StepInput,
    StepOutput, Timer,
};
use plugin_abi::flow::{self, Flow};
use plugin_abi::sdk::StepError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Config;
use crate::vendor::{post_json, InFlight, RetryPolicy};

/// Id of the request starting the vendor session.
pub const FACE_START: &str = "face-start";
/// Id of the request pulling the session's verdict.
pub const FACE_RESULT: &str = "face-result";
/// Id of the timer that pulls the verdict.
pub const POLL_TIMER: &str = "poll-result";

/// Where the verification stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the vendor to open a session.
    Start,
    /// Waiting for the person to complete the session (polling the verdict).
    AwaitPerson,
    /// Finished.
    Done,
}

/// The opaque state the host persists between steps (no personal data once the session exists).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Phase.
    pub phase: Phase,
    /// The request in flight.
    #[serde(default)]
    pub inflight: InFlight,
    /// The vendor's session token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_token: Option<String>,
    /// When the session ends (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// True while a poll timer is set (so callbacks and polls never multiply timers).
    #[serde(default)]
    pub poll_armed: bool,
    /// Vendor request id, liveness verdict and score (evidence).
    #[serde(default)]
    pub evidence: Value,
}

/// Vendor answer to `start`.
#[derive(Deserialize)]
struct StartAnswer {
    biz_token: String,
    url: String,
    #[serde(default)]
    expires_in: Option<u32>,
}

/// Vendor verdict (`result`).
#[derive(Deserialize)]
struct Verdict {
    status: String,
    #[serde(default)]
    passed: bool,
    #[serde(default)]
    liveness: Option<String>,
    #[serde(default)]
    similarity: Option<f64>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
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
    const NAME: &'static str = "face";
    const CHALLENGE: Option<ChallengeKind> = Some(ChallengeKind::FaceUrl);
    const PROVES: &'static [ApplicantField] = &[ApplicantField::Name, ApplicantField::IdNumber];
    const ASSURANCE: &'static str = "L3";

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
            Phase::Start => Status::Pending,
            Phase::AwaitPerson => Status::AwaitingUser,
            Phase::Done => Status::Failed,
        }
    }

    /// "I am done" from the UI: look now.
    fn on_input(&self, s: State, _data: &str) -> Result<StepOutput, StepError> {
        self.pull(s)
    }

    /// The vendor's notification only says "look now"; its body is not trusted.
    fn on_callback(&self, s: State, body: &Value) -> Result<StepOutput, StepError> {
        let ours = body.get("biz_token").and_then(Value::as_str) == s.biz_token.as_deref();
        if ours {
            self.pull(s)
        } else {
            self.unchanged(s)
        }
    }

    /// The state kept after the end: nothing in flight, no timers.
    fn finished(s: State) -> State {
        State {
            phase: Phase::Done,
            inflight: InFlight::default(),
            poll_armed: false,
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
        let mut s = State {
            phase: Phase::Done,
            inflight: InFlight::default(),
            biz_token: None,
            deadline: None,
            poll_armed: false,
            evidence: json!({}),
        };
        let today = self
            .now
            .utc_date()
            .map_err(|_| StepError::InvalidArgument("now is out of range".into()))?;
        let Ok(id) = ResidentId::parse(a.id_number.as_deref().unwrap_or_default(), today) else {
            return self.fail(s, Outcome::InvalidIdNumber);
        };
        s.phase = Phase::Start;
        let mut body = json!({
            "request_id": format!("{}:face", self.vid),
            "name": name,
            "id_number": id.as_str(),
        });
        if let Some(u) = &self.cfg.callback_url {
            body["callback_url"] = json!(u.replace("{verification_id}", self.vid));
        }
        if let Some(u) = &self.cfg.return_url {
            body["return_url"] = json!(u.replace("{verification_id}", self.vid));
        }
        let action = s.inflight.send(post_json(
            FACE_START,
            &self.cfg.face_url,
            "/face/v1/sessions",
            "face_api_key",
            &body,
            self.cfg.timeout_ms,
        ));
        self.out(s, vec![action])
    }

    fn on_answer(&self, s: State, body: String) -> Result<StepOutput, StepError> {
        match s.phase {
            Phase::Start => match serde_json::from_str::<StartAnswer>(&body) {
                Ok(a) if !a.biz_token.is_empty() => self.session(s, a),
                _ => self.fail(s, Outcome::VendorUnavailable),
            },
            Phase::AwaitPerson => match serde_json::from_str::<Verdict>(&body) {
                Ok(v) => self.verdict(s, v),
                Err(_) => self.fail(s, Outcome::VendorUnavailable),
            },
            Phase::Done => self.unchanged(s),
        }
    }

    fn on_timer(&self, mut s: State, id: &str) -> Result<StepOutput, StepError> {
        match id {
            POLL_TIMER => {
                s.poll_armed = false;
                if s.phase == Phase::AwaitPerson && self.past_deadline(&s) {
                    return self.fail(s, Outcome::Expired);
                }
                self.pull(s)
            }
            _ => self.on_retry_timer(s, id),
        }
    }

    fn evidence(&self, s: &State) -> Value {
        let mut e = s.evidence.clone();
        if let Some(t) = &s.biz_token {
            e["biz_token"] = json!(t);
        }
        e
    }
}

impl Ctx<'_> {
    fn session(&self, mut s: State, a: StartAnswer) -> Result<StepOutput, StepError> {
        let ttl = a.expires_in.map_or(self.cfg.session_ttl_secs, |v| {
            v.min(self.cfg.session_ttl_secs)
        });
        let deadline = self.now.plus_secs(i64::from(ttl));
        s.phase = Phase::AwaitPerson;
        s.deadline = Some(deadline.unix());
        s.biz_token = Some(a.biz_token.clone());
        s.poll_armed = true;
        let challenge = Action::Challenge(Challenge {
            kind: ChallengeKind::FaceUrl,
            payload: json!({"url": a.url, "biz_token": a.biz_token, "qr": a.url}),
            expires_at: deadline.to_string(),
        });
        self.out(s, vec![challenge, self.poll_timer()])
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

    /// Pulls the verdict now unless a request is already in flight.
    fn pull(&self, mut s: State) -> Result<StepOutput, StepError> {
        if s.phase != Phase::AwaitPerson || s.inflight.id().is_some() {
            return self.unchanged(s);
        }
        let Some(token) = s.biz_token.clone() else {
            return Err(StepError::State("no session token while awaiting".into()));
        };
        let action = s.inflight.send(post_json(
            FACE_RESULT,
            &self.cfg.face_url,
            "/face/v1/result",
            "face_api_key",
            &json!({"biz_token": token}),
            self.cfg.timeout_ms,
        ));
        self.out(s, vec![action])
    }

    fn verdict(&self, mut s: State, v: Verdict) -> Result<StepOutput, StepError> {
        if let Some(id) = &v.request_id {
            s.evidence["vendor_request_id"] = json!(id);
        }
        match v.status.as_str() {
            "pending" => {
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
            "done" => {
                let liveness = v.liveness.as_deref().unwrap_or("none");
                let similarity = v.similarity.unwrap_or(0.0);
                s.evidence["liveness"] = json!(liveness);
                s.evidence["similarity"] = json!(similarity);
                s.evidence["threshold"] = json!(self.cfg.similarity_threshold);
                let code = v.code.as_deref().unwrap_or("");
                if liveness != "pass" || code == "liveness_failed" {
                    self.fail(s, Outcome::LivenessFailed)
                } else if code == "no_photo" {
                    self.fail(s, Outcome::NoRecord)
                } else if v.passed && similarity >= self.cfg.similarity_threshold {
                    self.succeed(s)
                } else {
                    self.fail(s, Outcome::NotSamePerson)
                }
            }
            "cancelled" => self.fail(s, Outcome::Cancelled),
            "expired" => self.fail(s, Outcome::Expired),
            _ => self.fail(s, Outcome::VendorUnavailable),
        }
    }
}
