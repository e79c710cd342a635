//! Applications end to end with real parts: the `ca-appliance` binary from `init --demo`, the
//! real verifier plugins in worker processes against `vendor-sim`, mTLS clients of two example
//! channels, certificates checked with `openssl verify` and Python `cryptography`, the SQLite
//! file read back. These tests use channel policies without the appliance's own SMS codes and
//! captchas (`applications_codes.rs` walks the example channels as shipped).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod application_support;
mod vendor_setup;

use std::process::Command;
use std::time::Duration;

use application_support::*;
use serde_json::{json, Value};
use system_tests::*;
use vendor_setup::Setup;

const WANG: (&str, &str, &str) = ("王五", "110105199002020026", "13800138002");

/// The SHECA steps without the appliance's codes: phone real-name (bank card on
/// `phone_not_real_name`), then face.
const SHECA_NO_CODES: &str = r#"
name = "sheca-personal"
clients = ["channel-sheca-personal"]
profiles = ["personal", "short"]

[[policy]]
kinds = ["new", "renewal", "change", "reissue", "revocation"]
captcha = false

[[policy.step]]
verify = ["phone-real-name"]
fallback = [{ on = ["phone_not_real_name"], verify = ["bank-card"] }]

[[policy.step]]
verify = ["face"]
"#;

/// BJCA's choice of method, without the SMS signature.
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

/// A 30-day profile, so its certificates are inside the 90-day renewal window at once.
const SHORT_PROFILE: &str = r#"
name = "short"
issuer = "personal"
key_types = ["ec-p256"]
validity_days = 30
key_usage = ["digitalSignature"]
extended_key_usage = ["clientAuth"]
policy_oids = ["1.3.6.1.4.1.61992.1.1"]

[[subject]]
attr = "C"
value = "CN"

[[subject]]
attr = "CN"
value = "{name}"

[urls]
ocsp = "{public_url}/ocsp"
"#;

impl Apps {
    /// A demo with the test channel files; `extra` is appended to `appliance.toml`.
    fn new(extra: &str) -> Apps {
        let extra = extra.to_owned();
        let s = Setup::new(None, move |config, _| format!("{config}\n{extra}\n"));
        let dir = s.demo.path();
        std::fs::write(dir.join("channels/sheca-personal.toml"), SHECA_NO_CODES).unwrap();
        std::fs::write(dir.join("channels/bjca-personal.toml"), BJCA_NO_CODES).unwrap();
        std::fs::write(dir.join("profiles/short.toml"), SHORT_PROFILE).unwrap();
        Apps::from_setup(s)
    }

    /// The SMS code vendor-sim delivered last to `phone`.
    async fn code_for(&self, phone: &str) -> String {
        self.s.sim.latest_code(phone).await
    }

    /// Answers the phone real-name step's code, completes face, waits for `issued`.
    async fn finish_phone_and_face(&self, who: &str, app: &Value, phone: &str) -> Value {
        let id = app["id"].as_str().unwrap();
        assert_eq!(app["status"], "awaiting_applicant", "{app}");
        assert_eq!(app["step"]["method"], "phone-real-name", "{app}");
        assert_eq!(app["step"]["challenge"]["kind"], "sms_code", "{app}");
        let code = self.code_for(phone).await;
        let (status, v) = self.input_code(who, id, &code).await;
        assert_eq!(status, 200, "{v}");
        let v = self
            .wait(who, id, "showed the face step", |v| {
                v["step"]["method"] == "face" && v["step"]["challenge"]["url"].is_string()
            })
            .await;
        self.complete_face(&v).await;
        self.wait(who, id, "issued", |v| v["status"] == "issued")
            .await
    }

    /// A new application for `person` through SHECA, walked to its certificate.
    async fn issue_new(&self, person: (&str, &str, &str), profile: &str, stem: &str) -> Value {
        let (status, app) = self
            .create(SHECA, new_body(person, profile, Some(&self.csr(stem))))
            .await;
        assert_eq!(status, 201, "{app}");
        self.finish_phone_and_face(SHECA, &app, person.2).await
    }

