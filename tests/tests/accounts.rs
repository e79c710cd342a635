//! Accounts end to end with real parts: certificate download to a phone (code by SMS through
//! vendor-sim, CSR and key made by `openssl`), phone-code login and the Beijing rule, and one
//! phone per personal account in a realm decided by the database when two applications race.
//! The real binary with its SoftHSM2 token and plugin workers, real mTLS clients.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod application_support;
mod vendor_setup;

use std::time::Duration;

use application_support::*;
use serde_json::{json, Value};
use system_tests::*;
use vendor_setup::Setup;

/// Phone real-name then face (L3); no CSR needed at creation.
const SHECA_L3: &str = r#"
name = "sheca-personal"
clients = ["channel-sheca-personal"]
profiles = ["personal"]
notifier = "channel-notify"

[[policy]]
kinds = ["new", "renewal", "change", "reissue", "revocation"]
captcha = false

[[policy.step]]
verify = ["phone-real-name"]

[[policy.step]]
verify = ["face"]

[[policy]]
kinds = ["level_up"]
captcha = false

[[policy.step]]
verify = ["face"]
"#;

/// Face or bank card, then the application signed by an SMS code to the verified phone.
const BJCA_FACE_SIGN: &str = r#"
name = "bjca-personal"
clients = ["channel-bjca-personal"]
profiles = ["personal"]
notifier = "channel-notify"

[[policy]]
kinds = ["new"]
captcha = false

[[policy.step]]
verify = ["face", "bank-card"]

[[policy.step]]
sign = "sms"

[[policy]]
kinds = ["phone_change"]
captcha = false

[[policy.step]]
verify = ["bank-card"]

[[policy.step]]
verify = ["face"]
"#;

/// 王五 (face fails at vendor-sim) and his bank card, reserved on 张三's phone.
const WANG: (&str, &str, &str) = ("王五", "110105199002020026", "13800138002");
const WANG_CARD: &str = "6222020000000000059";
/// 张三's bank cards: reserved on his phone, and on his new phone after he lost it.
const ZHANG_CARD: &str = "6222020000000000018";
const ZHANG_NEW_CARD: &str = "6222020000000000067";
const ZHANG_NEW_PHONE: &str = "13800138010";

/// An unknown phone (no carrier record) two people declare.
const SHARED_PHONE: &str = "13800138099";

impl Apps {
    /// The demo with both channels in realm `gd` (`personal_per_phone` as given), codes that may
    /// be resent at once and void after 3 wrong tries.
    fn accounts(per_phone: u32) -> Apps {
        let s = Setup::new(None, move |config, _| {
            format!(
                "{config}\n[contact]\ncode_resend_secs = 0\ncode_max_attempts = 3\n\n\
                 [[applications.realm]]\nname = \"gd\"\n\
                 channels = [\"sheca-personal\", \"bjca-personal\"]\n\
                 personal_per_phone = {per_phone}\n"
            )
        });
        let dir = s.demo.path();
        std::fs::write(dir.join("channels/sheca-personal.toml"), SHECA_L3).unwrap();
        std::fs::write(dir.join("channels/bjca-personal.toml"), BJCA_FACE_SIGN).unwrap();
        Apps::from_setup(s)
    }

    /// The next SMS to `phone` after the `seen` already there: its code.
    async fn next_code(&self, phone: &str, seen: usize) -> String {
        let msgs = self
            .s
            .sim
            .wait_sms(phone, seen + 1, Duration::from_secs(30))
            .await;
        msgs[seen]["code"].as_str().unwrap().to_owned()
    }

    async fn sms_count(&self, phone: &str) -> usize {
        self.s.sim.sms_to(phone).await.len()
    }

