ALTER TABLE users DROP COLUMN limits;
DROP TABLE rate_counters;
