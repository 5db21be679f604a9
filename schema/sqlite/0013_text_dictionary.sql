-- Display texts searched with :text: each resource keeps one keyed hash per
-- text, and the prefixes of a text (ADR 0005) are kept once per tenant in a
-- dictionary shared by every resource holding that text. The resources stored
-- before lose their per-prefix rows in a reindex job. (The index tables keep
-- their tenant references here: SQLite checks them with one key lookup, and
-- dropping them would copy every table.)
CREATE TABLE idx_text_prefix (
    tenant      TEXT NOT NULL,
    prefix_hash BLOB NOT NULL,
    text_hash   BLOB NOT NULL,
    PRIMARY KEY (tenant, prefix_hash, text_hash)
) WITHOUT ROWID;

INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at)
SELECT id, '0013_text_dictionary', 'display texts through the text dictionary', 0, '', '', 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM tenants;
