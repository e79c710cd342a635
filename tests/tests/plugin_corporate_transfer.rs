//! `corporate-transfer` through the real host, in a worker process, against `vendor-sim`: success
//! a day later inside the 72 h window, wrong_amount, attempts_exceeded, account_invalid (closed,
//! frozen), account_name_mismatch (by poll and by callback), expired, vendor_unavailable,
//! cancelled.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod plugin_support;

use plugin_support::*;

const ORG: &str = "示例科技有限公司";
const ACCOUNT: &str = "110060000000001";

fn company(name: &str, account: &str) -> Value {
    json!({"org_name": name, "bank_account": account, "bank_name": "示例银行", "uscc": "91350100M000100Y43"})
}

async fn transfer_flow(sim: &Sim, callback: Option<&str>) -> Flow {
    let mut config = json!({"payout_url": sim.base(), "max_attempts": 2, "poll_interval_ms": 60000,
                            "max_retries": 1, "retry_after_ms": 1000});
    if let Some(url) = callback {
        config["callback_url"] = json!(url);
    }
    Flow::load(spec(
        sim,
        "corporate-transfer",
        "corporate_transfer",
        Isolation::Worker,
        config,
    ))
    .await
}

#[tokio::test]
async fn corporate_transfer_success_in_worker() {
    let sim = Sim::start();
    let f = transfer_flow(&sim, None).await;
    let v = f.start("vrf_c1", company(ORG, ACCOUNT)).await;
    let payload = challenge(&v, ChallengeKind::DepositAmount);
    let remark = payload["remark"].as_str().expect("remark").to_owned();
    assert!(remark.starts_with("CA"));
    let deposits = sim.get(&format!("/_sim/deposits?account={ACCOUNT}")).await;
    let statement = deposits["deposits"][0]["remark"].as_str().expect("remark");
    assert!(statement.starts_with(&format!("{remark} ")), "{statement}");
    assert_eq!(
        v.challenges[0].expires_at, "2026-11-27T12:00:00Z",
        "72 h window"
    );
    let (amount, _) = sim.deposit(ACCOUNT).await;
    f.clock.fetch_add(24 * 3600, Ordering::SeqCst); // a day later
    let v = f
        .input("vrf_c1", ChallengeKind::DepositAmount, &amount)
        .await;
    assert_verified(
        &v,
        "L2",
        &[
            ApplicantField::OrgName,
            ApplicantField::BankAccount,
            ApplicantField::BankName,
        ],
    );
}

#[tokio::test]
async fn corporate_transfer_every_failure_code() {
    let sim = Sim::start();
    let f = transfer_flow(&sim, None).await;

    // wrong amount, then attempts exceeded
    f.start("vrf_c2", company(ORG, ACCOUNT)).await;
    let (_, fen) = sim.deposit(ACCOUNT).await;
    let (entry, _) = sim.deposit(ACCOUNT).await;
    let code = entry.split_whitespace().nth(1).expect("code");
    let wrong = format!("0.{:02} {code}", if fen == 99 { 1 } else { fen + 1 });
    let v = f
        .input("vrf_c2", ChallengeKind::DepositAmount, &wrong)
        .await;
    assert_eq!(
        (v.status, outcome(&v)),
        (Status::AwaitingUser, Some(Outcome::WrongAmount))
    );
    challenge(&v, ChallengeKind::DepositAmount);
    assert_failed(
        &f.input("vrf_c2", ChallengeKind::DepositAmount, &wrong)
            .await,
        Outcome::AttemptsExceeded,
    );

    // asynchronous payout failures, seen by the poll timer
    let cases = [
        (
            "vrf_c3",
            company(ORG, "110060000000002"),
            Outcome::AccountInvalid,
        ),
        (
            "vrf_c4",
            company(ORG, "110060000000003"),
            Outcome::AccountInvalid,
        ),
        (
            "vrf_c5",
            company("别的有限公司", ACCOUNT),
            Outcome::AccountNameMismatch,
        ),
    ];
    for (id, applicant, want) in cases {
        let v = f.start(id, applicant).await;
        challenge(&v, ChallengeKind::DepositAmount); // the payout was accepted, it fails later
        assert_failed(&f.run_out(id, 60).await, want);
    }

    // the window closes
    f.start("vrf_c6", company(ORG, ACCOUNT)).await;
    f.advance(60).await; // paid: polling stops
    f.clock.fetch_add(72 * 3600, Ordering::SeqCst);
    let (amount, _) = sim.deposit(ACCOUNT).await;
    assert_failed(
        &f.input("vrf_c6", ChallengeKind::DepositAmount, &amount)
            .await,
        Outcome::Expired,
    );

    // malformed account, provider down, cancel
    assert_failed(
        &f.start("vrf_c7", company(ORG, "12-ab")).await,
        Outcome::AccountInvalid,
    );
    sim.fail_next("payout", 2, 500).await;
    f.start("vrf_c8", company(ORG, ACCOUNT)).await;
    assert_failed(&f.run_out("vrf_c8", 5).await, Outcome::VendorUnavailable);
    f.start("vrf_c9", company(ORG, ACCOUNT)).await;
    assert_failed(
        &f.deliver("vrf_c9", Event::Cancel).await,
        Outcome::Cancelled,
    );
}

#[tokio::test]
async fn corporate_transfer_failure_by_callback() {
    let sim = Sim::start();
    let mut inbox = Inbox::start().await;
    let f = transfer_flow(&sim, Some(&inbox.url)).await;
    f.start("vrf_c10", company(ORG, "110060000000002")).await;
    let body = inbox.next().await;
    assert_eq!(body["type"], "payout_status");
    let v = f.deliver("vrf_c10", Event::Callback { body }).await;
    assert_failed(&v, Outcome::AccountInvalid);
}