    /// A certificate's status and revocation reason, as its channel reads it.
    async fn cert_status(&self, serial: String) -> (String, Value) {
        let (_, c) = self
            .call(
                SHECA,
                "GET",
                &format!("/api/v1/certificates/{serial}"),
                None,
            )
            .await;
        (
            c["status"].as_str().unwrap().to_owned(),
            c["revocation_reason"].clone(),
        )
    }
}

fn subject_of(person: (&str, &str, &str)) -> Value {
    json!({"type": "person", "name": person.0, "id_type": "resident_id", "id_number": person.1, "phone": person.2})
}

fn new_body(person: (&str, &str, &str), profile: &str, csr: Option<&str>) -> Value {
    let mut b = json!({"kind": "new", "profile": profile, "subject": subject_of(person)});
    if let Some(c) = csr {
        b["csr"] = json!(c);
    }
    b
}

#[tokio::test]
async fn a_verified_person_gets_a_certificate_naming_only_what_was_verified_and_nothing_leaks() {
    let apps = Apps::new("");
    let server = apps.s.demo.serve();

    // The channel types an e-mail and a different-looking name spacing: the e-mail is not
    // verified by any plugin, so it never reaches the certificate.
    let mut body = new_body(ZHANG, "personal", Some(&apps.csr("zhang")));
    body["subject"]["email"] = json!("zhang.san@example.cn");
    body["reference"] = json!("order-1");
    let (status, app) = apps.create(SHECA, body).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("app_"), "{app}");
    assert_eq!(app["kind"], "new");
    assert_eq!(app["subject_holds_certificate"], false, "{app}");
    assert_eq!(
        app["subject"]["id_number"], "110***********002X",
        "masked: {app}"
    );
    assert_eq!(app["subject"]["phone"], "138****8000", "masked: {app}");

    let done = apps.finish_phone_and_face(SHECA, &app, ZHANG.2).await;
    assert_eq!(done["assurance_level"], "L3", "{done}");
    assert!(done["step"].is_null(), "{done}");
    let methods: Vec<&str> = done["verified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["method"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains(&"phone-real-name") && methods.contains(&"face"),
        "{done}"
    );
    let pem = done["certificate"]["pem"].as_str().unwrap();
    let (subject, policies, san) = check_certificate(apps.dir(), pem, "zhang-cert");
    assert_eq!(subject, "CN=张三,C=CN");
    assert!(policies.contains(&L3_OID.to_owned()), "{policies:?}");
    assert!(!san, "the unverified e-mail is not in the certificate");

    // The certificate is the channel's; a second application finds that the person holds one.
    let serial = done["certificate"]["serial"].as_str().unwrap();
    let (status, c) = apps
        .call(
            SHECA,
            "GET",
            &format!("/api/v1/certificates/{serial}"),
            None,
        )
        .await;
    assert_eq!((status, c["status"].as_str()), (200, Some("valid")), "{c}");
    let (status, again) = apps.create(SHECA, new_body(ZHANG, "personal", None)).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["subject_holds_certificate"], true, "{again}");
    let again_id = again["id"].as_str().unwrap();
    let (status, v) = apps.act(SHECA, again_id, "cancel", json!({})).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("cancelled")),
        "{v}"
    );

    // Every transition left an audit row; the issuance names the application.
    let audit = apps.sql(&format!(
        "select action from audit_log where target = '{id}' order by seq"
    ));
    assert!(audit.starts_with("application.create"), "{audit}");
    assert!(
        audit.contains("application.approved") && audit.ends_with("application.issued"),
        "{audit}"
    );
    let issue = apps.sql(&format!(
        "select actor, detail from audit_log where action = 'certificate.issue' and target = '{serial}'"
    ));
    assert!(
        issue.contains("channel:sheca-personal") && issue.contains(&id),
        "{issue}"
    );

    // No plain ID, phone or name of the person in the database, its WAL or the log.
    let log = server.log.clone();
    drop(server);
    let needles = [ZHANG.1, ZHANG.2, ZHANG.0, "zhang.san@example.cn", "order-1"];
    let mut found = Vec::new();
    for f in [
        "data/appliance.db",
        "data/appliance.db-wal",
        "data/appliance.db-shm",
    ] {
        let bytes = std::fs::read(apps.dir().join(f)).unwrap_or_default();
        for n in &needles {
            if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                found.push(format!("{n} in {f}"));
            }
        }
    }
    let log = std::fs::read_to_string(log).unwrap();
    for n in &needles[..2] {
        if log.contains(n) {
            found.push(format!("{n} in the log"));
        }
    }
    // The certificate itself names the person (CN): it is stored, DER, in the certificates
    // table, so the name may appear there and only there.
    found.retain(|f| !f.starts_with(ZHANG.0));
    assert!(found.is_empty(), "personal data in clear: {found:?}");
}

