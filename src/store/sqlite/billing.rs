//! SQLite SQL for billing: a customer's Stripe id and email (columns of `users` and
//! `accounts`), the pages of customers a statement lists, and closed statements.

use super::usage::user_row;
use super::{SqliteReader, SqliteTx, to_u64};
use crate::domain::period::Period;
use crate::domain::ports::{
    AccountRecord, BillingRead, BillingWrite, ClosingRecord, CustomerCounters, CustomerFields, CustomerKey,
    StatementLine, StoreError, UserRecord,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn customer_fields(connection: &Connection, customer: CustomerKey<'_>) -> Result<CustomerFields, StoreError> {
    let sql = match customer.kind {
        "account" => "SELECT stripe_customer_id, email FROM accounts WHERE account_id = ?1",
        _ => "SELECT stripe_customer_id, email FROM users WHERE user_id = ?1",
    };
    let found = connection
        .prepare_cached(sql)?
        .query_row([customer.id], |row| Ok(CustomerFields { stripe_customer_id: row.get(0)?, email: row.get(1)? }))
        .optional()?;
    Ok(found.unwrap_or_default())
}

// Pages start after `coalesce(after, '')`: every id is longer than '', and the comparison
// stays a range on the index.

/// Rows of (a customer's columns..., metric, value) grouped by customer, in row order: a
/// customer without counters in the period has one row with a NULL metric.
fn grouped<C: Clone>(
    rows: impl Iterator<Item = rusqlite::Result<(i64, C, Option<String>, Option<i64>)>>,
) -> Result<Vec<CustomerCounters<C>>, StoreError> {
    let mut customers: Vec<(i64, CustomerCounters<C>)> = Vec::new();
    for row in rows {
        let (pk, customer, metric, value) = row?;
        if customers.last().is_none_or(|(last, _)| *last != pk) {
            customers.push((pk, (customer, Vec::new())));
        }
        if let (Some(metric), Some(value), Some((_, (_, counters)))) = (metric, value, customers.last_mut()) {
            counters.push((metric, to_u64(value)));
        }
    }
    Ok(customers.into_iter().map(|(_, customer)| customer).collect())
}

fn billing_accounts(
    connection: &Connection,
    period: Period,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<CustomerCounters<AccountRecord>>, StoreError> {
    let mut statement = connection.prepare_cached(
        "WITH page AS (SELECT id, account_id, plan, created_at FROM accounts
                       WHERE account_id > coalesce(?1, '') ORDER BY account_id LIMIT ?2)
         SELECT page.id, page.account_id, page.plan, page.created_at, c.metric, c.value
         FROM page LEFT JOIN account_counters c ON c.account_pk = page.id AND c.period = ?3
         ORDER BY page.account_id, c.metric",
    )?;
    let rows = statement.query_map(params![after, limit, period.to_string()], |row| {
        let account =
            AccountRecord { pk: row.get(0)?, account_id: row.get(1)?, plan: row.get(2)?, created_at_ms: row.get(3)? };
        Ok((account.pk, account, row.get(4)?, row.get(5)?))
    })?;
    grouped(rows)
}

fn billing_users(
    connection: &Connection,
    period: Period,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<CustomerCounters<UserRecord>>, StoreError> {
    let mut statement = connection.prepare_cached(
        "WITH page AS (SELECT id, uuid, user_id, plan, created_at, account_pk FROM users
                       WHERE user_id > coalesce(?1, '') AND account_pk IS NULL ORDER BY user_id LIMIT ?2)
         SELECT page.id, page.uuid, page.user_id, page.plan, page.created_at, page.account_pk, c.metric, c.value
         FROM page LEFT JOIN usage_counters c ON c.user_pk = page.id AND c.period = ?3
         ORDER BY page.user_id, c.metric",
    )?;
    let rows = statement.query_map(params![after, limit, period.to_string()], |row| {
        let user = user_row(row)?;
        Ok((user.pk, user, row.get(6)?, row.get(7)?))
    })?;
    grouped(rows)
}

fn closing_row(row: &Row<'_>) -> rusqlite::Result<ClosingRecord> {
    Ok(ClosingRecord {
        period: row.get(0)?,
        currency: row.get(1)?,
        metrics: row.get(2)?,
        cursor_kind: row.get(3)?,
        cursor_id: row.get(4)?,
        started_at_ms: row.get(5)?,
        closed_at_ms: row.get(6)?,
    })
}

fn find_closing(connection: &Connection, period: Period) -> Result<Option<ClosingRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT period, currency, metrics, cursor_kind, cursor_id, started_at, closed_at
         FROM billing_closings WHERE period = ?1",
    )?;
    Ok(statement.query_row([period.to_string()], closing_row).optional()?)
}

