-- The headers that belong to a remembered answer (e.g. a 429's Retry-After), so a replay
-- sends them too: one "name: value" per line (SQLite's V10).
ALTER TABLE idempotency_keys ADD COLUMN headers TEXT NOT NULL DEFAULT '';
