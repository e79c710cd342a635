//! End to end: a profile with `crl_shards` writes each certificate's shard into its CRL
//! distribution point; the shard CRL at that URL carries a matching critical
//! issuingDistributionPoint, lists the shard's revoked certificates, and `openssl verify
//! -crl_check` accepts it for its own certificates only.

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::process::Command;
use std::time::{Duration, Instant};

use system_tests::*;

const SHARDS: u16 = 4;

/// Issues a personal certificate; writes `{stem}.pem`; returns (serial, CRLDP URL).
async fn issue(demo: &DemoDir, stem: &str) -> (String, String) {
    let csr = openssl_csr(demo.path(), stem, "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Li Si"}));
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
    let resp = json(&resp);
    let pem = demo.path().join(format!("{stem}.pem"));
    std::fs::write(&pem, resp["certificate"].as_str().unwrap()).unwrap();
    let (ok, out, err) = run(Command::new("openssl")
        .args(["x509", "-noout", "-ext", "crlDistributionPoints", "-in"])
        .arg(&pem));
    assert!(ok, "{err}");
    let url = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("URI:"))
        .unwrap_or_else(|| panic!("no CRLDP URI in {out}"))
        .to_owned();
    (resp["serial"].as_str().unwrap().to_owned(), url)
}

/// The shard the appliance must have chosen: the serial's last two octets modulo SHARDS.
fn shard_of(serial_hex: &str) -> u16 {
    let bytes = hex::decode(serial_hex).unwrap();
    let n = bytes.len();
    u16::from_be_bytes([bytes[n - 2], bytes[n - 1]]) % SHARDS
}

/// Fetches `/crl/{file}`, writes `{file}.pem`, returns its text dump.
async fn fetch_crl(demo: &DemoDir, file: &str) -> String {
    let (status, _, body) = public_get(demo.public, &format!("/crl/{file}")).await;
    assert_eq!(status, 200, "GET /crl/{file}");
    let der = demo.path().join(file);
    std::fs::write(&der, &body).unwrap();
    let (ok, _, err) = run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(demo.path().join(format!("{file}.pem"))));
    assert!(ok, "{err}");
    let (ok, text, err) = run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&der));
    assert!(ok, "{err}");
    text
}

/// `openssl verify -crl_check` of `cert` with the one CRL `crl_pem`.
fn verify(demo: &DemoDir, cert: &str, crl_pem: &str) -> (bool, String) {
    let (ok, out, err) = run(Command::new("openssl").current_dir(demo.path()).args([
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/personal.pem",
        "-crl_check",
        "-CRLfile",
        crl_pem,
        cert,
    ]));
    (ok, format!("{out}{err}"))
}

#[tokio::test]
async fn sharded_profile_publishes_shard_crls_openssl_accepts() {
    let demo = DemoDir::create();
    let profile = demo.path().join("profiles/personal.toml");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(&profile, format!("crl_shards = {SHARDS}\n{text}")).unwrap();
    let _server = demo.serve();

    // The shard is written into the CRLDP at issuance.
    let (revoked, revoked_url) = issue(&demo, "ee0").await;
    let shard = shard_of(&revoked);
    let file = format!("personal-personal-shard{shard}.crl");
    assert_eq!(revoked_url, format!("http://{}/crl/{file}", demo.public));
    // Certificates until one falls into another shard (each lands in one of 4 uniformly).
    let mut other = None;
    for i in 1..40 {
        let stem = format!("ee{i}");
        let (serial, url) = issue(&demo, &stem).await;
        let s = shard_of(&serial);
        assert!(
            url.ends_with(&format!("/crl/personal-personal-shard{s}.crl")),
            "{url}"
        );
        if s != shard {
            other = Some((stem, s));
            break;
        }
    }
    let (other_stem, other_shard) = other.expect("a certificate in another shard");

    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        &format!("/api/v1/certificates/{revoked}/revoke"),
        Some(serde_json::to_vec(&serde_json::json!({"reason": "keyCompromise"})).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));

    // The shard CRL lists it shortly after, with the critical IDP naming the cert's CRLDP.
    let start = Instant::now();
    let text = loop {
        let text = fetch_crl(&demo, &file).await;
        if text.contains(&revoked.to_uppercase()) {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{file} never listed {revoked}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        text.contains("X509v3 Issuing Distribution Point: critical"),
        "{text}"
    );
    assert!(text.contains(&format!("URI:{revoked_url}")), "{text}");
    assert!(text.contains("Only User Certificates"), "{text}");
    let (ok, _, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args([
            "crl",
            "-noout",
            "-verify",
            "-CAfile",
            "ca/personal.pem",
            "-in",
        ])
        .arg(format!("{file}.pem")));
    assert!(ok && err.contains("verify OK"), "{err}");

    // openssl accepts the shard CRL for its certificate, and finds it revoked.
    let (ok, out) = verify(&demo, "ee0.pem", &format!("{file}.pem"));
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    // The other shard's CRL: accepted for its own (unrevoked) certificate, and it does not
    // list the revoked one.
    let other_file = format!("personal-personal-shard{other_shard}.crl");
    let other_text = fetch_crl(&demo, &other_file).await;
    assert!(
        !other_text.contains(&revoked.to_uppercase()),
        "{other_text}"
    );
    let (ok, out) = verify(
        &demo,
        &format!("{other_stem}.pem"),
        &format!("{other_file}.pem"),
    );
    assert!(ok, "{out}");
    // A shard CRL does not cover another shard's certificate (its IDP is not that CRLDP).
    let (ok, out) = verify(&demo, &format!("{other_stem}.pem"), &format!("{file}.pem"));
    assert!(!ok && out.contains("different CRL scope"), "{out}");
}
