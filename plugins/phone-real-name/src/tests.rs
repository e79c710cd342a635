//! The state machine driven through `Verifier::step` with synthetic events.

use plugin_abi::doc::{Action, ApplicantField, Outcome, Status, StepOutput};
use plugin_abi::sdk::{StepError, Verifier};
use plugin_abi::testing::{self, body, http, outcome};
use serde_json::{json, Value};

use crate::flow::{CARRIER_CHECK, OTP_EXPIRY_TIMER, SMS_SEND, SMS_VERIFY};
use crate::vendor::RETRY_TIMER;
use crate::{Config, PhoneRealName};

fn base() -> Value {
    json!({"carrier_url": "https://carrier.test", "sms_url": "https://sms.test/"})
}

fn config(extra: Value) -> Config {
    testing::config(base(), extra)
}

type Run = testing::Run<PhoneRealName>;

fn run(extra: Value) -> Run {
    Run::new(base(), extra, "vrf_1")
}

/// The steps the tests repeat.
trait PhoneRun {
    fn start(&mut self, name: &str, id: &str, phone: &str) -> StepOutput;
    fn code(&mut self, code: &str) -> StepOutput;
    fn reach_challenge(&mut self) -> StepOutput;
}

impl PhoneRun for Run {
    fn start(&mut self, name: &str, id: &str, phone: &str) -> StepOutput {
        self.begin(json!({"name": name, "id_number": id, "phone": phone}))
    }

    fn code(&mut self, code: &str) -> StepOutput {
        self.input("sms_code", code)
    }

    /// Start with the matching identity and get to the code challenge.
    fn reach_challenge(&mut self) -> StepOutput {
        self.start("张三", "11010519491231002X", "+86 138 0013 8000");
        self.reply(
            CARRIER_CHECK,
            200,
            json!({"result": "match", "carrier_request_id": "cr_9"}),
        );
        self.reply(SMS_SEND, 200, json!({"otp_id": "otp_7", "expires_in": 300}))
    }
}

#[test]
fn manifest_declares_fields_hosts_and_secrets() {
    let m = PhoneRealName::manifest();
    assert_eq!(m.name, "phone-real-name");
    assert_eq!(
        m.applicant_fields,
        vec![
            ApplicantField::Name,
            ApplicantField::IdNumber,
            ApplicantField::Phone
        ]
    );
    assert_eq!(
        m.config_schema["properties"]["carrier_api_key"]["x-secret"],
        json!(true)
    );
    assert_eq!(
        m.config_schema["properties"]["sms_api_key"]["x-secret"],
        json!(true)
    );
    assert_eq!(m.egress_hosts.len(), 2);
}

#[test]
fn bad_config_is_rejected() {
    assert!(PhoneRealName::configure(config(json!({"max_attempts": 0}))).is_err());
    assert!(PhoneRealName::configure(config(json!({"code_ttl_secs": 5}))).is_err());
    assert!(PhoneRealName::configure(config(json!({"carrier_url": "carrier.test"}))).is_err());
    assert!(serde_json::from_value::<Config>(
        json!({"carrier_url": "https://a", "sms_url": "https://b", "pin": 1})
    )
    .is_err());
}

