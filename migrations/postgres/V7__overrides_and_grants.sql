-- Overrides and grants. Same tables as SQLite's V13, which says how they are used.
CREATE TABLE overrides (
    customer_kind  TEXT    NOT NULL CHECK (customer_kind IN ('user', 'account')),
    customer_id    TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    expires_at     BIGINT,
    note           TEXT,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (customer_kind, customer_id)
);

CREATE TABLE grants (
    id             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_kind  TEXT    NOT NULL CHECK (customer_kind IN ('user', 'account')),
    customer_id    TEXT    NOT NULL,
    metric         TEXT    NOT NULL,
    amount         BIGINT  NOT NULL CHECK (amount > 0),
    period         TEXT    NOT NULL,
    expires_at     BIGINT,
    note           TEXT,
    created_at     BIGINT  NOT NULL
);

CREATE INDEX grants_by_customer ON grants(customer_kind, customer_id, period, metric);
