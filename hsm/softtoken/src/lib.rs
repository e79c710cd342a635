//! `ca-softtoken`: a software PKCS#11 token with SM2 and ECDSA P-256, for the demo and the tests.
//!
//! No open-source PKCS#11 token offers SM2, so this one exists to drive the `hsm` crate's SM2
//! path exactly as a vendor HSM would be driven: through `cryptoki`, with vendor-defined
//! constants (`vendor`). It implements the subset the appliance and `pkcs11-tool` use: slots
//! (one per initialised token plus a free one), C_InitToken with an SO PIN, C_InitPIN /
//! C_SetPIN, sessions, SO and user login, key-pair generation, object search, attributes,
//! signing and verification, random numbers.
//!
//! Tokens live under a state directory (`store`): `CA_SOFTTOKEN_DIR`, or `tokendir = ...` in
//! the file named by `CA_SOFTTOKEN_CONF`. Each token has a random master key sealed under each
//! PIN (Argon2id, AES-256-GCM); private-key scalars are sealed under the master key and can
//! never be read through the API (`CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, always).
//! Production uses a vendor HSM; this token is not hardened against an attacker on the host.

pub mod vendor;

mod keys;
mod module;
mod object;
mod store;

#[allow(unsafe_code)] // the C ABI: every block states its SAFETY contract
mod ffi;

pub use ffi::C_GetFunctionList;
