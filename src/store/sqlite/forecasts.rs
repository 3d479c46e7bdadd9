//! SQLite SQL for forecasts: the `ForecastRead` and `ForecastWrite` ports.

use super::accounts::account_row;
use super::usage::user_row;
use super::{SqliteReader, SqliteTx, to_u64};
use crate::domain::period::Period;
use crate::domain::ports::{
    AccountRecord, CounterOwner, DayRecord, ForecastRead, ForecastRecord, ForecastWrite, StoreError, UserRecord,
    as_stored_integer,
};
use rusqlite::{Connection, OptionalExtension, params};

fn parse_period(text: &str) -> Result<Period, StoreError> {
    text.parse().map_err(|_| StoreError::backend(format!("a stored period is {text:?}")))
}

fn usage_days(
    connection: &Connection,
    owner: CounterOwner,
    metric: &str,
    oldest: Period,
) -> Result<Vec<DayRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT day, period, cumulative FROM usage_days
         WHERE owner_kind = ?1 AND owner_pk = ?2 AND metric = ?3 AND period >= ?4 ORDER BY day",
    )?;
    let rows = statement.query_map(params![owner.kind(), owner.pk(), metric, oldest.to_string()], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
    })?;
    let mut days = Vec::new();
    for row in rows {
        let (day, period, cumulative) = row?;
        days.push(DayRecord { day, period: parse_period(&period)?, cumulative: to_u64(cumulative) });
    }
    Ok(days)
}

