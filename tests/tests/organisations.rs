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
    /// The demo as written, with `edits` (channel, from, to) applied to its channel files.
    fn new(edits: &[(&str, &str, &str)]) -> Apps {
        let s = Setup::new(None, |config, _| config);
        for ch in ["bjca-organisation", "gx-organisation"] {
            assert!(s.demo.path().join(format!("tls/channel-{ch}.pem")).exists());
        }
        for (channel, from, to) in edits {
            let file = s.demo.path().join(format!("channels/{channel}.toml"));
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains(from), "{text}");
            std::fs::write(&file, text.replace(from, to)).unwrap();
        }
        Apps::from_setup(s)
    }

    /// Uploads a material as the channel: (status, answer).
    async fn upload(&self, id: &str, kind: &str, declared: &str, content: &[u8]) -> (u16, Value) {
        self.upload_material(BJCA_ORG, id, kind, declared, content)
            .await
    }

    /// Uploads the BJCA materials (and the authorisation letter when `letter`); returns
    /// (material id, sha256) of each.
    async fn upload_materials(&self, id: &str, letter: bool) -> Vec<(String, String)> {
        let v = self
            .wait(BJCA_ORG, id, "asked for materials", |v| {
                v["step"]["name"] == "materials"
            })
            .await;
        let mut needs: Vec<&str> = vec!["business_licence", "id_front", "id_back"];
        if letter {
            needs.push("authorisation_letter");
        }
        assert_eq!(v["step"]["needs"], json!(needs), "{v}");
        let mut out = Vec::new();
        for (kind, declared, content) in [
            ("business_licence", "application/pdf", pdf(id)),
            ("id_front", "image/jpeg", jpeg(id)),
            ("id_back", "image/png", png(id)),
            (
                "authorisation_letter",
                "application/pdf",
                pdf(&format!("letter {id}")),
            ),
        ] {
            if kind == "authorisation_letter" && !letter {
                continue;
            }
            let (status, m) = self.upload(id, kind, declared, &content).await;
            assert_eq!(status, 201, "{m}");
            assert_eq!(m["size"], content.len(), "{m}");
            assert_eq!(m["sha256"], sha256_hex(&content), "{m}");
            out.push((m["id"].as_str().unwrap().to_owned(), sha256_hex(&content)));
        }
        out
    }

    /// An RA officer's decision: (status, answer).
    async fn review(&self, officer: &str, id: &str, decision: &str, reason: &str) -> (u16, Value) {
        self.act(
            officer,
            id,
            "review",
            json!({"decision": decision, "reason": reason}),
        )
        .await
    }

    /// The legal representative authorises the agent online: a code to their phone, entered
    /// at the materials step.
    async fn authorise_online(&self, id: &str) {
        self.wait(BJCA_ORG, id, "asked for materials", |v| {
            v["step"]["name"] == "materials"
        })
        .await;
        let (status, v) = self.act(BJCA_ORG, id, "authorise", json!({})).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["step"]["challenge"]["to"], "legal_rep", "{v}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            let msgs = self.s.sim.sms_to(ZHANG.2).await;
            let found = msgs.iter().rev().find_map(|m| {
                m["text"]
                    .as_str()
                    .filter(|t| t.contains("授权经办人"))
                    .and(m["code"].as_str())
            });
            if let Some(c) = found {
                break c.to_owned();
            }
            assert!(Instant::now() < deadline, "no authorisation SMS: {msgs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (status, v) = self.input_code(BJCA_ORG, id, &code).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["step"]["needs"],
            json!(["business_licence", "id_front", "id_back"]),
            "the online authorisation stands for the letter: {v}"
        );
    }

    /// Materials, signature, one officer's approval: the issued application.
    async fn bjca_finish(&self, id: &str, agent_phone: &str, before: usize, letter: bool) -> Value {
        self.upload_materials(id, letter).await;
        let v = self.sign(BJCA_ORG, id, agent_phone, before).await;
        assert_eq!(v["status"], "awaiting_review", "{v}");
        let (status, v) = self
            .review(OFFICER, id, "approve", "materials checked")
            .await;
        assert_eq!(status, 200, "{v}");
        self.wait(BJCA_ORG, id, "issued", |v| v["status"] == "issued")
            .await
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

    /// Signs and waits for `issued` (channels without review).
    async fn sign_and_issue(&self, who: &str, id: &str, agent_phone: &str, before: usize) -> Value {
        self.sign(who, id, agent_phone, before).await;
        self.wait(who, id, "issued", |v| v["status"] == "issued")
            .await
    }

    /// Signs the application with the code sent to the agent's phone (its signature SMS number
    /// `before + 1`); returns the application after.
    async fn sign(&self, who: &str, id: &str, agent_phone: &str, before: usize) -> Value {
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
        v
    }
}

