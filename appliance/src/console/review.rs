//! The review screens: the queue (filtered by channel, kind and age), one application with its
//! verification evidence (masked) and its materials inline, and the RA officers' decision forms
//! (two distinct officers where the policy says so; the offline paper path). Every read and
//! every decision goes through the review JSON API's handlers (`api::review`): the same
//! service, authorisation and audit rows; the CSRF token is checked before anything else.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::html::{esc, page, when};
use super::{console, error_page, field, form, refused, staff};
use crate::api::mtls::Caller;
use crate::api::{ApiError, AppState};
use crate::storage::unix_now;

/// Content-Security-Policy of an image material's answer: a document opened directly runs
/// nothing and loads nothing (an image shown by `<img>` is unaffected).
const MATERIAL_CSP: &str = "default-src 'none'; sandbox";

/// Content-Security-Policy of a PDF material's answer: no script, no network, an opaque origin
/// (`sandbox`: Chromium's PDF viewer renders under it), framed by the console's review page only.
const PDF_CSP: &str = "default-src 'none'; script-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'self'; sandbox";

/// The only media types a material is served as (what the upload's magic-byte check admits).
const PDF: &str = "application/pdf";

/// Application kinds the queue can be filtered by.
const KINDS: [&str; 6] = [
    "new",
    "renewal",
    "change",
    "reissue",
    "revocation",
    "phone_change",
];

/// Largest JSON answer of a review handler the console reads (the whole queue).
const ANSWER_LIMIT: usize = 16 * 1024 * 1024;

/// A refusal carried from a JSON handler's answer: status, code, message.
struct Refusal {
    status: StatusCode,
    code: String,
    message: String,
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Refusal {
        Refusal {
            status: e.status,
            code: e.code.to_owned(),
            message: e.message,
        }
    }
}

impl Refusal {
    fn page(&self, who: &str, role: &str) -> Response {
        refused(who, role, self.status, &self.code, &self.message)
    }
}

/// A JSON handler's answer as its value, or its error (`{error, message}`) as a refusal.
async fn answer(resp: Result<Response, ApiError>) -> Result<Value, Refusal> {
    let resp = resp?;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), ANSWER_LIMIT)
        .await
        .map_err(|_| Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message: "the answer could not be read".into(),
        })?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(v)
    } else {
        Err(Refusal {
            status,
            code: v["error"].as_str().unwrap_or("error").to_owned(),
            message: v["message"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// Whether `id` can name an application (so it is safe in a URL and a header).
fn plausible_id(id: &str) -> bool {
    id.starts_with("app_")
        && id.len() <= 80
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The queue through `GET /api/v1/review-queue`'s handler (its role check included).
async fn queue(state: &Arc<AppState>, caller: &Caller) -> Result<Vec<Value>, Refusal> {
    let v =
        answer(crate::api::review::queue(State(state.clone()), Extension(caller.clone())).await)
            .await?;
    Ok(v["applications"].as_array().cloned().unwrap_or_default())
}

/// Queue filters from the query string; a bad value → 400.
struct Filter {
    channel: Option<String>,
    kind: Option<String>,
    older_hours: Option<i64>,
}

impl Filter {
    fn parse(q: &HashMap<String, String>) -> Result<Filter, ApiError> {
        let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let kind = get("kind")
            .map(|k| {
                KINDS.contains(&k).then(|| k.to_owned()).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_kind",
                        format!("kind is one of {}", KINDS.join(", ")),
                    )
                })
            })
            .transpose()?;
        let older_hours = get("older_than_hours")
            .map(|h| {
                h.parse::<i64>()
                    .ok()
                    .filter(|h| (0..=24 * 366).contains(h))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_age",
                            "older_than_hours is a whole number of hours (0 to 8784)",
                        )
                    })
            })
            .transpose()?;
        Ok(Filter {
            channel: get("channel").map(str::to_owned),
            kind,
            older_hours,
        })
    }

    fn keeps(&self, app: &Value, now: i64) -> bool {
        self.channel
            .as_deref()
            .is_none_or(|c| app["channel"].as_str() == Some(c))
            && self
                .kind
                .as_deref()
                .is_none_or(|k| app["kind"].as_str() == Some(k))
            && self
                .older_hours
                .is_none_or(|h| now - app["created_at"].as_i64().unwrap_or(now) >= h * 3600)
    }
}

