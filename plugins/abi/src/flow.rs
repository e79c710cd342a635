//! The step of a vendor-calling verifier, dispatched once: a plugin supplies its phases as the
//! hooks of [`Flow`], and [`dispatch`] applies the rules every such verifier shares: start once,
//! nothing after the end, cancel fails, a duplicate or late vendor answer changes nothing, a
//! transient vendor failure is retried by policy and a permanent one fails `vendor_unavailable`,
//! the user answers only the flow's own challenge.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::doc::{
    Action, Applicant, ApplicantField, ChallengeKind, Event, Outcome, Status, StepOutput, Timer,
};
use crate::sdk::{self, StepError};
use crate::vendor::{classify_error, classify_response, InFlight, Reply, RetryPolicy, RETRY_TIMER};

/// A verifier's phases as hooks; [`dispatch`] decides which one an event reaches.
pub trait Flow {
    /// The opaque state the host keeps between steps.
    type State: Serialize + DeserializeOwned;
    /// The plugin's name, in refusals.
    const NAME: &'static str;
    /// The challenge the user answers; `None` when the flow asks nothing of the user.
    const CHALLENGE: Option<ChallengeKind>;
    /// The attributes a success proves.
    const PROVES: &'static [ApplicantField];
    /// The assurance level a success gives.
    const ASSURANCE: &'static str;

    /// The first event: checks the applicant and sends the first vendor request.
    fn start(&self, applicant: Applicant) -> Result<StepOutput, StepError>;
    /// The vendor request in flight, if any.
    fn in_flight(state: &mut Self::State) -> &mut InFlight;
    /// How transient vendor failures are retried.
    fn retry(&self) -> RetryPolicy;
    /// Whether the verification has ended (every later event is refused).
    fn is_finished(state: &Self::State) -> bool;
    /// The state kept after the end: nothing in flight, no token, no personal data.
    fn finished(state: Self::State) -> Self::State;
    /// The status reported while the verification runs.
    fn status(state: &Self::State) -> Status;
    /// The evidence recorded with the result.
    fn evidence(&self, state: &Self::State) -> Value;
    /// The vendor's answer (a 2xx body) to the request that was in flight (now cleared).
    fn on_answer(&self, state: Self::State, body: String) -> Result<StepOutput, StepError>;

    /// A fired timer: by default only the vendor retry timer, which re-sends the request in
    /// flight.
    fn on_timer(&self, state: Self::State, id: &str) -> Result<StepOutput, StepError> {
        self.on_retry_timer(state, id)
    }

    /// What the user entered for [`Flow::CHALLENGE`].
    fn on_input(&self, _state: Self::State, _data: &str) -> Result<StepOutput, StepError> {
        Err(StepError::Unsupported(format!(
            "{} asks nothing of the user",
            Self::NAME
        )))
    }

    /// A vendor's asynchronous notification.
    fn on_callback(&self, _state: Self::State, _body: &Value) -> Result<StepOutput, StepError> {
        Err(StepError::Unsupported(format!(
            "{} takes no vendor callbacks",
            Self::NAME
        )))
    }

    /// Re-sends the request in flight when `id` is the vendor retry timer; otherwise nothing.
    fn on_retry_timer(&self, mut state: Self::State, id: &str) -> Result<StepOutput, StepError> {
        let resend = match id {
            RETRY_TIMER => Self::in_flight(&mut state).resend(),
            _ => None,
        };
        match resend {
            Some(action) => self.out(state, vec![action]),
            None => self.unchanged(state),
        }
    }

    /// A running output with `actions`.
    fn out(&self, state: Self::State, actions: Vec<Action>) -> Result<StepOutput, StepError> {
        let mut out = sdk::output(Self::status(&state), sdk::state_value(&state)?);
        out.actions = actions;
        Ok(out)
    }

    /// A running output that does nothing.
    fn unchanged(&self, state: Self::State) -> Result<StepOutput, StepError> {
        self.out(state, Vec::new())
    }

    /// The final success, proving [`Flow::PROVES`] at [`Flow::ASSURANCE`].
    fn succeed(&self, state: Self::State) -> Result<StepOutput, StepError> {
        let evidence = self.evidence(&state);
        Ok(sdk::succeeded(
            sdk::state_value(&Self::finished(state))?,
            Self::PROVES.to_vec(),
            Self::ASSURANCE,
            evidence,
        ))
    }

