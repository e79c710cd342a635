//! The verification state machine: one pure step from (config, state, event, now).

use identifiers::{ResidentId, Timestamp, Uscc};
use plugin_abi::doc::{
    Action, Applicant, ApplicantField, Event, Outcome, Status, StepInput, StepOutput,
};
use plugin_abi::sdk::{self, StepError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Config;
use crate::vendor::{classify_error, classify_response, post_json, InFlight, Reply, RETRY_TIMER};

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
    let state: Option<State> = sdk::parse_state(&input.state)?;
    match (state, input.event) {
        (None, Event::Start { applicant }) => ctx.start(&applicant),
        (None, _) => Err(StepError::InvalidArgument(
            "the first event must be start".into(),
        )),
        (Some(_), Event::Start { .. }) => Err(StepError::InvalidArgument(
            "verification already started".into(),
        )),
        (Some(s), _) if s.done => Err(StepError::InvalidArgument(
            "verification already finished".into(),
        )),
        (Some(s), Event::Cancel) => ctx.fail(s, Outcome::Cancelled),
        (Some(s), Event::HttpResponse { id, status, body }) => {
            if !s.inflight.is(&id) {
                return ctx.unchanged(s);
            }
            ctx.on_reply(s, classify_response(status, body))
        }
        (Some(s), Event::HttpError { id, error }) => {
            if !s.inflight.is(&id) {
                return ctx.unchanged(s);
            }
            ctx.on_reply(s, classify_error(error))
        }
        (Some(s), Event::Timer { id }) if id == RETRY_TIMER => match s.inflight.resend() {
            Some(action) => ctx.out(s, vec![action]),
            None => ctx.unchanged(s),
        },
        (Some(s), Event::Timer { .. }) => ctx.unchanged(s),
        (Some(_), Event::UserInput { .. } | Event::Callback { .. }) => Err(StepError::Unsupported(
            "org-registry asks nothing of the user".into(),
        )),
    }
}

fn required<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str, StepError> {
    match v.as_deref().map(str::trim) {
        Some(x) if !x.is_empty() => Ok(x),
        _ => Err(StepError::InvalidArgument(format!("{what} is required"))),
    }
}

impl Ctx<'_> {
    fn start(&self, a: &Applicant) -> Result<StepOutput, StepError> {
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

    fn on_reply(&self, mut s: State, reply: Reply) -> Result<StepOutput, StepError> {
        let body = match reply {
            Reply::Body(b) => b,
            Reply::Transient => {
                return match s.inflight.on_transient(self.cfg.retry()) {
                    Some(timer) => self.out(s, vec![timer]),
                    None => self.fail(s, Outcome::VendorUnavailable),
                }
            }
            Reply::Permanent => return self.fail(s, Outcome::VendorUnavailable),
        };
        s.inflight.clear();
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

    fn succeed(&self, s: State) -> Result<StepOutput, StepError> {
        let evidence = self.evidence(&s);
        Ok(sdk::succeeded(
            sdk::state_value(&finished(s))?,
            vec![
                ApplicantField::OrgName,
                ApplicantField::Uscc,
                ApplicantField::LegalRepName,
                ApplicantField::LegalRepId,
            ],
            "L2",
            evidence,
        ))
    }

    fn fail(&self, s: State, outcome: Outcome) -> Result<StepOutput, StepError> {
        let evidence = self.evidence(&s);
        Ok(sdk::failed(
            sdk::state_value(&finished(s))?,
            outcome,
            evidence,
        ))
    }

    fn out(&self, s: State, actions: Vec<Action>) -> Result<StepOutput, StepError> {
        let mut out = sdk::output(Status::Pending, sdk::state_value(&s)?);
        out.actions = actions;
        Ok(out)
    }

    fn unchanged(&self, s: State) -> Result<StepOutput, StepError> {
        self.out(s, Vec::new())
    }
}

/// The state kept after the end: nothing in flight.
fn finished(s: State) -> State {
    State {
        done: true,
        inflight: InFlight::default(),
        ..s
    }
}