/// Approving decisions so far and how many the application needs.
fn approvals(app: &Value) -> (usize, u64) {
    let n = app["reviews"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["decision"] == "approve")
        .count();
    (n, app["officers_needed"].as_u64().unwrap_or(1))
}

/// The subject's name as the queue shows it (already masked by the service for persons).
fn subject_name(app: &Value) -> String {
    app["subject"]["name"].as_str().unwrap_or("-").to_owned()
}

fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// `GET /console/review`: applications awaiting review, oldest first, filtered by channel,
/// kind and age (`older_than_hours`).
pub async fn review(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (name, role) = match staff(&caller) {
        Ok(w) => w,
        Err(e) => return error_page("-", caller.role(), &e),
    };
    let csrf = console(&state).csrf_token(&caller);
    let filter = match Filter::parse(&q) {
        Ok(f) => f,
        Err(e) => return error_page(&name, role, &e),
    };
    let apps = match queue(&state, &caller).await {
        Ok(a) => a,
        Err(r) => return r.page(&name, role),
    };
    let v = |k: &str| esc(q.get(k).map(String::as_str).unwrap_or(""));
    let kinds: String = KINDS
        .iter()
        .map(|k| {
            let sel = if filter.kind.as_deref() == Some(k) {
                " selected"
            } else {
                ""
            };
            format!("<option{sel}>{k}</option>")
        })
        .collect();
    let mut b = format!(
        "<form method=\"get\" action=\"/console/review\" id=\"filter\" class=\"search\">\
         <label>Channel <input name=\"channel\" value=\"{}\"></label>\
         <label>Kind <select name=\"kind\"><option value=\"\">any</option>{kinds}</select></label>\
         <label>Waiting at least <input name=\"older_than_hours\" type=\"number\" min=\"0\" \
         value=\"{}\"> hours</label><button type=\"submit\">Filter</button></form>",
        v("channel"),
        v("older_than_hours"),
    );
    let now = unix_now();
    let shown: Vec<&Value> = apps.iter().filter(|a| filter.keeps(a, now)).collect();
    let _ = write!(
        b,
        "<p id=\"count\">{} of {} application(s) awaiting review</p><table id=\"queue\"><tr>\
         <th>application</th><th>channel</th><th>kind</th><th>subject</th><th>created</th>\
         <th>age</th><th>path</th><th>approvals</th><th>materials</th></tr>",
        shown.len(),
        apps.len()
    );
    for a in shown {
        let id = a["id"].as_str().unwrap_or_default();
        let (n, needed) = approvals(a);
        let created = a["created_at"].as_i64().unwrap_or(now);
        let _ =
            write!(
            b,
            "<tr data-id=\"{id}\"><td><a href=\"/console/review/{id}\">{id}</a></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{n} of {needed}</td>\
             <td>{}</td></tr>",
            esc(a["channel"].as_str().unwrap_or("-")),
            esc(a["kind"].as_str().unwrap_or("-")),
            esc(&subject_name(a)),
            when(created),
            age(now - created),
            if a["offline"] == true { "offline (paper)" } else { "online" },
            a["materials"].as_array().map_or(0, Vec::len),
            id = esc(id),
        );
    }
    b.push_str("</table>");
    super::html(StatusCode::OK, page("Review queue", &name, role, &csrf, &b))
}

/// A subject (masked by the service) as `field: value` rows, nested persons flattened.
fn subject_rows(prefix: &str, v: &Value, out: &mut String) {
    if let Value::Object(m) = v {
        for (k, val) in m {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match val {
                Value::Object(_) => subject_rows(&key, val, out),
                Value::String(s) => {
                    let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(&key), esc(s));
                }
                other => {
                    let _ = write!(
                        out,
                        "<tr><td>{}</td><td>{}</td></tr>",
                        esc(&key),
                        esc(&other.to_string())
                    );
                }
            }
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => "-".into(),
        other => esc(&other.to_string()),
    }
}

