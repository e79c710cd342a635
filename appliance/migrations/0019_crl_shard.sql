-- Partitioned CRLs: the shard a certificate of a `crl_shards` profile was given at issuance
-- (the one its CRL distribution point names; NULL when its profile is not sharded), so one
-- shard's CRL reads only its own rows. Rows older than this column are filled in at start.
ALTER TABLE certificates ADD COLUMN crl_shard BIGINT;

CREATE INDEX certificates_by_crl_shard ON certificates (ca_id, profile, crl_shard, status);
