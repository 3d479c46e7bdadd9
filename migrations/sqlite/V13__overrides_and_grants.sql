-- Per-customer overrides (a custom plan for one user or account) and one-off grants of extra
-- allowance. Both are keyed by the customer's kind ('user' or 'account') and id, so they may
-- name a user not seen yet.
CREATE TABLE overrides (
    customer_kind  TEXT    NOT NULL CHECK (customer_kind IN ('user', 'account')),
    customer_id    TEXT    NOT NULL,
    body           TEXT    NOT NULL,            -- JSON: {"limits": {...}, "features": {...}}
    expires_at     INTEGER,                     -- unix ms; NULL: until removed
    note           TEXT,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (customer_kind, customer_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE grants (
    id             INTEGER PRIMARY KEY,
    customer_kind  TEXT    NOT NULL CHECK (customer_kind IN ('user', 'account')),
    customer_id    TEXT    NOT NULL,
    metric         TEXT    NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount > 0),
    period         TEXT    NOT NULL,            -- the UTC month it raises the limit of
    expires_at     INTEGER,                     -- unix ms; NULL: for the whole period
    note           TEXT,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX grants_by_customer ON grants(customer_kind, customer_id, period, metric);
