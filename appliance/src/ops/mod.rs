//! Operating the appliance: Prometheus metrics on their own listener, health and readiness,
//! request ids, and consistent online backups.

pub mod backup;
pub mod check;
pub mod health;
pub mod metrics;
pub mod request_id;
pub mod setup;
