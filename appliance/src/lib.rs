//! The CA appliance: configuration, storage, issuance, HTTP API and status services.
//!
//! See ARCHITECTURE.md at the repository root for the map of modules and their invariants.

pub mod account;
pub mod api;
pub mod application;
pub mod audit;
pub mod ca;
pub mod config;
pub mod console;
pub mod contact;
pub mod demo;
pub mod enroll;
pub mod fault;
pub mod keymgmt;
pub mod listener;
pub mod logging;
pub mod notify;
pub mod ops;
pub mod profile;
pub mod relying;
pub mod server;
pub mod status;
pub mod storage;
pub mod verification;
