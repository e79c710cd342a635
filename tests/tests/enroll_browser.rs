//! The reference enrollment page in a real headless Chromium: an applicant (李四, whose phone is
//! not real-name) fills the Chinese form, solves the appliance's picture captchas, falls back to
//! the bank card, answers the SMS codes vendor-sim delivered, completes face on the simulator's
//! own page (a second tab), confirms the verified phone, and sees the issued certificate; the
//! key was made by WebCrypto (non-extractable) and the certificate verifies with `openssl`.
//! From the issued screen the applicant then changes the phone (SHECA `phone_change`: the new
//! phone is not real-name, so the bank card and face), and the page shows the new phone masked.
//! Screenshots of each screen go to `target/screenshots/enroll-*.png`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod application_support;
mod vendor_setup;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use application_support::{captcha_reader, check_certificate, LI};
use serde_json::json;
use system_tests::browser::Browser;
use system_tests::public_get;
use vendor_setup::Setup;

const LI_CARD: &str = "6222020000000000042";
const LI_BANK_PHONE: &str = "13800138011";

/// The visible step of the page, by the input it shows.
const STEP: &str = "return (() => {
  const shown = (id) => { const e = document.getElementById(id); return e && e.offsetParent !== null; };
  if (['issued', 'phone-changed'].includes(document.body.dataset.state)) return document.body.dataset.state;
  for (const id of ['captcha', 'sms-code', 'bank-card', 'face-link', 'confirm-phone']) {
    if (shown(id)) return id;
  }
  return 'busy';
})();";

