-- PostgreSQL twin of migrations/0006_limits_callbacks.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Limits on what a channel and a person can spend (appliance/src/verification/limits.rs), and
-- vendor callback replay protection (appliance/src/verification/callbacks.rs).
-- A scope is `channel:<name>` or `subject:<32 hex>`, the latter an HMAC-SHA256 of the normalised
-- phone / ID number / USCC / bank account under a key derived from the data key: no subject is
-- stored in clear.
CREATE TABLE limit_events (
    scope   TEXT NOT NULL,
    class   TEXT NOT NULL,      -- starts | sms | carrier | bank | face | payout
    at      BIGINT NOT NULL     -- unix seconds
);
CREATE INDEX limit_events_by_scope ON limit_events (scope, class, at);
CREATE INDEX limit_events_by_time ON limit_events (at);

-- The scopes a verification's actions count against, fixed when it starts.
CREATE TABLE verification_scopes (
    verification_id TEXT PRIMARY KEY,
    scopes          TEXT NOT NULL,   -- JSON array of scope strings
    created_at      BIGINT NOT NULL
);

-- Signatures of accepted vendor callbacks, kept past the timestamp window: a replay is refused.
CREATE TABLE callback_signatures (
    signature   TEXT PRIMARY KEY,    -- plugin:hex HMAC
    at          BIGINT NOT NULL
);
CREATE INDEX callback_signatures_by_time ON callback_signatures (at);
