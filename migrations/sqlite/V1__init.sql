-- Tally's first schema: users, their monthly counters, and remembered idempotent answers.
-- Timestamps are INTEGER unix milliseconds, UTC. A shipped migration is never edited.

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,          -- internal key, used by the counter rows
    uuid        TEXT    NOT NULL UNIQUE,      -- stable public id
    user_id     TEXT    NOT NULL UNIQUE,      -- the caller's id for the user
    plan        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE usage_counters (
    user_pk     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    period      TEXT    NOT NULL,             -- UTC month, 'YYYY-MM'
    metric      TEXT    NOT NULL,
    value       INTEGER NOT NULL CHECK (value >= 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_pk, period, metric)
) STRICT, WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    key          TEXT    PRIMARY KEY,
    user_id      TEXT    NOT NULL,            -- the caller's user id, so erasure can find it
    fingerprint  BLOB    NOT NULL,            -- sha256 of the route and the request's fields
    status       INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX idempotency_keys_by_created_at ON idempotency_keys(created_at);
CREATE INDEX idempotency_keys_by_user_id ON idempotency_keys(user_id);