/// Plays the applicant on the page until its `body.dataset.state` is `until`: answers each
/// screen it shows (captcha read from the image, bank card, SMS codes from vendor-sim, face on
/// the simulator's page in a second tab, phone confirmation); records the screens in `seen`
/// (a screenshot `{prefix}-step-*` each) and counts the codes to the bank-reserved phone.
async fn walk(
    browser: &Browser,
    s: &Setup,
    until: &str,
    prefix: &str,
    seen: &mut BTreeSet<String>,
    codes_used: &mut usize,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(
            Instant::now() < deadline,
            "the flow did not reach {until}; saw {seen:?}"
        );
        let step = browser.script(STEP, json!([])).await;
        let step = step.as_str().unwrap().to_owned();
        if step != "busy" && seen.insert(step.clone()) {
            browser.screenshot(&format!("{prefix}-step-{step}")).await;
        }
        match step.as_str() {
            st if st == until => break,
            "captcha" => {
                let src = browser
                    .script(
                        "return document.getElementById('captcha-img').src",
                        json!([]),
                    )
                    .await;
                let b64 = src.as_str().unwrap().split_once(",").unwrap().1.to_owned();
                let answer = captcha_reader::read(&b64);
                browser.type_into("#captcha", &answer).await;
                browser.click("#submit-captcha").await;
                // Either a new captcha (misread) or the next step replaces this image.
                browser
                    .wait_for(
                        "the captcha to be answered",
                        &format!(
                            "(e => !e || e.src !== {})(document.getElementById('captcha-img'))",
                            json!(src)
                        ),
                    )
                    .await;
            }
            "sms-code" => {
                // After the fallback every code goes to the bank-reserved phone.
                let msgs = s
                    .sim
                    .wait_sms(LI_BANK_PHONE, *codes_used + 1, Duration::from_secs(30))
                    .await;
                let code = msgs[*codes_used]["code"].as_str().unwrap().to_owned();
                *codes_used += 1;
                browser.type_into("#sms-code", &code).await;
                browser.click("#submit-sms").await;
                browser
                    .wait_for(
                        "the code to be taken",
                        "!document.getElementById('sms-code')",
                    )
                    .await;
            }
            "bank-card" => {
                let text = browser
                    .script(
                        "return document.getElementById('step-text').textContent",
                        json!([]),
                    )
                    .await;
                assert!(text.as_str().unwrap().contains("银行卡"), "{text}");
                browser.type_into("#bank-card", LI_CARD).await;
                browser.type_into("#bank-phone", LI_BANK_PHONE).await;
                browser.click("#submit-bank").await;
                browser
                    .wait_for(
                        "the bank card form to go",
                        "!document.getElementById('bank-card')",
                    )
                    .await;
            }
            "face-link" => {
                let before = browser.windows().await;
                browser.click("#face-link").await;
                let deadline = Instant::now() + Duration::from_secs(20);
                let tab = loop {
                    let now = browser.windows().await;
                    if let Some(t) = now.iter().find(|h| !before.contains(h)) {
                        break t.clone();
                    }
                    assert!(Instant::now() < deadline, "the face page did not open");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                browser.switch_to(&tab).await;
                browser
                    .wait_for(
                        "the simulator's face page",
                        "document.title === 'Liveness check'",
                    )
                    .await;
                browser
                    .screenshot(&format!("{prefix}-face-simulator"))
                    .await;
                browser.click("form[action$='/complete'] button").await;
                browser
                    .wait_for(
                        "the face verdict",
                        "document.body && document.body.innerText.includes('status')",
                    )
                    .await;
                browser.close_window().await;
                browser.switch_to(&before[0]).await;
                browser
                    .wait_for(
                        "the page to leave the face step",
                        "!document.getElementById('face-link')",
                    )
                    .await;
            }
            "confirm-phone" => {
                let text = browser
                    .script(
                        "return document.getElementById('step-text').textContent",
                        json!([]),
                    )
                    .await;
                // The bank-reserved phone, masked, is the one to confirm.
                assert!(text.as_str().unwrap().contains("138****8011"), "{text}");
                browser.type_into("#confirm-phone", LI_BANK_PHONE).await;
                browser.click("#submit-confirm").await;
                browser
                    .wait_for(
                        "the confirmation to be sent",
                        "!document.getElementById('confirm-phone')",
                    )
                    .await;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test]
async fn an_applicant_completes_the_personal_flow_with_the_bank_card_fallback_in_chromium() {
    let s = Setup::new(None, |config, _| config);
    let text = std::fs::read_to_string(s.demo.config()).unwrap();
    assert!(
        text.contains("[enroll]") && text.contains("reference-enroll"),
        "{text}"
    );
    let _server = s.demo.serve();

    // The page is served with a strict policy: no inline script, nothing from elsewhere.
    let (status, headers, _) = public_get(s.demo.public, "/enroll/").await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    let browser = Browser::start().await;
    browser
        .goto(&format!("http://{}/enroll/", s.demo.public))
        .await;
    browser.screenshot("enroll-1-form").await;
    browser.type_into("#name", LI.0).await;
    browser.type_into("#id-number", LI.1).await;
    browser.type_into("#phone", LI.2).await;
    browser.click("#agree").await;
    browser.click("#submit-start").await;

    let mut seen = BTreeSet::new();
    let mut codes_used = 0;
    walk(&browser, &s, "issued", "enroll", &mut seen, &mut codes_used).await;
    for step in [
        "captcha",
        "bank-card",
        "sms-code",
        "face-link",
        "confirm-phone",
    ] {
        assert!(seen.contains(step), "the flow showed {step}: {seen:?}");
    }
    browser.screenshot("enroll-9-issued").await;

    let read = |id: &str| {
        let b = &browser;
        let id = id.to_owned();
        async move {
            b.script(
                "return document.getElementById(arguments[0]).textContent",
                json!([id]),
            )
            .await
            .as_str()
            .unwrap()
            .to_owned()
        }
    };
    // Masked details only: the name, ID number and phone never appear in full.
    assert_eq!(read("cert-name").await, "李*");
    let id = read("cert-id").await;
    assert!(id.contains('*') && !id.contains(LI.1), "{id}");
    assert_eq!(read("cert-phone").await, "138****8011");
    let page = browser
        .script("return document.body.innerText", json!([]))
        .await;
    let page = page.as_str().unwrap();
    assert!(!page.contains(LI.1) && !page.contains(LI_CARD), "{page}");
    // The private key was made non-extractable by WebCrypto.
    let extractable = browser
        .script("return document.body.dataset.keyExtractable", json!([]))
        .await;
    assert_eq!(extractable, json!("false"));

    let pem = read("cert-pem").await;
    let serial = read("cert-serial").await;
    let (subject, _, _) = check_certificate(s.demo.path(), &pem, "enroll-cert");
    assert_eq!(subject, "CN=李四,C=CN");
    // Issued through the page's own channel.
    let (ok, out, err) = system_tests::run(std::process::Command::new("python3").args([
        "-c",
        "import sqlite3,sys\nprint(sqlite3.connect(sys.argv[1]).execute('select channel from certificates where serial=?',(sys.argv[2],)).fetchone()[0])",
        s.demo.path().join("data/appliance.db").to_str().unwrap(),
        &serial,
    ]));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "reference-enroll");

    // Phone change from the issued screen (SHECA phone_change): the new phone is not real-name,
    // so the bank card, its code to the reserved phone, and face; the certificate stays.
    browser.click("#to-phone-change").await;
    browser
        .wait_for(
            "the phone change form",
            "(e => e && e.offsetParent !== null)(document.getElementById('change-phone'))",
        )
        .await;
    assert_eq!(
        browser
            .script(
                "return document.getElementById('change-serial').value",
                json!([])
            )
            .await,
        json!(serial)
    );
    browser.type_into("#change-phone", LI.2).await;
    browser.screenshot("enroll-change-1-form").await;
    browser.click("#submit-change").await;
    let mut seen = BTreeSet::new();
    walk(
        &browser,
        &s,
        "phone-changed",
        "enroll-change",
        &mut seen,
        &mut codes_used,
    )
    .await;
    for step in ["captcha", "bank-card", "sms-code", "face-link"] {
        assert!(
            seen.contains(step),
            "the phone change showed {step}: {seen:?}"
        );
    }
    browser.screenshot("enroll-change-9-done").await;
    assert_eq!(read("changed-phone").await, "138****8011");
    assert_eq!(read("changed-serial").await, serial);
    let page = browser
        .script("return document.body.innerText", json!([]))
        .await;
    assert!(!page.as_str().unwrap().contains(LI_CARD), "{page}");
    let (ok, out, err) = system_tests::run(std::process::Command::new("python3").args([
        "-c",
        "import sqlite3,sys\ndb=sqlite3.connect(sys.argv[1])\n\
print(db.execute(\"select kind, status, target_serial from applications where kind='phone_change'\").fetchall())\n\
print(db.execute(\"select count(*) from audit_log where action='subject.verified_phone'\").fetchone()[0])",
        s.demo.path().join("data/appliance.db").to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("[('phone_change', 'completed', '{serial}')]\n2"),
        "one completed phone change of the certificate; the verified phone set twice"
    );
}
