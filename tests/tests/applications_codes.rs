//! Applications with the appliance's own one-time codes, end to end with real parts: the example
//! channels `init --demo` writes (`bjca-personal` as shipped; `sheca-personal` with the channel
//! taking the captcha duty, `captcha = false`), the real verifier plugins in workers, the
//! `channel-notify` plugin sending the appliance's codes through vendor-sim's SMS gateway, codes
//! read back from vendor-sim, certificates checked with `openssl verify` and Python.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod application_support;
mod vendor_setup;

use std::path::Path;
use std::time::Duration;

use application_support::captcha_reader;
use application_support::*;
use serde_json::{json, Value};
use vendor_setup::Setup;

const ZHANG_CARD: &str = "6222020000000000018";
const LI_CARD: &str = "6222020000000000042";
const LI_BANK_PHONE: &str = "13800138011";

const L2_OID: &str = "1.3.6.1.4.1.61992.1.9.2";

impl Apps {
    /// The demo as written; `sheca-personal` with `captcha = false` (the channel's own captcha).
    fn new() -> Apps {
        let s = Setup::new(None, |config, _| config);
        let file = s.demo.path().join("channels/sheca-personal.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("notifier = \"channel-notify\""), "{text}");
        assert!(text.contains("captcha = true"), "{text}");
        std::fs::write(&file, text.replace("captcha = true", "captcha = false")).unwrap();
        let bjca =
            std::fs::read_to_string(s.demo.path().join("channels/bjca-personal.toml")).unwrap();
        assert!(
            bjca.contains("sign = \"sms\"") && bjca.contains("notifier"),
            "{bjca}"
        );
        Apps::from_setup(s)
    }

    async fn sms_count(&self, phone: &str) -> usize {
        self.s.sim.sms_to(phone).await.len()
    }

    /// The code of the SMS number `n` (1-based) to `phone`, waiting for it.
    async fn nth_code(&self, phone: &str, n: usize) -> String {
        let msgs = self.s.sim.wait_sms(phone, n, Duration::from_secs(30)).await;
        msgs[n - 1]["code"].as_str().unwrap().to_owned()
    }

    /// From a code the verification sent (the plugin's SMS number `n`), through face, to the
    /// phone confirmation step.
    async fn code_then_face(&self, id: &str, phone: &str, n: usize) -> Value {
        let code = self.nth_code(phone, n).await;
        let (status, v) = self.input_code(SHECA, id, &code).await;
        assert_eq!(status, 200, "{v}");
        let v = self
            .wait(SHECA, id, "showed face", |v| {
                v["step"]["challenge"]["url"].is_string()
            })
            .await;
        self.complete_face(&v).await;
        self.wait(SHECA, id, "asked to confirm the phone", |v| {
            v["step"]["name"] == "confirm_phone"
        })
        .await
    }

    /// Confirms `phone` and answers the appliance's code; returns the finished application.
    async fn confirm_and_finish(&self, id: &str, phone: &str) -> Value {
        let n = self.sms_count(phone).await;
        let (status, v) = self
            .act(SHECA, id, "confirm", json!({"phone": phone}))
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["step"]["challenge"]["kind"], "sms_code", "{v}");
        let code = self.nth_code(phone, n + 1).await;
        let (status, v) = self.input_code(SHECA, id, &code).await;
        assert_eq!(status, 200, "{v}");
        self.wait(SHECA, id, "finished", |v| {
            v["status"] == "issued" || v["status"] == "completed"
        })
        .await
    }
}

fn body(kind: &str, person: (&str, &str, &str), csr: Option<&str>) -> Value {
    let mut b = json!({"kind": kind, "profile": "personal", "subject": {
        "type": "person", "name": person.0, "id_type": "resident_id",
        "id_number": person.1, "phone": person.2}});
    if let Some(c) = csr {
        b["csr"] = json!(c);
    }
    b
}

/// `openssl verify` against the demo chain, then the subject and policy OIDs (space-joined).
fn check_certificate(dir: &Path, pem: &str, stem: &str) -> (String, String) {
    let (subject, policies, _) = application_support::check_certificate(dir, pem, stem);
    (subject, policies.join(" "))
}

