//! The state machine driven through `Verifier::step` with synthetic events.

use plugin_abi::doc::{Action, ChallengeKind, HttpAction, Outcome, Status, StepInput, StepOutput};
use plugin_abi::sdk::{StepError, Verifier};
use serde_json::{json, Value};

use crate::vendor::RETRY_TIMER;
use crate::{Config, Face, FACE_RESULT, FACE_START, POLL_TIMER};

const T0: &str = "2026-11-24T12:00:00Z";

fn config(extra: Value) -> Config {
    let mut c = json!({"face_url": "https://face.test", "poll_interval_ms": 1000});
    if let (Some(m), Value::Object(e)) = (c.as_object_mut(), extra) {
        m.extend(e);
    }
    serde_json::from_value(c).unwrap()
}

struct Run {
    plugin: Face,
    state: Option<Value>,
    now: String,
}

impl Run {
    fn new(extra: Value) -> Run {
        Run {
            plugin: Face::configure(config(extra)).unwrap(),
            state: None,
            now: T0.into(),
        }
    }

    fn try_step(&mut self, event: Value) -> Result<StepOutput, StepError> {
        let input: StepInput = serde_json::from_value(json!({
            "v": 1, "verification_id": "vrf_3", "now": self.now,
            "state": self.state, "event": event,
        }))
        .unwrap();
        let out = self.plugin.step(input)?;
        out.check_rules().unwrap();
        self.state = Some(out.state.clone());
        Ok(out)
    }

    fn step(&mut self, event: Value) -> StepOutput {
        self.try_step(event).unwrap()
    }

    fn reply(&mut self, id: &str, status: u16, body: Value) -> StepOutput {
        self.step(
            json!({"type": "http_response", "id": id, "status": status, "body": body.to_string()}),
        )
    }

    fn timer(&mut self, id: &str) -> StepOutput {
        self.step(json!({"type": "timer", "id": id}))
    }

    fn reach_session(&mut self) -> StepOutput {
        self.step(json!({"type": "start", "applicant": {"name": "张三", "id_number": "11010519491231002X"}}));
        self.reply(FACE_START, 200, json!({"biz_token": "biz_1", "url": "https://face.test/face/page/biz_1", "expires_in": 7200}))
    }

    /// Poll timer fires, the pull returns `verdict`.
    fn poll(&mut self, verdict: Value) -> StepOutput {
        let out = self.timer(POLL_TIMER);
        assert_eq!(http(&out).id, FACE_RESULT);
        self.reply(FACE_RESULT, 200, verdict)
    }
}

fn http(out: &StepOutput) -> &HttpAction {
    match out.actions.as_slice() {
        [Action::Http(h)] => h,
        other => panic!("expected one http action, got {other:?}"),
    }
}

fn outcome(out: &StepOutput) -> Option<Outcome> {
    out.result.as_ref().map(|r| r.outcome)
}

fn done(passed: bool, liveness: &str, similarity: f64, code: &str) -> Value {
    json!({"biz_token": "biz_1", "status": "done", "passed": passed, "liveness": liveness,
           "similarity": similarity, "code": code, "request_id": "facereq_2"})
}

#[test]
fn config_limits() {
    assert!(Face::configure(config(json!({"similarity_threshold": 101.0}))).is_err());
    assert!(Face::configure(config(json!({"session_ttl_secs": 10}))).is_err());
    assert!(Face::configure(config(json!({"callback_url": "/relative"}))).is_err());
    assert_eq!(
        Face::manifest().config_schema["properties"]["face_api_key"]["x-secret"],
        json!(true)
    );
}

