-- A record's own key: in strict durability a request writes an `incomplete`
-- record before calling its provider and overwrites it (same key) when the
-- answer ends, so a crash in between leaves a marked record, never nothing.
ALTER TABLE usage_records ADD COLUMN record_key TEXT;
CREATE UNIQUE INDEX usage_records_record_key ON usage_records (record_key);
