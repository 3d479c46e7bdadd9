-- Forecasts. usage_days keeps each customer's counter of a metric as it stood at the end of
-- each UTC day it changed (a job copies the counters changed since its last run, hourly), so
-- a day's usage is the difference from the previous row of the same period. forecasts keeps
-- the job's latest projection per customer, metric and period, for the admin views.
CREATE TABLE usage_days (
    owner_kind  TEXT    NOT NULL CHECK (owner_kind IN ('user', 'account')),
    owner_pk    INTEGER NOT NULL,             -- users.id or accounts.id
    metric      TEXT    NOT NULL,
    day         TEXT    NOT NULL,             -- UTC 'YYYY-MM-DD', within `period`
    period      TEXT    NOT NULL,
    cumulative  INTEGER NOT NULL CHECK (cumulative >= 0),
    PRIMARY KEY (owner_kind, owner_pk, metric, day)
) STRICT, WITHOUT ROWID;

CREATE INDEX usage_days_by_period ON usage_days(period);

CREATE TABLE forecasts (
    owner_kind    TEXT    NOT NULL CHECK (owner_kind IN ('user', 'account')),
    owner_pk      INTEGER NOT NULL,
    customer_id   TEXT    NOT NULL,           -- the user's or the account's id
    plan          TEXT    NOT NULL,
    metric        TEXT    NOT NULL,
    period        TEXT    NOT NULL,
    used          INTEGER NOT NULL,
    limit_value   INTEGER,                    -- NULL: unlimited
    enforcement   TEXT    NOT NULL,
    projected     INTEGER NOT NULL,
    low           INTEGER NOT NULL,
    high          INTEGER NOT NULL,
    exhausted_at  INTEGER,                    -- unix ms; NULL: not within the period
    method        TEXT    NOT NULL,
    computed_at   INTEGER NOT NULL,
    PRIMARY KEY (owner_kind, owner_pk, metric, period)
) STRICT, WITHOUT ROWID;

CREATE INDEX forecasts_by_period ON forecasts(period, exhausted_at);

-- When the job last copied counters into usage_days: it copies what changed since.
CREATE TABLE job_marks (
    name  TEXT    PRIMARY KEY,
    at    INTEGER NOT NULL
) STRICT;
