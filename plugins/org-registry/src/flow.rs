//! The verification state machine: one pure step from (config, state, event, now).

use identifiers::{ResidentId, Timestamp, Uscc};
use plugin_abi::doc::{
    Applicant, ApplicantField, ChallengeKind, Outcome, Status, StepInput, StepOutput,
};
use plugin_abi::flow::{self, Flow};
use plugin_abi::sdk::StepError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Config;
use crate::vendor::{post_json, InFlight, RetryPolicy};

/// Id of the registry request.
pub const REGISTRY_CHECK: &str = "registry-check";

/// The opaque state the host persists between steps.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// True once finished.
    pub done: bool,
    /// The request in flight.
    #[serde(default)]
    pub inflight: InFlight,
    /// Whether the USCC passed its GB 32100 check character.
    pub uscc_checksum_ok: bool,
    /// Registry's request id (evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_request_id: Option<String>,
    /// Which fields the registry reported as different (evidence; field names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatch_fields: Vec<String>,
}

#[derive(Deserialize)]
struct Answer {
    result: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    mismatch_fields: Vec<String>,
    #[serde(default)]
    registry_request_id: Option<String>,
}

struct Ctx<'a> {
    cfg: &'a Config,
    vid: &'a str,
    now: Timestamp,
}

/// Runs one step.
pub fn step(cfg: &Config, input: StepInput) -> Result<StepOutput, StepError> {
    let now = Timestamp::parse(&input.now)
        .map_err(|_| StepError::InvalidArgument("now is not an RFC 3339 time".into()))?;
    let ctx = Ctx {
        cfg,
        vid: &input.verification_id,
        now,
    };
    flow::dispatch(&ctx, &input.state, input.event)
}

fn required<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str, StepError> {
    match v.as_deref().map(str::trim) {
        Some(x) if !x.is_empty() => Ok(x),
        _ => Err(StepError::InvalidArgument(format!("{what} is required"))),
    }
}

impl Flow for Ctx<'_> {
    type State = State;
    const NAME: &'static str = "org-registry";
    const CHALLENGE: Option<ChallengeKind> = None;
    const PROVES: &'static [ApplicantField] = &[
        ApplicantField::OrgName,
        ApplicantField::Uscc,
        ApplicantField::LegalRepName,
        ApplicantField::LegalRepId,
    ];
    const ASSURANCE: &'static str = "L2";

    fn in_flight(s: &mut State) -> &mut InFlight {
        &mut s.inflight
    }

    fn retry(&self) -> RetryPolicy {
        self.cfg.retry()
    }

    fn is_finished(s: &State) -> bool {
        s.done
    }

    fn status(_: &State) -> Status {
        Status::Pending
    }

    /// The state kept after the end: nothing in flight.
    fn finished(s: State) -> State {
        State {
            done: true,
            inflight: InFlight::default(),
            ..s
        }
    }

    fn start(&self, a: Applicant) -> Result<StepOutput, StepError> {
        let name = required(&a.org_name, "organisation name")?;
        let rep_name = required(&a.legal_rep_name, "legal representative name")?;
        let mut s = State {
            done: false,
            inflight: InFlight::default(),
            uscc_checksum_ok: false,
            registry_request_id: None,
            mismatch_fields: Vec::new(),
        };
        let Ok(uscc) = Uscc::parse(a.uscc.as_deref().unwrap_or_default()) else {
            return self.fail(s, Outcome::InvalidUscc);
        };
        s.uscc_checksum_ok = uscc.checksum_valid();
        let today = self
            .now
            .utc_date()
            .map_err(|_| StepError::InvalidArgument("now is out of range".into()))?;
        let Ok(rep_id) = ResidentId::parse(a.legal_rep_id.as_deref().unwrap_or_default(), today)
        else {
            return self.fail(s, Outcome::InvalidIdNumber);
        };
        let body = json!({
            "request_id": format!("{}:registry", self.vid),
            "name": name,
            "uscc": uscc.as_str(),
            "legal_rep_name": rep_name,
            "legal_rep_id": rep_id.as_str(),
        });
        let action = s.inflight.send(post_json(
            REGISTRY_CHECK,
            &self.cfg.registry_url,
            "/registry/v1/verify",
            "registry_api_key",
            &body,
            self.cfg.timeout_ms,
        ));
        self.out(s, vec![action])
    }

    fn on_answer(&self, mut s: State, body: String) -> Result<StepOutput, StepError> {
        let Ok(a) = serde_json::from_str::<Answer>(&body) else {
            return self.fail(s, Outcome::VendorUnavailable);
        };
        s.registry_request_id = a.registry_request_id;
        s.mismatch_fields = a
            .mismatch_fields
            .into_iter()
            .filter(|f| {
                matches!(
                    f.as_str(),
                    "name" | "uscc" | "legal_rep_name" | "legal_rep_id"
                )
            })
            .collect();
        let active = a.status.as_deref() == Some("active");
        match a.result.as_str() {
            "match" if active => self.succeed(s),
            "match" => self.fail(s, Outcome::Deregistered),
            "mismatch" => self.fail(s, Outcome::Mismatch),
            // A bad check character the registry does not know either: the code is invalid.
            "no_record" if !s.uscc_checksum_ok => self.fail(s, Outcome::InvalidUscc),
            "no_record" => self.fail(s, Outcome::NoRecord),
            _ => self.fail(s, Outcome::VendorUnavailable),
        }
    }

    fn evidence(&self, s: &State) -> Value {
        json!({
            "vendor_request_id": s.registry_request_id,
            "uscc_checksum_ok": s.uscc_checksum_ok,
            "mismatch_fields": s.mismatch_fields,
        })
    }
}
