//! Operating the appliance: `/metrics` on its own listener parsed by Prometheus' own Python
//! parser and moving with traffic; `/readyz` naming a removed HSM token; JSON log lines with the
//! request id of the error body they explain, and plain text without colours when asked.

#![allow(clippy::unwrap_used)] // tests may unwrap: a failure is the test failing

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use system_tests::*;

/// `init --demo --metrics-addr`: a demo whose metrics listener is on a free port.
fn demo_with_metrics() -> (DemoDir, SocketAddr) {
    let tmp = tempfile::tempdir().unwrap();
    let (api, public, metrics) = (free_addr(), free_addr(), free_addr());
    let (ok, out, err) = run(Command::new(appliance_bin()).args([
        "init",
        "--dir",
        tmp.path().to_str().unwrap(),
        "--demo",
        "--api-addr",
        &api.to_string(),
        "--public-addr",
        &public.to_string(),
        "--metrics-addr",
        &metrics.to_string(),
    ]));
    assert!(ok, "init --demo failed:\n{out}\n{err}");
    (DemoDir { tmp, api, public }, metrics)
}

/// One sample: name and sorted labels.
type Key = (String, BTreeMap<String, String>);

/// Scrapes `/metrics` and parses it with `prometheus_client` (a format error fails the test).
async fn scrape(metrics: SocketAddr) -> BTreeMap<Key, f64> {
    let (status, headers, body) = public_get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    let ctype = headers["content-type"].to_str().unwrap();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let mut child = Command::new("python3")
        .arg(workspace_root().join("tests/python/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut samples = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let labels = v["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        samples.insert(
            (v["name"].as_str().unwrap().to_owned(), labels),
            v["value"].as_f64().unwrap(),
        );
    }
    samples
}

/// The value of `name{labels}` (0 when absent: a counter not yet incremented).
fn value(samples: &BTreeMap<Key, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .get(&(name.to_owned(), labels))
        .copied()
        .unwrap_or(0.0)
}

/// Sum of `name` over all label sets.
fn total(samples: &BTreeMap<Key, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, v)| v)
        .sum()
}

fn operator(demo: &DemoDir) -> std::sync::Arc<rustls::ClientConfig> {
    demo.client_tls("operator")
}

