-- Display texts searched with :text: each resource keeps one keyed hash per
-- text, and the prefixes of a text (ADR 0005) are kept once per tenant in a
-- dictionary shared by every resource holding that text. The resources stored
-- before lose their per-prefix rows in a reindex job.
CREATE TABLE idx_text_prefix (
    tenant      TEXT  NOT NULL,
    prefix_hash BYTEA NOT NULL,
    text_hash   BYTEA NOT NULL,
    PRIMARY KEY (tenant, prefix_hash, text_hash)
);

-- Index rows are written with their resource, whose row already references
-- the tenant: a second check per index row only costs writes time.
ALTER TABLE idx_token DROP CONSTRAINT IF EXISTS idx_token_tenant_fkey;
ALTER TABLE idx_reference DROP CONSTRAINT IF EXISTS idx_reference_tenant_fkey;
ALTER TABLE idx_date DROP CONSTRAINT IF EXISTS idx_date_tenant_fkey;
ALTER TABLE idx_string_hash DROP CONSTRAINT IF EXISTS idx_string_hash_tenant_fkey;
ALTER TABLE idx_number DROP CONSTRAINT IF EXISTS idx_number_tenant_fkey;
ALTER TABLE idx_quantity DROP CONSTRAINT IF EXISTS idx_quantity_tenant_fkey;
ALTER TABLE idx_uri DROP CONSTRAINT IF EXISTS idx_uri_tenant_fkey;
ALTER TABLE idx_sort DROP CONSTRAINT IF EXISTS idx_sort_tenant_fkey;
ALTER TABLE idx_compartment DROP CONSTRAINT IF EXISTS idx_compartment_tenant_fkey;

INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at)
SELECT id, '0013_text_dictionary', 'display texts through the text dictionary', FALSE, '', '', 0, CAST(extract(epoch FROM now()) * 1000000 AS BIGINT), CAST(extract(epoch FROM now()) * 1000000 AS BIGINT)
FROM tenants;
