-- Token, reference and uri parameters gain sort keys (_sort on them): the
-- resources stored before get theirs from a reindex job.

INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at)
SELECT id, '0012_text_sort_keys', 'sort keys for tokens, references and uris', 0, '', '', 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM tenants;