    /// The final failure with `outcome`.
    fn fail(&self, state: Self::State, outcome: Outcome) -> Result<StepOutput, StepError> {
        let evidence = self.evidence(&state);
        Ok(sdk::failed(
            sdk::state_value(&Self::finished(state))?,
            outcome,
            evidence,
        ))
    }
}

/// Runs one step of `flow` on the host's opaque `state` and one `event`.
pub fn dispatch<F: Flow>(
    flow: &F,
    state: &Option<Value>,
    event: Event,
) -> Result<StepOutput, StepError> {
    let invalid = |m: &str| StepError::InvalidArgument(m.to_owned());
    let state: Option<F::State> = sdk::parse_state(state)?;
    match (state, event) {
        (None, Event::Start { applicant }) => flow.start(applicant),
        (None, _) => Err(invalid("the first event must be start")),
        (Some(_), Event::Start { .. }) => Err(invalid("verification already started")),
        (Some(s), _) if F::is_finished(&s) => Err(invalid("verification already finished")),
        (Some(s), Event::Cancel) => flow.fail(s, Outcome::Cancelled),
        (Some(s), Event::HttpResponse { id, status, body }) => {
            on_reply(flow, s, &id, classify_response(status, body))
        }
        (Some(s), Event::HttpError { id, error }) => on_reply(flow, s, &id, classify_error(error)),
        (Some(s), Event::Timer { id }) => flow.on_timer(s, &id),
        (Some(s), Event::UserInput { challenge, data }) => match F::CHALLENGE {
            Some(kind) if kind == challenge => flow.on_input(s, &data),
            Some(kind) => Err(StepError::InvalidArgument(format!(
                "this verification only asks for a {}",
                challenge_name(kind)
            ))),
            None => flow.on_input(s, &data),
        },
        (Some(s), Event::Callback { body }) => flow.on_callback(s, &body),
    }
}

/// The vendor's reply to request `id`: a body goes to the flow, a transient failure is retried
/// while the policy allows, anything else fails `vendor_unavailable`. Actions are at-least-once:
/// a reply to a request no longer in flight (a duplicate or late answer) changes nothing.
fn on_reply<F: Flow>(
    flow: &F,
    mut s: F::State,
    id: &str,
    reply: Reply,
) -> Result<StepOutput, StepError> {
    if !F::in_flight(&mut s).is(id) {
        return flow.unchanged(s);
    }
    match reply {
        Reply::Body(body) => {
            F::in_flight(&mut s).clear();
            flow.on_answer(s, body)
        }
        Reply::Transient => match F::in_flight(&mut s).on_transient(flow.retry()) {
            Some(timer) => flow.out(s, vec![timer]),
            None => flow.fail(s, Outcome::VendorUnavailable),
        },
        Reply::Permanent => flow.fail(s, Outcome::VendorUnavailable),
    }
}

/// A code's expiry timer fired while the user was still to type it: `Ok(None)` when the code has
/// expired (the flow fails with `otp_expired`), or the timer again for the time left when the
/// host's clock ran ahead of ours.
pub fn code_expiry_timer(timer_id: &str, expires: i64, now: i64) -> Option<Action> {
    let left = expires - now;
    (left > 0).then(|| {
        Action::Timer(Timer {
            id: timer_id.into(),
            after_ms: u64::try_from(left).unwrap_or(1).saturating_mul(1000),
        })
    })
}

