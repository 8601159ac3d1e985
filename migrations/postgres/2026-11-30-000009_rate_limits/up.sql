-- Request and token counts per subject (a user, a token) and minute, shared
-- by every replica on PostgreSQL (one process on SQLite counts in memory).
CREATE TABLE rate_counters (
    subject      TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    requests     BIGINT NOT NULL DEFAULT 0,
    tokens       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, window_start)
);

-- An operator's per-user rate limits (JSON), over the defaults.
ALTER TABLE users ADD COLUMN limits TEXT;
