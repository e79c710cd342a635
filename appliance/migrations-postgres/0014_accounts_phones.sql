-- PostgreSQL twin of migrations/0014_accounts_phones.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Accounts, second part (issue 13): one phone per account kind per realm enforced by the
-- database, certificate downloads to the bound phone, and phone-code logins.

-- Who holds a phone in a realm where a phone binds one account of a kind (personal_per_phone =
-- 1). The UNIQUE constraint is the rule: of two applications declaring the same phone at the
-- same instant, exactly one inserts its claim. A claim is taken at application creation (in the
-- same transaction as the application), becomes bound = 1 when the account is bound, and an
-- unbound claim whose application closed without success (or never committed) may be taken over.
-- Keyed hashes only (under the data key active at the time), never the numbers.
CREATE TABLE phone_bindings (
    realm TEXT NOT NULL,
    kind TEXT NOT NULL,
    phone_hash TEXT NOT NULL,
    subject_hash TEXT NOT NULL,
    application_id TEXT,
    bound BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (realm, kind, phone_hash)
);

CREATE INDEX phone_bindings_by_subject ON phone_bindings (realm, kind, subject_hash);

-- A certificate download to the phone of an application that awaits only its CSR: the code
-- went to the verified phone (one_time_codes, keyed by this id, purpose 'download'); status
-- open -> used (a conditional UPDATE: one completion only).
CREATE TABLE downloads (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    application_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    finished_at BIGINT
);

-- A phone-code login: the account found by the phone's keyed hash in the channel's realm
-- (account_id NULL when none: no code is sent, the answer looks the same); the code lives in
-- one_time_codes (purpose 'code_login'); status open -> used.
CREATE TABLE code_logins (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    realm TEXT NOT NULL,
    account_id TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    finished_at BIGINT
);
