//! The verification runner and egress against a local HTTP server: allowlist enforcement, secret
//! injection, the outbox surviving a "crash" between commit and perform, event rules.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::http::TestServer;
use common::{misbehaving, worker_options};
use plugin_abi::doc::{Applicant, Event, HttpAction, HttpErrorKind, HttpMethod, Outcome, Status};
use plugin_host::{
    Egress, EgressOptions, EgressPolicy, Isolation, MemoryStore, Plugin, PluginSpec, RunnerError,
    RunnerOptions, Secret, VerificationRunner,
};

fn http_spec(url: &str, hosts: Vec<String>, plain: bool, iso: Isolation) -> PluginSpec {
    let mut spec = misbehaving("http", iso);
    spec.config = serde_json::json!({"behaviour": "http", "url": url});
    spec.egress_hosts = hosts;
    spec.allow_plain_http = plain;
    spec.secrets
        .insert("api_key".into(), Secret::new("sk-test-4711"));
    spec
}

async fn runner(
    spec: PluginSpec,
    store: Arc<MemoryStore>,
    inline: bool,
) -> VerificationRunner<MemoryStore> {
    let plugin = Arc::new(Plugin::load_with(spec, worker_options()).await.unwrap());
    let options = RunnerOptions {
        perform_inline: inline,
        ..RunnerOptions::default()
    };
    VerificationRunner::new(
        plugin,
        store,
        Egress::new(EgressOptions::default()).unwrap(),
        options,
    )
}

