-- Reservations: an amount held against a metric's limit until it is committed (recorded),
-- released or expired. A hold is on the counter the limit is enforced on: the user's own
-- (account_pk NULL) or, for a member, the account's pool. Open holds whose expires_at has
-- not passed count against the limit; a job marks the others expired.
CREATE TABLE reservations (
    id              INTEGER PRIMARY KEY,
    reservation_id  TEXT    NOT NULL UNIQUE,  -- public id, 'res_' and a uuid
    user_pk         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    account_pk      INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
    period          TEXT    NOT NULL,         -- UTC month, 'YYYY-MM', of the hold and its commit
    metric          TEXT    NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'committed', 'released', 'expired')),
    committed       INTEGER CHECK (committed >= 0),  -- the amount recorded by the commit
    closed_at       INTEGER
) STRICT;

CREATE INDEX reservations_open_by_user ON reservations(user_pk, period, metric)
    WHERE state = 'open' AND account_pk IS NULL;
CREATE INDEX reservations_open_by_account ON reservations(account_pk, period, metric)
    WHERE state = 'open' AND account_pk IS NOT NULL;
CREATE INDEX reservations_open_by_expiry ON reservations(expires_at) WHERE state = 'open';
CREATE INDEX reservations_by_period ON reservations(period);
