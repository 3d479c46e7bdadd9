//! PostgreSQL SQL for a customer's terms beyond the plan: overrides and grants.

use super::PgDb;
use crate::domain::period::Period;
use crate::domain::ports::{
    CustomerKey, GrantRecord, OverrideRecord, StoreError, as_stored_integer, from_stored_integer,
};
use postgres::Row;

type Result<T> = std::result::Result<T, StoreError>;

fn grant_row(row: &Row) -> GrantRecord {
    GrantRecord {
        id: row.get(0),
        customer_kind: row.get(1),
        customer_id: row.get(2),
        metric: row.get(3),
        amount: from_stored_integer(row.get(4)),
        period: row.get(5),
        expires_at_ms: row.get(6),
        note: row.get(7),
        created_at_ms: row.get(8),
    }
}

pub(super) fn find_override(db: &PgDb<'_>, customer: CustomerKey<'_>) -> Result<Option<OverrideRecord>> {
    let row = db.conn().query_opt(
        "SELECT body, expires_at, note, updated_at FROM overrides WHERE customer_kind = $1 AND customer_id = $2",
        &[&customer.kind, &customer.id],
    )?;
    Ok(row.map(|row| OverrideRecord {
        body: row.get(0),
        expires_at_ms: row.get(1),
        note: row.get(2),
        updated_at_ms: row.get(3),
    }))
}

pub(super) fn sum_grants(
    db: &PgDb<'_>,
    customer: CustomerKey<'_>,
    metric: &str,
    period: Period,
    valid_at_ms: i64,
) -> Result<u64> {
    let row = db.conn().query_opt(
        "SELECT coalesce(sum(amount), 0)::bigint FROM grants
         WHERE customer_kind = $1 AND customer_id = $2 AND period = $3 AND metric = $4
           AND (expires_at IS NULL OR expires_at > $5)",
        &[&customer.kind, &customer.id, &period.to_string(), &metric, &valid_at_ms],
    )?;
    Ok(row.map_or(0, |row| from_stored_integer(row.get(0))))
}

pub(super) fn grants(db: &PgDb<'_>, customer: CustomerKey<'_>) -> Result<Vec<GrantRecord>> {
    let rows = db.conn().query(
        "SELECT id, customer_kind, customer_id, metric, amount, period, expires_at, note, created_at
         FROM grants WHERE customer_kind = $1 AND customer_id = $2 ORDER BY id DESC",
        &[&customer.kind, &customer.id],
    )?;
    Ok(rows.iter().map(grant_row).collect())
}

pub(super) fn put_override(db: &PgDb<'_>, customer: CustomerKey<'_>, record: &OverrideRecord) -> Result<()> {
    db.conn().execute(
        "INSERT INTO overrides (customer_kind, customer_id, body, expires_at, note, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (customer_kind, customer_id) DO UPDATE SET body = EXCLUDED.body,
             expires_at = EXCLUDED.expires_at, note = EXCLUDED.note, updated_at = EXCLUDED.updated_at",
        &[&customer.kind, &customer.id, &record.body, &record.expires_at_ms, &record.note, &record.updated_at_ms],
    )?;
    Ok(())
}

pub(super) fn delete_override(db: &PgDb<'_>, customer: CustomerKey<'_>) -> Result<bool> {
    let deleted = db.conn().execute(
        "DELETE FROM overrides WHERE customer_kind = $1 AND customer_id = $2",
        &[&customer.kind, &customer.id],
    )?;
    Ok(deleted == 1)
}

pub(super) fn add_grant(db: &PgDb<'_>, grant: &GrantRecord) -> Result<i64> {
    let row = db.conn().query_opt(
        "INSERT INTO grants (customer_kind, customer_id, metric, amount, period, expires_at, note, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        &[
            &grant.customer_kind,
            &grant.customer_id,
            &grant.metric,
            &as_stored_integer(grant.amount),
            &grant.period,
            &grant.expires_at_ms,
            &grant.note,
            &grant.created_at_ms,
        ],
    )?;
    row.map(|row| row.get(0)).ok_or_else(|| StoreError::Backend("storing a grant returned no id".into()))
}

pub(super) fn delete_grant(db: &PgDb<'_>, grant_id: i64) -> Result<Option<GrantRecord>> {
    let row = db.conn().query_opt(
        "DELETE FROM grants WHERE id = $1
         RETURNING id, customer_kind, customer_id, metric, amount, period, expires_at, note, created_at",
        &[&grant_id],
    )?;
    Ok(row.as_ref().map(grant_row))
}

pub(super) fn delete_terms_of(db: &PgDb<'_>, customer: CustomerKey<'_>) -> Result<u64> {
    let overrides = db.conn().execute(
        "DELETE FROM overrides WHERE customer_kind = $1 AND customer_id = $2",
        &[&customer.kind, &customer.id],
    )?;
    let grants = db
        .conn()
        .execute("DELETE FROM grants WHERE customer_kind = $1 AND customer_id = $2", &[&customer.kind, &customer.id])?;
    Ok(overrides + grants)
}
