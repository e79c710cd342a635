//! The console's pages: overview, certificate search, one certificate, status changes, the
//! audit log (the review screens are in `console::review`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::html::{esc, mask_dn, page, when};
use super::{console, error_page, field, form, staff, CSP};
use crate::api::mtls::Caller;
use crate::api::{ApiError, AppState};
use crate::storage::CertificateQuery;

/// The caller's name, role and CSRF token, or the refusal page.
fn who(state: &AppState, caller: &Caller) -> Result<(String, &'static str, String), ApiError> {
    staff(caller).map(|(n, r)| (n, r, console(state).csrf_token(caller)))
}

macro_rules! staff_or_refuse {
    ($state:expr, $caller:expr) => {
        match who(&$state, &$caller) {
            Ok(w) => w,
            Err(e) => return error_page("-", $caller.role(), &e),
        }
    };
}

/// `GET /console/`: CA, CRL and OCSP freshness, plugin and worker health, metrics at a glance.
pub async fn overview(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let (name, role, csrf) = staff_or_refuse!(state, caller);
    let report = state.readiness.check(&state).await;
    let mut b = String::from(
        "<h2>Readiness</h2><table id=\"readiness\"><tr><th>check</th><th>state</th></tr>",
    );
    for (check, v) in &report.checks {
        let text = v
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        let class = if text == "ok" { "ok" } else { "bad" };
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"{class}\">{}</td></tr>",
            esc(check),
            esc(&text)
        );
    }
    b.push_str("</table><h2>Certificate authorities</h2><table id=\"cas\"><tr><th>CA</th><th>generation</th><th>parent</th><th>valid until</th><th>state</th></tr>");
    for ca in state.hierarchy.generations() {
        let (_, not_after) = ca.validity();
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&ca.name),
            ca.generation,
            esc(ca.parent.as_deref().unwrap_or("-")),
            when(not_after),
            if ca.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            }
        );
    }
    b.push_str("</table><h2>Plugins and workers</h2><table id=\"plugins\"><tr><th>plugin</th><th>status</th><th>details</th></tr>");
    let plugins = state.verifications.plugins_status().await;
    for p in plugins.as_array().into_iter().flatten() {
        let mut details = p.clone();
        if let Value::Object(m) = &mut details {
            m.remove("name");
            m.remove("status");
        }
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(p["name"].as_str().unwrap_or("?")),
            esc(p["status"].as_str().unwrap_or("?")),
            esc(&details.to_string())
        );
    }
    b.push_str("</table><h2>Metrics at a glance</h2><table id=\"metrics\"><tr><th>metric</th><th>value</th></tr>");
    for (metric, value) in glance() {
        let _ = write!(b, "<tr><td>{}</td><td>{value}</td></tr>", esc(&metric));
    }
    b.push_str("</table>");
    super::html(StatusCode::OK, page("Overview", &name, role, &csrf, &b))
}

/// Counters and gauges of the appliance's own metrics, summed over their labels.
fn glance() -> Vec<(String, f64)> {
    prometheus::gather()
        .iter()
        .filter(|f| f.name().starts_with("ca_"))
        .filter_map(|f| {
            let sum: f64 = f
                .get_metric()
                .iter()
                .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
                .sum();
            matches!(
                f.get_field_type(),
                prometheus::proto::MetricType::COUNTER | prometheus::proto::MetricType::GAUGE
            )
            .then(|| (f.name().to_owned(), sum))
        })
        .collect()
}

fn date(s: &str, what: &str) -> Result<i64, ApiError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| ApiError::bad_request("invalid_date", format!("{what} must be YYYY-MM-DD")))
}

fn query_of(q: &HashMap<String, String>) -> Result<CertificateQuery, ApiError> {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let serial = get("serial")
        .map(|s| {
            let s = s.to_ascii_lowercase().replace(':', "");
            if s.len() <= 40 && s.chars().all(|c| c.is_ascii_hexdigit()) {
                Ok(s)
            } else {
                Err(ApiError::bad_request(
                    "invalid_serial",
                    "a serial is hexadecimal (at most 40 digits)",
                ))
            }
        })
        .transpose()?;
    let status = get("status")
        .map(|s| {
            if ["valid", "revoked", "hold"].contains(&s) {
                Ok(s.to_owned())
            } else {
                Err(ApiError::bad_request(
                    "invalid_status",
                    "status is one of valid, revoked, hold",
                ))
            }
        })
        .transpose()?;
    Ok(CertificateQuery {
        serial,
        channel: get("channel").map(str::to_owned),
        status,
        issued_from: get("from").map(|s| date(s, "from")).transpose()?,
        issued_to: get("to")
            .map(|s| date(s, "to").map(|t| t + 86_400))
            .transpose()?,
    })
}

