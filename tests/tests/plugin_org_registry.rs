//! `org-registry` through the real host (in-process) against `vendor-sim`: verified (also an
//! early USCC failing its check character, confirmed by the registry), mismatch, no_record,
//! deregistered, invalid_uscc, invalid_id_number, vendor_unavailable.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod plugin_support;

use plugin_support::*;

const ORG: &str = "示例科技有限公司";

fn org(name: &str, uscc: &str, rep: &str, rep_id: &str) -> Value {
    json!({"org_name": name, "uscc": uscc, "legal_rep_name": rep, "legal_rep_id": rep_id})
}

#[tokio::test]
async fn org_registry_every_outcome() {
    let sim = Sim::start();
    let config = json!({"registry_url": sim.base(), "max_retries": 1, "retry_after_ms": 1000});
    let f = Flow::load(spec(
        &sim,
        "org-registry",
        "org_registry",
        Isolation::InProcess,
        config,
    ))
    .await;
    let fields = [
        ApplicantField::OrgName,
        ApplicantField::Uscc,
        ApplicantField::LegalRepName,
        ApplicantField::LegalRepId,
    ];
    let v = f
        .start("vrf_o1", org(ORG, "91350100M000100Y43", "张三", ZHANG_ID))
        .await;
    assert_verified(&v, "L2", &fields);
    // an early code failing its check character, confirmed by the registry
    let v = f
        .start(
            "vrf_o2",
            org("早期实业公司", "91110000100000000A", "张三", ZHANG_ID),
        )
        .await;
    assert_verified(&v, "L2", &fields);
    assert_eq!(v.result.unwrap().evidence["uscc_checksum_ok"], false);

    let cases = [
        (
            "vrf_o3",
            org(ORG, "91350100M000100Y43", "李四", ZHANG_ID),
            Outcome::Mismatch,
        ),
        (
            "vrf_o4",
            org(ORG, "91350100M000200Y4T", "张三", ZHANG_ID),
            Outcome::NoRecord,
        ),
        (
            "vrf_o5",
            org("注销贸易有限公司", "91110000600037341L", "张三", ZHANG_ID),
            Outcome::Deregistered,
        ),
        (
            "vrf_o6",
            org(ORG, "91350100M000200Y4A", "张三", ZHANG_ID),
            Outcome::InvalidUscc,
        ),
        (
            "vrf_o7",
            org(ORG, "91350100M00010", "张三", ZHANG_ID),
            Outcome::InvalidUscc,
        ),
        (
            "vrf_o8",
            org(ORG, "91350100M000100Y43", "张三", "11010519491231002"),
            Outcome::InvalidIdNumber,
        ),
    ];
    for (id, applicant, want) in cases {
        assert_failed(&f.start(id, applicant).await, want);
    }
    sim.fail_next("registry", 2, 503).await;
    f.start("vrf_o9", org(ORG, "91350100M000100Y43", "张三", ZHANG_ID))
        .await;
    assert_failed(&f.run_out("vrf_o9", 5).await, Outcome::VendorUnavailable);
}
