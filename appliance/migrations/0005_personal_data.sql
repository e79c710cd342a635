-- Personal data lifecycle (issue 9): every personal value of a verification is sealed at rest with
-- a data key from `data_keys`; the data keys themselves are stored only wrapped by an AES-256 key
-- that never leaves the HSM; finished verifications lose their applicant data after the retention
-- time while their result (the evidence) stays.
--
-- The 0003 table kept `result` (with vendor evidence and face scores) and `reference` in clear and
-- sealed the rest under a clear key file, which this version refuses. Its rows cannot be re-sealed
-- by SQL, so they are dropped: verifications are short-lived and issuance records do not depend on
-- them (no certificate references a verification yet).

-- Data keys, wrapped (AES-256-GCM by `wrapping_key` on the HSM, IV `iv`). Exactly one is `active`
-- (new values are sealed with it); `retiring` keys are still read until a rotation has re-sealed
-- every row, then deleted (destroyed).
CREATE TABLE data_keys (
    id              INTEGER PRIMARY KEY,
    wrapping_key    TEXT NOT NULL,              -- RFC 7512 URI of the HSM key that wraps this one
    iv              BLOB NOT NULL,
    wrapped         BLOB NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('active', 'retiring')),
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX data_keys_one_active ON data_keys (state) WHERE state = 'active';

DROP INDEX IF EXISTS verifications_outbox;
DROP INDEX IF EXISTS verifications_due;
DROP TABLE verifications;

-- One row per verification; every committed step replaces the row in one transaction. All sealed
-- columns of a row are sealed by the same data key (`key_id`); each sealed value is
-- key id (4 bytes) || nonce (12) || AES-256-GCM ciphertext+tag, bound to (row id, column, key id).
-- Plain columns carry no personal data. After the retention time a finished row keeps only its
-- plain columns and `sealed_result` (outcome, verified attribute names, vendor evidence).
CREATE TABLE verifications (
    id              TEXT PRIMARY KEY,           -- vrf_<32 hex>
    owner           TEXT NOT NULL,              -- channel:<name> or operator:<cn>
    reference_mac   BLOB,                       -- HMAC-SHA256 of the caller's idempotency key
    sealed_reference BLOB,                      -- the idempotency key itself, sealed
    plugin          TEXT NOT NULL,
    status          TEXT NOT NULL,              -- pending | awaiting_user | succeeded | failed
    revision        BIGINT NOT NULL,
    key_id          INTEGER NOT NULL REFERENCES data_keys (id),
    sealed_applicant BLOB,                      -- NULL once purged
    sealed_state    BLOB,                       -- {state, outbox, challenges}; NULL once purged
    outbox_len      BIGINT NOT NULL,            -- actions committed and not yet answered
    timers          TEXT NOT NULL,              -- JSON [{id, due_at, due_unix}] (no personal data)
    next_due        BIGINT,                     -- earliest timer due, unix seconds
    sealed_result   BLOB,                       -- VerificationResult (evidence), kept after purge
    created_at      BIGINT NOT NULL,
    updated_at      TEXT NOT NULL,              -- RFC 3339 of the last committed step
    finished_at     BIGINT,                     -- when it became succeeded/failed, unix seconds
    purged_at       BIGINT,                     -- when its applicant data was purged
    UNIQUE (owner, reference_mac)
);
CREATE INDEX verifications_outbox ON verifications (plugin) WHERE outbox_len > 0;
CREATE INDEX verifications_due ON verifications (plugin, next_due) WHERE next_due IS NOT NULL;
CREATE INDEX verifications_key ON verifications (key_id);
CREATE INDEX verifications_finished ON verifications (finished_at) WHERE purged_at IS NULL;
