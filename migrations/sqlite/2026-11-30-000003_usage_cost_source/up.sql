-- How each cost was obtained: 'exact' (provider token counts, priced model),
-- 'estimated' (byok counted the tokens: the provider reported none) or
-- 'unknown' (the model that answered has no price). Rows written before this
-- column existed: unknown when they have no cost, otherwise exact (an older
-- row may hold an unmarked estimate; see docs/routing.md).
ALTER TABLE usage_records ADD COLUMN cost_source TEXT NOT NULL DEFAULT 'exact';
UPDATE usage_records SET cost_source = 'unknown' WHERE cost_picodollars IS NULL AND cost_micro_usd IS NULL;
-- Cache writes (Anthropic), and of those the one-hour ones (billed higher).
ALTER TABLE usage_records ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0;
-- Which door the request came through: 'chat', 'embeddings', ...
ALTER TABLE usage_records ADD COLUMN door TEXT NOT NULL DEFAULT 'chat';
CREATE INDEX usage_records_user_id_id ON usage_records (user_id, id);