#[test]
fn success_walks_carrier_sms_and_code() {
    let mut r = run(json!({}));
    let out = r.start("张三", "11010519491231002x", "+86 138 0013 8000");
    assert_eq!(out.status, Status::Pending);
    let h = http(&out);
    assert_eq!(h.id, CARRIER_CHECK);
    assert_eq!(h.url, "https://carrier.test/carrier/v1/verify");
    assert_eq!(h.headers["x-api-key"], "{{secret:carrier_api_key}}");
    assert_eq!(
        body(h),
        json!({"request_id": "vrf_1:carrier", "name": "张三", "id_number": "11010519491231002X", "phone": "13800138000"})
    );

    let out = r.reply(
        CARRIER_CHECK,
        200,
        json!({"result": "match", "carrier_request_id": "cr_9"}),
    );
    let h = http(&out);
    assert_eq!(h.id, SMS_SEND);
    assert_eq!(h.url, "https://sms.test/sms/v1/send");
    assert_eq!(h.headers["x-api-key"], "{{secret:sms_api_key}}");
    assert_eq!(
        body(h),
        json!({"request_id": "vrf_1:sms", "phone": "13800138000"})
    );

    let out = r.reply(SMS_SEND, 200, json!({"otp_id": "otp_7", "expires_in": 300}));
    assert_eq!(out.status, Status::AwaitingUser);
    match out.actions.as_slice() {
        [Action::Challenge(c), Action::Timer(t)] => {
            assert_eq!(c.expires_at, "2026-11-24T12:05:00Z");
            assert_eq!(c.payload["phone_masked"], "138****8000");
            assert_eq!(t.id, OTP_EXPIRY_TIMER);
            assert_eq!(t.after_ms, 300_000);
        }
        other => panic!("expected challenge + timer, got {other:?}"),
    }
    assert!(
        !out.state.to_string().contains("13800138000"),
        "phone dropped once sent"
    );

    r.now = "2026-11-24T12:01:00Z".into();
    let out = r.code(" 123456 ");
    assert_eq!(out.status, Status::Pending);
    let h = http(&out);
    assert_eq!(h.id, SMS_VERIFY);
    assert_eq!(body(h), json!({"otp_id": "otp_7", "code": "123456"}));

    let out = r.reply(SMS_VERIFY, 200, json!({"result": "ok"}));
    assert_eq!(out.status, Status::Succeeded);
    let res = out.result.unwrap();
    assert_eq!(res.outcome, Outcome::Verified);
    assert_eq!(res.assurance.as_deref(), Some("L2"));
    assert_eq!(
        res.verified_attributes,
        vec![
            ApplicantField::Name,
            ApplicantField::IdNumber,
            ApplicantField::Phone
        ]
    );
    assert_eq!(res.evidence["vendor_request_id"], "cr_9");
    assert!(out.actions.is_empty());
}

#[test]
fn invalid_inputs_fail_before_any_vendor_call() {
    let cases = [
        ("11010519491231002", "13800138000", Outcome::InvalidIdNumber),
        (
            "110105194912310021",
            "13800138000",
            Outcome::InvalidIdNumber,
        ), // checksum
        (
            "110105209912310028",
            "13800138000",
            Outcome::InvalidIdNumber,
        ), // born in 2099
        ("11010519491231002X", "12800138000", Outcome::InvalidPhone),
        ("11010519491231002X", "1380013800", Outcome::InvalidPhone),
    ];
    for (id, phone, want) in cases {
        let mut r = run(json!({}));
        let out = r.start("张三", id, phone);
        assert_eq!(out.status, Status::Failed, "{id} {phone}");
        assert_eq!(outcome(&out), Some(want), "{id} {phone}");
        assert!(out.actions.is_empty());
    }
    let mut r = run(json!({}));
    let err = r
        .try_step(json!({"type": "start", "applicant": {"id_number": "11010519491231002X", "phone": "13800138000"}}))
        .unwrap_err();
    assert!(matches!(err, StepError::InvalidArgument(_)));
}

#[test]
fn carrier_verdicts_map_to_failure_codes() {
    let cases = [
        ("mismatch", Outcome::Mismatch),
        ("not_real_name", Outcome::PhoneNotRealName),
        ("no_record", Outcome::NoRecord),
        ("phone_invalid", Outcome::InvalidPhone),
        ("something_new", Outcome::VendorUnavailable),
    ];
    for (verdict, want) in cases {
        let mut r = run(json!({}));
        r.start("张三", "11010519491231002X", "13800138000");
        let out = r.reply(
            CARRIER_CHECK,
            200,
            json!({"result": verdict, "carrier_request_id": "cr_1"}),
        );
        assert_eq!(out.status, Status::Failed, "{verdict}");
        assert_eq!(outcome(&out), Some(want), "{verdict}");
        assert_eq!(out.result.unwrap().evidence["vendor_request_id"], "cr_1");
        assert!(!out.state.to_string().contains("13800138000"));
    }
}

