-- Retention deletes the oldest audit rows; the last deleted row's sequence
-- number and hash stay here, so the chain is still checked from its new start
-- (a row removed beyond the retention cut is still found missing).
CREATE TABLE audit_anchors (
    tenant TEXT   NOT NULL PRIMARY KEY REFERENCES tenants (id),
    seq    BIGINT NOT NULL,
    hash   BYTEA  NOT NULL
);
