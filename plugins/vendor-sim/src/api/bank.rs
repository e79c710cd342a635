//! Bank 4-element check: name + ID number + card + reserved phone, confirmed by a code the bank
//! sends to the reserved phone.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{required, ApiError};
use crate::people::{card, CardStatus};
use crate::state::{Api, BankOrder, Sim};

/// `POST /bank/v1/auth/init` body.
#[derive(Debug, Deserialize)]
pub struct InitRequest {
    /// Idempotency key.
    pub order_id: String,
    /// Holder name.
    pub name: String,
    /// Holder ID number.
    pub id_number: String,
    /// Card number.
    pub card_number: String,
    /// Phone the applicant claims is reserved at the bank.
    pub phone: String,
}

/// `POST /bank/v1/auth/init` answer.
#[derive(Debug, Serialize)]
pub struct InitResponse {
    /// `code_sent | mismatch | card_invalid | card_lost | card_restricted`.
    pub result: &'static str,
    /// Token for `confirm` (only with `code_sent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Checks the four elements; on success sends a code to the reserved phone.
pub async fn init(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<InitRequest>,
) -> Result<Json<InitResponse>, ApiError> {
    required(&req.order_id, "order_id")?;
    let mut inner = sim.lock();
    if let Some(token) = inner.bank_by_order.get(&req.order_id) {
        return Ok(Json(InitResponse {
            result: "code_sent",
            token: Some(token.clone()),
        }));
    }
    let Some(c) = card(&req.card_number) else {
        return Ok(Json(InitResponse {
            result: "card_invalid",
            token: None,
        }));
    };
    let elements_match = c.holder_name == req.name
        && c.holder_id.eq_ignore_ascii_case(&req.id_number)
        && c.reserved_phone == req.phone;
    let result = match c.status {
        CardStatus::Lost => "card_lost",
        CardStatus::Restricted => "card_restricted",
        CardStatus::Normal if !elements_match => "mismatch",
        CardStatus::Normal => "code_sent",
    };
    if result != "code_sent" {
        return Ok(Json(InitResponse {
            result,
            token: None,
        }));
    }
    let otp_id = inner.send_code(c.reserved_phone, Api::Bank);
    let token = inner.new_id("bk");
    let bank_request_id = inner.new_id("bankreq");
    inner.bank_orders.insert(
        token.clone(),
        BankOrder {
            otp_id,
            bank_request_id,
        },
    );
    inner.bank_by_order.insert(req.order_id, token.clone());
    Ok(Json(InitResponse {
        result,
        token: Some(token),
    }))
}

/// `POST /bank/v1/auth/confirm` body.
#[derive(Debug, Deserialize)]
pub struct ConfirmRequest {
    /// Token from `init`.
    pub token: String,
    /// Code the user typed.
    pub code: String,
}

/// `POST /bank/v1/auth/confirm` answer.
#[derive(Debug, Serialize)]
pub struct ConfirmResponse {
    /// `verified | wrong_code | unknown_token`.
    pub result: &'static str,
    /// Bank's request id (evidence; only with `verified`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_request_id: Option<String>,
}

/// Checks the code against the one sent for this token.
pub async fn confirm(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<ConfirmRequest>,
) -> Json<ConfirmResponse> {
    let inner = sim.lock();
    let Some(order) = inner.bank_orders.get(&req.token) else {
        return Json(ConfirmResponse {
            result: "unknown_token",
            bank_request_id: None,
        });
    };
    let ok = inner
        .otps
        .get(&order.otp_id)
        .is_some_and(|o| o.code == req.code.trim());
    if ok {
        Json(ConfirmResponse {
            result: "verified",
            bank_request_id: Some(order.bank_request_id.clone()),
        })
    } else {
        Json(ConfirmResponse {
            result: "wrong_code",
            bank_request_id: None,
        })
    }
}
