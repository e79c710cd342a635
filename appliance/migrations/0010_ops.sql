-- Operations: one row the readiness probe rewrites, proving the database takes a durable write.
CREATE TABLE ops_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
);
INSERT INTO ops_probe (id, probed_at) VALUES (1, 0);