const OFFICER: &str = "ra-officer";
const OFFICER_2: &str = "ra-officer-2";

/// SHA-256 (hex) as Python's hashlib computes it.
fn sha256_hex(b: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A small PDF whose text carries `marker` (to look for in the database later).
fn pdf(marker: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% MATERIAL-MARKER {marker}\n%%EOF\n").into_bytes()
}

fn jpeg(marker: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend_from_slice(format!("MATERIAL-MARKER {marker}").as_bytes());
    b
}

fn png(marker: &str) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(format!("MATERIAL-MARKER {marker}").as_bytes());
    b
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
    let apps = Apps::new(&[]);
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
    let done = apps.bjca_finish(&id, LI.2, 0, true).await;
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
    let done = {
        apps.authorise_online(&id).await;
        apps.bjca_finish(&id, LI_BANK_PHONE, 0, false).await
    };
    let ev = evidence_of(&done);
    assert!(
        ev.contains(&"legal_rep.bank_card:bank-card".to_owned()),
        "{done}"
    );
    assert!(
        ev.contains(&"agent.bank_card:bank-card".to_owned()),
        "{done}"
    );
    let letters = apps.sql(&format!(
        "SELECT count(*) FROM application_materials WHERE application_id = '{id}' AND kind = 'authorisation_letter'"
    ));
    assert_eq!(letters, "0", "authorised online, no letter");
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
    let done = apps.bjca_finish(&id, ZHANG.2, 0, false).await;
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
    let org3 = id.clone();

    // Order lookup by USCC: through the agent 李四 only their two applications; through the
    // legal representative all three; a code of another lookup does not open this one.
    let (status, l) = apps
        .call(
            BJCA_ORG,
            "POST",
            "/api/v1/lookups",
            Some(json!({"uscc": ORG.1})),
        )
        .await;
    assert_eq!(status, 201, "{l}");
    assert!(
        !l.to_string().contains(LI.2) && !l.to_string().contains(ZHANG.2),
        "{l}"
    );
    let li = l["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["phone"].as_str().unwrap().ends_with(&LI.2[7..]))
        .unwrap_or_else(|| panic!("李四 listed: {l}"))["agent"]
        .as_str()
        .unwrap()
        .to_owned();
    let lookup = l["id"].as_str().unwrap().to_owned();
    let (status, other) = apps
        .call(
            BJCA_ORG,
            "POST",
            "/api/v1/lookups",
            Some(json!({"uscc": ORG.1})),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let other = other["id"].as_str().unwrap().to_owned();
    let lookup_code = |n: usize, phone: &'static str| {
        let apps = &apps;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let codes: Vec<String> = apps
                    .s
                    .sim
                    .sms_to(phone)
                    .await
                    .iter()
                    .filter(|m| {
                        m["text"]
                            .as_str()
                            .is_some_and(|t| t.contains("order lookup"))
                    })
                    .map(|m| m["code"].as_str().unwrap().to_owned())
                    .collect();
                if codes.len() >= n {
                    return codes[n - 1].clone();
                }
                assert!(Instant::now() < deadline, "no lookup code {n} to {phone}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let verify = |id: String, body: Value| {
        let apps = &apps;
        async move {
            apps.call(
                BJCA_ORG,
                "POST",
                &format!("/api/v1/lookups/{id}/verify"),
                Some(body),
            )
            .await
        }
    };
    let (status, v) = verify(lookup.clone(), json!({"agent": li})).await;
    assert_eq!(status, 200, "{v}");
    let code_a = lookup_code(1, LI.2).await;
    let (status, v) = verify(other.clone(), json!({"agent": li})).await;
    assert_eq!(status, 200, "{v}");
    let code_b = lookup_code(2, LI.2).await;
    if code_a != code_b {
        let (status, e) = verify(other.clone(), json!({"agent": li, "code": code_a})).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (422, Some("otp_wrong")),
            "{e}"
        );
    }
    let (status, v) = verify(lookup.clone(), json!({"agent": li, "code": code_a})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["verified_as"], "agent", "{v}");
    let ids: Vec<&str> = v["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "李四's own two applications: {v}");
    assert!(!ids.contains(&org3.as_str()), "{v}");
    assert_eq!(v["certificates"].as_array().unwrap().len(), 2, "{v}");
    let (status, e) = verify(lookup.clone(), json!({"agent": li, "code": code_a})).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("not_found")),
        "the grant is used: {e}"
    );

    let zhang_before = apps
        .s
        .sim
        .sms_to(ZHANG.2)
        .await
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("order lookup"))
        })
        .count();
    let (status, l) = apps
        .call(
            BJCA_ORG,
            "POST",
            "/api/v1/lookups",
            Some(json!({"uscc": ORG.1})),
        )
        .await;
    assert_eq!(status, 201, "{l}");
    let other = l["id"].as_str().unwrap().to_owned();
    let (status, v) = verify(other.clone(), json!({"agent": "legal_rep"})).await;
    assert_eq!(status, 200, "{v}");
    let code = lookup_code(zhang_before + 1, ZHANG.2).await;
    let (status, v) = verify(other.clone(), json!({"agent": "legal_rep", "code": code})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["verified_as"], "legal_rep", "{v}");
    assert_eq!(
        v["applications"].as_array().unwrap().len(),
        3,
        "all of the organisation's: {v}"
    );
    let (status, e) = apps
        .call(
            GX_ORG,
            "POST",
            "/api/v1/lookups",
            Some(json!({"uscc": ORG.1})),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("not_found")),
        "single-channel: {e}"
    );
}

