//! The state machine driven through `Verifier::step` with synthetic events.

use plugin_abi::doc::{Action, ChallengeKind, Outcome, Status, StepOutput};
use plugin_abi::sdk::{StepError, Verifier};
use plugin_abi::testing::{self, http, outcome};
use serde_json::{json, Value};

use crate::vendor::RETRY_TIMER;
use crate::{Config, Face, FACE_RESULT, FACE_START, POLL_TIMER};

fn base() -> Value {
    json!({"face_url": "https://face.test", "poll_interval_ms": 1000})
}

fn config(extra: Value) -> Config {
    testing::config(base(), extra)
}

type Run = testing::Run<Face>;

fn run(extra: Value) -> Run {
    Run::new(base(), extra, "vrf_3")
}

/// The steps the tests repeat.
trait FaceRun {
    fn reach_session(&mut self) -> StepOutput;
    fn poll(&mut self, verdict: Value) -> StepOutput;
}

impl FaceRun for Run {
    fn reach_session(&mut self) -> StepOutput {
        self.begin(json!({"name": "张三", "id_number": "11010519491231002X"}));
        self.reply(FACE_START, 200, json!({"biz_token": "biz_1", "url": "https://face.test/face/page/biz_1", "expires_in": 7200}))
    }

    /// Poll timer fires, the pull returns `verdict`.
    fn poll(&mut self, verdict: Value) -> StepOutput {
        let out = self.timer(POLL_TIMER);
        assert_eq!(http(&out).id, FACE_RESULT);
        self.reply(FACE_RESULT, 200, verdict)
    }
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
    let mut r = run(json!({"callback_url": "https://ca.test/callbacks/{verification_id}"}));
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
    let mut r = run(json!({}));
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
    let mut r = run(json!({}));
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
        let mut r = run(json!({}));
        r.reach_session();
        let out = r.poll(verdict.clone());
        assert_eq!(out.status, Status::Failed, "{verdict}");
        assert_eq!(outcome(&out), Some(want), "{verdict}");
    }
}

#[test]
fn threshold_comes_from_config() {
    let mut r = run(json!({"similarity_threshold": 40.0}));
    r.reach_session();
    assert_eq!(
        r.poll(done(true, "pass", 42.0, "ok")).status,
        Status::Succeeded
    );
}

#[test]
fn session_expires_at_the_deadline() {
    let mut r = run(json!({"session_ttl_secs": 600}));
    r.reach_session();
    r.now = "2026-11-24T12:10:00Z".into();
    let out = r.timer(POLL_TIMER);
    assert_eq!(outcome(&out), Some(Outcome::Expired));

    let mut r = run(json!({"session_ttl_secs": 600}));
    r.reach_session();
    r.timer(POLL_TIMER);
    r.now = "2026-11-24T12:11:00Z".into();
    let out = r.reply(FACE_RESULT, 200, json!({"status": "pending"}));
    assert_eq!(outcome(&out), Some(Outcome::Expired));
}

#[test]
fn invalid_id_and_vendor_failures() {
    let mut r = run(json!({}));
    let out = r.step(
        json!({"type": "start", "applicant": {"name": "张三", "id_number": "110105194912310021"}}),
    );
    assert_eq!(outcome(&out), Some(Outcome::InvalidIdNumber));

    let mut r = run(json!({"max_retries": 1, "retry_after_ms": 10}));
    r.step(
        json!({"type": "start", "applicant": {"name": "张三", "id_number": "11010519491231002X"}}),
    );
    let out = r.reply(FACE_START, 503, json!({}));
    assert!(matches!(out.actions.as_slice(), [Action::Timer(t)] if t.id == RETRY_TIMER));
    let out = r.timer(RETRY_TIMER);
    assert_eq!(http(&out).id, FACE_START);
    let out = r.reply(FACE_START, 503, json!({}));
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));

    let mut r = run(json!({}));
    r.reach_session();
    r.timer(POLL_TIMER);
    let out = r.reply(FACE_RESULT, 404, json!({"error": "not found"}));
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
}

#[test]
fn cancel_and_protocol_errors() {
    let mut r = run(json!({}));
    r.reach_session();
    assert_eq!(
        outcome(&r.step(json!({"type": "cancel"}))),
        Some(Outcome::Cancelled)
    );
    assert!(matches!(
        r.try_step(json!({"type": "timer", "id": POLL_TIMER})),
        Err(StepError::InvalidArgument(_))
    ));
    let mut r = run(json!({}));
    r.reach_session();
    let err = r.try_step(json!({"type": "user_input", "challenge": "sms_code", "data": "1"}));
    assert!(matches!(err, Err(StepError::InvalidArgument(_))));
    r.state = Some(json!({"phase": 3}));
    assert!(matches!(
        r.try_step(json!({"type": "cancel"})),
        Err(StepError::State(_))
    ));
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
        testing::replay::<Face>(name, text);
    }
}
