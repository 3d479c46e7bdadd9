//! The delta log's SQL (issue 12): appending an increment, folding the log into the counters
//! and rollups up to a sequence number, and reading it back at start. deltas.rs keeps the
//! same increments in memory and decides when to fold.

use super::deltas::Owner;
use crate::domain::period::Period;
use crate::domain::ports::StoreError;
use rusqlite::{Connection, params};

/// Appends one increment to the log under `seq` (the writer numbers them, increasing).
#[allow(clippy::too_many_arguments)]
pub(super) fn append(
    connection: &Connection,
    seq: i64,
    owner: Owner,
    pk: i64,
    period: Period,
    metric: &str,
    amount: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO usage_deltas (seq, owner_kind, owner_pk, period, metric, amount, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![seq, owner as i64, pk, period.to_string(), metric, amount, now_ms])?;
    Ok(())
}

/// The highest sequence number folded into the counters, as the statement's snapshot sees it.
pub(super) fn folded_seq(connection: &Connection) -> Result<i64, StoreError> {
    Ok(connection.prepare_cached("SELECT folded_seq FROM fold_state")?.query_row([], |row| row.get(0))?)
}

/// Moves every row of the log up to `through` into its counter and the rollups, deletes those
/// rows, and records `through` as folded: one step of the caller's transaction, so exact and
/// idempotent whenever it runs. The rows are summed into a TEMP table and deleted before any
/// counter is written, so the pages they free are there for the counters. Rows of an owner
/// deleted meanwhile (only SQL written around Tally can leave one: every deletion is a
/// settled job, folded first) are dropped, as its counters were.
pub(super) fn fold_through(connection: &Connection, through: i64) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "CREATE TEMP TABLE IF NOT EXISTS fold_sums (
             owner_kind INTEGER, owner_pk INTEGER, period TEXT, metric TEXT,
             amount INTEGER, first_at INTEGER, last_at INTEGER)",
        )?
        .execute([])?;
    let steps = [
        // Each counter's sum stays within its ceiling (<= i64::MAX): the writer decided it so.
        "INSERT INTO temp.fold_sums
         SELECT owner_kind, owner_pk, period, metric, sum(amount), min(at), max(at) FROM usage_deltas d
         WHERE seq <= ?1
           AND ((owner_kind = 0 AND EXISTS (SELECT 1 FROM users WHERE id = d.owner_pk))
             OR (owner_kind = 1 AND EXISTS (SELECT 1 FROM accounts WHERE id = d.owner_pk)))
         GROUP BY owner_kind, owner_pk, period, metric",
        "DELETE FROM usage_deltas WHERE seq <= ?1",
        "UPDATE fold_state SET folded_seq = max(folded_seq, ?1)",
    ];
    for step in steps {
        connection.prepare_cached(step)?.execute([through])?;
    }
    let steps = [
        // A user's first counter of a period makes them active in it (counted before the
        // counters are written, which would hide it).
        "INSERT INTO period_users (period, active_users)
         SELECT period, count(*) FROM (
             SELECT DISTINCT f.owner_pk, f.period FROM temp.fold_sums f
             WHERE f.owner_kind = 0 AND NOT EXISTS (
                 SELECT 1 FROM usage_counters c WHERE c.user_pk = f.owner_pk AND c.period = f.period))
         WHERE true GROUP BY period
         ON CONFLICT (period) DO UPDATE SET active_users = active_users + excluded.active_users",
        // Totals as `rollup::add_total` keeps them: saturating at i64::MAX.
        "INSERT INTO period_totals (period, metric, total)
         SELECT period, metric, CAST(min(total(amount), 9223372036854775807.0) AS INTEGER)
         FROM temp.fold_sums WHERE owner_kind = 0 GROUP BY period, metric
         ON CONFLICT (period, metric) DO UPDATE SET total = CASE
             WHEN total > 9223372036854775807 - excluded.total THEN 9223372036854775807
             ELSE total + excluded.total END",
        "INSERT INTO usage_counters (user_pk, period, metric, value, created_at, updated_at)
         SELECT owner_pk, period, metric, amount, first_at, last_at FROM temp.fold_sums WHERE owner_kind = 0
         ON CONFLICT (user_pk, period, metric) DO UPDATE
            SET value = value + excluded.value, updated_at = max(updated_at, excluded.updated_at)",
        "INSERT INTO account_counters (account_pk, period, metric, value, created_at, updated_at)
         SELECT owner_pk, period, metric, amount, first_at, last_at FROM temp.fold_sums WHERE owner_kind = 1
         ON CONFLICT (account_pk, period, metric) DO UPDATE
            SET value = value + excluded.value, updated_at = max(updated_at, excluded.updated_at)",
        "DELETE FROM temp.fold_sums",
    ];
    for step in steps {
        connection.prepare_cached(step)?.execute([])?;
    }
    Ok(())
}

/// One row of the log summed by counter, as `read_log` hands it back.
pub(super) struct LoggedCounter {
    pub owner: Owner,
    pub pk: i64,
    pub period: Period,
    pub metric: String,
    pub amount: u64,
}

/// The log as it stands, summed by counter, with its highest sequence number and the highest
/// one ever folded (the next number must pass both).
pub(super) fn read_log(connection: &Connection) -> Result<(Vec<LoggedCounter>, i64, i64), StoreError> {
    let mut statement = connection.prepare(
        "SELECT owner_kind, owner_pk, period, metric, sum(amount) FROM usage_deltas
         GROUP BY owner_kind, owner_pk, period, metric",
    )?;
    let mut rows = statement.query([])?;
    let mut counters = Vec::new();
    while let Some(row) = rows.next()? {
        let period: String = row.get(2)?;
        counters.push(LoggedCounter {
            owner: if row.get::<_, i64>(0)? == 0 { Owner::User } else { Owner::Account },
            pk: row.get(1)?,
            period: period.parse().map_err(|_| StoreError::backend(format!("a delta of period {period:?}")))?,
            metric: row.get(3)?,
            amount: row.get::<_, i64>(4)?.max(0) as u64,
        });
    }
    let last: i64 = connection.query_row("SELECT coalesce(max(seq), 0) FROM usage_deltas", [], |row| row.get(0))?;
    Ok((counters, last, folded_seq(connection)?))
}

/// Folds a file's whole log in one transaction, on a connection to a file no server runs on
/// (a backup's copy). Returns the rows folded.
pub(super) fn fold_file(connection: &Connection) -> Result<u64, StoreError> {
    let (rows, last): (i64, i64) =
        connection.query_row("SELECT count(*), coalesce(max(seq), 0) FROM usage_deltas", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    if rows > 0 {
        connection.execute_batch("BEGIN IMMEDIATE")?;
        // Through the last row, not past it: the server that opens this file next numbers its
        // rows from folded_seq + 1.
        match fold_through(connection, last) {
            Ok(()) => connection.execute_batch("COMMIT")?,
            Err(error) => {
                let _ = connection.execute_batch("ROLLBACK");
                return Err(error);
            }
        }
    }
    Ok(rows.max(0) as u64)
}
