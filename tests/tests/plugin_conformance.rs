//! The host's conformance suite (`ca-appliance plugin check`, `plugin_host::conformance`) run
//! against each of the five verifier plugins and the two channel plugins, in a worker process:
//! every check must pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod plugin_support;

use plugin_support::*;

async fn conforms(lib: &str, config: Value) {
    let path = built().join(format!("libplugin_{lib}.so"));
    let report = plugin_host::conformance::check(&path, config).await;
    println!("{report}");
    assert!(report.passed(), "{lib} fails conformance:\n{report}");
    assert!(report.checks.len() >= 6, "the suite ran: {report}");
}

#[tokio::test]
async fn phone_real_name_conforms() {
    conforms(
        "phone_real_name",
        json!({"carrier_url": "https://carrier.example.cn", "sms_url": "https://sms.example.cn"}),
    )
    .await;
}

#[tokio::test]
async fn bank_card_conforms() {
    conforms("bank_card", json!({"bank_url": "https://bank.example.cn"})).await;
}

#[tokio::test]
async fn face_conforms() {
    conforms("face", json!({"face_url": "https://face.example.cn"})).await;
}

#[tokio::test]
async fn corporate_transfer_conforms() {
    conforms(
        "corporate_transfer",
        json!({"payout_url": "https://payout.example.cn"}),
    )
    .await;
}

#[tokio::test]
async fn org_registry_conforms() {
    conforms(
        "org_registry",
        json!({"registry_url": "https://registry.example.cn"}),
    )
    .await;
}

#[tokio::test]
async fn channel_notify_conforms() {
    conforms(
        "channel_notify",
        json!({"sms_url": "https://sms.example.cn", "mail_url": "https://mail.example.cn",
            "notify_events": ["issued"]}),
    )
    .await;
}

#[tokio::test]
async fn channel_webhook_conforms() {
    conforms(
        "channel_webhook",
        json!({"url": "https://partner.example.cn/ca/events"}),
    )
    .await;
}
