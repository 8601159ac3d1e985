-- Several keys per provider: each key is addressed by its own id (the row
-- id, also bound into its sealed envelope), has a label, a place in its
-- provider's order (keys sharing a place share traffic by weight) and an
-- on/off switch. Existing keys keep their ids and become their provider's
-- first key.
ALTER TABLE provider_keys DROP CONSTRAINT IF EXISTS provider_keys_user_id_provider_key;
ALTER TABLE provider_keys
    ADD COLUMN label TEXT NOT NULL DEFAULT '',
    ADD COLUMN position INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN weight INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN enabled BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN binding_version INTEGER NOT NULL DEFAULT 1;
CREATE INDEX provider_keys_user_provider ON provider_keys (user_id, provider, position);
CREATE INDEX provider_keys_binding_version ON provider_keys (binding_version);

-- Ids of deleted keys: a deleted row put back by SQL does not open.
CREATE TABLE deleted_provider_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    deleted_at TIMESTAMP NOT NULL
);

-- Tokens: a label, an expiry and a scope (doors, providers, models; for a
-- service token the users it may act for), and a third role, `service`.
ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('user', 'admin', 'service'));
ALTER TABLE api_tokens
    ADD COLUMN label TEXT NOT NULL DEFAULT '',
    ADD COLUMN expires_at TIMESTAMP,
    ADD COLUMN scope TEXT NOT NULL DEFAULT '{}';

-- A disabled user's tokens are refused; their keys and data stay.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMP;

-- Which token a request came with, for a token's own usage.
ALTER TABLE usage_records ADD COLUMN token_id TEXT;
