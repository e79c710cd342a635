//! An organisation's agents over the API: the channel lists them (masked) and asks for changes
//! (add, remove, hand over the main role), each applied when the main agent's SMS code is
//! confirmed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::applications::{body, channel, failure_response, service};
use super::mtls::Caller;
use super::{ApiError, AppState};
use crate::application::service::{AgentChangeRequest, AgentConfirmRequest};
use crate::application::Failure;

/// `GET /api/v1/organisations/{uscc}/agents`: the organisation's agents in this channel, masked.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(uscc): Path<String>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    Ok(match svc.list_agents(&who, &uscc).await {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => failure_response(Failure::from(e)),
    })
}

/// `POST /api/v1/organisations/{uscc}/agent-changes`: a change, its code sent to the main agent.
pub async fn request(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(uscc): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    let b: AgentChangeRequest = body(raw)?;
    Ok(match svc.request_agent_change(&who, &uscc, b).await {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => failure_response(Failure::from(e)),
    })
}

/// `POST /api/v1/organisations/{uscc}/agent-changes/{id}/confirm`: applies the change.
pub async fn confirm(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((uscc, id)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    let b: AgentConfirmRequest = body(raw)?;
    Ok(match svc.confirm_agent_change(&who, &uscc, &id, b).await {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => failure_response(Failure::from(e)),
    })
}
