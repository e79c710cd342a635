//! End to end: `init --demo`, `serve`, issuance over mTLS, checked by openssl and Python.
#![allow(clippy::unwrap_used)] // tests may unwrap: a failure is the test failing

use std::process::Command;

use system_tests::*;

/// The caller of direct issuance: an operator (a channel's certificates come from applications).
fn channel(demo: &DemoDir) -> std::sync::Arc<rustls::ClientConfig> {
    operator(demo)
}

fn demo_channel(demo: &DemoDir) -> std::sync::Arc<rustls::ClientConfig> {
    let tls = demo.path().join("tls");
    tls_client(
        &tls.join("ca.pem"),
        Identity::Files(&tls.join("channel-demo.pem"), &tls.join("channel-demo.key")),
    )
}

fn operator(demo: &DemoDir) -> std::sync::Arc<rustls::ClientConfig> {
    let tls = demo.path().join("tls");
    tls_client(
        &tls.join("ca.pem"),
        Identity::Files(&tls.join("operator.pem"), &tls.join("operator.key")),
    )
}

fn certificate_count(demo: &DemoDir) -> i64 {
    let db = demo.path().join("data/appliance.db");
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from certificates').fetchone()[0])",
        db.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    out.trim().parse().unwrap()
}

#[tokio::test]
async fn issued_certificate_verifies_with_openssl_and_matches_its_profile() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    let dir = demo.path();
    let csr = openssl_csr(dir, "ee", "ec:P-256");
    let body = issue_body(
        "personal",
        &csr,
        serde_json::json!({"name": "张三", "email": "zhang.san@example.cn"}),
    );
    let (status, resp) = api_request(
        demo.api,
        channel(&demo),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
    let resp = json(&resp);
    let serial = resp["serial"].as_str().unwrap().to_owned();
    std::fs::write(dir.join("ee.pem"), resp["certificate"].as_str().unwrap()).unwrap();
    let chain = resp["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "issuing CA then root");
    assert_eq!(
        chain[0].as_str().unwrap(),
        std::fs::read_to_string(dir.join("ca/personal.pem")).unwrap()
    );

    // openssl verify -CAfile root -untrusted issuing cert
    let (ok, out, err) = run(Command::new("openssl").current_dir(dir).args([
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/personal.pem",
        "ee.pem",
    ]));
    assert!(ok && out.contains("ee.pem: OK"), "{out}{err}");
    // the serial openssl reads is the one the API answered
    let (_, out, _) = run(Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-noout", "-serial", "-in", "ee.pem"]));
    assert_eq!(out.trim().to_ascii_lowercase(), format!("serial={serial}"));

    // extensions match the profile, checked by Python cryptography (not our parser)
    let public = format!("http://{}", demo.public);
    let expect = serde_json::json!({
        "key_usage": ["digitalSignature", "nonRepudiation"],
        "extended_key_usage": ["clientAuth", "emailProtection"],
        "policy_oids": ["1.3.6.1.4.1.61992.1.1"],
        "ocsp_url": format!("{public}/ocsp"),
        "ca_issuers_url": format!("{public}/ca/personal.crt"),
        "crl_url": format!("{public}/crl/personal.crl"),
        "common_name": "张三",
        "email": "zhang.san@example.cn",
        "validity_days": 365,
    });
    std::fs::write(dir.join("expect.json"), expect.to_string()).unwrap();
    let script = workspace_root().join("tests/python/check_certificate.py");
    let (ok, out, err) = run(Command::new("python3")
        .arg(script)
        .arg(dir.join("ee.pem"))
        .arg(dir.join("ca/personal.pem"))
        .arg(dir.join("expect.json")));
    assert!(ok, "profile mismatches:\n{out}{err}");

    // the certificate is stored and readable with its status
    let (status, got) = api_request(
        demo.api,
        channel(&demo),
        "GET",
        &format!("/api/v1/certificates/{serial}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let got = json(&got);
    assert_eq!(got["status"], "valid");
    assert_eq!(got["certificate"], resp["certificate"]);
}

#[tokio::test]
async fn a_channel_cannot_issue_directly_and_an_operator_issuance_is_audited_as_direct() {
    let demo = DemoDir::create();
    let server = demo.serve();
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let body = issue_body(
        "personal",
        &csr,
        serde_json::json!({"name": "Anyone At All"}),
    );
    let before = certificate_count(&demo);
    let (status, resp) = api_request(
        demo.api,
        demo_channel(&demo),
        "POST",
        "/api/v1/certificates",
        Some(body.clone()),
    )
    .await
    .unwrap();
    let v = json(&resp);
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("channel_not_allowed")),
        "{v}"
    );
    assert_eq!(certificate_count(&demo), before, "nothing issued");
    let (status, resp) = api_request(
        demo.api,
        operator(&demo),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
    let serial = json(&resp)["serial"].as_str().unwrap().to_owned();
    drop(server);
    let db = demo.path().join("data/appliance.db");
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        "import sqlite3,sys,json; r=sqlite3.connect(sys.argv[1]).execute(\"select actor, detail from audit_log where action='certificate.issue' and target=?\", (sys.argv[2],)).fetchone(); print(r[0]); print(json.loads(r[1])['direct'])",
        db.to_str().unwrap(),
        &serial,
    ]));
    assert!(ok, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["operator:operator", "True"]
    );
}

