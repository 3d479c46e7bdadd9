-- The delta log (issue 12): after a counter's first increment (written in place), the hot
-- path appends each recorded increment here instead of updating its counter row, its
-- top-users index entry and the rollups, so a commit writes the log's last page or two
-- whatever the number of users. The writer keeps the same increments in memory for its limit
-- decisions and folds the log into usage_counters / account_counters and the rollups a chunk
-- at a time (a step before each group's COMMIT; all of it before any settled job and at a
-- clean stop), deleting the folded rows in the same transaction. SQLite only: PostgreSQL
-- nodes update their counters in place. seq is numbered by the writer, increasing.
CREATE TABLE usage_deltas (
    seq         INTEGER PRIMARY KEY,
    owner_kind  INTEGER NOT NULL CHECK (owner_kind IN (0, 1)),  -- 0: users.id, 1: accounts.id
    owner_pk    INTEGER NOT NULL,
    period      TEXT    NOT NULL,
    metric      TEXT    NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    at          INTEGER NOT NULL                                -- ms since epoch
) STRICT;

-- Every log row up to folded_seq is in the counters. A reader reads it in the same statement
-- as a counter row and adds the pending increments the writer holds in memory past it.
CREATE TABLE fold_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    folded_seq  INTEGER NOT NULL
) STRICT;
INSERT INTO fold_state (id, folded_seq) VALUES (1, 0);
