-- The delta log (issue 12): the hot path appends each recorded increment here instead of
-- updating its counter row, its top-users index entry and the rollups, so a commit writes the
-- log's last page or two whatever the number of users. The writer keeps the same increments in
-- memory for its limit decisions and folds the log into usage_counters / account_counters and
-- the rollups in bulk (every 200 ms, before any other job, at start and at shutdown), deleting
-- the folded rows in the same transaction: a counter's value is its row plus its rows here.
-- SQLite only: PostgreSQL nodes update their counters in place.
CREATE TABLE usage_deltas (
    seq         INTEGER PRIMARY KEY,
    owner_kind  INTEGER NOT NULL CHECK (owner_kind IN (0, 1)),  -- 0: users.id, 1: accounts.id
    owner_pk    INTEGER NOT NULL,
    period      TEXT    NOT NULL,
    metric      TEXT    NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    at          INTEGER NOT NULL                                -- ms since epoch
) STRICT;