    /// ZHANG through SHECA without a CSR: phone real-name, face, then waiting for the CSR.
    async fn zhang_awaiting_csr(&self) -> String {
        let body = json!({"kind": "new", "profile": "personal", "subject": person(ZHANG)});
        let seen = self.sms_count(ZHANG.2).await;
        let (status, app) = self.create(SHECA, body).await;
        assert_eq!(status, 201, "{app}");
        let id = app["id"].as_str().unwrap().to_owned();
        // Not approved yet: no download.
        let (status, v) = self
            .call(
                SHECA,
                "POST",
                "/api/v1/downloads",
                Some(json!({"application": id})),
            )
            .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (409, Some("download_not_available")),
            "{v}"
        );
        let code = self.next_code(ZHANG.2, seen).await;
        let (status, v) = self.input_code(SHECA, &id, &code).await;
        assert_eq!(status, 200, "{v}");
        let v = self
            .wait(SHECA, &id, "showed face", |v| {
                v["step"]["challenge"]["url"].is_string()
            })
            .await;
        self.complete_face(&v).await;
        let v = self
            .wait(SHECA, &id, "asked for the CSR", |v| {
                v["step"]["name"] == "csr"
            })
            .await;
        assert_eq!(v["status"], "awaiting_applicant", "{v}");
        id
    }

    /// `who` through BJCA by a bank card reserved on `phone`, then the SMS signature on that
    /// phone (L2); returns the issued application.
    async fn card_and_sign(&self, who: (&str, &str, &str), card: &str, phone: &str) -> Value {
        let subject = json!({"type": "person", "name": who.0, "id_type": "resident_id",
            "id_number": who.1, "phone": phone});
        let (status, app) = self
            .create(
                BJCA,
                json!({"kind": "new", "profile": "personal", "subject": subject, "csr": self.csr(card)}),
            )
            .await;
        assert_eq!(status, 201, "{app}");
        let id = app["id"].as_str().unwrap().to_owned();
        let seen = self.sms_count(phone).await;
        let (status, v) = self
            .act(
                BJCA,
                &id,
                "choose",
                json!({"method": "bank-card", "subject": {"bank_card": card}}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let bank_code = self.next_code(phone, seen).await;
        let (status, v) = self.input_code(BJCA, &id, &bank_code).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["step"]["challenge"]["kind"], "sms_code", "{v}");
        let sign_code = self.next_code(phone, seen + 1).await;
        let (status, v) = self.input_code(BJCA, &id, &sign_code).await;
        assert_eq!(status, 200, "{v}");
        self.wait(BJCA, &id, "issued", |v| v["status"] == "issued")
            .await
    }

    /// A code login through BJCA on `phone` (whose SMS count was `seen`): the account's answer.
    async fn code_login(&self, phone: &str) -> (u16, Value) {
        let seen = self.sms_count(phone).await;
        let (status, l) = self
            .post(BJCA, "/api/v1/code-logins", json!({"phone": phone}))
            .await;
        if status != 201 {
            return (status, l);
        }
        let code = self.next_code(phone, seen).await;
        let done = format!("/api/v1/code-logins/{}/complete", l["id"].as_str().unwrap());
        self.post(BJCA, &done, json!({"code": code})).await
    }

    async fn post(&self, who: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(who, "POST", path, Some(body)).await
    }
}

fn person(p: (&str, &str, &str)) -> Value {
    json!({"type": "person", "name": p.0, "id_type": "resident_id", "id_number": p.1, "phone": p.2})
}

fn refused(got: (u16, Value), status: u16, code: &str) -> Value {
    assert_eq!(
        (got.0, got.1["error"].as_str()),
        (status, Some(code)),
        "{}",
        got.1
    );
    got.1
}

