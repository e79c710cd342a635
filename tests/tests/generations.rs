//! End to end (issue 11): after `ceremony --new-generation`, every unexpired generation keeps
//! working: OCSP for its certificates, its own CRL at the URL its certificates carry, its
//! chain, and its certificate downloadable; `/ca/{name}.pem` is the newest.

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::process::Command;
use std::time::{Duration, Instant};

use system_tests::*;

/// `openssl ocsp` for `cert` issued by `issuer` against the public listener; the status line.
fn ocsp_status(demo: &DemoDir, issuer: &str, cert: &str) -> String {
    let url = format!("http://{}/ocsp", demo.public);
    let (ok, out, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args([
            "ocsp",
            "-url",
            &url,
            "-CAfile",
            "ca/root.pem",
            "-issuer",
            issuer,
        ])
        .args(["-cert", cert]));
    assert!(ok, "openssl ocsp: {out}{err}");
    out.lines()
        .find(|l| l.starts_with(cert))
        .unwrap_or_else(|| panic!("no status line: {out}{err}"))
        .to_owned()
}

fn write_cert(demo: &DemoDir, file: &str, answer: &serde_json::Value) {
    std::fs::write(
        demo.path().join(file),
        answer["certificate"].as_str().unwrap(),
    )
    .unwrap();
}

/// Text of the CRL served at `/crl/{file}`.
async fn crl_text(demo: &DemoDir, file: &str) -> String {
    let (status, _, body) = public_get(demo.public, &format!("/crl/{file}")).await;
    assert_eq!(status, 200, "GET /crl/{file}");
    let der = demo.path().join(file);
    std::fs::write(&der, &body).unwrap();
    let (ok, text, err) = run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&der));
    assert!(ok, "{err}");
    text
}

