//! The state machine driven through `Verifier::step` with synthetic events.

use plugin_abi::doc::{Action, ApplicantField, Outcome, Status, StepOutput};
use plugin_abi::sdk::{StepError, Verifier};
use plugin_abi::testing::{self, body, http, outcome};
use serde_json::{json, Value};

use crate::vendor::RETRY_TIMER;
use crate::{BankCard, Config, BANK_CONFIRM, BANK_INIT, OTP_EXPIRY_TIMER};

const CARD: &str = "6222 0200 0000 0000 018";

fn config(extra: Value) -> Config {
    testing::config(json!({"bank_url": "https://bank.test"}), extra)
}

type Run = testing::Run<BankCard>;

fn run(extra: Value) -> Run {
    Run::new(json!({"bank_url": "https://bank.test"}), extra, "vrf_2")
}

/// The steps the tests repeat.
trait BankCardRun {
    fn start(&mut self, id: &str, phone: &str, card: &str) -> StepOutput;
    fn start_ok(&mut self) -> StepOutput;
    fn code(&mut self, code: &str) -> StepOutput;
    fn reach_challenge(&mut self) -> StepOutput;
}

impl BankCardRun for Run {
    fn start(&mut self, id: &str, phone: &str, card: &str) -> StepOutput {
        self.begin(json!({"name": "张三", "id_number": id, "phone": phone, "bank_card": card}))
    }

    fn start_ok(&mut self) -> StepOutput {
        self.start("11010519491231002X", "13800138000", CARD)
    }

    fn code(&mut self, code: &str) -> StepOutput {
        self.input("sms_code", code)
    }

    fn reach_challenge(&mut self) -> StepOutput {
        self.start_ok();
        self.reply(
            BANK_INIT,
            200,
            json!({"result": "code_sent", "token": "bk_5"}),
        )
    }
}

#[test]
fn manifest_asks_for_four_elements() {
    let m = BankCard::manifest();
    assert_eq!(m.name, "bank-card");
    assert!(m.applicant_fields.contains(&ApplicantField::BankCard));
    assert_eq!(
        m.config_schema["properties"]["bank_api_key"]["x-secret"],
        json!(true)
    );
    assert!(BankCard::configure(config(json!({"max_attempts": 11}))).is_err());
    assert!(BankCard::configure(config(json!({"bank_url": "ftp://bank"}))).is_err());
}

#[test]
fn success_walks_init_code_and_confirm() {
    let mut r = run(json!({}));
    let out = r.start_ok();
    assert_eq!(out.status, Status::Pending);
    let h = http(&out);
    assert_eq!(h.id, BANK_INIT);
    assert_eq!(h.url, "https://bank.test/bank/v1/auth/init");
    assert_eq!(h.headers["x-api-key"], "{{secret:bank_api_key}}");
    assert_eq!(
        body(h),
        json!({"order_id": "vrf_2:bank", "name": "张三", "id_number": "11010519491231002X",
               "card_number": "6222020000000000018", "phone": "13800138000"})
    );

    let out = r.reply(
        BANK_INIT,
        200,
        json!({"result": "code_sent", "token": "bk_5"}),
    );
    assert_eq!(out.status, Status::AwaitingUser);
    match out.actions.as_slice() {
        [Action::Challenge(c), Action::Timer(t)] => {
            assert_eq!(c.expires_at, "2026-11-24T12:05:00Z");
            assert_eq!(c.payload["card_masked"], "6222***********0018");
            assert_eq!(c.payload["phone_masked"], "138****8000");
            assert_eq!(t.id, OTP_EXPIRY_TIMER);
        }
        other => panic!("expected challenge + timer, got {other:?}"),
    }
    let out = r.code("246810");
    let h = http(&out);
    assert_eq!(h.id, BANK_CONFIRM);
    assert_eq!(h.url, "https://bank.test/bank/v1/auth/confirm");
    assert_eq!(body(h), json!({"token": "bk_5", "code": "246810"}));

    let out = r.reply(
        BANK_CONFIRM,
        200,
        json!({"result": "verified", "bank_request_id": "bankreq_3"}),
    );
    assert_eq!(out.status, Status::Succeeded);
    let res = out.result.unwrap();
    assert_eq!(res.assurance.as_deref(), Some("L2"));
    assert_eq!(res.verified_attributes.len(), 4);
    assert_eq!(res.evidence["vendor_request_id"], "bankreq_3");
    assert_eq!(res.evidence["luhn_ok"], true);
    assert!(
        !out.state.to_string().contains("bk_5"),
        "token dropped at the end"
    );
}

#[test]
fn invalid_inputs_fail_first() {
    let cases = [
        (
            "11010519491231002Y",
            "13800138000",
            CARD,
            Outcome::InvalidIdNumber,
        ),
        (
            "11010519491231002X",
            "2800138000",
            CARD,
            Outcome::InvalidPhone,
        ),
        (
            "11010519491231002X",
            "13800138000",
            "622202000000",
            Outcome::InvalidCard,
        ),
        (
            "11010519491231002X",
            "13800138000",
            "6222a20000000000018",
            Outcome::InvalidCard,
        ),
    ];
    for (id, phone, card, want) in cases {
        let mut r = run(json!({}));
        let out = r.start(id, phone, card);
        assert_eq!(out.status, Status::Failed);
        assert_eq!(outcome(&out), Some(want), "{want:?}");
        assert!(out.actions.is_empty());
    }
}