fn challenge_name(kind: ChallengeKind) -> &'static str {
    match kind {
        ChallengeKind::SmsCode => "sms_code",
        ChallengeKind::FaceUrl => "face_url",
        ChallengeKind::DepositAmount => "deposit_amount",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::HttpErrorKind;
    use crate::vendor::post_json;
    use serde::Deserialize;
    use serde_json::json;

    /// A one-request flow: start sends `check`; a body "ok" succeeds, anything else fails.
    struct Echo;

    #[derive(Serialize, Deserialize)]
    struct EchoState {
        done: bool,
        inflight: InFlight,
    }

    impl Flow for Echo {
        type State = EchoState;
        const NAME: &'static str = "echo";
        const CHALLENGE: Option<ChallengeKind> = Some(ChallengeKind::SmsCode);
        const PROVES: &'static [ApplicantField] = &[ApplicantField::Name];
        const ASSURANCE: &'static str = "L1";

        fn start(&self, _: Applicant) -> Result<StepOutput, StepError> {
            let mut s = EchoState {
                done: false,
                inflight: InFlight::default(),
            };
            let action =
                s.inflight
                    .send(post_json("check", "http://v", "/c", "k", &json!({}), 1000));
            self.out(s, vec![action])
        }
        fn in_flight(s: &mut EchoState) -> &mut InFlight {
            &mut s.inflight
        }
        fn retry(&self) -> RetryPolicy {
            RetryPolicy {
                max_retries: 1,
                retry_after_ms: 10,
            }
        }
        fn is_finished(s: &EchoState) -> bool {
            s.done
        }
        fn finished(_: EchoState) -> EchoState {
            EchoState {
                done: true,
                inflight: InFlight::default(),
            }
        }
        fn status(_: &EchoState) -> Status {
            Status::Pending
        }
        fn evidence(&self, _: &EchoState) -> Value {
            json!({})
        }
        fn on_answer(&self, s: EchoState, body: String) -> Result<StepOutput, StepError> {
            match body.as_str() {
                "ok" => self.succeed(s),
                _ => self.fail(s, Outcome::Mismatch),
            }
        }
    }

    fn step(state: &Option<Value>, event: Event) -> Result<StepOutput, StepError> {
        dispatch(&Echo, state, event)
    }

    fn started() -> Option<Value> {
        let start = Event::Start {
            applicant: Applicant::default(),
        };
        step(&None, start).ok().map(|o| o.state)
    }

    fn reply(id: &str, status: u16, body: &str) -> Event {
        Event::HttpResponse {
            id: id.into(),
            status,
            body: body.into(),
        }
    }

    #[test]
    fn the_first_event_must_be_start_and_start_comes_once() {
        assert!(matches!(
            step(&None, Event::Cancel),
            Err(StepError::InvalidArgument(_))
        ));
        let again = Event::Start {
            applicant: Applicant::default(),
        };
        assert!(matches!(
            step(&started(), again),
            Err(StepError::InvalidArgument(_))
        ));
    }

    #[test]
    fn an_answer_to_a_request_not_in_flight_changes_nothing() {
        let s = started();
        let out = step(&s, reply("other", 200, "ok")).ok();
        assert_eq!(out.as_ref().map(|o| &o.state), s.as_ref());
        assert!(out.is_some_and(|o| o.result.is_none() && o.actions.is_empty()));
    }

    #[test]
    fn a_transient_failure_is_retried_by_policy_then_fails_vendor_unavailable() {
        let first = step(&started(), reply("check", 503, "")).ok();
        let retried = first.as_ref().map(|o| o.actions.clone());
        assert!(
            matches!(retried.as_deref(), Some([Action::Timer(t)]) if t.id == RETRY_TIMER),
            "{retried:?}"
        );
        let state = first.map(|o| o.state);
        let resent = step(
            &state,
            Event::Timer {
                id: RETRY_TIMER.into(),
            },
        )
        .ok();
        assert!(matches!(
            resent.map(|o| o.actions).as_deref(),
            Some([Action::Http(h)]) if h.id == "check"
        ));
        let timeout = Event::HttpError {
            id: "check".into(),
            error: HttpErrorKind::Timeout,
        };
        let out = step(&state, timeout).ok();
        let outcome = out.and_then(|o| o.result).map(|r| r.outcome);
        assert_eq!(outcome, Some(Outcome::VendorUnavailable));
    }

    #[test]
    fn a_body_reaches_the_flow_and_nothing_is_accepted_after_the_end() {
        let out = step(&started(), reply("check", 200, "ok")).ok();
        assert_eq!(out.as_ref().map(|o| o.status), Some(Status::Succeeded));
        let done = out.map(|o| o.state);
        assert!(matches!(
            step(&done, Event::Cancel),
            Err(StepError::InvalidArgument(_))
        ));
    }

    #[test]
    fn the_user_answers_only_the_flows_challenge() {
        let face = Event::UserInput {
            challenge: ChallengeKind::FaceUrl,
            data: String::new(),
        };
        let refused = step(&started(), face);
        assert!(
            matches!(&refused, Err(StepError::InvalidArgument(m)) if m.contains("sms_code")),
            "{refused:?}"
        );
        let callback = Event::Callback { body: json!({}) };
        assert!(matches!(
            step(&started(), callback),
            Err(StepError::Unsupported(_))
        ));
    }
}
