//! PostgreSQL SQL for forecasts: the `ForecastRead` and `ForecastWrite` ports.

use super::PgDb;
use super::accounts::account_row;
use super::usage::user_row;
use crate::domain::period::Period;
use crate::domain::ports::{
    AccountRecord, CounterOwner, DayRecord, ForecastRead, ForecastRecord, ForecastWrite, StoreError, UserRecord,
    as_stored_integer, from_stored_integer,
};

type Result<T> = std::result::Result<T, StoreError>;

fn parse_period(text: &str) -> Result<Period> {
    text.parse().map_err(|_| StoreError::backend(format!("a stored period is {text:?}")))
}

impl ForecastRead for PgDb<'_> {
    fn usage_days(&self, owner: CounterOwner, metric: &str, oldest: Period) -> Result<Vec<DayRecord>> {
        let rows = self.conn().query(
            "SELECT day, period, cumulative FROM usage_days
             WHERE owner_kind = $1 AND owner_pk = $2 AND metric = $3 AND period >= $4 ORDER BY day",
            &[&owner.kind(), &owner.pk(), &metric, &oldest.to_string()],
        )?;
        rows.iter()
            .map(|row| {
                let period: String = row.get(1);
                Ok(DayRecord {
                    day: row.get(0),
                    period: parse_period(&period)?,
                    cumulative: from_stored_integer(row.get(2)),
                })
            })
            .collect()
    }

    fn solo_users_with_usage(&self, period: Period, after_pk: i64, limit: u32) -> Result<Vec<UserRecord>> {
        let rows = self.conn().query(
            "SELECT u.id, u.uuid, u.user_id, u.plan, u.created_at, u.account_pk FROM users u
             WHERE u.id > $2 AND u.account_pk IS NULL
               AND EXISTS (SELECT 1 FROM usage_counters c WHERE c.user_pk = u.id AND c.period = $1)
             ORDER BY u.id LIMIT $3",
            &[&period.to_string(), &after_pk, &i64::from(limit)],
        )?;
        Ok(rows.iter().map(user_row).collect())
    }

    fn accounts_with_usage(&self, period: Period, after_pk: i64, limit: u32) -> Result<Vec<AccountRecord>> {
        let rows = self.conn().query(
            "SELECT a.id, a.account_id, a.plan, a.created_at FROM accounts a
             WHERE a.id > $2
               AND EXISTS (SELECT 1 FROM account_counters c WHERE c.account_pk = a.id AND c.period = $1)
             ORDER BY a.id LIMIT $3",
            &[&period.to_string(), &after_pk, &i64::from(limit)],
        )?;
        Ok(rows.iter().map(account_row).collect())
    }

    fn forecasts(&self, period: Period, metric: Option<&str>) -> Result<Vec<ForecastRecord>> {
        let rows = self.conn().query(
            "SELECT owner_kind, owner_pk, customer_id, plan, metric, used, limit_value, enforcement, projected, low,
                    high, exhausted_at, method, computed_at
             FROM forecasts WHERE period = $1 AND ($2::text IS NULL OR metric = $2)
             ORDER BY exhausted_at IS NULL, exhausted_at, owner_kind, customer_id, metric",
            &[&period.to_string(), &metric],
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                let (kind, pk): (String, i64) = (row.get(0), row.get(1));
                let owner = if kind == "account" { CounterOwner::Account(pk) } else { CounterOwner::User(pk) };
                ForecastRecord {
                    owner,
                    customer_id: row.get(2),
                    plan: row.get(3),
                    metric: row.get(4),
                    period,
                    used: from_stored_integer(row.get(5)),
                    limit: row.get::<_, Option<i64>>(6).map(from_stored_integer),
                    enforcement: row.get(7),
                    projected: from_stored_integer(row.get(8)),
                    low: from_stored_integer(row.get(9)),
                    high: from_stored_integer(row.get(10)),
                    exhausted_at_ms: row.get(11),
                    method: row.get(12),
                    computed_at_ms: row.get(13),
                }
            })
            .collect())
    }

    fn job_mark(&self, name: &str) -> Result<Option<i64>> {
        let row = self.conn().query_opt("SELECT at FROM job_marks WHERE name = $1", &[&name])?;
        Ok(row.map(|row| row.get(0)))
    }

    fn max_owner_pk(&self, kind: &str) -> Result<i64> {
        let sql = match kind {
            "account" => "SELECT coalesce(max(id), 0)::bigint FROM accounts",
            _ => "SELECT coalesce(max(id), 0)::bigint FROM users",
        };
        let row = self.conn().query_opt(sql, &[])?;
        Ok(row.map_or(0, |row| row.get(0)))
    }
}

