-- Users of the local credential source (argon2id PHC hashes, never passwords)
-- and shadow rows of external identities (LDAP, OIDC) kept for audit.
-- `roles` is a space-separated list; the configuration maps roles to
-- permissions. Failed sign-ins lock an account until `locked_until`
-- (microseconds); `locked` is an administrator's lock.
CREATE TABLE users (
    tenant        TEXT    NOT NULL REFERENCES tenants (id),
    name          TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    password_hash TEXT,
    external_id   TEXT,
    roles         TEXT    NOT NULL,
    locked        BOOLEAN NOT NULL,
    locked_until  BIGINT,
    failed_logins INTEGER NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    PRIMARY KEY (tenant, name)
);
