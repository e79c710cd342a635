//! The CA appliance: configuration, storage, issuance, HTTP API and status services.
