//! CRLs (RFC 5280 section 5): full and delta, streamed through a spool file.
//!
//! ```text
//! CertificateList  ::=  SEQUENCE  {
//!      tbsCertList          TBSCertList,
//!      signatureAlgorithm   AlgorithmIdentifier,
//!      signatureValue       BIT STRING  }
//! TBSCertList  ::=  SEQUENCE  {
//!      version                 Version OPTIONAL, -- v2
//!      signature               AlgorithmIdentifier,
//!      issuer                  Name,
//!      thisUpdate              Time,
//!      nextUpdate              Time OPTIONAL,
//!      revokedCertificates     SEQUENCE OF SEQUENCE  {
//!           userCertificate         CertificateSerialNumber,
//!           revocationDate          Time,
//!           crlEntryExtensions      Extensions OPTIONAL } OPTIONAL,
//!      crlExtensions           [0]  EXPLICIT Extensions OPTIONAL }
//! ```

mod builder;
mod entry;

pub use builder::{CrlBuilder, CrlDigest, CrlError, CrlParams, PendingCrl};
pub use entry::RevokedEntry;
