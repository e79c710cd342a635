//! Organisation applications end to end with real parts: the example channels `init --demo`
//! writes (`bjca-organisation`, `gx-organisation`), the real verifier plugins (registry,
//! corporate transfer, phone real-name, bank card, face) in workers against `vendor-sim`, the
//! appliance's own SMS codes and face links through `channel-notify` and vendor-sim's SMS
//! gateway, certificates checked with `openssl verify` and Python `cryptography`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod application_support;
mod vendor_setup;

use std::process::Command;
use std::time::{Duration, Instant};

use application_support::*;
use serde_json::{json, Value};
use system_tests::*;
use vendor_setup::Setup;

const BJCA_ORG: &str = "channel-bjca-organisation";
const GX_ORG: &str = "channel-gx-organisation";
const ORG: (&str, &str) = ("示例科技有限公司", "91350100M000100Y43");
const ACCOUNT: &str = "110060000000001";
const ZHANG_CARD: &str = "6222020000000000018";
const LI_CARD: &str = "6222020000000000042";
const LI_BANK_PHONE: &str = "13800138011";

fn person(p: (&str, &str, &str)) -> Value {
    json!({"name": p.0, "id_type": "resident_id", "id_number": p.1, "phone": p.2})
}

/// The example organisation with 张三 as legal representative and `agent` applying.
fn org_body(agent: (&str, &str, &str), csr: &str) -> Value {
    let mut a = person(agent);
    a["email"] = json!("agent@example.cn");
    json!({
        "kind": "new",
        "profile": "organisation",
        "csr": csr,
        "subject": {
            "type": "organisation", "name": ORG.0, "uscc": ORG.1,
            "legal_rep": person(ZHANG), "agent": a,
        },
    })
}

impl Apps {
    /// The demo as written, `edit` applied to the gx-organisation channel file.
    fn new(edit_gx: impl FnOnce(String) -> String) -> Apps {
        let s = Setup::new(None, |config, _| config);
        let file = s.demo.path().join("channels/gx-organisation.toml");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            let listing: Vec<_> = std::fs::read_dir(s.demo.path().join("channels"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            panic!("{}: {e}; {listing:?}", file.display())
        });
        std::fs::write(&file, edit_gx(text)).unwrap();
        assert!(s
            .demo
            .path()
            .join("channels/bjca-organisation.toml")
            .exists());
        assert!(s
            .demo
            .path()
            .join("tls/channel-gx-organisation.pem")
            .exists());
        Apps::from_setup(s)
    }

