-- Several keys per provider: each key is addressed by its own id (the row
-- id, also bound into its sealed envelope), has a label, a place in its
-- provider's order (keys sharing a place share traffic by weight) and an
-- on/off switch. SQLite cannot drop the old UNIQUE (user_id, provider)
-- constraint in place, so the table is rebuilt; existing keys keep their ids
-- and become their provider's first key.
CREATE TABLE provider_keys_new (
    id                   TEXT PRIMARY KEY NOT NULL,
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider             TEXT NOT NULL,
    sealed_key           BLOB NOT NULL,
    master_key_id        BIGINT NOT NULL,
    masked_key           TEXT NOT NULL,
    settings             TEXT NOT NULL DEFAULT '{}',
    last_test_status     TEXT,
    last_tested_at       TIMESTAMP,
    last_test_latency_ms BIGINT,
    created_at           TIMESTAMP NOT NULL,
    updated_at           TIMESTAMP NOT NULL,
    label                TEXT NOT NULL DEFAULT '',
    position             INTEGER NOT NULL DEFAULT 0,
    weight               INTEGER NOT NULL DEFAULT 1,
    enabled              BOOLEAN NOT NULL DEFAULT TRUE,
    binding_version      INTEGER NOT NULL DEFAULT 1
);
INSERT INTO provider_keys_new (
    id, user_id, provider, sealed_key, master_key_id, masked_key, settings,
    last_test_status, last_tested_at, last_test_latency_ms, created_at, updated_at
)
SELECT
    id, user_id, provider, sealed_key, master_key_id, masked_key, settings,
    last_test_status, last_tested_at, last_test_latency_ms, created_at, updated_at
FROM provider_keys;
DROP TABLE provider_keys;
ALTER TABLE provider_keys_new RENAME TO provider_keys;
CREATE INDEX provider_keys_master_key_id ON provider_keys (master_key_id);
CREATE INDEX provider_keys_user_provider ON provider_keys (user_id, provider, position);
CREATE INDEX provider_keys_binding_version ON provider_keys (binding_version);

-- Ids of deleted keys: a deleted row put back by SQL does not open.
CREATE TABLE deleted_provider_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    deleted_at TIMESTAMP NOT NULL
);

-- Tokens: a label, an expiry and a scope (doors, providers, models; for a
-- service token the users it may act for), and a third role, `service`.
CREATE TABLE api_tokens_new (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('user', 'admin', 'service')),
    secret_hash  BLOB NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at   TIMESTAMP,
    label        TEXT NOT NULL DEFAULT '',
    expires_at   TIMESTAMP,
    scope        TEXT NOT NULL DEFAULT '{}',
    CHECK ((role = 'user') = (user_id IS NOT NULL))
);
INSERT INTO api_tokens_new (id, user_id, role, secret_hash, created_at, last_used_at, revoked_at)
SELECT id, user_id, role, secret_hash, created_at, last_used_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

-- A disabled user's tokens are refused; their keys and data stay.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMP;

-- Which token a request came with, for a token's own usage.
ALTER TABLE usage_records ADD COLUMN token_id TEXT;
