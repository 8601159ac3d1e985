ALTER TABLE usage_records DROP COLUMN token_id;
ALTER TABLE users DROP COLUMN disabled_at;
DELETE FROM api_tokens WHERE role = 'service';
ALTER TABLE api_tokens DROP COLUMN label, DROP COLUMN expires_at, DROP COLUMN scope;
ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check CHECK (role IN ('user', 'admin'));
DROP TABLE deleted_provider_keys;
DROP INDEX provider_keys_binding_version;
DROP INDEX provider_keys_user_provider;
-- Only each provider's first key survives the way back.
DELETE FROM provider_keys k WHERE k.id <> (
    SELECT f.id FROM provider_keys f
    WHERE f.user_id = k.user_id AND f.provider = k.provider
    ORDER BY f.position, f.created_at, f.id LIMIT 1
);
ALTER TABLE provider_keys
    DROP COLUMN label, DROP COLUMN position, DROP COLUMN weight,
    DROP COLUMN enabled, DROP COLUMN binding_version;
ALTER TABLE provider_keys ADD CONSTRAINT provider_keys_user_id_provider_key UNIQUE (user_id, provider);
