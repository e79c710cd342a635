//! The state machine driven through `Verifier::step` with synthetic events.

use plugin_abi::doc::{Action, Outcome, Status, StepOutput};
use plugin_abi::sdk::{StepError, Verifier};
use plugin_abi::testing::{self, http, outcome};
use serde_json::{json, Value};

use crate::vendor::RETRY_TIMER;
use crate::{Config, OrgRegistry, REGISTRY_CHECK};

const USCC: &str = "91350100M000100Y43";
const USCC_BAD_CHECK: &str = "91110000100000000A";

type Run = testing::Run<OrgRegistry>;

fn run(extra: Value) -> Run {
    Run::new(
        json!({"registry_url": "https://registry.test"}),
        extra,
        "vrf_5",
    )
}

/// The steps the tests repeat.
trait RegistryRun {
    fn start(&mut self, uscc: &str, rep_id: &str) -> StepOutput;
    fn answer(&mut self, status: u16, body: Value) -> StepOutput;
}

impl RegistryRun for Run {
    fn start(&mut self, uscc: &str, rep_id: &str) -> StepOutput {
        self.begin(json!({
            "org_name": "示例科技有限公司", "uscc": uscc,
            "legal_rep_name": "张三", "legal_rep_id": rep_id}))
    }

    /// The registry's answer to the check in flight.
    fn answer(&mut self, status: u16, body: Value) -> StepOutput {
        self.reply(REGISTRY_CHECK, status, body)
    }
}

#[test]
fn config_and_manifest() {
    let bad: Config = serde_json::from_value(json!({"registry_url": "registry"})).unwrap();
    assert!(OrgRegistry::configure(bad).is_err());
    let m = OrgRegistry::manifest();
    assert_eq!(m.applicant_fields.len(), 4);
    assert_eq!(
        m.config_schema["properties"]["registry_api_key"]["x-secret"],
        json!(true)
    );
}

#[test]
fn match_and_active_is_verified() {
    let mut r = run(json!({}));
    let out = r.start(&USCC.to_lowercase(), "11010519491231002X");
    assert_eq!(out.status, Status::Pending);
    let h = http(&out);
    assert_eq!(h.url, "https://registry.test/registry/v1/verify");
    assert_eq!(h.headers["x-api-key"], "{{secret:registry_api_key}}");
    let body: Value = serde_json::from_str(h.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"request_id": "vrf_5:registry", "name": "示例科技有限公司", "uscc": USCC,
               "legal_rep_name": "张三", "legal_rep_id": "11010519491231002X"})
    );
    let out = r.answer(200, json!({"result": "match", "status": "active", "mismatch_fields": [], "registry_request_id": "reg_1"}));
    assert_eq!(out.status, Status::Succeeded);
    let res = out.result.unwrap();
    assert_eq!(res.verified_attributes.len(), 4);
    assert_eq!(res.evidence["vendor_request_id"], "reg_1");
    assert_eq!(res.evidence["uscc_checksum_ok"], true);
}

#[test]
fn registry_verdicts_map_to_outcomes() {
    let cases = [
        (
            json!({"result": "match", "status": "deregistered"}),
            Outcome::Deregistered,
        ),
        (
            json!({"result": "match", "status": "revoked"}),
            Outcome::Deregistered,
        ),
        (
            json!({"result": "mismatch", "status": "active", "mismatch_fields": ["legal_rep_id"]}),
            Outcome::Mismatch,
        ),
        (json!({"result": "no_record"}), Outcome::NoRecord),
        (json!({"result": "maybe"}), Outcome::VendorUnavailable),
        (json!("not an object"), Outcome::VendorUnavailable),
    ];
    for (answer, want) in cases {
        let mut r = run(json!({}));
        r.start(USCC, "11010519491231002X");
        let out = r.answer(200, answer.clone());
        assert_eq!(out.status, Status::Failed, "{answer}");
        assert_eq!(outcome(&out), Some(want), "{answer}");
    }
    let mut r = run(json!({}));
    r.start(USCC, "11010519491231002X");
    let out = r.answer(
        200,
        json!({"result": "mismatch", "mismatch_fields": ["name", "<script>"]}),
    );
    assert_eq!(
        out.result.unwrap().evidence["mismatch_fields"],
        json!(["name"])
    );
}

#[test]
fn checksum_failure_is_soft_and_the_registry_decides() {
    let mut r = run(json!({}));
    let out = r.start(USCC_BAD_CHECK, "11010519491231002X");
    assert_eq!(
        http(&out).id,
        REGISTRY_CHECK,
        "sent despite the bad check character"
    );
    let out = r.answer(200, json!({"result": "match", "status": "active"}));
    assert_eq!(out.status, Status::Succeeded);
    assert_eq!(out.result.unwrap().evidence["uscc_checksum_ok"], false);

    let mut r = run(json!({}));
    r.start(USCC_BAD_CHECK, "11010519491231002X");
    let out = r.answer(200, json!({"result": "no_record"}));
    assert_eq!(outcome(&out), Some(Outcome::InvalidUscc));
}

#[test]
fn malformed_inputs_fail_first() {
    let mut r = run(json!({}));
    assert_eq!(
        outcome(&r.start("91350100M000100Y4", "11010519491231002X")),
        Some(Outcome::InvalidUscc)
    );
    let mut r = run(json!({}));
    assert_eq!(
        outcome(&r.start("91350100M000100YI3", "11010519491231002X")),
        Some(Outcome::InvalidUscc)
    );
    let mut r = run(json!({}));
    assert_eq!(
        outcome(&r.start(USCC, "110105194912310020")),
        Some(Outcome::InvalidIdNumber)
    );
    let mut r = run(json!({}));
    let err = r.try_step(json!({"type": "start", "applicant": {"org_name": "x", "uscc": USCC, "legal_rep_id": "11010519491231002X"}}));
    assert!(matches!(err, Err(StepError::InvalidArgument(_))));
}

#[test]
fn retries_then_unavailable() {
    let mut r = run(json!({"max_retries": 2, "retry_after_ms": 10}));
    let sent = http(&r.start(USCC, "11010519491231002X")).clone();
    for delay in [10, 20] {
        let out = r.answer(503, json!({}));
        assert!(
            matches!(out.actions.as_slice(), [Action::Timer(t)] if t.id == RETRY_TIMER && t.after_ms == delay)
        );
        let out = r.step(json!({"type": "timer", "id": RETRY_TIMER}));
        assert_eq!(http(&out), &sent);
    }
    let out = r.step(json!({"type": "http_error", "id": REGISTRY_CHECK, "error": "connect"}));
    assert_eq!(outcome(&out), Some(Outcome::VendorUnavailable));
}

#[test]
fn cancel_stale_and_protocol_errors() {
    let mut r = run(json!({}));
    r.start(USCC, "11010519491231002X");
    let out = r.step(json!({"type": "http_response", "id": "other", "status": 200, "body": "{}"}));
    assert!(out.actions.is_empty() && out.result.is_none());
    let err = r.try_step(json!({"type": "user_input", "challenge": "sms_code", "data": "1"}));
    assert!(matches!(err, Err(StepError::Unsupported(_))));
    assert_eq!(
        outcome(&r.step(json!({"type": "cancel"}))),
        Some(Outcome::Cancelled)
    );
    assert!(matches!(
        r.try_step(json!({"type": "cancel"})),
        Err(StepError::InvalidArgument(_))
    ));
    r.state = Some(json!({"done": "yes"}));
    assert!(matches!(
        r.try_step(json!({"type": "cancel"})),
        Err(StepError::State(_))
    ));
}