/// The materials section: images and PDFs inline for RA officers, the list for others.
fn materials(app: &Value, id: &str, officer: bool) -> String {
    let list = app["materials"].as_array().cloned().unwrap_or_default();
    let mut b = String::from("<h2>Materials</h2>");
    if list.is_empty() {
        b.push_str("<p class=\"note\" id=\"no-materials\">No materials were uploaded.</p>");
        return b;
    }
    if !officer {
        b.push_str(
            "<p class=\"note\" id=\"materials-officers-only\">The contents are shown to RA \
             officers only.</p>",
        );
    }
    b.push_str("<div class=\"materials\">");
    for m in list {
        let mid = m["id"].as_str().unwrap_or_default();
        let kind = m["kind"].as_str().unwrap_or("material");
        let media = m["media_type"].as_str().unwrap_or_default();
        let src = format!("/console/review/{}/materials/{}", esc(id), esc(mid));
        let shown = if !officer {
            String::new()
        } else if media.starts_with("image/") {
            format!(
                "<img class=\"material\" id=\"material-{k}\" src=\"{src}\" alt=\"{k}\">",
                k = esc(kind)
            )
        } else if media == PDF {
            format!(
                "<iframe class=\"material-pdf\" id=\"material-{k}\" src=\"{src}\" title=\"{k}\">\
                 </iframe><a class=\"material-link\" id=\"material-{k}-open\" href=\"{src}\" \
                 target=\"_blank\" rel=\"noopener\">Open {k} (PDF)</a>",
                k = esc(kind)
            )
        } else {
            format!(
                "<a class=\"material-link\" id=\"material-{k}\" href=\"{src}\">Download {k} \
                 ({m})</a>",
                k = esc(kind),
                m = esc(media)
            )
        };
        let _ = write!(
            b,
            "<figure class=\"material-card\" data-kind=\"{k}\">{shown}<figcaption><strong>{k}\
             </strong> · {m} · {size} bytes<br><code>sha256 {d}</code></figcaption></figure>",
            k = esc(kind),
            m = esc(media),
            size = m["size"].as_i64().unwrap_or(0),
            d = esc(m["sha256"].as_str().unwrap_or_default()),
        );
    }
    b.push_str("</div>");
    b
}

/// The decisions so far, the approvals wanted, and (RA officers who have not decided) the
/// approve and reject forms.
fn decisions(app: &Value, id: &str, caller: &Caller, csrf: &str) -> String {
    let (n, needed) = approvals(app);
    let mut b = format!(
        "<h2>Decision</h2><p id=\"approvals\" data-approvals=\"{n}\" data-needed=\"{needed}\">\
         {n} of {needed} approval(s){}</p>",
        if needed > 1 {
            " (this profile needs distinct officers)"
        } else {
            ""
        }
    );
    if n > 0 && (n as u64) < needed {
        let more = needed - n as u64;
        let _ = write!(
            b,
            "<p id=\"waiting\" class=\"waiting\">Waiting for {}</p>",
            if more == 1 {
                "a second officer".to_owned()
            } else {
                format!("{more} more officers")
            }
        );
    }
    let reviews = app["reviews"].as_array().cloned().unwrap_or_default();
    if !reviews.is_empty() {
        b.push_str(
            "<table id=\"reviews\"><tr><th>officer</th><th>decision</th><th>reason</th>\
             <th>when</th></tr>",
        );
        for r in &reviews {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&r["officer"]),
                text(&r["decision"]),
                text(&r["reason"]),
                when(r["at"].as_i64().unwrap_or(0))
            );
        }
        b.push_str("</table>");
    }
    let Caller::RaOfficer { name } = caller else {
        b.push_str("<p class=\"note\" id=\"read-only\">Decisions are for RA officers.</p>");
        return b;
    };
    if reviews.iter().any(|r| r["officer"].as_str() == Some(name)) {
        b.push_str(
            "<p class=\"note\" id=\"already-decided\">You have decided on this application; \
             another officer must decide next.</p>",
        );
        return b;
    }
    let action = format!("/console/review/{}/decision", esc(id));
    let approve = if app["offline"] == true {
        "Paper documents checked: approve"
    } else {
        "Approve"
    };
    let _ = write!(
        b,
        "<form method=\"post\" action=\"{action}\" id=\"approve\" class=\"decision\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <input type=\"hidden\" name=\"decision\" value=\"approve\">\
         <label>Note (optional) <input name=\"reason\" maxlength=\"500\"></label>\
         <button type=\"submit\">{approve}</button></form>\
         <form method=\"post\" action=\"{action}\" id=\"reject\" class=\"decision\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <input type=\"hidden\" name=\"decision\" value=\"reject\">\
         <label>Reason (the applicant reads it) <input name=\"reason\" maxlength=\"500\" \
         required></label><button type=\"submit\" class=\"danger\">Reject</button></form>",
        c = esc(csrf)
    );
    b
}

