//! `phone-real-name` through the real host against `vendor-sim`: success (in-process and in a
//! worker) and every failure code: mismatch, phone_not_real_name, no_record, invalid_id_number,
//! invalid_phone, otp_wrong, otp_attempts_exceeded, otp_expired, vendor_unavailable (5xx and
//! timeout retried by timer first), cancelled; plus a wrong injected secret and a host off the
//! egress allowlist failing cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod plugin_support;

use plugin_support::*;

fn person(name: &str, id: &str, phone: &str) -> Value {
    json!({"name": name, "id_number": id, "phone": phone, "bank_card": "6222020000000000018"})
}

async fn phone_flow(sim: &Sim, isolation: Isolation, extra: Value) -> Flow {
    let mut config = json!({
        "carrier_url": sim.base(), "sms_url": sim.base(),
        "max_attempts": 3, "max_retries": 2, "retry_after_ms": 1000, "timeout_ms": 1000,
    });
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Flow::load(spec(
        sim,
        "phone-real-name",
        "phone_real_name",
        isolation,
        config,
    ))
    .await
}

async fn phone_success(isolation: Isolation) {
    let sim = Sim::start();
    let f = phone_flow(&sim, isolation, json!({})).await;
    let v = f
        .start("vrf_p1", person("张三", ZHANG_ID, "+86 138 0013 8000"))
        .await;
    let payload = challenge(&v, ChallengeKind::SmsCode);
    assert_eq!(payload["phone_masked"], "138****8000");
    let (code, sender) = sim.latest_code(ZHANG_PHONE).await;
    assert_eq!(sender, "sms");
    let v = f.input("vrf_p1", ChallengeKind::SmsCode, &code).await;
    assert_verified(
        &v,
        "L2",
        &[
            ApplicantField::Name,
            ApplicantField::IdNumber,
            ApplicantField::Phone,
        ],
    );
    let evidence = &v.result.as_ref().unwrap().evidence;
    assert!(evidence["vendor_request_id"]
        .as_str()
        .unwrap()
        .starts_with("cr_"));
}

#[tokio::test]
async fn phone_real_name_success_in_process() {
    phone_success(Isolation::InProcess).await;
}

#[tokio::test]
async fn phone_real_name_success_in_worker() {
    phone_success(Isolation::Worker).await;
}

#[tokio::test]
async fn phone_real_name_carrier_failures_and_invalid_inputs() {
    let sim = Sim::start();
    let f = phone_flow(&sim, Isolation::InProcess, json!({})).await;
    let cases = [
        (
            "vrf_p2",
            person("张三", ZHANG_ID, "13800138003"),
            Outcome::Mismatch,
        ),
        (
            "vrf_p3",
            person("李四", "110105198001010016", "13800138001"),
            Outcome::PhoneNotRealName,
        ),
        (
            "vrf_p4",
            person("张三", ZHANG_ID, "13900000000"),
            Outcome::NoRecord,
        ),
        (
            "vrf_p5",
            person("张三", "110105194912310021", ZHANG_PHONE),
            Outcome::InvalidIdNumber,
        ),
        (
            "vrf_p6",
            person("张三", ZHANG_ID, "12800138000"),
            Outcome::InvalidPhone,
        ),
    ];
    for (id, applicant, want) in cases {
        assert_failed(&f.start(id, applicant).await, want);
    }
    assert_eq!(
        sim.calls("carrier").await,
        3,
        "invalid inputs never reach the carrier"
    );
    assert_eq!(
        sim.calls("sms").await,
        0,
        "no code is sent after a failed check"
    );
}

