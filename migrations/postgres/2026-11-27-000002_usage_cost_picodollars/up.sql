-- Exact cost of each request in picodollars (1e-12 USD); cost_micro_usd stays
-- as the rounded figure. Sums use this column, so rounding never drifts.
ALTER TABLE usage_records ADD COLUMN cost_picodollars BIGINT;
