//! OCSP and CRL wire formats (RFC 6960, RFC 5019, RFC 5280 section 5).
