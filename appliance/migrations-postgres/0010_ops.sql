-- PostgreSQL twin of migrations/0010_ops.sql (kept equivalent by tests/tests/storage_schema.rs):
-- INTEGER -> BIGINT, BLOB -> BYTEA, INTEGER PRIMARY KEY -> BIGINT identity.
-- Operations: one row the readiness probe rewrites, proving the database takes a durable write.
CREATE TABLE ops_probe (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    probed_at BIGINT NOT NULL
);
INSERT INTO ops_probe (id, probed_at) VALUES (1, 0);
