-- Files loaded by `hearth import`, by content digest, so a re-run skips them.
-- A transaction Bundle's row is written in the transaction that loads it.
CREATE TABLE imported_files (
    tenant      TEXT   NOT NULL REFERENCES tenants (id),
    digest      TEXT   NOT NULL,
    path        TEXT   NOT NULL,
    resources   BIGINT NOT NULL,
    imported_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, digest)
);
