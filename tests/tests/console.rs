//! The operator console over real mTLS with the demo's staff certificates: an auditor reads but
//! cannot revoke, a form without the caller's CSRF token is refused and changes nothing, an
//! operator revokes through the console and OCSP (queried with `openssl ocsp`) then answers
//! revoked, the audit page shows `audit verify`'s result, and a channel is kept out.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

use std::process::Command;

use serde_json::json;
use system_tests::browser::Browser;
use system_tests::*;

/// One console request as `who`; returns status and the body as text.
async fn page(
    demo: &DemoDir,
    who: &str,
    method: &str,
    path: &str,
    form: Option<&str>,
) -> (u16, String) {
    let (status, body) = api_request(
        demo.api,
        demo.client_tls(who),
        method,
        path,
        form.map(|f| f.as_bytes().to_vec()),
    )
    .await
    .expect("console request");
    (status, String::from_utf8(body).expect("UTF-8 page"))
}

/// The CSRF token a console page hands its caller.
fn csrf_of(html: &str) -> String {
    let start = html
        .find("name=\"csrf-token\" content=\"")
        .expect("a csrf meta")
        + 27;
    html[start..start + 64].to_owned()
}

/// `openssl ocsp` against the public listener: the status word of `serial`.
fn ocsp_status(demo: &DemoDir, serial: &str) -> String {
    let (ok, out, err) = run(Command::new("openssl").current_dir(demo.path()).args([
        "ocsp",
        "-issuer",
        "ca/personal.pem",
        "-serial",
        &format!("0x{serial}"),
        "-url",
        &format!("http://{}/ocsp", demo.public),
        "-CAfile",
        "ca/root.pem",
        "-no_nonce",
    ]));
    assert!(ok, "openssl ocsp: {out}{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("0x{serial}")) || l.contains(": "))
        .unwrap_or_default();
    line.rsplit(": ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn console_roles_csrf_and_a_revocation_that_ocsp_reports() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "console", "ec:P-256");
    let issued = demo.issue_personal("operator", &csr).await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let cert_page = format!("/console/certificates/{serial}");
    let action = format!("{cert_page}/status");
    assert_eq!(ocsp_status(&demo, &serial), "good");

    // Every staff role opens the console; the page carries the strict policy headers' content.
    for who in ["operator", "ra-officer", "auditor"] {
        let (status, html) = page(&demo, who, "GET", "/console/", None).await;
        assert_eq!(status, 200, "{who}: {html}");
        assert!(
            html.contains("id=\"readiness\"") && html.contains("id=\"plugins\""),
            "{html}"
        );
        assert!(!html.contains("<script"), "no script in the console");
        assert!(
            html.contains("ca_issuances_total"),
            "metrics at a glance: {html}"
        );
    }
    let (status, html) = page(&demo, "operator", "GET", "/console/review", None).await;
    assert_eq!(status, 200, "{html}");

    // Search finds it by serial prefix and status; the subject is masked.
    let (status, html) = page(
        &demo,
        "auditor",
        "GET",
        &format!("/console/certificates?serial={}&status=valid", &serial[..8]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&serial), "{html}");
    assert!(
        html.contains("CN=T*") && !html.contains("Test Person"),
        "{html}"
    );
    let (status, html) = page(
        &demo,
        "auditor",
        "GET",
        "/console/certificates?from=yesterday",
        None,
    )
    .await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("invalid_date"), "{html}");

    // An auditor sees the certificate without forms, and a POST with its own valid token is
    // refused by the JSON API's authorisation.
    let (status, html) = page(&demo, "auditor", "GET", &cert_page, None).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        !html.contains("id=\"revoke\""),
        "no revoke form for an auditor"
    );
    let token = csrf_of(&html);
    let (status, html) = page(
        &demo,
        "auditor",
        "POST",
        &action,
        Some(&format!("csrf={token}&action=revoke&reason=keyCompromise")),
    )
    .await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("role_not_allowed"), "{html}");

    // The operator without a token, and with the auditor's token: refused, nothing changed.
    for form in [
        "action=revoke&reason=keyCompromise".to_owned(),
        format!("csrf={token}&action=revoke&reason=keyCompromise"),
    ] {
        let (status, html) = page(&demo, "operator", "POST", &action, Some(&form)).await;
        assert_eq!(status, 403, "{html}");
        assert!(html.contains("csrf_invalid"), "{html}");
    }
    assert_eq!(ocsp_status(&demo, &serial), "good");

    // The operator revokes through the form; OCSP answers revoked.
    let (status, html) = page(&demo, "operator", "GET", &cert_page, None).await;
    assert!(status == 200 && html.contains("id=\"revoke\""), "{html}");
    let token = csrf_of(&html);
    let (status, html) = page(
        &demo,
        "operator",
        "POST",
        &action,
        Some(&format!("csrf={token}&action=revoke&reason=keyCompromise")),
    )
    .await;
    assert_eq!(status, 303, "{html}");
    assert_eq!(ocsp_status(&demo, &serial), "revoked");
    let (_, html) = page(&demo, "ra-officer", "GET", &cert_page, None).await;
    assert!(
        html.contains("status-revoked") && html.contains("revoke"),
        "{html}"
    );
    assert!(
        html.contains("operator:operator"),
        "the history names the operator: {html}"
    );

    // The audit page: verify's result and the revocation row.
    let (status, html) = page(&demo, "auditor", "GET", "/console/audit", None).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("data-result=\"ok\""), "{html}");
    assert!(html.contains(&serial), "{html}");

    // A channel is not staff.
    let (status, html) = page(&demo, "channel-demo", "GET", "/console/", None).await;
    assert_eq!(status, 403, "{html}");
}

