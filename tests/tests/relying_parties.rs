//! Relying parties end to end with real parts: QR login answered with certificates issued
//! through applications (keys made by `openssl`, challenges signed by `openssl`), and CMS
//! signatures made by `openssl cms -sign` verified through the API, on the real binary with its
//! SoftHSM2 token, real mTLS clients (`relying-party`, a second relying party, the channels).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod application_support;
mod vendor_setup;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use application_support::*;
use base64::Engine as _;
use serde_json::{json, Value};
use system_tests::*;
use vendor_setup::Setup;

const RP: &str = "relying-party";
const RP2: &str = "relying-party-2";

/// SHECA: phone real-name then face (L3). BJCA: one of phone real-name (L2) or face.
const SHECA_NO_CODES: &str = r#"
name = "sheca-personal"
clients = ["channel-sheca-personal"]
profiles = ["personal"]

[[policy]]
kinds = ["new", "renewal", "change", "reissue", "revocation"]
captcha = false

[[policy.step]]
verify = ["phone-real-name"]

[[policy.step]]
verify = ["face"]
"#;

const BJCA_NO_CODES: &str = r#"
name = "bjca-personal"
clients = ["channel-bjca-personal"]
profiles = ["personal"]

[[policy]]
kinds = ["new"]
captcha = false

[[policy.step]]
verify = ["phone-real-name", "face"]
"#;

const SECOND_RP: &str = r#"
[[client]]
common_name = "relying-party-2"
role = "relying_party"
"#;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Runs openssl in `dir`, asserting success.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new("openssl").current_dir(dir).args(args));
    assert!(ok, "openssl {args:?}: {out}{err}");
    out
}

/// Signs `text` with `key` (a file in `dir`) using `openssl dgst`; `extra` adds `-sigopt`s.
fn openssl_sign(dir: &Path, key: &str, digest: &str, text: &str, extra: &[&str]) -> String {
    std::fs::write(dir.join("challenge.txt"), text).unwrap();
    let mut args = vec!["dgst", digest, "-sign", key];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-out", "challenge.sig", "challenge.txt"]);
    openssl(dir, &args);
    b64(&std::fs::read(dir.join("challenge.sig")).unwrap())
}

/// A second client certificate from the demo's TLS CA (clientAuth), for another relying party.
fn second_relying_party(dir: &Path) {
    let tls = dir.join("tls");
    std::fs::write(
        tls.join("rp2.ext"),
        "extendedKeyUsage = clientAuth\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &tls,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "relying-party-2.key",
            "-subj",
            "/CN=relying-party-2",
            "-out",
            "rp2.csr",
        ],
    );
    openssl(
        &tls,
        &[
            "x509",
            "-req",
            "-in",
            "rp2.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "rp2.ext",
            "-out",
            "relying-party-2.pem",
        ],
    );
}

/// A self-made CA and a leaf under it (`foreign.pem`, `foreign.key`): not ours.
fn foreign_certificate(dir: &Path) -> String {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "foreign-ca.key",
            "-subj",
            "/CN=Foreign Root",
            "-days",
            "2",
            "-out",
            "foreign-ca.pem",
        ],
    );
    std::fs::write(
        dir.join("foreign.ext"),
        "keyUsage = digitalSignature, nonRepudiation\nbasicConstraints = CA:FALSE\n\
         certificatePolicies = 1.3.6.1.4.1.61992.1.9.3\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "foreign.key",
            "-subj",
            "/C=CN/CN=张三",
            "-out",
            "foreign.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "foreign.csr",
            "-CA",
            "foreign-ca.pem",
            "-CAkey",
            "foreign-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "foreign.ext",
            "-out",
            "foreign.pem",
        ],
    );
    std::fs::read_to_string(dir.join("foreign.pem")).unwrap()
}

impl Apps {
    fn relying(extra: &str) -> Apps {
        let extra = extra.to_owned();
        let s = Setup::new(None, move |config, _| {
            format!("{config}\n{SECOND_RP}\n{extra}\n")
        });
        let dir = s.demo.path();
        std::fs::write(dir.join("channels/sheca-personal.toml"), SHECA_NO_CODES).unwrap();
        std::fs::write(dir.join("channels/bjca-personal.toml"), BJCA_NO_CODES).unwrap();
        second_relying_party(dir);
        Apps::from_setup(s)
    }