#[tokio::test]
async fn a_certificate_downloads_to_the_phone_with_its_code_and_a_phone_made_csr() {
    let apps = Apps::accounts(1);
    let _server = apps.s.demo.serve();
    let id = apps.zhang_awaiting_csr().await;
    let certificates = || apps.sql("select count(*) from certificates");
    let before = certificates();

    // Only the application's channel may start it, and only a channel.
    let start = json!({"application": id});
    refused(
        apps.post(BJCA, "/api/v1/downloads", start.clone()).await,
        404,
        "not_found",
    );
    refused(
        apps.post("relying-party", "/api/v1/downloads", start.clone())
            .await,
        403,
        "role_not_allowed",
    );
    refused(
        apps.post(
            SHECA,
            "/api/v1/downloads",
            json!({"application": id, "x": 1}),
        )
        .await,
        400,
        "malformed_json",
    );

    // Three wrong codes void the first download; its right code is refused then; nothing issued.
    let seen = apps.sms_count(ZHANG.2).await;
    let (status, d1) = apps.post(SHECA, "/api/v1/downloads", start.clone()).await;
    assert_eq!(status, 201, "{d1}");
    assert_eq!(d1["code_sent_to"], "138****8000", "{d1}");
    let code1 = apps.next_code(ZHANG.2, seen).await;
    let d1_done = format!("/api/v1/downloads/{}/complete", d1["id"].as_str().unwrap());
    let phone_csr = apps.csr("phone");
    let wrong = if code1 == "000000" {
        "111111"
    } else {
        "000000"
    };
    let v = refused(
        apps.post(SHECA, &d1_done, json!({"code": wrong, "csr": phone_csr}))
            .await,
        422,
        "otp_wrong",
    );
    assert_eq!(v["attempts_left"], 2, "{v}");
    // A bad CSR costs no attempt.
    refused(
        apps.post(SHECA, &d1_done, json!({"code": code1, "csr": "not a csr"}))
            .await,
        400,
        "malformed_csr",
    );
    refused(
        apps.post(SHECA, &d1_done, json!({"code": wrong, "csr": phone_csr}))
            .await,
        422,
        "otp_wrong",
    );
    refused(
        apps.post(SHECA, &d1_done, json!({"code": wrong, "csr": phone_csr}))
            .await,
        422,
        "otp_attempts_exceeded",
    );
    refused(
        apps.post(SHECA, &d1_done, json!({"code": code1, "csr": phone_csr}))
            .await,
        422,
        "otp_attempts_exceeded",
    );
    assert_eq!(certificates(), before, "nothing issued");
    let (_, v) = apps.get(SHECA, &id).await;
    assert_eq!(v["status"], "awaiting_applicant", "{v}");

    // A new download: the other channel cannot complete it; the right code and the phone's CSR
    // give the certificate on the phone's key.
    let seen = apps.sms_count(ZHANG.2).await;
    let (status, d2) = apps.post(SHECA, "/api/v1/downloads", start.clone()).await;
    assert_eq!(status, 201, "{d2}");
    let code2 = apps.next_code(ZHANG.2, seen).await;
    let d2_done = format!("/api/v1/downloads/{}/complete", d2["id"].as_str().unwrap());
    let answer = json!({"code": code2, "csr": phone_csr});
    refused(
        apps.post(BJCA, &d2_done, answer.clone()).await,
        404,
        "not_found",
    );
    let (status, v) = apps.post(SHECA, &d2_done, answer.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "issued", "{v}");
    let pem = v["certificate"]["pem"].as_str().unwrap().to_owned();
    let (subject, policies, _) = check_certificate(apps.dir(), &pem, "downloaded");
    assert!(subject.contains("张三"), "{subject}");
    assert!(policies.iter().any(|p| p == L3_OID), "{policies:?}");
    // The certificate carries the phone's key (openssl's CSR key).
    let key_of = |args: &[&str]| {
        let (ok, out, err) = run(std::process::Command::new("openssl").args(args));
        assert!(ok, "{err}");
        out
    };
    let dir = apps.dir().to_str().unwrap().to_owned();
    assert_eq!(
        key_of(&[
            "x509",
            "-in",
            &format!("{dir}/downloaded.pem"),
            "-noout",
            "-pubkey"
        ]),
        key_of(&["pkey", "-in", &format!("{dir}/phone.key"), "-pubout"]),
    );
    assert_eq!(
        certificates().parse::<i64>().unwrap(),
        before.parse::<i64>().unwrap() + 1
    );

    // Replayed: refused, nothing more issued; the issued application takes no new download.
    refused(
        apps.post(SHECA, &d2_done, answer).await,
        409,
        "already_used",
    );
    refused(
        apps.post(SHECA, "/api/v1/downloads", start).await,
        409,
        "download_not_available",
    );
    assert_eq!(
        certificates().parse::<i64>().unwrap(),
        before.parse::<i64>().unwrap() + 1
    );

    // The issued application bound 张三's L3 account: a download for the account alone, through
    // the realm's other channel, with no application.
    let account = apps.sql("select id from accounts where kind = 'personal'");
    assert!(account.starts_with("acct_"), "{account}");
    let by_account = json!({"account": account, "profile": "personal"});
    for (who, body, status, code) in [
        (BJCA, json!({"account": account}), 400, "field_not_expected"),
        (
            BJCA,
            json!({"account": account, "application": id, "profile": "personal"}),
            400,
            "field_not_expected",
        ),
        (
            BJCA,
            json!({"account": "acct_00", "profile": "personal"}),
            404,
            "account_not_found",
        ),
        (
            BJCA,
            json!({"account": account, "profile": "nope"}),
            400,
            "unknown_profile",
        ),
        ("relying-party", by_account.clone(), 403, "role_not_allowed"),
    ] {
        refused(
            apps.post(who, "/api/v1/downloads", body).await,
            status,
            code,
        );
    }
    let before = certificates().parse::<i64>().unwrap();
    let seen = apps.sms_count(ZHANG.2).await;
    let (status, d3) = apps
        .post(BJCA, "/api/v1/downloads", by_account.clone())
        .await;
    assert_eq!(status, 201, "{d3}");
    assert_eq!(
        (d3["account"].as_str(), d3["code_sent_to"].as_str()),
        (Some(account.as_str()), Some("138****8000")),
        "{d3}"
    );
    let code3 = apps.next_code(ZHANG.2, seen).await;
    let d3_done = format!("/api/v1/downloads/{}/complete", d3["id"].as_str().unwrap());
    let account_csr = apps.csr("account-phone");
    let wrong = if code3 == "000000" {
        "111111"
    } else {
        "000000"
    };
    for expected in ["otp_wrong", "otp_wrong", "otp_attempts_exceeded"] {
        refused(
            apps.post(BJCA, &d3_done, json!({"code": wrong, "csr": account_csr}))
                .await,
            422,
            expected,
        );
    }
    refused(
        apps.post(BJCA, &d3_done, json!({"code": code3, "csr": account_csr}))
            .await,
        422,
        "otp_attempts_exceeded",
    );
    assert_eq!(
        certificates().parse::<i64>().unwrap(),
        before,
        "nothing issued"
    );

    let seen = apps.sms_count(ZHANG.2).await;
    let (status, d4) = apps
        .post(BJCA, "/api/v1/downloads", by_account.clone())
        .await;
    assert_eq!(status, 201, "{d4}");
    let code4 = apps.next_code(ZHANG.2, seen).await;
    let d4_done = format!("/api/v1/downloads/{}/complete", d4["id"].as_str().unwrap());
    let answer = json!({"code": code4, "csr": account_csr});
    refused(
        apps.post(SHECA, &d4_done, answer.clone()).await,
        404,
        "not_found",
    );
    refused(
        apps.post(BJCA, &d4_done, json!({"code": code4, "csr": "not a csr"}))
            .await,
        400,
        "malformed_csr",
    );
    let (status, v) = apps.post(BJCA, &d4_done, answer.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["assurance_level"], "L3", "{v}");
    let pem = v["certificate"]["pem"].as_str().unwrap().to_owned();
    let (subject, policies, _) = check_certificate(apps.dir(), &pem, "account-downloaded");
    assert!(subject.contains("CN=张三"), "{subject}");
    assert!(policies.iter().any(|p| p == L3_OID), "{policies:?}");
    assert_eq!(
        key_of(&[
            "x509",
            "-in",
            &format!("{dir}/account-downloaded.pem"),
            "-noout",
            "-pubkey"
        ]),
        key_of(&[
            "pkey",
            "-in",
            &format!("{dir}/account-phone.key"),
            "-pubout"
        ]),
    );
    refused(apps.post(BJCA, &d4_done, answer).await, 409, "already_used");
    assert_eq!(certificates().parse::<i64>().unwrap(), before + 1);
    let serial = v["certificate"]["serial"].as_str().unwrap();
    assert_eq!(
        apps.sql(&format!(
            "select channel from certificates where serial = '{serial}'"
        )),
        "bjca-personal"
    );
    // Audited as the channel's issuance concluding this download, not a direct one.
    let detail = apps.sql(&format!(
        "select actor, detail from audit_log where action = 'certificate.issue' and target = '{serial}'"
    ));
    assert!(detail.starts_with("channel:bjca-personal|"), "{detail}");
    assert!(detail.contains(d4["id"].as_str().unwrap()), "{detail}");
    assert!(detail.contains("\"direct\":false"), "{detail}");
}