#[tokio::test]
async fn staff_use_the_console_in_chromium_with_their_client_certificates() {
    let demo = DemoDir::create();
    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "browser", "ec:P-256");
    let issued = demo.issue_personal("operator", &csr).await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let tls = demo.path().join("tls");
    let base = format!("https://localhost:{}", demo.api.port());
    let text = |b: &'static str| {
        format!("return (document.querySelector({b:?}) || {{}}).textContent || ''")
    };

    // The auditor: the certificate without forms.
    let auditor = Browser::start_as(&tls, "auditor").await;
    auditor
        .goto(&format!("{base}/console/certificates/{serial}"))
        .await;
    auditor
        .wait_for("the certificate page", "document.getElementById('serial')")
        .await;
    assert_eq!(
        auditor.script(&text("#who"), json!([])).await,
        json!("auditor (auditor)")
    );
    assert_eq!(
        auditor
            .script("return !!document.getElementById('revoke')", json!([]))
            .await,
        json!(false)
    );
    auditor.screenshot("console-auditor-certificate").await;
    drop(auditor);

    // The operator: overview, search, the certificate, revoke through the real form.
    let operator = Browser::start_as(&tls, "operator").await;
    operator.goto(&format!("{base}/console/")).await;
    operator
        .wait_for("the overview", "document.getElementById('readiness')")
        .await;
    assert_eq!(
        operator.script(&text("#who"), json!([])).await,
        json!("operator (operator)")
    );
    operator.screenshot("console-overview").await;
    operator.goto(&format!("{base}/console/certificates")).await;
    operator
        .type_into("#search input[name=serial]", &serial[..6])
        .await;
    operator.click("#search button").await;
    operator
        .wait_for(
            "the search result",
            &format!("document.querySelector('#results a[href$=\"{serial}\"]')"),
        )
        .await;
    operator.screenshot("console-search").await;
    operator
        .click(&format!("#results a[href$='{serial}']"))
        .await;
    operator
        .wait_for("the certificate page", "document.getElementById('revoke')")
        .await;
    operator
        .script(
            "document.querySelector('#revoke select').value = 'superseded'",
            json!([]),
        )
        .await;
    operator.screenshot("console-certificate").await;
    operator.click("#revoke button").await;
    operator
        .wait_for(
            "the revoked status",
            "(document.getElementById('status') || {}).textContent === 'revoked'",
        )
        .await;
    operator.screenshot("console-revoked").await;
    assert_eq!(ocsp_status(&demo, &serial), "revoked");
    operator.goto(&format!("{base}/console/audit")).await;
    operator
        .wait_for("the audit page", "document.getElementById('verify')")
        .await;
    assert_eq!(
        operator
            .script(
                "return document.getElementById('verify').dataset.result",
                json!([])
            )
            .await,
        json!("ok")
    );
    operator.screenshot("console-audit").await;
    operator.goto(&format!("{base}/console/review")).await;
    operator
        .wait_for("the review queue", "document.getElementById('queue')")
        .await;
    operator.screenshot("console-review").await;
}
