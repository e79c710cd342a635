//! The state machine driven through `Verifier::step` with synthetic events.

use plugin_abi::doc::{Action, ChallengeKind, Outcome, Status, StepOutput};
use plugin_abi::sdk::{StepError, Verifier};
use plugin_abi::testing::{self, http, outcome};
use serde_json::{json, Value};

use crate::vendor::RETRY_TIMER;
use crate::{remark_code, Config, CorporateTransfer, PAYOUT_CREATE, PAYOUT_QUERY, POLL_TIMER};

/// The verification code the provider "printed" in the remark (see `paid`).
const CODE: &str = "004711";

fn base() -> Value {
    json!({"payout_url": "https://payout.test"})
}

fn config(extra: Value) -> Config {
    testing::config(base(), extra)
}

type Run = testing::Run<CorporateTransfer>;

fn run(extra: Value) -> Run {
    Run::new(base(), extra, "vrf_4")
}

/// The steps the tests repeat.
trait TransferRun {
    fn start(&mut self, account: &str) -> StepOutput;
    fn amount(&mut self, data: &str) -> StepOutput;
    fn reach_challenge(&mut self) -> StepOutput;
    fn enter_against_paid_37(&mut self, data: &str) -> StepOutput;
}

impl TransferRun for Run {
    fn start(&mut self, account: &str) -> StepOutput {
        self.begin(json!({
            "org_name": "示例科技有限公司", "bank_account": account, "bank_name": "示例银行"}))
    }

    fn amount(&mut self, data: &str) -> StepOutput {
        self.input("deposit_amount", data)
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
    let mut r = run(json!({"callback_url": "https://ca.test/cb/{verification_id}"}));
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
    let mut r = run(json!({"max_attempts": 3}));
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
    let mut r = run(json!({}));
    r.reach_challenge();
    r.enter_against_paid_37("0.73 004711");
    assert_eq!(
        r.enter_against_paid_37(".37 004711").status,
        Status::Succeeded
    );
}

#[test]
fn the_amount_alone_or_a_wrong_code_is_a_wrong_attempt() {
    let mut r = run(json!({}));
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
    let mut r = run(json!({}));
    r.reach_challenge();
    r.amount("0.37 004711");
    let amount_only = json!({"payout_id": "po_1", "status": "paid", "amount_fen": 37});
    let out = r.reply(PAYOUT_QUERY, 200, amount_only);
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
    assert_eq!(out.status, Status::Failed);
}

#[test]
fn amount_entered_before_settlement_waits_for_it() {
    let mut r = run(json!({}));
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
        let mut r = run(json!({}));
        r.reach_challenge();
        r.step(json!({"type": "timer", "id": POLL_TIMER}));
        let failed = json!({"payout_id": "po_1", "status": "failed", "failure_reason": reason});
        let out = r.reply(PAYOUT_QUERY, 200, failed.clone());
        assert_eq!(outcome(&out), Some(want), "{reason}");
        // by callback, which only triggers a status read
        let mut r = run(json!({}));
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
    let mut r = run(json!({}));
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
    let mut r = run(json!({"window_secs": 3600}));
    r.reach_challenge();
    r.now = "2026-11-24T13:00:00Z".into();
    assert_eq!(outcome(&r.amount("0.37")), Some(Outcome::Expired));
    let mut r = run(json!({"window_secs": 3600}));
    r.reach_challenge();
    r.now = "2026-11-24T13:00:01Z".into();
    let out = r.step(json!({"type": "timer", "id": POLL_TIMER}));
    assert_eq!(outcome(&out), Some(Outcome::Expired));
}

#[test]
fn invalid_account_and_vendor_failures() {
    let mut r = run(json!({}));
    assert_eq!(outcome(&r.start("12ab")), Some(Outcome::AccountInvalid));
    let mut r = run(json!({"max_retries": 1, "retry_after_ms": 10}));
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
    let mut r = run(json!({}));
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
    let mut r = run(json!({}));
    let err =
        r.try_step(json!({"type": "start", "applicant": {"bank_account": "110060000000001"}}));
    assert!(matches!(err, Err(StepError::InvalidArgument(_))));
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
        testing::replay::<CorporateTransfer>(name, text);
    }
}
