//! Vendor callbacks, end to end: the real `ca-appliance` (face plugin in a worker, polling only
//! once an hour) and a real `vendor-sim` that signs its callbacks. A face completed on the
//! simulator's page reaches the verification through the signed callback on the public listener,
//! with no poll; a callback with a bad signature, an old timestamp or no signature is refused and
//! changes nothing; a replayed callback is refused. Signatures made in the test come from
//! Python's `hmac` module, an implementation independent of the appliance's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod vendor_setup;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use system_tests::{json as parse, public_request, python};
use vendor_setup::{person, Setup, ZHANG};

const SECRET: &str = "demo-callback-secret-4f1c9a";
const FACE_RESULT: &str = "POST /face/v1/result";

/// Hex HMAC-SHA256 of `ts.body` under `secret`, computed by Python.
fn python_sign(secret: &str, ts: &str, body: &str) -> String {
    let out = python(
        "import hmac, hashlib, sys; k, ts, b = sys.argv[1:4]; \
         print(hmac.new(k.encode(), (ts + '.' + b).encode(), hashlib.sha256).hexdigest())",
        &[secret, ts, body],
    );
    String::from_utf8(out).unwrap().trim().to_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POSTs a callback to the public listener; returns status and JSON body.
async fn callback(
    s: &Setup,
    plugin: &str,
    id: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, _, bytes) = public_request(
        s.demo.public,
        "POST",
        &format!("/callbacks/{plugin}/{id}"),
        headers,
        body.as_bytes().to_vec(),
    )
    .await;
    (status, parse(&bytes))
}

fn face_setup() -> Setup {
    Setup::new(Some(SECRET), |config, public| {
        let config = config.replacen(
            "config = { face_url = ",
            &format!(
                "config = {{ callback_url = \"http://{public}/callbacks/face/{{verification_id}}\", poll_interval_ms = 3600000, face_url = "
            ),
            1,
        );
        config.replacen(
            "secrets = { face_api_key = ",
            "secrets = { callback_secret = { file = \"secrets/callback-secret\" }, face_api_key = ",
            1,
        )
    })
}

#[tokio::test]
async fn a_face_completed_on_the_vendor_page_arrives_by_signed_callback_and_forgeries_change_nothing(
) {
    let s = face_setup();
    let mut server = s.demo.serve();

    let (status, _, v) = s.start("face", person(ZHANG)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], "awaiting_user");
    let id = v["id"].as_str().unwrap().to_owned();
    let token = v["challenges"][0]["payload"]["biz_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"type": "face_result", "biz_token": token, "status": "done"}).to_string();
    let fresh = now().to_string();

    // Forgeries: another secret, an old timestamp (correctly signed), no signature at all.
    let wrong = python_sign("not-the-secret", &fresh, &body);
    let old = (now() - 3600).to_string();
    let old_sig = python_sign(SECRET, &old, &body);
    let attempts: [Vec<(&str, &str)>; 3] = [
        vec![("x-ca-timestamp", &fresh), ("x-ca-signature", &wrong)],
        vec![("x-ca-timestamp", &old), ("x-ca-signature", &old_sig)],
        vec![],
    ];
    for headers in &attempts {
        let (status, v) = callback(&s, "face", &id, headers, &body).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (401, Some("callback_unauthenticated")),
            "{headers:?}: {v}"
        );
    }
    // ...changed nothing: still waiting, and the vendor was never asked for the verdict.
    assert_eq!(s.get(&id).await["status"], "awaiting_user");
    assert_eq!(s.sim.received(FACE_RESULT).await, 0);

    // The person completes the check on the vendor's page; vendor-sim POSTs its signed callback.
    let (status, v) = s
        .sim
        .http("POST", &format!("/face/page/{token}/complete"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    // Polling is hourly: only the callback can finish it within this deadline.
    let v = s.wait_for(&id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(v["outcome"], "verified");
    assert_eq!(
        s.sim.received(FACE_RESULT).await,
        1,
        "one verdict read, on the callback"
    );

    // A valid callback is accepted once (the verification has finished: nothing to do) ...
    let ts = now().to_string();
    let sig = python_sign(SECRET, &ts, &body);
    let headers = [
        ("x-ca-timestamp", ts.as_str()),
        ("x-ca-signature", sig.as_str()),
    ];
    let (status, v) = callback(&s, "face", &id, &headers, &body).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("already_finished")),
        "{v}"
    );
    // ... and its replay is refused, after a restart too (signatures are kept in the database).
    drop(server);
    server = s.demo.serve();
    let (status, v) = callback(&s, "face", &id, &headers, &body).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("callback_replayed")),
        "{v}"
    );

    // A plugin without a callback secret takes no callbacks; an unknown verification is 404.
    let (status, _) = callback(&s, "bank-card", &id, &headers, &body).await;
    assert_eq!(status, 404);
    let other = json!({"type": "face_result", "biz_token": token, "n": 2}).to_string();
    let ts = now().to_string();
    let sig = python_sign(SECRET, &ts, &other);
    let headers = [
        ("x-ca-timestamp", ts.as_str()),
        ("x-ca-signature", sig.as_str()),
    ];
    let (status, v) = callback(&s, "face", "vrf_nope", &headers, &other).await;
    assert_eq!(status, 404, "{v}");
    assert!(server.is_running());
}
