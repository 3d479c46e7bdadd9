-- Billing: customer fields and closed statements. Same tables as SQLite's V16, which says
-- how they are used.
ALTER TABLE users ADD COLUMN stripe_customer_id TEXT;
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE accounts ADD COLUMN stripe_customer_id TEXT;
ALTER TABLE accounts ADD COLUMN email TEXT;

CREATE TABLE billing_closings (
    period       TEXT    PRIMARY KEY,
    currency     TEXT    NOT NULL,
    metrics      TEXT    NOT NULL,
    cursor_kind  TEXT    NOT NULL CHECK (cursor_kind IN ('user', 'account')),
    cursor_id    TEXT,
    started_at   BIGINT  NOT NULL,
    closed_at    BIGINT
);

CREATE TABLE billing_lines (
    period         TEXT    NOT NULL,
    customer_kind  TEXT    NOT NULL CHECK (customer_kind IN ('user', 'account')),
    customer_id    TEXT    NOT NULL,
    line           TEXT    NOT NULL,
    PRIMARY KEY (period, customer_kind, customer_id)
);

CREATE INDEX billing_lines_by_customer ON billing_lines(customer_kind, customer_id);