fn extension_url(demo: &DemoDir, file: &str, ext: &str) -> String {
    let (ok, out, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args(["x509", "-noout", "-ext", ext, "-in", file]));
    assert!(ok, "{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generation_keeps_ocsp_crl_and_chain_after_a_re_key() {
    let demo = DemoDir::create();
    let mut server = demo.serve();
    let csr = openssl_csr(demo.path(), "g1", "ec:P-256");
    let g1 = demo.issue_personal("operator", &csr).await;
    write_cert(&demo, "g1.pem", &g1);
    server.stop_with("TERM", Duration::from_secs(20));

    let (ok, out, err) = reviewed_ceremony(&demo.config(), &["--new-generation", "personal"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created CA personal (generation 2)"), "{out}");

    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "g2", "ec:P-256");
    let g2 = demo.issue_personal("operator", &csr).await;
    write_cert(&demo, "g2.pem", &g2);
    // The API chain names the generation that signed it.
    let (ok, chain_g2, _) = run(Command::new("openssl").current_dir(demo.path()).args([
        "x509",
        "-noout",
        "-fingerprint",
        "-in",
        "ca/personal-g2.pem",
    ]));
    assert!(ok);
    std::fs::write(
        demo.path().join("chain-g2.pem"),
        g2["chain"][0].as_str().unwrap(),
    )
    .unwrap();
    let (_, served_chain, _) = run(Command::new("openssl").current_dir(demo.path()).args([
        "x509",
        "-noout",
        "-fingerprint",
        "-in",
        "chain-g2.pem",
    ]));
    assert_eq!(chain_g2, served_chain);
    // `/ca/personal.pem` is the newest; each generation has its own file.
    let (status, _, newest) = public_get(demo.public, "/ca/personal.pem").await;
    assert_eq!(status, 200);
    assert_eq!(
        newest,
        std::fs::read(demo.path().join("ca/personal-g2.pem")).unwrap()
    );
    let (status, _, first) = public_get(demo.public, "/ca/personal-g1.pem").await;
    assert_eq!(status, 200);
    assert_eq!(
        first,
        std::fs::read(demo.path().join("ca/personal-g1.pem")).unwrap()
    );
    // Generation 2's certificates point at generation 2's CRL and certificate.
    let g2_urls = extension_url(&demo, "g2.pem", "crlDistributionPoints,authorityInfoAccess");
    assert!(g2_urls.contains("/crl/personal-g2.crl"), "{g2_urls}");
    assert!(g2_urls.contains("/ca/personal-g2.crt"), "{g2_urls}");

    // OCSP answers for both generations.
    assert!(ocsp_status(&demo, "ca/personal-g1.pem", "g1.pem").ends_with("good"));
    assert!(ocsp_status(&demo, "ca/personal-g2.pem", "g2.pem").ends_with("good"));

    // Both chains verify.
    for (cert, issuer) in [
        ("g1.pem", "ca/personal-g1.pem"),
        ("g2.pem", "ca/personal-g2.pem"),
    ] {
        let (ok, out, err) = run(Command::new("openssl").current_dir(demo.path()).args([
            "verify",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            issuer,
            cert,
        ]));
        assert!(ok, "{cert}: {out}{err}");
    }

    // Revoking the generation-1 certificate: OCSP revoked, and on generation 1's CRL.
    let serial = g1["serial"].as_str().unwrap();
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        Some(br#"{"reason": "keyCompromise"}"#.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    assert!(ocsp_status(&demo, "ca/personal-g1.pem", "g1.pem").ends_with("revoked"));
    let start = Instant::now();
    loop {
        let text = crl_text(&demo, "personal.crl").await;
        if text.contains(&serial.to_ascii_uppercase()) {
            assert!(text.contains("Demo Personal Issuing CA"), "{text}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never on personal.crl:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let g2_crl = crl_text(&demo, "personal-g2.crl").await;
    assert!(!g2_crl.contains(&serial.to_ascii_uppercase()));
    assert!(ocsp_status(&demo, "ca/personal-g2.pem", "g2.pem").ends_with("good"));
}

fn signing_records(demo: &DemoDir, filter: &str) -> i64 {
    let (ok, out, err) = run(Command::new("sqlite3")
        .arg(demo.path().join("data/appliance.db"))
        .arg(format!(
            "SELECT COUNT(*) FROM signing_records WHERE {filter}"
        )));
    assert!(ok, "{err}");
    out.trim().parse().unwrap()
}

fn pem_crl(demo: &DemoDir, der: &str, pem: &str) {
    let (ok, _, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args(["crl", "-inform", "DER", "-in", der, "-out", pem]));
    assert!(ok, "{err}");
}

fn verify_with_crls(demo: &DemoDir) -> (bool, String) {
    pem_crl(demo, "crl/root.crl", "root-crl.pem");
    pem_crl(demo, "crl/personal.crl", "personal-crl.pem");
    let (ok, out, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args(["verify", "-crl_check_all", "-CAfile", "ca/root.pem"])
        .args(["-untrusted", "ca/personal.pem", "-CRLfile", "root-crl.pem"])
        .args(["-CRLfile", "personal-crl.pem", "ee.pem"]));
    (ok, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_issuing_ca_is_on_the_offline_roots_crl() {
    let demo = DemoDir::create();
    append_config(&demo, "\n[status]\nroot_offline = true\n");
    // Issuing CA certificates name their parent's CRL and certificate.
    let urls = extension_url(
        &demo,
        "ca/personal.pem",
        "crlDistributionPoints,authorityInfoAccess",
    );
    assert!(
        urls.contains("/crl/root.crl") && urls.contains("/ca/root-g1.crt"),
        "{urls}"
    );
    let (ok, out, err) = run(Command::new(appliance_bin())
        .args(["root", "sign-crl", "--config"])
        .arg(demo.config()));
    assert!(ok, "{out}{err}");
    let root_crls = signing_records(&demo, "ca_name = 'root' AND kind = 'crl'");

    let mut server = demo.serve();
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let ee = demo.issue_personal("operator", &csr).await;
    write_cert(&demo, "ee.pem", &ee);
    let (status, _, body) = public_get(demo.public, "/crl/root.crl").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        std::fs::read(demo.path().join("crl/root.crl")).unwrap()
    );
    let (status, _, _) = public_get(demo.public, "/ca/root-g1.crt").await;
    assert_eq!(status, 200);
    // Wait for the personal CRL, then stop: serve never signed with the root key.
    let start = Instant::now();
    while !demo.path().join("crl/personal.crl").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "personal.crl never written"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop_with("TERM", Duration::from_secs(20));
    assert_eq!(
        signing_records(&demo, "ca_name = 'root' AND kind = 'crl'"),
        root_crls,
        "serve signed a root CRL although the root is offline"
    );
    let (ok, text) = verify_with_crls(&demo);
    assert!(ok, "{text}");

    let (ok, out, err) = run(Command::new(appliance_bin())
        .args([
            "ca",
            "revoke",
            "personal",
            "--reason",
            "keyCompromise",
            "--config",
        ])
        .arg(demo.config()));
    assert!(ok, "{out}{err}");
    let (ok, text) = verify_with_crls(&demo);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    // The root itself cannot be revoked; a second revocation is refused.
    for args in [["root", "--reason"], ["personal", "--reason"]] {
        let (ok, _, err) = run(Command::new(appliance_bin())
            .args([
                "ca",
                "revoke",
                args[0],
                args[1],
                "keyCompromise",
                "--config",
            ])
            .arg(demo.config()));
        assert!(!ok && err.contains("error: "), "{err}");
    }
    // The revoked generation issues nothing more.
    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "late", "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Late"}));
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_ne!(status, 201, "{}", String::from_utf8_lossy(&resp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_with_the_root_token_absent() {
    let demo = DemoDir::create();
    let conf = demo.path().join("softhsm2.conf");
    let tokens = demo.path().join("tokens");
    let before: Vec<_> = std::fs::read_dir(&tokens)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let (ok, out, err) = run(Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", "demo-root"])
        .args(["--pin", "root-pin-1234", "--so-pin", "root-so-pin-1234"]));
    assert!(ok, "{out}{err}");
    let root_token = std::fs::read_dir(&tokens)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !before.contains(p))
        .expect("the new token's directory");
    let pin = demo.path().join("secrets/root.pin");
    std::fs::write(&pin, "root-pin-1234").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A fresh appliance whose root key is made on the root token.
    for f in ["appliance.db", "appliance.db-wal", "appliance.db-shm"] {
        let _ = std::fs::remove_file(demo.path().join("data").join(f));
    }
    append_config(
        &demo,
        "\n[status]\nroot_offline = true\n\n[root_hsm]\ntoken_label = \"demo-root\"\n\n\
         [root_hsm.pin]\nfile = \"secrets/root.pin\"\n",
    );
    let (ok, out, err) = reviewed_ceremony(&demo.config(), &[]);
    assert!(ok, "ceremony: {out}{err}");
    let (ok, out, err) = run(Command::new(appliance_bin())
        .args(["data-key", "rotate", "--config"])
        .arg(demo.config()));
    assert!(ok, "data-key rotate: {out}{err}");
    let root_cert = std::fs::read_to_string(demo.path().join("ca/root.pem")).unwrap();
    assert!(
        demo.path().join("crl/root.crl").exists(),
        "the ceremony signed the first root CRL"
    );

    // The root token goes away: serve neither needs nor opens it.
    let away = demo.path().join("root-token-away");
    std::fs::rename(&root_token, &away).unwrap();
    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let ee = demo.issue_personal("operator", &csr).await;
    write_cert(&demo, "ee.pem", &ee);
    assert!(ocsp_status(&demo, "ca/personal.pem", "ee.pem").ends_with("good"));
    let (status, _, body) = public_get(demo.public, "/crl/root.crl").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        std::fs::read(demo.path().join("crl/root.crl")).unwrap()
    );
    let (status, _, served_root) = public_get(demo.public, "/ca/root.pem").await;
    assert_eq!(
        (status, String::from_utf8(served_root).unwrap()),
        (200, root_cert)
    );
    // Signing the root CRL needs the token; with it back, it works.
    let sign_crl = || {
        run(Command::new(appliance_bin())
            .args(["root", "sign-crl", "--config"])
            .arg(demo.config()))
    };
    let (ok, _, err) = sign_crl();
    assert!(!ok && err.contains("root HSM token"), "{err}");
    std::fs::rename(&away, &root_token).unwrap();
    let (ok, out, err) = sign_crl();
    assert!(ok && out.contains("root CRL root.crl"), "{out}{err}");
}