#[test]
fn luhn_failure_is_only_a_warning() {
    let mut r = run(json!({}));
    let out = r.start("11010519491231002X", "13800138000", "6222020000000000019");
    assert_eq!(http(&out).id, BANK_INIT);
    let out = r.reply(BANK_INIT, 200, json!({"result": "card_invalid"}));
    assert_eq!(outcome(&out), Some(Outcome::CardInvalid));
    assert_eq!(out.result.unwrap().evidence["luhn_ok"], false);
}

#[test]
fn bank_verdicts_map_to_failure_codes() {
    let cases = [
        ("mismatch", Outcome::Mismatch),
        ("card_invalid", Outcome::CardInvalid),
        ("card_expired", Outcome::CardInvalid),
        ("card_lost", Outcome::CardLost),
        ("card_restricted", Outcome::CardRestricted),
        ("cnp_disabled", Outcome::CardRestricted),
        ("code_sent", Outcome::VendorUnavailable), // without a token: a broken vendor
        ("???", Outcome::VendorUnavailable),
    ];
    for (verdict, want) in cases {
        let mut r = run(json!({}));
        r.start_ok();
        let out = r.reply(BANK_INIT, 200, json!({"result": verdict}));
        assert_eq!(out.status, Status::Failed, "{verdict}");
        assert_eq!(outcome(&out), Some(want), "{verdict}");
    }
}

#[test]
fn wrong_codes_then_attempts_exceeded() {
    let mut r = run(json!({"max_attempts": 2}));
    r.reach_challenge();
    r.code("111111");
    let out = r.reply(BANK_CONFIRM, 200, json!({"result": "wrong_code"}));
    assert_eq!(out.status, Status::AwaitingUser);
    assert_eq!(outcome(&out), Some(Outcome::OtpWrong));
    assert!(
        matches!(out.actions.as_slice(), [Action::Challenge(c)] if c.payload["card_masked"] == "6222***********0018")
    );
    let out = r.code("12345"); // too short: wrong without asking the bank
    assert!(out.actions.is_empty());
    assert_eq!(out.status, Status::Failed);
    assert_eq!(outcome(&out), Some(Outcome::OtpAttemptsExceeded));
}

#[test]
fn expiry_by_input_timer_and_unknown_token() {
    let mut r = run(json!({}));
    r.reach_challenge();
    r.now = "2026-11-24T12:05:00Z".into();
    assert_eq!(outcome(&r.code("123456")), Some(Outcome::OtpExpired));

    let mut r = run(json!({}));
    r.reach_challenge();
    r.now = "2026-11-24T12:06:00Z".into();
    let out = r.step(json!({"type": "timer", "id": OTP_EXPIRY_TIMER}));
    assert_eq!(outcome(&out), Some(Outcome::OtpExpired));

    let mut r = run(json!({}));
    r.reach_challenge();
    r.code("123456");
    let out = r.reply(BANK_CONFIRM, 200, json!({"result": "unknown_token"}));
    assert_eq!(outcome(&out), Some(Outcome::OtpExpired));
}

#[test]
fn confirm_5xx_retries_then_succeeds() {
    let mut r = run(json!({"retry_after_ms": 50}));
    r.reach_challenge();
    let sent = http(&r.code("123456")).clone();
    let out = r.reply(BANK_CONFIRM, 502, json!({}));
    assert!(
        matches!(out.actions.as_slice(), [Action::Timer(t)] if t.id == RETRY_TIMER && t.after_ms == 50)
    );
    let out = r.step(json!({"type": "timer", "id": RETRY_TIMER}));
    assert_eq!(http(&out), &sent);
    let out = r.reply(
        BANK_CONFIRM,
        200,
        json!({"result": "verified", "bank_request_id": "b"}),
    );
    assert_eq!(out.status, Status::Succeeded);
}

#[test]
fn init_unavailable_after_retries() {
    let mut r = run(json!({"max_retries": 1}));
    r.start_ok();
    r.step(json!({"type": "http_error", "id": BANK_INIT, "error": "connect"}));
    r.step(json!({"type": "timer", "id": RETRY_TIMER}));
    let out = r.step(json!({"type": "http_error", "id": BANK_INIT, "error": "timeout"}));
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
}

#[test]
fn cancel_stale_and_protocol_errors() {
    let mut r = run(json!({}));
    r.reach_challenge();
    let out = r.reply(
        BANK_INIT,
        200,
        json!({"result": "code_sent", "token": "bk_other"}),
    );
    assert!(out.actions.is_empty() && out.status == Status::AwaitingUser);
    assert!(r.state.as_ref().unwrap().to_string().contains("bk_5"));
    let out = r.step(json!({"type": "cancel"}));
    assert_eq!(outcome(&out), Some(Outcome::Cancelled));
    assert!(matches!(
        r.try_step(json!({"type": "cancel"})),
        Err(StepError::InvalidArgument(_))
    ));

    let mut r = run(json!({}));
    r.state = Some(json!([1, 2]));
    assert!(matches!(
        r.try_step(json!({"type": "cancel"})),
        Err(StepError::State(_))
    ));
    let mut r = run(json!({}));
    r.start_ok();
    let err = r.try_step(json!({"type": "user_input", "challenge": "sms_code", "data": "123456"}));
    assert!(
        matches!(err, Err(StepError::InvalidArgument(_))),
        "no code asked yet"
    );
}
