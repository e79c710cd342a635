-- PostgreSQL twin of migrations/0013_agents.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- An organisation's agents, per channel: the organisation keyed by the keyed hash of its USCC
-- (as applications are), each agent's name, ID, phone and e-mail sealed (AES-256-GCM under data
-- key key_id, bound to the agent id); exactly one agent per organisation is main.
CREATE TABLE organisation_agents (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    subject_hash TEXT NOT NULL,
    is_main BIGINT NOT NULL,
    id_hash TEXT NOT NULL,
    key_id BIGINT NOT NULL,
    sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX organisation_agents_by_subject ON organisation_agents (channel, subject_hash);
