-- Sort keys: one row per resource and sortable parameter (dates, numbers,
-- quantities, and _lastUpdated), holding the smallest value (for ascending
-- order) and the largest (for descending) as order-preserving bytes. Kept by the
-- write path with the other index rows; a search sorted on a common value walks
-- these indexes in order and stops at the page size.

CREATE TABLE idx_sort (
    tenant   TEXT NOT NULL REFERENCES tenants (id),
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    key_asc  BLOB NOT NULL,
    key_desc BLOB NOT NULL
);
CREATE UNIQUE INDEX idx_sort_owner ON idx_sort (tenant, res_type, res_id, param);
CREATE INDEX idx_sort_asc ON idx_sort (tenant, res_type, param, key_asc, res_id);
CREATE INDEX idx_sort_desc ON idx_sort (tenant, res_type, param, key_desc DESC, res_id);

-- Jobs that rebuild the index rows of every live resource of a tenant (after an
-- index change like this one, or a new search parameter). The position is the
-- last (type, id) done, so a job resumes where it stopped.
CREATE TABLE reindex_jobs (
    tenant     TEXT   NOT NULL REFERENCES tenants (id),
    name       TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    done       INTEGER NOT NULL,
    after_type TEXT   NOT NULL,
    after_id   TEXT   NOT NULL,
    processed  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at)
SELECT id, '0005_sort_keys', 'sort keys for _sort', 0, '', '', 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM tenants;