    /// Chooses `method` (with `extra`) at the application's current choice.
    async fn choose(&self, who: &str, id: &str, body: Value) -> Value {
        let (status, v) = self.act(who, id, "choose", body).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Waits until the application offers a choice of methods at the `person` step.
    async fn wait_choice(&self, who: &str, id: &str) -> Value {
        self.wait(who, id, "offered a choice", |v| {
            v["status"] == "awaiting_choice"
        })
        .await
    }

    /// Answers the phone real-name (or bank card) code sent to `phone`.
    async fn answer_sms(&self, who: &str, id: &str, phone: &str) -> Value {
        let v = self
            .wait(who, id, "showed an SMS code", |v| {
                v["step"]["challenge"]["kind"] == "sms_code"
            })
            .await;
        let code = self.s.sim.latest_code(phone).await;
        let (status, v2) = self.input_code(who, id, &code).await;
        assert_eq!(status, 200, "{v}\n{v2}");
        v2
    }

    /// How many application-signature SMS `phone` has received.
    async fn signatures_to(&self, phone: &str) -> usize {
        self.s
            .sim
            .sms_to(phone)
            .await
            .iter()
            .filter(|m| {
                m["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("application signature"))
            })
            .count()
    }

    /// Signs the application with the code sent to the agent's phone (its signature SMS number
    /// `before + 1`); waits for `issued`.
    async fn sign_and_issue(&self, who: &str, id: &str, agent_phone: &str, before: usize) -> Value {
        let v = self
            .wait(who, id, "asked for the signature", |v| {
                v["step"]["name"] == "sign" && v["step"]["challenge"]["kind"] == "sms_code"
            })
            .await;
        assert!(
            v["step"]["challenge"]["phone"]
                .as_str()
                .unwrap()
                .ends_with(&agent_phone[7..]),
            "{v}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            let sigs: Vec<Value> = self
                .s
                .sim
                .sms_to(agent_phone)
                .await
                .into_iter()
                .filter(|m| {
                    m["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("application signature"))
                })
                .collect();
            if sigs.len() > before {
                break sigs[before]["code"].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no signature SMS to {agent_phone}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (status, v) = self.input_code(who, id, &code).await;
        assert_eq!(status, 200, "{v}");
        self.wait(who, id, "issued", |v| v["status"] == "issued")
            .await
    }
}

/// `openssl verify` against the organisation CA, and the subject as Python reads it.
fn check_org_certificate(apps: &Apps, app: &Value, stem: &str) {
    let dir = apps.dir();
    let file = dir.join(format!("{stem}.pem"));
    std::fs::write(&file, app["certificate"]["pem"].as_str().unwrap()).unwrap();
    let (ok, out, err) = run(Command::new("openssl").current_dir(dir).args([
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/organisation.pem",
        file.to_str().unwrap(),
    ]));
    assert!(ok && out.contains(": OK"), "openssl verify: {out}{err}");
    let script = r#"
import sys
from cryptography import x509
from cryptography.x509.oid import NameOID
c = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read())
get = lambda oid: [a.value for a in c.subject.get_attributes_for_oid(oid)]
print(get(NameOID.ORGANIZATION_NAME), get(x509.ObjectIdentifier('2.5.4.97')), get(NameOID.COMMON_NAME))
"#;
    let (ok, out, err) = run(Command::new("python3").arg("-c").arg(script).arg(&file));
    assert!(ok, "python: {err}");
    assert_eq!(
        out.trim(),
        format!("['{0}'] ['NTRCN-{1}'] ['{0}']", ORG.0, ORG.1),
        "the subject names the verified organisation"
    );
}

fn evidence_of(v: &Value) -> Vec<String> {
    v["verified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["field"].as_str().unwrap(),
                a["method"].as_str().unwrap()
            )
        })
        .collect()
}

/// BJCA: three organisation applications in turn (each issued before the next), covering the
/// legal representative's phone, bank card and face by SMS link, the agent by face and by bank
/// card, and the legal representative applying in person (verified once).
#[tokio::test]
async fn bjca_organisation_methods_end_in_certificates_naming_the_verified_organisation() {
    let apps = Apps::new(|t| t);
    let _server = apps.s.demo.serve();

    // 1. Legal rep by real-name phone; agent 李四 (not the legal rep) by face on the spot.
    let (status, app) = apps.create(BJCA_ORG, org_body(LI, &apps.csr("org1"))).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    assert_eq!(app["subject"]["uscc"], ORG.1, "{app}");
    assert!(!app.to_string().contains(ZHANG.1), "{app}");
    let v = apps.wait_choice(BJCA_ORG, &id).await;
    assert_eq!(
        v["step"]["options"],
        json!(["corporate-transfer", "phone-real-name", "bank-card", "face"]),
        "{v}"
    );
    assert!(
        evidence_of(&v).contains(&"uscc:org-registry".to_owned()),
        "{v}"
    );
    apps.choose(BJCA_ORG, &id, json!({"method": "phone-real-name"}))
        .await;
    apps.answer_sms(BJCA_ORG, &id, ZHANG.2).await;
    apps.wait_choice(BJCA_ORG, &id).await;
    let v = apps.choose(BJCA_ORG, &id, json!({"method": "face"})).await;
    let v = if v["step"]["challenge"]["url"].is_string() {
        v
    } else {
        apps.wait(BJCA_ORG, &id, "showed the agent's face URL", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await
    };
    apps.complete_face(&v).await;
    let done = apps.sign_and_issue(BJCA_ORG, &id, LI.2, 0).await;
    let ev = evidence_of(&done);
    for expected in [
        "organisation:org-registry",
        "legal_rep.phone:phone-real-name",
        "agent.name:face",
    ] {
        assert!(ev.contains(&expected.to_owned()), "{expected}: {done}");
    }
    check_org_certificate(&apps, &done, "org1");

    // 2. Legal rep by bank card; agent 李四 by bank card (the bank-reserved phone).
    let (status, app) = apps.create(BJCA_ORG, org_body(LI, &apps.csr("org2"))).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    apps.wait_choice(BJCA_ORG, &id).await;
    apps.choose(
        BJCA_ORG,
        &id,
        json!({"method": "bank-card", "subject": {"bank_card": ZHANG_CARD}}),
    )
    .await;
    apps.answer_sms(BJCA_ORG, &id, ZHANG.2).await;
    let v = apps.wait_choice(BJCA_ORG, &id).await;
    assert_eq!(v["step"]["needs"]["bank-card"], json!(["bank_card"]), "{v}");
    apps.choose(
        BJCA_ORG,
        &id,
        json!({"method": "bank-card", "subject": {"bank_card": LI_CARD, "phone": LI_BANK_PHONE}}),
    )
    .await;
    apps.answer_sms(BJCA_ORG, &id, LI_BANK_PHONE).await;
    // The agent's verified phone is the bank-reserved one: the signature code goes there.
    let done = apps.sign_and_issue(BJCA_ORG, &id, LI_BANK_PHONE, 0).await;
    let ev = evidence_of(&done);
    assert!(
        ev.contains(&"legal_rep.bank_card:bank-card".to_owned()),
        "{done}"
    );
    assert!(
        ev.contains(&"agent.bank_card:bank-card".to_owned()),
        "{done}"
    );
    check_org_certificate(&apps, &done, "org2");

    // 3. The legal rep applies in person: face by SMS link to their phone; not verified again
    //    as the agent.
    let before = apps.s.sim.sms_to(ZHANG.2).await.len();
    let (status, app) = apps
        .create(BJCA_ORG, org_body(ZHANG, &apps.csr("org3")))
        .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    apps.wait_choice(BJCA_ORG, &id).await;
    let (status, e) = apps
        .act(
            BJCA_ORG,
            &id,
            "choose",
            json!({"method": "phone-real-name", "delivery": "sms_link"}),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("field_not_expected")),
        "{e}"
    );
    apps.choose(
        BJCA_ORG,
        &id,
        json!({"method": "face", "delivery": "sms_link"}),
    )
    .await;
    let v = apps
        .wait(BJCA_ORG, &id, "sent the face link", |v| {
            v["step"]["challenge"]["delivery"] == "sms_link"
        })
        .await;
    assert!(v["step"]["challenge"].get("url").is_none(), "{v}");
    let msgs = apps
        .s
        .sim
        .wait_sms(ZHANG.2, before + 1, Duration::from_secs(30))
        .await;
    let text = msgs
        .iter()
        .rev()
        .find_map(|m| m["text"].as_str().filter(|t| t.contains("/face/page/")))
        .unwrap_or_else(|| panic!("a face link SMS: {msgs:?}"))
        .to_owned();
    let url = text
        .split_whitespace()
        .find(|w| w.contains("/face/page/"))
        .unwrap();
    apps.complete_face(&json!({"step": {"challenge": {"url": url}}}))
        .await;
    let done = apps.sign_and_issue(BJCA_ORG, &id, ZHANG.2, 0).await;
    let ev = evidence_of(&done);
    assert!(ev.contains(&"legal_rep.name:face".to_owned()), "{done}");
    assert!(
        ev.contains(&"agent.name:face".to_owned()),
        "the legal rep's face verification stands for the agent: {done}"
    );
    let faces = ev.iter().filter(|e| e.ends_with(":face")).count();
    assert_eq!(
        faces, 4,
        "legal_rep.name/id_number and their copy for the agent: {done}"
    );
    check_org_certificate(&apps, &done, "org3");
}

/// Guangxi: the legal representative's face, then a second application whose face step is
/// skipped (reused within 30 days); bad organisation input is refused with its own code.
#[tokio::test]
async fn gx_organisation_face_then_reused_and_bad_input_refused() {
    let apps = Apps::new(|t| t);
    let _server = apps.s.demo.serve();

    let mut bad = org_body(ZHANG, &apps.csr("bad"));
    bad["subject"]["uscc"] = json!("91350100M000100Y44");
    let (status, e) = apps.create(GX_ORG, bad).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_uscc")),
        "{e}"
    );
    let mut bad = org_body(ZHANG, &apps.csr("bad"));
    bad["subject"]["legal_rep"]
        .as_object_mut()
        .unwrap()
        .remove("id_number");
    let (status, e) = apps.create(GX_ORG, bad).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("missing_field")),
        "{e}"
    );
    let mut bad = org_body(ZHANG, &apps.csr("bad"));
    bad["subject"]["uscc"] = json!(ORG.1);
    bad["subject"]["type"] = json!("person");
    let (status, e) = apps.create(GX_ORG, bad).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("field_not_expected")),
        "{e}"
    );
    assert_eq!(apps.sql("SELECT count(*) FROM applications"), "0");

    let (status, app) = apps.create(GX_ORG, org_body(ZHANG, &apps.csr("gx1"))).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let v = apps.wait_choice(GX_ORG, &id).await;
    assert_eq!(
        v["step"]["options"],
        json!(["face", "corporate-transfer"]),
        "{v}"
    );
    apps.choose(GX_ORG, &id, json!({"method": "face"})).await;
    let v = apps
        .wait(GX_ORG, &id, "showed the face URL", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;
    apps.complete_face(&v).await;
    let done = apps.sign_and_issue(GX_ORG, &id, ZHANG.2, 0).await;
    check_org_certificate(&apps, &done, "gx1");

    // Within 30 days: the face step is skipped; the next step is the signature.
    let (status, app) = apps.create(GX_ORG, org_body(ZHANG, &apps.csr("gx2"))).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let v = apps
        .wait(GX_ORG, &id, "reached the signature", |v| {
            v["step"]["name"] == "sign"
        })
        .await;
    assert!(
        evidence_of(&v).contains(&"legal_rep.name:face".to_owned()),
        "{v}"
    );
    let done = apps.sign_and_issue(GX_ORG, &id, ZHANG.2, 1).await;
    check_org_certificate(&apps, &done, "gx2");
    let face_sessions = apps.s.sim.received("POST /face/v1/sessions").await;
    assert_eq!(face_sessions, 1, "one face session for two applications");
}

