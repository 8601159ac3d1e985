ALTER TABLE usage_records DROP COLUMN cost_picodollars;