/// Guangxi: the legal representative's face, then a second application whose face step is
/// skipped (reused within 30 days); bad organisation input is refused with its own code.
#[tokio::test]
async fn gx_organisation_face_then_reused_and_bad_input_refused() {
    let apps = Apps::new(&[]);
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
    let apps = Apps::new(&[("gx-organisation", "window_secs = 259200", "window_secs = 8")]);
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

/// Walks a BJCA application of the example organisation with agent 李四 to the materials step
/// (legal rep by phone, agent by face).
async fn bjca_to_materials(apps: &Apps, stem: &str) -> String {
    let (status, app) = apps.create(BJCA_ORG, org_body(LI, &apps.csr(stem))).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    apps.wait_choice(BJCA_ORG, &id).await;
    apps.choose(BJCA_ORG, &id, json!({"method": "phone-real-name"}))
        .await;
    apps.answer_sms(BJCA_ORG, &id, ZHANG.2).await;
    apps.wait_choice(BJCA_ORG, &id).await;
    apps.choose(BJCA_ORG, &id, json!({"method": "face"})).await;
    let v = apps
        .wait(BJCA_ORG, &id, "showed the agent's face URL", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;
    apps.complete_face(&v).await;
    apps.wait(BJCA_ORG, &id, "asked for materials", |v| {
        v["step"]["name"] == "materials"
    })
    .await;
    id
}

/// The review queue as `who` sees it: (id, materials) of each application, oldest first.
async fn queue(apps: &Apps, who: &str) -> Vec<Value> {
    let (status, q) = apps.call(who, "GET", "/api/v1/review-queue", None).await;
    assert_eq!(status, 200, "{q}");
    q["applications"].as_array().unwrap().clone()
}

/// Materials (bad ones refused with their own code, nothing stored), two-officer review across
/// a kill -9 with the materials intact, an officer deciding twice, a channel deciding, a
/// rejection with a reason notified by SMS and e-mail, and the offline paper path; nothing
/// personal in the database file, its WAL or the log.
#[tokio::test]
async fn materials_review_by_two_officers_across_kill_9_rejection_and_the_offline_path() {
    let apps = Apps::new(&[(
        "bjca-organisation",
        "review = true",
        "review = true\nofficers = 2",
    )]);
    let server = apps.s.demo.serve();
    let id = bjca_to_materials(&apps, "rev1").await;

    // Bad materials: each its own code, nothing stored.
    let (status, e) = apps
        .upload(&id, "id_front", "image/png", &pdf("not a png"))
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (415, Some("material_type_invalid")),
        "{e}"
    );
    let (status, e) = apps
        .upload(&id, "id_front", "image/gif", b"GIF89a....")
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (415, Some("material_type_invalid")),
        "{e}"
    );
    let mut big = jpeg("big");
    big.resize(2 * 1024 * 1024 + 1, 0);
    let (status, e) = apps.upload(&id, "id_front", "image/jpeg", &big).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (413, Some("material_too_large")),
        "{e}"
    );
    let (status, e) = apps.upload(&id, "selfie", "image/jpeg", &jpeg("x")).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("unknown_material_kind")),
        "{e}"
    );
    assert_eq!(apps.sql("SELECT count(*) FROM application_materials"), "0");
    let (status, e) = apps.review(OFFICER, &id, "approve", "early").await;
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("not_awaiting_review")),
        "{e}"
    );

    let materials = apps.upload_materials(&id, true).await;
    let v = apps.sign(BJCA_ORG, &id, LI.2, 0).await;
    assert_eq!(v["status"], "awaiting_review", "{v}");
    let (status, e) = apps.review(BJCA_ORG, &id, "approve", "me").await;
    assert_eq!(
        (status, e["error"].as_str()),
        (403, Some("role_not_allowed")),
        "{e}"
    );
    let (status, _, _) = apps
        .s
        .raw(
            BJCA_ORG,
            "GET",
            &format!("/api/v1/applications/{id}/materials/{}", materials[0].0),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(status, 403, "a channel reads no materials");

    // kill -9 while it waits for review; after the restart it is still queued, materials intact.
    drop(server);
    let server = apps.s.demo.serve();
    let q = queue(&apps, "auditor").await;
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["id"], id.as_str());
    let listed: Vec<(String, String)> = q[0]["materials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let (mut listed, mut uploaded) = (listed, materials.clone());
    listed.sort();
    uploaded.sort();
    assert_eq!(
        listed, uploaded,
        "the queue lists every material with its digest"
    );
    // One entry of the queue: the same view for its readers, refused to a channel.
    let entry_path = format!("/api/v1/review-queue/{id}");
    let (status, entry) = apps.call(OFFICER, "GET", &entry_path, None).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry, q[0], "the entry is the queue's view of it");
    let (status, e) = apps.call(BJCA_ORG, "GET", &entry_path, None).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (403, Some("role_not_allowed")),
        "{e}"
    );
    let (status, e) = apps
        .call("auditor", "GET", "/api/v1/review-queue/app_0123", None)
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );
    for (mid, digest) in &materials {
        let (status, headers, content) = apps
            .s
            .raw(
                OFFICER,
                "GET",
                &format!("/api/v1/applications/{id}/materials/{mid}"),
                "application/json",
                Vec::new(),
            )
            .await;
        assert_eq!(status, 200);
        assert!(headers["content-type"].to_str().unwrap().contains('/'));
        assert_eq!(
            &sha256_hex(&content),
            digest,
            "the content read back matches its digest"
        );
    }

    // Two distinct officers.
    let (status, v) = apps.review(OFFICER, &id, "approve", "licence ok").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "awaiting_review", "one of two approvals: {v}");
    let (status, e) = apps.review(OFFICER, &id, "approve", "again").await;
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("already_reviewed")),
        "{e}"
    );
    let (status, v) = apps.review(OFFICER_2, &id, "approve", "id ok").await;
    assert_eq!(status, 200, "{v}");
    let done = apps
        .wait(BJCA_ORG, &id, "issued", |v| v["status"] == "issued")
        .await;
    check_org_certificate(&apps, &done, "rev1");
    assert!(queue(&apps, OFFICER).await.is_empty());
    let (status, e) = apps.call(OFFICER, "GET", &entry_path, None).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("not_found")),
        "an issued application is no longer an entry of the queue: {e}"
    );

    // The offline path, rejected with a reason: the agent is told by SMS and e-mail.
    let (status, app) = apps.create(BJCA_ORG, org_body(LI, &apps.csr("rev2"))).await;
    assert_eq!(status, 201, "{app}");
    let id2 = app["id"].as_str().unwrap().to_owned();
    apps.wait_choice(BJCA_ORG, &id2).await;
    let (status, v) = apps.act(BJCA_ORG, &id2, "offline", json!({})).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("awaiting_review")),
        "{v}"
    );
    let q = queue(&apps, OFFICER).await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["offline"], true);
    let sms_before = apps.s.sim.sms_to(LI.2).await.len();
    let (status, v) = apps
        .review(OFFICER, &id2, "reject", "营业执照复印件不清晰")
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "rejected", "{v}");
    assert_eq!(v["failure"]["code"], "rejected_by_review", "{v}");
    assert_eq!(v["failure"]["message"], "营业执照复印件不清晰", "{v}");
    let (status, e) = apps.review(OFFICER_2, &id2, "approve", "late").await;
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("not_awaiting_review")),
        "{e}"
    );
    let sms = apps
        .s
        .sim
        .wait_sms(LI.2, sms_before + 1, Duration::from_secs(30))
        .await;
    assert!(
        sms.iter().skip(sms_before).any(|m| m["text"]
            .as_str()
            .is_some_and(|t| t.contains(&id2) && t.contains("rejected"))),
        "{sms:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mails = apps.s.sim.mails_to("agent@example.cn").await;
        if mails.iter().any(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains(&id2) && t.contains("rejected"))
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "no rejection e-mail: {mails:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The offline path approved by two officers: a certificate naming the organisation.
    let (status, app) = apps.create(BJCA_ORG, org_body(LI, &apps.csr("rev3"))).await;
    assert_eq!(status, 201, "{app}");
    let id3 = app["id"].as_str().unwrap().to_owned();
    apps.wait_choice(BJCA_ORG, &id3).await;
    let (status, v) = apps.act(BJCA_ORG, &id3, "offline", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        apps.review(OFFICER_2, &id3, "approve", "paper ok").await.0,
        200
    );
    assert_eq!(
        apps.review(OFFICER, &id3, "approve", "paper ok").await.0,
        200
    );
    let done = apps
        .wait(BJCA_ORG, &id3, "issued", |v| v["status"] == "issued")
        .await;
    assert!(
        evidence_of(&done).contains(&"organisation:offline".to_owned()),
        "{done}"
    );
    check_org_certificate(&apps, &done, "rev3");

    // Nothing in clear: materials, ID numbers and phones in the database file, WAL or log.
    let data = apps.dir().join("data");
    let mut stored = Vec::new();
    for f in ["appliance.db", "appliance.db-wal"] {
        if let Ok(b) = std::fs::read(data.join(f)) {
            stored.extend(b);
        }
    }
    stored.extend(server.log_text().into_bytes());
    for secret in ["MATERIAL-MARKER", ZHANG.1, LI.1, ZHANG.2, LI.2] {
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} found in clear"
        );
    }
}

