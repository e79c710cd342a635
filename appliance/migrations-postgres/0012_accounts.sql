-- PostgreSQL twin of migrations/0012_accounts.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Relying parties' QR login challenges (issue 13). A challenge is bound to the relying party
-- that created it, answered at most once (status leaves 'pending' once, by a conditional
-- UPDATE), and unusable after expires_at. The payload is the exact text the phone signs.
-- subject is the masked subject (JSON) of the certificate that answered; no personal number.
CREATE TABLE login_challenges (
    id TEXT PRIMARY KEY,
    relying_party TEXT NOT NULL,
    payload TEXT NOT NULL,
    min_level TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    serial TEXT,
    level TEXT,
    subject TEXT,
    channel TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    answered_at BIGINT
);

CREATE INDEX login_challenges_by_expiry ON login_challenges (expires_at);

-- Accounts per realm (a group of channels sharing identities): personal or organisation, one
-- per subject (keyed hash, never the number), its assurance level and the methods that proved
-- it (evidence: method names and levels, no personal data), and the bound phone as a keyed hash
-- (phone_hash) so "how many accounts of this kind does this phone hold in this realm" needs no
-- clear number.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    realm TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject_hash TEXT NOT NULL,
    phone_hash TEXT NOT NULL,
    level TEXT,
    evidence TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (realm, kind, subject_hash)
);

CREATE INDEX accounts_by_phone ON accounts (realm, kind, phone_hash);
