//! PostgreSQL SQL for accounts: the account rows, membership, the pooled counters, feature
//! uses and alert marks. The port impls in usage.rs, events.rs and admin.rs call these. A
//! member's track serializes on the user and on the account (advisory locks, usage.rs) and
//! adds to the pooled counter with the same conditional upsert as a user's counter, exact at
//! READ COMMITTED across nodes.

use super::PgDb;
use super::usage::user_row;
use crate::domain::period::Period;
use crate::domain::ports::{AccountRecord, PlanCounts, StoreError, UserRecord, as_stored_integer, from_stored_integer};
use postgres::Row;

type Result<T> = std::result::Result<T, StoreError>;

pub(super) fn account_row(row: &Row) -> AccountRecord {
    AccountRecord { pk: row.get(0), account_id: row.get(1), plan: row.get(2), created_at_ms: row.get(3) }
}

fn counts(rows: &[Row]) -> Vec<(String, u64)> {
    rows.iter().map(|row| (row.get(0), from_stored_integer(row.get(1)))).collect()
}

pub(super) fn find_account(db: &PgDb<'_>, account_id: &str) -> Result<Option<AccountRecord>> {
    let row = db
        .conn()
        .query_opt("SELECT id, account_id, plan, created_at FROM accounts WHERE account_id = $1", &[&account_id])?;
    Ok(row.as_ref().map(account_row))
}

pub(super) fn get_account(db: &PgDb<'_>, account_pk: i64) -> Result<AccountRecord> {
    let row =
        db.conn().query_opt("SELECT id, account_id, plan, created_at FROM accounts WHERE id = $1", &[&account_pk])?;
    row.as_ref().map(account_row).ok_or_else(|| StoreError::backend(format!("no account with key {account_pk}")))
}

pub(super) fn account_counter(db: &PgDb<'_>, account_pk: i64, period: Period, metric: &str) -> Result<u64> {
    let row = db.conn().query_opt(
        "SELECT value FROM account_counters WHERE account_pk = $1 AND period = $2 AND metric = $3",
        &[&account_pk, &period.to_string(), &metric],
    )?;
    Ok(row.map_or(0, |row| from_stored_integer(row.get(0))))
}

pub(super) fn account_counters(db: &PgDb<'_>, account_pk: i64, period: Period) -> Result<Vec<(String, u64)>> {
    let rows = db.conn().query(
        "SELECT metric, value FROM account_counters WHERE account_pk = $1 AND period = $2",
        &[&account_pk, &period.to_string()],
    )?;
    Ok(counts(&rows))
}