/// A deposit entered after the step's window: `deposit_expired`, the method is chosen again,
/// and the new deposit entered in time succeeds.
#[tokio::test]
async fn a_deposit_after_its_window_is_deposit_expired_and_the_method_can_be_chosen_again() {
    let apps = Apps::new(|t| {
        assert!(t.contains("window_secs = 259200"), "{t}");
        t.replace("window_secs = 259200", "window_secs = 8")
    });
    let _server = apps.s.demo.serve();
    let (status, app) = apps.create(GX_ORG, org_body(ZHANG, &apps.csr("dep"))).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    apps.wait_choice(GX_ORG, &id).await;
    let transfer = json!({"method": "corporate-transfer",
        "subject": {"bank_account": ACCOUNT, "bank_name": "中国银行北京分行"}});
    apps.choose(GX_ORG, &id, transfer.clone()).await;
    let v = apps
        .wait(GX_ORG, &id, "asked for the deposit", |v| {
            v["step"]["challenge"]["kind"] == "deposit_amount"
        })
        .await;
    let started = Instant::now();
    let answer = apps.s.sim.deposit_answer(ACCOUNT).await;
    // Let the 8-second window pass (a wall-clock deadline: nothing to poll for).
    let left = Duration::from_secs(9).saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    let (status, e) = apps
        .act(
            GX_ORG,
            &id,
            "input",
            json!({"kind": "deposit_amount", "value": answer}),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (422, Some("deposit_expired")),
        "{e}\n{v}"
    );
    assert_eq!(e["application"]["status"], "awaiting_choice", "{e}");
    assert_eq!(
        e["application"]["failure"]["code"], "deposit_expired",
        "{e}"
    );

    apps.choose(GX_ORG, &id, transfer).await;
    apps.wait(GX_ORG, &id, "asked for the new deposit", |v| {
        v["step"]["challenge"]["kind"] == "deposit_amount"
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer2 = loop {
        let a = apps.s.sim.deposit_answer(ACCOUNT).await;
        if a != answer {
            break a;
        }
        assert!(Instant::now() < deadline, "no second deposit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, v) = apps
        .act(
            GX_ORG,
            &id,
            "input",
            json!({"kind": "deposit_amount", "value": answer2}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let done = apps.sign_and_issue(GX_ORG, &id, ZHANG.2, 0).await;
    assert!(
        evidence_of(&done).contains(&"organisation:corporate-transfer".to_owned()),
        "{done}"
    );
    check_org_certificate(&apps, &done, "dep");
}
