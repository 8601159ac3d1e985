DROP INDEX usage_records_user_id_id;
ALTER TABLE usage_records DROP COLUMN door;
ALTER TABLE usage_records DROP COLUMN cache_write_1h_tokens;
ALTER TABLE usage_records DROP COLUMN cache_write_tokens;
ALTER TABLE usage_records DROP COLUMN cost_source;
