-- Refusals are counted, not logged one by one: a client retrying a refused request in a loop
-- adds to one row per user, period, kind and subject (the metric or feature), and writes an
-- event at most once per [usage] refusal_event_interval_secs. Keyed by the user id, not the
-- users row: a user never recorded (refused on their first request) is counted too.
CREATE TABLE refusals (
    user_id      TEXT    NOT NULL,
    period       TEXT    NOT NULL,             -- UTC month, 'YYYY-MM'
    kind         TEXT    NOT NULL,             -- 'limit_exceeded', 'rate_limited', 'feature_denied'
    subject      TEXT    NOT NULL,             -- the metric or the feature
    count        INTEGER NOT NULL,
    unreported   INTEGER NOT NULL,             -- refusals since the last event
    reported_at  INTEGER,                      -- when the last event was written
    PRIMARY KEY (user_id, period, kind, subject)
) STRICT, WITHOUT ROWID;

-- The daily cleanup deletes refusal counts of old periods.
CREATE INDEX refusals_by_period ON refusals(period);

-- Failed delivery attempts, kept with their delivery (a success clears the delivery's
-- last_error; the history stays here).
CREATE TABLE webhook_attempts (
    delivery_id  INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    error        TEXT    NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) STRICT, WITHOUT ROWID;

-- Each receiver's sender claims only its own due deliveries.
CREATE INDEX webhook_deliveries_due_by_url ON webhook_deliveries(url, status, next_attempt_at);
