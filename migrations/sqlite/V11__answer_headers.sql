-- Response headers kept with an idempotent answer (RateLimit and RateLimit-Policy), so a
-- replay carries the first answer's headers as well as its status and body. One
-- `name: value` per line; '' for none (and for every answer stored before this column).
ALTER TABLE idempotency_keys ADD COLUMN headers TEXT NOT NULL DEFAULT '';