#[tokio::test]
async fn one_open_application_per_subject_and_channel_and_channels_are_separated() {
    let apps = Apps::new("");
    let _server = apps.s.demo.serve();
    let (status, first) = apps.create(SHECA, new_body(ZHANG, "personal", None)).await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();

    // A second open application for the same person in the same channel: refused with its id.
    let count = || apps.sql("select count(*) from applications");
    let before = count();
    let (status, v) = apps.create(SHECA, new_body(ZHANG, "personal", None)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("application_open")),
        "{v}"
    );
    assert_eq!(v["application_id"], id.as_str(), "{v}");
    assert_eq!(count(), before);
    // The same person may apply in another channel.
    let (status, other) = apps.create(BJCA, new_body(ZHANG, "personal", None)).await;
    assert_eq!(status, 201, "{other}");
    assert_eq!(other["status"], "awaiting_choice", "{other}");
    assert_eq!(
        other["step"]["options"],
        json!(["phone-real-name", "face"]),
        "{other}"
    );

    // Another channel neither reads nor acts on it: 404 as if it did not exist; nothing changes.
    let revision = || {
        apps.sql(&format!(
            "select revision, status from applications where id = '{id}'"
        ))
    };
    let r0 = revision();
    assert_eq!(apps.get(BJCA, &id).await.0, 404);
    for (action, body) in [
        ("input", json!({"kind": "sms_code", "value": "123456"})),
        ("choose", json!({"method": "face"})),
        ("confirm", json!({"phone": ZHANG.2})),
        ("csr", json!({"csr": apps.csr("x")})),
        ("cancel", json!({})),
    ] {
        let (status, v) = apps.act(BJCA, &id, action, body).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (404, Some("not_found")),
            "{action}: {v}"
        );
    }
    assert_eq!(revision(), r0);
    // An operator may read any application; a verification it started stays the channel's.
    let (status, v) = apps.get("operator", &id).await;
    assert_eq!((status, v["id"].as_str()), (200, Some(id.as_str())), "{v}");

    // Cancel, then input to the finished application: its own code, nothing changes.
    let (status, v) = apps.act(SHECA, &id, "cancel", json!({})).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("cancelled")),
        "{v}"
    );
    let r1 = revision();
    let (status, v) = apps.input_code(SHECA, &id, "123456").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("application_finished")),
        "{v}"
    );
    assert_eq!(revision(), r1);
    // Now a new application for the person is accepted.
    let (status, v) = apps.create(SHECA, new_body(ZHANG, "personal", None)).await;
    assert_eq!(status, 201, "{v}");
}

