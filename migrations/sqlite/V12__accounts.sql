-- Accounts: several users sharing one plan and pooled counters. While a user is a member
-- (users.account_pk), the account's plan applies and every limit and rate-limited window is
-- enforced on the account's counters, which each member's track adds to in the same
-- transaction as the member's own counter.
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    account_id  TEXT    NOT NULL UNIQUE,      -- the caller's id for the account
    plan        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

ALTER TABLE users ADD COLUMN account_pk INTEGER REFERENCES accounts(id);
CREATE INDEX users_by_account ON users(account_pk) WHERE account_pk IS NOT NULL;

CREATE TABLE account_counters (
    account_pk  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    period      TEXT    NOT NULL,             -- UTC month, 'YYYY-MM'
    metric      TEXT    NOT NULL,
    value       INTEGER NOT NULL CHECK (value >= 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (account_pk, period, metric)
) STRICT, WITHOUT ROWID;

CREATE INDEX account_counters_by_period ON account_counters(period);

-- Members' uses of rate-limited features, for the account's pooled windows.
CREATE TABLE account_feature_uses (
    account_pk  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    feature     TEXT    NOT NULL,
    used_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX account_feature_uses_by_feature_time ON account_feature_uses(account_pk, feature, used_at);

-- Once-only alerts of a pool (per account, metric, period and threshold).
CREATE TABLE account_alerts (
    account_pk  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    period      TEXT    NOT NULL,
    metric      TEXT    NOT NULL,
    alert       TEXT    NOT NULL,
    PRIMARY KEY (account_pk, period, metric, alert)
) STRICT, WITHOUT ROWID;

CREATE INDEX account_alerts_by_period ON account_alerts(period);