/// The organisation's agents: the verified agent of an issued application becomes its main
/// agent; the main agent adds an agent, hands the main role over and the old main is removed,
/// each confirmed by the SMS code sent to the (then) main agent; refusals change nothing; the
/// agents' data is sealed in the database file.
#[tokio::test]
async fn the_main_agent_adds_hands_over_and_removes_agents_by_sms_code() {
    const OTHER_USCC: &str = "91350100M000200Y4T";
    let apps = Apps::new(&[]);
    let _server = apps.s.demo.serve();
    let agents_path = format!("/api/v1/organisations/{}/agents", ORG.1);
    let changes_path = format!("/api/v1/organisations/{}/agent-changes", ORG.1);

    // Nothing on record before a certificate is issued.
    let (status, e) = apps.call(GX_ORG, "GET", &agents_path, None).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("organisation_not_found")),
        "{e}"
    );

    let (status, app) = apps.create(GX_ORG, org_body(ZHANG, &apps.csr("ag1"))).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    apps.wait_choice(GX_ORG, &id).await;
    apps.choose(GX_ORG, &id, json!({"method": "face"})).await;
    let v = apps
        .wait(GX_ORG, &id, "showed the face URL", |v| {
            v["step"]["challenge"]["url"].is_string()
        })
        .await;
    apps.complete_face(&v).await;
    let done = apps.sign_and_issue(GX_ORG, &id, ZHANG.2, 0).await;
    check_org_certificate(&apps, &done, "ag1");

    let list = |who: &'static str| {
        let apps = &apps;
        let path = agents_path.clone();
        async move {
            let (status, v) = apps.call(who, "GET", &path, None).await;
            assert_eq!(status, 200, "{v}");
            v["agents"].as_array().unwrap().clone()
        }
    };
    let agents = list(GX_ORG).await;
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["main"], json!(true));
    assert_eq!(agents[0]["phone"], json!("138****8000"), "{agents:?}");
    assert!(!format!("{agents:?}").contains(ZHANG.1), "{agents:?}");
    let zhang = agents[0]["agent_id"].as_str().unwrap().to_owned();

    // Another channel does not see this channel's organisation.
    let (status, e) = apps.call(BJCA_ORG, "GET", &agents_path, None).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("organisation_not_found")),
        "{e}"
    );

    let code_to = |n: usize, phone: &'static str| {
        let apps = &apps;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let codes: Vec<String> = apps
                    .s
                    .sim
                    .sms_to(phone)
                    .await
                    .iter()
                    .filter(|m| {
                        m["text"]
                            .as_str()
                            .is_some_and(|t| t.contains("agent change"))
                    })
                    .map(|m| m["code"].as_str().unwrap().to_owned())
                    .collect();
                if codes.len() >= n {
                    return codes[n - 1].clone();
                }
                assert!(Instant::now() < deadline, "no agent code {n} to {phone}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let ask = |body: Value| {
        let apps = &apps;
        let path = changes_path.clone();
        async move { apps.call(GX_ORG, "POST", &path, Some(body)).await }
    };
    let confirm = |who: &'static str, uscc: &'static str, change: String, code: String| {
        let apps = &apps;
        async move {
            apps.call(
                who,
                "POST",
                &format!("/api/v1/organisations/{uscc}/agent-changes/{change}/confirm"),
                Some(json!({"code": code})),
            )
            .await
        }
    };

    // Refusals before any code is sent.
    let (status, e) = ask(json!({"action": "remove", "agent_id": zhang})).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("cannot_remove_main_agent")),
        "{e}"
    );
    let (status, e) = ask(json!({"action": "hand_over", "agent_id": "agt_nobody"})).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("unknown_agent")),
        "{e}"
    );
    let mut li = person(LI);
    li["email"] = json!("li@example.cn");
    let (status, e) = apps
        .call(
            BJCA_ORG,
            "POST",
            &changes_path,
            Some(json!({"action": "add", "agent": li})),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("organisation_not_found")),
        "{e}"
    );

    // Add 李四: the code goes to the main agent 张三.
    let (status, c) = ask(json!({"action": "add", "agent": li})).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["code_sent_to"], json!("138****8000"), "{c}");
    let change = c["id"].as_str().unwrap().to_owned();
    let code = code_to(1, ZHANG.2).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, e) = confirm(GX_ORG, ORG.1, change.clone(), wrong.into()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (422, Some("otp_wrong")),
        "{e}"
    );
    let (status, e) = confirm(GX_ORG, OTHER_USCC, change.clone(), code.clone()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("change_not_for_organisation")),
        "{e}"
    );
    let (status, e) = confirm(BJCA_ORG, ORG.1, change.clone(), code.clone()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );
    assert_eq!(
        list(GX_ORG).await.len(),
        1,
        "nothing changed by the refusals"
    );
    let (status, v) = confirm(GX_ORG, ORG.1, change, code).await;
    assert_eq!(status, 200, "{v}");
    let agents = v["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2, "{v}");
    let li_id = v["agent_id"].as_str().unwrap().to_owned();
    assert!(agents
        .iter()
        .any(|a| a["agent_id"] == json!(li_id) && a["main"] == json!(false)));

    // Hand the main role over to 李四 (code to 张三).
    let (status, c) = ask(json!({"action": "hand_over", "agent_id": li_id})).await;
    assert_eq!(status, 201, "{c}");
    let code = code_to(2, ZHANG.2).await;
    let (status, v) = confirm(GX_ORG, ORG.1, c["id"].as_str().unwrap().into(), code).await;
    assert_eq!(status, 200, "{v}");
    let agents = list(GX_ORG).await;
    let main: Vec<_> = agents.iter().filter(|a| a["main"] == json!(true)).collect();
    assert_eq!(main.len(), 1, "{agents:?}");
    assert_eq!(main[0]["agent_id"], json!(li_id));

    // Remove 张三, now an ordinary agent: the code goes to the new main agent 李四.
    let (status, c) = ask(json!({"action": "remove", "agent_id": zhang})).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["code_sent_to"], json!("138****8001"), "{c}");
    let code = code_to(1, LI.2).await;
    let (status, v) = confirm(GX_ORG, ORG.1, c["id"].as_str().unwrap().into(), code).await;
    assert_eq!(status, 200, "{v}");
    let agents = list(GX_ORG).await;
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["agent_id"], json!(li_id));
    let (status, e) = ask(json!({"action": "remove", "agent_id": zhang})).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("unknown_agent")),
        "{e}"
    );

    // An order lookup by USCC lists 李四 from the record (masked) though they never applied.
    let (status, l) = apps
        .call(
            GX_ORG,
            "POST",
            "/api/v1/lookups",
            Some(json!({"uscc": ORG.1})),
        )
        .await;
    assert_eq!(status, 201, "{l}");
    assert!(
        l["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["phone"] == json!("138****8001") && a["legal_rep"] == json!(false)),
        "{l}"
    );

    // Every applied change is audited; 李四's data is not in plain text in the database.
    assert_eq!(
        apps.sql(
            "SELECT count(*) FROM audit_log WHERE action IN ('organisation.agent_add', \
             'organisation.agent_hand_over', 'organisation.agent_remove', \
             'organisation.agent_recorded')"
        ),
        "4"
    );
    let data = apps.dir().join("data");
    for file in ["appliance.db", "appliance.db-wal"] {
        let Ok(bytes) = std::fs::read(data.join(file)) else {
            continue;
        };
        for needle in [LI.0, LI.1, LI.2, "li@example.cn"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in plain text in {file}"
            );
        }
    }
}
