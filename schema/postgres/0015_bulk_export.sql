-- Bulk Data exports ($export): each job's request, state and manifest, so any
-- node answers its status URL; the output files in parts, sealed by the
-- service under the tenant's data key (resource content never in clear).
CREATE TABLE export_jobs (
    tenant           TEXT   NOT NULL REFERENCES tenants (id),
    id               TEXT   NOT NULL,
    status           TEXT   NOT NULL,
    request          TEXT   NOT NULL,
    params           TEXT   NOT NULL,
    transaction_time BIGINT NOT NULL,
    progress         TEXT   NOT NULL,
    output           TEXT   NOT NULL,
    error            TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE export_parts (
    tenant TEXT   NOT NULL,
    job_id TEXT   NOT NULL,
    file   TEXT   NOT NULL,
    part   BIGINT NOT NULL,
    data   BYTEA  NOT NULL,
    PRIMARY KEY (tenant, job_id, file, part)
);
