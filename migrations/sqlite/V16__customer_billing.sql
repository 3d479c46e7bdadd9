-- Billing (issue 16). A user or an account may carry a Stripe customer id and an email
-- address (checked by the API; erased with the user). A past period's statement is closed
-- once, in steps (billing_closings tracks them), into one line per customer who pays or used
-- anything (billing_lines); its reports read the lines back, so they never change.
ALTER TABLE users ADD COLUMN stripe_customer_id TEXT;
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE accounts ADD COLUMN stripe_customer_id TEXT;
ALTER TABLE accounts ADD COLUMN email TEXT;

CREATE TABLE billing_closings (
    period       TEXT    PRIMARY KEY,         -- UTC month, 'YYYY-MM'
    currency     TEXT    NOT NULL,            -- ISO 4217, as configured when it closed
    metrics      TEXT    NOT NULL,            -- comma-separated, in column order
    cursor_kind  TEXT    NOT NULL CHECK (cursor_kind IN ('user', 'account')),
    cursor_id    TEXT,                        -- the last customer of that kind written
    started_at   INTEGER NOT NULL,
    closed_at    INTEGER                      -- NULL while steps remain
) STRICT, WITHOUT ROWID;

CREATE TABLE billing_lines (
    period         TEXT    NOT NULL,
    customer_kind  TEXT    NOT NULL CHECK (customer_kind IN ('user', 'account')),
    customer_id    TEXT    NOT NULL,          -- an erased user's is their sha256: name
    line           TEXT    NOT NULL,          -- JSON: plan, price and per-metric charges
    PRIMARY KEY (period, customer_kind, customer_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX billing_lines_by_customer ON billing_lines(customer_kind, customer_id);
