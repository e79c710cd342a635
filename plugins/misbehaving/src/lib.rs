//! A deliberately misbehaving verifier for the host's containment tests; never deploy it.
//!
//! Config `{"behaviour": "..."}` picks what `step` does: `segfault`, `abort`, `hang`, `panic`,
//! `huge_output` (2 MiB reply), `bad_json`, `unknown_action`, `ok` (succeeds at once), or `http`
//! (GET `url` from the config, succeed on 200, fail `vendor_unavailable` otherwise), `socket`
//! (try to connect a TCP socket itself and report whether the sandbox denied it), `timer` (wait
//! for a 1.5 s timer, then succeed), `echo_fields` (report which applicant fields arrived), `chatty` (print to stdout, then succeed),
//! `hostile` (try to steal the CA's secrets and break out, see [`hostile`]; config `targets`).

pub mod hostile;

use plugin_abi::doc::{
    self, Action, ApplicantField, Event, HttpAction, HttpMethod, Manifest, Outcome, PluginKind,
};
use plugin_abi::sdk::{self, ConfigError, StepError, Verifier};
use serde::Deserialize;
use serde_json::json;

/// What `step` does.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Writes through a NULL pointer.
    Segfault,
    /// Calls abort().
    Abort,
    /// Never returns.
    Hang,
    /// Panics (caught by the SDK: PANIC, instance poisoned).
    Panic,
    /// Replies 2 MiB.
    HugeOutput,
    /// Replies bytes that are not JSON.
    BadJson,
    /// Replies an action of an unknown type.
    UnknownAction,
    /// Succeeds at once.
    Ok,
    /// One HTTP GET to `url`, then succeed on 200.
    Http,
    /// Tries to open a TCP connection itself (denied by the worker's seccomp filter); succeeds
    /// with evidence `{"socket": "denied" | "refused" | "connected" | "other"}`.
    Socket,
    /// Prints to stdout (bytes that would corrupt a naive frame stream), then succeeds.
    Chatty,
    /// Start sets a timer `poll` (after 1500 ms); the timer event succeeds.
    Timer,
    /// Succeeds with evidence `{"fields": [...]}`: the applicant fields it received (proves the
    /// host passes only the manifest's `applicant_fields`).
    EchoFields,
    /// Attacks the host (see [`hostile`]) and answers `awaiting_user` with an `sms_code`
    /// challenge whose payload is the report of what it got.
    Hostile,
}

/// The plugin's config.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What `step` does.
    pub behaviour: Behaviour,
    /// URL for the `http` behaviour.
    #[serde(default)]
    pub url: Option<String>,
    /// What the `hostile` behaviour goes after.
    #[serde(default)]
    pub targets: hostile::Targets,
}

/// The misbehaving verifier.
pub struct Misbehaving(Config);

#[allow(unsafe_code)] // the point of this plugin: crash the process that loaded it
fn segfault() -> ! {
    // SAFETY: deliberately unsound: a write through NULL to raise SIGSEGV in a test worker.
    unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1) };
    std::process::abort()
}