#[tokio::test]
async fn bad_input_gets_its_own_code_and_changes_nothing() {
    let apps = Apps::new("");
    let _server = apps.s.demo.serve();
    let count = || apps.sql("select count(*) from applications");
    let base = || new_body(WANG, "personal", None);
    let rsa1024 = openssl_csr(apps.dir(), "weak", "rsa:1024");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = base();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "unknown kind",
            SHECA,
            with(&|b| b["kind"] = json!("upgrade")),
            400,
            "unknown_kind",
        ),
        (
            "unknown profile",
            SHECA,
            with(&|b| b["profile"] = json!("gold")),
            400,
            "unknown_profile",
        ),
        (
            "profile not allowed",
            SHECA,
            with(&|b| b["profile"] = json!("organisation")),
            403,
            "profile_not_allowed",
        ),
        (
            "kind not offered",
            BJCA,
            with(&|b| b["kind"] = json!("phone_change")),
            403,
            "kind_not_offered",
        ),
        (
            "check digit",
            SHECA,
            with(&|b| b["subject"]["id_number"] = json!("110105199002020027")),
            400,
            "invalid_id_number",
        ),
        (
            "id type",
            SHECA,
            with(&|b| b["subject"]["id_type"] = json!("hk_permit")),
            400,
            "unsupported_id_type",
        ),
        (
            "passport where only vendors verify",
            SHECA,
            with(&|b| {
                b["subject"]["id_type"] = json!("passport");
                b["subject"]["id_number"] = json!("E1234567");
                b["subject"]["id_country"] = json!("CHN");
            }),
            422,
            "id_type_not_verifiable",
        ),
        (
            "bad phone",
            SHECA,
            with(&|b| b["subject"]["phone"] = json!("1380013")),
            400,
            "invalid_phone",
        ),
        (
            "missing phone",
            SHECA,
            with(&|b| {
                b["subject"].as_object_mut().unwrap().remove("phone");
            }),
            400,
            "missing_field",
        ),
        (
            "unexpected field",
            SHECA,
            with(&|b| b["subject"]["bank_card"] = json!("6222020000000000018")),
            400,
            "field_not_expected",
        ),
        (
            "unknown field",
            SHECA,
            with(&|b| b["subject"]["nickname"] = json!("x")),
            400,
            "malformed_json",
        ),
        (
            "certificate on new",
            SHECA,
            with(&|b| b["certificate"] = json!("0abc")),
            400,
            "field_not_expected",
        ),
        (
            "renewal without certificate",
            SHECA,
            with(&|b| b["kind"] = json!("renewal")),
            400,
            "certificate_required",
        ),
        (
            "renewal of an unknown certificate",
            SHECA,
            with(&|b| {
                b["kind"] = json!("renewal");
                b["certificate"] = json!("0abc");
            }),
            404,
            "certificate_not_found",
        ),
        (
            "weak key",
            SHECA,
            with(&|b| b["csr"] = json!(rsa1024.clone())),
            400,
            "key_too_small",
        ),
        (
            "garbage CSR",
            SHECA,
            with(&|b| {
                b["csr"] = json!("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
            }),
            400,
            "malformed_csr",
        ),
        ("operator creates", "operator", base(), 403, "channel_only"),
    ];
    for (what, who, body, want_status, want_code) in cases {
        let before = count();
        let (status, v) = apps.create(who, body).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (want_status, Some(want_code)),
            "{what}: {v}"
        );
        assert!(
            !v.to_string().contains(WANG.1),
            "{what}: the ID number is not echoed: {v}"
        );
        assert_eq!(count(), before, "{what}: nothing stored");
    }

    // On an open application: a method not offered, a field the method does not expect, an
    // input kind the step does not take, a phone to confirm where none is asked.
    let (status, app) = apps.create(BJCA, new_body(WANG, "personal", None)).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap();
    let revision = || {
        apps.sql(&format!(
            "select revision from applications where id = '{id}'"
        ))
    };
    let r0 = revision();
    for (action, body, want_status, want_code) in [
        (
            "choose",
            json!({"method": "bank-card"}),
            400,
            "method_not_allowed",
        ),
        (
            "choose",
            json!({"method": "no-such"}),
            400,
            "method_not_allowed",
        ),
        (
            "choose",
            json!({"method": "face", "subject": {"bank_card": "6222020000000000018"}}),
            400,
            "field_not_expected",
        ),
        (
            "choose",
            json!({"method": "face", "subject": {"name": "Somebody Else"}}),
            400,
            "field_not_expected",
        ),
        (
            "input",
            json!({"kind": "sms_code", "value": "123456"}),
            409,
            "input_not_expected",
        ),
        (
            "input",
            json!({"kind": "telepathy", "value": "1"}),
            409,
            "input_not_expected",
        ),
        (
            "confirm",
            json!({"phone": WANG.2}),
            409,
            "input_not_expected",
        ),
        ("csr", json!({"csr": rsa1024.clone()}), 400, "key_too_small"),
    ] {
        let (status, v) = apps.act(BJCA, id, action, body).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (want_status, Some(want_code)),
            "{action}: {v}"
        );
        assert_eq!(revision(), r0, "{action}: nothing changed");
    }
    let (status, v) = apps.get(BJCA, "app_00000000000000000000000000000000").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
}