#[tokio::test]
async fn public_listener_serves_ca_certificates_in_der_and_pem() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    for name in ["root", "personal", "organisation"] {
        let pem_file = std::fs::read_to_string(demo.path().join(format!("ca/{name}.pem"))).unwrap();
        let (status, headers, body) = public_get(demo.public, &format!("/ca/{name}.pem")).await;
        assert_eq!(status, 200);
        assert_eq!(String::from_utf8(body).unwrap(), pem_file);
        let (status, headers_der, der) = public_get(demo.public, &format!("/ca/{name}.crt")).await;
        assert_eq!(status, 200);
        assert_eq!(headers_der["content-type"], "application/pkix-cert");
        assert!(headers.contains_key("cache-control"));
        // DER converted by openssl equals the PEM file
        std::fs::write(demo.path().join("x.der"), &der).unwrap();
        let (ok, out, _) = run(Command::new("openssl")
            .current_dir(demo.path())
            .args(["x509", "-inform", "DER", "-in", "x.der"]));
        assert!(ok);
        assert_eq!(out, pem_file);
    }
    let (status, _, body) = public_get(demo.public, "/ca/nope.pem").await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"], "not_found");
    let (status, _, _) = public_get(demo.public, "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn rsa_and_p384_keys_are_issued_and_small_rsa_refused() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    let dir = demo.path();
    for (stem, spec) in [("rsa2048", "rsa:2048"), ("p384", "ec:P-384")] {
        let csr = openssl_csr(dir, stem, spec);
        let body = issue_body(
            "organisation",
            &csr,
            serde_json::json!({"name": "Agent Li", "organisation": "示例科技有限公司", "uscc": "91350100M000100Y43"}),
        );
        let (status, resp) = api_request(
            demo.api,
            operator(&demo),
            "POST",
            "/api/v1/certificates",
            Some(body),
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{spec}: {}", String::from_utf8_lossy(&resp));
        std::fs::write(
            dir.join(format!("{stem}.pem")),
            json(&resp)["certificate"].as_str().unwrap(),
        )
        .unwrap();
        let (ok, out, err) = run(Command::new("openssl").current_dir(dir).args([
            "verify",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/organisation.pem",
            &format!("{stem}.pem"),
        ]));
        assert!(ok, "{out}{err}");
        let (_, text, _) = run(Command::new("openssl").current_dir(dir).args([
            "x509",
            "-noout",
            "-subject",
            "-in",
            &format!("{stem}.pem"),
        ]));
        assert!(
            text.contains("organizationIdentifier") || text.contains("2.5.4.97"),
            "{text}"
        );
    }
    let before = certificate_count(&demo);
    let csr = openssl_csr(dir, "rsa1024", "rsa:1024");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Small Key"}));
    let (status, resp) = api_request(
        demo.api,
        operator(&demo),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    assert_eq!(json(&resp)["error"], "key_too_small");
    assert_eq!(
        certificate_count(&demo),
        before,
        "a refused request stores nothing"
    );
}

#[tokio::test]
async fn bad_requests_get_specific_errors_and_change_nothing() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    let dir = demo.path();
    let good_csr = openssl_csr(dir, "ee", "ec:P-256");

    // A CSR whose signature does not verify: flip one byte inside the signature.
    let (_, der_b64) = good_csr.split_once("-----\n").unwrap();
    let der_b64: String = der_b64
        .lines()
        .take_while(|l| !l.starts_with("-----"))
        .collect();
    use base64::Engine;
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(der_b64)
        .unwrap();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    );
    let cert_pem = std::fs::read_to_string(dir.join("ca/root.pem")).unwrap();

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not JSON", b"{nope".to_vec(), 400, "malformed_json"),
        (
            "unknown field",
            br#"{"profile":"personal","csr":"x","subject":{},"extra":1}"#.to_vec(),
            400,
            "malformed_json",
        ),
        (
            "unknown profile",
            issue_body("gold", &good_csr, serde_json::json!({"name":"A"})),
            400,
            "unknown_profile",
        ),
        (
            "garbage PEM",
            issue_body("personal", "hello", serde_json::json!({"name":"A"})),
            400,
            "malformed_csr",
        ),
        (
            "a certificate, not a CSR",
            issue_body("personal", &cert_pem, serde_json::json!({"name":"A"})),
            400,
            "malformed_csr",
        ),
        (
            "truncated DER",
            issue_body(
                "personal",
                &good_csr
                    .replace("\n-----END", "AAAA\n-----END")
                    .replacen("MII", "MIJ", 1),
                serde_json::json!({"name":"A"}),
            ),
            400,
            "malformed_csr",
        ),
        (
            "tampered signature",
            issue_body("personal", &tampered, serde_json::json!({"name":"A"})),
            400,
            "csr_signature_invalid",
        ),
        (
            "missing name",
            issue_body("personal", &good_csr, serde_json::json!({})),
            400,
            "missing_subject_attribute",
        ),
        (
            "unknown attribute",
            issue_body(
                "personal",
                &good_csr,
                serde_json::json!({"name":"A","id_number":"11010519491231002X"}),
            ),
            400,
            "invalid_subject",
        ),
        (
            "CN too long",
            issue_body(
                "personal",
                &good_csr,
                serde_json::json!({"name": "x".repeat(65)}),
            ),
            400,
            "invalid_subject",
        ),
        (
            "bad email",
            issue_body(
                "personal",
                &good_csr,
                serde_json::json!({"name":"A","email":"not an email"}),
            ),
            400,
            "invalid_subject",
        ),
        (
            "bad USCC",
            issue_body(
                "organisation",
                &good_csr,
                serde_json::json!({"name":"A","organisation":"B","uscc":"123"}),
            ),
            400,
            "invalid_subject",
        ),
        (
            "oversize body",
            vec![b' '; 200 * 1024],
            413,
            "body_too_large",
        ),
    ];
    let before = certificate_count(&demo);
    for (what, body, want_status, want_code) in cases {
        let (status, resp) = api_request(
            demo.api,
            channel(&demo),
            "POST",
            "/api/v1/certificates",
            Some(body),
        )
        .await
        .unwrap();
        let resp = json(&resp);
        assert_eq!(
            (status, resp["error"].as_str().unwrap()),
            (want_status, want_code),
            "{what}: {resp}"
        );
        assert!(
            resp["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: message"
        );
        assert!(
            !resp.to_string().contains("11010519491231002X"),
            "{what}: personal number echoed"
        );
    }
    assert_eq!(
        certificate_count(&demo),
        before,
        "refused requests store nothing"
    );

    // Unknown serials and malformed serials.
    let (status, resp) = api_request(
        demo.api,
        operator(&demo),
        "GET",
        "/api/v1/certificates/00ff",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (status, json(&resp)["error"].as_str().unwrap()),
        (404, "not_found")
    );
    let (status, resp) = api_request(
        demo.api,
        operator(&demo),
        "GET",
        "/api/v1/certificates/zz",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (status, json(&resp)["error"].as_str().unwrap()),
        (400, "invalid_serial")
    );
}

#[tokio::test]
async fn client_certificate_is_required_and_must_come_from_the_client_ca() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    let tls = demo.path().join("tls");
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "A"}));

    // No client certificate: the handshake (or the first request, under TLS 1.3) is refused.
    let no_cert = tls_client(&tls.join("ca.pem"), Identity::None);
    let r = api_request(
        demo.api,
        no_cert,
        "POST",
        "/api/v1/certificates",
        Some(body.clone()),
    )
    .await;
    assert!(
        r.is_err(),
        "request without client certificate answered: {r:?}"
    );

    // A certificate from another CA (the openssl CLI makes a self-signed one).
    openssl_self_signed(demo.path(), "foreign", "/CN=operator", 2);
    let foreign = tls_client(
        &tls.join("ca.pem"),
        Identity::Files(
            &demo.path().join("foreign.pem"),
            &demo.path().join("foreign.key"),
        ),
    );
    let r = api_request(
        demo.api,
        foreign,
        "POST",
        "/api/v1/certificates",
        Some(body.clone()),
    )
    .await;
    assert!(
        r.is_err(),
        "request with a foreign client certificate answered: {r:?}"
    );

    // A certificate from the right CA whose name no [[client]] entry knows: 403.
    let (ok, _, err) = run(Command::new("openssl").current_dir(demo.path()).args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "stranger.key",
        "-out",
        "stranger.csr",
        "-subj",
        "/CN=stranger",
    ]));
    assert!(ok, "{err}");
    std::fs::write(demo.path().join("ext.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    let (ok, _, err) = run(Command::new("openssl").current_dir(demo.path()).args([
        "x509",
        "-req",
        "-in",
        "stranger.csr",
        "-CA",
        "tls/ca.pem",
        "-CAkey",
        "tls/ca.key",
        "-out",
        "stranger.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]));
    assert!(ok, "{err}");
    let stranger = tls_client(
        &tls.join("ca.pem"),
        Identity::Files(
            &demo.path().join("stranger.pem"),
            &demo.path().join("stranger.key"),
        ),
    );
    let (status, resp) = api_request(
        demo.api,
        stranger,
        "POST",
        "/api/v1/certificates",
        Some(body.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, json(&resp)["error"].as_str().unwrap()),
        (403, "unknown_client")
    );

    // The server is still up and serving the legitimate channel.
    let (status, _) = api_request(
        demo.api,
        channel(&demo),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
}

#[tokio::test]
async fn concurrent_issuance_gives_unique_serials_all_stored() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Batch"}));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let config = channel(&demo);
        let body = body.clone();
        let addr = demo.api;
        tasks.push(tokio::spawn(async move {
            let mut conn = ApiConnection::connect(addr, config).await.unwrap();
            let mut serials = Vec::new();
            for _ in 0..25 {
                let (status, resp) = conn
                    .request("POST", "/api/v1/certificates", Some(body.clone()))
                    .await
                    .unwrap();
                assert_eq!(status, 201);
                serials.push(json(&resp)["serial"].as_str().unwrap().to_owned());
            }
            serials
        }));
    }
    let mut all = std::collections::BTreeSet::new();
    for t in tasks {
        for s in t.await.unwrap() {
            assert!(all.insert(s), "duplicate serial");
        }
    }
    assert_eq!(all.len(), 200);
    assert_eq!(certificate_count(&demo), 200);
}