impl ForecastWrite for PgDb<'_> {
    fn snapshot_days(
        &self,
        kind: &str,
        period: Period,
        day: &str,
        since_ms: i64,
        (first, last): (i64, i64),
    ) -> Result<u64> {
        let sql = match kind {
            "account" => {
                "INSERT INTO usage_days (owner_kind, owner_pk, metric, day, period, cumulative)
                 SELECT 'account', account_pk, metric, $2, period, value FROM account_counters
                 WHERE account_pk BETWEEN $4 AND $5 AND period = $1 AND updated_at >= $3
                 ON CONFLICT (owner_kind, owner_pk, metric, day) DO UPDATE SET cumulative = EXCLUDED.cumulative"
            }
            _ => {
                "INSERT INTO usage_days (owner_kind, owner_pk, metric, day, period, cumulative)
                 SELECT 'user', user_pk, metric, $2, period, value FROM usage_counters
                 WHERE user_pk BETWEEN $4 AND $5 AND period = $1 AND updated_at >= $3
                 ON CONFLICT (owner_kind, owner_pk, metric, day) DO UPDATE SET cumulative = EXCLUDED.cumulative"
            }
        };
        self.conn().execute(sql, &[&period.to_string(), &day, &since_ms, &first, &last])
    }

    fn set_job_mark(&self, name: &str, at_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO job_marks (name, at) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET at = $2",
            &[&name, &at_ms],
        )?;
        Ok(())
    }

    fn save_forecast(&self, forecast: &ForecastRecord) -> Result<()> {
        self.conn().execute(
            "INSERT INTO forecasts (owner_kind, owner_pk, customer_id, plan, metric, period, used, limit_value,
                                    enforcement, projected, low, high, exhausted_at, method, computed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (owner_kind, owner_pk, metric, period) DO UPDATE SET
                 customer_id = $3, plan = $4, used = $7, limit_value = $8, enforcement = $9, projected = $10,
                 low = $11, high = $12, exhausted_at = $13, method = $14, computed_at = $15",
            &[
                &forecast.owner.kind(),
                &forecast.owner.pk(),
                &forecast.customer_id,
                &forecast.plan,
                &forecast.metric,
                &forecast.period.to_string(),
                &as_stored_integer(forecast.used),
                &forecast.limit.map(as_stored_integer),
                &forecast.enforcement,
                &as_stored_integer(forecast.projected),
                &as_stored_integer(forecast.low),
                &as_stored_integer(forecast.high),
                &forecast.exhausted_at_ms,
                &forecast.method,
                &forecast.computed_at_ms,
            ],
        )?;
        Ok(())
    }

    fn prune_forecast_data(&self, oldest_kept: Period, limit: u32) -> Result<u64> {
        let (oldest, limit) = (oldest_kept.to_string(), i64::from(limit));
        let days = self.conn().execute(
            "DELETE FROM usage_days WHERE ctid IN (SELECT ctid FROM usage_days WHERE period < $1 LIMIT $2)",
            &[&oldest, &limit],
        )?;
        let forecasts = self.conn().execute(
            "DELETE FROM forecasts WHERE ctid IN (SELECT ctid FROM forecasts WHERE period < $1 LIMIT $2)",
            &[&oldest, &limit],
        )?;
        Ok(days + forecasts)
    }

    fn delete_forecast_data(&self, owner: CounterOwner) -> Result<()> {
        self.conn()
            .execute("DELETE FROM usage_days WHERE owner_kind = $1 AND owner_pk = $2", &[&owner.kind(), &owner.pk()])?;
        self.conn()
            .execute("DELETE FROM forecasts WHERE owner_kind = $1 AND owner_pk = $2", &[&owner.kind(), &owner.pk()])?;
        Ok(())
    }
}