#[test]
fn success_by_polling() {
    let mut r = Run::new(json!({"callback_url": "https://ca.test/callbacks/{verification_id}"}));
    let out = r.step(
        json!({"type": "start", "applicant": {"name": "张三", "id_number": "11010519491231002X"}}),
    );
    let h = http(&out);
    assert_eq!(h.id, FACE_START);
    assert_eq!(h.url, "https://face.test/face/v1/sessions");
    assert_eq!(h.headers["x-api-key"], "{{secret:face_api_key}}");
    let body: Value = serde_json::from_str(h.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["request_id"], "vrf_3:face");
    assert_eq!(body["callback_url"], "https://ca.test/callbacks/vrf_3");

    let out = r.reply(FACE_START, 200, json!({"biz_token": "biz_1", "url": "https://face.test/face/page/biz_1", "expires_in": 600}));
    assert_eq!(out.status, Status::AwaitingUser);
    match out.actions.as_slice() {
        [Action::Challenge(c), Action::Timer(t)] => {
            assert_eq!(c.kind, ChallengeKind::FaceUrl);
            assert_eq!(c.payload["url"], "https://face.test/face/page/biz_1");
            assert_eq!(c.payload["biz_token"], "biz_1");
            assert_eq!(
                c.expires_at, "2026-11-24T12:10:00Z",
                "vendor's shorter lifetime wins"
            );
            assert_eq!(t.id, POLL_TIMER);
            assert_eq!(t.after_ms, 1000);
        }
        other => panic!("expected challenge + poll timer, got {other:?}"),
    }
    assert!(!out.state.to_string().contains("11010519491231002X"));

    let out = r.poll(json!({"biz_token": "biz_1", "status": "pending"}));
    assert_eq!(out.status, Status::AwaitingUser);
    assert!(matches!(out.actions.as_slice(), [Action::Timer(t)] if t.id == POLL_TIMER));

    let out = r.poll(done(true, "pass", 96.5, "ok"));
    assert_eq!(out.status, Status::Succeeded);
    let res = out.result.unwrap();
    assert_eq!(res.assurance.as_deref(), Some("L3"));
    assert_eq!(res.evidence["similarity"], 96.5);
    assert_eq!(res.evidence["vendor_request_id"], "facereq_2");
    assert_eq!(res.evidence["biz_token"], "biz_1");
}

#[test]
fn callback_triggers_a_pull_and_is_not_trusted() {
    let mut r = Run::new(json!({}));
    r.reach_session();
    // A forged "passed" notification: the plugin pulls instead of believing it.
    let out = r.step(json!({"type": "callback", "body": done(true, "pass", 99.0, "ok")}));
    assert_eq!(out.status, Status::AwaitingUser);
    assert_eq!(http(&out).id, FACE_RESULT);
    let out = r.reply(
        FACE_RESULT,
        200,
        done(false, "fail", 0.0, "liveness_failed"),
    );
    assert_eq!(outcome(&out), Some(Outcome::LivenessFailed));
}

#[test]
fn callback_for_another_session_is_ignored_and_timers_do_not_multiply() {
    let mut r = Run::new(json!({}));
    r.reach_session();
    let out = r.step(json!({"type": "callback", "body": {"biz_token": "biz_other"}}));
    assert!(out.actions.is_empty());
    // callback pull while the poll timer is armed: a pending answer sets no second timer
    r.step(json!({"type": "callback", "body": {"biz_token": "biz_1"}}));
    let out = r.reply(FACE_RESULT, 200, json!({"status": "pending"}));
    assert!(out.actions.is_empty());
    // the armed timer fires and polls
    let out = r.timer(POLL_TIMER);
    assert_eq!(http(&out).id, FACE_RESULT);
    // a timer while a pull is in flight does not send a second one
    let out = r.step(json!({"type": "user_input", "challenge": "face_url", "data": "done"}));
    assert!(out.actions.is_empty());
}

#[test]
fn verdicts_map_to_outcomes() {
    let cases = [
        (
            done(false, "fail", 0.0, "liveness_failed"),
            Outcome::LivenessFailed,
        ),
        (done(true, "pass", 42.0, "ok"), Outcome::NotSamePerson),
        (done(true, "pass", 79.9, "ok"), Outcome::NotSamePerson),
        (done(false, "pass", 0.0, "no_photo"), Outcome::NoRecord),
        (json!({"status": "cancelled"}), Outcome::Cancelled),
        (json!({"status": "expired"}), Outcome::Expired),
        (json!({"status": "exploded"}), Outcome::VendorUnavailable),
        (json!({"no": "status"}), Outcome::VendorUnavailable),
    ];
    for (verdict, want) in cases {
        let mut r = Run::new(json!({}));
        r.reach_session();
        let out = r.poll(verdict.clone());
        assert_eq!(out.status, Status::Failed, "{verdict}");
        assert_eq!(outcome(&out), Some(want), "{verdict}");
    }
}

#[test]
fn threshold_comes_from_config() {
    let mut r = Run::new(json!({"similarity_threshold": 40.0}));
    r.reach_session();
    assert_eq!(
        r.poll(done(true, "pass", 42.0, "ok")).status,
        Status::Succeeded
    );
}

#[test]
fn session_expires_at_the_deadline() {
    let mut r = Run::new(json!({"session_ttl_secs": 600}));
    r.reach_session();
    r.now = "2026-11-24T12:10:00Z".into();
    let out = r.timer(POLL_TIMER);
    assert_eq!(outcome(&out), Some(Outcome::Expired));

    let mut r = Run::new(json!({"session_ttl_secs": 600}));
    r.reach_session();
    r.timer(POLL_TIMER);
    r.now = "2026-11-24T12:11:00Z".into();
    let out = r.reply(FACE_RESULT, 200, json!({"status": "pending"}));
    assert_eq!(outcome(&out), Some(Outcome::Expired));
}