#[tokio::test]
async fn wrong_codes_reject_the_application_and_a_failed_face_ends_it_with_liveness_failed() {
    let apps = Apps::new("");
    let _server = apps.s.demo.serve();
    let (status, app) = apps.create(SHECA, new_body(ZHANG, "personal", None)).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap();
    let real = apps.code_for(ZHANG.2).await;
    let wrong = if real == "000000" { "111111" } else { "000000" };
    let mut last = Value::Null;
    for left in (0..5).rev() {
        let (status, v) = apps.input_code(SHECA, id, wrong).await;
        if left > 0 {
            assert_eq!(
                (status, v["error"].as_str()),
                (422, Some("otp_wrong")),
                "{v}"
            );
            assert_eq!(v["attempts_left"], left, "{v}");
            assert_eq!(v["application"]["status"], "awaiting_applicant", "{v}");
        }
        last = v;
        let _ = status;
    }
    assert_eq!(last["error"], "verification_failed", "{last}");
    assert_eq!(last["failure_code"], "otp_attempts_exceeded", "{last}");
    assert_eq!(last["application"]["status"], "rejected", "{last}");
    // The right code now changes nothing.
    let (status, v) = apps.input_code(SHECA, id, &real).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("application_finished")),
        "{v}"
    );

    // 王五: the phone passes, the face fails liveness: rejected with the plugin's code.
    let (status, app) = apps.create(SHECA, new_body(WANG, "personal", None)).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap();
    let code = apps.code_for(WANG.2).await;
    let (status, v) = apps.input_code(SHECA, id, &code).await;
    assert_eq!(status, 200, "{v}");
    let v = apps
        .wait(SHECA, id, "showed the face step", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;
    apps.complete_face(&v).await;
    let v = apps
        .wait(SHECA, id, "was rejected", |v| v["status"] == "rejected")
        .await;
    assert_eq!(v["failure"]["code"], "liveness_failed", "{v}");
    assert!(v.get("certificate").is_none(), "{v}");
}

#[tokio::test]
async fn li_si_whose_phone_is_not_real_name_is_offered_the_bank_card() {
    let apps = Apps::new("");
    let _server = apps.s.demo.serve();
    let (status, app) = apps.create(SHECA, new_body(LI, "personal", None)).await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["status"], "awaiting_applicant", "{app}");
    assert_eq!(app["step"]["method"], "bank-card", "{app}");
    assert_eq!(app["step"]["needs"], json!(["bank_card"]), "{app}");
    assert_eq!(app["failure"]["code"], "phone_not_real_name", "{app}");
    let id = app["id"].as_str().unwrap();
    // The bank card's choice takes the card and the bank-reserved phone, never another name.
    let (status, v) = apps
        .act(
            SHECA,
            id,
            "choose",
            json!({"method": "bank-card", "subject": {"name": "王五"}}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("field_not_expected")),
        "{v}"
    );
    let (status, v) = apps
        .act(SHECA, id, "choose", json!({"method": "face"}))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("method_not_allowed")),
        "{v}"
    );
}

#[tokio::test]
async fn unfinished_applications_expire() {
    let apps = Apps::new("[applications]\nexpire_after_secs = 3\n");
    let _server = apps.s.demo.serve();
    let (status, app) = apps.create(SHECA, new_body(ZHANG, "personal", None)).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap();
    let v = apps
        .wait(SHECA, id, "expired", |v| v["status"] == "expired")
        .await;
    assert_eq!(v["failure"]["code"], "expired", "{v}");
    assert!(v["step"].is_null(), "{v}");
    // Its verification was cancelled with it; the person may apply again.
    let (status, v) = apps.create(SHECA, new_body(ZHANG, "personal", None)).await;
    assert_eq!(status, 201, "{v}");
    let audit = apps.sql(&format!(
        "select actor from audit_log where target = '{id}' and action = 'application.expired'"
    ));
    assert_eq!(audit, "system:applications");
}

