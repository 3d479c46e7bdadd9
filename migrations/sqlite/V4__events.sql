-- Events, the once-only marks behind threshold alerts, and the webhook outbox. An event, its
-- marks and its deliveries are written in the transaction of the change that caused them.

CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT, -- order, for paging
    id       TEXT    NOT NULL UNIQUE,           -- uuid, what receivers deduplicate on
    type     TEXT    NOT NULL,
    at       INTEGER NOT NULL,                  -- unix ms, UTC
    user_id  TEXT,                              -- the caller's user id (a hash once erased)
    data     TEXT    NOT NULL                   -- JSON object
) STRICT;

CREATE INDEX events_by_type ON events(type, seq);
CREATE INDEX events_by_user ON events(user_id, seq);
CREATE INDEX events_by_at ON events(at);

CREATE TABLE usage_alerts (
    user_pk  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    period   TEXT    NOT NULL,
    metric   TEXT    NOT NULL,
    alert    TEXT    NOT NULL,                  -- 'threshold:0.8', 'soft_limit'
    PRIMARY KEY (user_pk, period, metric, alert)
) STRICT, WITHOUT ROWID;

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    event_id         TEXT    NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    url              TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    window_start     INTEGER NOT NULL,          -- retries stop give_up_after_hours after this
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries(event_id);
