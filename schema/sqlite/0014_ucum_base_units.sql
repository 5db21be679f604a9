-- Quantities in common UCUM units are also kept in the base unit of their kind
-- (under the parameter's name plus ':base'), so a search in one unit finds
-- values stored in another: the resources stored before get theirs from a
-- reindex job.

INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at)
SELECT id, '0014_ucum_base_units', 'quantities in base units', 0, '', '', 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM tenants;
