//! Relying parties end to end with real parts: QR login answered with certificates issued
//! through applications (keys made by `openssl`, challenges signed by `openssl`), and CMS
//! signatures made by `openssl cms -sign` verified through the API, on the real binary with its
//! SoftHSM2 token, real mTLS clients (`relying-party`, a second relying party, the channels).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod application_support;
mod vendor_setup;

use std::path::Path;
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
profiles = ["personal", "personal-l3"]

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
profiles = ["personal", "personal-l3"]

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

/// Signs `text` with `key` (a file in `dir`) using `openssl dgst`; `extra` adds `-sigopt`s.
fn openssl_sign(dir: &Path, key: &str, digest: &str, text: &str, extra: &[&str]) -> String {
    std::fs::write(dir.join("challenge.txt"), text).unwrap();
    let mut args = vec!["dgst", digest, "-sign", key];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-out", "challenge.sig", "challenge.txt"]);
    openssl_in(dir, &args);
    b64(&std::fs::read(dir.join("challenge.sig")).unwrap())
}

/// A second client certificate from the demo's TLS CA (clientAuth), for another relying party.
fn second_relying_party(dir: &Path) {
    openssl_leaf(
        &dir.join("tls"),
        "relying-party-2",
        "/CN=relying-party-2",
        "ca",
        "extendedKeyUsage = clientAuth\nbasicConstraints = CA:FALSE\n",
    );
}