#[tokio::test]
async fn bjca_as_shipped_one_method_then_an_sms_signed_application_then_reuse() {
    let apps = Apps::new();
    let _server = apps.s.demo.serve();
    let (status, app) = apps
        .create(BJCA, body("new", ZHANG, Some(&apps.csr("bjca"))))
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["status"], "awaiting_choice", "{app}");
    assert_eq!(
        app["step"]["options"],
        json!(["phone-real-name", "bank-card", "face"]),
        "{app}"
    );
    assert_eq!(
        app["step"]["needs"]["bank-card"],
        json!(["bank_card"]),
        "{app}"
    );
    let id = app["id"].as_str().unwrap().to_owned();

    // The bank card: the bank's code goes to the reserved phone.
    let n = apps.sms_count(ZHANG.2).await;
    let (status, v) = apps
        .act(
            BJCA,
            &id,
            "choose",
            json!({"method": "bank-card", "subject": {"bank_card": ZHANG_CARD}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["step"]["method"], "bank-card", "{v}");
    let bank_code = apps.nth_code(ZHANG.2, n + 1).await;
    let (status, v) = apps.input_code(BJCA, &id, &bank_code).await;
    assert_eq!(status, 200, "{v}");
    // The application signature: the appliance's own code, through the channel's notifier.
    assert_eq!(v["step"]["name"], "sign", "{v}");
    assert_eq!(v["step"]["challenge"]["kind"], "sms_code", "{v}");
    assert_eq!(v["step"]["challenge"]["phone"], "138****8000", "{v}");
    let sign_code = apps.nth_code(ZHANG.2, n + 2).await;
    let wrong = if sign_code == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (status, v) = apps.input_code(BJCA, &id, wrong).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("otp_wrong")),
        "{v}"
    );
    assert_eq!(v["attempts_left"], 4, "{v}");
    // Asking again at once is refused (cooldown), without changing the open code.
    let (status, v) = apps
        .act(BJCA, &id, "confirm", json!({"phone": ZHANG.2}))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (429, Some("resend_too_soon")),
        "{v}"
    );
    let (status, v) = apps.input_code(BJCA, &id, &sign_code).await;
    assert_eq!(status, 200, "{v}");
    let v = apps
        .wait(BJCA, &id, "issued", |v| v["status"] == "issued")
        .await;
    assert_eq!(v["assurance_level"], "L2", "{v}");
    let (subject, policies) = check_certificate(
        apps.dir(),
        v["certificate"]["pem"].as_str().unwrap(),
        "bjca-cert",
    );
    assert_eq!(subject, "CN=张三,C=CN");
    assert!(policies.contains(L2_OID), "{policies}");

    // A second application within the reuse window skips the verification and goes to the
    // signature at once.
    let n = apps.sms_count(ZHANG.2).await;
    let (status, again) = apps.create(BJCA, body("new", ZHANG, None)).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["step"]["name"], "sign", "{again}");
    assert_eq!(again["verified"][0]["method"], "bank-card", "{again}");
    apps.nth_code(ZHANG.2, n + 1).await;
    assert_eq!(
        apps.sms_count(ZHANG.2).await,
        n + 1,
        "only the signature code was sent"
    );
}

