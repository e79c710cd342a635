//! PKCS#11 access for the CA: the only crate that names cryptoki.
//!
//! CA private keys are generated on the token and never leave it; this crate signs digests
//! through a pool of logged-in sessions and hands back signatures in X.509 form. AES-256
//! wrapping keys generated on the token seal small secrets (the personal-data key) kept outside.
//! SM2 keys use the token's vendor constants from its `Sm2Mechanisms` table.
//! No `unsafe` here: cryptoki owns the FFI edge.

mod algorithm;
mod config;
mod error;
mod hsm;
mod keys;
mod metrics;
mod pin;
mod pkcs11;
mod pool;
mod signature;
mod sm2;
mod token;
mod uri;
mod wrap;

pub use algorithm::{KeyKind, SignatureAlgorithm};
pub use config::{HsmConfig, DEFAULT_POOL_SIZE};
pub use error::HsmError;
pub use hsm::Hsm;
pub use metrics::register as register_metrics;
pub use pin::PinSource;
#[doc(hidden)]
pub use pkcs11::raw_context;
pub use sm2::{
    sm2_digest, sm2_hasher, sm2_point, sm2_z, Sm2Hashing, Sm2Mechanisms, DEFAULT_SIGNER_ID,
};
pub use token::init_token;
pub use uri::KeyUri;
pub use wrap::{WrappedSecret, WRAP_IV_LEN};
