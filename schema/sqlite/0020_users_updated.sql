-- Servers look every second for users changed since (a new password, roles,
-- a lock) to drop their cached credentials.
CREATE INDEX users_updated ON users (tenant, updated_at);
