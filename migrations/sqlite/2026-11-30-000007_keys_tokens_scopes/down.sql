ALTER TABLE usage_records DROP COLUMN token_id;
ALTER TABLE users DROP COLUMN disabled_at;

CREATE TABLE api_tokens_old (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    secret_hash  BLOB NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at   TIMESTAMP,
    CHECK ((role = 'user') = (user_id IS NOT NULL))
);
INSERT INTO api_tokens_old (id, user_id, role, secret_hash, created_at, last_used_at, revoked_at)
SELECT id, user_id, role, secret_hash, created_at, last_used_at, revoked_at FROM api_tokens
WHERE role <> 'service';
DROP TABLE api_tokens;
ALTER TABLE api_tokens_old RENAME TO api_tokens;
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

DROP TABLE deleted_provider_keys;

-- Only each provider's first key survives the way back.
CREATE TABLE provider_keys_old (
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
    UNIQUE (user_id, provider)
);
INSERT INTO provider_keys_old (
    id, user_id, provider, sealed_key, master_key_id, masked_key, settings,
    last_test_status, last_tested_at, last_test_latency_ms, created_at, updated_at
)
SELECT
    id, user_id, provider, sealed_key, master_key_id, masked_key, settings,
    last_test_status, last_tested_at, last_test_latency_ms, created_at, updated_at
FROM provider_keys k
WHERE k.id = (
    SELECT f.id FROM provider_keys f
    WHERE f.user_id = k.user_id AND f.provider = k.provider
    ORDER BY f.position, f.created_at, f.id LIMIT 1
);
DROP TABLE provider_keys;
ALTER TABLE provider_keys_old RENAME TO provider_keys;
CREATE INDEX provider_keys_master_key_id ON provider_keys (master_key_id);
