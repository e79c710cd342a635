//! Test-only endpoints under `/_sim/`: read codes and deposits, inject faults, reset.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use crate::state::{Api, FaceStatus, Fault, FaultKind, Sim};

/// `?phone=` / `?account=` query.
#[derive(Debug, Deserialize)]
pub struct Lookup {
    /// Phone number.
    #[serde(default)]
    pub phone: Option<String>,
    /// Account number.
    #[serde(default)]
    pub account: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub to: Option<String>,
    /// Partner name.
    #[serde(default)]
    pub partner: Option<String>,
}

/// `GET /_sim/mail?to=...`: every e-mail sent to the address, oldest first, plus `latest`.
pub async fn mail(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<Lookup>,
) -> Result<Json<Value>, ApiError> {
    let to = q.to.ok_or(ApiError::BadRequest("to"))?;
    let inner = sim.lock();
    let mails = inner.mail.get(&to).cloned().unwrap_or_default();
    let latest = mails.last().cloned();
    Ok(Json(json!({"to": to, "mails": mails, "latest": latest})))
}

/// `GET /_sim/webhooks?partner=...`: every call the partner's webhook received, oldest first.
pub async fn webhooks(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<Lookup>,
) -> Result<Json<Value>, ApiError> {
    let partner = q.partner.ok_or(ApiError::BadRequest("partner"))?;
    let inner = sim.lock();
    let calls = inner.hooks.get(&partner).cloned().unwrap_or_default();
    Ok(Json(json!({"partner": partner, "calls": calls})))
}

/// `GET /_sim/sms?phone=...`: every code sent to the phone, oldest first, plus `latest`.
pub async fn sms(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<Lookup>,
) -> Result<Json<Value>, ApiError> {
    let phone = q.phone.ok_or(ApiError::BadRequest("phone"))?;
    let inner = sim.lock();
    let msgs = inner.sms.get(&phone).cloned().unwrap_or_default();
    let latest = msgs.last().map(|m| m.code.clone());
    Ok(Json(
        json!({"phone": phone, "messages": msgs, "latest": latest}),
    ))
}

/// `GET /_sim/deposits?account=...`: every payout to the account as the statement shows it
/// (amount in fen and as yuan, the remark with the verification code, and the code alone).
pub async fn deposits(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<Lookup>,
) -> Result<Json<Value>, ApiError> {
    let account = q.account.ok_or(ApiError::BadRequest("account"))?;
    let inner = sim.lock();
    let mut list: Vec<(&String, Value)> = inner
        .payouts
        .iter()
        .filter(|(_, p)| p.account == account)
        .map(|(id, p)| {
            let v = json!({
                "payout_id": id,
                "amount_fen": p.amount_fen,
                "amount": format!("0.{:02}", p.amount_fen),
                "remark": format!("{} {}", p.remark, p.code).trim().to_owned(),
                "code": p.code,
            });
            (id, v)
        })
        .collect();
    list.sort_by_key(|(id, _)| id.trim_start_matches("po_").parse::<u64>().unwrap_or(0));
    let list: Vec<Value> = list.into_iter().map(|(_, v)| v).collect();
    Ok(Json(json!({"account": account, "deposits": list})))
}

/// `POST /_sim/faults` body: the next `count` calls to `api` fail or are delayed.
#[derive(Debug, Deserialize)]
pub struct FaultRequest {
    /// Which API.
    pub api: Api,
    /// How many calls.
    pub count: u32,
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// Installs (replaces) a fault for one API; `count: 0` removes it.
pub async fn faults(State(sim): State<Arc<Sim>>, Json(req): Json<FaultRequest>) -> Json<Value> {
    let mut inner = sim.lock();
    if req.count == 0 {
        inner.faults.remove(&req.api);
    } else {
        inner.faults.insert(
            req.api,
            Fault {
                remaining: req.count,
                kind: req.kind,
            },
        );
    }
    Json(json!({"ok": true}))
}

/// `GET /_sim/calls`: calls received per API.
pub async fn calls(State(sim): State<Arc<Sim>>) -> Json<BTreeMap<String, u64>> {
    let inner = sim.lock();
    let map = inner
        .calls
        .iter()
        .map(|(api, n)| {
            (
                serde_json::to_value(api)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                *n,
            )
        })
        .collect();
    Json(map)
}

/// `GET /_sim/paths`: authenticated calls received per endpoint (`"POST /sms/v1/send": 2`).
pub async fn paths(State(sim): State<Arc<Sim>>) -> Json<BTreeMap<String, u64>> {
    Json(sim.lock().paths.clone())
}

/// `POST /_sim/face/expire` body.
#[derive(Debug, Deserialize)]
pub struct ExpireRequest {
    /// Session token.
    pub biz_token: String,
}

/// Marks a pending face session expired (the vendor's 2 h token lifetime, without waiting).
pub async fn face_expire(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<ExpireRequest>,
) -> Result<Json<Value>, ApiError> {
    let mut inner = sim.lock();
    let s = inner
        .faces
        .get_mut(&req.biz_token)
        .ok_or(ApiError::NotFound)?;
    if s.status == FaceStatus::Pending {
        s.status = FaceStatus::Expired;
    }
    Ok(Json(json!({"ok": true})))
}

/// `POST /_sim/reset`: forget everything.
pub async fn reset(State(sim): State<Arc<Sim>>) -> Json<Value> {
    sim.reset();
    Json(json!({"ok": true}))
}
