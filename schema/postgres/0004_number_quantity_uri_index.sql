-- Numbers, quantities and URIs are not identifying: kept in clear (docs/adr/0005).
-- `value` is the number as written; `low`/`high` its implicit range from the
-- significant digits (or a Range's bounds).

CREATE TABLE idx_number (
    tenant   TEXT             NOT NULL REFERENCES tenants (id),
    res_type TEXT             NOT NULL,
    res_id   TEXT             NOT NULL,
    param    TEXT             NOT NULL,
    value    DOUBLE PRECISION NOT NULL,
    low      DOUBLE PRECISION NOT NULL,
    high     DOUBLE PRECISION NOT NULL
);
CREATE INDEX idx_number_value ON idx_number (tenant, res_type, param, value);
CREATE INDEX idx_number_owner ON idx_number (tenant, res_type, res_id);

CREATE TABLE idx_quantity (
    tenant   TEXT             NOT NULL REFERENCES tenants (id),
    res_type TEXT             NOT NULL,
    res_id   TEXT             NOT NULL,
    param    TEXT             NOT NULL,
    value    DOUBLE PRECISION NOT NULL,
    low      DOUBLE PRECISION NOT NULL,
    high     DOUBLE PRECISION NOT NULL,
    system   TEXT             NOT NULL,
    code     TEXT             NOT NULL,
    unit     TEXT             NOT NULL
);
CREATE INDEX idx_quantity_value ON idx_quantity (tenant, res_type, param, code, value);
CREATE INDEX idx_quantity_owner ON idx_quantity (tenant, res_type, res_id);

CREATE TABLE idx_uri (
    tenant   TEXT NOT NULL REFERENCES tenants (id),
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    value    TEXT NOT NULL
);
CREATE INDEX idx_uri_value ON idx_uri (tenant, res_type, param, value);
CREATE INDEX idx_uri_owner ON idx_uri (tenant, res_type, res_id);
