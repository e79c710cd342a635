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
