-- Covering indexes for the search plans of docs/adr/0006. A value index ends
-- with res_id, so a driving condition reads its ids from the index alone; an
-- owner index holds the parameter and value after res_id, so a condition probed
-- for one resource (EXISTS) is answered from the index alone.

DROP INDEX idx_token_value;
CREATE INDEX idx_token_value ON idx_token (tenant, res_type, param, code, system, res_id);
DROP INDEX idx_token_owner;
CREATE INDEX idx_token_owner ON idx_token (tenant, res_type, res_id, param, code, system);

DROP INDEX idx_reference_target;
CREATE INDEX idx_reference_target ON idx_reference (tenant, res_type, param, target_id, target_type, res_id);
DROP INDEX idx_reference_url;
CREATE INDEX idx_reference_url ON idx_reference (tenant, res_type, param, url, res_id);
DROP INDEX idx_reference_owner;
CREATE INDEX idx_reference_owner ON idx_reference (tenant, res_type, res_id, param, target_id, target_type);

DROP INDEX idx_date_low;
CREATE INDEX idx_date_low ON idx_date (tenant, res_type, param, low, high, res_id);
DROP INDEX idx_date_high;
CREATE INDEX idx_date_high ON idx_date (tenant, res_type, param, high, low, res_id);
DROP INDEX idx_date_owner;
CREATE INDEX idx_date_owner ON idx_date (tenant, res_type, res_id, param, low, high);

DROP INDEX idx_string_hash_value;
CREATE INDEX idx_string_hash_value ON idx_string_hash (tenant, res_type, param, hash, res_id);
DROP INDEX idx_string_hash_owner;
CREATE INDEX idx_string_hash_owner ON idx_string_hash (tenant, res_type, res_id, param, hash);

DROP INDEX idx_number_value;
CREATE INDEX idx_number_value ON idx_number (tenant, res_type, param, value, res_id);
DROP INDEX idx_number_owner;
CREATE INDEX idx_number_owner ON idx_number (tenant, res_type, res_id, param, value);

DROP INDEX idx_quantity_value;
CREATE INDEX idx_quantity_value ON idx_quantity (tenant, res_type, param, code, value, res_id);
DROP INDEX idx_quantity_owner;
CREATE INDEX idx_quantity_owner ON idx_quantity (tenant, res_type, res_id, param, code, value, system, unit);

DROP INDEX idx_uri_value;
CREATE INDEX idx_uri_value ON idx_uri (tenant, res_type, param, value, res_id);
DROP INDEX idx_uri_owner;
CREATE INDEX idx_uri_owner ON idx_uri (tenant, res_type, res_id, param, value);
