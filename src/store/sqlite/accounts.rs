//! SQLite SQL for accounts: the account rows, membership, the pooled counters, feature uses
//! and alert marks. The port impls in usage.rs, events.rs and admin.rs call these.

use super::to_u64;
use crate::domain::period::Period;
use crate::domain::ports::{AccountRecord, PlanCounts, StoreError, UserRecord};
use rusqlite::{Connection, OptionalExtension, Row, params};

pub(super) fn account_row(row: &Row<'_>) -> rusqlite::Result<AccountRecord> {
    Ok(AccountRecord { pk: row.get(0)?, account_id: row.get(1)?, plan: row.get(2)?, created_at_ms: row.get(3)? })
}

pub(super) fn find_account(connection: &Connection, account_id: &str) -> Result<Option<AccountRecord>, StoreError> {
    let mut statement =
        connection.prepare_cached("SELECT id, account_id, plan, created_at FROM accounts WHERE account_id = ?1")?;
    Ok(statement.query_row([account_id], account_row).optional()?)
}

pub(super) fn get_account(connection: &Connection, account_pk: i64) -> Result<AccountRecord, StoreError> {
    let mut statement =
        connection.prepare_cached("SELECT id, account_id, plan, created_at FROM accounts WHERE id = ?1")?;
    Ok(statement.query_row([account_pk], account_row)?)
}

pub(super) fn count_feature_uses(
    connection: &Connection,
    account_pk: i64,
    feature: &str,
    since_ms: i64,
) -> Result<u32, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT count(*) FROM account_feature_uses WHERE account_pk = ?1 AND feature = ?2 AND used_at > ?3",
    )?;
    let count: i64 = statement.query_row(params![account_pk, feature, since_ms], |row| row.get(0))?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

pub(super) fn nth_oldest_feature_use(
    connection: &Connection,
    account_pk: i64,
    feature: &str,
    since_ms: i64,
    skip: u32,
) -> Result<Option<i64>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT used_at FROM account_feature_uses WHERE account_pk = ?1 AND feature = ?2 AND used_at > ?3
         ORDER BY used_at LIMIT 1 OFFSET ?4",
    )?;
    Ok(statement.query_row(params![account_pk, feature, since_ms, skip], |row| row.get(0)).optional()?)
}

pub(super) fn members(connection: &Connection, account_pk: i64) -> Result<Vec<UserRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, uuid, user_id, plan, created_at, account_pk FROM users WHERE account_pk = ?1 ORDER BY user_id",
    )?;
    let rows = statement.query_map([account_pk], super::usage::user_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn create_account(
    connection: &Connection,
    account_id: &str,
    plan: &str,
    now_ms: i64,
) -> Result<AccountRecord, StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO accounts (account_id, plan, created_at, updated_at) VALUES (?1, ?2, ?3, ?3) RETURNING id",
    )?;
    let pk: i64 = statement.query_row(params![account_id, plan, now_ms], |row| row.get(0))?;
    Ok(AccountRecord { pk, account_id: account_id.to_owned(), plan: plan.to_owned(), created_at_ms: now_ms })
}

