-- Keys now have a purpose: 'data' (encrypts bodies) or 'search' (keys the hashes of
-- identifying index values). One active key per tenant and purpose.
ALTER TABLE data_keys ADD COLUMN purpose TEXT NOT NULL DEFAULT 'data';
DROP INDEX data_keys_one_active;
CREATE UNIQUE INDEX data_keys_one_active ON data_keys (tenant, purpose) WHERE active;

-- Identifying string values (names, addresses) are indexed only as keyed hashes
-- (HMAC-SHA-256 under the tenant's search key, truncated to 16 bytes) of their
-- normalised prefixes and of their exact text (docs/adr/0005).
CREATE TABLE idx_string_hash (
    tenant   TEXT  NOT NULL REFERENCES tenants (id),
    res_type TEXT  NOT NULL,
    res_id   TEXT  NOT NULL,
    param    TEXT  NOT NULL,
    hash     BYTEA NOT NULL
);
CREATE INDEX idx_string_hash_value ON idx_string_hash (tenant, res_type, param, hash);
CREATE INDEX idx_string_hash_owner ON idx_string_hash (tenant, res_type, res_id);
