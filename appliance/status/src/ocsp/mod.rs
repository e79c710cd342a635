//! OCSP (RFC 6960, RFC 5019): parse requests, identify issuers, build and assemble responses.

mod cert_id;
mod get_path;
mod issuer;
mod request;
mod response;

pub use cert_id::{CertId, HashAlgorithm};
pub use get_path::{decode_get_path, GetPathError};
pub use issuer::{CertificateError, IssuerKeyHashes};
pub use request::{Nonce, OcspRequest, OcspRequestError, MAX_NONCE_LEN};
pub use response::{
    assemble, error_response, CertStatus, OcspErrorStatus, ResponseData, ResponseError,
    SingleResponse,
};
