//! Helpers shared by the end-to-end tests: start the appliance, talk mTLS, run openssl.
