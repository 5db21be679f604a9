-- Prefix hashes of a string's later words stop at the end of the word, and a
-- display text's (:text) at 12 characters (ADR 0005): the resources stored
-- before lose their longer ones in a reindex job.

INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at)
SELECT id, '0011_fewer_prefix_hashes', 'fewer prefix hashes', 0, '', '', 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM tenants;
