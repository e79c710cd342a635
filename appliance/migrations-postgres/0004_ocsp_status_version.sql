-- PostgreSQL twin of migrations/0004_ocsp_status_version.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Every pre-signed OCSP response records the certificate status version (`certificates.status_seq`)
-- it was signed for. A response is stored only for the certificate's current version and never
-- replaces one signed for a newer version; a stored response whose version is older than the
-- certificate's is stale: it is never loaded or served, and the pre-signer re-signs it.
-- Responses stored before this migration carry -1, so every one of them is re-signed once.
ALTER TABLE ocsp_responses ADD COLUMN status_seq BIGINT NOT NULL DEFAULT -1;