#[tokio::test]
async fn code_login_opens_the_phones_l3_account_and_not_a_phone_of_several_ids() {
    let apps = Apps::accounts(2);
    let _server = apps.s.demo.serve();
    // 张三: L3 (phone real-name + face) through SHECA, bound to his phone.
    let id = apps.zhang_awaiting_csr().await;
    let (status, v) = apps
        .act(SHECA, &id, "csr", json!({"csr": apps.csr("zhang")}))
        .await;
    assert_eq!(status, 200, "{v}");
    apps.wait(SHECA, &id, "issued", |v| v["status"] == "issued")
        .await;

    // Bad input, each with its code, no SMS sent.
    let seen = apps.sms_count(ZHANG.2).await;
    refused(
        apps.post(BJCA, "/api/v1/code-logins", json!({"phone": "12345"}))
            .await,
        400,
        "invalid_phone",
    );
    refused(
        apps.post(
            BJCA,
            "/api/v1/code-logins",
            json!({"phone": ZHANG.2, "min_level": "L4"}),
        )
        .await,
        400,
        "field_not_expected",
    );
    refused(
        apps.post(
            "relying-party",
            "/api/v1/code-logins",
            json!({"phone": ZHANG.2}),
        )
        .await,
        403,
        "role_not_allowed",
    );
    assert_eq!(apps.sms_count(ZHANG.2).await, seen);

    // Through the other channel of the realm: a code to the phone, a wrong one, the right one.
    let (status, l) = apps
        .post(BJCA, "/api/v1/code-logins", json!({"phone": ZHANG.2}))
        .await;
    assert_eq!(status, 201, "{l}");
    assert_eq!(l["code_sent_to"], "138****8000", "{l}");
    let code = apps.next_code(ZHANG.2, seen).await;
    let done = format!("/api/v1/code-logins/{}/complete", l["id"].as_str().unwrap());
    refused(
        apps.post(SHECA, &done, json!({"code": code})).await,
        404,
        "not_found",
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    refused(
        apps.post(BJCA, &done, json!({"code": wrong})).await,
        422,
        "otp_wrong",
    );
    let (status, v) = apps.post(BJCA, &done, json!({"code": code})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["realm"].as_str(), v["level"].as_str()),
        (Some("gd"), Some("L3")),
        "{v}"
    );
    let account = v["account"].as_str().unwrap().to_owned();
    assert_eq!(
        apps.sql(&format!(
            "select level from accounts where id = '{account}'"
        )),
        "L3"
    );
    // The login is audited (one row, by the channel, naming the account), the replay is not.
    let audit = "select actor, target from audit_log where action = 'account.code_login'";
    assert_eq!(apps.sql(audit), format!("channel:bjca-personal|{account}"));
    refused(
        apps.post(BJCA, &done, json!({"code": code})).await,
        409,
        "already_used",
    );
    assert_eq!(apps.sql(audit).lines().count(), 1);

    // A phone with no account: the same answer, but no SMS, and no code opens it.
    let (status, l) = apps
        .post(BJCA, "/api/v1/code-logins", json!({"phone": SHARED_PHONE}))
        .await;
    assert_eq!(status, 201, "{l}");
    assert!(apps.s.sim.sms_to(SHARED_PHONE).await.is_empty());
    let done = format!("/api/v1/code-logins/{}/complete", l["id"].as_str().unwrap());
    refused(
        apps.post(BJCA, &done, json!({"code": "123456"})).await,
        422,
        "otp_wrong",
    );

    // 王五 binds 张三's phone too (this realm allows two people per phone): now the phone
    // belongs to two ID numbers and cannot log in by code (the Beijing rule); no SMS.
    let wang = apps.card_and_sign(WANG, WANG_CARD, ZHANG.2).await;
    assert_eq!(wang["assurance_level"], "L2", "{wang}");
    assert_eq!(
        apps.sql("select count(distinct subject_hash) from accounts"),
        "2"
    );
    let seen = apps.sms_count(ZHANG.2).await;
    refused(
        apps.post(SHECA, "/api/v1/code-logins", json!({"phone": ZHANG.2}))
            .await,
        409,
        "phone_bound_to_several_ids",
    );
    assert_eq!(apps.sms_count(ZHANG.2).await, seen);
}

