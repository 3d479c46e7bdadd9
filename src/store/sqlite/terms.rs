//! SQLite SQL for a customer's terms beyond the plan: overrides and grants.

use super::to_u64;
use crate::domain::period::Period;
use crate::domain::ports::{CustomerKey, GrantRecord, OverrideRecord, StoreError, as_stored_integer};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn grant_row(row: &Row<'_>) -> rusqlite::Result<GrantRecord> {
    Ok(GrantRecord {
        id: row.get(0)?,
        customer_kind: row.get(1)?,
        customer_id: row.get(2)?,
        metric: row.get(3)?,
        amount: to_u64(row.get(4)?),
        period: row.get(5)?,
        expires_at_ms: row.get(6)?,
        note: row.get(7)?,
        created_at_ms: row.get(8)?,
    })
}

const GRANT_COLUMNS: &str = "id, customer_kind, customer_id, metric, amount, period, expires_at, note, created_at";

pub(super) fn find_override(
    connection: &Connection,
    customer: CustomerKey<'_>,
) -> Result<Option<OverrideRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT body, expires_at, note, updated_at FROM overrides WHERE customer_kind = ?1 AND customer_id = ?2",
    )?;
    let found = statement
        .query_row(params![customer.kind, customer.id], |row| {
            Ok(OverrideRecord {
                body: row.get(0)?,
                expires_at_ms: row.get(1)?,
                note: row.get(2)?,
                updated_at_ms: row.get(3)?,
            })
        })
        .optional()?;
    Ok(found)
}

pub(super) fn sum_grants(
    connection: &Connection,
    customer: CustomerKey<'_>,
    metric: &str,
    period: Period,
    valid_at_ms: i64,
) -> Result<u64, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT coalesce(sum(amount), 0) FROM grants
         WHERE customer_kind = ?1 AND customer_id = ?2 AND period = ?3 AND metric = ?4
           AND (expires_at IS NULL OR expires_at > ?5)",
    )?;
    let sum: i64 = statement
        .query_row(params![customer.kind, customer.id, period.to_string(), metric, valid_at_ms], |row| row.get(0))?;
    Ok(to_u64(sum))
}

pub(super) fn grants(connection: &Connection, customer: CustomerKey<'_>) -> Result<Vec<GrantRecord>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {GRANT_COLUMNS} FROM grants WHERE customer_kind = ?1 AND customer_id = ?2 ORDER BY id DESC"
    ))?;
    let rows = statement.query_map(params![customer.kind, customer.id], grant_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn put_override(
    connection: &Connection,
    customer: CustomerKey<'_>,
    record: &OverrideRecord,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO overrides (customer_kind, customer_id, body, expires_at, note, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (customer_kind, customer_id) DO UPDATE SET body = excluded.body,
                 expires_at = excluded.expires_at, note = excluded.note, updated_at = excluded.updated_at",
        )?
        .execute(params![
            customer.kind,
            customer.id,
            record.body,
            record.expires_at_ms,
            record.note,
            record.updated_at_ms
        ])?;
    Ok(())
}

pub(super) fn delete_override(connection: &Connection, customer: CustomerKey<'_>) -> Result<bool, StoreError> {
    let deleted = connection
        .prepare_cached("DELETE FROM overrides WHERE customer_kind = ?1 AND customer_id = ?2")?
        .execute(params![customer.kind, customer.id])?;
    Ok(deleted == 1)
}

pub(super) fn add_grant(connection: &Connection, grant: &GrantRecord) -> Result<i64, StoreError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO grants (customer_kind, customer_id, metric, amount, period, expires_at, note, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
    )?;
    Ok(statement.query_row(
        params![
            grant.customer_kind,
            grant.customer_id,
            grant.metric,
            as_stored_integer(grant.amount),
            grant.period,
            grant.expires_at_ms,
            grant.note,
            grant.created_at_ms
        ],
        |row| row.get(0),
    )?)
}

pub(super) fn delete_grant(connection: &Connection, grant_id: i64) -> Result<Option<GrantRecord>, StoreError> {
    let mut statement =
        connection.prepare_cached(&format!("DELETE FROM grants WHERE id = ?1 RETURNING {GRANT_COLUMNS}"))?;
    Ok(statement.query_row([grant_id], grant_row).optional()?)
}

pub(super) fn delete_terms_of(connection: &Connection, customer: CustomerKey<'_>) -> Result<u64, StoreError> {
    let overrides = connection
        .prepare_cached("DELETE FROM overrides WHERE customer_kind = ?1 AND customer_id = ?2")?
        .execute(params![customer.kind, customer.id])?;
    let grants = connection
        .prepare_cached("DELETE FROM grants WHERE customer_kind = ?1 AND customer_id = ?2")?
        .execute(params![customer.kind, customer.id])?;
    Ok((overrides + grants) as u64)
}
