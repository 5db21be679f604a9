-- Compartment membership (R4 CompartmentDefinitions): one row per resource and
-- compartment it belongs to through its references, so Patient/$everything walks
-- one index range in (type, id) order.

CREATE TABLE idx_compartment (
    tenant      TEXT NOT NULL REFERENCES tenants (id),
    res_type    TEXT NOT NULL,
    res_id      TEXT NOT NULL,
    compartment TEXT NOT NULL,
    comp_id     TEXT NOT NULL
);
CREATE INDEX idx_compartment_members ON idx_compartment (tenant, compartment, comp_id, res_type, res_id);
CREATE INDEX idx_compartment_owner ON idx_compartment (tenant, res_type, res_id);

INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at)
SELECT id, '0006_compartment_index', 'compartment membership for $everything', FALSE, '', '', 0, CAST(extract(epoch FROM now()) * 1000000 AS BIGINT), CAST(extract(epoch FROM now()) * 1000000 AS BIGINT)
FROM tenants;
