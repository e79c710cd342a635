-- PostgreSQL twin of migrations/0007_applications.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Applications: a channel's order for a certificate (or a revocation, a phone change), driven
-- through the steps of the channel's policy. The request and its progress are sealed
-- (sealed_doc, AES-256-GCM under data key key_id); the subject is found again by a keyed hash of
-- ID type + number (subject_hash, never the number). open_slot is set while the application is
-- open and is unique: one open application per subject per channel.
CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    profile TEXT NOT NULL,
    status TEXT NOT NULL,
    subject_hash TEXT NOT NULL,
    open_slot TEXT UNIQUE,
    target_serial TEXT,
    issued_serial TEXT,
    failure_code TEXT,
    key_id BIGINT NOT NULL,
    sealed_doc BYTEA NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX applications_by_status ON applications (status, expires_at);
CREATE INDEX applications_by_subject ON applications (subject_hash, status);
CREATE INDEX applications_by_issued ON applications (issued_serial);

-- Per person (keyed hash): the verified phone, sealed.
CREATE TABLE subjects (
    subject_hash TEXT PRIMARY KEY,
    key_id BIGINT NOT NULL,
    sealed_phone BYTEA NOT NULL,
    phone_verified_at BIGINT NOT NULL
);

-- Successful verifications a later application of the same person may reuse within its
-- policy's window: the verified attributes sealed, the method, when.
CREATE TABLE subject_verifications (
    verification_id TEXT PRIMARY KEY,
    subject_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    application_id TEXT NOT NULL,
    assurance TEXT,
    key_id BIGINT NOT NULL,
    sealed_attributes BYTEA NOT NULL,
    verified_at BIGINT NOT NULL
);

CREATE INDEX subject_verifications_by_subject ON subject_verifications (subject_hash, method, verified_at);
