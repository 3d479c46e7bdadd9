-- A reset now deletes a user's counters instead of setting them to 0, so a counter row always
-- holds at least the amount that created it (the active-user rollup relies on it). Drop the
-- zero rows earlier resets left, and recount active users from the rows that remain.
DELETE FROM usage_counters WHERE value = 0;
DELETE FROM period_users;
INSERT INTO period_users (period, active_users)
    SELECT period, count(DISTINCT user_pk) FROM usage_counters GROUP BY period;
