-- Accounts with pooled counters. Same tables as SQLite's V12, which says how they are used.
CREATE TABLE accounts (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  TEXT    NOT NULL UNIQUE,
    plan        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

ALTER TABLE users ADD COLUMN account_pk BIGINT REFERENCES accounts(id);
CREATE INDEX users_by_account ON users(account_pk) WHERE account_pk IS NOT NULL;

CREATE TABLE account_counters (
    account_pk  BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    period      TEXT    NOT NULL,
    metric      TEXT    NOT NULL,
    value       BIGINT  NOT NULL CHECK (value >= 0),
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (account_pk, period, metric)
);

CREATE INDEX account_counters_by_period ON account_counters(period);

CREATE TABLE account_feature_uses (
    account_pk  BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    feature     TEXT    NOT NULL,
    used_at     BIGINT  NOT NULL
);

CREATE INDEX account_feature_uses_by_feature_time ON account_feature_uses(account_pk, feature, used_at);

CREATE TABLE account_alerts (
    account_pk  BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    period      TEXT    NOT NULL,
    metric      TEXT    NOT NULL,
    alert       TEXT    NOT NULL,
    PRIMARY KEY (account_pk, period, metric, alert)
);

CREATE INDEX account_alerts_by_period ON account_alerts(period);
