-- Status services: revocation bookkeeping, CRL numbering and history, pre-signed OCSP responses,
-- delegated OCSP responder certificates. Portable SQL, as in 0001.

-- invalidity_date: RFC 5280 invalidityDate of a revocation; status_seq: the value of the
-- `status_seq` counter at the certificate's last status change (delta CRLs list every
-- certificate changed after their base); status_changed_at: when (removeFromCRL date).
ALTER TABLE certificates ADD COLUMN invalidity_date BIGINT;
ALTER TABLE certificates ADD COLUMN status_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE certificates ADD COLUMN status_changed_at BIGINT;

CREATE INDEX certificates_by_status ON certificates (ca_id, status);
CREATE INDEX certificates_by_status_seq ON certificates (ca_id, status_seq);

-- Monotonic counters shared by every node: `crl_number` (full and delta CRLs share it),
-- `status_seq` (one step per revocation or unhold).
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('crl_number', 0);
INSERT INTO counters (name, value) VALUES ('status_seq', 0);

-- Every CRL published: kind 'full' or 'delta'; status_seq is the snapshot it covers.
CREATE TABLE crls (
    number BIGINT PRIMARY KEY,
    ca_id INTEGER NOT NULL REFERENCES certificate_authorities (id),
    kind TEXT NOT NULL,
    base_number BIGINT,
    status_seq BIGINT NOT NULL,
    entries BIGINT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    etag TEXT NOT NULL
);
CREATE INDEX crls_latest ON crls (ca_id, kind, number);

-- One delegated OCSP responder certificate per issuing CA generation (newest row wins).
CREATE TABLE ocsp_responders (
    id INTEGER PRIMARY KEY,
    ca_id INTEGER NOT NULL REFERENCES certificate_authorities (id),
    key_uri TEXT NOT NULL,
    certificate BLOB NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ocsp_responders_by_ca ON ocsp_responders (ca_id, not_after);

-- The current pre-signed OCSPResponse DER of each known certificate.
CREATE TABLE ocsp_responses (
    ca_id INTEGER NOT NULL REFERENCES certificate_authorities (id),
    serial TEXT NOT NULL,
    der BLOB NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    PRIMARY KEY (ca_id, serial)
);
CREATE INDEX ocsp_responses_by_next_update ON ocsp_responses (next_update);
