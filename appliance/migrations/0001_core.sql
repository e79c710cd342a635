-- CA hierarchy, issued certificates and the tamper-evident audit log.
-- Portable SQL: BIGINT unix seconds, TEXT, BLOB (BYTEA on PostgreSQL), no SQLite-only constructs
-- beyond INTEGER PRIMARY KEY (a BIGSERIAL on PostgreSQL).

CREATE TABLE certificate_authorities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    generation INTEGER NOT NULL,
    parent_id INTEGER REFERENCES certificate_authorities (id),
    key_uri TEXT NOT NULL,
    certificate BLOB NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (name, generation)
);

CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    ca_id INTEGER NOT NULL REFERENCES certificate_authorities (id),
    profile TEXT NOT NULL,
    channel TEXT,
    subject_dn TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    der BLOB NOT NULL,
    issued_at BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'valid',
    revoked_at BIGINT,
    revocation_reason INTEGER
);

CREATE INDEX certificates_by_ca ON certificates (ca_id, not_after);

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
