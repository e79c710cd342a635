//! The route table of each listener: one list that both builds the router and is what
//! `appliance/openapi.json` is checked against, so the documented API cannot drift from the
//! served one.

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use super::{
    accounts, agents, applications, callbacks, certificates, escrow, login, public, review,
    revocation, signatures, status_routes, verifications, AppState,
};
use crate::{console, enroll};

/// One method on one path and the handler that serves it.
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path in axum syntax (`{id}`, `{*rest}`).
    pub path: &'static str,
    handler: MethodRouter<Arc<AppState>>,
}

fn get_(path: &'static str, handler: MethodRouter<Arc<AppState>>) -> Route {
    Route {
        method: Method::GET,
        path,
        handler,
    }
}

fn post_(path: &'static str, handler: MethodRouter<Arc<AppState>>) -> Route {
    Route {
        method: Method::POST,
        path,
        handler,
    }
}

/// Served on both listeners: health and status services.
fn shared() -> Vec<Route> {
    vec![
        get_("/healthz", get(crate::ops::health::healthz)),
        get_("/readyz", get(crate::ops::health::readyz)),
        post_("/ocsp", post(status_routes::ocsp_post)),
        get_("/ocsp/", get(status_routes::ocsp_get)),
        get_("/ocsp/{*request}", get(status_routes::ocsp_get)),
        get_("/crl/{file}", get(status_routes::crl)),
    ]
}

/// The mTLS API: operators and channels.
pub fn api() -> Vec<Route> {
    let mut routes = shared();
    routes.extend([
        post_("/api/v1/certificates", post(certificates::issue)),
        get_("/api/v1/certificates/{serial}", get(certificates::get)),
        post_(
            "/api/v1/certificates/{serial}/revoke",
            post(revocation::revoke),
        ),
        post_(
            "/api/v1/certificates/{serial}/unhold",
            post(revocation::unhold),
        ),
        post_(
            "/api/v1/certificates/{serial}/encryption",
            post(escrow::issue_encryption),
        ),
        post_(
            "/api/v1/escrow/{id}/recoveries",
            post(escrow::request_recovery),
        ),
        post_(
            "/api/v1/recoveries/{id}/approve",
            post(escrow::approve_recovery),
        ),
        get_("/api/v1/plugins", get(verifications::plugins)),
        post_("/api/v1/verifications", post(verifications::start)),
        get_("/api/v1/verifications/{id}", get(verifications::get)),
        post_(
            "/api/v1/verifications/{id}/input",
            post(verifications::input),
        ),
        post_(
            "/api/v1/verifications/{id}/cancel",
            post(verifications::cancel),
        ),
        post_("/api/v1/applications", post(applications::create)),
        get_("/api/v1/applications/{id}", get(applications::get)),
        post_("/api/v1/applications/{id}/input", post(applications::input)),
        post_(
            "/api/v1/applications/{id}/choose",
            post(applications::choose),
        ),
        post_(
            "/api/v1/applications/{id}/confirm",
            post(applications::confirm),
        ),
        post_("/api/v1/applications/{id}/csr", post(applications::csr)),
        post_(
            "/api/v1/applications/{id}/cancel",
            post(applications::cancel),
        ),
        post_(
            "/api/v1/applications/{id}/materials",
            post(review::upload).layer(axum::extract::DefaultBodyLimit::max(
                review::MATERIAL_BODY_LIMIT,
            )),
        ),
        get_(
            "/api/v1/applications/{id}/materials/{material_id}",
            get(review::material),
        ),
        get_("/api/v1/review-queue", get(review::queue)),
        get_("/api/v1/review-queue/{id}", get(review::queue_entry)),
        post_("/api/v1/applications/{id}/review", post(review::decide)),
        post_("/api/v1/applications/{id}/offline", post(review::offline)),
        post_(
            "/api/v1/applications/{id}/authorise",
            post(review::authorise),
        ),
        post_("/api/v1/lookups", post(review::lookup)),
        post_("/api/v1/lookups/{id}/verify", post(review::verify_lookup)),
        get_("/api/v1/organisations/{uscc}/agents", get(agents::list)),
        post_(
            "/api/v1/organisations/{uscc}/agent-changes",
            post(agents::request),
        ),
        post_(
            "/api/v1/organisations/{uscc}/agent-changes/{id}/confirm",
            post(agents::confirm),
        ),
        // The operator console (HTML; see crate::console).
        get_("/console/", get(console::overview)),
        get_("/console/console.css", get(console::stylesheet)),
        get_("/console/certificates", get(console::certificates)),
        get_("/console/certificates/{serial}", get(console::certificate)),
        post_(
            "/console/certificates/{serial}/status",
            post(console::change_status),
        ),
        get_("/console/audit", get(console::audit)),
        get_("/console/review", get(console::review)),
        get_("/console/review/{id}", get(console::review_application)),
        post_("/console/review/{id}/decision", post(console::decide)),
        get_(
            "/console/review/{id}/materials/{material_id}",
            get(console::material),
        ),
        post_("/api/v1/login-challenges", post(login::create)),
        get_("/api/v1/login-challenges/{id}", get(login::get)),
        post_(
            "/api/v1/login-challenges/{id}/response",
            post(login::respond),
        ),
        post_("/api/v1/signatures/verify", post(signatures::verify)),
        post_("/api/v1/downloads", post(accounts::start_download)),
        post_(
            "/api/v1/downloads/{id}/complete",
            post(accounts::complete_download),
        ),
        post_("/api/v1/code-logins", post(accounts::start_code_login)),
        post_(
            "/api/v1/code-logins/{id}/complete",
            post(accounts::complete_code_login),
        ),
    ]);
    routes
}

/// The plain-HTTP public listener: relying parties and vendor callbacks.
pub fn public() -> Vec<Route> {
    let mut routes = shared();
    routes.extend([
        get_("/ca/{file}", get(public::ca_certificate)),
        post_("/callbacks/{plugin}/{id}", post(callbacks::receive)),
        // The reference enrollment page (HTML + its JSON backend; see crate::enroll).
        get_("/enroll/", get(enroll::page)),
        get_("/enroll/{file}", get(enroll::asset)),
        post_("/enroll/api/applications", post(enroll::create)),
        get_("/enroll/api/applications/{id}", get(enroll::get)),
        post_("/enroll/api/applications/{id}/{action}", post(enroll::act)),
    ]);
    routes
}

/// A router serving exactly `routes` (methods of one path merge).
pub fn router(routes: Vec<Route>) -> Router<Arc<AppState>> {
    routes
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path, route.handler))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;

    use super::*;

    /// `(METHOD, /path/{param})` as OpenAPI writes it.
    fn listed(routes: &[Route]) -> BTreeSet<(String, String)> {
        routes
            .iter()
            .map(|r| (r.method.to_string(), r.path.replace("{*", "{")))
            .collect()
    }

    fn documented(listener: &str) -> BTreeSet<(String, String)> {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).expect("openapi.json parses");
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let on = op["x-listener"].as_str().expect("x-listener");
                if on == listener || (on == "both" && listener != "metrics") {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn openapi_lists_exactly_the_routes_each_listener_serves() {
        assert_eq!(documented("api"), listed(&api()), "mTLS API");
        assert_eq!(documented("public"), listed(&public()), "public listener");
        assert_eq!(
            documented("metrics"),
            BTreeSet::from([("GET".to_owned(), "/metrics".to_owned())]),
            "metrics listener"
        );
    }

    #[test]
    fn no_method_and_path_is_listed_twice() {
        for routes in [api(), public()] {
            assert_eq!(listed(&routes).len(), routes.len());
        }
    }
}
