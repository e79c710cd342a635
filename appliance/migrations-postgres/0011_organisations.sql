-- PostgreSQL twin of migrations/0011_organisations.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Materials an applicant uploads for an application (business licence, ID photos, authorisation
-- letter): the content sealed (AES-256-GCM under data key key_id, bound to the material id),
-- its type as read from the content, its size and SHA-256 digest (of the plain content, so an RA
-- officer can check what they read is what was uploaded).
CREATE TABLE application_materials (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (id),
    kind TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    key_id BIGINT NOT NULL,
    sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX application_materials_by_application ON application_materials (application_id, created_at);
