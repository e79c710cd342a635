//! The conformance suite behind `ca-appliance plugin check PATH`: loads a plugin library (in a
//! worker by default, so a crash is a FAIL line, not a dead checker) and checks that it honours
//! the ABI contract. Prints as one `PASS`/`FAIL` line per check. Channel plugins (manifest kind
//! `channel`) get their own checks: garbage input, each declared method, determinism.

use std::fmt;
use std::path::Path;

use plugin_abi::channel::{
    ChannelEvent, ChannelInput, ChannelRequest, METHOD_EMAIL, METHOD_EVENTS, METHOD_SMS,
};
use plugin_abi::doc::{
    Applicant, ApplicantField, ChallengeKind, Event, Manifest, PluginKind, StepInput, StepOutput,
    DOC_VERSION,
};
use plugin_abi::StatusCode;
use serde_json::{json, Value};

use crate::error::PluginError;
use crate::load;
use crate::plugin::Plugin;
use crate::spec::{Isolation, PluginSpec};
use crate::validate;
use crate::worker::WorkerOptions;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Short name of the check.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was observed (no personal data).
    pub detail: String,
}

/// The suite's report; `Display` prints one PASS/FAIL line per check and a summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The plugin's name and version, once its manifest was read.
    pub plugin: Option<String>,
    /// Every check run, in order.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// True when every check passed (and at least one ran).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The result of a check by name.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    fn record(&mut self, name: &'static str, passed: bool, detail: impl Into<String>) {
        self.checks.push(CheckResult {
            name,
            passed,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plugin: {}",
            self.plugin.as_deref().unwrap_or("(not loaded)")
        )?;
        for c in &self.checks {
            let tag = if c.passed { "PASS" } else { "FAIL" };
            writeln!(f, "{tag} {:<18} {}", c.name, c.detail)?;
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        if self.passed() {
            writeln!(f, "RESULT: PASS ({} checks)", self.checks.len())
        } else {
            writeln!(
                f,
                "RESULT: FAIL ({failed} of {} checks failed)",
                self.checks.len()
            )
        }
    }
}

/// Well-formed sample values for every applicant field (synthetic, not a real person).
fn sample_applicant(fields: &[ApplicantField]) -> Applicant {
    let all = Applicant {
        name: Some("测试用户".into()),
        id_number: Some("11010519491231002X".into()),
        phone: Some("13800138000".into()),
        bank_card: Some("6222021234567890128".into()),
        org_name: Some("测试科技有限公司".into()),
        uscc: Some("91350100M000100Y43".into()),
        legal_rep_name: Some("测试法人".into()),
        legal_rep_id: Some("11010519491231002X".into()),
        bank_account: Some("1234567890123456".into()),
        bank_name: Some("测试银行".into()),
    };
    all.only(fields)
}

fn input(state: Option<Value>, event: Event) -> StepInput {
    StepInput {
        v: DOC_VERSION,
        verification_id: "vrf_conformance_0001".into(),
        now: "2026-01-01T00:00:00Z".into(),
        state,
        event,
    }
}

fn is_crash(e: &PluginError) -> bool {
    matches!(
        e,
        PluginError::WorkerCrashed { .. }
            | PluginError::Timeout { .. }
            | PluginError::Panicked
            | PluginError::CircuitOpen { .. }
    )
}

fn status_of(e: &PluginError) -> Option<StatusCode> {
    match e {
        PluginError::Status { status, .. } => Some(*status),
        PluginError::Config(_) => Some(StatusCode::Config),
        _ => None,
    }
}

fn spec_for(path: &Path, sha: &str, config: Value, isolation: Isolation) -> PluginSpec {
    let mut spec = PluginSpec::new("", path, sha);
    spec.config = config;
    spec.isolation = isolation;
    spec
}

/// Runs the suite against the library at `path` with `config`, in a worker process.
pub async fn check(path: &Path, config: Value) -> Report {
    check_with(path, config, Isolation::Worker, WorkerOptions::default()).await
}