#[test]
fn wrong_codes_count_down_then_exceed() {
    let mut r = run(json!({"max_attempts": 3}));
    r.reach_challenge();
    for left in [2, 1] {
        r.code("000000");
        let out = r.reply(SMS_VERIFY, 200, json!({"result": "wrong"}));
        assert_eq!(out.status, Status::AwaitingUser);
        assert_eq!(outcome(&out), Some(Outcome::OtpWrong));
        assert_eq!(out.result.unwrap().evidence["attempts_left"], left);
    }
    r.code("000000");
    let out = r.reply(SMS_VERIFY, 200, json!({"result": "wrong"}));
    assert_eq!(out.status, Status::Failed);
    assert_eq!(outcome(&out), Some(Outcome::OtpAttemptsExceeded));
}

#[test]
fn malformed_code_counts_as_wrong_without_vendor_call() {
    let mut r = run(json!({}));
    r.reach_challenge();
    let out = r.code("12ab56");
    assert_eq!(out.status, Status::AwaitingUser);
    assert_eq!(outcome(&out), Some(Outcome::OtpWrong));
    match out.actions.as_slice() {
        [Action::Challenge(c)] => assert_eq!(c.expires_at, "2026-11-24T12:05:00Z", "same expiry"),
        other => panic!("no vendor call, the challenge shown again; got {other:?}"),
    }
    // still possible to answer correctly afterwards
    let out = r.code("654321");
    assert_eq!(http(&out).id, SMS_VERIFY);
    let out = r.reply(SMS_VERIFY, 200, json!({"result": "ok"}));
    assert_eq!(out.status, Status::Succeeded);
}

#[test]
fn code_after_expiry_is_otp_expired() {
    let mut r = run(json!({"code_ttl_secs": 60}));
    r.reach_challenge();
    r.now = "2026-11-24T12:01:00Z".into();
    let out = r.code("123456");
    assert_eq!(out.status, Status::Failed);
    assert_eq!(outcome(&out), Some(Outcome::OtpExpired));
}

#[test]
fn expiry_timer_ends_the_challenge_and_early_timer_rearms() {
    let mut r = run(json!({}));
    r.reach_challenge();
    r.now = "2026-11-24T12:04:00Z".into();
    let out = r.step(json!({"type": "timer", "id": OTP_EXPIRY_TIMER}));
    assert_eq!(out.status, Status::AwaitingUser);
    match out.actions.as_slice() {
        [Action::Timer(t)] => assert_eq!(t.after_ms, 60_000),
        other => panic!("expected a re-armed timer, got {other:?}"),
    }
    r.now = "2026-11-24T12:05:00Z".into();
    let out = r.step(json!({"type": "timer", "id": OTP_EXPIRY_TIMER}));
    assert_eq!(outcome(&out), Some(Outcome::OtpExpired));
}

#[test]
fn gateway_lifetime_shorter_than_config_wins() {
    let mut r = run(json!({"code_ttl_secs": 600}));
    r.start("张三", "11010519491231002X", "13800138000");
    r.reply(CARRIER_CHECK, 200, json!({"result": "match"}));
    let out = r.reply(SMS_SEND, 200, json!({"otp_id": "otp_1", "expires_in": 120}));
    match out.actions.as_slice() {
        [Action::Challenge(c), Action::Timer(t)] => {
            assert_eq!(c.expires_at, "2026-11-24T12:02:00Z");
            assert_eq!(t.after_ms, 120_000);
        }
        other => panic!("expected challenge + timer, got {other:?}"),
    }
}

#[test]
fn gateway_forgetting_the_code_is_otp_expired() {
    let mut r = run(json!({}));
    r.reach_challenge();
    r.code("123456");
    let out = r.reply(SMS_VERIFY, 200, json!({"result": "unknown"}));
    assert_eq!(outcome(&out), Some(Outcome::OtpExpired));
}

#[test]
fn vendor_5xx_is_retried_by_timer_then_unavailable() {
    let mut r = run(json!({"max_retries": 2, "retry_after_ms": 100}));
    let first = r.start("张三", "11010519491231002X", "13800138000");
    let sent = http(&first).clone();
    for delay in [100, 200] {
        let out = r.reply(CARRIER_CHECK, 503, json!({"error": "busy"}));
        assert_eq!(out.status, Status::Pending);
        match out.actions.as_slice() {
            [Action::Timer(t)] => {
                assert_eq!(t.id, RETRY_TIMER);
                assert_eq!(t.after_ms, delay);
            }
            other => panic!("expected a retry timer, got {other:?}"),
        }
        let out = r.step(json!({"type": "timer", "id": RETRY_TIMER}));
        assert_eq!(
            http(&out),
            &sent,
            "the same request (same idempotency key) is resent"
        );
    }
    let out = r.reply(CARRIER_CHECK, 500, json!({}));
    assert_eq!(out.status, Status::Failed);
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
}

