//! PostgreSQL SQL for billing: a customer's Stripe id and email (columns of `users` and
//! `accounts`), the pages of customers a statement lists, and closed statements. A closing's
//! steps are serialized on the period (`serialize_on`) by the domain.

use super::PgDb;
use super::usage::user_row;
use crate::domain::period::Period;
use crate::domain::ports::{
    AccountRecord, BillingRead, BillingWrite, ClosingRecord, CustomerCounters, CustomerFields, CustomerKey,
    StatementLine, StoreError, UserRecord, from_stored_integer,
};
use postgres::Row;

type Result<T> = std::result::Result<T, StoreError>;

/// Rows of (a customer's columns..., metric, value) grouped by customer, in row order: a
/// customer without counters in the period has one row with a NULL metric. `metric_at` is the
/// metric's column; `pk` reads the customer's key.
fn grouped<C>(rows: &[Row], metric_at: usize, customer: impl Fn(&Row) -> (i64, C)) -> Vec<CustomerCounters<C>> {
    let mut customers: Vec<(i64, CustomerCounters<C>)> = Vec::new();
    for row in rows {
        let (pk, record) = customer(row);
        if customers.last().is_none_or(|(last, _)| *last != pk) {
            customers.push((pk, (record, Vec::new())));
        }
        let metric: Option<String> = row.get(metric_at);
        let value: Option<i64> = row.get(metric_at + 1);
        if let (Some(metric), Some(value), Some((_, (_, counters)))) = (metric, value, customers.last_mut()) {
            counters.push((metric, from_stored_integer(value)));
        }
    }
    customers.into_iter().map(|(_, customer)| customer).collect()
}

fn closing_row(row: &Row) -> ClosingRecord {
    ClosingRecord {
        period: row.get(0),
        currency: row.get(1),
        metrics: row.get(2),
        cursor_kind: row.get(3),
        cursor_id: row.get(4),
        started_at_ms: row.get(5),
        closed_at_ms: row.get(6),
    }
}

// Pages start after `coalesce(after, '')`: every id is longer than '', and the comparison
// stays a range on the index.
impl BillingRead for PgDb<'_> {
    fn customer_fields(&self, customer: CustomerKey<'_>) -> Result<CustomerFields> {
        let row = match customer.kind {
            "account" => self
                .conn()
                .query_opt("SELECT stripe_customer_id, email FROM accounts WHERE account_id = $1", &[&customer.id])?,
            _ => self
                .conn()
                .query_opt("SELECT stripe_customer_id, email FROM users WHERE user_id = $1", &[&customer.id])?,
        };
        Ok(row.map(|row| CustomerFields { stripe_customer_id: row.get(0), email: row.get(1) }).unwrap_or_default())
    }

    fn billing_accounts(
        &self,
        period: Period,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CustomerCounters<AccountRecord>>> {
        let rows = self.conn().query(
            "WITH page AS (SELECT id, account_id, plan, created_at FROM accounts
                           WHERE account_id > coalesce($1::text, '') ORDER BY account_id LIMIT $2)
             SELECT page.id, page.account_id, page.plan, page.created_at, c.metric, c.value
             FROM page LEFT JOIN account_counters c ON c.account_pk = page.id AND c.period = $3
             ORDER BY page.account_id, c.metric",
            &[&after, &i64::from(limit), &period.to_string()],
        )?;
        Ok(grouped(&rows, 4, |row| {
            let account =
                AccountRecord { pk: row.get(0), account_id: row.get(1), plan: row.get(2), created_at_ms: row.get(3) };
            (account.pk, account)
        }))
    }

    fn billing_users(
        &self,
        period: Period,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CustomerCounters<UserRecord>>> {
        let rows = self.conn().query(
            "WITH page AS (SELECT id, uuid, user_id, plan, created_at, account_pk FROM users
                           WHERE user_id > coalesce($1::text, '') AND account_pk IS NULL ORDER BY user_id LIMIT $2)
             SELECT page.id, page.uuid, page.user_id, page.plan, page.created_at, page.account_pk, c.metric, c.value
             FROM page LEFT JOIN usage_counters c ON c.user_pk = page.id AND c.period = $3
             ORDER BY page.user_id, c.metric",
            &[&after, &i64::from(limit), &period.to_string()],
        )?;
        Ok(grouped(&rows, 6, |row| {
            let user = user_row(row);
            (user.pk, user)
        }))
    }

    fn find_closing(&self, period: Period) -> Result<Option<ClosingRecord>> {
        let row = self.conn().query_opt(
            "SELECT period, currency, metrics, cursor_kind, cursor_id, started_at, closed_at
             FROM billing_closings WHERE period = $1",
            &[&period.to_string()],
        )?;
        Ok(row.as_ref().map(closing_row))
    }

    fn statement_lines(
        &self,
        period: Period,
        after: Option<CustomerKey<'_>>,
        limit: u32,
    ) -> Result<Vec<StatementLine>> {
        let (kind, id) = after.map_or((None, None), |after| (Some(after.kind), Some(after.id)));
        let rows = self.conn().query(
            "SELECT l.customer_kind, l.customer_id, l.line, coalesce(u.stripe_customer_id, a.stripe_customer_id)
             FROM billing_lines l
             LEFT JOIN users u ON l.customer_kind = 'user' AND u.user_id = l.customer_id
             LEFT JOIN accounts a ON l.customer_kind = 'account' AND a.account_id = l.customer_id
             WHERE l.period = $1 AND (l.customer_kind, l.customer_id) > (coalesce($2::text, ''), coalesce($3::text, ''))
             ORDER BY l.customer_kind, l.customer_id LIMIT $4",
            &[&period.to_string(), &kind, &id, &i64::from(limit)],
        )?;
        Ok(rows
            .iter()
            .map(|row| StatementLine {
                customer_kind: row.get(0),
                customer_id: row.get(1),
                line: row.get(2),
                stripe_customer_id: row.get(3),
            })
            .collect())
    }
}