/// Runs the suite with an explicit isolation mode and worker options.
pub async fn check_with(
    path: &Path,
    config: Value,
    isolation: Isolation,
    options: WorkerOptions,
) -> Report {
    let mut report = Report::default();
    let sha = match load::sha256_file(path) {
        Ok(s) => s,
        Err(e) => {
            report.record("open", false, e.to_string());
            return report;
        }
    };
    let mut opts = options;
    opts.failure_threshold = u32::MAX;
    let plugin = match Plugin::load_inner(
        spec_for(path, &sha, config, isolation),
        opts.clone(),
        false,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            report.record("load+describe", false, e.to_string());
            return report;
        }
    };
    let m = plugin.manifest().clone();
    report.plugin = Some(format!("{} {} (sha256 {sha})", m.name, m.version));
    report.record(
        "load+describe",
        true,
        format!(
            "ABI ok, manifest valid; methods {:?}, egress {:?}",
            m.methods, m.egress_hosts
        ),
    );
    let unmarked = validate::unmarked_secret_properties(&m);
    report.record(
        "secrets-marked",
        unmarked.is_empty(),
        if unmarked.is_empty() {
            "config schema is an object; secret-looking properties carry x-secret".to_owned()
        } else {
            format!("properties look secret but lack \"x-secret\": true: {unmarked:?}")
        },
    );

    // Bad config -> CONFIG.
    match Plugin::load_inner(
        spec_for(path, &sha, json!("not a config object"), isolation),
        opts,
        false,
    )
    .await
    {
        Err(PluginError::Config(_)) => report.record(
            "bad-config",
            true,
            "a non-object config is refused with CA_CONFIG",
        ),
        Err(e) => report.record("bad-config", false, format!("expected CA_CONFIG, got: {e}")),
        Ok(_) => report.record("bad-config", false, "a string config was accepted"),
    }

    if m.kind == PluginKind::Channel {
        channel_checks(&plugin, &m, &mut report).await;
        no_crash(&plugin, &mut report).await;
        return report;
    }

    // Garbage input -> an error code, no crash.
    let garbage: [(&str, Vec<u8>); 4] = [
        ("bytes", b"\x00\xffnot json".to_vec()),
        ("empty", Vec::new()),
        ("wrong-doc", br#"{"v":1,"hello":"world"}"#.to_vec()),
        ("wrong-v", br#"{"v":2,"verification_id":"vrf_x","now":"2026-01-01T00:00:00Z","state":null,"event":{"type":"cancel"}}"#.to_vec()),
    ];
    let mut garbage_ok = true;
    let mut details = Vec::new();
    for (what, bytes) in garbage {
        match plugin.step_bytes(bytes).await {
            Err(e) if is_crash(&e) => {
                garbage_ok = false;
                details.push(format!("{what}: {e}"));
            }
            Err(e) => details.push(format!(
                "{what}: {}",
                status_of(&e).map_or("error".to_owned(), |s| s.to_string())
            )),
            Ok(_) => {
                garbage_ok = false;
                details.push(format!("{what}: accepted"));
            }
        }
    }
    report.record("garbage-input", garbage_ok, details.join(", "));

    // Start, determinism, state round trip.
    let start = input(
        None,
        Event::Start {
            applicant: sample_applicant(&m.applicant_fields),
        },
    );
    let first = plugin.step(&start).await;
    let second = plugin.step(&start).await;
    let started: Option<StepOutput> = match (&first, &second) {
        (Ok(a), Ok(b)) => {
            report.record(
                "start",
                true,
                format!("status {:?}, {} action(s)", a.status, a.actions.len()),
            );
            report.record(
                "deterministic",
                a == b,
                if a == b {
                    "same input twice -> same output"
                } else {
                    "same input twice -> different outputs"
                },
            );
            Some(a.clone())
        }
        (Err(e), _) | (_, Err(e)) => {
            report.record(
                "start",
                false,
                format!("start with well-formed sample data failed: {e}"),
            );
            None
        }
    };
    if let Some(out) = started {
        let bytes = serde_json::to_vec(&out.state).unwrap_or_default();
        let reparsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let cancel = plugin.step(&input(Some(reparsed), Event::Cancel)).await;
        match cancel {
            Ok(o) => report.record(
                "state-round-trip",
                true,
                format!(
                    "state ({} bytes) fed back with cancel -> {:?}",
                    bytes.len(),
                    o.status
                ),
            ),
            Err(e) if status_of(&e) == Some(StatusCode::State) || is_crash(&e) => report.record(
                "state-round-trip",
                false,
                format!("its own state was rejected: {e}"),
            ),
            Err(e) => report.record(
                "state-round-trip",
                true,
                format!("state accepted (cancel answered {e})"),
            ),
        }
    }

    // Corrupt state -> STATE.
    let corrupt = json!({"conformance": "corrupt", "n": [1, 2, 3], "x": "\u{1}"});
    let events = [
        Event::UserInput {
            challenge: ChallengeKind::SmsCode,
            data: "000000".into(),
        },
        Event::Timer {
            id: "conformance".into(),
        },
        Event::HttpResponse {
            id: "conformance".into(),
            status: 200,
            body: "{}".into(),
        },
        Event::Callback { body: json!({}) },
    ];
    let mut saw_state = false;
    let mut crashed = None;
    for ev in events {
        match plugin.step(&input(Some(corrupt.clone()), ev)).await {
            Err(e) if status_of(&e) == Some(StatusCode::State) => saw_state = true,
            Err(e) if is_crash(&e) => crashed = Some(e.to_string()),
            _ => {}
        }
    }
    match crashed {
        Some(e) => report.record("corrupt-state", false, format!("crashed: {e}")),
        None => report.record(
            "corrupt-state",
            saw_state,
            if saw_state {
                "corrupt state answered with CA_STATE"
            } else {
                "corrupt state never answered with CA_STATE"
            },
        ),
    }

    no_crash(&plugin, &mut report).await;
    report
}

/// In a worker: it was started once and never failed.
async fn no_crash(plugin: &Plugin, report: &mut Report) {
    if let Some(h) = plugin.health().await {
        report.record(
            "no-crash",
            h.spawns == 1 && h.failures == 0,
            format!(
                "worker started {} time(s), {} failure(s)",
                h.spawns, h.failures
            ),
        );
    }
}

fn channel_input(request: ChannelRequest) -> ChannelInput {
    ChannelInput {
        v: DOC_VERSION,
        delivery_id: "ntf_conformance_0001".into(),
        now: "2026-01-01T00:00:00Z".into(),
        request,
    }
}

/// The channel-plugin part of the suite: garbage refused without a crash, every declared method
/// answered with valid actions (checked by the host's own validation), deterministic, and a
/// request of an undeclared method refused with an error code.
async fn channel_checks(plugin: &Plugin, m: &Manifest, report: &mut Report) {
    let garbage: [(&str, Vec<u8>); 4] = [
        ("bytes", b"\x00\xffnot json".to_vec()),
        ("empty", Vec::new()),
        ("wrong-doc", br#"{"v":1,"hello":"world"}"#.to_vec()),
        ("wrong-v", br#"{"v":2,"delivery_id":"ntf_x","now":"2026-01-01T00:00:00Z","request":{"type":"sms","to":"13800138000","text":"x"}}"#.to_vec()),
    ];
    let mut garbage_ok = true;
    let mut details = Vec::new();
    for (what, bytes) in garbage {
        match plugin.deliver_bytes(bytes).await {
            Err(e) if is_crash(&e) => {
                garbage_ok = false;
                details.push(format!("{what}: {e}"));
            }
            Err(e) => details.push(format!(
                "{what}: {}",
                status_of(&e).map_or("error".to_owned(), |s| s.to_string())
            )),
            Ok(_) => {
                garbage_ok = false;
                details.push(format!("{what}: accepted"));
            }
        }
    }
    report.record("garbage-input", garbage_ok, details.join(", "));

    let event = ChannelEvent {
        channel: "conformance".into(),
        application_id: "app_conformance".into(),
        application_kind: "new".into(),
        event: "issued".into(),
        status: "issued".into(),
        certificate_serial: Some("01".into()),
        phone: Some("13800138000".into()),
        email: Some("applicant@example.cn".into()),
        at: 1_767_225_600,
        ..Default::default()
    };
    let requests = [
        (
            METHOD_EVENTS,
            ChannelRequest::ApplicationEvent {
                event: crate::channel::event_for(m, &event),
            },
        ),
        (
            METHOD_SMS,
            ChannelRequest::Sms {
                to: "13800138000".into(),
                text: "conformance 123456".into(),
            },
        ),
        (
            METHOD_EMAIL,
            ChannelRequest::Email {
                to: "applicant@example.cn".into(),
                subject: "conformance".into(),
                text: "conformance".into(),
            },
        ),
    ];
    for (method, request) in requests {
        let declared = m.methods.iter().any(|x| x == method);
        let input = channel_input(request);
        let first = plugin.deliver(&input).await;
        let name = match method {
            METHOD_EVENTS => "events",
            METHOD_SMS => "sms",
            _ => "email",
        };
        match (declared, &first) {
            (true, Ok(out)) => {
                let again = plugin.deliver(&input).await;
                let same = again.as_ref().is_ok_and(|a| a == out);
                let needs_actions = method != METHOD_EVENTS;
                let ok = same && (!needs_actions || !out.actions.is_empty());
                report.record(
                    name,
                    ok,
                    format!(
                        "{} action(s), valid{}{}",
                        out.actions.len(),
                        if same {
                            ", deterministic"
                        } else {
                            ", NOT deterministic"
                        },
                        if needs_actions && out.actions.is_empty() {
                            ", but a declared send produced no action"
                        } else {
                            ""
                        }
                    ),
                );
            }
            (true, Err(e)) => report.record(name, false, format!("declared, but refused: {e}")),
            (false, Err(e)) if is_crash(e) => {
                report.record(name, false, format!("undeclared request crashed it: {e}"))
            }
            (false, Err(e)) => report.record(
                name,
                true,
                format!(
                    "not declared; refused with {}",
                    status_of(e).map_or("an error".to_owned(), |s| s.to_string())
                ),
            ),
            (false, Ok(out)) => report.record(
                name,
                out.actions.is_empty(),
                format!("not declared; answered {} action(s)", out.actions.len()),
            ),
        }
    }
}
