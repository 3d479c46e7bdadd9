-- Response headers kept with an idempotent answer. Same column as SQLite's V11, which says why.
ALTER TABLE idempotency_keys ADD COLUMN headers TEXT NOT NULL DEFAULT '';