/// A self-made CA and a leaf under it (`foreign.pem`, `foreign.key`): not ours.
fn foreign_certificate(dir: &Path) -> String {
    openssl_in(
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
    openssl_leaf(
        dir,
        "foreign",
        "/C=CN/CN=张三",
        "foreign-ca",
        "keyUsage = digitalSignature, nonRepudiation\nbasicConstraints = CA:FALSE\n\
         certificatePolicies = 1.3.6.1.4.1.61992.1.9.3\n",
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
        // The personal profile asking for L3 (`min_level`), for the `level_too_low` check.
        let personal = std::fs::read_to_string(dir.join("profiles/personal.toml")).unwrap();
        let l3 = personal.replacen(
            "name = \"personal\"",
            "name = \"personal-l3\"\nmin_level = \"L3\"",
            1,
        );
        assert_ne!(l3, personal);
        std::fs::write(dir.join("profiles/personal-l3.toml"), l3).unwrap();
        Apps::from_setup(s)
    }

    /// ZHANG's certificate through SHECA (phone real-name + face: L3); key `stem.key`.
    async fn l3_certificate(&self, stem: &str) -> Value {
        let body = json!({"kind": "new", "profile": "personal-l3", "subject": person(ZHANG), "csr": self.csr(stem)});
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
    async fn l2_application(&self, stem: &str, profile: &str) -> Value {
        let body = json!({"kind": "new", "profile": profile, "subject": person(ZHANG), "csr": self.csr(stem)});
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
        // Below the profile's min_level: refused at the step that finished verification.
        assert!(
            status == 200 || (status == 422 && v["error"] == "level_too_low"),
            "{v}"
        );
        self.wait(BJCA, &id, "finished", |v| {
            v["status"] == "issued" || v["status"] == "rejected"
        })
        .await
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

    /// A new challenge of `RP` (`body`) answered through `channel` with `pem` and a SHA-256
    /// signature by `key`: refused with `code` (422); returns the relying party's view of it.
    async fn refused_answer(
        &self,
        body: Value,
        channel: &str,
        pem: &str,
        key: &str,
        code: &str,
    ) -> Value {
        let c = self.challenge(RP, body).await;
        let cid = c["id"].as_str().unwrap();
        let sig = openssl_sign(self.dir(), key, "-sha256", c["qr"].as_str().unwrap(), &[]);
        let (status, v) = self
            .respond(channel, cid, json!({"certificate": pem, "signature": sig}))
            .await;
        assert_eq!((status, v["error"].as_str()), (422, Some(code)), "{v}");
        let (_, v) = self.login_status(RP, cid).await;
        assert_eq!(
            (v["status"].as_str(), v["reason"].as_str()),
            (Some("refused"), Some(code)),
            "{v}"
        );
        v
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
    apps.refused_answer(
        json!({}),
        SHECA,
        &foreign,
        "foreign.key",
        "certificate_foreign",
    )
    .await;

    // An L2 certificate when L3 is asked: refused level_too_low; L2 asked: approved.
    // The L3 profile refuses an application that reached only L2, before anything is issued.
    let refused = apps.l2_application("zhang-l2-refused", "personal-l3").await;
    assert_eq!(refused["status"], "rejected", "{refused}");
    assert_eq!(refused["failure"]["code"], "level_too_low", "{refused}");
    assert!(refused["certificate"].is_null(), "{refused}");
    let done = apps.l2_application("zhang-l2", "personal").await;
    assert_eq!(
        (done["status"].as_str(), done["assurance_level"].as_str()),
        (Some("issued"), Some("L2")),
        "{done}"
    );
    let l2_pem = done["certificate"]["pem"].as_str().unwrap();
    apps.refused_answer(
        json!({"min_level": "L3"}),
        BJCA,
        l2_pem,
        "zhang-l2.key",
        "level_too_low",
    )
    .await;
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
    let v = apps
        .refused_answer(
            json!({"min_level": "L3"}),
            SHECA,
            &l3_pem,
            "zhang-l3.key",
            "certificate_revoked",
        )
        .await;
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

/// A challenge nobody answers in time: it reads `expired`, cannot be answered, and its callback
/// (asked for at creation) is POSTed with status `expired`, signed like every callback.
#[tokio::test]
async fn an_expired_challenge_cannot_be_answered_is_called_back_and_rsa_pss_is_accepted() {
    const SECRET: &str = "rp-expiry-secret-71c2e0";
    let receiver = Receiver::start().await;
    receiver
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let base = format!("http://{}/rp/", receiver.addr);
    let demo = DemoDir::create();
    append_config(
        &demo,
        &format!(
            "[login]\nchallenge_ttl_secs = 2\n\n[[relying_party]]\nname = \"relying-party\"\n\
             callback_urls = [\"{base}\"]\ncallback_secret = {{ file = \"secrets/rp-callback.key\" }}\n\
             allow_plain_http = true\n"
        ),
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let f = demo.path().join("secrets/rp-callback.key");
        std::fs::write(&f, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let _server = demo.serve();
    let dir = demo.path();
    let csr = openssl_csr(dir, "rsa", "rsa:2048");
    let issued = demo.issue_personal("operator", &csr).await;
    let pem = issued["certificate"].as_str().unwrap();
    let demo = &demo;
    let call = |who, method, path: String, body| async move {
        demo.call_json(who, method, &path, body).await
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
        Some(json!({"callback": format!("{base}login?state=e1")})),
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
    // The expiry is called back once, signed; nothing about a certificate in it.
    let got = receiver
        .wait("the expiry called back", |got| {
            got.iter().any(|r| r.body.contains(&id))
        })
        .await;
    let calls: Vec<&Received> = got.iter().filter(|r| r.body.contains(&id)).collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, "/rp/login?state=e1");
    assert!(python_signature_ok(dir, SECRET, calls[0]), "{:?}", calls[0]);
    let body: Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["status"].as_str()),
        (Some("login.expired"), Some("expired")),
        "{body}"
    );
    for absent in ["serial", "subject", "level", "reason"] {
        assert!(body.get(absent).is_none(), "{absent}: {body}");
    }
    // After the expiry was recorded, an answer is still `challenge_expired`.
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

/// `openssl cms -sign` in `dir` over `doc` (DER out, binary); `extra` e.g. `-nodetach`.
fn cms_sign(dir: &Path, cert: &str, key: &str, doc: &str, out: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "cms", "-sign", "-binary", "-in", doc, "-signer", cert, "-inkey", key, "-outform", "DER",
        "-out", out,
    ];
    args.extend_from_slice(extra);
    openssl_in(dir, &args);
    b64(&std::fs::read(dir.join(out)).unwrap())
}

#[tokio::test]
async fn cms_signatures_made_by_openssl_verify_and_altered_revoked_or_foreign_ones_do_not() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    let dir = demo.path().to_owned();
    let demo = &demo;
    let call = |who, path, body| demo.call_json(who, "POST", path, Some(body));
    let verify = |body: Value| call(RP, "/api/v1/signatures/verify", body);
    let mut certs = Vec::new();
    for (stem, spec) in [
        ("ec", "ec:P-256"),
        ("rsa", "rsa:2048"),
        ("late", "ec:P-384"),
    ] {
        let issued = demo
            .issue_personal("operator", &openssl_csr(&dir, stem, spec))
            .await;
        std::fs::write(
            dir.join(format!("{stem}.pem")),
            issued["certificate"].as_str().unwrap(),
        )
        .unwrap();
        certs.push(issued["serial"].as_str().unwrap().to_owned());
    }
    let (ec_serial, _rsa_serial, late_serial) = (&certs[0], &certs[1], &certs[2]);
    let document = "标书 tender 2026-001: price 1,000,000 CNY\n";
    std::fs::write(dir.join("doc.txt"), document).unwrap();
    std::fs::write(
        dir.join("other.txt"),
        "标书 tender 2026-001: price 9,000,000 CNY\n",
    )
    .unwrap();
    let doc = b64(document.as_bytes());

    // Detached and attached, ECDSA and RSA (PKCS#1 v1.5 and PSS): valid, the signer named.
    let detached = cms_sign(&dir, "ec.pem", "ec.key", "doc.txt", "det.p7s", &[]);
    let attached = cms_sign(
        &dir,
        "ec.pem",
        "ec.key",
        "doc.txt",
        "att.p7s",
        &["-nodetach"],
    );
    let rsa = cms_sign(&dir, "rsa.pem", "rsa.key", "doc.txt", "rsa.p7s", &[]);
    let pss = cms_sign(
        &dir,
        "rsa.pem",
        "rsa.key",
        "doc.txt",
        "pss.p7s",
        &[
            "-keyopt",
            "rsa_padding_mode:pss",
            "-keyopt",
            "rsa_pss_saltlen:digest",
            "-md",
            "sha384",
        ],
    );
    // PSS with a salt longer than the hash (OpenSSL's default) is not among the schemes.
    let pss_max = cms_sign(
        &dir,
        "rsa.pem",
        "rsa.key",
        "doc.txt",
        "pss-max.p7s",
        &["-keyopt", "rsa_padding_mode:pss", "-md", "sha384"],
    );
    let (_, v) = verify(json!({"cms": pss_max, "content": doc})).await;
    assert_eq!(v["reasons"], json!(["unsupported_algorithm"]), "{v}");
    for (name, body) in [
        ("detached", json!({"cms": detached, "content": doc})),
        ("attached", json!({"cms": attached})),
        (
            "attached, same content given",
            json!({"cms": attached, "content": doc}),
        ),
        ("rsa", json!({"cms": rsa, "content": doc})),
        ("rsa-pss", json!({"cms": pss, "content": doc})),
    ] {
        let (status, v) = verify(body).await;
        assert_eq!(status, 200, "{name}: {v}");
        assert_eq!(v["valid"], true, "{name}: {v}");
        assert_eq!(v["reasons"], json!([]), "{name}: {v}");
        assert_eq!(v["signer"]["issuer"], "personal", "{name}: {v}");
        assert!(v["signer"]["signing_time"].is_i64(), "{name}: {v}");
        assert_eq!(v["signer"]["subject"]["name"], "T**********", "{name}: {v}");
    }
    let (_, v) = verify(json!({"cms": detached, "content": doc})).await;
    assert_eq!(v["signer"]["serial"], ec_serial.as_str(), "{v}");

    // Other content, a changed signature, a foreign signer: each with its reason.
    let other = b64(&std::fs::read(dir.join("other.txt")).unwrap());
    let (_, v) = verify(json!({"cms": detached, "content": other})).await;
    assert_eq!(
        (v["valid"].clone(), v["reasons"].clone()),
        (json!(false), json!(["content_digest_mismatch"])),
        "{v}"
    );
    let (_, v) = verify(json!({"cms": attached, "content": other})).await;
    assert_eq!(
        (v["valid"].clone(), v["reasons"].clone()),
        (json!(false), json!(["content_mismatch"])),
        "{v}"
    );
    let mut tampered = std::fs::read(dir.join("det.p7s")).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01; // the last byte of the ECDSA signature value
    let (_, v) = verify(json!({"cms": b64(&tampered), "content": doc})).await;
    assert_eq!(
        (v["valid"].clone(), v["reasons"].clone()),
        (json!(false), json!(["signature_invalid"])),
        "{v}"
    );
    foreign_certificate(&dir);
    let foreign = cms_sign(
        &dir,
        "foreign.pem",
        "foreign.key",
        "doc.txt",
        "foreign.p7s",
        &[],
    );
    let (_, v) = verify(json!({"cms": foreign, "content": doc})).await;
    assert_eq!(
        (v["valid"].clone(), v["reasons"].clone()),
        (json!(false), json!(["certificate_foreign"])),
        "{v}"
    );
    assert!(v["signer"]["issuer"].is_null(), "{v}");

    // Revoked for key compromise: no signature by it is trusted, whatever time it claims.
    let revoke = |serial: String, reason: &'static str| async move {
        let path = format!("/api/v1/certificates/{serial}/revoke");
        let (status, v) = demo
            .call_json("operator", "POST", &path, Some(json!({"reason": reason})))
            .await;
        assert_eq!(status, 200, "{v}");
    };
    let early = cms_sign(&dir, "late.pem", "late.key", "doc.txt", "early.p7s", &[]);
    revoke(ec_serial.clone(), "keyCompromise").await;
    let (_, v) = verify(json!({"cms": attached})).await;
    assert_eq!(
        (v["valid"].clone(), v["reasons"].clone()),
        (json!(false), json!(["certificate_revoked"])),
        "{v}"
    );
    assert_eq!(v["signer"]["status"], "revoked", "{v}");
    // Revoked as superseded: a signature made before still verifies (status at signing time),
    // one made after does not.
    let deadline = Instant::now() + Duration::from_secs(5);
    while time_now()
        <= early_signing_time(
            &verify(json!({"cms": early.clone(), "content": doc}))
                .await
                .1,
        )
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    revoke(late_serial.clone(), "superseded").await;
    let (_, v) = verify(json!({"cms": early, "content": doc})).await;
    assert_eq!(
        (v["valid"].clone(), v["reasons"].clone()),
        (json!(true), json!([])),
        "{v}"
    );
    assert_eq!(v["signer"]["status"], "revoked", "{v}");
    let after = cms_sign(&dir, "late.pem", "late.key", "doc.txt", "after.p7s", &[]);
    let (_, v) = verify(json!({"cms": after, "content": doc})).await;
    assert_eq!(
        (v["valid"].clone(), v["reasons"].clone()),
        (json!(false), json!(["certificate_revoked"])),
        "{v}"
    );

    // Not CMS, not base64, detached without its content, a channel asking: refused.
    for (body, status, code) in [
        (
            json!({"cms": b64(b"not a cms structure")}),
            400,
            "malformed_cms",
        ),
        (json!({"cms": "***"}), 400, "malformed_cms"),
        (json!({"cms": detached}), 400, "content_missing"),
        (
            json!({"cms": detached, "content": "***"}),
            400,
            "malformed_content",
        ),
        (json!({"cms": detached, "extra": 1}), 400, "malformed_json"),
    ] {
        let (s, v) = verify(body).await;
        assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{v}");
    }
    let (s, v) = call(
        "channel-demo",
        "/api/v1/signatures/verify",
        json!({"cms": attached}),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("role_not_allowed")),
        "{v}"
    );
}

fn early_signing_time(v: &Value) -> i64 {
    v["signer"]["signing_time"]
        .as_i64()
        .unwrap_or_else(|| panic!("{v}"))
}

#[tokio::test]
async fn a_phone_binds_one_personal_account_per_realm() {
    let apps = Apps::relying(
        "[[applications.realm]]\nname = \"gd\"\nchannels = [\"sheca-personal\", \"bjca-personal\"]\n",
    );
    let _server = apps.s.demo.serve();
    apps.l3_certificate("zhang").await;
    let accounts = apps.sql("select realm, kind, level, evidence from accounts");
    assert!(accounts.starts_with("gd|personal|L3|"), "{accounts}");
    assert!(
        accounts.contains("\"face\""),
        "evidence names the methods: {accounts}"
    );
    let all = apps.sql("select * from accounts");
    assert!(
        !all.contains(ZHANG.2) && !all.contains(ZHANG.1),
        "no clear numbers: {all}"
    );

    // 王五 declaring 张三's phone, through the other channel of the realm: refused, nothing stored.
    let before = apps.sql("select count(*) from applications");
    let wang = json!({"type": "person", "name": "王五", "id_type": "resident_id",
        "id_number": "110105199002020026", "phone": ZHANG.2});
    let (status, v) = apps
        .create(
            BJCA,
            json!({"kind": "new", "profile": "personal", "subject": wang, "csr": apps.csr("wang")}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("phone_bound_to_other_account")),
        "{v}"
    );
    assert_eq!(apps.sql("select count(*) from applications"), before);
    // 张三 himself may apply again with his phone.
    let (status, v) = apps
        .create(
            BJCA,
            json!({"kind": "new", "profile": "personal", "subject": person(ZHANG), "csr": apps.csr("again")}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

/// One request a callback receiver got, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: std::collections::BTreeMap<String, String>,
    body: String,
    answered: u16,
}

/// A small HTTP/1.1 receiver on loopback standing in for a relying party's callback endpoint:
/// records every request and answers 500 while `failing`, else 200.
struct Receiver {
    addr: std::net::SocketAddr,
    got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start() -> Receiver {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (g, f) = (got.clone(), failing.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (g, f) = (g.clone(), f.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.split("\r\n");
                    let path = lines
                        .next()
                        .unwrap_or_default()
                        .split(' ')
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    let headers: std::collections::BTreeMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                    let answered = if f.load(Ordering::SeqCst) { 500 } else { 200 };
                    g.lock().unwrap().push(Received {
                        path,
                        headers,
                        body,
                        answered,
                    });
                    let reply = format!(
                        "HTTP/1.1 {answered} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Receiver { addr, got, failing }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (bounded) until a request satisfies `done`.
    async fn wait(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "never {what}: {got:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Checks the callback's signature independently (Python `hmac`): hex HMAC-SHA256 of
/// `timestamp + "." + body` under `secret`.
fn python_signature_ok(dir: &Path, secret: &str, r: &Received) -> bool {
    let body = dir.join("callback-body.json");
    std::fs::write(&body, &r.body).unwrap();
    let script = "import hmac,hashlib,sys\n\
        key=sys.argv[1].encode(); ts=sys.argv[2]; sig=sys.argv[3]\n\
        body=open(sys.argv[4],'rb').read()\n\
        mac=hmac.new(key, ts.encode()+b'.'+body, hashlib.sha256).hexdigest()\n\
        print('ok' if hmac.compare_digest(mac, sig) else 'bad')";
    let (ok, out, err) = run(std::process::Command::new("python3").args([
        "-c",
        script,
        secret,
        r.headers.get("x-ca-timestamp").map_or("", String::as_str),
        r.headers.get("x-ca-signature").map_or("", String::as_str),
        body.to_str().unwrap(),
    ]));
    assert!(ok, "python: {err}");
    out.trim() == "ok"
}

#[tokio::test]
async fn login_callbacks_are_signed_retried_across_a_restart_and_only_to_allowed_urls() {
    const SECRET: &str = "rp-callback-secret-3f9a1c";
    let receiver = Receiver::start().await;
    let base = format!("http://{}/rp/", receiver.addr);
    let apps = Apps::relying(&format!(
        "[[relying_party]]\nname = \"relying-party\"\ncallback_urls = [\"{base}\"]\n\
         callback_secret = {{ file = \"secrets/rp-callback.key\" }}\nallow_plain_http = true\n\n\
         [contact]\ndelivery_retry_secs = 1\ndelivery_max_backoff_secs = 2\n"
    ));
    let dir = apps.dir().to_owned();
    {
        use std::os::unix::fs::PermissionsExt;
        let f = dir.join("secrets/rp-callback.key");
        std::fs::write(&f, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let server = apps.s.demo.serve();
    let l3 = apps.l3_certificate("zhang-cb").await;
    let pem = l3["pem"].as_str().unwrap().to_owned();

    // Refused callback URLs: not under the allowlist, not https to a remote host, or a relying
    // party without callbacks. Nothing is stored.
    let before = apps.sql("SELECT count(*) FROM login_challenges");
    for (who, url) in [
        (RP, format!("http://{}/elsewhere", receiver.addr)),
        (RP, format!("http://{}/rpx", receiver.addr)),
        (RP, "http://198.51.100.7/rp/".to_owned()),
        (RP, "https://portal.example/rp/".to_owned()),
        (RP, "not a url".to_owned()),
        (RP2, format!("{base}login")),
    ] {
        let (status, v) = apps
            .call(
                who,
                "POST",
                "/api/v1/login-challenges",
                Some(json!({"callback": url})),
            )
            .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("callback_not_allowed")),
            "{who} {url}: {v}"
        );
    }
    assert_eq!(apps.sql("SELECT count(*) FROM login_challenges"), before);

    // Approved, the receiver answering 500: the delivery is retried (backoff), then the server
    // is killed while it is still pending, restarted, and the receiver now answers 200.
    let url = format!("{base}login?state=s1");
    let c = apps
        .challenge(RP, json!({"min_level": "L3", "callback": url}))
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let sig = openssl_sign(
        &dir,
        "zhang-cb.key",
        "-sha256",
        c["qr"].as_str().unwrap(),
        &[],
    );
    let (status, v) = apps
        .respond(SHECA, &id, json!({"certificate": pem, "signature": sig}))
        .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("approved")),
        "{v}"
    );
    receiver
        .wait("retried after a 500", |got| got.len() >= 2)
        .await;
    drop(server);
    assert_eq!(
        apps.sql("SELECT status FROM notifications WHERE kind = 'callback'"),
        "pending"
    );
    receiver
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let server = apps.s.demo.serve();
    let got = receiver
        .wait("delivered after the restart", |got| {
            got.iter().any(|r| r.answered == 200)
        })
        .await;
    let first: Value = serde_json::from_str(&got[0].body).unwrap();
    for r in &got {
        assert_eq!(r.path, "/rp/login?state=s1");
        assert_eq!(r.body, got[0].body, "every attempt sends the same body");
        assert!(python_signature_ok(&dir, SECRET, r), "signature: {r:?}");
        let ts: i64 = r.headers["x-ca-timestamp"].parse().unwrap();
        assert!((ts - time_now()).abs() < 300, "{ts}");
        // Another key does not verify: the check can fail.
        assert!(!python_signature_ok(&dir, "another-secret", r));
    }
    assert_eq!(first["v"], 1, "{first}");
    assert_eq!(first["event"], "login.decided", "{first}");
    assert_eq!(first["challenge"], id.as_str(), "{first}");
    assert_eq!(first["status"], "approved", "{first}");
    assert_eq!(first["level"], "L3", "{first}");
    assert_eq!(first["serial"], l3["serial"], "{first}");
    assert_eq!(first["subject"]["name"], "张*", "masked: {first}");
    assert!(first["delivery_id"].as_str().unwrap().starts_with("ntf_"));
    assert!(!got[0].body.contains("张三"), "{first}");
    let row = apps.sql("SELECT status, attempts FROM notifications WHERE kind = 'callback'");
    let (state, attempts) = row.split_once('|').unwrap();
    assert_eq!(state, "delivered", "{row}");
    assert!(attempts.parse::<u32>().unwrap() >= 3, "{row}");

    // Refused (a foreign certificate): the refusal and its reason are called back too.
    let foreign = foreign_certificate(&dir);
    let c = apps
        .challenge(RP, json!({"callback": format!("{base}login")}))
        .await;
    let id2 = c["id"].as_str().unwrap().to_owned();
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
            &id2,
            json!({"certificate": foreign, "signature": sig}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("certificate_foreign")),
        "{v}"
    );
    let got = receiver
        .wait("the refusal called back", |got| {
            got.iter().any(|r| r.body.contains(&id2))
        })
        .await;
    let r = got.iter().find(|r| r.body.contains(&id2)).unwrap();
    assert!(python_signature_ok(&dir, SECRET, r));
    let refused: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (refused["status"].as_str(), refused["reason"].as_str()),
        (Some("refused"), Some("certificate_foreign")),
        "{refused}"
    );
    assert!(refused.get("serial").is_none(), "{refused}");

    // The secret is in no log line.
    assert!(!server.log_text().contains(SECRET));
}
