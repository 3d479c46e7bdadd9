//! SQLite SQL for the admin views and actions: rollup reads, top users, history, the audit
//! log, reset, cleanup, erasure and export. Every write keeps the rollups in step.

use super::{SqliteReader, SqliteTx, accounts, rollup, terms, to_u64};
use crate::domain::period::Period;
use crate::domain::ports::{
    AccountRecord, AdminRead, AdminWrite, AuditRecord, CounterRecord, CustomerKey, ErasureRecord, GrantRecord,
    OverrideRecord, PlanCounts, StoreError, UserExport, UserRecord,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn audit_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.get(0)?,
        at_ms: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        target: row.get(4)?,
        details: row.get(5)?,
    })
}

fn period_totals(connection: &Connection, period: Period) -> Result<Vec<(String, u64)>, StoreError> {
    let mut statement = connection.prepare_cached("SELECT metric, total FROM period_totals WHERE period = ?1")?;
    let rows = statement.query_map([period.to_string()], |row| Ok((row.get(0)?, to_u64(row.get(1)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn totals_by_month(
    connection: &Connection,
    oldest: Period,
    newest: Period,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    // Periods are `YYYY-MM` text, so the range is a range of the primary key (period, metric).
    let mut statement =
        connection.prepare_cached("SELECT period, metric, total FROM period_totals WHERE period BETWEEN ?1 AND ?2")?;
    let rows = statement.query_map([oldest.to_string(), newest.to_string()], |row| {
        Ok((row.get(0)?, row.get(1)?, to_u64(row.get(2)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn active_users(connection: &Connection, period: Period) -> Result<u64, StoreError> {
    let mut statement = connection.prepare_cached("SELECT active_users FROM period_users WHERE period = ?1")?;
    let count: Option<i64> = statement.query_row([period.to_string()], |row| row.get(0)).optional()?;
    Ok(to_u64(count.unwrap_or(0)))
}

fn plan_users(connection: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut statement = connection.prepare_cached("SELECT plan, users FROM plan_users WHERE users > 0")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, to_u64(row.get(1)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn top_users(
    connection: &Connection,
    period: Period,
    metric: &str,
    limit: u32,
) -> Result<Vec<(UserRecord, u64)>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT u.id, u.uuid, u.user_id, u.plan, u.created_at, u.account_pk, c.value
         FROM usage_counters c JOIN users u ON u.id = c.user_pk
         WHERE c.period = ?1 AND c.metric = ?2
         ORDER BY c.value DESC, c.user_pk DESC LIMIT ?3",
    )?;
    let rows = statement.query_map(params![period.to_string(), metric, limit], |row| {
        Ok((
            UserRecord {
                pk: row.get(0)?,
                uuid: row.get(1)?,
                user_id: row.get(2)?,
                plan: row.get(3)?,
                created_at_ms: row.get(4)?,
                account_pk: row.get(5)?,
            },
            to_u64(row.get(6)?),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn counters_since(
    connection: &Connection,
    user_pk: i64,
    oldest: Period,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT period, metric, value FROM usage_counters WHERE user_pk = ?1 AND period >= ?2 ORDER BY period DESC",
    )?;
    let rows = statement
        .query_map(params![user_pk, oldest.to_string()], |row| Ok((row.get(0)?, row.get(1)?, to_u64(row.get(2)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn audit_page(connection: &Connection, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, at, actor, action, target, details FROM audit_log WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![before.unwrap_or(i64::MAX), limit], audit_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn export_user(connection: &Connection, user: &UserRecord) -> Result<UserExport, StoreError> {
    let updated_at_ms: i64 = connection
        .prepare_cached("SELECT updated_at FROM users WHERE id = ?1")?
        .query_row([user.pk], |row| row.get(0))?;
    let mut statement = connection.prepare_cached(
        "SELECT period, metric, value, created_at, updated_at FROM usage_counters WHERE user_pk = ?1
         ORDER BY period DESC, metric",
    )?;
    let counters = statement
        .query_map([user.pk], |row| {
            Ok(CounterRecord {
                period: row.get(0)?,
                metric: row.get(1)?,
                value: to_u64(row.get(2)?),
                created_at_ms: row.get(3)?,
                updated_at_ms: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut statement =
        connection.prepare_cached("SELECT feature, used_at FROM feature_uses WHERE user_pk = ?1 ORDER BY used_at")?;
    let feature_uses =
        statement.query_map([user.pk], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut statement = connection.prepare_cached(
        "SELECT key, status, created_at FROM idempotency_keys WHERE user_id = ?1 ORDER BY created_at",
    )?;
    let idempotency_keys = statement
        .query_map([&user.user_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut statement = connection
        .prepare_cached("SELECT id, at, actor, action, target, details FROM audit_log WHERE target = ?1 ORDER BY id")?;
    let audit = statement.query_map([&user.user_id], audit_row)?.collect::<Result<_, _>>()?;
    let mut statement = connection
        .prepare_cached("SELECT period, metric, alert FROM usage_alerts WHERE user_pk = ?1 ORDER BY period")?;
    let alerts =
        statement.query_map([user.pk], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect::<Result<_, _>>()?;
    let refusals = super::usage::refusals(connection, &user.user_id, None)?;
    Ok(UserExport { updated_at_ms, counters, feature_uses, idempotency_keys, audit, alerts, refusals })
}

fn pending_erasures(connection: &Connection) -> Result<Vec<ErasureRecord>, StoreError> {
    let mut statement =
        connection.prepare_cached("SELECT user_id, hash, actor, started_at FROM erasures ORDER BY started_at")?;
    let rows = statement.query_map([], |row| {
        Ok(ErasureRecord { user_id: row.get(0)?, hash: row.get(1)?, actor: row.get(2)?, started_at_ms: row.get(3)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

macro_rules! impl_admin_read {
    ($type:ty) => {
        impl AdminRead for $type {
            fn period_totals(&self, period: Period) -> Result<Vec<(String, u64)>, StoreError> {
                period_totals(self.0, period)
            }
            fn totals_by_month(
                &self,
                oldest: Period,
                newest: Period,
            ) -> Result<Vec<(String, String, u64)>, StoreError> {
                totals_by_month(self.0, oldest, newest)
            }
            fn active_users(&self, period: Period) -> Result<u64, StoreError> {
                active_users(self.0, period)
            }
            fn plan_users(&self) -> Result<Vec<(String, u64)>, StoreError> {
                plan_users(self.0)
            }
            fn top_users(
                &self,
                period: Period,
                metric: &str,
                limit: u32,
            ) -> Result<Vec<(UserRecord, u64)>, StoreError> {
                top_users(self.0, period, metric, limit)
            }
            fn counters_since(&self, user_pk: i64, oldest: Period) -> Result<Vec<(String, String, u64)>, StoreError> {
                counters_since(self.0, user_pk, oldest)
            }
            fn accounts_page(&self, limit: u32, before: Option<&str>) -> Result<Vec<(AccountRecord, u64)>, StoreError> {
                accounts::accounts_page(self.0, limit, before)
            }
            fn account_plans(&self) -> Result<(PlanCounts, PlanCounts), StoreError> {
                accounts::account_plans(self.0)
            }
            fn account_counters_since(
                &self,
                account_pk: i64,
                oldest: Period,
            ) -> Result<Vec<(String, String, u64)>, StoreError> {
                accounts::counters_since(self.0, account_pk, oldest)
            }
            fn audit_page(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>, StoreError> {
                audit_page(self.0, limit, before)
            }
            fn export_user(&self, user: &UserRecord) -> Result<UserExport, StoreError> {
                export_user(self.0, user)
            }
            fn pending_erasures(&self) -> Result<Vec<ErasureRecord>, StoreError> {
                pending_erasures(self.0)
            }
        }
    };
}

impl_admin_read!(SqliteReader<'_>);
impl_admin_read!(SqliteTx<'_>);

impl AdminWrite for SqliteTx<'_> {
    fn reset_counters(
        &self,
        user_pk: i64,
        period: Period,
        metric: Option<&str>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let period_text = period.to_string();
        let before: Vec<(String, u64)> = self
            .0
            .prepare_cached(
                "SELECT metric, value FROM usage_counters
                 WHERE user_pk = ?1 AND period = ?2 AND (?3 IS NULL OR metric = ?3)",
            )?
            .query_map(params![user_pk, period_text, metric], |row| Ok((row.get(0)?, to_u64(row.get(1)?))))?
            .collect::<Result<_, _>>()?;
        self.0
            .prepare_cached(
                "DELETE FROM usage_counters WHERE user_pk = ?1 AND period = ?2 AND (?3 IS NULL OR metric = ?3)",
            )?
            .execute(params![user_pk, period_text, metric])?;
        for (metric, value) in &before {
            rollup::add_total(self.0, period, metric, -(*value as i64))?;
        }
        let still_active = self
            .0
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM usage_counters WHERE user_pk = ?1 AND period = ?2)")?
            .query_row(params![user_pk, period_text], |row| row.get::<_, bool>(0))?;
        if !before.is_empty() && !still_active {
            rollup::add_active_users(self.0, &period_text, -1)?;
        }
        Ok(before)
    }

    fn delete_counters_before(&self, oldest_kept: Period, limit: u32) -> Result<u64, StoreError> {
        let deleted = self
            .0
            .prepare_cached(
                "DELETE FROM usage_counters WHERE (user_pk, period, metric) IN (
                     SELECT user_pk, period, metric FROM usage_counters WHERE period < ?1 LIMIT ?2)",
            )?
            .execute(params![oldest_kept.to_string(), limit])?;
        Ok(deleted as u64)
    }

    fn delete_rollups_before(&self, oldest_kept: Period) -> Result<(), StoreError> {
        let oldest = oldest_kept.to_string();
        self.0.prepare_cached("DELETE FROM period_totals WHERE period < ?1")?.execute([&oldest])?;
        self.0.prepare_cached("DELETE FROM period_users WHERE period < ?1")?.execute([&oldest])?;
        Ok(())
    }

    fn reset_account_counters(
        &self,
        account_pk: i64,
        period: Period,
        metric: Option<&str>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        accounts::reset_counters(self.0, account_pk, period, metric)
    }

    fn put_override(&self, customer: CustomerKey<'_>, record: &OverrideRecord) -> Result<(), StoreError> {
        terms::put_override(self.0, customer, record)
    }

    fn delete_override(&self, customer: CustomerKey<'_>) -> Result<bool, StoreError> {
        terms::delete_override(self.0, customer)
    }

    fn add_grant(&self, grant: &GrantRecord) -> Result<i64, StoreError> {
        terms::add_grant(self.0, grant)
    }

    fn delete_grant(&self, grant_id: i64) -> Result<Option<GrantRecord>, StoreError> {
        terms::delete_grant(self.0, grant_id)
    }

    fn delete_terms_of(&self, customer: CustomerKey<'_>) -> Result<u64, StoreError> {
        terms::delete_terms_of(self.0, customer)
    }

    fn delete_account(&self, account_pk: i64) -> Result<(), StoreError> {
        accounts::delete_account(self.0, account_pk)
    }

    fn delete_account_counters_before(&self, oldest_kept: Period, limit: u32) -> Result<u64, StoreError> {
        accounts::delete_counters_before(self.0, oldest_kept, limit)
    }

    fn prune_answers(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        let deleted = self
            .0
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE key IN (
                     SELECT key FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)",
            )?
            .execute(params![before_ms, limit])?;
        Ok(deleted as u64)
    }

    fn delete_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let counters: Vec<(String, String, i64)> = self
            .0
            .prepare_cached("SELECT period, metric, value FROM usage_counters WHERE user_pk = ?1")?
            .query_map([user.pk], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut periods: Vec<&str> = Vec::new();
        for (period, metric, value) in &counters {
            if let Ok(parsed) = period.parse::<Period>() {
                rollup::add_total(self.0, parsed, metric, -value)?;
            }
            if !periods.contains(&period.as_str()) {
                periods.push(period);
            }
        }
        for period in periods {
            rollup::add_active_users(self.0, period, -1)?;
        }
        rollup::add_plan_users(self.0, &user.plan, -1)?;
        // Counters, feature uses and alert marks go with the user (ON DELETE CASCADE).
        self.0.prepare_cached("DELETE FROM users WHERE id = ?1")?.execute([user.pk])?;
        Ok(())
    }

    fn delete_refusals_of(&self, user_id: &str) -> Result<u64, StoreError> {
        Ok(self.0.prepare_cached("DELETE FROM refusals WHERE user_id = ?1")?.execute([user_id])? as u64)
    }

    fn prune_refusals(&self, oldest_kept: Period, limit: u32) -> Result<u64, StoreError> {
        let deleted = self
            .0
            .prepare_cached(
                "DELETE FROM refusals WHERE (user_id, period, kind, subject) IN (
                     SELECT user_id, period, kind, subject FROM refusals WHERE period < ?1 LIMIT ?2)",
            )?
            .execute(params![oldest_kept.to_string(), limit])?;
        Ok(deleted as u64)
    }

    fn delete_answers_of(&self, user_id: &str, limit: u32) -> Result<u64, StoreError> {
        let deleted = self
            .0
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE key IN (
                     SELECT key FROM idempotency_keys WHERE user_id = ?1 LIMIT ?2)",
            )?
            .execute(params![user_id, limit])?;
        Ok(deleted as u64)
    }

    fn append_audit(
        &self,
        at_ms: i64,
        actor: &str,
        action: &str,
        target: Option<&str>,
        details: &str,
    ) -> Result<i64, StoreError> {
        let mut statement = self.0.prepare_cached(
            "INSERT INTO audit_log (at, actor, action, target, details) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )?;
        Ok(statement.query_row(params![at_ms, actor, action, target, details], |row| row.get(0))?)
    }

    fn start_erasure(&self, erasure: &ErasureRecord) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO erasures (user_id, hash, actor, started_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id) DO NOTHING",
            )?
            .execute(params![erasure.user_id, erasure.hash, erasure.actor, erasure.started_at_ms])?;
        Ok(())
    }

    fn finish_erasure(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self.0.prepare_cached("DELETE FROM erasures WHERE user_id = ?1")?.execute([user_id])? == 1)
    }

    fn claim_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        let claimed = self
            .0
            .prepare_cached(
                "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?4)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.holder = excluded.holder OR leases.until <= ?3",
            )?
            .execute(params![name, holder, now_ms, until_ms])?;
        Ok(claimed == 1)
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.0.prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")?.execute([name, holder])?;
        Ok(())
    }

    fn redact_audit_target(&self, target: &str, replacement: &str) -> Result<(), StoreError> {
        self.0.prepare_cached("UPDATE audit_log SET target = ?2 WHERE target = ?1")?.execute([target, replacement])?;
        Ok(())
    }
}
