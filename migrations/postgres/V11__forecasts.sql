-- Forecasts. Same tables as SQLite's V17, which says how they are used.
CREATE TABLE usage_days (
    owner_kind  TEXT    NOT NULL CHECK (owner_kind IN ('user', 'account')),
    owner_pk    BIGINT  NOT NULL,
    metric      TEXT    NOT NULL,
    day         TEXT    NOT NULL,
    period      TEXT    NOT NULL,
    cumulative  BIGINT  NOT NULL CHECK (cumulative >= 0),
    PRIMARY KEY (owner_kind, owner_pk, metric, day)
);

CREATE INDEX usage_days_by_period ON usage_days(period);

CREATE TABLE forecasts (
    owner_kind    TEXT    NOT NULL CHECK (owner_kind IN ('user', 'account')),
    owner_pk      BIGINT  NOT NULL,
    customer_id   TEXT    NOT NULL,
    plan          TEXT    NOT NULL,
    metric        TEXT    NOT NULL,
    period        TEXT    NOT NULL,
    used          BIGINT  NOT NULL,
    limit_value   BIGINT,
    enforcement   TEXT    NOT NULL,
    projected     BIGINT  NOT NULL,
    low           BIGINT  NOT NULL,
    high          BIGINT  NOT NULL,
    exhausted_at  BIGINT,
    method        TEXT    NOT NULL,
    computed_at   BIGINT  NOT NULL,
    PRIMARY KEY (owner_kind, owner_pk, metric, period)
);

CREATE INDEX forecasts_by_period ON forecasts(period, exhausted_at);

CREATE TABLE job_marks (
    name  TEXT    PRIMARY KEY,
    at    BIGINT  NOT NULL
);
