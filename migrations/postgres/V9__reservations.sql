-- Reservations. Same table as SQLite's V15, which says how it is used.
CREATE TABLE reservations (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reservation_id  TEXT    NOT NULL UNIQUE,
    user_pk         BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    account_pk      BIGINT  REFERENCES accounts(id) ON DELETE CASCADE,
    period          TEXT    NOT NULL,
    metric          TEXT    NOT NULL,
    amount          BIGINT  NOT NULL CHECK (amount > 0),
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'committed', 'released', 'expired')),
    committed       BIGINT  CHECK (committed >= 0),
    closed_at       BIGINT
);

CREATE INDEX reservations_open_by_user ON reservations(user_pk, period, metric)
    WHERE state = 'open' AND account_pk IS NULL;
CREATE INDEX reservations_open_by_account ON reservations(account_pk, period, metric)
    WHERE state = 'open' AND account_pk IS NOT NULL;
CREATE INDEX reservations_open_by_expiry ON reservations(expires_at) WHERE state = 'open';
CREATE INDEX reservations_by_period ON reservations(period);
