//! Applications: a channel's order for a certificate (or a revocation, a phone change) for a
//! verified person, driven through the steps of the channel's policy.
//!
//! [`channel`] loads channel files, [`policy`] is the policy format, [`machine`] the explicit
//! state machine and the sealed progress document, [`subject`] the declared subject and its keyed
//! hash, [`service`] the engine the API calls (and its background task: advance, expire).

pub mod channel;
pub mod machine;
pub mod organisation;
pub mod policy;
pub mod service;
pub mod subject;

pub use service::{AppError, ApplicationService, CreateRequest, Failure, Upload, Who};
