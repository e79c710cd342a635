//! Distrust of plugin output: manifests and StepOutputs are parsed and checked here before the
//! host acts on them. Reasons never quote the plugin's bytes (they may hold personal data).

use plugin_abi::channel::{ChannelOutput, CHANNEL_METHODS};
use plugin_abi::doc::{Manifest, PluginKind, StepOutput, DOC_VERSION, MAX_OUTPUT_BYTES};
use serde_json::Value;

use crate::error::PluginError;

const KNOWN_ACTIONS: [&str; 3] = ["http", "challenge", "timer"];

fn bad(reason: impl Into<String>) -> PluginError {
    PluginError::BadOutput {
        reason: reason.into(),
    }
}

/// Parses and checks a StepOutput reply: size cap, JSON, schema (known action types only),
/// `"v": 1`, status/result consistency, state size.
pub fn parse_step_output(bytes: &[u8]) -> Result<StepOutput, PluginError> {
    if bytes.len() > MAX_OUTPUT_BYTES {
        return Err(bad(format!(
            "reply is {} bytes, over the {MAX_OUTPUT_BYTES}-byte cap",
            bytes.len()
        )));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!(
            "reply is not valid JSON (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    if value.get("v").and_then(Value::as_u64) != Some(u64::from(DOC_VERSION)) {
        return Err(bad("reply \"v\" is missing or not 1"));
    }
    if let Some(actions) = value.get("actions").and_then(Value::as_array) {
        for a in actions {
            let ty = a.get("type").and_then(Value::as_str).unwrap_or("");
            if !KNOWN_ACTIONS.contains(&ty) {
                return Err(bad("reply has an action of unknown type"));
            }
        }
    }
    let out: StepOutput = serde_json::from_value(value).map_err(|e| {
        bad(format!(
            "reply does not match the StepOutput schema ({:?} error)",
            e.classify()
        ))
    })?;
    out.check_rules().map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

/// Parses and checks a channel plugin's ChannelOutput reply: size cap, JSON, `"v": 1`, known
/// action types only (`http`), unique non-empty ids, at most 16 actions.
pub fn parse_channel_output(bytes: &[u8]) -> Result<ChannelOutput, PluginError> {
    if bytes.len() > MAX_OUTPUT_BYTES {
        return Err(bad(format!(
            "reply is {} bytes, over the {MAX_OUTPUT_BYTES}-byte cap",
            bytes.len()
        )));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!(
            "reply is not valid JSON (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    if value.get("v").and_then(Value::as_u64) != Some(u64::from(DOC_VERSION)) {
        return Err(bad("reply \"v\" is missing or not 1"));
    }
    if let Some(actions) = value.get("actions").and_then(Value::as_array) {
        if actions
            .iter()
            .any(|a| a.get("type").and_then(Value::as_str) != Some("http"))
        {
            return Err(bad("reply has an action of unknown type"));
        }
    }
    let out: ChannelOutput = serde_json::from_value(value).map_err(|e| {
        bad(format!(
            "reply does not match the ChannelOutput schema ({:?} error)",
            e.classify()
        ))
    })?;
    out.check_rules().map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

/// Why a manifest is unacceptable.
fn manifest_err(reason: impl Into<String>) -> PluginError {
    PluginError::Manifest(reason.into())
}

/// Checks `host:port` syntax of an egress entry.
pub(crate) fn valid_host_port(entry: &str) -> bool {
    match entry.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p != 0)
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        }
        None => false,
    }
}

/// Property names that look like secrets and therefore must carry `"x-secret": true`.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "secret",
        "password",
        "api_key",
        "apikey",
        "token",
        "private_key",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Config properties whose names look like secrets but lack `"x-secret": true` (a conformance
/// finding; loading does not refuse on this heuristic).
pub fn unmarked_secret_properties(m: &Manifest) -> Vec<String> {
    let Some(props) = m.config_schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .filter(|(name, prop)| {
            looks_secret(name) && prop.get("x-secret").and_then(Value::as_bool) != Some(true)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Parses and checks a manifest: `"v": 1`, non-empty name/version/methods, the config schema is
/// a JSON object, and egress hosts are `host:port`.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, PluginError> {
    if bytes.len() > MAX_OUTPUT_BYTES {
        return Err(manifest_err("manifest over the size cap"));
    }
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
        manifest_err(format!(
            "not a valid manifest document ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if m.v != DOC_VERSION {
        return Err(manifest_err(format!("\"v\" is {}, not 1", m.v)));
    }
    if m.name.trim().is_empty() || m.version.trim().is_empty() {
        return Err(manifest_err("name and version must not be empty"));
    }
    if m.methods.is_empty() || m.methods.iter().any(|x| x.trim().is_empty()) {
        return Err(manifest_err("methods must be a non-empty list of names"));
    }
    if !m.config_schema.is_object() {
        return Err(manifest_err("config_schema must be a JSON object"));
    }
    if let Some(h) = m.egress_hosts.iter().find(|h| !valid_host_port(h)) {
        return Err(manifest_err(format!("egress host {h:?} is not host:port")));
    }
    if m.kind == PluginKind::Channel {
        if let Some(x) = m
            .methods
            .iter()
            .find(|x| !CHANNEL_METHODS.contains(&x.as_str()))
        {
            return Err(manifest_err(format!(
                "channel plugin method {x:?} is not one of {CHANNEL_METHODS:?}"
            )));
        }
        if !m.applicant_fields.is_empty() {
            return Err(manifest_err(
                "a channel plugin asks for no applicant fields (it gets phone/email by its methods)",
            ));
        }
    }
    Ok(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn assert_bad(bytes: &[u8], needle: &str) {
        match parse_step_output(bytes) {
            Err(PluginError::BadOutput { reason }) => {
                assert!(reason.contains(needle), "{reason}")
            }
            other => panic!("expected BadOutput({needle}), got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_good_reply() {
        let out = parse_step_output(
            br#"{"v":1,"status":"pending","state":{"a":1},"actions":[{"type":"timer","id":"t","after_ms":5}]}"#,
        )
        .unwrap();
        assert_eq!(out.actions.len(), 1);
    }

    #[test]
    fn rejects_each_kind_of_bad_reply() {
        assert_bad(b"{\"v\":1,\"status\":\"pend", "not valid JSON");
        assert_bad(br#"{"v":2,"status":"pending","state":null}"#, "\"v\"");
        assert_bad(
            br#"{"v":1,"status":"pending","state":null,"actions":[{"type":"shell","cmd":"id"}]}"#,
            "unknown type",
        );
        assert_bad(
            br#"{"v":1,"status":"succeeded","state":null}"#,
            "inconsistent",
        );
        assert_bad(br#"{"v":1,"status":"dancing","state":null}"#, "schema");
        let huge = vec![b' '; MAX_OUTPUT_BYTES + 1];
        assert_bad(&huge, "cap");
    }

    #[test]
    fn bad_output_reason_never_quotes_content() {
        let r = parse_step_output(br#"{"v":1,"status":"110101199003071234","state":null}"#);
        let msg = r.unwrap_err().to_string();
        assert!(!msg.contains("110101199003071234"), "{msg}");
    }

    #[test]
    fn channel_replies_are_checked() {
        let good = parse_channel_output(
            br#"{"v":1,"actions":[{"type":"http","id":"cb","method":"POST","url":"https://p.example/","sign":{"secret":"s"}}]}"#,
        )
        .unwrap();
        assert_eq!(good.actions.len(), 1);
        assert!(parse_channel_output(br#"{"v":1,"actions":[]}"#).is_ok());
        for (bytes, needle) in [
            (&br#"{"v":1,"actions":[{"type":"timer","id":"t","after_ms":1}]}"#[..], "unknown type"),
            (br#"{"v":2,"actions":[]}"#, "\"v\""),
            (br#"{"v":1,"actions":[{"type":"http","id":"","method":"GET","url":"https://p.example/"}]}"#, "unique"),
            (br#"{"v":1,"actions":[{"type":"http","id":"a","method":"GET","url":"https://p.example/","extra":1}]}"#, "schema"),
        ] {
            match parse_channel_output(bytes) {
                Err(PluginError::BadOutput { reason }) => assert!(reason.contains(needle), "{reason}"),
                other => panic!("expected BadOutput({needle}), got {other:?}"),
            }
        }
    }

    #[test]
    fn channel_manifest_rules() {
        let good =
            br#"{"v":1,"name":"c","version":"0.1.0","kind":"channel","methods":["events","sms"],
            "config_schema":{},"egress_hosts":[],"applicant_fields":[]}"#;
        assert_eq!(parse_manifest(good).unwrap().kind, PluginKind::Channel);
        let bad_method =
            br#"{"v":1,"name":"c","version":"0.1.0","kind":"channel","methods":["fax"],
            "config_schema":{},"egress_hosts":[],"applicant_fields":[]}"#;
        assert!(matches!(
            parse_manifest(bad_method),
            Err(PluginError::Manifest(_))
        ));
        let fields = br#"{"v":1,"name":"c","version":"0.1.0","kind":"channel","methods":["sms"],
            "config_schema":{},"egress_hosts":[],"applicant_fields":["id_number"]}"#;
        assert!(matches!(
            parse_manifest(fields),
            Err(PluginError::Manifest(_))
        ));
    }

    #[test]
    fn manifest_rules() {
        let good = br#"{"v":1,"name":"x","version":"0.1.0","kind":"verifier","methods":["m"],
            "config_schema":{"type":"object","properties":{"api_key":{"type":"string","x-secret":true}}},
            "egress_hosts":["a.example:443"],"applicant_fields":["name"]}"#;
        assert_eq!(parse_manifest(good).unwrap().name, "x");
        let unmarked = br#"{"v":1,"name":"x","version":"0.1.0","kind":"verifier","methods":["m"],
            "config_schema":{"type":"object","properties":{"api_key":{"type":"string"}}},
            "egress_hosts":[],"applicant_fields":[]}"#;
        let m = parse_manifest(unmarked).unwrap();
        assert_eq!(unmarked_secret_properties(&m), vec!["api_key".to_owned()]);
        let schema_not_object =
            br#"{"v":1,"name":"x","version":"0.1.0","kind":"verifier","methods":["m"],
            "config_schema":true,"egress_hosts":[],"applicant_fields":[]}"#;
        assert!(matches!(
            parse_manifest(schema_not_object),
            Err(PluginError::Manifest(_))
        ));
        let bad_host = br#"{"v":1,"name":"x","version":"0.1.0","kind":"verifier","methods":["m"],
            "config_schema":{},"egress_hosts":["https://a.example"],"applicant_fields":[]}"#;
        assert!(matches!(
            parse_manifest(bad_host),
            Err(PluginError::Manifest(_))
        ));
    }
}
