#![allow(clippy::unwrap_used)] // tests may unwrap
use super::*;
use serde_json::json;

#[test]
fn step_input_parses_the_spec_examples() {
    let events = [
        json!({"type":"start","applicant":{"name":"张三","id_number":"11010519491231002X","phone":"13800138000"}}),
        json!({"type":"http_response","id":"carrier-check","status":200,"body":"{}"}),
        json!({"type":"http_error","id":"carrier-check","error":"refused_host"}),
        json!({"type":"user_input","challenge":"sms_code","data":"123456"}),
        json!({"type":"callback","body":{"x":1}}),
        json!({"type":"timer","id":"poll-result"}),
        json!({"type":"cancel"}),
    ];
    for ev in events {
        let doc = json!({"v":1,"verification_id":"vrf_1","now":"2026-11-24T12:00:00Z","state":null,"event":ev});
        let parsed: StepInput = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), doc);
    }
}

#[test]
fn unknown_event_and_unknown_field_are_rejected() {
    let bad =
        json!({"v":1,"verification_id":"v","now":"n","state":null,"event":{"type":"explode"}});
    assert!(serde_json::from_value::<StepInput>(bad).is_err());
    let extra = json!({"v":1,"verification_id":"v","now":"n","state":null,"event":{"type":"timer","id":"t","x":1}});
    assert!(serde_json::from_value::<StepInput>(extra).is_err());
}

#[test]
fn step_output_round_trips_and_unknown_action_is_rejected() {
    let doc = json!({"v":1,"status":"pending","state":{"n":1},"actions":[
        {"type":"http","id":"c","method":"POST","url":"https://h/x","headers":{"authorization":"Bearer {{secret:api_key}}"},"body":"b","timeout_ms":5000},
        {"type":"challenge","kind":"sms_code","payload":{"phone":"138****8000"},"expires_at":"2026-11-24T12:05:00Z"},
        {"type":"timer","id":"poll","after_ms":30000}],"result":null});
    let out: StepOutput = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(serde_json::to_value(&out).unwrap(), doc);
    let bad =
        json!({"v":1,"status":"pending","state":null,"actions":[{"type":"shell","cmd":"rm"}]});
    assert!(serde_json::from_value::<StepOutput>(bad).is_err());
}

#[test]
fn rules_catch_inconsistent_status() {
    let mut out = StepOutput::new(Status::Succeeded, Value::Null);
    assert_eq!(
        out.check_rules(),
        Err(OutputRuleError::Inconsistent {
            status: Status::Succeeded
        })
    );
    out.result = Some(VerificationResult {
        outcome: Outcome::Verified,
        verified_attributes: vec![ApplicantField::Name],
        assurance: Some("L2".into()),
        evidence: Value::Null,
    });
    assert_eq!(out.check_rules(), Ok(()));
    out.status = Status::Failed;
    assert!(out.check_rules().is_err());
    out.v = 2;
    assert_eq!(out.check_rules(), Err(OutputRuleError::Version(2)));
}

#[test]
fn applicant_debug_masks_values_and_only_filters() {
    let a = Applicant {
        name: Some("张三".into()),
        phone: Some("13800138000".into()),
        ..Default::default()
    };
    let dbg = format!("{a:?}");
    assert!(
        !dbg.contains("13800138000") && !dbg.contains("张三"),
        "{dbg}"
    );
    let only = a.only(&[ApplicantField::Phone]);
    assert_eq!(only.name, None);
    assert_eq!(only.phone.as_deref(), Some("13800138000"));
}
