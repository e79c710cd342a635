//! The shape of a Rust verifier plugin: a fixed SMS code (for demos), ~40 lines of domain logic.
//! In a real plugin crate (`crate-type = ["cdylib", "rlib"]`) the same code plus the
//! `export_verifier!` line is the whole library. Run: `cargo run -p plugin-abi --example static_code`.
use plugin_abi::doc::{
    Action, ApplicantField, Challenge, ChallengeKind, Event, Manifest, Outcome, PluginKind,
};
use plugin_abi::doc::{Status, StepInput, StepOutput, DOC_VERSION};
use plugin_abi::sdk::{self, ConfigError, StepError, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    code: String,
    #[serde(default = "three")]
    max_attempts: u32,
}
fn three() -> u32 {
    3
}

#[derive(Serialize, Deserialize)]
struct State {
    attempts: u32,
}

struct StaticCode(Config);

impl Verifier for StaticCode {
    type Config = Config;
    fn manifest() -> Manifest {
        Manifest {
            v: DOC_VERSION,
            name: "static-code".into(),
            version: "0.1.0".into(),
            kind: PluginKind::Verifier,
            methods: vec!["static_code".into()],
            config_schema: json!({"type":"object","required":["code"],"properties":{"code":{"type":"string"},"max_attempts":{"type":"integer"}}}),
            egress_hosts: vec![],
            applicant_fields: vec![ApplicantField::Phone],
        }
    }
    fn configure(c: Config) -> Result<Self, ConfigError> {
        if c.code.len() != 6 {
            return Err(ConfigError::new("code must be 6 digits"));
        }
        Ok(StaticCode(c))
    }
    fn step(&self, input: StepInput) -> Result<StepOutput, StepError> {
        let st: Option<State> = sdk::parse_state(&input.state)?;
        match (input.event, st) {
            (Event::Start { .. }, None) => {
                let mut out = sdk::output(
                    Status::AwaitingUser,
                    sdk::state_value(&State { attempts: 0 })?,
                );
                out.actions.push(Action::Challenge(Challenge {
                    kind: ChallengeKind::SmsCode,
                    payload: json!({}),
                    expires_at: input.now,
                }));
                Ok(out)
            }
            (Event::UserInput { data, .. }, Some(s)) if data == self.0.code => Ok(sdk::succeeded(
                sdk::state_value(&s)?,
                vec![ApplicantField::Phone],
                "L1",
                json!({}),
            )),
            (Event::UserInput { .. }, Some(s)) if s.attempts + 1 < self.0.max_attempts => {
                let mut out = sdk::output(
                    Status::AwaitingUser,
                    sdk::state_value(&State {
                        attempts: s.attempts + 1,
                    })?,
                );
                out.result = sdk::failed(json!(null), Outcome::OtpWrong, json!({})).result;
                Ok(out)
            }
            (Event::UserInput { .. }, Some(s)) => Ok(sdk::failed(
                sdk::state_value(&s)?,
                Outcome::OtpAttemptsExceeded,
                json!({}),
            )),
            (Event::Cancel, _) => Ok(sdk::failed(json!(null), Outcome::Cancelled, json!({}))),
            (_, _) => Err(StepError::InvalidArgument(
                "event does not fit the state".into(),
            )),
        }
    }
}
// In the cdylib: plugin_abi::export_verifier!(StaticCode);

fn main() {
    let v = StaticCode::configure(Config {
        code: "123456".into(),
        max_attempts: 3,
    })
    .expect("valid config");
    let start: StepInput = serde_json::from_value(
        json!({"v":1,"verification_id":"vrf_1","now":"2026-11-24T12:00:00Z",
        "state":null,"event":{"type":"start","applicant":{"phone":"13800138000"}}}),
    )
    .expect("valid input");
    let out = v.step(start).expect("start");
    println!("{}", serde_json::to_string(&out).expect("serialises"));
}