pub(super) fn set_account_plan(
    connection: &Connection,
    account_pk: i64,
    plan: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached("UPDATE accounts SET plan = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![account_pk, plan, now_ms])?;
    Ok(())
}

pub(super) fn set_membership(
    connection: &Connection,
    user_pk: i64,
    account_pk: Option<i64>,
    now_ms: i64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached("UPDATE users SET account_pk = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![user_pk, account_pk, now_ms])?;
    Ok(())
}

pub(super) fn record_feature_use(
    connection: &Connection,
    account_pk: i64,
    feature: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached("INSERT INTO account_feature_uses (account_pk, feature, used_at) VALUES (?1, ?2, ?3)")?
        .execute(params![account_pk, feature, now_ms])?;
    Ok(())
}

pub(super) fn prune_feature_uses(
    connection: &Connection,
    account_pk: i64,
    feature: &str,
    until_ms: i64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached("DELETE FROM account_feature_uses WHERE account_pk = ?1 AND feature = ?2 AND used_at <= ?3")?
        .execute(params![account_pk, feature, until_ms])?;
    Ok(())
}

pub(super) fn mark_alert(
    connection: &Connection,
    account_pk: i64,
    period: &str,
    metric: &str,
    alert: &str,
) -> Result<bool, StoreError> {
    let inserted = connection
        .prepare_cached(
            "INSERT OR IGNORE INTO account_alerts (account_pk, period, metric, alert) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![account_pk, period, metric, alert])?;
    Ok(inserted == 1)
}

pub(super) fn accounts_page(
    connection: &Connection,
    limit: u32,
    before: Option<&str>,
) -> Result<Vec<(AccountRecord, u64)>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT a.id, a.account_id, a.plan, a.created_at,
                (SELECT count(*) FROM users u WHERE u.account_pk = a.id)
         FROM accounts a WHERE ?1 IS NULL OR a.account_id < ?1 ORDER BY a.account_id DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![before, limit], |row| Ok((account_row(row)?, to_u64(row.get(4)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn account_plans(connection: &Connection) -> Result<(PlanCounts, PlanCounts), StoreError> {
    let mut accounts = connection.prepare_cached("SELECT plan, count(*) FROM accounts GROUP BY plan ORDER BY plan")?;
    let accounts = accounts.query_map([], |row| Ok((row.get(0)?, to_u64(row.get(1)?))))?.collect::<Result<_, _>>()?;
    let mut members = connection
        .prepare_cached("SELECT plan, count(*) FROM users WHERE account_pk IS NOT NULL GROUP BY plan ORDER BY plan")?;
    let members = members.query_map([], |row| Ok((row.get(0)?, to_u64(row.get(1)?))))?.collect::<Result<_, _>>()?;
    Ok((accounts, members))
}

pub(super) fn counters_since(
    connection: &Connection,
    account_pk: i64,
    oldest: Period,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT period, metric, value FROM account_counters WHERE account_pk = ?1 AND period >= ?2
         ORDER BY period DESC, metric",
    )?;
    let rows = statement.query_map(params![account_pk, oldest.to_string()], |row| {
        Ok((row.get(0)?, row.get(1)?, to_u64(row.get(2)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn reset_counters(
    connection: &Connection,
    account_pk: i64,
    period: Period,
    metric: Option<&str>,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut statement = connection.prepare_cached(
        "DELETE FROM account_counters WHERE account_pk = ?1 AND period = ?2 AND (?3 IS NULL OR metric = ?3)
         RETURNING metric, value",
    )?;
    let rows = statement
        .query_map(params![account_pk, period.to_string(), metric], |row| Ok((row.get(0)?, to_u64(row.get(1)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn delete_account(connection: &Connection, account_pk: i64) -> Result<(), StoreError> {
    connection.prepare_cached("UPDATE users SET account_pk = NULL WHERE account_pk = ?1")?.execute([account_pk])?;
    // Pooled counters, feature uses and alert marks go with it (ON DELETE CASCADE).
    connection.prepare_cached("DELETE FROM accounts WHERE id = ?1")?.execute([account_pk])?;
    Ok(())
}

pub(super) fn delete_counters_before(
    connection: &Connection,
    oldest_kept: Period,
    limit: u32,
) -> Result<u64, StoreError> {
    let oldest = oldest_kept.to_string();
    let counters = connection
        .prepare_cached(
            "DELETE FROM account_counters WHERE (account_pk, period, metric) IN (
                 SELECT account_pk, period, metric FROM account_counters WHERE period < ?1 LIMIT ?2)",
        )?
        .execute(params![oldest, limit])?;
    let alerts = connection
        .prepare_cached(
            "DELETE FROM account_alerts WHERE (account_pk, period, metric, alert) IN (
                 SELECT account_pk, period, metric, alert FROM account_alerts WHERE period < ?1 LIMIT ?2)",
        )?
        .execute(params![oldest, limit])?;
    Ok((counters + alerts) as u64)
}