/// `GET /console/certificates`: search by serial (prefix), channel, status, issue dates.
pub async fn certificates(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (name, role, csrf) = staff_or_refuse!(state, caller);
    let query = match query_of(&q) {
        Ok(query) => query,
        Err(e) => return error_page(&name, role, &e),
    };
    let v = |k: &str| esc(q.get(k).map(String::as_str).unwrap_or(""));
    let mut b = format!(
        "<form method=\"get\" action=\"/console/certificates\" id=\"search\" class=\"search\">\
         <label>Serial <input name=\"serial\" value=\"{}\"></label>\
         <label>Channel <input name=\"channel\" value=\"{}\"></label>\
         <label>Status <select name=\"status\"><option value=\"\">any</option>\
         <option>valid</option><option>revoked</option><option>hold</option></select></label>\
         <label>Issued from <input name=\"from\" type=\"date\" value=\"{}\"></label>\
         <label>to <input name=\"to\" type=\"date\" value=\"{}\"></label>\
         <button type=\"submit\">Search</button></form>",
        v("serial"),
        v("channel"),
        v("from"),
        v("to")
    );
    let rows = match console(&state).rows.search(&query).await {
        Ok(r) => r,
        Err(e) => return error_page(&name, role, &crate::api::error::storage_error(&e)),
    };
    let _ = write!(
        b,
        "<p>{} certificate(s){}</p><table id=\"results\"><tr><th>serial</th><th>subject</th>\
         <th>profile</th><th>channel</th><th>issued</th><th>valid until</th><th>status</th></tr>",
        rows.len(),
        if rows.len() as i64 >= crate::storage::PAGE_ROWS {
            " (first page; narrow the search)"
        } else {
            ""
        }
    );
    for r in rows {
        let _ = write!(
            b,
            "<tr><td><a href=\"/console/certificates/{s}\">{s}</a></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"status-{st}\">{st}</td></tr>",
            esc(&mask_dn(&r.subject_dn)),
            esc(&r.profile),
            esc(r.channel.as_deref().unwrap_or("-")),
            when(r.issued_at),
            when(r.not_after),
            s = esc(&r.serial),
            st = esc(&r.status),
        );
    }
    b.push_str("</table>");
    super::html(StatusCode::OK, page("Certificates", &name, role, &csrf, &b))
}

/// RFC 5280 reasons an operator may pick in the console (certificateHold is its own button).
const REASONS: [&str; 8] = [
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
];

/// `GET /console/certificates/{serial}`: details, history, and (operators) status changes.
pub async fn certificate(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(serial): Path<String>,
) -> Response {
    let (name, role, csrf) = staff_or_refuse!(state, caller);
    let serial = match crate::api::certificates::normalise_serial(&serial) {
        Ok(s) => s,
        Err(e) => return error_page(&name, role, &e),
    };
    let rows = &console(&state).rows;
    let found = rows
        .search(&CertificateQuery {
            serial: Some(serial.clone()),
            ..CertificateQuery::default()
        })
        .await
        .map(|v| v.into_iter().find(|r| r.serial == serial));
    let cert = match found {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error_page(
                &name,
                role,
                &ApiError::not_found(format!("no certificate with serial {serial}")),
            )
        }
        Err(e) => return error_page(&name, role, &crate::api::error::storage_error(&e)),
    };
    let mut b = format!(
        "<dl id=\"certificate\"><dt>Serial</dt><dd id=\"serial\">{s}</dd>\
         <dt>Subject</dt><dd>{}</dd><dt>Profile</dt><dd>{}</dd><dt>Channel</dt><dd>{}</dd>\
         <dt>Issued</dt><dd>{}</dd><dt>Valid until</dt><dd>{}</dd>\
         <dt>Status</dt><dd id=\"status\" class=\"status-{st}\">{st}</dd></dl>",
        esc(&mask_dn(&cert.subject_dn)),
        esc(&cert.profile),
        esc(cert.channel.as_deref().unwrap_or("-")),
        when(cert.issued_at),
        when(cert.not_after),
        s = esc(&cert.serial),
        st = esc(&cert.status),
    );
    if matches!(caller, Caller::Operator { .. }) {
        let action = format!("/console/certificates/{}/status", esc(&cert.serial));
        let options: String = REASONS
            .iter()
            .map(|r| format!("<option>{r}</option>"))
            .collect();
        let _ = write!(
            b,
            "<h2>Change status</h2><form method=\"post\" action=\"{action}\" id=\"revoke\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
             <input type=\"hidden\" name=\"action\" value=\"revoke\">\
             <label>Reason <select name=\"reason\">{options}</select></label>\
             <button type=\"submit\" class=\"danger\">Revoke</button></form>\
             <form method=\"post\" action=\"{action}\" id=\"hold\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
             <input type=\"hidden\" name=\"action\" value=\"hold\">\
             <button type=\"submit\">Hold (certificateHold)</button></form>\
             <form method=\"post\" action=\"{action}\" id=\"unhold\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
             <input type=\"hidden\" name=\"action\" value=\"unhold\">\
             <button type=\"submit\">Lift hold</button></form>",
            c = esc(&csrf)
        );
    } else {
        b.push_str("<p class=\"note\">Status changes are for operators.</p>");
    }
    b.push_str("<h2>History</h2><table id=\"history\"><tr><th>#</th><th>when</th><th>who</th><th>what</th><th>detail</th></tr>");
    match rows.history(&cert.serial).await {
        Ok(history) => {
            for r in history {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    r.seq,
                    when(r.at),
                    esc(&r.actor),
                    esc(&r.action),
                    esc(&r.detail)
                );
            }
        }
        Err(e) => return error_page(&name, role, &crate::api::error::storage_error(&e)),
    }
    b.push_str("</table>");
    super::html(StatusCode::OK, page("Certificate", &name, role, &csrf, &b))
}

