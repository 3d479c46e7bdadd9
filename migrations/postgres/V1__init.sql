-- Tally's schema on PostgreSQL: the final state of the SQLite migrations V1..V6 in one file (a
-- fresh PostgreSQL database has no history to replay, so their data backfills are left out),
-- plus the dashboard sessions that several nodes behind a load balancer must share.
-- Table and column names and meanings match SQLite's, so `tally copy-db` copies table to table.
-- Timestamps are BIGINT unix milliseconds, UTC; every integer is BIGINT (i64 in Rust, as
-- SQLite's INTEGER is). Ids are GENERATED ALWAYS: the code never picks one, so an insert that
-- does is refused unless it says OVERRIDING SYSTEM VALUE (as a copy must, and then move the
-- identity past the copied ids with setval). A shipped migration is never edited.

-- Users and their monthly counters. `id` is the internal key the counter, feature-use and
-- alert rows point at; the caller's id and the public uuid stay in this table alone.
CREATE TABLE users (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid        TEXT    NOT NULL UNIQUE,      -- stable public id
    user_id     TEXT    NOT NULL UNIQUE,      -- the caller's id for the user
    plan        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- One row per user, period and metric; a reset deletes the rows, so a row always holds at least
-- the amount that created it (the active-user rollup relies on it).
CREATE TABLE usage_counters (
    user_pk     BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    period      TEXT    NOT NULL,             -- UTC month, 'YYYY-MM'
    metric      TEXT    NOT NULL,
    value       BIGINT  NOT NULL CHECK (value >= 0),
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (user_pk, period, metric)
);

-- Top users per period and metric without a scan.
CREATE INDEX usage_counters_by_period_metric_value ON usage_counters(period, metric, value);

-- Remembered answers to idempotent requests, so a retry on any node replays the first answer.
CREATE TABLE idempotency_keys (
    key          TEXT    PRIMARY KEY,
    user_id      TEXT    NOT NULL,            -- the caller's user id, so erasure can find it
    fingerprint  BYTEA   NOT NULL,            -- sha256 of the route and the request's fields
    status       BIGINT  NOT NULL,
    body         TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);

CREATE INDEX idempotency_keys_by_created_at ON idempotency_keys(created_at);
CREATE INDEX idempotency_keys_by_user_id ON idempotency_keys(user_id);

-- Successful uses of rate-limited features, one row per use, so rolling windows survive a
-- restart and are shared by every node. Rows older than the longest window of their feature are
-- pruned as uses arrive.
CREATE TABLE feature_uses (
    user_pk  BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    feature  TEXT    NOT NULL,
    used_at  BIGINT  NOT NULL                 -- unix ms, UTC
);

CREATE INDEX feature_uses_by_user_feature_time ON feature_uses(user_pk, feature, used_at);

-- Admin views without scans: rollups kept in the same transaction as every counter, user and
-- plan change.
CREATE TABLE period_totals (
    period  TEXT    NOT NULL,
    metric  TEXT    NOT NULL,
    total   BIGINT  NOT NULL,                 -- saturates at 2^63-1
    PRIMARY KEY (period, metric)
);

CREATE TABLE period_users (
    period        TEXT    PRIMARY KEY,
    active_users  BIGINT  NOT NULL            -- users with a counter row in the period
);

CREATE TABLE plan_users (
    plan   TEXT    PRIMARY KEY,
    users  BIGINT  NOT NULL
);

-- Who did what through the admin API and the dashboard. Identity values are never reused,
-- as SQLite's AUTOINCREMENT ids are not.
CREATE TABLE audit_log (
    id       BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT  NOT NULL,                -- unix ms, UTC
    actor    TEXT    NOT NULL,                -- a key's name or fingerprint, never the key
    action   TEXT    NOT NULL,
    target   TEXT,
    details  TEXT    NOT NULL                 -- JSON object
);

CREATE INDEX audit_log_by_target ON audit_log(target);

-- Events, the once-only marks behind threshold alerts, and the webhook outbox. An event, its
-- marks and its deliveries are written in the transaction of the change that caused them.
-- `seq` is taken at insert, not at commit: with several writers a lower seq can become visible
-- after a higher one, so whoever pages by seq must allow for that.
CREATE TABLE events (
    seq      BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- order, for paging
    id       TEXT    NOT NULL UNIQUE,         -- uuid, what receivers deduplicate on
    type     TEXT    NOT NULL,
    at       BIGINT  NOT NULL,                -- unix ms, UTC
    user_id  TEXT,                            -- the caller's user id (a hash once erased)
    data     TEXT    NOT NULL                 -- JSON object
);

CREATE INDEX events_by_type ON events(type, seq);
CREATE INDEX events_by_user ON events(user_id, seq);
CREATE INDEX events_by_at ON events(at);

-- The primary key is what makes an alert once-only across nodes: the second insert conflicts.
CREATE TABLE usage_alerts (
    user_pk  BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    period   TEXT    NOT NULL,
    metric   TEXT    NOT NULL,
    alert    TEXT    NOT NULL,                -- 'threshold:0.8', 'soft_limit'
    PRIMARY KEY (user_pk, period, metric, alert)
);

-- The daily cleanup deletes alert marks of old periods; without this index that is a scan.
CREATE INDEX usage_alerts_by_period ON usage_alerts(period);

CREATE TABLE webhook_deliveries (
    id               BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         TEXT    NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    url              TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT  NOT NULL,
    window_start     BIGINT  NOT NULL,        -- retries stop give_up_after_hours after this
    last_error       TEXT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries(event_id);

-- Dashboard logins, in the database so a login on one node is valid on every other node behind
-- a load balancer. Only a hash of the session token is stored: reading this table (a backup, a
-- SQL console) must not hand out working sessions. The flash is the one-shot message of the
-- next page; both of its columns are set or neither is.
CREATE TABLE dashboard_sessions (
    token_hash  TEXT     PRIMARY KEY,
    key_name    TEXT     NOT NULL,            -- the admin key's name, what the audit log shows
    key_digest  TEXT     NOT NULL,            -- SHA-256 of that key: a session ends with its key
    csrf        TEXT     NOT NULL,            -- the token every form of this session must carry
    expires_at  BIGINT   NOT NULL,            -- unix ms, UTC
    flash_ok    BOOLEAN,
    flash_text  TEXT,
    CHECK ((flash_ok IS NULL) = (flash_text IS NULL))
);

-- Expired sessions are deleted by expiry without a scan.
CREATE INDEX dashboard_sessions_by_expires_at ON dashboard_sessions(expires_at);