#[test]
fn wrong_pin_stops_start_up_without_revealing_it() {
    let demo = DemoDir::create();
    let pin_file = demo.path().join("secrets/hsm-user.pin");
    let real_pin = std::fs::read_to_string(&pin_file).unwrap();
    std::fs::write(&pin_file, "000000wrong").unwrap();
    let (ok, out, err) = run(Command::new(appliance_bin()).args([
        "serve",
        "--config",
        demo.config().to_str().unwrap(),
    ]));
    assert!(!ok, "serve started with a wrong PIN");
    assert!(
        err.to_lowercase().contains("pin"),
        "error should name the PIN problem: {err}"
    );
    assert!(
        !err.contains("000000wrong") && !out.contains("000000wrong"),
        "PIN leaked"
    );
    assert!(!err.contains(real_pin.trim()), "real PIN leaked");

    // A PIN file readable by others is refused too.
    std::fs::write(&pin_file, real_pin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = run(Command::new(appliance_bin()).args([
        "serve",
        "--config",
        demo.config().to_str().unwrap(),
    ]));
    assert!(!ok && err.contains("0600"), "{err}");
}

#[test]
fn ceremony_is_idempotent_and_new_generations_are_explicit() {
    let demo = DemoDir::create();
    let root_before = std::fs::read_to_string(demo.path().join("ca/root.pem")).unwrap();
    let personal_before = std::fs::read_to_string(demo.path().join("ca/personal.pem")).unwrap();
    let cfg = demo.config();
    let (ok, out, err) =
        run(Command::new(appliance_bin()).args(["ceremony", "--config", cfg.to_str().unwrap()]));
    assert!(ok, "{err}");
    assert!(
        out.contains("CA root exists (generation 1); left alone"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(demo.path().join("ca/root.pem")).unwrap(),
        root_before
    );

    // A re-key changes something: refused until the plan is approved as reviewed.
    let (ok, _, err) = run(Command::new(appliance_bin()).args([
        "ceremony",
        "--config",
        cfg.to_str().unwrap(),
        "--new-generation",
        "personal",
    ]));
    assert!(!ok && err.contains("--approve"), "{err}");
    let (ok, out, err) = reviewed_ceremony(&cfg, &["--new-generation", "personal"]);
    assert!(ok, "{err}");
    assert!(out.contains("created CA personal (generation 2)"), "{out}");
    let personal_after = std::fs::read_to_string(demo.path().join("ca/personal.pem")).unwrap();
    assert_ne!(personal_after, personal_before);
    assert_eq!(
        std::fs::read_to_string(demo.path().join("ca/root.pem")).unwrap(),
        root_before
    );
    let (ok, out, err) = run(Command::new("openssl").current_dir(demo.path()).args([
        "verify",
        "-CAfile",
        "ca/root.pem",
        "ca/personal.pem",
    ]));
    assert!(ok, "{out}{err}");

    let (ok, _, err) = run(Command::new(appliance_bin()).args([
        "ceremony",
        "--config",
        cfg.to_str().unwrap(),
        "--new-generation",
        "nosuch",
    ]));
    assert!(!ok && err.contains("nosuch"), "{err}");
}

#[test]
fn check_config_accepts_the_demo_and_rejects_mistakes() {
    let demo = DemoDir::create();
    let cfg = demo.config();
    let (ok, out, err) = run(Command::new(appliance_bin()).args([
        "check-config",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    assert!(ok && out.contains("configuration OK"), "{out}{err}");

    let text = std::fs::read_to_string(&cfg).unwrap();
    let cases = [
        (
            text.replace(
                "file = \"secrets/hsm-user.pin\"",
                "file = \"secrets/hsm-user.pin\"\nenv = \"PIN\"",
            ),
            "exactly one",
        ),
        (
            text.replace(
                "profiles = [\"personal\", \"organisation\"]",
                "profiles = [\"gold\"]",
            ),
            "gold",
        ),
        (
            text.replace("key = \"ec-p256\"", "key = \"ec-p999\""),
            "ec-p999",
        ),
        (format!("{text}\nsurprise = true\n"), "surprise"),
    ];
    for (bad, needle) in cases {
        std::fs::write(&cfg, bad).unwrap();
        let (ok, _, err) = run(Command::new(appliance_bin()).args([
            "check-config",
            "--config",
            cfg.to_str().unwrap(),
        ]));
        assert!(
            !ok && err.contains(needle),
            "expected an error naming {needle}: {err}"
        );
    }
}

#[test]
fn init_refuses_to_overwrite_an_existing_appliance() {
    let demo = DemoDir::create();
    let (ok, _, err) = run(Command::new(appliance_bin()).args([
        "init",
        "--dir",
        demo.path().to_str().unwrap(),
        "--demo",
    ]));
    assert!(!ok && err.contains("already holds an appliance"), "{err}");
}

#[tokio::test]
async fn a_lost_token_answers_503_and_the_server_keeps_serving() {
    let demo = DemoDir::create();
    let mut server = demo.serve();
    let dir = demo.path();
    let csr = openssl_csr(dir, "ee", "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "A"}));
    let (status, resp) = api_request(
        demo.api,
        channel(&demo),
        "POST",
        "/api/v1/certificates",
        Some(body.clone()),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
    let serial = json(&resp)["serial"].as_str().unwrap().to_owned();
    let before = certificate_count(&demo);

    // The token's storage disappears under the running server.
    std::fs::rename(dir.join("tokens"), dir.join("tokens.away")).unwrap();
    for _ in 0..3 {
        let (status, resp) = api_request(
            demo.api,
            channel(&demo),
            "POST",
            "/api/v1/certificates",
            Some(body.clone()),
        )
        .await
        .unwrap();
        let resp = json(&resp);
        assert_eq!(status, 503, "{resp}");
        let code = resp["error"].as_str().unwrap();
        assert!(
            matches!(code, "hsm_unavailable" | "ca_key_unavailable"),
            "{resp}"
        );
        let pin = std::fs::read_to_string(dir.join("secrets/hsm-user.pin")).unwrap();
        assert!(!resp.to_string().contains(pin.trim()), "PIN leaked");
    }
    assert!(
        server.is_running(),
        "the server died:\n{}",
        server.log_text()
    );
    assert_eq!(
        certificate_count(&demo),
        before,
        "nothing stored for refused issuances"
    );
    // Everything that does not need the HSM keeps working.
    let (status, _, _) = public_get(demo.public, "/healthz").await;
    assert_eq!(status, 200);
    let (status, resp) = api_request(
        demo.api,
        operator(&demo),
        "GET",
        &format!("/api/v1/certificates/{serial}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));

    // The operator restores the token and restarts: issuance works again.
    std::fs::rename(dir.join("tokens.away"), dir.join("tokens")).unwrap();
    drop(server);
    let _server = demo.serve();
    let (status, resp) = api_request(
        demo.api,
        channel(&demo),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
}

#[tokio::test]
async fn staff_and_relying_party_roles_cannot_issue_revoke_or_start_verifications() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let issued = demo.issue_personal("operator", &csr).await;
    let serial = issued["serial"].as_str().unwrap().to_string();
    let before = certificate_count(&demo);
    for who in ["ra-officer", "auditor", "relying-party"] {
        let role = who.replace('-', "_");
        let attempts = [
            (
                "/api/v1/certificates".to_string(),
                issue_body("personal", &csr, serde_json::json!({"name": "X"})),
            ),
            (
                format!("/api/v1/certificates/{serial}/revoke"),
                serde_json::json!({"reason": "keyCompromise"})
                    .to_string()
                    .into_bytes(),
            ),
            (
                "/api/v1/verifications".to_string(),
                serde_json::json!({"plugin": "phone-real-name"})
                    .to_string()
                    .into_bytes(),
            ),
        ];
        for (path, body) in attempts {
            let (status, resp) =
                api_request(demo.api, demo.client_tls(who), "POST", &path, Some(body))
                    .await
                    .unwrap();
            let v = json(&resp);
            assert_eq!(
                (status, v["error"].as_str()),
                (403, Some("role_not_allowed")),
                "{who} POST {path}: {v}"
            );
            assert!(v["message"].as_str().unwrap().contains(&role), "{who}: {v}");
        }
    }
    // Nothing changed: no certificate issued, the one certificate still good.
    assert_eq!(certificate_count(&demo), before);
    let (status, got) = api_request(
        demo.api,
        demo.client_tls("auditor"),
        "GET",
        &format!("/api/v1/certificates/{serial}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "an auditor reads certificates");
    assert_eq!(json(&got)["status"], "valid");
}

/// Concurrent issuances go through the group-commit writers (signing ledger and certificates,
/// each many rows per transaction on SQLite's dedicated writer connections): every audit row
/// they append links to the one before it, as `audit verify` checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issuances_keep_the_audit_chain_linked() {
    let demo = DemoDir::create();
    let server = demo.serve();
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let before = certificate_count(&demo);
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Chain"}));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let mut conn = ApiConnection::connect(demo.api, demo.client_tls("operator"))
            .await
            .unwrap();
        let body = body.clone();
        tasks.spawn(async move {
            conn.request("POST", "/api/v1/certificates", Some(body))
                .await
                .unwrap()
                .0
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    assert_eq!(certificate_count(&demo), before + 16);
    drop(server);
    let (ok, out, err) = run(Command::new(appliance_bin())
        .args(["audit", "verify", "--config"])
        .arg(demo.config()));
    assert!(ok, "audit verify failed:\n{out}{err}");
}