    /// ZHANG's certificate through SHECA (phone real-name + face: L3); key `stem.key`.
    async fn l3_certificate(&self, stem: &str) -> Value {
        let body = json!({"kind": "new", "profile": "personal", "subject": person(ZHANG), "csr": self.csr(stem)});
        let (status, app) = self.create(SHECA, body).await;
        assert_eq!(status, 201, "{app}");
        let id = app["id"].as_str().unwrap().to_owned();
        let code = self.s.sim.latest_code(ZHANG.2).await;
        let (status, v) = self.input_code(SHECA, &id, &code).await;
        assert_eq!(status, 200, "{v}");
        let v = self
            .wait(SHECA, &id, "showed face", |v| {
                v["step"]["challenge"]["url"].is_string()
            })
            .await;
        self.complete_face(&v).await;
        let done = self
            .wait(SHECA, &id, "issued", |v| v["status"] == "issued")
            .await;
        assert_eq!(done["assurance_level"], "L3", "{done}");
        done["certificate"].clone()
    }

    /// ZHANG's certificate through BJCA by phone real-name only (L2); key `stem.key`.
    async fn l2_certificate(&self, stem: &str) -> Value {
        let body = json!({"kind": "new", "profile": "personal", "subject": person(ZHANG), "csr": self.csr(stem)});
        let (status, app) = self.create(BJCA, body).await;
        assert_eq!(status, 201, "{app}");
        let id = app["id"].as_str().unwrap().to_owned();
        let (status, v) = self
            .act(BJCA, &id, "choose", json!({"method": "phone-real-name"}))
            .await;
        assert_eq!(status, 200, "{v}");
        let v = self
            .wait(BJCA, &id, "asked for the code", |v| {
                v["step"]["challenge"]["kind"] == "sms_code"
            })
            .await;
        assert_eq!(v["status"], "awaiting_applicant", "{v}");
        let code = self.s.sim.latest_code(ZHANG.2).await;
        let (status, v) = self.input_code(BJCA, &id, &code).await;
        assert_eq!(status, 200, "{v}");
        let done = self
            .wait(BJCA, &id, "issued", |v| v["status"] == "issued")
            .await;
        assert_eq!(done["assurance_level"], "L2", "{done}");
        done["certificate"].clone()
    }

    async fn challenge(&self, who: &str, body: Value) -> Value {
        let (status, c) = self
            .call(who, "POST", "/api/v1/login-challenges", Some(body))
            .await;
        assert_eq!(status, 201, "{c}");
        c
    }

    async fn respond(&self, channel: &str, id: &str, body: Value) -> (u16, Value) {
        self.call(
            channel,
            "POST",
            &format!("/api/v1/login-challenges/{id}/response"),
            Some(body),
        )
        .await
    }

    async fn login_status(&self, who: &str, id: &str) -> (u16, Value) {
        self.call(who, "GET", &format!("/api/v1/login-challenges/{id}"), None)
            .await
    }
}

/// The SMS-free subject of a person.
fn person(p: (&str, &str, &str)) -> Value {
    json!({"type": "person", "name": p.0, "id_type": "resident_id", "id_number": p.1, "phone": p.2})
}

