-- Admin views without scans: rollups kept in the same transaction as every counter, user and
-- plan change (store/ maintains them), an index for top users per period and metric, and the
-- audit log.

CREATE INDEX usage_counters_by_period_metric_value ON usage_counters(period, metric, value);

CREATE TABLE period_totals (
    period  TEXT    NOT NULL,
    metric  TEXT    NOT NULL,
    total   INTEGER NOT NULL,                 -- saturates at 2^63-1
    PRIMARY KEY (period, metric)
) STRICT, WITHOUT ROWID;

CREATE TABLE period_users (
    period        TEXT    PRIMARY KEY,
    active_users  INTEGER NOT NULL            -- users with a counter row in the period
) STRICT, WITHOUT ROWID;

CREATE TABLE plan_users (
    plan   TEXT    PRIMARY KEY,
    users  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,                -- unix ms, UTC
    actor    TEXT    NOT NULL,                -- a key's name or fingerprint, never the key
    action   TEXT    NOT NULL,
    target   TEXT,
    details  TEXT    NOT NULL                 -- JSON object
) STRICT;

CREATE INDEX audit_log_by_target ON audit_log(target);

INSERT INTO period_totals (period, metric, total)
    SELECT period, metric, CAST(min(total(value), 9223372036854775807.0) AS INTEGER)
    FROM usage_counters GROUP BY period, metric;
INSERT INTO period_users (period, active_users)
    SELECT period, count(DISTINCT user_pk) FROM usage_counters GROUP BY period;
INSERT INTO plan_users (plan, users)
    SELECT plan, count(*) FROM users GROUP BY plan;
