-- Search index rows of the current version of each resource, replaced in the same
-- transaction as every write. Only values that do not identify a person are kept in
-- clear (docs/adr/0005); identifying values get keyed-hash tables of their own.

CREATE TABLE idx_token (
    tenant   TEXT NOT NULL REFERENCES tenants (id),
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    system   TEXT NOT NULL,
    code     TEXT NOT NULL
);
CREATE INDEX idx_token_value ON idx_token (tenant, res_type, param, code, system);
CREATE INDEX idx_token_owner ON idx_token (tenant, res_type, res_id);

CREATE TABLE idx_reference (
    tenant      TEXT NOT NULL REFERENCES tenants (id),
    res_type    TEXT NOT NULL,
    res_id      TEXT NOT NULL,
    param       TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    url         TEXT NOT NULL
);
CREATE INDEX idx_reference_target ON idx_reference (tenant, res_type, param, target_id, target_type);
CREATE INDEX idx_reference_url ON idx_reference (tenant, res_type, param, url);
CREATE INDEX idx_reference_owner ON idx_reference (tenant, res_type, res_id);

CREATE TABLE idx_date (
    tenant   TEXT   NOT NULL REFERENCES tenants (id),
    res_type TEXT   NOT NULL,
    res_id   TEXT   NOT NULL,
    param    TEXT   NOT NULL,
    low      BIGINT NOT NULL,
    high     BIGINT NOT NULL
);
CREATE INDEX idx_date_low ON idx_date (tenant, res_type, param, low);
CREATE INDEX idx_date_high ON idx_date (tenant, res_type, param, high);
CREATE INDEX idx_date_owner ON idx_date (tenant, res_type, res_id);
