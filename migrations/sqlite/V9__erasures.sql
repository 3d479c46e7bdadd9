-- Erasures in progress. Erasing a user is a sequence of short writer jobs (the user row goes
-- in the first, answers and events are scrubbed in chunks after it); this row says what is
-- left to do, so an erasure interrupted by a crash is finished at the next start. It is
-- deleted with the erasure's last step.
CREATE TABLE erasures (
    user_id     TEXT    PRIMARY KEY,
    hash        TEXT    NOT NULL,             -- what the user is called from now on
    actor       TEXT    NOT NULL,
    started_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