#[tokio::test]
async fn qr_login_with_an_application_certificate_and_every_refusal() {
    let apps = Apps::relying("");
    let _server = apps.s.demo.serve();
    let dir = apps.dir().to_owned();
    let l3 = apps.l3_certificate("zhang-l3").await;
    let l3_pem = l3["pem"].as_str().unwrap().to_owned();
    let l3_serial = l3["serial"].as_str().unwrap().to_owned();

    // Approved: the phone signs the qr text's exact bytes (openssl, ECDSA P-256 SHA-256).
    let c = apps.challenge(RP, json!({"min_level": "L3"})).await;
    let id = c["id"].as_str().unwrap().to_owned();
    let qr = c["qr"].as_str().unwrap().to_owned();
    assert!(
        qr.starts_with(&format!("ca-login:v1;id={id};nonce=")),
        "{qr}"
    );
    assert!(qr.ends_with(";rp=relying-party"), "{qr}");
    let ttl = c["expires_at"].as_i64().unwrap() - time_now();
    assert!((115..=121).contains(&ttl), "two minutes by default: {ttl}");
    let (status, v) = apps.login_status(RP, &id).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("pending")),
        "{v}"
    );

    let signature = openssl_sign(&dir, "zhang-l3.key", "-sha256", &qr, &[]);
    let answer = json!({"certificate": l3_pem, "signature": signature});

    // Not for the relying party or an operator to answer, not for a channel to create or read.
    let (status, v) = apps.respond(RP, &id, answer.clone()).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("role_not_allowed")),
        "{v}"
    );
    let (status, v) = apps
        .call(SHECA, "POST", "/api/v1/login-challenges", Some(json!({})))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("role_not_allowed")),
        "{v}"
    );
    let (status, _) = apps.login_status(SHECA, &id).await;
    assert_eq!(status, 403);

    // A signature by another key, or over another challenge: refused, the challenge unchanged.
    let other = apps.challenge(RP, json!({})).await;
    let over_other = openssl_sign(
        &dir,
        "zhang-l3.key",
        "-sha256",
        other["qr"].as_str().unwrap(),
        &[],
    );
    let (status, v) = apps
        .respond(
            SHECA,
            &id,
            json!({"certificate": l3_pem, "signature": over_other}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("signature_invalid")),
        "{v}"
    );
    apps.csr("stranger");
    let by_stranger = openssl_sign(&dir, "stranger.key", "-sha256", &qr, &[]);
    let (status, v) = apps
        .respond(
            SHECA,
            &id,
            json!({"certificate": l3_pem, "signature": by_stranger}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("signature_invalid")),
        "{v}"
    );
    for (body, code) in [
        (
            json!({"certificate": "not a pem", "signature": signature}),
            "malformed_certificate",
        ),
        (
            json!({"certificate": l3_pem, "signature": "%%%"}),
            "malformed_signature",
        ),
        (
            json!({"certificate": l3_pem, "signature": signature, "algorithm": "rsa-pss-sha256"}),
            "unsupported_algorithm",
        ),
        (
            json!({"certificate": l3_pem, "signature": signature, "algorithm": "md5"}),
            "unsupported_algorithm",
        ),
        (json!({"certificate": l3_pem}), "malformed_json"),
    ] {
        let (status, v) = apps.respond(SHECA, &id, body).await;
        assert_eq!((status, v["error"].as_str()), (400, Some(code)), "{v}");
    }
    let (_, v) = apps.login_status(RP, &id).await;
    assert_eq!(v["status"], "pending", "nothing changed: {v}");

    // The right answer: approved; the relying party reads the masked subject, level, serial.
    let (status, v) = apps.respond(SHECA, &id, answer.clone()).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("approved")),
        "{v}"
    );
    let (status, v) = apps.login_status(RP, &id).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "approved", "{v}");
    assert_eq!(v["level"], "L3", "{v}");
    assert_eq!(v["serial"], l3_serial.as_str(), "{v}");
    assert_eq!(v["subject"]["name"], "张*", "masked: {v}");
    assert!(!v.to_string().contains("张三"), "{v}");

    // Bound to its relying party: another one does not see it.
    let (status, v) = apps.login_status(RP2, &id).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );

    // Replayed: single use, the outcome stays.
    let (status, v) = apps.respond(SHECA, &id, answer.clone()).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("challenge_used")),
        "{v}"
    );
    let (_, v) = apps.login_status(RP, &id).await;
    assert_eq!(v["status"], "approved", "{v}");

    // A foreign certificate (its own CA, the L3 policy OID copied): refused.
    let foreign = foreign_certificate(&dir);
    let c = apps.challenge(RP, json!({})).await;
    let cid = c["id"].as_str().unwrap();
    let sig = openssl_sign(
        &dir,
        "foreign.key",
        "-sha256",
        c["qr"].as_str().unwrap(),
        &[],
    );
    let (status, v) = apps
        .respond(
            SHECA,
            cid,
            json!({"certificate": foreign, "signature": sig}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("certificate_foreign")),
        "{v}"
    );
    let (_, v) = apps.login_status(RP, cid).await;
    assert_eq!(
        (v["status"].as_str(), v["reason"].as_str()),
        (Some("refused"), Some("certificate_foreign")),
        "{v}"
    );

    // An L2 certificate when L3 is asked: refused level_too_low; L2 asked: approved.
    let l2 = apps.l2_certificate("zhang-l2").await;
    let l2_pem = l2["pem"].as_str().unwrap();
    let c = apps.challenge(RP, json!({"min_level": "L3"})).await;
    let cid = c["id"].as_str().unwrap();
    let sig = openssl_sign(
        &dir,
        "zhang-l2.key",
        "-sha256",
        c["qr"].as_str().unwrap(),
        &[],
    );
    let (status, v) = apps
        .respond(BJCA, cid, json!({"certificate": l2_pem, "signature": sig}))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("level_too_low")),
        "{v}"
    );
    let (_, v) = apps.login_status(RP, cid).await;
    assert_eq!(
        (v["status"].as_str(), v["reason"].as_str()),
        (Some("refused"), Some("level_too_low")),
        "{v}"
    );
    let c = apps.challenge(RP2, json!({"min_level": "L2"})).await;
    let cid = c["id"].as_str().unwrap();
    assert!(
        c["qr"].as_str().unwrap().ends_with(";rp=relying-party-2"),
        "{c}"
    );
    let sig = openssl_sign(
        &dir,
        "zhang-l2.key",
        "-sha384",
        c["qr"].as_str().unwrap(),
        &[],
    );
    let (status, v) = apps
        .respond(
            BJCA,
            cid,
            json!({"certificate": l2_pem, "signature": sig, "algorithm": "ecdsa-sha384"}),
        )
        .await;
    assert_eq!((status, v["level"].as_str()), (200, Some("L2")), "{v}");
    let (status, _) = apps.login_status(RP, cid).await;
    assert_eq!(status, 404, "RP reads only its own challenges");

    // Revoked: the appliance's own status data, at once.
    let (status, v) = apps
        .call(
            SHECA,
            "POST",
            &format!("/api/v1/certificates/{l3_serial}/revoke"),
            Some(json!({"reason": "keyCompromise"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let c = apps.challenge(RP, json!({"min_level": "L3"})).await;
    let cid = c["id"].as_str().unwrap();
    let sig = openssl_sign(
        &dir,
        "zhang-l3.key",
        "-sha256",
        c["qr"].as_str().unwrap(),
        &[],
    );
    let (status, v) = apps
        .respond(SHECA, cid, json!({"certificate": l3_pem, "signature": sig}))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("certificate_revoked")),
        "{v}"
    );
    let (_, v) = apps.login_status(RP, cid).await;
    assert_eq!(
        (v["status"].as_str(), v["reason"].as_str()),
        (Some("refused"), Some("certificate_revoked")),
        "{v}"
    );
    assert!(v["serial"].is_null(), "{v}");

    // Every answer is in the audit log.
    let rows = apps.sql("select action from audit_log where action like 'login.%' order by seq");
    assert_eq!(
        rows.lines().filter(|a| *a == "login.approved").count(),
        2,
        "{rows}"
    );
    assert_eq!(
        rows.lines().filter(|a| *a == "login.refused").count(),
        3,
        "{rows}"
    );
}

#[tokio::test]
async fn an_expired_challenge_cannot_be_answered_and_rsa_pss_is_accepted() {
    let demo = DemoDir::create();
    append_config(&demo, "[login]\nchallenge_ttl_secs = 2\n");
    let _server = demo.serve();
    let dir = demo.path();
    let csr = openssl_csr(dir, "rsa", "rsa:2048");
    let issued = demo.issue_personal("operator", &csr).await;
    let pem = issued["certificate"].as_str().unwrap();
    let call = |who: &'static str, method: &'static str, path: String, body: Option<Value>| {
        let tls = demo.client_tls(who);
        let api = demo.api;
        async move {
            let (status, body) = api_request(
                api,
                tls,
                method,
                &path,
                body.map(|b| serde_json::to_vec(&b).unwrap()),
            )
            .await
            .unwrap();
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };

    // RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) within the lifetime: approved, no level.
    let (_, c) = call(
        RP,
        "POST",
        "/api/v1/login-challenges".into(),
        Some(json!({})),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let sig = openssl_sign(
        dir,
        "rsa.key",
        "-sha256",
        c["qr"].as_str().unwrap(),
        &[
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ],
    );
    let (status, v) = call(
        "channel-demo",
        "POST",
        format!("/api/v1/login-challenges/{id}/response"),
        Some(json!({"certificate": pem, "signature": sig, "algorithm": "rsa-pss-sha256"})),
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("approved")),
        "{v}"
    );
    assert!(v["level"].is_null(), "a direct issuance has no level: {v}");

    // Left alone, a challenge expires; an answer after that is refused and changes nothing.
    let (_, c) = call(
        RP,
        "POST",
        "/api/v1/login-challenges".into(),
        Some(json!({})),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let sig = openssl_sign(dir, "rsa.key", "-sha256", c["qr"].as_str().unwrap(), &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = call(RP, "GET", format!("/api/v1/login-challenges/{id}"), None).await;
        if v["status"] == "expired" {
            break;
        }
        assert_eq!(v["status"], "pending", "{v}");
        assert!(Instant::now() < deadline, "never expired: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, v) = call(
        "channel-demo",
        "POST",
        format!("/api/v1/login-challenges/{id}/response"),
        Some(json!({"certificate": pem, "signature": sig})),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (410, Some("challenge_expired")),
        "{v}"
    );
    let (_, v) = call(RP, "GET", format!("/api/v1/login-challenges/{id}"), None).await;
    assert_eq!(v["status"], "expired", "{v}");
    let (status, v) = call(
        RP,
        "POST",
        "/api/v1/login-challenges".into(),
        Some(json!({"min_level": "L4"})),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_level")),
        "{v}"
    );
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
