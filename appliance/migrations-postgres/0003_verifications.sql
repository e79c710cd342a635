-- PostgreSQL twin of migrations/0003_verifications.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Identity verifications driven by plugins (appliance/src/verification). One row per verification;
-- every committed step replaces the row in one transaction (state + outbox + timers together).
-- Personal data (the applicant document, the plugin's state, the outbox's request bodies and the
-- challenges) is only stored sealed with AES-256-GCM (`sealed_*` columns, nonce || ciphertext,
-- the verification id as associated data). Plain columns carry no personal data.
CREATE TABLE verifications (
    id              TEXT PRIMARY KEY,           -- vrf_<32 hex>
    owner           TEXT NOT NULL,              -- channel:<name> or operator:<cn>
    reference       TEXT,                       -- the caller's own idempotency key, optional
    plugin          TEXT NOT NULL,
    status          TEXT NOT NULL,              -- pending | awaiting_user | succeeded | failed
    revision        BIGINT NOT NULL,
    sealed_applicant BYTEA NOT NULL,
    sealed_state    BYTEA NOT NULL,              -- {state, outbox, challenges}
    outbox_len      BIGINT NOT NULL,            -- actions committed and not yet answered
    timers          TEXT NOT NULL,              -- JSON [{id, due_at, due_unix}] (no personal data)
    next_due        BIGINT,                     -- earliest timer due, unix seconds
    result          TEXT,                       -- JSON VerificationResult (no personal data)
    created_at      BIGINT NOT NULL,
    updated_at      TEXT NOT NULL,              -- RFC 3339 of the last committed step
    UNIQUE (owner, reference)
);
CREATE INDEX verifications_outbox ON verifications (plugin) WHERE outbox_len > 0;
CREATE INDEX verifications_due ON verifications (plugin, next_due) WHERE next_due IS NOT NULL;
