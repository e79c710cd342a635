//! Face vendor: start a liveness session, the person completes it on the vendor's page, the
//! verdict is pulled (`result`) or pushed (callback).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Html;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{required, ApiError};
use crate::callback::spawn_notify;
use crate::people::{person_by_id, FaceBehaviour};
use crate::state::{FaceSession, FaceStatus, Sim};

/// `POST /face/v1/sessions` body.
#[derive(Debug, Deserialize)]
pub struct StartRequest {
    /// Idempotency key.
    pub request_id: String,
    /// Name.
    pub name: String,
    /// Resident ID number.
    pub id_number: String,
    /// Where the page sends the person afterwards (unused by the simulator).
    #[serde(default)]
    pub return_url: Option<String>,
    /// Where to POST the verdict notification.
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// `POST /face/v1/sessions` answer.
#[derive(Debug, Serialize)]
pub struct StartResponse {
    /// Session token.
    pub biz_token: String,
    /// Page the person opens (or a QR code of it).
    pub url: String,
    /// Seconds the token is valid.
    pub expires_in: u32,
}

/// Starts (or idempotently returns) a session.
pub async fn start(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<StartRequest>,
) -> Result<Json<StartResponse>, ApiError> {
    required(&req.request_id, "request_id")?;
    required(&req.id_number, "id_number")?;
    let mut inner = sim.lock();
    let token = match inner.face_by_request.get(&req.request_id) {
        Some(t) => t.clone(),
        None => {
            let token = inner.new_id("biz");
            let request_id = inner.new_id("facereq");
            let session = FaceSession {
                id_number: req.id_number.trim().to_ascii_uppercase(),
                status: FaceStatus::Pending,
                callback_url: req.callback_url.filter(|u| !u.is_empty()),
                request_id,
            };
            inner.faces.insert(token.clone(), session);
            inner.face_by_request.insert(req.request_id, token.clone());
            token
        }
    };
    let url = format!("{}/face/page/{token}", sim.config.public_base);
    Ok(Json(StartResponse {
        biz_token: token,
        url,
        expires_in: 7200,
    }))
}

/// The verdict JSON for a session (used by `result` and the callback).
fn verdict(token: &str, s: &FaceSession) -> serde_json::Value {
    let (passed, liveness, similarity, code) =
        match (s.status, person_by_id(&s.id_number).map(|p| p.face)) {
            (FaceStatus::Done, Some(FaceBehaviour::Pass(score))) => (true, "pass", score, "ok"),
            (FaceStatus::Done, Some(FaceBehaviour::LivenessFail)) => {
                (false, "fail", 0.0, "liveness_failed")
            }
            (FaceStatus::Done, None) => (false, "pass", 0.0, "no_photo"),
            (FaceStatus::Pending, _) => (false, "none", 0.0, "pending"),
            (FaceStatus::Cancelled, _) => (false, "none", 0.0, "cancelled"),
            (FaceStatus::Expired, _) => (false, "none", 0.0, "expired"),
        };
    json!({
        "biz_token": token,
        "status": s.status,
        "passed": passed,
        "liveness": liveness,
        "similarity": similarity,
        "code": code,
        "request_id": s.request_id,
    })
}

/// `POST /face/v1/result` body.
#[derive(Debug, Deserialize)]
pub struct ResultRequest {
    /// Session token.
    pub biz_token: String,
}

/// Returns the current verdict of a session.
pub async fn result(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<ResultRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let inner = sim.lock();
    let s = inner.faces.get(&req.biz_token).ok_or(ApiError::NotFound)?;
    Ok(Json(verdict(&req.biz_token, s)))
}

/// The page the person opens: two buttons, complete and cancel.
pub async fn page(
    State(sim): State<Arc<Sim>>,
    Path(token): Path<String>,
) -> Result<Html<String>, ApiError> {
    if !sim.lock().faces.contains_key(&token) {
        return Err(ApiError::NotFound);
    }
    let token: String = token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    Ok(Html(format!(
        "<!doctype html><title>Liveness check</title><h1>Liveness check (simulated)</h1>\
         <form method=post action=\"/face/page/{token}/complete\"><button>Blink and turn your head</button></form>\
         <form method=post action=\"/face/page/{token}/cancel\"><button>Cancel</button></form>"
    )))
}

fn finish(sim: &Sim, token: &str, status: FaceStatus) -> Result<Json<serde_json::Value>, ApiError> {
    let (body, callback) = {
        let mut inner = sim.lock();
        let s = inner.faces.get_mut(token).ok_or(ApiError::NotFound)?;
        if s.status == FaceStatus::Pending {
            s.status = status;
        }
        let mut body = verdict(token, s);
        body["type"] = json!("face_result");
        (body, s.callback_url.clone())
    };
    if let Some(url) = callback {
        spawn_notify(url, body.clone(), 0, sim.config.callback_secret.clone());
    }
    Ok(Json(json!({"status": body["status"]})))
}

/// The person completed the liveness check on the page.
pub async fn complete(
    State(sim): State<Arc<Sim>>,
    Path(token): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    finish(&sim, &token, FaceStatus::Done)
}

/// The person cancelled on the page.
pub async fn cancel(
    State(sim): State<Arc<Sim>>,
    Path(token): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    finish(&sim, &token, FaceStatus::Cancelled)
}
