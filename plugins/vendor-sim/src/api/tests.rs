//! The router called directly with `oneshot` (no socket): key check, the documented test
//! identities, idempotency, faults and reset. End-to-end use through the plugin host is in
//! `tests/tests/plugin_*.rs`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::state::{Config, Sim};

fn sim() -> Arc<Sim> {
    Arc::new(Sim::new(Config {
        public_base: "http://sim.test".into(),
        ..Config::default()
    }))
}

async fn call(
    sim: &Arc<Sim>,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
    let resp = super::router(sim.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn vendor(sim: &Arc<Sim>, path: &str, body: Value) -> Value {
    let (status, v) = call(sim, "POST", path, Some("sim-key"), body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {v}");
    v
}

#[tokio::test]
async fn vendor_calls_need_the_api_key() {
    let s = sim();
    let body = json!({"request_id": "r", "name": "张三", "id_number": "11010519491231002X", "phone": "13800138000"});
    assert_eq!(
        call(&s, "POST", "/carrier/v1/verify", None, body.clone())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &s,
            "POST",
            "/carrier/v1/verify",
            Some("wrong"),
            body.clone()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        vendor(&s, "/carrier/v1/verify", body).await["result"],
        "match"
    );
}

#[tokio::test]
async fn carrier_identities() {
    let s = sim();
    let cases = [
        ("张三", "11010519491231002X", "13800138000", "match"),
        ("张三", "11010519491231002X", "13800138003", "mismatch"),
        ("李四", "110105198001010016", "13800138001", "not_real_name"),
        ("张三", "11010519491231002X", "13900000000", "no_record"),
        ("张三", "11010519491231002X", "1390000000", "phone_invalid"),
    ];
    for (name, id, phone, want) in cases {
        let v = vendor(
            &s,
            "/carrier/v1/verify",
            json!({"request_id": "r", "name": name, "id_number": id, "phone": phone}),
        )
        .await;
        assert_eq!(v["result"], want, "{phone}");
    }
}

#[tokio::test]
async fn sms_send_is_idempotent_and_codes_are_readable() {
    let s = sim();
    let a = vendor(
        &s,
        "/sms/v1/send",
        json!({"request_id": "vrf_1:sms", "phone": "13800138000"}),
    )
    .await;
    let b = vendor(
        &s,
        "/sms/v1/send",
        json!({"request_id": "vrf_1:sms", "phone": "13800138000"}),
    )
    .await;
    assert_eq!(a["otp_id"], b["otp_id"]);
    let (_, sent) = call(&s, "GET", "/_sim/sms?phone=13800138000", None, json!(null)).await;
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
    let code = sent["latest"].as_str().unwrap().to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let v = vendor(
        &s,
        "/sms/v1/verify",
        json!({"otp_id": a["otp_id"], "code": wrong}),
    )
    .await;
    assert_eq!(v["result"], "wrong");
    let v = vendor(
        &s,
        "/sms/v1/verify",
        json!({"otp_id": a["otp_id"], "code": code}),
    )
    .await;
    assert_eq!(v["result"], "ok");
    let v = vendor(
        &s,
        "/sms/v1/verify",
        json!({"otp_id": "otp_nope", "code": "123456"}),
    )
    .await;
    assert_eq!(v["result"], "unknown");
}

#[tokio::test]
async fn bank_cards() {
    let s = sim();
    let init = |card: &str, phone: &str, order: &str| json!({"order_id": order, "name": "张三", "id_number": "11010519491231002X", "card_number": card, "phone": phone});
    let cases = [
        ("6222020000000000026", "13800138000", "card_lost"),
        ("6222020000000000034", "13800138000", "card_restricted"),
        ("6222020000000000091", "13800138000", "card_invalid"),
        ("6222020000000000018", "13800138001", "mismatch"),
    ];
    for (i, (card, phone, want)) in cases.into_iter().enumerate() {
        let v = vendor(
            &s,
            "/bank/v1/auth/init",
            init(card, phone, &format!("o{i}")),
        )
        .await;
        assert_eq!(v["result"], want, "{card}");
        assert!(v.get("token").is_none());
    }
    let v = vendor(
        &s,
        "/bank/v1/auth/init",
        init("6222020000000000018", "13800138000", "ok"),
    )
    .await;
    assert_eq!(v["result"], "code_sent");
    let (_, sent) = call(&s, "GET", "/_sim/sms?phone=13800138000", None, json!(null)).await;
    assert_eq!(sent["messages"][0]["sender"], "bank");
    let code = sent["latest"].as_str().unwrap();
    let c = vendor(
        &s,
        "/bank/v1/auth/confirm",
        json!({"token": v["token"], "code": code}),
    )
    .await;
    assert_eq!(c["result"], "verified");
}

#[tokio::test]
async fn face_page_completes_and_verdicts_follow_the_person() {
    let s = sim();
    let start = vendor(
        &s,
        "/face/v1/sessions",
        json!({"request_id": "f1", "name": "王五", "id_number": "110105199002020026"}),
    )
    .await;
    let token = start["biz_token"].as_str().unwrap().to_owned();
    assert_eq!(start["url"], format!("http://sim.test/face/page/{token}"));
    let r = vendor(&s, "/face/v1/result", json!({"biz_token": token})).await;
    assert_eq!(r["status"], "pending");
    let (status, _) = call(
        &s,
        "POST",
        &format!("/face/page/{token}/complete"),
        None,
        json!(null),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let r = vendor(&s, "/face/v1/result", json!({"biz_token": token})).await;
    assert_eq!(
        (r["status"].as_str(), r["liveness"].as_str()),
        (Some("done"), Some("fail"))
    );
}

#[tokio::test]
async fn registry_and_payout_identities() {
    let s = sim();
    let reg = |uscc: &str| json!({"request_id": "r", "name": "注销贸易有限公司", "uscc": uscc, "legal_rep_name": "张三", "legal_rep_id": "11010519491231002X"});
    let v = vendor(&s, "/registry/v1/verify", reg("91110000600037341L")).await;
    assert_eq!(
        (v["result"].as_str(), v["status"].as_str()),
        (Some("match"), Some("deregistered"))
    );
    let v = vendor(&s, "/registry/v1/verify", reg("91350100M000200Y4T")).await;
    assert_eq!(v["result"], "no_record");

    let p = vendor(&s, "/payout/v1/transfers", json!({"request_id": "p1", "account_name": "示例科技有限公司", "account_number": "110060000000002", "remark": "CA000001"})).await;
    let q = vendor(
        &s,
        "/payout/v1/transfers/query",
        json!({"payout_id": p["payout_id"]}),
    )
    .await;
    assert_eq!(
        (q["status"].as_str(), q["failure_reason"].as_str()),
        (Some("failed"), Some("account_closed"))
    );
    let p = vendor(&s, "/payout/v1/transfers", json!({"request_id": "p2", "account_name": "示例科技有限公司", "account_number": "110060000000001", "remark": "CA000002"})).await;
    let q = vendor(
        &s,
        "/payout/v1/transfers/query",
        json!({"payout_id": p["payout_id"]}),
    )
    .await;
    assert_eq!(q["status"], "paid");
    let (_, d) = call(
        &s,
        "GET",
        "/_sim/deposits?account=110060000000001",
        None,
        json!(null),
    )
    .await;
    assert_eq!(d["deposits"][0]["amount_fen"], q["amount_fen"]);
    // The statement carries the drawn code after the remark; the query reveals it once paid.
    let code = q["verification_code"].as_str().unwrap();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{q}"
    );
    assert_eq!(d["deposits"][0]["code"], code);
    assert_eq!(d["deposits"][0]["remark"], format!("CA000002 {code}"));
}

#[tokio::test]
async fn faults_hit_the_next_calls_then_stop_and_reset_clears() {
    let s = sim();
    let (status, _) = call(
        &s,
        "POST",
        "/_sim/faults",
        None,
        json!({"api": "registry", "count": 2, "kind": "status", "status": 503}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body = json!({"request_id": "r", "name": "x", "uscc": "91350100M000100Y43", "legal_rep_name": "张三", "legal_rep_id": "11010519491231002X"});
    for _ in 0..2 {
        let (status, _) = call(
            &s,
            "POST",
            "/registry/v1/verify",
            Some("sim-key"),
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        vendor(&s, "/registry/v1/verify", body).await["result"],
        "mismatch"
    );
    let (_, calls) = call(&s, "GET", "/_sim/calls", None, json!(null)).await;
    assert_eq!(calls["registry"], 3);
    call(&s, "POST", "/_sim/reset", None, json!(null)).await;
    let (_, calls) = call(&s, "GET", "/_sim/calls", None, json!(null)).await;
    assert_eq!(calls, json!({}));
}

#[tokio::test]
async fn li_si_card_mail_messages_and_partner_sink() {
    let s = sim();
    // 李四's card: his carrier phone is not real-name, the bank reserved another phone.
    let v = vendor(
        &s,
        "/bank/v1/auth/init",
        json!({"order_id": "li", "name": "李四", "id_number": "110105198001010016",
            "card_number": "6222020000000000042", "phone": "13800138011"}),
    )
    .await;
    assert_eq!(v["result"], "code_sent");
    // A text message: recorded once per request id, its code readable per phone.
    for _ in 0..2 {
        let v = vendor(
            &s,
            "/sms/v1/message",
            json!({"request_id": "r1", "phone": "13800138002", "text": "验证码 482913，5 分钟内有效"}),
        )
        .await;
        assert!(v["message_id"].as_str().is_some());
    }
    let (_, sent) = call(&s, "GET", "/_sim/sms?phone=13800138002", None, json!(null)).await;
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
    assert_eq!(sent["latest"], "482913");
    // Mail.
    vendor(
        &s,
        "/mail/v1/send",
        json!({"request_id": "m1", "to": "a@example.cn", "subject": "s", "text": "t"}),
    )
    .await;
    let (_, mail) = call(&s, "GET", "/_sim/mail?to=a@example.cn", None, json!(null)).await;
    assert_eq!(mail["latest"]["subject"], "s");
    // The partner sink records calls (no secret configured: not checked).
    let (status, _) = call(&s, "POST", "/partner/p1", None, json!({"v": 1})).await;
    assert_eq!(status, 200);
    let (_, hooks) = call(&s, "GET", "/_sim/webhooks?partner=p1", None, json!(null)).await;
    assert_eq!(hooks["calls"][0]["body"]["v"], 1);
    assert_eq!(hooks["calls"][0]["signature_valid"], json!(null));
}