fn solo_users_with_usage(
    connection: &Connection,
    period: Period,
    after_pk: i64,
    limit: u32,
) -> Result<Vec<UserRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT u.id, u.uuid, u.user_id, u.plan, u.created_at, u.account_pk FROM users u
         WHERE u.id > ?2 AND u.account_pk IS NULL
           AND EXISTS (SELECT 1 FROM usage_counters c WHERE c.user_pk = u.id AND c.period = ?1)
         ORDER BY u.id LIMIT ?3",
    )?;
    let rows = statement.query_map(params![period.to_string(), after_pk, limit], user_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn accounts_with_usage(
    connection: &Connection,
    period: Period,
    after_pk: i64,
    limit: u32,
) -> Result<Vec<AccountRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT a.id, a.account_id, a.plan, a.created_at FROM accounts a
         WHERE a.id > ?2
           AND EXISTS (SELECT 1 FROM account_counters c WHERE c.account_pk = a.id AND c.period = ?1)
         ORDER BY a.id LIMIT ?3",
    )?;
    let rows = statement.query_map(params![period.to_string(), after_pk, limit], account_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn forecasts(connection: &Connection, period: Period, metric: Option<&str>) -> Result<Vec<ForecastRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT owner_kind, owner_pk, customer_id, plan, metric, used, limit_value, enforcement, projected, low, high,
                exhausted_at, method, computed_at
         FROM forecasts WHERE period = ?1 AND (?2 IS NULL OR metric = ?2)
         ORDER BY exhausted_at IS NULL, exhausted_at, owner_kind, customer_id, metric",
    )?;
    let rows = statement.query_map(params![period.to_string(), metric], |row| {
        let (kind, pk): (String, i64) = (row.get(0)?, row.get(1)?);
        let owner = if kind == "account" { CounterOwner::Account(pk) } else { CounterOwner::User(pk) };
        Ok(ForecastRecord {
            owner,
            customer_id: row.get(2)?,
            plan: row.get(3)?,
            metric: row.get(4)?,
            period,
            used: to_u64(row.get(5)?),
            limit: row.get::<_, Option<i64>>(6)?.map(to_u64),
            enforcement: row.get(7)?,
            projected: to_u64(row.get(8)?),
            low: to_u64(row.get(9)?),
            high: to_u64(row.get(10)?),
            exhausted_at_ms: row.get(11)?,
            method: row.get(12)?,
            computed_at_ms: row.get(13)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn job_mark(connection: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    let mut statement = connection.prepare_cached("SELECT at FROM job_marks WHERE name = ?1")?;
    Ok(statement.query_row([name], |row| row.get(0)).optional()?)
}

fn max_owner_pk(connection: &Connection, kind: &str) -> Result<i64, StoreError> {
    let sql = match kind {
        "account" => "SELECT coalesce(max(id), 0) FROM accounts",
        _ => "SELECT coalesce(max(id), 0) FROM users",
    };
    Ok(connection.prepare_cached(sql)?.query_row([], |row| row.get(0))?)
}

macro_rules! impl_forecast_read {
    ($type:ty) => {
        impl ForecastRead for $type {
            fn usage_days(
                &self,
                owner: CounterOwner,
                metric: &str,
                oldest: Period,
            ) -> Result<Vec<DayRecord>, StoreError> {
                usage_days(self.0, owner, metric, oldest)
            }
            fn solo_users_with_usage(
                &self,
                period: Period,
                after_pk: i64,
                limit: u32,
            ) -> Result<Vec<UserRecord>, StoreError> {
                solo_users_with_usage(self.0, period, after_pk, limit)
            }
            fn accounts_with_usage(
                &self,
                period: Period,
                after_pk: i64,
                limit: u32,
            ) -> Result<Vec<AccountRecord>, StoreError> {
                accounts_with_usage(self.0, period, after_pk, limit)
            }
            fn forecasts(&self, period: Period, metric: Option<&str>) -> Result<Vec<ForecastRecord>, StoreError> {
                forecasts(self.0, period, metric)
            }
            fn job_mark(&self, name: &str) -> Result<Option<i64>, StoreError> {
                job_mark(self.0, name)
            }
            fn max_owner_pk(&self, kind: &str) -> Result<i64, StoreError> {
                max_owner_pk(self.0, kind)
            }
        }
    };
}

impl_forecast_read!(SqliteReader<'_>);
impl_forecast_read!(SqliteTx<'_>);

impl ForecastWrite for SqliteTx<'_> {
    fn snapshot_days(
        &self,
        kind: &str,
        period: Period,
        day: &str,
        since_ms: i64,
        (first, last): (i64, i64),
    ) -> Result<u64, StoreError> {
        let sql = match kind {
            "account" => {
                "INSERT INTO usage_days (owner_kind, owner_pk, metric, day, period, cumulative)
                 SELECT 'account', account_pk, metric, ?2, period, value FROM account_counters
                 WHERE account_pk BETWEEN ?4 AND ?5 AND period = ?1 AND updated_at >= ?3
                 ON CONFLICT (owner_kind, owner_pk, metric, day) DO UPDATE SET cumulative = excluded.cumulative"
            }
            _ => {
                "INSERT INTO usage_days (owner_kind, owner_pk, metric, day, period, cumulative)
                 SELECT 'user', user_pk, metric, ?2, period, value FROM usage_counters
                 WHERE user_pk BETWEEN ?4 AND ?5 AND period = ?1 AND updated_at >= ?3
                 ON CONFLICT (owner_kind, owner_pk, metric, day) DO UPDATE SET cumulative = excluded.cumulative"
            }
        };
        let copied = self.0.prepare_cached(sql)?.execute(params![period.to_string(), day, since_ms, first, last])?;
        Ok(copied as u64)
    }

    fn set_job_mark(&self, name: &str, at_ms: i64) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO job_marks (name, at) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET at = ?2",
            )?
            .execute(params![name, at_ms])?;
        Ok(())
    }

    fn save_forecast(&self, forecast: &ForecastRecord) -> Result<(), StoreError> {
        let mut statement = self.0.prepare_cached(
            "INSERT INTO forecasts (owner_kind, owner_pk, customer_id, plan, metric, period, used, limit_value,
                                    enforcement, projected, low, high, exhausted_at, method, computed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (owner_kind, owner_pk, metric, period) DO UPDATE SET
                 customer_id = ?3, plan = ?4, used = ?7, limit_value = ?8, enforcement = ?9, projected = ?10,
                 low = ?11, high = ?12, exhausted_at = ?13, method = ?14, computed_at = ?15",
        )?;
        statement.execute(params![
            forecast.owner.kind(),
            forecast.owner.pk(),
            forecast.customer_id,
            forecast.plan,
            forecast.metric,
            forecast.period.to_string(),
            as_stored_integer(forecast.used),
            forecast.limit.map(as_stored_integer),
            forecast.enforcement,
            as_stored_integer(forecast.projected),
            as_stored_integer(forecast.low),
            as_stored_integer(forecast.high),
            forecast.exhausted_at_ms,
            forecast.method,
            forecast.computed_at_ms,
        ])?;
        Ok(())
    }

    fn prune_forecast_data(&self, oldest_kept: Period, limit: u32) -> Result<u64, StoreError> {
        let oldest = oldest_kept.to_string();
        let days = self
            .0
            .prepare_cached(
                "DELETE FROM usage_days WHERE (owner_kind, owner_pk, metric, day) IN
                 (SELECT owner_kind, owner_pk, metric, day FROM usage_days WHERE period < ?1 LIMIT ?2)",
            )?
            .execute(params![oldest, limit])?;
        let forecasts = self
            .0
            .prepare_cached(
                "DELETE FROM forecasts WHERE (owner_kind, owner_pk, metric, period) IN
                 (SELECT owner_kind, owner_pk, metric, period FROM forecasts WHERE period < ?1 LIMIT ?2)",
            )?
            .execute(params![oldest, limit])?;
        Ok((days + forecasts) as u64)
    }

    fn delete_forecast_data(&self, owner: CounterOwner) -> Result<(), StoreError> {
        for sql in [
            "DELETE FROM usage_days WHERE owner_kind = ?1 AND owner_pk = ?2",
            "DELETE FROM forecasts WHERE owner_kind = ?1 AND owner_pk = ?2",
        ] {
            self.0.prepare_cached(sql)?.execute(params![owner.kind(), owner.pk()])?;
        }
        Ok(())
    }
}
