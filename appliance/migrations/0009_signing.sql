-- Signing discipline (issue 11): who placed a hold, every CA signature recorded before the HSM
-- signs, and the audit log's signed checkpoints. Portable SQL, as in 0001.

-- The actor (`operator:<name>`, `channel:<name>`) that placed the current certificateHold; a
-- channel may not lift a hold an operator placed (NULL: placed before this migration).
ALTER TABLE certificates ADD COLUMN hold_actor TEXT;

-- One row per signature a CA key is asked for (end-entity, OCSP responder and CA certificates,
-- CRLs), committed with its audit row before the HSM signs: no signed object is invisible.
CREATE TABLE signing_records (
    id INTEGER PRIMARY KEY,
    ca_name TEXT NOT NULL,
    ca_generation INTEGER NOT NULL,
    kind TEXT NOT NULL,
    serial TEXT NOT NULL,
    tbs_sha256 BLOB NOT NULL,
    recorded_at BIGINT NOT NULL,
    UNIQUE (ca_name, kind, serial)
);

-- The audit key (ECDSA P-256 in the HSM, made at the ceremony) that signs checkpoints.
CREATE TABLE audit_keys (
    id INTEGER PRIMARY KEY,
    key_uri TEXT NOT NULL,
    public_key BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- A signed statement "the audit log up to row `seq` has chain hash `hash`".
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash BLOB NOT NULL,
    at BIGINT NOT NULL,
    key_id INTEGER NOT NULL REFERENCES audit_keys (id),
    signature BLOB NOT NULL
);

-- A revoked CA generation (listed on its parent's CRL; issues nothing more).
ALTER TABLE certificate_authorities ADD COLUMN revoked_at BIGINT;
ALTER TABLE certificate_authorities ADD COLUMN revocation_reason INTEGER;
