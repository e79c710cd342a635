-- Leases shared by every node on one database: one holder at a time per named job (e.g.
-- `crl:<ca id>`: the node generating that CA's CRLs). Taken or renewed by one atomic upsert
-- that only overwrites an expired lease or the holder's own; a dead holder's lease expires.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Pre-signed OCSP responses by signing time: a node that does not hold a CA's pre-signing lease
-- loads what the holder signed since its last look.
CREATE INDEX ocsp_responses_signed ON ocsp_responses (ca_id, this_update);

-- The newest signed CRL of each published file (`personal.crl`, `personal-delta.crl`, shard
-- files), so a node that did not generate it serves the same bytes.
CREATE TABLE crl_documents (
    file TEXT PRIMARY KEY,
    number INTEGER NOT NULL,
    der BLOB NOT NULL
);