#[test]
fn invalid_id_and_vendor_failures() {
    let mut r = Run::new(json!({}));
    let out = r.step(
        json!({"type": "start", "applicant": {"name": "张三", "id_number": "110105194912310021"}}),
    );
    assert_eq!(outcome(&out), Some(Outcome::InvalidIdNumber));

    let mut r = Run::new(json!({"max_retries": 1, "retry_after_ms": 10}));
    r.step(
        json!({"type": "start", "applicant": {"name": "张三", "id_number": "11010519491231002X"}}),
    );
    let out = r.reply(FACE_START, 503, json!({}));
    assert!(matches!(out.actions.as_slice(), [Action::Timer(t)] if t.id == RETRY_TIMER));
    let out = r.timer(RETRY_TIMER);
    assert_eq!(http(&out).id, FACE_START);
    let out = r.reply(FACE_START, 503, json!({}));
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));

    let mut r = Run::new(json!({}));
    r.reach_session();
    r.timer(POLL_TIMER);
    let out = r.reply(FACE_RESULT, 404, json!({"error": "not found"}));
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
}

#[test]
fn cancel_and_protocol_errors() {
    let mut r = Run::new(json!({}));
    r.reach_session();
    assert_eq!(
        outcome(&r.step(json!({"type": "cancel"}))),
        Some(Outcome::Cancelled)
    );
    assert!(matches!(
        r.try_step(json!({"type": "timer", "id": POLL_TIMER})),
        Err(StepError::InvalidArgument(_))
    ));
    let mut r = Run::new(json!({}));
    r.reach_session();
    let err = r.try_step(json!({"type": "user_input", "challenge": "sms_code", "data": "1"}));
    assert!(matches!(err, Err(StepError::InvalidArgument(_))));
    r.state = Some(json!({"phase": 3}));
    assert!(matches!(
        r.try_step(json!({"type": "cancel"})),
        Err(StepError::State(_))
    ));
}

/// One action as `"<type> <id or kind>"`, the form recorded in `fixtures/*.json`.
fn action_summary(a: &Action) -> String {
    match a {
        Action::Http(h) => format!("http {}", h.id),
        Action::Challenge(c) => format!(
            "challenge {}",
            serde_json::to_value(c.kind).unwrap().as_str().unwrap()
        ),
        Action::Timer(t) => format!("timer {}", t.id),
    }
}

/// Replays a recorded flow (`fixtures/*.json`): each step's event (an HTTP body may be written
/// as JSON) must give the recorded status, outcome and actions.
fn replay<V: Verifier>(name: &str, text: &str) {
    let fixture: Value = serde_json::from_str(text).unwrap();
    let plugin = V::configure(serde_json::from_value(fixture["config"].clone()).unwrap()).unwrap();
    let mut state = Value::Null;
    for (i, step) in fixture["steps"].as_array().unwrap().iter().enumerate() {
        let mut event = step["event"].clone();
        if event["type"] == "http_response" && !event["body"].is_string() {
            event["body"] = json!(event["body"].to_string());
        }
        let input: StepInput = serde_json::from_value(json!({
            "v": 1, "verification_id": "vrf_fixture", "now": step["now"], "state": state, "event": event,
        }))
        .unwrap();
        let out = V::step(&plugin, input).unwrap_or_else(|e| panic!("{name} step {i}: {e}"));
        out.check_rules().unwrap();
        assert_eq!(
            serde_json::to_value(out.status).unwrap(),
            step["status"],
            "{name} step {i} status"
        );
        let outcome = out
            .result
            .as_ref()
            .map_or(Value::Null, |r| serde_json::to_value(r.outcome).unwrap());
        assert_eq!(
            &outcome,
            step.get("outcome").unwrap_or(&Value::Null),
            "{name} step {i} outcome"
        );
        let actions: Vec<String> = out.actions.iter().map(action_summary).collect();
        assert_eq!(json!(actions), step["actions"], "{name} step {i} actions");
        state = out.state;
    }
}

#[test]
fn recorded_flows_replay() {
    let fixtures = [
        (
            "poll_then_pass",
            include_str!("../fixtures/poll_then_pass.json"),
        ),
        (
            "callback_not_same_person",
            include_str!("../fixtures/callback_not_same_person.json"),
        ),
        (
            "session_expired",
            include_str!("../fixtures/session_expired.json"),
        ),
    ];
    for (name, text) in fixtures {
        replay::<Face>(name, text);
    }
}
