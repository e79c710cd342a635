//! PKCS#11 access for the CA: the only crate that names cryptoki.