#[tokio::test]
async fn two_people_declaring_one_phone_at_once_exactly_one_wins() {
    let apps = Apps::accounts(1);
    let _server = apps.s.demo.serve();
    let applications = || apps.sql("select count(*) from applications");
    let before = applications();
    let subject = |p: (&str, &str, &str)| {
        json!({"type": "person", "name": p.0, "id_type": "resident_id", "id_number": p.1,
            "phone": SHARED_PHONE})
    };
    let body = |p| json!({"kind": "new", "profile": "personal", "subject": subject(p), "csr": apps.csr("race")});
    // A choice first in BJCA: creation asks no vendor about the phone.
    let (a, b) = tokio::join!(apps.create(BJCA, body(ZHANG)), apps.create(BJCA, body(LI)));
    let mut outcomes = [(a.0, a.1["error"].clone()), (b.0, b.1["error"].clone())];
    outcomes.sort_by_key(|o| o.0);
    assert_eq!(
        outcomes,
        [
            (201, Value::Null),
            (409, json!("phone_bound_to_other_account"))
        ],
        "{a:?} {b:?}"
    );
    assert_eq!(
        applications().parse::<i64>().unwrap(),
        before.parse::<i64>().unwrap() + 1,
        "the loser stored nothing"
    );
    assert_eq!(apps.sql("select count(*) from phone_bindings"), "1");
    let (winner, loser) = if a.0 == 201 { (a.1, LI) } else { (b.1, ZHANG) };

    // While the winner's application is open the phone stays claimed; once it is cancelled the
    // other person may declare it.
    refused(
        apps.create(BJCA, body(loser)).await,
        409,
        "phone_bound_to_other_account",
    );
    let wid = winner["id"].as_str().unwrap();
    let (status, v) = apps.act(BJCA, wid, "cancel", json!({})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = apps.create(BJCA, body(loser)).await;
    assert_eq!(status, 201, "{v}");
}

#[tokio::test]
async fn level_up_by_face_and_recovery_of_a_lost_phone_by_face() {
    let apps = Apps::accounts(1);
    let server = apps.s.demo.serve();

    // No account yet: level_up is refused, nothing stored.
    let level_up = json!({"kind": "level_up", "profile": "personal", "subject": person(ZHANG)});
    let before = apps.sql("select count(*) from applications");
    refused(
        apps.create(SHECA, level_up.clone()).await,
        404,
        "account_not_found",
    );
    assert_eq!(apps.sql("select count(*) from applications"), before);

    // 张三 at L2 by bank card (BJCA): code login needs L3.
    let issued = apps.card_and_sign(ZHANG, ZHANG_CARD, ZHANG.2).await;
    assert_eq!(issued["assurance_level"], "L2", "{issued}");
    let serial = issued["certificate"]["serial"].as_str().unwrap().to_owned();
    assert_eq!(apps.sql("select level from accounts"), "L2");
    let seen = apps.sms_count(ZHANG.2).await;
    refused(apps.code_login(ZHANG.2).await, 422, "level_too_low");
    assert_eq!(apps.sms_count(ZHANG.2).await, seen, "no code sent");

    // level_up by face through the realm's other channel: the account is L3, nothing issued.
    let certificates = apps.sql("select count(*) from certificates");
    let (status, app) = apps.create(SHECA, level_up).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let v = apps
        .wait(SHECA, &id, "showed face", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;
    apps.complete_face(&v).await;
    let done = apps
        .wait(SHECA, &id, "completed", |v| v["status"] == "completed")
        .await;
    assert_eq!(done["assurance_level"], "L3", "{done}");
    assert_eq!(apps.sql("select level from accounts"), "L3");
    assert_eq!(apps.sql("select count(*) from certificates"), certificates);
    let (status, v) = apps.code_login(ZHANG.2).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["level"], "L3", "{v}");
    let account = v["account"].as_str().unwrap().to_owned();

    // 张三 lost his phone: a phone change proving the new phone (bank card reserved on it) and
    // him (face) rebinds the same account to the new phone.
    let subject = json!({"type": "person", "name": ZHANG.0, "id_type": "resident_id",
        "id_number": ZHANG.1, "phone": ZHANG_NEW_PHONE});
    let seen = apps.sms_count(ZHANG_NEW_PHONE).await;
    let (status, app) = apps
        .create(
            BJCA,
            json!({"kind": "phone_change", "profile": "personal", "subject": subject, "certificate": serial}),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let (status, v) = apps
        .act(
            BJCA,
            &id,
            "choose",
            json!({"method": "bank-card", "subject": {"bank_card": ZHANG_NEW_CARD}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let code = apps.next_code(ZHANG_NEW_PHONE, seen).await;
    let (status, v) = apps.input_code(BJCA, &id, &code).await;
    assert_eq!(status, 200, "{v}");
    let v = apps
        .wait(BJCA, &id, "showed face", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;
    apps.complete_face(&v).await;
    apps.wait(BJCA, &id, "completed", |v| v["status"] == "completed")
        .await;
    assert_eq!(apps.sql("select count(*) from accounts"), "1");
    let (status, v) = apps.code_login(ZHANG_NEW_PHONE).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["account"].as_str(), v["level"].as_str()),
        (Some(account.as_str()), Some("L3")),
        "{v}"
    );
    // The lost phone opens nothing any more, and is free for someone else to declare.
    let seen = apps.sms_count(ZHANG.2).await;
    let (status, l) = apps
        .post(BJCA, "/api/v1/code-logins", json!({"phone": ZHANG.2}))
        .await;
    assert_eq!(status, 201, "{l}");
    assert_eq!(apps.sms_count(ZHANG.2).await, seen, "no account, no SMS");
    let subject = json!({"type": "person", "name": LI.0, "id_type": "resident_id",
        "id_number": LI.1, "phone": ZHANG.2});
    let (status, v) = apps
        .create(
            BJCA,
            json!({"kind": "new", "profile": "personal", "subject": subject, "csr": apps.csr("li")}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_nothing_in_clear(
        &apps,
        &server,
        &[
            ZHANG.1,
            ZHANG.2,
            ZHANG_NEW_PHONE,
            ZHANG_CARD,
            ZHANG_NEW_CARD,
            WANG.1,
            WANG_CARD,
        ],
    );
}

/// The example organisation (vendor-sim's registry) and another one.
const ORG: (&str, &str) = ("示例科技有限公司", "91350100M000100Y43");
const OTHER_ORG: (&str, &str) = ("另一科技有限公司", "91350100M000200Y4T");
const GX_ORG: &str = "channel-gx-organisation";

fn org_body(org: (&str, &str), csr: &str) -> Value {
    let zhang = json!({"name": ZHANG.0, "id_type": "resident_id", "id_number": ZHANG.1,
        "phone": ZHANG.2});
    json!({
        "kind": "new",
        "profile": "organisation",
        "csr": csr,
        "subject": {
            "type": "organisation", "name": org.0, "uscc": org.1,
            "legal_rep": zhang.clone(), "agent": zhang,
        },
    })
}

#[tokio::test]
async fn an_issued_organisation_application_binds_the_agents_phone_to_one_organisation_account() {
    let apps = Apps::accounts(1);
    let _server = apps.s.demo.serve();
    // The demo's GX channel: face (legal representative) or transfer, then the agent's SMS
    // signature.
    let (status, app) = apps.create(GX_ORG, org_body(ORG, &apps.csr("org"))).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    apps.wait(GX_ORG, &id, "offered a choice", |v| {
        v["status"] == "awaiting_choice"
    })
    .await;
    let (status, v) = apps
        .act(GX_ORG, &id, "choose", json!({"method": "face"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let v = apps
        .wait(GX_ORG, &id, "showed face", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;
    let seen = apps.sms_count(ZHANG.2).await;
    apps.complete_face(&v).await;
    apps.wait(GX_ORG, &id, "asked for the signature", |v| {
        v["step"]["challenge"]["kind"] == "sms_code"
    })
    .await;
    let code = apps.next_code(ZHANG.2, seen).await;
    let (status, v) = apps.input_code(GX_ORG, &id, &code).await;
    assert_eq!(status, 200, "{v}");
    apps.wait(GX_ORG, &id, "issued", |v| v["status"] == "issued")
        .await;
    assert_eq!(
        apps.sql("select kind, level from accounts"),
        "organisation|L3"
    );
    let all = apps.sql("select * from accounts");
    assert!(!all.contains(ORG.1) && !all.contains(ZHANG.2), "{all}");

    // Another organisation with the same agent phone in the realm: refused, nothing stored; the
    // same organisation applies again freely.
    let before = apps.sql("select count(*) from applications");
    refused(
        apps.create(GX_ORG, org_body(OTHER_ORG, &apps.csr("other")))
            .await,
        409,
        "phone_bound_to_other_account",
    );
    assert_eq!(apps.sql("select count(*) from applications"), before);
    let (status, v) = apps.create(GX_ORG, org_body(ORG, &apps.csr("org2"))).await;
    assert_eq!(status, 201, "{v}");
}

/// A Taiwan compatriot permit holder (fictitious) and her phone.
const CHEN: (&str, &str, &str) = ("陈美玲", "12345678", "13800138020");
const L2_OID: &str = "1.3.6.1.4.1.61992.1.9.2";

/// BJCA's policy for documents no vendor checks: materials, the SMS signature to the declared
/// phone, and an RA officer's review.
const BJCA_REVIEWED_DOCUMENTS: &str = r#"
[[policy]]
kinds = ["new"]
captcha = false
id_types = ["tw_permit", "passport"]

[[policy.step]]
materials = ["id_front", "id_back"]

[[policy.step]]
sign = "sms"

[[policy.step]]
review = true
"#;

/// Uploads a material to application `id` as `who` (multipart): (status, answer).
async fn upload(
    apps: &Apps,
    who: &str,
    id: &str,
    kind: &str,
    declared: &str,
    content: &[u8],
) -> (u16, Value) {
    apps.upload_material(who, id, kind, declared, content).await
}

#[tokio::test]
async fn a_taiwan_permit_reaches_l2_by_materials_and_review_and_never_l3_by_face() {
    let apps = Apps::accounts(1);
    let channel = apps.dir().join("channels/bjca-personal.toml");
    let text = std::fs::read_to_string(&channel).unwrap();
    std::fs::write(&channel, format!("{text}\n{BJCA_REVIEWED_DOCUMENTS}")).unwrap();
    let server = apps.s.demo.serve();
    let chen = |id_type: &str, number: &str| json!({"type": "person", "name": CHEN.0, "id_type": id_type, "id_number": number, "phone": CHEN.2});
    let new = |subject: Value, csr: &str| json!({"kind": "new", "profile": "personal", "subject": subject, "csr": csr});
    let csr = apps.csr("chen");

    // Each document type's own format; a type no policy knows; a channel offering only the
    // vendors' checks (phone real-name, face) cannot take a permit: nothing stored.
    let before = apps.sql("select count(*) from applications");
    for (who, subject, status, code) in [
        (BJCA, chen("tw_permit", "1234567"), 400, "invalid_id_number"),
        (
            BJCA,
            chen("tw_permit", "1234567X"),
            400,
            "invalid_id_number",
        ),
        (BJCA, chen("passport", "AB"), 400, "invalid_id_number"),
        (BJCA, chen("passport", "ABCDEFGH"), 400, "invalid_id_number"),
        // A passport number is unique only within its issuing state: the state is required,
        // an ICAO code, and only for a passport.
        (BJCA, chen("passport", "E1234567"), 400, "missing_field"),
        (
            BJCA,
            with_country(chen("passport", "E1234567"), "C1N"),
            400,
            "invalid_id_country",
        ),
        (
            BJCA,
            with_country(chen("passport", "E1234567"), "CHNA"),
            400,
            "invalid_id_country",
        ),
        (
            BJCA,
            with_country(chen("tw_permit", "12345678"), "CHN"),
            400,
            "invalid_id_country",
        ),
        (
            BJCA,
            chen("hk_permit", "H12345678"),
            400,
            "unsupported_id_type",
        ),
        (
            SHECA,
            chen("tw_permit", CHEN.1),
            422,
            "id_type_not_verifiable",
        ),
    ] {
        refused(apps.create(who, new(subject, &csr)).await, status, code);
    }
    assert_eq!(apps.sql("select count(*) from applications"), before);

    // The permit: materials, the SMS signature on the declared phone, an officer's review.
    let (status, app) = apps
        .create(BJCA, new(chen("tw_permit", CHEN.1), &csr))
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    assert_eq!(app["subject"]["id_type"], "tw_permit", "{app}");
    assert_eq!(app["subject"]["id_number"], "1*****78", "masked: {app}");
    let v = apps
        .wait(BJCA, &id, "asked for materials", |v| {
            v["step"]["name"] == "materials"
        })
        .await;
    assert_eq!(v["step"]["needs"], json!(["id_front", "id_back"]), "{v}");
    let jpeg = [&[0xFF, 0xD8, 0xFF, 0xE0][..], b"permit front"].concat();
    let png = [&b"\x89PNG\r\n\x1a\n"[..], b"permit back"].concat();
    // Counted before the uploads: the last one moves the application on, and the signing code
    // may arrive before the upload's answer does.
    let seen = apps.sms_count(CHEN.2).await;
    for (kind, declared, content) in [
        ("id_front", "image/jpeg", &jpeg),
        ("id_back", "image/png", &png),
    ] {
        let (status, m) = upload(&apps, BJCA, &id, kind, declared, content).await;
        assert_eq!(status, 201, "{m}");
    }
    let v = apps
        .wait(BJCA, &id, "asked to sign", |v| v["step"]["name"] == "sign")
        .await;
    assert_eq!(v["status"], "awaiting_applicant", "{v}");
    let code = apps.next_code(CHEN.2, seen).await;
    let (status, v) = apps.input_code(BJCA, &id, &code).await;
    assert_eq!(status, 200, "{v}");
    let v = apps
        .wait(BJCA, &id, "awaiting review", |v| {
            v["status"] == "awaiting_review"
        })
        .await;
    assert!(v["certificate"].is_null(), "{v}");
    let (status, v) = apps
        .act(
            "ra-officer",
            &id,
            "review",
            json!({"decision": "approve", "reason": "permit and photo checked"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let done = apps
        .wait(BJCA, &id, "issued", |v| v["status"] == "issued")
        .await;
    assert_eq!(done["assurance_level"], "L2", "{done}");
    let pem = done["certificate"]["pem"].as_str().unwrap();
    let (subject, policies, _) = check_certificate(apps.dir(), pem, "chen");
    assert!(subject.contains("CN=陈美玲"), "{subject}");
    assert!(policies.iter().any(|p| p == L2_OID), "{policies:?}");
    assert!(!policies.iter().any(|p| p == L3_OID), "{policies:?}");

    // Her L2 account in the realm, bound to the phone she signed with.
    assert_eq!(apps.sql("select kind, level from accounts"), "personal|L2");

    // L3 by face is refused for a permit, with its own code; nothing stored.
    let before = apps.sql("select count(*) from applications");
    let level_up =
        json!({"kind": "level_up", "profile": "personal", "subject": chen("tw_permit", CHEN.1)});
    let v = refused(
        apps.create(SHECA, level_up).await,
        422,
        "id_type_not_verifiable",
    );
    assert!(v["message"].as_str().unwrap().contains("tw_permit"), "{v}");
    assert_eq!(apps.sql("select count(*) from applications"), before);

    // A passport is another subject (the type is in the keyed hash): on her bound phone it is
    // another person's (409); on its own phone it is taken, its number and state upper-cased.
    let passport = |phone: &str| json!({"type": "person", "name": CHEN.0, "id_type": "passport", "id_number": "e1234567", "id_country": "chn", "phone": phone});
    refused(
        apps.create(BJCA, new(passport(CHEN.2), &csr)).await,
        409,
        "phone_bound_to_other_account",
    );
    let (status, app) = apps
        .create(
            BJCA,
            new(passport("13800138021"), &apps.csr("chen-passport")),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["subject"]["id_type"], "passport", "{app}");
    assert_eq!(app["subject"]["id_number"], "E*****67", "{app}");
    assert_eq!(app["subject"]["id_country"], "CHN", "{app}");
    assert_eq!(
        apps.sql("select count(distinct subject_hash) from applications"),
        "2"
    );
    // The same number from another issuing state is another person: another subject, so
    // the phone of the first passport stays its own.
    let (status, app) = apps
        .create(
            BJCA,
            new(
                json!({"type": "person", "name": "Jane Roe", "id_type": "passport", "id_number": "E1234567", "id_country": "USA", "phone": "13800138022"}),
                &apps.csr("roe-passport"),
            ),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["subject"]["id_country"], "USA", "{app}");
    assert_eq!(
        apps.sql("select count(distinct subject_hash) from applications"),
        "3"
    );
    assert_nothing_in_clear(&apps, &server, &[CHEN.1, CHEN.2]);
}

/// `subject` with its passport's issuing state.
fn with_country(mut subject: Value, country: &str) -> Value {
    subject["id_country"] = json!(country);
    subject
}

/// No `numbers` (ID, phone, card numbers) in clear in the database file, its WAL or the log.
fn assert_nothing_in_clear(apps: &Apps, server: &Server, numbers: &[&str]) {
    let data = apps.dir().join("data");
    let mut stored = Vec::new();
    for f in ["appliance.db", "appliance.db-wal"] {
        if let Ok(b) = std::fs::read(data.join(f)) {
            stored.extend(b);
        }
    }
    stored.extend(server.log_text().into_bytes());
    for n in numbers {
        assert!(
            !stored.windows(n.len()).any(|w| w == n.as_bytes()),
            "{n} found in clear"
        );
    }
}
