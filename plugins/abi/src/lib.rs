//! The plugin ABI shared by the appliance host and every plugin.
//!
//! - `include/ca_plugin.h` is the contract; [`ffi`] is its Rust mirror (and the only module with
//!   `unsafe`), including the host-side safe wrapper [`ffi::PluginTable`].
//! - [`doc`] holds the JSON documents that cross the boundary (manifest, StepInput, StepOutput).
//! - [`sdk`] is what a Rust plugin author uses: the [`sdk::Verifier`] trait and
//!   [`export_verifier!`]. See `examples/static_code.rs` for a complete small verifier.
//! - [`channel`] holds the documents of channel plugins (manifest kind `channel`): application
//!   events and SMS / e-mail requests in, HTTP actions out; [`sdk::Channel`] and
//!   [`export_channel!`] are their SDK.
//! - [`vendor`] helps a plugin call a vendor API through host HTTP actions, with retries;
//!   [`flow`] dispatches such a verifier's events to its phases, once for every plugin.
//!
//! ```ignore
//! struct MyVerifier;
//! impl plugin_abi::sdk::Verifier for MyVerifier { /* manifest, configure, step */ }
//! plugin_abi::export_verifier!(MyVerifier);
//! ```
// This crate is the FFI edge: raw pointers from the C ABI are turned into safe types in `ffi`.
#![allow(unsafe_code)]

pub mod channel;
pub mod doc;
pub mod ffi;
pub mod flow;
pub mod sdk;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
pub mod vendor;

pub use status::StatusCode;