fn statement_lines(
    connection: &Connection,
    period: Period,
    after: Option<CustomerKey<'_>>,
    limit: u32,
) -> Result<Vec<StatementLine>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT l.customer_kind, l.customer_id, l.line, coalesce(u.stripe_customer_id, a.stripe_customer_id)
         FROM billing_lines l
         LEFT JOIN users u ON l.customer_kind = 'user' AND u.user_id = l.customer_id
         LEFT JOIN accounts a ON l.customer_kind = 'account' AND a.account_id = l.customer_id
         WHERE l.period = ?1 AND (l.customer_kind, l.customer_id) > (coalesce(?2, ''), coalesce(?3, ''))
         ORDER BY l.customer_kind, l.customer_id LIMIT ?4",
    )?;
    let (kind, id) = after.map_or((None, None), |after| (Some(after.kind), Some(after.id)));
    let rows = statement.query_map(params![period.to_string(), kind, id, limit], |row| {
        Ok(StatementLine {
            customer_kind: row.get(0)?,
            customer_id: row.get(1)?,
            line: row.get(2)?,
            stripe_customer_id: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

macro_rules! impl_billing_read {
    ($type:ty) => {
        impl BillingRead for $type {
            fn customer_fields(&self, customer: CustomerKey<'_>) -> Result<CustomerFields, StoreError> {
                customer_fields(self.0, customer)
            }
            fn billing_accounts(
                &self,
                period: Period,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<CustomerCounters<AccountRecord>>, StoreError> {
                billing_accounts(self.0, period, after, limit)
            }
            fn billing_users(
                &self,
                period: Period,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<CustomerCounters<UserRecord>>, StoreError> {
                billing_users(self.0, period, after, limit)
            }
            fn find_closing(&self, period: Period) -> Result<Option<ClosingRecord>, StoreError> {
                find_closing(self.0, period)
            }
            fn statement_lines(
                &self,
                period: Period,
                after: Option<CustomerKey<'_>>,
                limit: u32,
            ) -> Result<Vec<StatementLine>, StoreError> {
                statement_lines(self.0, period, after, limit)
            }
        }
    };
}

impl_billing_read!(SqliteReader<'_>);
impl_billing_read!(SqliteTx<'_>);

impl BillingWrite for SqliteTx<'_> {
    fn set_customer_fields(
        &self,
        customer: CustomerKey<'_>,
        fields: &CustomerFields,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = match customer.kind {
            "account" => {
                "UPDATE accounts SET stripe_customer_id = ?2, email = ?3, updated_at = ?4 WHERE account_id = ?1"
            }
            _ => "UPDATE users SET stripe_customer_id = ?2, email = ?3, updated_at = ?4 WHERE user_id = ?1",
        };
        let updated = self.0.prepare_cached(sql)?.execute(params![
            customer.id,
            fields.stripe_customer_id,
            fields.email,
            now_ms
        ])?;
        Ok(updated == 1)
    }

    fn save_closing(&self, closing: &ClosingRecord) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO billing_closings (period, currency, metrics, cursor_kind, cursor_id, started_at, closed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (period) DO UPDATE SET cursor_kind = excluded.cursor_kind,
                     cursor_id = excluded.cursor_id, closed_at = excluded.closed_at",
            )?
            .execute(params![
                closing.period,
                closing.currency,
                closing.metrics,
                closing.cursor_kind,
                closing.cursor_id,
                closing.started_at_ms,
                closing.closed_at_ms
            ])?;
        Ok(())
    }

    fn add_statement_line(&self, period: Period, customer: CustomerKey<'_>, line: &str) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO billing_lines (period, customer_kind, customer_id, line) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![period.to_string(), customer.kind, customer.id, line])?;
        Ok(())
    }

    fn redact_statement_user(&self, user_id: &str, replacement: &str) -> Result<u64, StoreError> {
        let renamed = self
            .0
            .prepare_cached(
                "UPDATE billing_lines SET customer_id = ?2 WHERE customer_kind = 'user' AND customer_id = ?1",
            )?
            .execute(params![user_id, replacement])?;
        Ok(renamed as u64)
    }
}