pub(super) fn count_feature_uses(db: &PgDb<'_>, account_pk: i64, feature: &str, since_ms: i64) -> Result<u32> {
    let row = db.conn().query_opt(
        "SELECT count(*) FROM account_feature_uses WHERE account_pk = $1 AND feature = $2 AND used_at > $3",
        &[&account_pk, &feature, &since_ms],
    )?;
    let count: i64 = row.map_or(0, |row| row.get(0));
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

pub(super) fn nth_oldest_feature_use(
    db: &PgDb<'_>,
    account_pk: i64,
    feature: &str,
    since_ms: i64,
    skip: u32,
) -> Result<Option<i64>> {
    let row = db.conn().query_opt(
        "SELECT used_at FROM account_feature_uses WHERE account_pk = $1 AND feature = $2 AND used_at > $3
         ORDER BY used_at LIMIT 1 OFFSET $4",
        &[&account_pk, &feature, &since_ms, &i64::from(skip)],
    )?;
    Ok(row.map(|row| row.get(0)))
}

pub(super) fn members(db: &PgDb<'_>, account_pk: i64) -> Result<Vec<UserRecord>> {
    let rows = db.conn().query(
        "SELECT id, uuid, user_id, plan, created_at, account_pk FROM users WHERE account_pk = $1 ORDER BY user_id",
        &[&account_pk],
    )?;
    Ok(rows.iter().map(user_row).collect())
}

pub(super) fn create_account(db: &PgDb<'_>, account_id: &str, plan: &str, now_ms: i64) -> Result<AccountRecord> {
    let row = db.conn().query_opt(
        "INSERT INTO accounts (account_id, plan, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
        &[&account_id, &plan, &now_ms],
    )?;
    let pk: i64 = row.map(|row| row.get(0)).ok_or_else(|| StoreError::backend("creating an account returned no id"))?;
    Ok(AccountRecord { pk, account_id: account_id.to_owned(), plan: plan.to_owned(), created_at_ms: now_ms })
}

pub(super) fn set_account_plan(db: &PgDb<'_>, account_pk: i64, plan: &str, now_ms: i64) -> Result<()> {
    db.conn()
        .execute("UPDATE accounts SET plan = $2, updated_at = $3 WHERE id = $1", &[&account_pk, &plan, &now_ms])?;
    Ok(())
}

pub(super) fn set_membership(db: &PgDb<'_>, user_pk: i64, account_pk: Option<i64>, now_ms: i64) -> Result<()> {
    db.conn().execute(
        "UPDATE users SET account_pk = $2, updated_at = $3 WHERE id = $1",
        &[&user_pk, &account_pk, &now_ms],
    )?;
    Ok(())
}

pub(super) fn increment_within(
    db: &PgDb<'_>,
    account_pk: i64,
    period: Period,
    metric: &str,
    amount: u64,
    ceiling: u64,
    now_ms: i64,
) -> Result<Option<u64>> {
    // usage.rs's conditional upsert, on the pooled counter.
    let row = db.conn().query_opt(
        "INSERT INTO account_counters AS c (account_pk, period, metric, value, created_at, updated_at)
         SELECT $1::bigint, $2::text, $3::text, $4::bigint, $6::bigint, $6::bigint WHERE $4::bigint <= $5::bigint
         ON CONFLICT (account_pk, period, metric) DO UPDATE
            SET value = c.value + EXCLUDED.value, updated_at = EXCLUDED.updated_at
            WHERE c.value <= $5::bigint - EXCLUDED.value
         RETURNING value",
        &[&account_pk, &period.to_string(), &metric, &as_stored_integer(amount), &as_stored_integer(ceiling), &now_ms],
    )?;
    Ok(row.map(|row| from_stored_integer(row.get(0))))
}

pub(super) fn record_feature_use(db: &PgDb<'_>, account_pk: i64, feature: &str, now_ms: i64) -> Result<()> {
    db.conn().execute(
        "INSERT INTO account_feature_uses (account_pk, feature, used_at) VALUES ($1, $2, $3)",
        &[&account_pk, &feature, &now_ms],
    )?;
    Ok(())
}

pub(super) fn prune_feature_uses(db: &PgDb<'_>, account_pk: i64, feature: &str, until_ms: i64) -> Result<()> {
    db.conn().execute(
        "DELETE FROM account_feature_uses WHERE account_pk = $1 AND feature = $2 AND used_at <= $3",
        &[&account_pk, &feature, &until_ms],
    )?;
    Ok(())
}

pub(super) fn mark_alert(db: &PgDb<'_>, account_pk: i64, period: &str, metric: &str, alert: &str) -> Result<bool> {
    let inserted = db.conn().execute(
        "INSERT INTO account_alerts (account_pk, period, metric, alert) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[&account_pk, &period, &metric, &alert],
    )?;
    Ok(inserted == 1)
}

pub(super) fn accounts_page(db: &PgDb<'_>, limit: u32, before: Option<&str>) -> Result<Vec<(AccountRecord, u64)>> {
    let rows = db.conn().query(
        "SELECT a.id, a.account_id, a.plan, a.created_at,
                (SELECT count(*) FROM users u WHERE u.account_pk = a.id)
         FROM accounts a WHERE $1::text IS NULL OR a.account_id < $1 ORDER BY a.account_id DESC LIMIT $2",
        &[&before, &i64::from(limit)],
    )?;
    Ok(rows.iter().map(|row| (account_row(row), from_stored_integer(row.get(4)))).collect())
}

pub(super) fn account_plans(db: &PgDb<'_>) -> Result<(PlanCounts, PlanCounts)> {
    let accounts = db.conn().query("SELECT plan, count(*) FROM accounts GROUP BY plan ORDER BY plan", &[])?;
    let members = db
        .conn()
        .query("SELECT plan, count(*) FROM users WHERE account_pk IS NOT NULL GROUP BY plan ORDER BY plan", &[])?;
    Ok((counts(&accounts), counts(&members)))
}

pub(super) fn counters_since(db: &PgDb<'_>, account_pk: i64, oldest: Period) -> Result<Vec<(String, String, u64)>> {
    let rows = db.conn().query(
        "SELECT period, metric, value FROM account_counters WHERE account_pk = $1 AND period >= $2
         ORDER BY period DESC, metric",
        &[&account_pk, &oldest.to_string()],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1), from_stored_integer(row.get(2)))).collect())
}

pub(super) fn reset_counters(
    db: &PgDb<'_>,
    account_pk: i64,
    period: Period,
    metric: Option<&str>,
) -> Result<Vec<(String, u64)>> {
    let rows = db.conn().query(
        "DELETE FROM account_counters WHERE account_pk = $1 AND period = $2 AND ($3::text IS NULL OR metric = $3)
         RETURNING metric, value",
        &[&account_pk, &period.to_string(), &metric],
    )?;
    Ok(counts(&rows))
}

pub(super) fn delete_account(db: &PgDb<'_>, account_pk: i64) -> Result<()> {
    db.conn().execute("UPDATE users SET account_pk = NULL WHERE account_pk = $1", &[&account_pk])?;
    // Pooled counters, feature uses and alert marks go with it (ON DELETE CASCADE).
    db.conn().execute("DELETE FROM accounts WHERE id = $1", &[&account_pk])?;
    Ok(())
}

pub(super) fn delete_counters_before(db: &PgDb<'_>, oldest_kept: Period, limit: u32) -> Result<u64> {
    let oldest = oldest_kept.to_string();
    let counters = db.conn().execute(
        "DELETE FROM account_counters WHERE ctid IN (SELECT ctid FROM account_counters WHERE period < $1 LIMIT $2)",
        &[&oldest, &i64::from(limit)],
    )?;
    let alerts = db.conn().execute(
        "DELETE FROM account_alerts WHERE ctid IN (SELECT ctid FROM account_alerts WHERE period < $1 LIMIT $2)",
        &[&oldest, &i64::from(limit)],
    )?;
    Ok(counters + alerts)
}