/// `POST /console/certificates/{serial}/status`: revoke, hold or unhold, through the JSON
/// API's handlers (same authorisation and audit); CSRF token first.
pub async fn change_status(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(serial): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let (name, role, _) = staff_or_refuse!(state, caller);
    let pairs = match form(raw) {
        Ok(p) => p,
        Err(e) => return error_page(&name, role, &e),
    };
    if !console(&state).csrf_ok(&caller, field(&pairs, "csrf")) {
        return error_page(
            &name,
            role,
            &ApiError::forbidden(
                "csrf_invalid",
                "the form's CSRF token is missing or not yours; reload the page",
            ),
        );
    }
    let ext = Extension(caller.clone());
    let result = match field(&pairs, "action") {
        Some("revoke") | Some("hold") => {
            let reason = if field(&pairs, "action") == Some("hold") {
                "certificateHold"
            } else {
                field(&pairs, "reason").unwrap_or("")
            };
            let body = Bytes::from(json!({ "reason": reason }).to_string());
            crate::api::revocation::revoke(
                State(state.clone()),
                ext,
                Path(serial.clone()),
                Ok(body),
            )
            .await
            .map(|_| ())
        }
        Some("unhold") => {
            crate::api::revocation::unhold(State(state.clone()), ext, Path(serial.clone()))
                .await
                .map(|_| ())
        }
        _ => Err(ApiError::bad_request(
            "invalid_action",
            "action is one of revoke, hold, unhold",
        )),
    };
    match result {
        Ok(()) => Redirect::to(&format!(
            "/console/certificates/{}",
            serial.to_ascii_lowercase().replace(':', "")
        ))
        .into_response(),
        Err(e) => error_page(&name, role, &e),
    }
}

/// `GET /console/audit`: the result of `audit verify` and the newest rows.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let (name, role, csrf) = staff_or_refuse!(state, caller);
    let c = console(&state);
    let mut b = match crate::audit::verify(&c.hsm, &c.storage, false).await {
        Ok(r) => format!(
            "<p id=\"verify\" class=\"ok\" data-result=\"ok\">audit verify: OK, {} rows, {} \
             signed checkpoints, newest row {}</p>",
            r.rows, r.checkpoints, r.last_seq
        ),
        Err(e) => format!(
            "<p id=\"verify\" class=\"bad\" data-result=\"failed\">audit verify FAILED: {}</p>",
            esc(&e.to_string())
        ),
    };
    b.push_str("<table id=\"audit\"><tr><th>#</th><th>when</th><th>who</th><th>what</th><th>on</th><th>detail</th></tr>");
    match c.rows.recent_audit().await {
        Ok(rows) => {
            for r in rows {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    r.seq,
                    when(r.at),
                    esc(&r.actor),
                    esc(&r.action),
                    esc(&r.target),
                    esc(&r.detail)
                );
            }
        }
        Err(e) => return error_page(&name, role, &crate::api::error::storage_error(&e)),
    }
    b.push_str("</table>");
    super::html(StatusCode::OK, page("Audit log", &name, role, &csrf, &b))
}

/// `GET /console/console.css`.
pub async fn stylesheet() -> Response {
    let resp = (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../web/console/console.css"),
    )
        .into_response();
    crate::enroll::harden(resp, CSP)
}
