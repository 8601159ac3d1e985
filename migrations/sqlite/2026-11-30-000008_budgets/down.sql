ALTER TABLE usage_records DROP COLUMN reservation_id;
DROP TABLE budget_reservations;
DROP TABLE budget_spend;
DROP TABLE budgets;
