-- Budgets on a user's own spend: per calendar day or month in a time zone,
-- for all providers ('') or one, for all the user's tokens ('') or one.
-- Hard budgets refuse requests that would go over; soft ones only flag them.
CREATE TABLE budgets (
    id                TEXT PRIMARY KEY NOT NULL,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    period            TEXT NOT NULL CHECK (period IN ('day', 'month')),
    provider          TEXT NOT NULL DEFAULT '',
    token_id          TEXT NOT NULL DEFAULT '',
    limit_picodollars BIGINT NOT NULL CHECK (limit_picodollars >= 0),
    hard              BOOLEAN NOT NULL,
    time_zone         TEXT NOT NULL DEFAULT 'UTC',
    created_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL,
    UNIQUE (user_id, period, provider, token_id)
);

-- Spend per budget and period: settled cost, and what requests in flight
-- have reserved. A reservation is one conditional UPDATE, so replicas on
-- PostgreSQL cannot race past a hard limit.
CREATE TABLE budget_spend (
    budget_id            TEXT NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
    period_start         TIMESTAMP NOT NULL,
    spent_picodollars    BIGINT NOT NULL DEFAULT 0,
    reserved_picodollars BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (budget_id, period_start)
);

-- Reservations of requests in flight, so they can be settled or, when a
-- request never ends (a crash), expire.
CREATE TABLE budget_reservations (
    id                 TEXT NOT NULL,
    budget_id          TEXT NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
    period_start       TIMESTAMP NOT NULL,
    amount_picodollars BIGINT NOT NULL,
    expires_at         TIMESTAMP NOT NULL,
    PRIMARY KEY (id, budget_id)
);
CREATE INDEX budget_reservations_expires_at ON budget_reservations (expires_at);

-- The reservation a usage record settles.
ALTER TABLE usage_records ADD COLUMN reservation_id TEXT;