#[tokio::test]
async fn renewal_change_reissue_and_revocation_act_on_the_subjects_certificate() {
    let apps = Apps::new("");
    let _server = apps.s.demo.serve();

    // A personal certificate (365 days) is outside the 90-day renewal window.
    let long = apps.issue_new(ZHANG, "personal", "long").await;
    let long_serial = long["certificate"]["serial"].as_str().unwrap().to_owned();
    let mut renewal = new_body(ZHANG, "personal", Some(&apps.csr("r0")));
    renewal["kind"] = json!("renewal");
    renewal["certificate"] = json!(long_serial);
    let (status, v) = apps.create(SHECA, renewal.clone()).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("renewal_not_allowed")),
        "{v}"
    );
    assert!(v["renewal_from"].is_i64(), "{v}");
    // Another person cannot act on it.
    let mut other = renewal.clone();
    other["subject"] = subject_of(WANG);
    let (status, v) = apps.create(SHECA, other).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("certificate_not_found")),
        "{v}"
    );

    // A 30-day certificate is inside it: renewed after verifying again; the old one stays valid.
    let short = apps.issue_new(ZHANG, "short", "short").await;
    let short_serial = short["certificate"]["serial"].as_str().unwrap().to_owned();
    let mut renewal = new_body(ZHANG, "short", Some(&apps.csr("r1")));
    renewal["kind"] = json!("renewal");
    renewal["certificate"] = json!(short_serial);
    let (status, app) = apps.create(SHECA, renewal).await;
    assert_eq!(status, 201, "{app}");
    let renewed = apps.finish_phone_and_face(SHECA, &app, ZHANG.2).await;
    let renewed_serial = renewed["certificate"]["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(renewed_serial, short_serial);
    assert_eq!(apps.cert_status(short_serial.clone()).await.0, "valid");

    // Change: new certificate, the old one revoked as superseded (4).
    let mut change = new_body(ZHANG, "short", Some(&apps.csr("c1")));
    change["kind"] = json!("change");
    change["certificate"] = json!(renewed_serial);
    let (status, app) = apps.create(SHECA, change).await;
    assert_eq!(status, 201, "{app}");
    let changed = apps.finish_phone_and_face(SHECA, &app, ZHANG.2).await;
    let changed_serial = changed["certificate"]["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        apps.cert_status(renewed_serial.clone()).await,
        ("revoked".to_owned(), json!(4))
    );

    // Reissue (lost key): new key and certificate, the old one revoked keyCompromise (1).
    let mut reissue = new_body(ZHANG, "short", Some(&apps.csr("i1")));
    reissue["kind"] = json!("reissue");
    reissue["certificate"] = json!(changed_serial);
    let (status, app) = apps.create(SHECA, reissue).await;
    assert_eq!(status, 201, "{app}");
    let reissued = apps.finish_phone_and_face(SHECA, &app, ZHANG.2).await;
    let reissued_serial = reissued["certificate"]["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        apps.cert_status(changed_serial.clone()).await,
        ("revoked".to_owned(), json!(1))
    );

    // Subscriber revocation: identity verified again, reason recorded, no new certificate.
    let mut revocation = new_body(ZHANG, "short", None);
    revocation["kind"] = json!("revocation");
    revocation["certificate"] = json!(reissued_serial);
    revocation["reason"] = json!("cessationOfOperation");
    let (status, app) = apps.create(SHECA, revocation).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap();
    let code = apps.code_for(ZHANG.2).await;
    apps.input_code(SHECA, id, &code).await;
    let v = apps
        .wait(SHECA, id, "showed the face step", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;
    apps.complete_face(&v).await;
    let v = apps
        .wait(SHECA, id, "completed", |v| v["status"] == "completed")
        .await;
    assert!(v.get("certificate").is_none(), "{v}");
    assert_eq!(
        apps.cert_status(reissued_serial.clone()).await,
        ("revoked".to_owned(), json!(5))
    );
    // A revoked certificate cannot be renewed.
    let mut late = new_body(ZHANG, "short", Some(&apps.csr("late")));
    late["kind"] = json!("renewal");
    late["certificate"] = json!(reissued_serial);
    let (status, v) = apps.create(SHECA, late).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("certificate_not_valid")),
        "{v}"
    );
}