#[test]
fn retry_then_success_continues_the_flow() {
    let mut r = run(json!({}));
    r.start("张三", "11010519491231002X", "13800138000");
    r.step(json!({"type": "http_error", "id": CARRIER_CHECK, "error": "timeout"}));
    r.step(json!({"type": "timer", "id": RETRY_TIMER}));
    let out = r.reply(CARRIER_CHECK, 200, json!({"result": "match"}));
    assert_eq!(http(&out).id, SMS_SEND);
}

#[test]
fn refused_host_and_4xx_are_not_retried() {
    let mut r = run(json!({}));
    r.start("张三", "11010519491231002X", "13800138000");
    let out = r.step(json!({"type": "http_error", "id": CARRIER_CHECK, "error": "refused_host"}));
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
    let mut r = run(json!({}));
    r.start("张三", "11010519491231002X", "13800138000");
    let out = r.reply(CARRIER_CHECK, 401, json!({"error": "unauthorized"}));
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
}

#[test]
fn duplicate_or_stale_answers_are_ignored() {
    let mut r = run(json!({}));
    r.reach_challenge();
    let before = r.state.clone();
    let out = r.reply(SMS_SEND, 200, json!({"otp_id": "otp_other"}));
    assert_eq!(out.status, Status::AwaitingUser);
    assert!(out.actions.is_empty());
    assert!(out.result.is_none());
    assert_eq!(r.state, before);
}

#[test]
fn cancel_fails_with_cancelled_and_finished_rejects_events() {
    let mut r = run(json!({}));
    r.reach_challenge();
    let out = r.step(json!({"type": "cancel"}));
    assert_eq!(outcome(&out), Some(Outcome::Cancelled));
    let err = r.try_step(json!({"type": "user_input", "challenge": "sms_code", "data": "123456"}));
    assert!(matches!(err, Err(StepError::InvalidArgument(_))));
}

#[test]
fn protocol_errors_are_typed() {
    let mut r = run(json!({}));
    assert!(matches!(
        r.try_step(json!({"type": "cancel"})),
        Err(StepError::InvalidArgument(_))
    ));
    r.state = Some(json!({"phase": "warp"}));
    assert!(matches!(
        r.try_step(json!({"type": "cancel"})),
        Err(StepError::State(_))
    ));
    let mut r = run(json!({}));
    r.reach_challenge();
    let err =
        r.try_step(json!({"type": "user_input", "challenge": "deposit_amount", "data": "0.10"}));
    assert!(matches!(err, Err(StepError::InvalidArgument(_))));
    let err = r.try_step(json!({"type": "callback", "body": {}}));
    assert!(matches!(err, Err(StepError::Unsupported(_))));
    r.now = "yesterday".into();
    assert!(matches!(
        r.try_step(json!({"type": "cancel"})),
        Err(StepError::InvalidArgument(_))
    ));
}

#[test]
fn same_inputs_give_same_outputs() {
    let mut a = run(json!({}));
    let mut b = run(json!({}));
    assert_eq!(a.reach_challenge(), b.reach_challenge());
    assert_eq!(a.state, b.state);
}

#[test]
fn recorded_flows_replay() {
    let fixtures = [
        (
            "sms_wrong_then_right",
            include_str!("../fixtures/sms_wrong_then_right.json"),
        ),
        ("sms_expired", include_str!("../fixtures/sms_expired.json")),
        (
            "sms_attempts_exceeded",
            include_str!("../fixtures/sms_attempts_exceeded.json"),
        ),
        (
            "carrier_5xx_then_retry",
            include_str!("../fixtures/carrier_5xx_then_retry.json"),
        ),
    ];
    for (name, text) in fixtures {
        testing::replay::<PhoneRealName>(name, text);
    }
}