/// `GET /console/review/{id}`: one application awaiting review (or, once decided, what the
/// decision led to).
pub async fn review_application(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (name, role) = match staff(&caller) {
        Ok(w) => w,
        Err(e) => return error_page("-", caller.role(), &e),
    };
    let csrf = console(&state).csrf_token(&caller);
    let entry = answer(
        crate::api::review::queue_entry(
            State(state.clone()),
            Extension(caller.clone()),
            Path(id.clone()),
        )
        .await,
    )
    .await;
    let app = match entry {
        Ok(app) => Some(app),
        Err(r) if r.status == StatusCode::NOT_FOUND => None,
        Err(r) => return r.page(&name, role),
    };
    let mut b = String::new();
    // The status a decision of this caller led to (a status word only).
    if let Some(now) = q
        .get("now")
        .filter(|s| s.len() <= 32 && s.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'))
    {
        let _ = write!(
            b,
            "<p id=\"outcome\" class=\"ok\" data-status=\"{s}\">Decision recorded: the \
             application is now {s}.</p>",
            s = esc(now)
        );
    }
    let Some(app) = app.as_ref() else {
        let _ = write!(
            b,
            "<p id=\"not-queued\">Application {} is not awaiting review.</p>\
             <p><a href=\"/console/review\">Back to the queue</a></p>",
            esc(&id)
        );
        return super::html(StatusCode::OK, page("Review", &name, role, &csrf, &b));
    };
    let now = unix_now();
    let created = app["created_at"].as_i64().unwrap_or(now);
    let _ = write!(
        b,
        "<dl id=\"application\"><dt>Application</dt><dd id=\"app-id\">{}</dd>\
         <dt>Channel</dt><dd>{}</dd><dt>Kind</dt><dd>{}</dd><dt>Profile</dt><dd>{}</dd>\
         <dt>Created</dt><dd>{} ({} ago)</dd><dt>Expires</dt><dd>{}</dd><dt>Path</dt><dd id=\"path\">{}</dd></dl>",
        esc(&id),
        text(&app["channel"]),
        text(&app["kind"]),
        text(&app["profile"]),
        when(created),
        age(now - created),
        when(app["expires_at"].as_i64().unwrap_or(0)),
        if app["offline"] == true {
            "offline: the applicant sent paper documents; approving records the officers' paper check"
        } else {
            "online"
        },
    );
    let officer = matches!(caller, Caller::RaOfficer { .. });
    b.push_str(&materials(app, &id, officer));
    b.push_str(&decisions(app, &id, &caller, &csrf));
    b.push_str(
        "<h2>Subject (masked)</h2><table id=\"subject\"><tr><th>field</th><th>value</th></tr>",
    );
    subject_rows("", &app["subject"], &mut b);
    b.push_str("</table><h2>Verified attributes (masked)</h2><table id=\"verified\"><tr><th>field</th><th>method</th><th>value</th></tr>");
    for a in app["verified"].as_array().into_iter().flatten() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&a["field"]),
            text(&a["method"]),
            text(&a["value"])
        );
    }
    b.push_str("</table><h2>Verification evidence</h2><table id=\"evidence\"><tr><th>method</th><th>outcome</th><th>assurance</th><th>reused</th><th>verification</th><th>when</th></tr>");
    for e in app["evidence"].as_array().into_iter().flatten() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            text(&e["method"]),
            text(&e["outcome"]),
            text(&e["assurance"]),
            if e["reused"] == true { "yes" } else { "no" },
            text(&e["verification"]),
            when(e["at"].as_i64().unwrap_or(0))
        );
    }
    b.push_str("</table>");
    // This page alone may frame (its PDF materials, from the console itself).
    super::html_with(
        StatusCode::OK,
        page("Review", &name, role, &csrf, &b),
        super::REVIEW_CSP,
    )
}

