-- A write's audit row, inserted in the write's own transaction, so no write
-- is kept without one. It waits here until the audit writer links the
-- request's final row (with the status answered) into the chain and deletes
-- it in the same transaction; `token` names the request (never the caller's
-- request id). Rows a stopped process left behind are linked as they are
-- when the writer next starts. No resource content is kept here.
CREATE TABLE audit_pending (
    id            BIGSERIAL PRIMARY KEY,
    tenant        TEXT    NOT NULL REFERENCES tenants (id),
    token         TEXT    NOT NULL,
    recorded_at   BIGINT  NOT NULL,
    listener      TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    user_name     TEXT,
    client_id     TEXT,
    source_addr   TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    interaction   TEXT    NOT NULL,
    resource      TEXT,
    patient       TEXT,
    status        INTEGER NOT NULL,
    detail        TEXT    NOT NULL
);

CREATE INDEX audit_pending_token ON audit_pending (tenant, token);
CREATE INDEX audit_pending_time ON audit_pending (tenant, recorded_at);
