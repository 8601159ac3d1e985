-- byok initial schema (PostgreSQL). Times are UTC. Keep in step with
-- migrations/sqlite: same migration names, same tables and columns.

CREATE TABLE users (
    id         TEXT PRIMARY KEY NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Only a hash of each token's secret part is stored.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    secret_hash  BYTEA NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at   TIMESTAMP,
    CHECK ((role = 'user') = (user_id IS NOT NULL))
);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

-- One key per user and provider. sealed_key is a byok-vault envelope; the
-- plaintext key is never stored.
CREATE TABLE provider_keys (
    id                   TEXT PRIMARY KEY NOT NULL,
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider             TEXT NOT NULL,
    sealed_key           BYTEA NOT NULL,
    master_key_id        BIGINT NOT NULL,
    masked_key           TEXT NOT NULL,
    settings             TEXT NOT NULL DEFAULT '{}',
    last_test_status     TEXT,
    last_tested_at       TIMESTAMP,
    last_test_latency_ms BIGINT,
    created_at           TIMESTAMP NOT NULL,
    updated_at           TIMESTAMP NOT NULL,
    UNIQUE (user_id, provider)
);
CREATE INDEX provider_keys_master_key_id ON provider_keys (master_key_id);

-- No foreign key on user_id: the trail outlives the user it describes.
CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at TIMESTAMP NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    user_id     TEXT,
    provider    TEXT,
    outcome     TEXT NOT NULL,
    request_id  TEXT,
    detail      TEXT
);
CREATE INDEX audit_events_user_id ON audit_events (user_id, id);

CREATE TABLE usage_records (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             TEXT NOT NULL,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    task                TEXT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    cost_micro_usd      BIGINT,
    attempts            INTEGER NOT NULL,
    latency_ms          BIGINT NOT NULL,
    outcome             TEXT NOT NULL,
    request_id          TEXT,
    created_at          TIMESTAMP NOT NULL
);
CREATE INDEX usage_records_user_time ON usage_records (user_id, created_at);
