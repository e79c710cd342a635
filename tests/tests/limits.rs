//! Limits that protect money and people, end to end: the real `ca-appliance` with its plugin
//! workers and a real `vendor-sim`. A start over a subject's SMS cooldown, a subject's face
//! session limit, or the channel's start limit answers 429 `rate_limited` with `Retry-After`,
//! and the simulator (counting per endpoint) receives nothing beyond the limit. The counters
//! survive a restart, and the database keys subjects without storing them in clear.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

mod vendor_setup;

use serde_json::{json, Value};
use vendor_setup::{person, Setup, ZHANG};

const CARRIER: &str = "POST /carrier/v1/verify";
const SMS_SEND: &str = "POST /sms/v1/send";
const FACE_SESSION: &str = "POST /face/v1/sessions";
const REGISTRY: &str = "POST /registry/v1/verify";

fn limited_setup() -> Setup {
    Setup::new(None, |config, _public| {
        let config = config.replacen(
            "profiles = [\"personal\", \"organisation\"]\n",
            "profiles = [\"personal\", \"organisation\"]\nlimits = { starts = { per_hour = 4 } }\n",
            1,
        );
        format!(
            "{config}\n[verification.subject_limits]\nsms = {{ per_hour = 5, cooldown_secs = 3600 }}\nface = {{ per_hour = 1 }}\n"
        )
    })
}

/// Asserts a 429 `rate_limited` for `limit`/`scope` with a `Retry-After` of 1..=`max` seconds.
fn assert_limited(
    (status, headers, v): &(u16, hyper::HeaderMap, Value),
    limit: &str,
    scope: &str,
    max: u64,
) {
    assert_eq!(*status, 429, "{v}");
    assert_eq!(v["error"], "rate_limited", "{v}");
    assert_eq!(
        (v["limit"].as_str(), v["scope"].as_str()),
        (Some(limit), Some(scope)),
        "{v}"
    );
    let retry: u64 = headers
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=max).contains(&retry),
        "Retry-After {retry} not in 1..={max}"
    );
    assert_eq!(v["retry_after_secs"].as_u64(), Some(retry));
    let text = v.to_string();
    assert!(!text.contains(ZHANG.1) && !text.contains(ZHANG.2), "{text}");
}

fn org() -> Value {
    json!({"org_name": "示例科技有限公司", "uscc": "91350100M000100Y43",
        "legal_rep_name": "张三", "legal_rep_id": ZHANG.1})
}

#[tokio::test]
async fn limits_answer_429_with_retry_after_and_nothing_reaches_the_vendor_beyond_them() {
    let s = limited_setup();
    let mut server = s.demo.serve();

    // 1. A phone verification: one carrier check, one SMS.
    let (status, _, v) = s.start("phone-real-name", person(ZHANG)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], "awaiting_user");
    assert_eq!(
        (
            s.sim.received(CARRIER).await,
            s.sim.received(SMS_SEND).await
        ),
        (1, 1)
    );

    // 2. Again for the same phone inside the resend cooldown: refused up front, nothing sent.
    let refused = s.start("phone-real-name", person(ZHANG)).await;
    assert_limited(&refused, "sms", "subject", 3600);
    assert!(
        refused.2["retry_after_secs"].as_u64().unwrap() > 3000,
        "{}",
        refused.2
    );
    assert_eq!(
        (
            s.sim.received(CARRIER).await,
            s.sim.received(SMS_SEND).await
        ),
        (1, 1)
    );

    // 3. One face session per hour for this ID number.
    let (status, _, v) = s.start("face", person(ZHANG)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(s.sim.received(FACE_SESSION).await, 1);
    assert_limited(
        &s.start("face", person(ZHANG)).await,
        "face",
        "subject",
        3600,
    );
    assert_eq!(s.sim.received(FACE_SESSION).await, 1, "no second session");

    // 4. The channel may start four verifications an hour (refused ones do not count).
    for _ in 0..2 {
        let (status, _, v) = s.start("org-registry", org()).await;
        assert_eq!(status, 201, "{v}");
    }
    assert_eq!(s.sim.received(REGISTRY).await, 2);
    assert_limited(
        &s.start("org-registry", org()).await,
        "starts",
        "channel",
        3600,
    );
    assert_eq!(
        s.sim.received(REGISTRY).await,
        2,
        "nothing beyond the limit"
    );

    // 5. The counters are in the database: a restart forgets nothing.
    drop(server);
    server = s.demo.serve();
    assert_limited(
        &s.start("phone-real-name", person(ZHANG)).await,
        "sms",
        "subject",
        3600,
    );
    assert_limited(
        &s.start("org-registry", org()).await,
        "starts",
        "channel",
        3600,
    );
    assert_eq!(
        (
            s.sim.received(CARRIER).await,
            s.sim.received(SMS_SEND).await,
            s.sim.received(REGISTRY).await
        ),
        (1, 1, 2)
    );
    assert!(server.is_running());
    drop(server);

    // 6. Subjects are keyed, never stored in clear.
    let db = s.demo.path().join("data/appliance.db");
    let dump = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT scope, class FROM limit_events; SELECT scopes FROM verification_scopes;")
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8(dump.stdout).unwrap();
    assert!(
        dump.contains("subject:") && dump.contains("channel:demo"),
        "{dump}"
    );
    for clear in [ZHANG.1, ZHANG.2, "91350100M000100Y43", "8000"] {
        assert!(!dump.contains(clear), "{clear} in clear: {dump}");
    }
}
