//! The console's review screens with real parts: the demo's `bjca-organisation` channel (set to
//! two officers), organisation applications that upload their materials (a real PNG, a PDF)
//! and switch to the offline paper path, reviewed in headless Chromium by RA officers who log
//! in with their client certificates. An auditor sees no forms and no material contents; a
//! form without the officer's CSRF token is refused and changes nothing; the first officer's
//! approval waits for a second officer, the second issues a certificate (`openssl verify`); a
//! rejection's reason reaches the channel through the JSON API. The PDF is framed inline on the
//! officer's page (served inline as `application/pdf` under a no-script CSP); an HTML file
//! labelled `application/pdf` is refused at upload. Screenshots go to
//! `target/screenshots/console-review-*.png`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod application_support;
mod vendor_setup;

use std::process::Command;

use application_support::{Apps, LI, ZHANG};
use serde_json::{json, Value};
use system_tests::browser::Browser;
use system_tests::{python, run};
use vendor_setup::Setup;

const BJCA_ORG: &str = "channel-bjca-organisation";
const ORG: (&str, &str) = ("示例科技有限公司", "91350100M000100Y43");
const OFFICER: &str = "ra-officer";
const OFFICER_2: &str = "ra-officer-2";
const REASON: &str = "营业执照复印件不清晰";

fn person(p: (&str, &str, &str)) -> Value {
    json!({"name": p.0, "id_type": "resident_id", "id_number": p.1, "phone": p.2})
}

/// A real PNG (`w`x`h`, one colour) written by Python's zlib, so a browser can decode it.
fn png(w: u32, h: u32) -> Vec<u8> {
    let script = "import zlib,struct,sys\n\
        w,h=int(sys.argv[1]),int(sys.argv[2])\n\
        raw=b''.join(b'\\x00'+bytes([23,50,77]*w) for _ in range(h))\n\
        c=lambda t,d: struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d))\n\
        sys.stdout.buffer.write(b'\\x89PNG\\r\\n\\x1a\\n'+c(b'IHDR',struct.pack('>IIBBBBB',w,h,8,2,0,0,0))+c(b'IDAT',zlib.compress(raw))+c(b'IEND',b''))";
    python(script, &[&w.to_string(), &h.to_string()])
}

/// A minimal valid one-page PDF (Helvetica text `Business licence <marker>`, exact xref
/// offsets), written by hand so a PDF viewer renders it.
fn pdf(marker: &str) -> Vec<u8> {
    let text = format!("BT /F1 20 Tf 20 90 Td (Business licence {marker}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 360 200] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.push_str(&format!("{} 0 obj\n{o}\nendobj\n", i + 1));
    }
    let xref = out.len();
    out.push_str(&format!(
        "xref\n0 {}\n0000000000 65535 f \n",
        objects.len() + 1
    ));
    for o in offsets {
        out.push_str(&format!("{o:010} 00000 n \n"));
    }
    out.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    out.into_bytes()
}

/// Uploads one material as the channel: the status and the answer.
async fn try_upload(
    apps: &Apps,
    id: &str,
    kind: &str,
    declared: &str,
    content: &[u8],
) -> (u16, Value) {
    apps.upload_material(BJCA_ORG, id, kind, declared, content)
        .await
}

/// Uploads one material as the channel; returns its answer.
async fn upload(apps: &Apps, id: &str, kind: &str, declared: &str, content: &[u8]) -> Value {
    let (status, v) = try_upload(apps, id, kind, declared, content).await;
    assert_eq!(status, 201, "{v}");
    v
}

/// An organisation application (agent 李四) with its materials, switched to the offline
/// paper path: it waits for review. Returns its id.
async fn queued_application(apps: &Apps, stem: &str) -> String {
    let mut agent = person(LI);
    agent["email"] = json!("agent@example.cn");
    let body = json!({
        "kind": "new",
        "profile": "organisation",
        "csr": apps.csr(stem),
        "subject": {
            "type": "organisation", "name": ORG.0, "uscc": ORG.1,
            "legal_rep": person(ZHANG), "agent": agent,
        },
    });
    let (status, app) = apps.create(BJCA_ORG, body).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    apps.wait(BJCA_ORG, &id, "offered a choice", |v| {
        v["status"] == "awaiting_choice"
    })
    .await;
    // An HTML page labelled a PDF is refused by its bytes and stored nowhere.
    let forged = b"<!doctype html><script>alert(document.cookie)</script>";
    let (status, v) = try_upload(apps, &id, "business_licence", "application/pdf", forged).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (415, Some("material_type_invalid")),
        "{v}"
    );
    upload(apps, &id, "business_licence", "application/pdf", &pdf(stem)).await;
    upload(apps, &id, "id_front", "image/png", &png(64, 40)).await;
    upload(apps, &id, "id_back", "image/png", &png(48, 30)).await;
    let (status, v) = apps.act(BJCA_ORG, &id, "offline", json!({})).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("awaiting_review")),
        "{v}"
    );
    id
}