impl Verifier for Misbehaving {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            v: doc::DOC_VERSION,
            name: "misbehaving".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Verifier,
            methods: vec!["misbehaving".into()],
            config_schema: json!({
                "type": "object",
                "required": ["behaviour"],
                "properties": {
                    "behaviour": {"enum": ["segfault","abort","hang","panic","huge_output","bad_json","unknown_action","ok","http","socket","timer","echo_fields","chatty","hostile"]},
                    "url": {"type": "string"},
                    "targets": {"type": "object"}
                },
                "additionalProperties": false
            }),
            egress_hosts: vec![],
            applicant_fields: vec![ApplicantField::Name],
        }
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if config.behaviour == Behaviour::Http && config.url.is_none() {
            return Err(ConfigError::new("behaviour http needs a url"));
        }
        Ok(Misbehaving(config))
    }

    fn step(&self, input: doc::StepInput) -> Result<doc::StepOutput, StepError> {
        match self.0.behaviour {
            Behaviour::Segfault => segfault(),
            Behaviour::Abort => std::process::abort(),
            Behaviour::Hang => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            Behaviour::Panic => panic!("misbehaving plugin panics on purpose"),
            Behaviour::Ok => Ok(sdk::succeeded(
                json!({"n": 1}),
                vec![ApplicantField::Name],
                "L1",
                json!({}),
            )),
            Behaviour::Http => self.http_flow(input),
            Behaviour::Hostile => {
                let mut out = sdk::output(doc::Status::AwaitingUser, json!(null));
                out.actions.push(Action::Challenge(doc::Challenge {
                    kind: doc::ChallengeKind::SmsCode,
                    payload: hostile::attack(&self.0.targets),
                    expires_at: input.now.clone(),
                }));
                Ok(out)
            }
            Behaviour::Chatty => {
                use std::io::Write;
                let mut out = std::io::stdout();
                let _ = out.write_all(b"\xff\xff\xff\x7f chatty plugin debug output\n");
                let _ = out.flush();
                Ok(sdk::succeeded(
                    json!(null),
                    vec![ApplicantField::Name],
                    "L1",
                    json!({}),
                ))
            }
            Behaviour::Timer => match input.event {
                Event::Start { .. } => {
                    let mut out = sdk::output(doc::Status::Pending, json!({"waiting": true}));
                    out.actions.push(Action::Timer(doc::Timer {
                        id: "poll".into(),
                        after_ms: 1500,
                    }));
                    Ok(out)
                }
                Event::Timer { id } if id == "poll" => Ok(sdk::succeeded(
                    json!({"waiting": false}),
                    vec![ApplicantField::Name],
                    "L1",
                    json!({}),
                )),
                _ => Err(StepError::Unsupported(
                    "event not used by this plugin".into(),
                )),
            },
            Behaviour::EchoFields => {
                let Event::Start { applicant } = input.event else {
                    return Err(StepError::Unsupported("start only".into()));
                };
                let fields: Vec<&str> = [
                    ("name", applicant.name.is_some()),
                    ("id_number", applicant.id_number.is_some()),
                    ("phone", applicant.phone.is_some()),
                    ("bank_card", applicant.bank_card.is_some()),
                ]
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(n, _)| n)
                .collect();
                Ok(sdk::succeeded(
                    json!(null),
                    vec![ApplicantField::Name],
                    "L1",
                    json!({ "fields": fields }),
                ))
            }
            Behaviour::Socket => {
                let what = match std::net::TcpStream::connect(("127.0.0.1", 9)) {
                    Ok(_) => "connected",
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => "denied",
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
                    Err(_) => "other",
                };
                Ok(sdk::succeeded(
                    json!(null),
                    vec![ApplicantField::Name],
                    "L1",
                    json!({"socket": what}),
                ))
            }
            // raw replies are produced by raw_reply_for_tests
            Behaviour::HugeOutput | Behaviour::BadJson | Behaviour::UnknownAction => {
                Err(StepError::Internal("unreachable behaviour".into()))
            }
        }
    }

    fn raw_reply_for_tests(&self, _input: &doc::StepInput) -> Option<Vec<u8>> {
        match self.0.behaviour {
            Behaviour::HugeOutput => {
                let filler = "x".repeat(2 * 1024 * 1024);
                Some(format!(r#"{{"v":1,"status":"pending","state":"{filler}","actions":[]}}"#).into_bytes())
            }
            Behaviour::BadJson => Some(b"{\"v\":1,\"status\":\"pend".to_vec()),
            Behaviour::UnknownAction => Some(
                br#"{"v":1,"status":"pending","state":null,"actions":[{"type":"shell","cmd":"id"}]}"#.to_vec(),
            ),
            _ => None,
        }
    }
}

impl Misbehaving {
    fn http_flow(&self, input: doc::StepInput) -> Result<doc::StepOutput, StepError> {
        let url = self.0.url.clone().unwrap_or_default();
        match input.event {
            Event::Start { .. } => {
                let mut out = sdk::output(doc::Status::Pending, json!({"sent": true}));
                out.actions.push(Action::Http(HttpAction {
                    id: "probe".into(),
                    method: HttpMethod::GET,
                    url,
                    headers: [("x-api-key".to_owned(), "{{secret:api_key}}".to_owned())].into(),
                    body: None,
                    timeout_ms: 2000,
                }));
                Ok(out)
            }
            Event::HttpResponse {
                status: 200, body, ..
            } => Ok(sdk::succeeded(
                json!({"done": true}),
                vec![ApplicantField::Name],
                "L1",
                json!({"body": body}),
            )),
            Event::HttpResponse { status, .. } => Ok(sdk::failed(
                json!({"done": true}),
                Outcome::VendorUnavailable,
                json!({"status": status}),
            )),
            Event::HttpError { error, .. } => Ok(sdk::failed(
                json!({"done": true}),
                Outcome::VendorUnavailable,
                json!({"error": error}),
            )),
            Event::Cancel => Ok(sdk::failed(json!(null), Outcome::Cancelled, json!({}))),
            _ => Err(StepError::Unsupported(
                "event not used by this plugin".into(),
            )),
        }
    }
}

plugin_abi::export_verifier!(Misbehaving);
