//! `face` through the real host (in-process) against `vendor-sim`: success by polling and by
//! vendor callback (which only triggers a pull), liveness_failed, not_same_person, no_record,
//! cancelled (vendor page and our UI), expired (vendor token and session lifetime),
//! invalid_id_number, vendor_unavailable.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod plugin_support;

use plugin_support::*;

async fn face_flow(sim: &Sim, callback: Option<&str>) -> Flow {
    let mut config = json!({"face_url": sim.base(), "poll_interval_ms": 2000,
                            "session_ttl_secs": 600, "max_retries": 1, "retry_after_ms": 1000});
    if let Some(url) = callback {
        config["callback_url"] = json!(url);
    }
    Flow::load(spec(sim, "face", "face", Isolation::InProcess, config)).await
}

/// Starts a face verification and returns the page path the person opens.
async fn face_start(f: &Flow, id: &str, name: &str, id_number: &str) -> String {
    let v = f
        .start(id, json!({"name": name, "id_number": id_number}))
        .await;
    let payload = challenge(&v, ChallengeKind::FaceUrl);
    assert!(payload["biz_token"].as_str().is_some_and(|t| !t.is_empty()));
    let url = payload["url"].as_str().expect("url");
    url.split_once("/face/page/")
        .map(|(_, token)| format!("/face/page/{token}"))
        .expect("a face page URL")
}

#[tokio::test]
async fn face_success_by_polling() {
    let sim = Sim::start();
    let f = face_flow(&sim, None).await;
    let page = face_start(&f, "vrf_f1", "张三", ZHANG_ID).await;
    assert_eq!(http(&sim.addr, "GET", &page, None).await.0, 200);
    f.advance(2).await; // poll: still pending
    assert_eq!(
        f.runner.view("vrf_f1").await.unwrap().status,
        Status::AwaitingUser
    );
    assert_eq!(
        sim.post(&format!("{page}/complete"), json!({})).await.0,
        200
    );
    let v = f.run_out("vrf_f1", 2).await;
    assert_verified(&v, "L3", &[ApplicantField::Name, ApplicantField::IdNumber]);
    assert_eq!(v.result.unwrap().evidence["similarity"], 96.5);
}

#[tokio::test]
async fn face_success_by_callback() {
    let sim = Sim::start();
    let mut inbox = Inbox::start().await;
    let f = face_flow(&sim, Some(&inbox.url)).await;
    let page = face_start(&f, "vrf_f2", "张三", ZHANG_ID).await;
    assert_eq!(
        sim.post(&format!("{page}/complete"), json!({})).await.0,
        200
    );
    let body = inbox.next().await;
    assert_eq!(body["type"], "face_result");
    let v = f.deliver("vrf_f2", Event::Callback { body }).await;
    assert_verified(&v, "L3", &[ApplicantField::Name, ApplicantField::IdNumber]);
}

#[tokio::test]
async fn face_every_failure_code() {
    let sim = Sim::start();
    let f = face_flow(&sim, None).await;
    let completed = [
        (
            "vrf_f3",
            "王五",
            "110105199002020026",
            Outcome::LivenessFailed,
        ),
        (
            "vrf_f4",
            "赵六",
            "110105200003030037",
            Outcome::NotSamePerson,
        ),
        ("vrf_f5", "某人", "110105198505050046", Outcome::NoRecord),
    ];
    for (id, name, number, want) in completed {
        let page = face_start(&f, id, name, number).await;
        sim.post(&format!("{page}/complete"), json!({})).await;
        assert_failed(&f.run_out(id, 2).await, want);
    }
    // cancelled on the vendor page
    let page = face_start(&f, "vrf_f6", "张三", ZHANG_ID).await;
    sim.post(&format!("{page}/cancel"), json!({})).await;
    assert_failed(&f.run_out("vrf_f6", 2).await, Outcome::Cancelled);
    // the vendor expired the token
    let page = face_start(&f, "vrf_f7", "张三", ZHANG_ID).await;
    let token = page.trim_start_matches("/face/page/");
    sim.post("/_sim/face/expire", json!({"biz_token": token}))
        .await;
    assert_failed(&f.run_out("vrf_f7", 2).await, Outcome::Expired);
    // nobody came within the session lifetime
    face_start(&f, "vrf_f8", "张三", ZHANG_ID).await;
    assert_failed(&f.run_out("vrf_f8", 120).await, Outcome::Expired);
    // cancelled by the user in our UI
    face_start(&f, "vrf_f9", "张三", ZHANG_ID).await;
    assert_failed(
        &f.deliver("vrf_f9", Event::Cancel).await,
        Outcome::Cancelled,
    );
    // invalid ID number
    let v = f
        .start(
            "vrf_f10",
            json!({"name": "张三", "id_number": "110105194912310020"}),
        )
        .await;
    assert_failed(&v, Outcome::InvalidIdNumber);
    // vendor down
    sim.fail_next("face", 2, 503).await;
    f.start("vrf_f11", json!({"name": "张三", "id_number": ZHANG_ID}))
        .await;
    assert_failed(&f.run_out("vrf_f11", 5).await, Outcome::VendorUnavailable);
}