#[tokio::test]
async fn phone_real_name_wrong_codes_then_exceeded_and_wrong_then_right() {
    let sim = Sim::start();
    let f = phone_flow(&sim, Isolation::InProcess, json!({})).await;
    f.start("vrf_p7", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    let (code, _) = sim.latest_code(ZHANG_PHONE).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        let v = f.input("vrf_p7", ChallengeKind::SmsCode, wrong).await;
        assert_eq!(v.status, Status::AwaitingUser);
        assert_eq!(outcome(&v), Some(Outcome::OtpWrong));
        challenge(&v, ChallengeKind::SmsCode);
    }
    let v = f.input("vrf_p7", ChallengeKind::SmsCode, wrong).await;
    assert_failed(&v, Outcome::OtpAttemptsExceeded);

    f.start("vrf_p8", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    let (code, _) = sim.latest_code(ZHANG_PHONE).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let v = f.input("vrf_p8", ChallengeKind::SmsCode, wrong).await;
    assert_eq!(outcome(&v), Some(Outcome::OtpWrong));
    let v = f.input("vrf_p8", ChallengeKind::SmsCode, &code).await;
    assert_eq!(v.status, Status::Succeeded);
}

#[tokio::test]
async fn phone_real_name_code_expires_by_timer_and_by_late_input() {
    let sim = Sim::start();
    let f = phone_flow(&sim, Isolation::InProcess, json!({"code_ttl_secs": 60})).await;
    f.start("vrf_p9", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    assert_eq!(f.advance(30).await, 0, "nothing due yet");
    assert_eq!(
        f.runner.view("vrf_p9").await.unwrap().status,
        Status::AwaitingUser
    );
    assert_eq!(f.advance(30).await, 1, "the expiry timer fires");
    assert_failed(&f.runner.view("vrf_p9").await.unwrap(), Outcome::OtpExpired);

    f.start("vrf_p10", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    let (code, _) = sim.latest_code(ZHANG_PHONE).await;
    f.clock.fetch_add(61, Ordering::SeqCst); // the timer has not been fired yet
    let v = f.input("vrf_p10", ChallengeKind::SmsCode, &code).await;
    assert_failed(&v, Outcome::OtpExpired);
}

#[tokio::test]
async fn phone_real_name_vendor_faults_retry_then_unavailable() {
    let sim = Sim::start();
    let f = phone_flow(&sim, Isolation::InProcess, json!({})).await;
    // one 503: retried after the timer, then the flow goes on
    sim.fail_next("carrier", 1, 503).await;
    let v = f
        .start("vrf_p11", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    assert_eq!(v.status, Status::Pending);
    assert_eq!(v.timers.len(), 1);
    f.advance(1).await;
    let v = f.runner.view("vrf_p11").await.unwrap();
    challenge(&v, ChallengeKind::SmsCode);
    // a timeout (delay past timeout_ms) is retried too
    sim.delay_next("sms", 1, 2500).await;
    f.start("vrf_p12", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    f.advance(1).await;
    let v = f.runner.view("vrf_p12").await.unwrap();
    challenge(&v, ChallengeKind::SmsCode);
    // persistent 5xx: two retries, then vendor_unavailable
    sim.fail_next("carrier", 3, 503).await; // first try + 2 retries
    f.start("vrf_p13", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    let v = f.run_out("vrf_p13", 5).await;
    assert_failed(&v, Outcome::VendorUnavailable);
}

#[tokio::test]
async fn phone_real_name_cancel() {
    let sim = Sim::start();
    let f = phone_flow(&sim, Isolation::InProcess, json!({})).await;
    f.start("vrf_p14", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    assert_failed(
        &f.deliver("vrf_p14", Event::Cancel).await,
        Outcome::Cancelled,
    );
}

#[tokio::test]
async fn wrong_secret_and_off_allowlist_host_fail_cleanly() {
    let sim = Sim::start();
    let config = json!({"carrier_url": sim.base(), "sms_url": sim.base()});
    let mut s = spec(
        &sim,
        "phone-real-name",
        "phone_real_name",
        Isolation::InProcess,
        config.clone(),
    );
    s.secrets
        .insert("carrier_api_key".into(), Secret::new("not-the-key"));
    let f = Flow::load(s).await;
    let v = f
        .start("vrf_s1", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    assert_failed(&v, Outcome::VendorUnavailable); // 401: not retried

    let mut s = spec(
        &sim,
        "phone-real-name",
        "phone_real_name",
        Isolation::InProcess,
        config,
    );
    s.egress_hosts = vec!["127.0.0.1:1".into()];
    let f = Flow::load(s).await;
    let v = f
        .start("vrf_s2", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    assert_failed(&v, Outcome::VendorUnavailable); // refused_host
                                                   // the 401 is not counted by the simulator (key checked first); the refused one never left
    assert_eq!(sim.calls("carrier").await, 0);
}

/// Regression: two *different* plugin libraries loaded in-process in one process must stay
/// apart. The host used to dlopen `/proc/self/fd/N` and close the fd, so the next load reused N
/// and glibc returned the first library (fixed in plugin-host f5823b9 by keeping the fd open).
#[tokio::test]
async fn two_different_plugins_in_process_in_one_process() {
    let sim = Sim::start();
    let face_config = json!({"face_url": sim.base()});
    let face = Flow::load(spec(
        &sim,
        "face",
        "face",
        Isolation::InProcess,
        face_config,
    ))
    .await;
    let phone = phone_flow(&sim, Isolation::InProcess, json!({})).await;
    assert_eq!(phone.runner.plugin().manifest().name, "phone-real-name");
    assert_eq!(face.runner.plugin().manifest().name, "face");
    let v = phone
        .start("vrf_x1", person("张三", ZHANG_ID, ZHANG_PHONE))
        .await;
    challenge(&v, ChallengeKind::SmsCode);
}
