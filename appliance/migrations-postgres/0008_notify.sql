-- PostgreSQL twin of migrations/0008_notify.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Contact (appliance/src/notify/): the durable outbox of channel-plugin deliveries, the
-- appliance's own one-time codes, and picture captchas.

-- One delivery: one request (an application event, an SMS, an e-mail) to one channel plugin.
-- The request and the plugin's actions are personal data (phone, code, address): sealed with
-- a data key (key_id) and dropped once the delivery finished.
CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,            -- ntf_<32 hex>; the plugin's delivery_id
    channel         TEXT NOT NULL,
    plugin          TEXT NOT NULL,
    kind            TEXT NOT NULL,               -- event | sms | email
    key_id          BIGINT,                      -- data key of the sealed columns (NULL once purged)
    sealed_request  BYTEA,                        -- ChannelRequest JSON
    sealed_actions  BYTEA,                        -- the plugin's ChannelOutput actions, once asked
    done_actions    TEXT NOT NULL DEFAULT '[]',  -- JSON ids of actions already delivered
    status          TEXT NOT NULL,               -- pending | delivered | failed
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,             -- unix seconds
    last_error      TEXT,                        -- no personal data (HTTP status, error kind)
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
CREATE INDEX notifications_by_key ON notifications (key_id);

-- One open code per (application, purpose): only its keyed hash is stored (HMAC under a key
-- derived from data key key_id, bound to application and purpose).
CREATE TABLE one_time_codes (
    application_id  TEXT NOT NULL,
    purpose         TEXT NOT NULL,               -- confirm_phone | application_signature | new_phone
    key_id          BIGINT NOT NULL,
    code_mac        BYTEA NOT NULL,
    phone_mac       BYTEA NOT NULL,               -- which phone it was sent to, keyed hash
    attempts        BIGINT NOT NULL DEFAULT 0,  -- wrong tries so far
    state           TEXT NOT NULL,               -- open | used | void
    expires_at      BIGINT NOT NULL,
    resend_after    BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (application_id, purpose)
);

-- Picture captchas: the answer's keyed hash, one use (deleted when redeemed), short expiry.
CREATE TABLE captchas (
    id              TEXT PRIMARY KEY,            -- cap_<32 hex>
    subject         TEXT NOT NULL,               -- what it guards (an application id)
    answer_mac      BYTEA NOT NULL,
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX captchas_by_time ON captchas (expires_at);
