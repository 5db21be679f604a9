-- One row per request on every listener: who (user, client, source address),
-- what (interaction, resource type/id/version, patient compartment when
-- known), when, and the outcome (the HTTP status and a short reason).
-- `resource` is `Type/id` or `Type/id/_history/version`. Rows form a chain per
-- tenant: `hash` is an HMAC (under the tenant's audit key, wrapped by the
-- master key) over the row's fields and the previous row's hash, so an edited,
-- inserted or deleted row is detected (`hearth audit verify`). No resource
-- content is kept here.
CREATE TABLE audit_events (
    tenant        TEXT    NOT NULL REFERENCES tenants (id),
    seq           BIGINT  NOT NULL,
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
    detail        TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    hash          BYTEA   NOT NULL,
    PRIMARY KEY (tenant, seq)
);

CREATE INDEX audit_events_time ON audit_events (tenant, recorded_at);