#[tokio::test]
async fn sheca_li_si_falls_back_to_the_bank_card_and_confirms_the_bank_reserved_phone() {
    let apps = Apps::new();
    let _server = apps.s.demo.serve();
    let (status, app) = apps
        .create(SHECA, body("new", LI, Some(&apps.csr("li"))))
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["failure"]["code"], "phone_not_real_name", "{app}");
    assert_eq!(app["step"]["method"], "bank-card", "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let n = apps.sms_count(LI_BANK_PHONE).await;
    let (status, v) = apps
        .act(
            SHECA,
            &id,
            "choose",
            json!({"method": "bank-card",
            "subject": {"bank_card": LI_CARD, "phone": LI_BANK_PHONE}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let v = apps.code_then_face(&id, LI_BANK_PHONE, n + 1).await;
    // The phone to confirm is the bank-reserved one; the declared phone is refused.
    assert_eq!(v["step"]["phone"], "138****8011", "{v}");
    let (status, v) = apps
        .act(SHECA, &id, "confirm", json!({"phone": LI.2}))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("phone_not_verified")),
        "{v}"
    );
    let done = apps.confirm_and_finish(&id, LI_BANK_PHONE).await;
    assert_eq!(done["status"], "issued", "{done}");
    assert_eq!(done["assurance_level"], "L3", "{done}");
    let (subject, policies) = check_certificate(
        apps.dir(),
        done["certificate"]["pem"].as_str().unwrap(),
        "li-cert",
    );
    assert_eq!(subject, "CN=李四,C=CN");
    assert!(policies.contains(L3_OID), "{policies}");
    assert_eq!(apps.sql("select count(*) from subjects"), "1");

    // Phone change, not real-name: the bank card, then face; completed, no certificate.
    let serial = done["certificate"]["serial"].as_str().unwrap();
    let mut change = body("phone_change", LI, None);
    change["certificate"] = json!(serial);
    let (status, app) = apps.create(SHECA, change).await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["step"]["method"], "bank-card", "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let n = apps.sms_count(LI_BANK_PHONE).await;
    let (status, v) = apps
        .act(
            SHECA,
            &id,
            "choose",
            json!({"method": "bank-card",
            "subject": {"bank_card": LI_CARD, "phone": LI_BANK_PHONE}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let code = apps.nth_code(LI_BANK_PHONE, n + 1).await;
    apps.input_code(SHECA, &id, &code).await;
    let v = apps
        .wait(SHECA, &id, "showed face", |v| {
            v["step"]["method"] == "face" && v["step"]["challenge"]["url"].is_string()
        })
        .await;
    apps.complete_face(&v).await;
    let v = apps
        .wait(SHECA, &id, "completed", |v| v["status"] == "completed")
        .await;
    assert!(v.get("certificate").is_none(), "{v}");
}

#[tokio::test]
async fn sheca_zhang_san_new_then_a_real_name_phone_change_and_a_kill_9_after_a_code_was_sent() {
    let apps = Apps::new();
    let mut server = apps.s.demo.serve();
    let n = apps.sms_count(ZHANG.2).await;
    let (status, app) = apps
        .create(SHECA, body("new", ZHANG, Some(&apps.csr("zhang"))))
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let v = apps.code_then_face(&id, ZHANG.2, n + 1).await;
    assert_eq!(v["step"]["phone"], "138****8000", "{v}");

    // The appliance's code is sent; the appliance is killed; the code still works after.
    let (status, v) = apps
        .act(SHECA, &id, "confirm", json!({"phone": ZHANG.2}))
        .await;
    assert_eq!(status, 200, "{v}");
    let code = apps.nth_code(ZHANG.2, n + 2).await;
    server.stop_with("KILL", Duration::from_secs(10));
    drop(server);
    let _server = apps.s.demo.serve();
    let (status, v) = apps.input_code(SHECA, &id, &code).await;
    assert_eq!(status, 200, "{v}");
    let done = apps
        .wait(SHECA, &id, "issued", |v| v["status"] == "issued")
        .await;
    assert_eq!(apps.sms_count(ZHANG.2).await, n + 2, "no code sent twice");
    let (subject, _) = check_certificate(
        apps.dir(),
        done["certificate"]["pem"].as_str().unwrap(),
        "zhang-cert",
    );
    assert_eq!(subject, "CN=张三,C=CN");

    // Phone change to a real-name phone: captcha duty is the channel's, the carrier check and
    // its SMS code suffice.
    let serial = done["certificate"]["serial"].as_str().unwrap();
    let mut change = body("phone_change", ZHANG, None);
    change["certificate"] = json!(serial);
    let n = apps.sms_count(ZHANG.2).await;
    let (status, app) = apps.create(SHECA, change).await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["step"]["method"], "phone-real-name", "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let code = apps.nth_code(ZHANG.2, n + 1).await;
    let (status, v) = apps.input_code(SHECA, &id, &code).await;
    assert_eq!(status, 200, "{v}");
    let v = apps
        .wait(SHECA, &id, "completed", |v| v["status"] == "completed")
        .await;
    assert_eq!(v["assurance_level"], "L2", "{v}");
    let audit = apps.sql("select count(*) from audit_log where action = 'subject.verified_phone'");
    assert_eq!(
        audit, "2",
        "the verified phone was set by the issuance and by the change"
    );
}

/// Solves the captcha an application shows (a few tries: a misread captcha is replaced by a new
/// one, answered `captcha_wrong`); returns the application after the accepted answer.
async fn solve_captcha(apps: &Apps, who: &str, mut app: Value) -> Value {
    for _ in 0..6 {
        let challenge = &app["step"]["challenge"];
        assert_eq!(challenge["kind"], "captcha", "{app}");
        let answer = captcha_reader::read(challenge["image_png_base64"].as_str().unwrap());
        let id = app["id"].as_str().unwrap().to_owned();
        let (status, v) = apps
            .act(
                who,
                &id,
                "input",
                json!({"kind": "captcha", "value": answer}),
            )
            .await;
        if status == 200 {
            return v;
        }
        assert_eq!(
            (status, v["error"].as_str()),
            (422, Some("captcha_wrong")),
            "{v}"
        );
        assert_ne!(
            v["application"]["step"]["challenge"]["id"], challenge["id"],
            "a new captcha"
        );
        app = v["application"].clone();
    }
    panic!("the captcha reader failed six times: {app}");
}

#[tokio::test]
async fn sheca_as_shipped_with_the_appliance_captcha_before_every_sms() {
    let apps = Apps::new();
    // Back to the file as init --demo wrote it: captcha = true.
    let file = apps.dir().join("channels/sheca-personal.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("captcha = false", "captcha = true")).unwrap();
    let _server = apps.s.demo.serve();

    let n = apps.sms_count(ZHANG.2).await;
    let (status, app) = apps
        .create(SHECA, body("new", ZHANG, Some(&apps.csr("shipped"))))
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["status"], "awaiting_applicant", "{app}");
    assert_eq!(app["step"]["challenge"]["kind"], "captcha", "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    // Nothing is sent before the captcha is solved; a code now is refused with its own code.
    assert_eq!(
        apps.sms_count(ZHANG.2).await,
        n,
        "no SMS before the captcha"
    );
    let (status, v) = apps.input_code(SHECA, &id, "123456").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("captcha_required")),
        "{v}"
    );
    // A wrong answer uses the captcha up and shows a new one.
    let (status, v) = apps
        .act(
            SHECA,
            &id,
            "input",
            json!({"kind": "captcha", "value": "x"}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("captcha_wrong")),
        "{v}"
    );
    assert_ne!(
        v["application"]["step"]["challenge"]["id"],
        app["step"]["challenge"]["id"]
    );

    let v = solve_captcha(&apps, SHECA, v["application"].clone()).await;
    assert_eq!(v["step"]["method"], "phone-real-name", "{v}");
    let v = apps.code_then_face(&id, ZHANG.2, n + 1).await;
    // Confirming the phone sends the appliance's code: another captcha first.
    let (status, v2) = apps
        .act(SHECA, &id, "confirm", json!({"phone": ZHANG.2}))
        .await;
    assert_eq!(status, 200, "{v2}");
    assert_eq!(v2["step"]["challenge"]["kind"], "captcha", "{v2} after {v}");
    assert_eq!(
        apps.sms_count(ZHANG.2).await,
        n + 1,
        "no code before the captcha"
    );
    let v = solve_captcha(&apps, SHECA, v2).await;
    assert_eq!(v["step"]["challenge"]["kind"], "sms_code", "{v}");
    let code = apps.nth_code(ZHANG.2, n + 2).await;
    let (status, v) = apps.input_code(SHECA, &id, &code).await;
    assert_eq!(status, 200, "{v}");
    let done = apps
        .wait(SHECA, &id, "issued", |v| v["status"] == "issued")
        .await;
    let (subject, policies) = check_certificate(
        apps.dir(),
        done["certificate"]["pem"].as_str().unwrap(),
        "shipped-cert",
    );
    assert_eq!(subject, "CN=张三,C=CN");
    assert!(policies.contains(L3_OID), "{policies}");
}
