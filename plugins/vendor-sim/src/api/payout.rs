//! Payout provider: a micro-deposit with a remark code to a corporate account; settles
//! asynchronously to paid or a failure (closed / frozen account, holder name mismatch).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{required, ApiError};
use crate::callback::spawn_notify;
use crate::people::{account, AccountStatus};
use crate::state::{Payout, PayoutFinal, Sim};

/// `POST /payout/v1/transfers` body.
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    /// Idempotency key.
    pub request_id: String,
    /// Account holder name (the organisation).
    pub account_name: String,
    /// Account number.
    pub account_number: String,
    /// Bank name (informational).
    #[serde(default)]
    pub bank_name: String,
    /// Remark code shown on the statement.
    pub remark: String,
    /// Where to POST the settlement notification.
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// `POST /payout/v1/transfers` answer.
#[derive(Debug, Serialize)]
pub struct CreateResponse {
    /// Payout id.
    pub payout_id: String,
    /// Always `processing` at creation.
    pub status: &'static str,
}

fn status_json(id: &str, p: &Payout, settled: bool) -> serde_json::Value {
    let (status, reason) = if !settled {
        ("processing", None)
    } else {
        match p.outcome {
            PayoutFinal::Paid => ("paid", None),
            PayoutFinal::AccountClosed => ("failed", Some("account_closed")),
            PayoutFinal::AccountFrozen => ("failed", Some("account_frozen")),
            PayoutFinal::NameMismatch => ("failed", Some("account_name_mismatch")),
        }
    };
    let mut v =
        json!({"payout_id": id, "status": status, "failure_reason": reason, "remark": p.remark});
    if status == "paid" {
        v["amount_fen"] = json!(p.amount_fen);
        v["verification_code"] = json!(p.code);
    }
    v
}

/// Creates (or idempotently returns) a payout with a random amount of 0.01-0.99 CNY and a random
/// 6-digit verification code printed after the remark on the statement.
pub async fn create(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<CreateRequest>,
) -> Result<Json<CreateResponse>, ApiError> {
    required(&req.request_id, "request_id")?;
    required(&req.account_number, "account_number")?;
    let settle = sim.config.payout_settle;
    let (id, notify) = {
        let mut inner = sim.lock();
        if let Some(id) = inner.payout_by_request.get(&req.request_id) {
            return Ok(Json(CreateResponse {
                payout_id: id.clone(),
                status: "processing",
            }));
        }
        let outcome = match account(&req.account_number) {
            None => PayoutFinal::AccountClosed,
            Some(a) if a.status == AccountStatus::Closed => PayoutFinal::AccountClosed,
            Some(a) if a.status == AccountStatus::Frozen => PayoutFinal::AccountFrozen,
            Some(a) if a.holder != req.account_name.trim() => PayoutFinal::NameMismatch,
            Some(_) => PayoutFinal::Paid,
        };
        let payout = Payout {
            account: req.account_number.clone(),
            amount_fen: rand::thread_rng().gen_range(1..=99),
            remark: req.remark.clone(),
            code: format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32)),
            outcome,
            created: Instant::now(),
            callback_url: req.callback_url.filter(|u| !u.is_empty()),
        };
        let id = inner.new_id("po");
        let notify = payout.callback_url.clone().map(|u| {
            let mut body = status_json(&id, &payout, true);
            body["type"] = json!("payout_status");
            (u, body)
        });
        inner.payouts.insert(id.clone(), payout);
        inner.payout_by_request.insert(req.request_id, id.clone());
        (id, notify)
    };
    if let Some((url, body)) = notify {
        let delay = u64::try_from(settle.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(50);
        spawn_notify(url, body, delay, sim.config.callback_secret.clone());
    }
    Ok(Json(CreateResponse {
        payout_id: id,
        status: "processing",
    }))
}

/// `POST /payout/v1/transfers/query` body.
#[derive(Debug, Deserialize)]
pub struct QueryRequest {
    /// Payout id.
    pub payout_id: String,
}

/// Current status: `processing`, `paid` (with `amount_fen`) or `failed` (with `failure_reason`).
pub async fn query(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<QueryRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let inner = sim.lock();
    let p = inner
        .payouts
        .get(&req.payout_id)
        .ok_or(ApiError::NotFound)?;
    let settled = p.created.elapsed() >= sim.config.payout_settle;
    Ok(Json(status_json(&req.payout_id, p, settled)))
}