/// A console request as `who` (form bodies URL-encoded): status, headers, body text.
async fn console(
    apps: &Apps,
    who: &str,
    method: &str,
    path: &str,
    form: &str,
) -> (u16, hyper::HeaderMap, String) {
    let (status, headers, body) = apps
        .s
        .raw(
            who,
            method,
            path,
            "application/x-www-form-urlencoded",
            form.as_bytes().to_vec(),
        )
        .await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The CSRF token a console page hands its caller.
fn csrf_of(html: &str) -> String {
    let start = html
        .find("name=\"csrf-token\" content=\"")
        .expect("a csrf meta")
        + 27;
    html[start..start + 64].to_owned()
}

/// The number of decisions recorded for `id` in the review queue (as the auditor reads it).
async fn reviews_of(apps: &Apps, id: &str) -> usize {
    let (status, q) = apps
        .call("auditor", "GET", "/api/v1/review-queue", None)
        .await;
    assert_eq!(status, 200, "{q}");
    let app = q["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("{id} is queued: {q}"))
        .clone();
    app["reviews"].as_array().unwrap().len()
}

#[tokio::test]
async fn officers_review_an_organisation_in_chromium_two_approve_and_a_rejection_reaches_the_channel(
) {
    let s = Setup::new(None, |config, _| config);
    let file = s.demo.path().join("channels/bjca-organisation.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("review = true"), "{text}");
    std::fs::write(
        &file,
        text.replace("review = true", "review = true\nofficers = 2"),
    )
    .unwrap();
    let apps = Apps::from_setup(s);
    let _server = apps.s.demo.serve();
    let tls = apps.dir().join("tls");
    let base = format!("https://localhost:{}", apps.s.demo.api.port());
    let id = queued_application(&apps, "review-a").await;
    let detail = format!("/console/review/{id}");

    // Over HTTP: every staff role sees the queue; the PDF is framed inline for an officer only.
    for who in ["operator", "auditor", OFFICER] {
        let (status, _, html) = console(&apps, who, "GET", "/console/review", "").await;
        assert_eq!(status, 200, "{who}: {html}");
        assert!(html.contains(&format!("data-id=\"{id}\"")), "{who}: {html}");
        assert!(!html.contains(LI.1) && !html.contains(ZHANG.1), "{html}");
    }
    let (status, _, html) =
        console(&apps, OFFICER, "GET", "/console/review?kind=renewal", "").await;
    assert!(
        status == 200 && !html.contains(&id),
        "the kind filter: {html}"
    );
    let (status, _, html) = console(
        &apps,
        OFFICER,
        "GET",
        "/console/review?older_than_hours=x",
        "",
    )
    .await;
    assert!(status == 400 && html.contains("invalid_age"), "{html}");
    let (_, queue_headers, _) = console(&apps, OFFICER, "GET", "/console/review", "").await;
    let (_, headers, html) = console(&apps, OFFICER, "GET", &detail, "").await;
    let marker = "<iframe class=\"material-pdf\" id=\"material-business_licence\" src=\"";
    let pdf_href = html
        .split_once(marker)
        .and_then(|(_, rest)| rest.split('"').next())
        .unwrap_or_else(|| panic!("a PDF frame: {html}"))
        .to_owned();
    assert!(
        pdf_href.starts_with(&format!("{detail}/materials/mat_")),
        "{pdf_href}"
    );
    // The review page alone may frame the console's own documents; no page runs script.
    let csp = |h: &hyper::HeaderMap| h["content-security-policy"].to_str().unwrap().to_owned();
    let page_csp = csp(&headers);
    assert!(
        page_csp.contains("frame-src 'self'")
            && page_csp.contains("default-src 'none'")
            && !page_csp.contains("script-src"),
        "{page_csp}"
    );
    assert!(
        !csp(&queue_headers).contains("frame-src"),
        "other pages keep the console's CSP: {}",
        csp(&queue_headers)
    );
    let (status, headers, content) = apps
        .s
        .raw(
            OFFICER,
            "GET",
            &pdf_href,
            "application/x-www-form-urlencoded",
            Vec::new(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(content, pdf("review-a"), "the uploaded PDF, byte for byte");
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline"),
        "{headers:?}"
    );
    let pdf_csp = csp(&headers);
    for directive in [
        "default-src 'none'",
        "script-src 'none'",
        "frame-ancestors 'self'",
        "sandbox",
    ] {
        assert!(pdf_csp.contains(directive), "{directive} in {pdf_csp}");
    }
    let (status, q) = apps
        .call("auditor", "GET", "/api/v1/review-queue", None)
        .await;
    let queued = q["applications"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == id.as_str()).cloned())
        .unwrap_or_else(|| panic!("{id} queued: {q}"));
    assert_eq!(
        (status, queued["materials"].as_array().map(Vec::len)),
        (200, Some(3)),
        "the forged PDF was not stored: {q}"
    );
    for who in ["auditor", "operator"] {
        let (status, _, html) = console(&apps, who, "GET", &pdf_href, "").await;
        assert_eq!(status, 403, "{who} reads no material: {html}");
    }

    // CSRF: without a token, or with the auditor's, an officer's decision is refused and
    // nothing is recorded; the auditor with its own token is refused by the review API.
    let (_, _, auditor_page) = console(&apps, "auditor", "GET", &detail, "").await;
    let auditor_token = csrf_of(&auditor_page);
    let action = format!("{detail}/decision");
    for form in [
        "decision=approve&reason=ok".to_owned(),
        format!("csrf={auditor_token}&decision=approve&reason=ok"),
    ] {
        let (status, _, html) = console(&apps, OFFICER, "POST", &action, &form).await;
        assert_eq!(status, 403, "{html}");
        assert!(html.contains("csrf_invalid"), "{html}");
    }
    let (status, _, html) = console(
        &apps,
        "auditor",
        "POST",
        &action,
        &format!("csrf={auditor_token}&decision=approve&reason=ok"),
    )
    .await;
    assert!(status == 403 && html.contains("role_not_allowed"), "{html}");
    assert_eq!(reviews_of(&apps, &id).await, 0, "no decision was recorded");

    // The auditor in Chromium: the application and its evidence, no forms, no contents.
    let auditor = Browser::start_as(&tls, "auditor").await;
    auditor.goto(&format!("{base}{detail}")).await;
    auditor
        .wait_for("the application", "document.getElementById('app-id')")
        .await;
    assert_eq!(
        auditor
            .script(
                "return [document.querySelectorAll('form.decision').length, \
                 document.querySelectorAll('img.material, iframe').length, \
                 !!document.getElementById('read-only'), \
                 !!document.getElementById('materials-officers-only')]",
                json!([])
            )
            .await,
        json!([0, 0, true, true])
    );
    auditor.screenshot("console-review-auditor").await;
    drop(auditor);

    // The first officer: the queue, filtered; the application with the ID images shown; approves.
    let officer = Browser::start_as(&tls, OFFICER).await;
    officer.goto(&format!("{base}/console/review")).await;
    officer
        .type_into("#filter input[name=channel]", "bjca-organisation")
        .await;
    officer.click("#filter button").await;
    officer
        .wait_for(
            "the filtered queue",
            &format!("document.querySelector('#queue a[href$=\"{id}\"]') && location.search.includes('channel=')"),
        )
        .await;
    officer.screenshot("console-review-queue").await;
    officer.click(&format!("#queue a[href$='{id}']")).await;
    officer
        .wait_for(
            "the ID images to load",
            "[...document.querySelectorAll('img.material')].length === 2 && \
             [...document.querySelectorAll('img.material')].every(i => i.complete && i.naturalWidth > 0)",
        )
        .await;
    assert_eq!(
        officer
            .script(
                "return [document.getElementById('material-id_front').naturalWidth, \
                 document.getElementById('material-id_back').naturalWidth]",
                json!([])
            )
            .await,
        json!([64, 48]),
        "the images are the uploaded ones"
    );
    let evidence = officer
        .script(
            "return document.getElementById('evidence').innerText",
            json!([]),
        )
        .await;
    assert!(
        evidence.as_str().unwrap().contains("org-registry"),
        "{evidence}"
    );
    let page_text = officer
        .script("return document.body.innerText", json!([]))
        .await;
    let page_text = page_text.as_str().unwrap();
    for number in [LI.1, LI.2, ZHANG.1, ZHANG.2] {
        assert!(!page_text.contains(number), "{number} shown unmasked");
    }
    // The PDF is shown in its frame: the framed document is the material, as a PDF.
    officer.enter_frame("#material-business_licence").await;
    officer
        .wait_for(
            "the PDF in its frame",
            "document.contentType === 'application/pdf'",
        )
        .await;
    assert_eq!(
        officer.script("return location.pathname", json!([])).await,
        json!(pdf_href)
    );
    officer.leave_frame().await;
    // Chromium's PDF viewer (its built-in extension, in a frame of its own) opened it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let targets = officer.cdp("Target.getTargets", json!({})).await;
        let viewer = targets["targetInfos"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["url"].as_str().is_some_and(|u| {
                    u.starts_with("chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/")
                })
            });
        if viewer {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the PDF viewer did not open the material: {targets}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    officer.screenshot("console-review-application").await;
    officer
        .script(
            "document.getElementById('material-business_licence').scrollIntoView()",
            json!([]),
        )
        .await;
    officer.screenshot("console-review-pdf").await;
    officer
        .type_into("#approve input[name=reason]", "营业执照与身份证件一致")
        .await;
    officer.click("#approve button").await;
    officer
        .wait_for(
            "waiting for a second officer",
            "document.getElementById('waiting')",
        )
        .await;
    assert_eq!(
        officer
            .script(
                "return [document.getElementById('waiting').textContent, \
                 document.querySelectorAll('form.decision').length, \
                 document.getElementById('outcome').dataset.status]",
                json!([])
            )
            .await,
        json!(["Waiting for a second officer", 0, "awaiting_review"])
    );
    officer.screenshot("console-review-waiting").await;
    drop(officer);
    assert_eq!(reviews_of(&apps, &id).await, 1);

    // The second officer sees the wait and approves: the certificate is issued.
    let second = Browser::start_as(&tls, OFFICER_2).await;
    second.goto(&format!("{base}{detail}")).await;
    second
        .wait_for("the approve form", "document.getElementById('approve')")
        .await;
    assert!(second
        .script(
            "return document.getElementById('waiting').textContent",
            json!([])
        )
        .await
        .as_str()
        .unwrap()
        .contains("second officer"));
    second.click("#approve button").await;
    second
        .wait_for("the outcome", "document.getElementById('outcome')")
        .await;
    second.screenshot("console-review-approved").await;
    let done = apps
        .wait(BJCA_ORG, &id, "issued", |v| v["status"] == "issued")
        .await;
    let pem_file = apps.dir().join("review-a.pem");
    std::fs::write(&pem_file, done["certificate"]["pem"].as_str().unwrap()).unwrap();
    let (ok, out, err) = run(Command::new("openssl").current_dir(apps.dir()).args([
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/organisation.pem",
        pem_file.to_str().unwrap(),
    ]));
    assert!(ok && out.contains(": OK"), "openssl verify: {out}{err}");
    let (ok, out, _) = run(Command::new("openssl").args([
        "x509",
        "-noout",
        "-subject",
        "-nameopt",
        "utf8",
        "-in",
        pem_file.to_str().unwrap(),
    ]));
    assert!(
        ok && out.contains(ORG.0),
        "the subject names the organisation: {out}"
    );

    // A second application, rejected in the console with a reason the channel reads.
    let id_b = queued_application(&apps, "review-b").await;
    second.goto(&format!("{base}/console/review/{id_b}")).await;
    second.type_into("#reject input[name=reason]", REASON).await;
    second.screenshot("console-review-reject").await;
    second.click("#reject button").await;
    second
        .wait_for(
            "the rejection",
            "(document.getElementById('outcome') || {dataset: {}}).dataset.status === 'rejected'",
        )
        .await;
    let (status, v) = apps.get(BJCA_ORG, &id_b).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "rejected", "{v}");
    assert_eq!(v["failure"]["code"], "rejected_by_review", "{v}");
    assert_eq!(v["failure"]["message"], REASON, "{v}");
}