/// `POST /console/review/{id}/decision`: form `csrf`, `decision` (`approve` | `reject`),
/// `reason`; the CSRF token first, then `POST /api/v1/applications/{id}/review`'s handler;
/// 303 back to the application.
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let (name, role) = match staff(&caller) {
        Ok(w) => w,
        Err(e) => return error_page("-", caller.role(), &e),
    };
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
    if !plausible_id(&id) {
        return error_page(&name, role, &ApiError::not_found("no such application"));
    }
    let mut body = json!({ "decision": field(&pairs, "decision").unwrap_or("") });
    if let Some(r) = field(&pairs, "reason").filter(|r| !r.trim().is_empty()) {
        body["reason"] = json!(r);
    }
    let resp = crate::api::review::decide(
        State(state.clone()),
        Extension(caller.clone()),
        Path(id.clone()),
        Ok(Bytes::from(body.to_string())),
    )
    .await;
    match answer(resp).await {
        Ok(v) => {
            let status = v["status"].as_str().unwrap_or("decided");
            let status: String = status
                .chars()
                .filter(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            Redirect::to(&format!("/console/review/{id}?now={status}")).into_response()
        }
        Err(r) => r.page(&name, role),
    }
}

/// `GET /console/review/{id}/materials/{material_id}`: a material's content for RA officers
/// (through the JSON API's handler, digest checked), inline: images, and PDFs framed by the
/// review page; served only as the type its bytes show (`%PDF-` for a PDF), else refused.
pub async fn material(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, material_id)): Path<(String, String)>,
) -> Response {
    let (name, role) = match staff(&caller) {
        Ok(w) => w,
        Err(e) => return error_page("-", caller.role(), &e),
    };
    let resp = match crate::api::review::material(
        State(state.clone()),
        Extension(caller.clone()),
        Path((id, material_id.clone())),
    )
    .await
    {
        Ok(r) if r.status().is_success() => r,
        other => {
            return match answer(other).await {
                Ok(_) => refused(
                    &name,
                    role,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the material could not be read",
                ),
                Err(r) => r.page(&name, role),
            }
        }
    };
    let stored = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let limit = crate::api::review::MATERIAL_BODY_LIMIT;
    let Ok(content) = axum::body::to_bytes(resp.into_body(), limit).await else {
        return refused(
            &name,
            role,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the material could not be read",
        );
    };
    // The bytes decide the type; a stored type they do not bear out is never served.
    let media = match crate::application::service::sniff(&content) {
        Some(m) if m == stored => m,
        _ => {
            return refused(
                &name,
                role,
                StatusCode::CONFLICT,
                "material_type_mismatch",
                "the material's content is not of its recorded type; it is not shown",
            )
        }
    };
    let resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
        content,
    )
        .into_response();
    if media != PDF {
        let mut resp = crate::enroll::harden(resp, MATERIAL_CSP);
        resp.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("inline"),
        );
        return resp;
    }
    // The handler found the material, so its id is `mat_` and URL-safe characters.
    let safe: String = material_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut resp = crate::enroll::harden(resp, PDF_CSP);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("inline; filename=\"{safe}.pdf\""))
            .unwrap_or(HeaderValue::from_static("inline")),
    );
    // The review page (same origin) frames it; `frame-ancestors 'self'` says the same.
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_queue_filter_keeps_channel_kind_and_age_and_refuses_bad_values() {
        let now = 1_000_000;
        let app = json!({"channel": "bjca-organisation", "kind": "new", "created_at": now - 7200});
        let keeps = |pairs: &[(&str, &str)]| match Filter::parse(&q(pairs)) {
            Ok(f) => f.keeps(&app, now),
            Err(e) => panic!("{}", e.message),
        };
        assert!(keeps(&[]));
        assert!(keeps(&[("channel", "bjca-organisation"), ("kind", "new")]));
        assert!(keeps(&[("older_than_hours", "2")]));
        assert!(!keeps(&[("older_than_hours", "3")]));
        assert!(!keeps(&[("channel", "other")]));
        assert!(!keeps(&[("kind", "renewal")]));
        for bad in [
            ("kind", "maybe"),
            ("older_than_hours", "-1"),
            ("older_than_hours", "x"),
        ] {
            assert!(Filter::parse(&q(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_plausible_application_ids_reach_a_url() {
        assert!(plausible_id("app_0123abcdef"));
        assert!(!plausible_id("app_x\r\nLocation: evil"));
        assert!(!plausible_id("mat_0123"));
    }
}
