//! Test support for verifier plugins (feature `testing`): a [`Run`] drives a plugin's `step` with
//! JSON events the way the host would, checking every output against the ABI's rules, and
//! [`replay`] checks a recorded flow. For plugins' own unit tests; panics on any surprise.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use crate::doc::{Action, HttpAction, Outcome, StepInput, StepOutput};
use crate::sdk::{StepError, Verifier};

/// The clock of every run unless a test moves it.
pub const T0: &str = "2026-11-24T12:00:00Z";

/// One verification of plugin `V`, step by step, keeping the state as the host does.
pub struct Run<V> {
    /// The configured plugin.
    pub plugin: V,
    /// The opaque state after the last step (`None` before the first).
    pub state: Option<Value>,
    /// The `now` of the next step (RFC 3339).
    pub now: String,
    /// The verification id every step carries.
    pub verification_id: String,
}

impl<V: Verifier> Run<V> {
    /// A run of `V` configured with `base` overlaid by the keys of `extra`, at [`T0`].
    pub fn new(base: Value, extra: Value, verification_id: &str) -> Self {
        Run {
            plugin: V::configure(config(base, extra)).unwrap_or_else(|e| panic!("config: {e}")),
            state: None,
            now: T0.into(),
            verification_id: verification_id.into(),
        }
    }

    /// One step with a JSON `event`; an output that breaks the ABI's rules panics.
    pub fn try_step(&mut self, event: Value) -> Result<StepOutput, StepError> {
        let input: StepInput = serde_json::from_value(json!({
            "v": 1, "verification_id": self.verification_id, "now": self.now,
            "state": self.state, "event": event,
        }))
        .unwrap();
        let out = self.plugin.step(input)?;
        out.check_rules().unwrap();
        self.state = Some(out.state.clone());
        Ok(out)
    }

    /// One step that must succeed.
    pub fn step(&mut self, event: Value) -> StepOutput {
        self.try_step(event).unwrap()
    }

    /// The `start` event with `applicant`.
    pub fn begin(&mut self, applicant: Value) -> StepOutput {
        self.step(json!({"type": "start", "applicant": applicant}))
    }

    /// The vendor's HTTP answer to request `id`.
    pub fn reply(&mut self, id: &str, status: u16, body: Value) -> StepOutput {
        self.step(
            json!({"type": "http_response", "id": id, "status": status, "body": body.to_string()}),
        )
    }

    /// What the user entered for a `challenge` (`sms_code`, `face_url`, `deposit_amount`).
    pub fn input(&mut self, challenge: &str, data: &str) -> StepOutput {
        self.step(json!({"type": "user_input", "challenge": challenge, "data": data}))
    }

    /// Timer `id` fired.
    pub fn timer(&mut self, id: &str) -> StepOutput {
        self.step(json!({"type": "timer", "id": id}))
    }
}

/// A plugin config: `base` with the keys of `extra` added or replaced.
pub fn config<C: serde::de::DeserializeOwned>(mut base: Value, extra: Value) -> C {
    if let (Some(m), Value::Object(e)) = (base.as_object_mut(), extra) {
        m.extend(e);
    }
    serde_json::from_value(base).unwrap()
}

/// The one HTTP action of `out`.
pub fn http(out: &StepOutput) -> &HttpAction {
    match out.actions.as_slice() {
        [Action::Http(h)] => h,
        other => panic!("expected one http action, got {other:?}"),
    }
}

/// The outcome of `out`'s result, if it has one.
pub fn outcome(out: &StepOutput) -> Option<Outcome> {
    out.result.as_ref().map(|r| r.outcome)
}

/// The JSON body of an HTTP action.
pub fn body(h: &HttpAction) -> Value {
    serde_json::from_str(h.body.as_deref().unwrap()).unwrap()
}

/// One action as `"<type> <id or kind>"`, the form recorded in fixtures.
pub fn action_summary(a: &Action) -> String {
    match a {
        Action::Http(h) => format!("http {}", h.id),
        Action::Challenge(c) => format!(
            "challenge {}",
            serde_json::to_value(c.kind).unwrap().as_str().unwrap()
        ),
        Action::Timer(t) => format!("timer {}", t.id),
    }
}

/// Replays a recorded flow (`{"config", "steps": [{"now", "event", "status", "outcome"?,
/// "actions"}]}`; an HTTP body may be written as JSON): each step must give the recorded status,
/// outcome and actions.
pub fn replay<V: Verifier>(name: &str, text: &str) {
    let fixture: Value = serde_json::from_str(text).unwrap();
    let plugin = V::configure(serde_json::from_value(fixture["config"].clone()).unwrap())
        .unwrap_or_else(|e| panic!("{name} config: {e}"));
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