impl BillingWrite for PgDb<'_> {
    fn set_customer_fields(&self, customer: CustomerKey<'_>, fields: &CustomerFields, now_ms: i64) -> Result<bool> {
        let params: [&(dyn postgres::types::ToSql + Sync); 4] =
            [&customer.id, &fields.stripe_customer_id, &fields.email, &now_ms];
        let updated = match customer.kind {
            "account" => self.conn().execute(
                "UPDATE accounts SET stripe_customer_id = $2, email = $3, updated_at = $4 WHERE account_id = $1",
                &params,
            )?,
            _ => self.conn().execute(
                "UPDATE users SET stripe_customer_id = $2, email = $3, updated_at = $4 WHERE user_id = $1",
                &params,
            )?,
        };
        Ok(updated == 1)
    }

    fn save_closing(&self, closing: &ClosingRecord) -> Result<()> {
        self.conn().execute(
            "INSERT INTO billing_closings (period, currency, metrics, cursor_kind, cursor_id, started_at, closed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (period) DO UPDATE SET cursor_kind = EXCLUDED.cursor_kind,
                 cursor_id = EXCLUDED.cursor_id, closed_at = EXCLUDED.closed_at",
            &[
                &closing.period,
                &closing.currency,
                &closing.metrics,
                &closing.cursor_kind,
                &closing.cursor_id,
                &closing.started_at_ms,
                &closing.closed_at_ms,
            ],
        )?;
        Ok(())
    }

    fn add_statement_line(&self, period: Period, customer: CustomerKey<'_>, line: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO billing_lines (period, customer_kind, customer_id, line) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&period.to_string(), &customer.kind, &customer.id, &line],
        )?;
        Ok(())
    }

    fn redact_statement_user(&self, user_id: &str, replacement: &str) -> Result<u64> {
        self.conn().execute(
            "UPDATE billing_lines SET customer_id = $2 WHERE customer_kind = 'user' AND customer_id = $1",
            &[&user_id, &replacement],
        )
    }
}
