//! Rollups: running totals per period and metric, active users per period, users per plan.
//! Every function that changes counters, users or plans calls these in the same
//! transaction, so the admin views read a few rows instead of scanning millions.

use crate::domain::period::Period;
use crate::domain::ports::StoreError;
use rusqlite::{Connection, params};

/// Adds `delta` (possibly negative) to a period's total for a metric; saturates at
/// i64::MAX and never goes below 0.
pub(super) fn add_total(connection: &Connection, period: Period, metric: &str, delta: i64) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO period_totals (period, metric, total) VALUES (?1, ?2, max(?3, 0))
         ON CONFLICT (period, metric) DO UPDATE SET total = CASE
             WHEN ?3 >= 0 AND total > 9223372036854775807 - ?3 THEN 9223372036854775807
             ELSE max(total + ?3, 0) END",
    )?;
    statement.execute(params![period.to_string(), metric, delta])?;
    Ok(())
}

pub(super) fn add_active_users(connection: &Connection, period: &str, delta: i64) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO period_users (period, active_users) VALUES (?1, max(?2, 0))
         ON CONFLICT (period) DO UPDATE SET active_users = max(active_users + ?2, 0)",
    )?;
    statement.execute(params![period, delta])?;
    Ok(())
}

pub(super) fn add_plan_users(connection: &Connection, plan: &str, delta: i64) -> Result<(), StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO plan_users (plan, users) VALUES (?1, max(?2, 0))
         ON CONFLICT (plan) DO UPDATE SET users = max(users + ?2, 0)",
    )?;
    statement.execute(params![plan, delta])?;
    Ok(())
}

/// Whether the user has a counter of another metric in the period (so is already counted
/// as active there).
pub(super) fn has_other_counters(
    connection: &Connection,
    user_pk: i64,
    period: &str,
    metric: &str,
) -> Result<bool, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM usage_counters WHERE user_pk = ?1 AND period = ?2 AND metric <> ?3)",
    )?;
    Ok(statement.query_row(params![user_pk, period, metric], |row| row.get(0))?)
}

/// Recomputes every rollup from the counters and users. Each write keeps them in step; this
/// is for a database written around the store (the scale benchmark's seed), which must hold
/// no zero counters: a counter row means its user was active in the period.
pub(super) fn rebuild(connection: &Connection) -> Result<(), StoreError> {
    connection.execute_batch(
        "DELETE FROM period_totals; DELETE FROM period_users; DELETE FROM plan_users;
         INSERT INTO period_totals (period, metric, total)
             SELECT period, metric, CAST(min(total(value), 9223372036854775807.0) AS INTEGER)
             FROM usage_counters GROUP BY period, metric;
         INSERT INTO period_users (period, active_users)
             SELECT period, count(DISTINCT user_pk) FROM usage_counters GROUP BY period;
         INSERT INTO plan_users (plan, users) SELECT plan, count(*) FROM users GROUP BY plan;",
    )?;
    Ok(())
}
