-- PostgreSQL twin of migrations/0016_escrow.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Dual certificates (GM/T 0034): the escrowed private keys of encryption certificates, each
-- sealed (AES-256-GCM, iv + ciphertext with tag) under an escrow-only AES key on the HSM
-- (wrapping_key: its RFC 7512 URI), bound to its id; one per signing certificate.
CREATE TABLE escrowed_keys (
    id TEXT PRIMARY KEY,
    signing_serial TEXT NOT NULL UNIQUE,
    encryption_serial TEXT,
    public_key BYTEA NOT NULL,
    wrapping_key TEXT NOT NULL,
    iv BYTEA NOT NULL,
    sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Recoveries of an escrowed key: requested by one RA officer, approved by another; the key is
-- delivered in an envelope to deliver_to (an SM2 SubjectPublicKeyInfo, DER).
CREATE TABLE escrow_recoveries (
    id TEXT PRIMARY KEY,
    escrow_id TEXT NOT NULL REFERENCES escrowed_keys (id),
    requested_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    deliver_to BYTEA NOT NULL,
    requested_at BIGINT NOT NULL,
    approved_by TEXT,
    approved_at BIGINT
);
