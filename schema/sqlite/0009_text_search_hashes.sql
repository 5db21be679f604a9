-- String parameters gain keyed hashes of their three-character windows (for
-- :contains), and token parameters keyed word-prefix hashes of their display
-- texts (for :text), ADR 0005; the resources stored before get theirs from a
-- reindex job.

INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at)
SELECT id, '0009_text_search_hashes', 'hashes for :contains and :text', 0, '', '', 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM tenants;
