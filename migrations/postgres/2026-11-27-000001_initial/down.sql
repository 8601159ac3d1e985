DROP TABLE usage_records;
DROP TABLE audit_events;
DROP TABLE provider_keys;
DROP TABLE api_tokens;
DROP TABLE users;
