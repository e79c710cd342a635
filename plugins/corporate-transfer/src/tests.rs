//! The state machine driven through `Verifier::step` with synthetic events.

use plugin_abi::doc::{Action, ChallengeKind, HttpAction, Outcome, Status, StepInput, StepOutput};
use plugin_abi::sdk::{StepError, Verifier};
use serde_json::{json, Value};

use crate::vendor::RETRY_TIMER;
use crate::{remark_code, Config, CorporateTransfer, PAYOUT_CREATE, PAYOUT_QUERY, POLL_TIMER};

const T0: &str = "2026-11-24T12:00:00Z";
/// The verification code the provider "printed" in the remark (see `paid`).
const CODE: &str = "004711";

fn config(extra: Value) -> Config {
    let mut c = json!({"payout_url": "https://payout.test"});
    if let (Some(m), Value::Object(e)) = (c.as_object_mut(), extra) {
        m.extend(e);
    }
    serde_json::from_value(c).unwrap()
}

struct Run {
    plugin: CorporateTransfer,
    state: Option<Value>,
    now: String,
}

impl Run {
    fn new(extra: Value) -> Run {
        Run {
            plugin: CorporateTransfer::configure(config(extra)).unwrap(),
            state: None,
            now: T0.into(),
        }
    }

    fn try_step(&mut self, event: Value) -> Result<StepOutput, StepError> {
        let input: StepInput = serde_json::from_value(json!({
            "v": 1, "verification_id": "vrf_4", "now": self.now,
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

    fn start(&mut self, account: &str) -> StepOutput {
        self.step(json!({"type": "start", "applicant": {
            "org_name": "示例科技有限公司", "bank_account": account, "bank_name": "示例银行"}}))
    }

    fn reply(&mut self, id: &str, status: u16, body: Value) -> StepOutput {
        self.step(
            json!({"type": "http_response", "id": id, "status": status, "body": body.to_string()}),
        )
    }

    fn amount(&mut self, data: &str) -> StepOutput {
        self.step(json!({"type": "user_input", "challenge": "deposit_amount", "data": data}))
    }

    fn reach_challenge(&mut self) -> StepOutput {
        self.start("110060000000001");
        self.reply(
            PAYOUT_CREATE,
            200,
            json!({"payout_id": "po_1", "status": "processing"}),
        )
    }

    /// Enter an amount; the status read returns `paid` with 37 fen.
    fn enter_against_paid_37(&mut self, data: &str) -> StepOutput {
        let out = self.amount(data);
        if !out.actions.iter().any(|a| matches!(a, Action::Http(_))) {
            return out; // rejected locally
        }
        assert_eq!(http(&out).id, PAYOUT_QUERY);
        self.reply(PAYOUT_QUERY, 200, paid(37))
    }
}

fn paid(fen: u32) -> Value {
    json!({"payout_id": "po_1", "status": "paid", "amount_fen": fen, "remark": "x",
           "verification_code": CODE})
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

#[test]
fn config_and_manifest() {
    assert!(CorporateTransfer::configure(config(json!({"window_secs": 60}))).is_err());
    assert!(CorporateTransfer::configure(config(json!({"max_attempts": 0}))).is_err());
    let m = CorporateTransfer::manifest();
    assert_eq!(
        m.config_schema["properties"]["payout_api_key"]["x-secret"],
        json!(true)
    );
    assert_eq!(
        m.config_schema["properties"]["window_secs"]["default"],
        json!(259_200)
    );
}

#[test]
fn remark_is_stable_per_verification() {
    assert_eq!(remark_code("vrf_4"), remark_code("vrf_4"));
    assert_ne!(remark_code("vrf_4"), remark_code("vrf_5"));
    assert_eq!(remark_code("vrf_4").len(), 8);
}

#[test]
fn success_with_the_paid_amount() {
    let mut r = Run::new(json!({"callback_url": "https://ca.test/cb/{verification_id}"}));
    let out = r.start("1100 6000 0000 001");
    let h = http(&out);
    assert_eq!(h.id, PAYOUT_CREATE);
    assert_eq!(h.url, "https://payout.test/payout/v1/transfers");
    assert_eq!(h.headers["x-api-key"], "{{secret:payout_api_key}}");
    let body: Value = serde_json::from_str(h.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"request_id": "vrf_4:payout", "account_name": "示例科技有限公司",
               "account_number": "110060000000001", "bank_name": "示例银行",
               "remark": remark_code("vrf_4"), "callback_url": "https://ca.test/cb/vrf_4"})
    );

    let out = r.reply(
        PAYOUT_CREATE,
        200,
        json!({"payout_id": "po_1", "status": "processing"}),
    );
    assert_eq!(out.status, Status::AwaitingUser);
    match out.actions.as_slice() {
        [Action::Challenge(c), Action::Timer(t)] => {
            assert_eq!(c.kind, ChallengeKind::DepositAmount);
            assert_eq!(
                c.expires_at, "2026-11-27T12:00:00Z",
                "72 h window by default"
            );
            assert_eq!(c.payload["remark"], remark_code("vrf_4"));
            assert_eq!(c.payload["account_masked"], "1100*******0001");
            assert_eq!(t.id, POLL_TIMER);
        }
        other => panic!("expected challenge + poll timer, got {other:?}"),
    }
    // the poll sees it paid: nothing more to watch for
    let out = r.step(json!({"type": "timer", "id": POLL_TIMER}));
    assert_eq!(http(&out).id, PAYOUT_QUERY);
    let out = r.reply(PAYOUT_QUERY, 200, paid(37));
    assert_eq!(out.status, Status::AwaitingUser);
    assert!(out.actions.is_empty());

    r.now = "2026-11-26T09:00:00Z".into();
    let out = r.enter_against_paid_37("0.37元 004711");
    assert_eq!(out.status, Status::Succeeded);
    let res = out.result.unwrap();
    assert_eq!(res.assurance.as_deref(), Some("L2"));
    assert_eq!(res.evidence["vendor_request_id"], "po_1");
}

#[test]
fn wrong_amounts_then_attempts_exceeded() {
    let mut r = Run::new(json!({"max_attempts": 3}));
    r.reach_challenge();
    let out = r.enter_against_paid_37("0.38 004711");
    assert_eq!(out.status, Status::AwaitingUser);
    assert_eq!(outcome(&out), Some(Outcome::WrongAmount));
    assert_eq!(out.result.unwrap().evidence["attempts_left"], 2);
    let out = r.enter_against_paid_37("zero point three");
    assert_eq!(outcome(&out), Some(Outcome::WrongAmount));
    match out.actions.as_slice() {
        [Action::Challenge(c)] => assert_eq!(c.payload["attempts_left"], 1),
        other => panic!("unreadable: no provider call, the challenge again; got {other:?}"),
    }
    let out = r.enter_against_paid_37("0.01 004711");
    assert_eq!(out.status, Status::Failed);
    assert_eq!(outcome(&out), Some(Outcome::AttemptsExceeded));
}

#[test]
fn right_amount_after_a_wrong_one() {
    let mut r = Run::new(json!({}));
    r.reach_challenge();
    r.enter_against_paid_37("0.73 004711");
    assert_eq!(
        r.enter_against_paid_37(".37 004711").status,
        Status::Succeeded
    );
}

#[test]
fn the_amount_alone_or_a_wrong_code_is_a_wrong_attempt() {
    let mut r = Run::new(json!({}));
    r.reach_challenge();
    let out = r.enter_against_paid_37("0.37");
    assert_eq!(
        outcome(&out),
        Some(Outcome::WrongAmount),
        "the code is required"
    );
    assert!(!out.actions.iter().any(|a| matches!(a, Action::Http(_))));
    let out = r.enter_against_paid_37("0.37 004712");
    assert_eq!(
        outcome(&out),
        Some(Outcome::WrongAmount),
        "right amount, wrong code"
    );
    assert_eq!(out.status, Status::AwaitingUser);
    assert_eq!(
        r.enter_against_paid_37("0.37 004711").status,
        Status::Succeeded
    );
}

#[test]
fn a_provider_without_a_verification_code_is_not_trusted_with_the_check() {
    let mut r = Run::new(json!({}));
    r.reach_challenge();
    r.amount("0.37 004711");
    let amount_only = json!({"payout_id": "po_1", "status": "paid", "amount_fen": 37});
    let out = r.reply(PAYOUT_QUERY, 200, amount_only);
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
    assert_eq!(out.status, Status::Failed);
}

#[test]
fn amount_entered_before_settlement_waits_for_it() {
    let mut r = Run::new(json!({}));
    r.reach_challenge();
    let out = r.amount("0.37 004711");
    assert_eq!(out.status, Status::Pending);
    let out = r.reply(
        PAYOUT_QUERY,
        200,
        json!({"payout_id": "po_1", "status": "processing"}),
    );
    assert_eq!(out.status, Status::Pending);
    assert!(
        out.actions.is_empty(),
        "the armed poll timer will look again"
    );
    let out = r.step(json!({"type": "timer", "id": POLL_TIMER}));
    assert_eq!(http(&out).id, PAYOUT_QUERY);
    let out = r.reply(PAYOUT_QUERY, 200, paid(37));
    assert_eq!(out.status, Status::Succeeded);
}

#[test]
fn asynchronous_payout_failures() {
    let cases = [
        ("account_closed", Outcome::AccountInvalid),
        ("account_frozen", Outcome::AccountInvalid),
        ("account_name_mismatch", Outcome::AccountNameMismatch),
    ];
    for (reason, want) in cases {
        // by poll
        let mut r = Run::new(json!({}));
        r.reach_challenge();
        r.step(json!({"type": "timer", "id": POLL_TIMER}));
        let failed = json!({"payout_id": "po_1", "status": "failed", "failure_reason": reason});
        let out = r.reply(PAYOUT_QUERY, 200, failed.clone());
        assert_eq!(outcome(&out), Some(want), "{reason}");
        // by callback, which only triggers a status read
        let mut r = Run::new(json!({}));
        r.reach_challenge();
        let out = r.step(json!({"type": "callback", "body": failed.clone()}));
        assert_eq!(out.status, Status::AwaitingUser);
        assert_eq!(http(&out).id, PAYOUT_QUERY);
        let out = r.reply(PAYOUT_QUERY, 200, failed);
        assert_eq!(outcome(&out), Some(want), "{reason}");
    }
}

#[test]
fn forged_or_foreign_callbacks_do_not_decide() {
    let mut r = Run::new(json!({}));
    r.reach_challenge();
    let out =
        r.step(json!({"type": "callback", "body": {"payout_id": "po_other", "status": "failed"}}));
    assert!(out.actions.is_empty());
    let out = r.step(json!({"type": "callback", "body": {"payout_id": "po_1", "status": "failed", "failure_reason": "account_closed"}}));
    assert_eq!(http(&out).id, PAYOUT_QUERY);
    let out = r.reply(
        PAYOUT_QUERY,
        200,
        json!({"payout_id": "po_1", "status": "processing"}),
    );
    assert_eq!(
        out.status,
        Status::AwaitingUser,
        "the provider says processing: still open"
    );
}

#[test]
fn window_expiry() {
    let mut r = Run::new(json!({"window_secs": 3600}));
    r.reach_challenge();
    r.now = "2026-11-24T13:00:00Z".into();
    assert_eq!(outcome(&r.amount("0.37")), Some(Outcome::Expired));
    let mut r = Run::new(json!({"window_secs": 3600}));
    r.reach_challenge();
    r.now = "2026-11-24T13:00:01Z".into();
    let out = r.step(json!({"type": "timer", "id": POLL_TIMER}));
    assert_eq!(outcome(&out), Some(Outcome::Expired));
}

#[test]
fn invalid_account_and_vendor_failures() {
    let mut r = Run::new(json!({}));
    assert_eq!(outcome(&r.start("12ab")), Some(Outcome::AccountInvalid));
    let mut r = Run::new(json!({"max_retries": 1, "retry_after_ms": 10}));
    r.start("110060000000001");
    let out = r.reply(PAYOUT_CREATE, 500, json!({}));
    assert!(matches!(out.actions.as_slice(), [Action::Timer(t)] if t.id == RETRY_TIMER));
    let out = r.step(json!({"type": "timer", "id": RETRY_TIMER}));
    assert_eq!(http(&out).id, PAYOUT_CREATE);
    let out = r.step(json!({"type": "http_error", "id": PAYOUT_CREATE, "error": "timeout"}));
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
}

#[test]
fn cancel_and_protocol_errors() {
    let mut r = Run::new(json!({}));
    r.reach_challenge();
    let err = r.try_step(json!({"type": "user_input", "challenge": "sms_code", "data": "1"}));
    assert!(matches!(err, Err(StepError::InvalidArgument(_))));
    r.amount("0.37 004711");
    let err =
        r.try_step(json!({"type": "user_input", "challenge": "deposit_amount", "data": "0.37"}));
    assert!(
        matches!(err, Err(StepError::InvalidArgument(_))),
        "one amount at a time"
    );
    assert_eq!(
        outcome(&r.step(json!({"type": "cancel"}))),
        Some(Outcome::Cancelled)
    );
    let mut r = Run::new(json!({}));
    let err =
        r.try_step(json!({"type": "start", "applicant": {"bank_account": "110060000000001"}}));
    assert!(matches!(err, Err(StepError::InvalidArgument(_))));
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
            "deposit_wrong_then_right",
            include_str!("../fixtures/deposit_wrong_then_right.json"),
        ),
        (
            "deposit_async_name_mismatch",
            include_str!("../fixtures/deposit_async_name_mismatch.json"),
        ),
        (
            "deposit_window_expired",
            include_str!("../fixtures/deposit_window_expired.json"),
        ),
    ];
    for (name, text) in fixtures {
        replay::<CorporateTransfer>(name, text);
    }
}