fn applicant() -> Applicant {
    Applicant {
        name: Some("Test".into()),
        phone: Some("13800138000".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn allowlisted_action_is_performed_with_the_secret_injected() {
    let server = TestServer::start().await;
    for iso in [Isolation::InProcess, Isolation::Worker] {
        let before = server.count();
        let spec = http_spec(&server.url("/check"), vec![server.host_port()], true, iso);
        let r = runner(spec, Arc::new(MemoryStore::new()), true).await;
        let view = r.start("vrf_allow", &applicant()).await.unwrap();
        assert_eq!(view.status, Status::Succeeded, "{iso:?}: {view:?}");
        assert_eq!(view.pending_actions, 0);
        assert_eq!(server.count(), before + 1);
        let head = server.requests.lock().unwrap().last().cloned().unwrap();
        assert!(head.starts_with("GET /check "), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-api-key: sk-test-4711"),
            "secret injected"
        );
    }
}

#[tokio::test]
async fn host_outside_the_allowlist_is_refused_and_the_step_fails_cleanly() {
    let server = TestServer::start().await;
    let spec = http_spec(
        &server.url("/check"),
        vec!["vendor.example.cn:443".into()],
        true,
        Isolation::Worker,
    );
    let r = runner(spec, Arc::new(MemoryStore::new()), true).await;
    let view = r.start("vrf_refused", &applicant()).await.unwrap();
    assert_eq!(view.status, Status::Failed);
    let result = view.result.unwrap();
    assert_eq!(result.outcome, Outcome::VendorUnavailable);
    assert_eq!(result.evidence["error"], "refused_host");
    assert_eq!(server.count(), 0, "no request reached the server");
}

#[tokio::test]
async fn plain_http_needs_the_spec_flag() {
    let server = TestServer::start().await;
    let spec = http_spec(
        &server.url("/check"),
        vec![server.host_port()],
        false,
        Isolation::InProcess,
    );
    let r = runner(spec, Arc::new(MemoryStore::new()), true).await;
    let view = r.start("vrf_plain", &applicant()).await.unwrap();
    assert_eq!(view.result.unwrap().evidence["error"], "refused_host");
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn committed_action_runs_after_a_restart_and_the_flow_completes() {
    let server = TestServer::start().await;
    let store = Arc::new(MemoryStore::new());
    let spec = http_spec(
        &server.url("/check"),
        vec![server.host_port()],
        true,
        Isolation::Worker,
    );
    // "Crash" between commit and perform: the first runner commits the step but performs nothing.
    let first = runner(spec.clone(), Arc::clone(&store), false).await;
    let view = first.start("vrf_restart", &applicant()).await.unwrap();
    assert_eq!(view.status, Status::Pending);
    assert_eq!(view.pending_actions, 1);
    assert_eq!(server.count(), 0);
    drop(first);
    // After the restart a new runner (new worker, same store) resumes the outbox.
    let second = runner(spec, Arc::clone(&store), true).await;
    let resumed = second.resume_pending().await.unwrap();
    assert_eq!(resumed, vec!["vrf_restart".to_owned()]);
    assert_eq!(server.count(), 1);
    let view = second.view("vrf_restart").await.unwrap();
    assert_eq!(view.status, Status::Succeeded);
    assert_eq!(view.pending_actions, 0);
    assert!(
        second.resume_pending().await.unwrap().is_empty(),
        "nothing left"
    );
}

#[tokio::test]
async fn runner_event_rules() {
    let store = Arc::new(MemoryStore::new());
    let r = runner(misbehaving("ok", Isolation::InProcess), store, true).await;
    let view = r.start("vrf_rules", &applicant()).await.unwrap();
    assert_eq!(view.status, Status::Succeeded);
    assert!(matches!(
        r.start("vrf_rules", &applicant()).await,
        Err(RunnerError::AlreadyExists(_))
    ));
    assert!(matches!(
        r.deliver("vrf_rules", Event::Cancel).await,
        Err(RunnerError::Finished { .. })
    ));
    assert!(matches!(
        r.deliver("vrf_none", Event::Cancel).await,
        Err(RunnerError::NotFound(_))
    ));
    let forged = Event::HttpResponse {
        id: "x".into(),
        status: 200,
        body: String::new(),
    };
    assert!(matches!(
        r.deliver("vrf_rules", forged).await,
        Err(RunnerError::Event(_))
    ));
}

#[tokio::test]
async fn failed_step_leaves_nothing_committed() {
    let store = Arc::new(MemoryStore::new());
    let r = runner(
        misbehaving("bad_json", Isolation::Worker),
        Arc::clone(&store),
        true,
    )
    .await;
    let e = r.start("vrf_badout", &applicant()).await.unwrap_err();
    assert!(
        matches!(
            e,
            RunnerError::Plugin(plugin_host::PluginError::BadOutput { .. })
        ),
        "{e:?}"
    );
    assert!(matches!(
        r.view("vrf_badout").await,
        Err(RunnerError::NotFound(_))
    ));
}

fn policy(server: &TestServer) -> EgressPolicy {
    EgressPolicy {
        plugin: "t".into(),
        hosts: vec![server.host_port()],
        allow_plain_http: true,
        secrets: Default::default(),
    }
}

fn get(url: String, timeout_ms: u32) -> HttpAction {
    HttpAction {
        id: "a".into(),
        method: HttpMethod::GET,
        url,
        headers: Default::default(),
        body: None,
        timeout_ms,
    }
}

#[tokio::test]
async fn egress_size_cap_timeout_and_unknown_secret() {
    let server = TestServer::start().await;
    let egress = Egress::new(EgressOptions {
        max_response_bytes: 64 * 1024,
        ..EgressOptions::default()
    })
    .unwrap();
    let p = policy(&server);
    let too_large = egress.perform(&p, &get(server.url("/big"), 5000)).await;
    assert_eq!(
        too_large,
        Event::HttpError {
            id: "a".into(),
            error: HttpErrorKind::TooLarge
        }
    );
    let slow = egress.perform(&p, &get(server.url("/slow"), 300)).await;
    assert_eq!(
        slow,
        Event::HttpError {
            id: "a".into(),
            error: HttpErrorKind::Timeout
        }
    );
    let mut with_secret = get(server.url("/x"), 5000);
    with_secret
        .headers
        .insert("authorization".into(), "Bearer {{secret:missing}}".into());
    let before = server.count();
    let refused = egress.perform(&p, &with_secret).await;
    assert_eq!(
        refused,
        Event::HttpError {
            id: "a".into(),
            error: HttpErrorKind::RefusedHost
        }
    );
    assert_eq!(
        server.count(),
        before,
        "nothing sent with an unfilled placeholder"
    );
    let mut with_host = get(server.url("/x"), 5000);
    with_host
        .headers
        .insert("Host".into(), "internal.example".into());
    let refused = egress.perform(&p, &with_host).await;
    assert_eq!(
        refused,
        Event::HttpError {
            id: "a".into(),
            error: HttpErrorKind::RefusedHost
        }
    );
    assert_eq!(
        server.count(),
        before,
        "no request with a forged Host header"
    );
    let closed = egress
        .perform(
            &EgressPolicy {
                hosts: vec!["127.0.0.1:1".into()],
                ..p
            },
            &get("http://127.0.0.1:1/".into(), 2000),
        )
        .await;
    assert_eq!(
        closed,
        Event::HttpError {
            id: "a".into(),
            error: HttpErrorKind::Connect
        }
    );
}

#[tokio::test]
async fn timers_are_recorded_with_due_time_and_fire_when_due() {
    use std::sync::atomic::{AtomicI64, Ordering};
    let now = Arc::new(AtomicI64::new(1_795_000_000));
    let clock_now = Arc::clone(&now);
    let plugin = Arc::new(
        Plugin::load_with(misbehaving("timer", Isolation::Worker), worker_options())
            .await
            .unwrap(),
    );
    let r = VerificationRunner::new(
        plugin,
        Arc::new(MemoryStore::new()),
        Egress::new(EgressOptions::default()).unwrap(),
        RunnerOptions {
            perform_inline: true,
            clock: Arc::new(move || {
                time::OffsetDateTime::from_unix_timestamp(clock_now.load(Ordering::SeqCst)).unwrap()
            }),
        },
    );
    let v = r.start("vrf_timer", &applicant()).await.unwrap();
    assert_eq!(v.status, Status::Pending);
    assert_eq!(v.timers.len(), 1);
    assert_eq!(v.timers[0].id, "poll");
    assert_eq!(
        v.timers[0].due_unix, 1_795_000_002,
        "1500 ms rounds up to 2 s"
    );
    assert!(v.timers[0].due_at.ends_with('Z'));
    assert_eq!(r.fire_due_timers().await.unwrap(), 0, "not due yet");
    now.fetch_add(2, Ordering::SeqCst);
    assert_eq!(r.fire_due_timers().await.unwrap(), 1);
    let v = r.view("vrf_timer").await.unwrap();
    assert_eq!(v.status, Status::Succeeded);
    assert!(v.timers.is_empty());
    assert!(matches!(
        r.deliver("vrf_timer", Event::Timer { id: "poll".into() })
            .await,
        Err(RunnerError::Finished { .. })
    ));
}

#[tokio::test]
async fn only_the_manifest_applicant_fields_reach_the_plugin() {
    let r = runner(
        misbehaving("echo_fields", Isolation::InProcess),
        Arc::new(MemoryStore::new()),
        true,
    )
    .await;
    assert_eq!(
        r.plugin().manifest().applicant_fields,
        vec![plugin_abi::doc::ApplicantField::Name]
    );
    let full = Applicant {
        name: Some("Test".into()),
        id_number: Some("11010519491231002X".into()),
        phone: Some("13800138000".into()),
        bank_card: Some("6222021234567890128".into()),
        ..Default::default()
    };
    let v = r.start("vrf_fields", &full).await.unwrap();
    assert_eq!(
        v.result.unwrap().evidence["fields"],
        serde_json::json!(["name"])
    );
}

#[tokio::test]
async fn tls_is_verified_against_the_webpki_roots() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A local HTTPS server with a self-signed certificate: not trusted, so the request must fail
    // with `tls` (and never reach the handler).
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let served2 = Arc::clone(&served);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let served = Arc::clone(&served2);
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(sock).await {
                    served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    let egress = Egress::new(EgressOptions::default()).unwrap();
    let policy = EgressPolicy {
        plugin: "t".into(),
        hosts: vec![format!("localhost:{port}")],
        allow_plain_http: false,
        secrets: Default::default(),
    };
    let ev = egress
        .perform(&policy, &get(format!("https://localhost:{port}/"), 3000))
        .await;
    assert_eq!(
        ev,
        Event::HttpError {
            id: "a".into(),
            error: HttpErrorKind::Tls
        }
    );
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no handshake completed"
    );
}
