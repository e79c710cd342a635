//! `bank-card` through the real host, in a worker process, against `vendor-sim`: success and
//! mismatch, card_invalid, card_lost, card_restricted, invalid_card, invalid_phone, otp_wrong,
//! otp_attempts_exceeded, otp_expired, vendor_unavailable, cancelled.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod plugin_support;

use plugin_support::*;

fn card_holder(card: &str, phone: &str) -> Value {
    json!({"name": "张三", "id_number": ZHANG_ID, "phone": phone, "bank_card": card})
}

async fn bank_flow(sim: &Sim) -> Flow {
    let config = json!({"bank_url": sim.base(), "max_attempts": 2, "max_retries": 1,
                        "retry_after_ms": 1000, "code_ttl_secs": 120});
    Flow::load(spec(
        sim,
        "bank-card",
        "bank_card",
        Isolation::Worker,
        config,
    ))
    .await
}

#[tokio::test]
async fn bank_card_success_in_worker() {
    let sim = Sim::start();
    let f = bank_flow(&sim).await;
    let v = f
        .start(
            "vrf_b1",
            card_holder("6222 0200 0000 0000 018", ZHANG_PHONE),
        )
        .await;
    let payload = challenge(&v, ChallengeKind::SmsCode);
    assert_eq!(payload["card_masked"], "6222***********0018");
    let (code, sender) = sim.latest_code(ZHANG_PHONE).await;
    assert_eq!(
        sender, "bank",
        "the bank sent the code to the reserved phone"
    );
    let v = f.input("vrf_b1", ChallengeKind::SmsCode, &code).await;
    assert_verified(
        &v,
        "L2",
        &[
            ApplicantField::Name,
            ApplicantField::IdNumber,
            ApplicantField::Phone,
            ApplicantField::BankCard,
        ],
    );
    assert!(
        f.runner.plugin().health().await.is_some(),
        "ran in a worker"
    );
}

#[tokio::test]
async fn bank_card_every_failure_code() {
    let sim = Sim::start();
    let f = bank_flow(&sim).await;
    let cases = [
        (
            "vrf_b2",
            card_holder("6222020000000000018", "13800138001"),
            Outcome::Mismatch,
        ),
        (
            "vrf_b3",
            card_holder("6222020000000000091", ZHANG_PHONE),
            Outcome::CardInvalid,
        ),
        (
            "vrf_b4",
            card_holder("6222020000000000026", ZHANG_PHONE),
            Outcome::CardLost,
        ),
        (
            "vrf_b5",
            card_holder("6222020000000000034", ZHANG_PHONE),
            Outcome::CardRestricted,
        ),
        (
            "vrf_b6",
            card_holder("6222", ZHANG_PHONE),
            Outcome::InvalidCard,
        ),
        (
            "vrf_b7",
            card_holder("6222020000000000018", "1380013800"),
            Outcome::InvalidPhone,
        ),
    ];
    for (id, applicant, want) in cases {
        assert_failed(&f.start(id, applicant).await, want);
    }

    // wrong code, then attempts exceeded
    f.start("vrf_b8", card_holder("6222020000000000018", ZHANG_PHONE))
        .await;
    let (code, _) = sim.latest_code(ZHANG_PHONE).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let v = f.input("vrf_b8", ChallengeKind::SmsCode, wrong).await;
    assert_eq!(
        (v.status, outcome(&v)),
        (Status::AwaitingUser, Some(Outcome::OtpWrong))
    );
    assert_failed(
        &f.input("vrf_b8", ChallengeKind::SmsCode, wrong).await,
        Outcome::OtpAttemptsExceeded,
    );

    // expired
    f.start("vrf_b9", card_holder("6222020000000000018", ZHANG_PHONE))
        .await;
    assert_failed(&f.run_out("vrf_b9", 60).await, Outcome::OtpExpired);

    // bank down
    sim.fail_next("bank", 2, 502).await; // first try + 1 retry
    f.start("vrf_b10", card_holder("6222020000000000018", ZHANG_PHONE))
        .await;
    assert_failed(&f.run_out("vrf_b10", 5).await, Outcome::VendorUnavailable);

    // cancelled
    f.start("vrf_b11", card_holder("6222020000000000018", ZHANG_PHONE))
        .await;
    assert_failed(
        &f.deliver("vrf_b11", Event::Cancel).await,
        Outcome::Cancelled,
    );
}