/// Polls `cond` until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while !cond().await {
        assert!(Instant::now() < until, "{what} (after {deadline:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_prometheus_client_and_move_with_traffic() {
    let (demo, metrics) = demo_with_metrics();
    let _server = demo.serve();
    // Only the metrics listener serves /metrics.
    let (status, _, _) = public_get(demo.public, "/metrics").await;
    assert_eq!(status, 404);

    let before = scrape(metrics).await;
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let mut serials = Vec::new();
    for _ in 0..2 {
        let issued = demo.issue_personal("operator", &csr).await;
        std::fs::write(
            demo.path().join("ee.pem"),
            issued["certificate"].as_str().unwrap(),
        )
        .unwrap();
        serials.push(issued["serial"].as_str().unwrap().to_owned());
    }
    // A refused issuance (unknown profile never reaches the issuer; a bad CSR does).
    let body = issue_body("personal", "garbage", serde_json::json!({"name": "X"}));
    let (status, _) = api_request(
        demo.api,
        operator(&demo),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    // OCSP: the pre-signed answer once the pre-signer has it, then a malformed request.
    let request = demo.openssl_ocsp_request(&["-cert", "ee.pem", "-no_nonce"], "req.der");
    eventually("pre-signed OCSP answer", Duration::from_secs(20), || {
        let request = request.clone();
        let public = demo.public;
        async move {
            public_request(
                public,
                "POST",
                "/ocsp",
                &[("content-type", "application/ocsp-request")],
                request,
            )
            .await;
            let now = scrape(metrics).await;
            value(
                &now,
                "ca_ocsp_responses_total",
                &[("source", "presigned"), ("status", "successful")],
            ) >= 1.0
        }
    })
    .await;
    // OCSP on the public listener is answered ahead of its router: the same request id and
    // route metrics as a routed request.
    let (_, headers, _) = public_request(
        demo.public,
        "POST",
        "/ocsp",
        &[("x-request-id", "lb-ocsp.1")],
        b"not DER".to_vec(),
    )
    .await;
    assert_eq!(headers["x-request-id"], "lb-ocsp.1");
    let (_, headers, _) = public_get(demo.public, "/ocsp/%%%not-base64").await;
    assert_eq!(headers["x-request-id"].len(), 16, "{headers:?}");
    let (status, _, _) = public_get(demo.public, "/nowhere").await;
    assert_eq!(status, 404);
    public_get(demo.public, "/readyz").await;

    let after = scrape(metrics).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        delta(
            "ca_issuances_total",
            &[("profile", "personal"), ("outcome", "issued")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            "ca_issuances_total",
            &[("profile", "personal"), ("outcome", "refused")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "ca_issuance_duration_seconds_count",
            &[("profile", "personal")]
        ),
        3.0
    );
    // The malformed POST and the malformed GET.
    assert_eq!(
        delta(
            "ca_ocsp_responses_total",
            &[("source", "error"), ("status", "malformedRequest")]
        ),
        2.0
    );
    assert!(
        total(&after, "ca_hsm_sign_duration_seconds_count")
            >= total(&before, "ca_hsm_sign_duration_seconds_count") + 2.0,
        "two certificate signatures at least"
    );
    assert!(total(&after, "ca_hsm_pool_wait_seconds_count") >= 2.0);
    assert!(
        total(&after, "ca_db_commit_batch_size_count")
            >= total(&before, "ca_db_commit_batch_size_count") + 1.0
    );
    assert!(total(&after, "ca_db_commit_batch_size_sum") >= 2.0);
    assert!(total(&after, "ca_db_commit_duration_seconds_count") >= 1.0);
    assert_eq!(
        delta(
            "ca_http_requests_total",
            &[
                ("listener", "public"),
                ("route", "unmatched"),
                ("code", "404")
            ]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "ca_http_requests_total",
            &[
                ("listener", "api"),
                ("route", "/api/v1/certificates"),
                ("code", "201")
            ]
        ),
        2.0
    );
    // The pre-signed answers (at least one), then the malformed POST.
    assert!(
        delta(
            "ca_http_requests_total",
            &[("listener", "public"), ("route", "/ocsp"), ("code", "200")]
        ) >= 2.0
    );
    assert_eq!(
        delta(
            "ca_http_requests_total",
            &[
                ("listener", "public"),
                ("route", "/ocsp/{*request}"),
                ("code", "200")
            ]
        ),
        1.0
    );
    assert!(
        delta(
            "ca_http_request_duration_seconds_count",
            &[("listener", "public"), ("route", "/ocsp")]
        ) >= 2.0
    );
    // The gauges read from the services at scrape time.
    for ca in ["personal", "organisation"] {
        let age = value(
            &after,
            "ca_crl_age_seconds",
            &[("ca", ca), ("kind", "full")],
        );
        assert!((0.0..3600.0).contains(&age), "CRL age of {ca}: {age}");
        assert!(
            value(
                &after,
                "ca_crl_next_update_seconds",
                &[("ca", ca), ("kind", "full")]
            ) > 0.0
        );
        assert!(value(&after, "ca_crl_number", &[("ca", ca), ("kind", "full")]) >= 1.0);
        let responder = value(
            &after,
            "ca_certificate_expiry_days",
            &[("ca", ca), ("role", "ocsp_responder")],
        );
        assert!((1.0..=7.0).contains(&responder), "{responder}");
    }
    let root = value(
        &after,
        "ca_certificate_expiry_days",
        &[("ca", "root"), ("role", "ca")],
    );
    assert!((7290.0..=7300.0).contains(&root), "{root}");
    assert!(
        value(&after, "ca_ocsp_presigned_responses", &[("ca", "personal")]) >= 2.0,
        "both certificates pre-signed"
    );
    let oldest = value(
        &after,
        "ca_ocsp_oldest_presigned_age_seconds",
        &[("ca", "personal")],
    );
    assert!((0.0..600.0).contains(&oldest), "{oldest}");
    // The demo's plugins run in workers: each has its circuit state exported.
    assert!(after
        .keys()
        .any(|(n, l)| n == "ca_plugin_circuit_open" && l.get("plugin").is_some()));

    // Every series the shipped alert rules and dashboard query is one the appliance exports
    // (a renamed metric would silently disable an alert).
    let exported: std::collections::BTreeSet<&str> =
        after.keys().map(|(n, _)| n.as_str()).collect();
    for file in [
        "packaging/monitoring/alerts.yml",
        "packaging/monitoring/grafana-dashboard.json",
    ] {
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        let names = metric_names(&text);
        assert!(names.len() >= 8, "{file}: {names:?}");
        for name in names {
            // Appears with the first finished verification (no verification ran here).
            if name == "ca_verifications_finished_total" {
                continue;
            }
            assert!(
                exported.contains(name.as_str()),
                "{file} queries {name}, not exported"
            );
        }
    }
}

/// The `ca_*` metric names in a rules or dashboard file.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("ca_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if boundary && end > start + 3 {
            names.insert(text[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    names
}

/// The JSON log lines of the server (every line must be JSON: the log is not a terminal).
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    assert!(!log.contains('\u{1b}'), "ANSI escape in a non-terminal log");
    log.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_removed_token_and_logs_carry_the_request_id() {
    let demo = DemoDir::create();
    let dir = demo.path();
    let mut server = demo.serve();
    let (status, _, body) = public_get(demo.public, "/healthz").await;
    assert_eq!(
        (status, json(&body)["status"].clone()),
        (200, "alive".into())
    );
    eventually("ready after start", Duration::from_secs(20), || async {
        public_get(demo.public, "/readyz").await.0 == 200
    })
    .await;
    let (_, _, body) = public_get(demo.public, "/readyz").await;
    let ready = json(&body);
    assert_eq!(ready["status"], "ready", "{ready}");
    for check in ["hsm", "database", "crl", "ocsp"] {
        assert_eq!(ready["checks"][check], "ok", "{ready}");
    }

    // The token's storage disappears: unready, naming the HSM and nothing else.
    std::fs::rename(dir.join("tokens"), dir.join("tokens.away")).unwrap();
    eventually(
        "unready without the token",
        Duration::from_secs(10),
        || async { public_get(demo.public, "/readyz").await.0 == 503 },
    )
    .await;
    let (_, headers, body) = public_get(demo.public, "/readyz").await;
    let unready = json(&body);
    assert_eq!(unready["status"], "unready", "{unready}");
    assert!(
        unready["checks"]["hsm"]
            .as_str()
            .unwrap()
            .contains("is not on the token"),
        "{unready}"
    );
    assert_eq!(unready["checks"]["database"], "ok", "{unready}");
    assert!(unready["problems"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p.as_str().unwrap().starts_with("hsm:")));
    let readyz_id = unready["request_id"].as_str().unwrap().to_owned();
    assert_eq!(headers["x-request-id"].to_str().unwrap(), readyz_id);

    // An issuance that fails for it: the error body's request id is on the log line saying why.
    let csr = openssl_csr(dir, "ee", "ec:P-256");
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        "/api/v1/certificates",
        Some(issue_body(
            "personal",
            &csr,
            serde_json::json!({"name": "A"}),
        )),
    )
    .await
    .unwrap();
    assert_eq!(status, 503);
    let error = json(&resp);
    let issue_id = error["request_id"].as_str().unwrap().to_owned();
    assert_eq!(issue_id.len(), 16, "{error}");
    // Well-formed ids from the caller are kept; hostile ones are replaced.
    let (_, headers, _) = public_request(
        demo.public,
        "GET",
        "/nowhere",
        &[("x-request-id", "lb-1234.abc")],
        Vec::new(),
    )
    .await;
    assert_eq!(headers["x-request-id"], "lb-1234.abc");
    let (_, headers, _) = public_request(
        demo.public,
        "GET",
        "/nowhere",
        &[("x-request-id", "a\"b c")],
        Vec::new(),
    )
    .await;
    assert_ne!(headers["x-request-id"], "a\"b c");

    let lines = json_lines(&server.log_text());
    let of = |id: &str| -> Vec<serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .cloned()
            .collect()
    };
    let issue_lines = of(&issue_id);
    assert!(
        issue_lines
            .iter()
            .any(|l| l["fields"]["message"] == "HSM operation failed"),
        "{issue_lines:?}"
    );
    assert!(issue_lines
        .iter()
        .all(|l| l["span"]["route"] == "/api/v1/certificates"));
    assert!(!of(&readyz_id).is_empty());

    // Back, and after the restart an operator does after re-inserting a token: ready again.
    // (SoftHSM2 keeps a token whose directory vanished invalid for the life of the process;
    // hardware tokens report the removal as a session error and the pool reopens sessions.)
    std::fs::rename(dir.join("tokens.away"), dir.join("tokens")).unwrap();
    server.stop_with("TERM", Duration::from_secs(15));
    let _server = demo.serve();
    eventually("ready again", Duration::from_secs(20), || async {
        public_get(demo.public, "/readyz").await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_by_config_carry_the_request_id_without_colours() {
    let demo = DemoDir::create();
    append_config(&demo, "\n[log]\nformat = \"text\"\n");
    let server = demo.serve();
    eventually("ready after start", Duration::from_secs(20), || async {
        public_get(demo.public, "/readyz").await.0 == 200
    })
    .await;
    std::fs::rename(demo.path().join("tokens"), demo.path().join("tokens.away")).unwrap();
    eventually(
        "unready without the token",
        Duration::from_secs(10),
        || async { public_get(demo.public, "/readyz").await.0 == 503 },
    )
    .await;
    let (status, _, body) = public_get(demo.public, "/readyz").await;
    assert_eq!(status, 503);
    let id = json(&body)["request_id"].as_str().unwrap().to_owned();
    let log = server.log_text();
    assert!(
        !log.contains('\u{1b}'),
        "colour in a redirected log:\n{log}"
    );
    assert!(log.lines().all(|l| !l.starts_with('{')), "{log}");
    assert!(log.contains("OCSP responses loaded"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains(&format!("request{{request_id={id} ")))
        .unwrap_or_else(|| panic!("no line for request {id}:\n{log}"));
    assert!(line.contains("request failed status=503"), "{line}");
}

#[test]
fn production_init_writes_a_config_without_secrets_and_touches_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    // SoftHSM2 pointed at an empty token directory: anything init did to a token would show.
    let tokens = tmp.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = tmp.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\n", tokens.display()),
    )
    .unwrap();
    let dir = tmp.path().join("etc");
    let init = |extra: &[&str]| {
        let mut c = Command::new(appliance_bin());
        c.env("SOFTHSM2_CONF", &conf).args([
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "production",
            "--public-url",
            "http://ca.example.cn",
            "--state-dir",
            tmp.path().join("state").to_str().unwrap(),
        ]);
        run(c.args(extra))
    };
    // Where the PIN comes from is required, and nothing is written without it.
    let (ok, _, err) = init(&[]);
    assert!(!ok);
    assert!(err.contains("--pin-credential"), "{err}");
    assert!(!dir.join("appliance.toml").exists());

    let (ok, out, err) = init(&["--pin-credential", "hsm-pin"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("the HSM was not touched"), "{out}");
    assert_eq!(
        std::fs::read_dir(&tokens).unwrap().count(),
        0,
        "a token was created"
    );
    let config = dir.join("appliance.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("systemd_credential = \"hsm-pin\""), "{text}");
    assert!(
        text.contains("ceremony = \"ceremony.toml\"") && text.contains("ceremony plan"),
        "{text}"
    );
    assert!(std::fs::read_to_string(dir.join("ceremony.toml"))
        .unwrap()
        .contains("[[ca]]"));
    // Everything but the TLS files (still to be provided) passes check-config.
    let (ok, out, err) = run(Command::new(appliance_bin()).args([
        "check-config",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert!(!ok, "{out}\n{err}");
    assert!(
        err.contains("4 refusal(s)") && err.contains("server.tls_cert"),
        "{err}"
    );
    // A second init never overwrites a configuration.
    let (ok, _, err) = init(&["--pin-env", "PIN"]);
    assert!(!ok);
    assert!(err.contains("already holds appliance.toml"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
}