#[tokio::test]
async fn an_application_survives_kill_9_during_the_face_step_and_finishes_once() {
    let apps = Apps::new("");
    let mut server = apps.s.demo.serve();
    let (status, app) = apps
        .create(SHECA, new_body(ZHANG, "personal", Some(&apps.csr("k9"))))
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let code = apps.code_for(ZHANG.2).await;
    let (status, v) = apps.input_code(SHECA, &id, &code).await;
    assert_eq!(status, 200, "{v}");
    let face = apps
        .wait(SHECA, &id, "showed the face step", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;

    server.stop_with("KILL", Duration::from_secs(10));
    drop(server);
    let _server = apps.s.demo.serve();

    // The same application, at the same step, with the same face session.
    let (status, v) = apps.get(SHECA, &id).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["step"]["method"], "face", "{v}");
    assert_eq!(
        v["step"]["verification"], face["step"]["verification"],
        "{v}"
    );
    apps.complete_face(&v).await;
    let v = apps
        .wait(SHECA, &id, "issued", |v| v["status"] == "issued")
        .await;
    assert!(v["certificate"]["pem"].is_string(), "{v}");
    // Nothing duplicated: one verification per method, one certificate.
    assert_eq!(apps.sql("select count(*) from verifications"), "2");
    assert_eq!(
        apps.sql(&format!(
            "select count(*) from audit_log where action = 'certificate.issue' and detail like '%{id}%'"
        )),
        "1"
    );
}

#[tokio::test]
async fn a_crash_between_the_certificate_and_the_application_commit_never_issues_twice() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let apps = Apps::new("");
    // The appliance aborts right after the certificate is committed, before the application
    // is marked issued.
    let mut child = Command::new(appliance_bin())
        .args(["serve", "--config", apps.s.demo.config().to_str().unwrap()])
        .env("CA_APPLIANCE_FAULT", "after-application-issuance")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(apps.dir().join("serve-fault.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("\"api\""), "serve did not start: {line}");
    let (status, app) = apps
        .create(SHECA, new_body(ZHANG, "personal", Some(&apps.csr("crash"))))
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let code = apps.code_for(ZHANG.2).await;
    apps.input_code(SHECA, &id, &code).await;
    let face = apps
        .wait(SHECA, &id, "showed the face step", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;
    apps.complete_face(&face).await;
    // The background task approves and issues; the process aborts at the fault point.
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(60)),
        None,
        "aborted"
    );
    assert_eq!(
        apps.sql("select count(*) from certificates where channel = 'sheca-personal'"),
        "1"
    );
    assert_eq!(
        apps.sql(&format!(
            "select status from applications where id = '{id}'"
        )),
        "approved"
    );

    let server = apps.s.demo.serve();
    let v = apps
        .wait(SHECA, &id, "issued", |v| v["status"] == "issued")
        .await;
    assert_eq!(
        apps.sql("select count(*) from certificates where channel = 'sheca-personal'"),
        "1"
    );
    let serial = apps.sql("select serial from certificates where channel = 'sheca-personal'");
    assert_eq!(v["certificate"]["serial"], serial.as_str(), "{v}");
    assert!(server.log_text().contains("not issuing again"));
}

/// A channel revokes its subscribers' certificates with subscriber reasons only, and may not
/// lift a hold an operator placed (issue 11), on a certificate its application produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_uses_subscriber_reasons_and_cannot_lift_an_operator_hold() {
    let apps = Apps::new("");
    let _server = apps.s.demo.serve();
    let app = apps.issue_new(ZHANG, "personal", "hold").await;
    let serial = app["certificate"]["serial"].as_str().unwrap().to_owned();
    let revoke = format!("/api/v1/certificates/{serial}/revoke");
    let unhold = format!("/api/v1/certificates/{serial}/unhold");
    for reason in ["cACompromise", "privilegeWithdrawn", "aACompromise"] {
        let (status, body) = apps
            .call(SHECA, "POST", &revoke, Some(json!({ "reason": reason })))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("reason_not_allowed")),
            "{reason}"
        );
    }
    let hold = json!({ "reason": "certificateHold" });
    let (status, body) = apps
        .call("operator", "POST", &revoke, Some(hold.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = apps.call(SHECA, "POST", &unhold, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("hold_by_operator")),
        "{body}"
    );
    let (status, body) = apps.call("operator", "POST", &unhold, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("valid")),
        "{body}"
    );
    // The channel's own hold it may lift; then a subscriber reason revokes.
    let (status, body) = apps.call(SHECA, "POST", &revoke, Some(hold)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = apps.call(SHECA, "POST", &unhold, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("valid")),
        "{body}"
    );
    let (status, body) = apps
        .call(
            SHECA,
            "POST",
            &revoke,
            Some(json!({ "reason": "keyCompromise" })),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("revoked")),
        "{body}"
    );
}
