-- Refusal counts and failed delivery attempts. Same tables as SQLite's V10, which says why.
CREATE TABLE refusals (
    user_id      TEXT    NOT NULL,
    period       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    count        BIGINT  NOT NULL,
    unreported   BIGINT  NOT NULL,
    reported_at  BIGINT,
    PRIMARY KEY (user_id, period, kind, subject)
);

CREATE INDEX refusals_by_period ON refusals(period);

CREATE TABLE webhook_attempts (
    delivery_id  BIGINT  NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt      BIGINT  NOT NULL,
    at           BIGINT  NOT NULL,
    error        TEXT    NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE INDEX webhook_deliveries_due_by_url ON webhook_deliveries(url, status, next_attempt_at);
