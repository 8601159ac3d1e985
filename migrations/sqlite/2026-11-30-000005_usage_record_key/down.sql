DROP INDEX usage_records_record_key;
ALTER TABLE usage_records DROP COLUMN record_key;
