-- Alerts waiting to be delivered to the operator's webhook: written in the
-- same transaction as what caused them, so a restart loses none; retried
-- with backoff until delivered.
CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    event           TEXT NOT NULL,
    user_id         TEXT,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    delivered_at    TIMESTAMP,
    last_error      TEXT,
    -- Alerts raised once per fact (a model's retirement for a user).
    dedupe_key      TEXT
);
CREATE INDEX alert_outbox_due ON alert_outbox (delivered_at, next_attempt_at);
CREATE UNIQUE INDEX alert_outbox_dedupe ON alert_outbox (dedupe_key);
