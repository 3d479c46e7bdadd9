//! PostgreSQL SQL for the admin views and actions, and the rollups: running totals that
//! every change keeps in step, applied at commit in one global order (see `Rollups`).

use super::usage::user_row;
use super::{PgDb, Rollups, accounts, terms};
use crate::domain::period::Period;
use crate::domain::ports::{
    AccountRecord, AdminRead, AdminWrite, AuditRecord, CounterRecord, CustomerKey, ErasureRecord, GrantRecord,
    OverrideRecord, PlanCounts, StoreError, UserExport, UserRecord, from_stored_integer,
};
use postgres::Row;

type Result<T> = std::result::Result<T, StoreError>;

fn audit_row(row: &Row) -> AuditRecord {
    AuditRecord {
        id: row.get(0),
        at_ms: row.get(1),
        actor: row.get(2),
        action: row.get(3),
        target: row.get(4),
        details: row.get(5),
    }
}

/// Applies a transaction's rollup changes: totals, then active users, then plan users, each
/// in key order, so every transaction takes these row locks in the same order.
pub(super) fn apply_rollups(db: &PgDb<'_>, rollups: &Rollups) -> Result<()> {
    for ((period, metric), delta) in &rollups.totals {
        db.conn().execute(
            "INSERT INTO period_totals AS t (period, metric, total) VALUES ($1, $2, GREATEST($3::bigint, 0))
             ON CONFLICT (period, metric) DO UPDATE SET total = CASE
                 WHEN $3::bigint >= 0 AND t.total > 9223372036854775807 - $3::bigint THEN 9223372036854775807
                 ELSE GREATEST(t.total + $3::bigint, 0) END",
            &[period, metric, delta],
        )?;
    }
    for (period, delta) in rollups.active_users.iter().filter(|(_, delta)| **delta != 0) {
        db.conn().execute(
            "INSERT INTO period_users AS p (period, active_users) VALUES ($1, GREATEST($2::bigint, 0))
             ON CONFLICT (period) DO UPDATE SET active_users = GREATEST(p.active_users + $2::bigint, 0)",
            &[period, delta],
        )?;
    }
    for (plan, delta) in rollups.plan_users.iter().filter(|(_, delta)| **delta != 0) {
        db.conn().execute(
            "INSERT INTO plan_users AS p (plan, users) VALUES ($1, GREATEST($2::bigint, 0))
             ON CONFLICT (plan) DO UPDATE SET users = GREATEST(p.users + $2::bigint, 0)",
            &[plan, delta],
        )?;
    }
    Ok(())
}

impl AdminRead for PgDb<'_> {
    fn period_totals(&self, period: Period) -> Result<Vec<(String, u64)>> {
        let rows =
            self.conn().query("SELECT metric, total FROM period_totals WHERE period = $1", &[&period.to_string()])?;
        Ok(rows.iter().map(|row| (row.get(0), from_stored_integer(row.get(1)))).collect())
    }

    fn totals_by_month(&self, oldest: Period, newest: Period) -> Result<Vec<(String, String, u64)>> {
        // Periods are `YYYY-MM` text, so the range is a range of the primary key (period, metric).
        let rows = self.conn().query(
            "SELECT period, metric, total FROM period_totals WHERE period BETWEEN $1 AND $2",
            &[&oldest.to_string(), &newest.to_string()],
        )?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1), from_stored_integer(row.get(2)))).collect())
    }

    fn active_users(&self, period: Period) -> Result<u64> {
        let row =
            self.conn().query_opt("SELECT active_users FROM period_users WHERE period = $1", &[&period.to_string()])?;
        Ok(row.map_or(0, |row| from_stored_integer(row.get(0))))
    }

    fn plan_users(&self) -> Result<Vec<(String, u64)>> {
        let rows = self.conn().query("SELECT plan, users FROM plan_users WHERE users > 0", &[])?;
        Ok(rows.iter().map(|row| (row.get(0), from_stored_integer(row.get(1)))).collect())
    }

    fn top_users(&self, period: Period, metric: &str, limit: u32) -> Result<Vec<(UserRecord, u64)>> {
        let rows = self.conn().query(
            "SELECT u.id, u.uuid, u.user_id, u.plan, u.created_at, u.account_pk, c.value
             FROM usage_counters c JOIN users u ON u.id = c.user_pk
             WHERE c.period = $1 AND c.metric = $2
             ORDER BY c.value DESC, c.user_pk DESC LIMIT $3",
            &[&period.to_string(), &metric, &i64::from(limit)],
        )?;
        Ok(rows.iter().map(|row| (user_row(row), from_stored_integer(row.get(6)))).collect())
    }

    fn counters_since(&self, user_pk: i64, oldest: Period) -> Result<Vec<(String, String, u64)>> {
        let rows = self.conn().query(
            "SELECT period, metric, value FROM usage_counters WHERE user_pk = $1 AND period >= $2 ORDER BY period DESC",
            &[&user_pk, &oldest.to_string()],
        )?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1), from_stored_integer(row.get(2)))).collect())
    }

    fn accounts_page(&self, limit: u32, before: Option<&str>) -> Result<Vec<(AccountRecord, u64)>> {
        accounts::accounts_page(self, limit, before)
    }

    fn account_plans(&self) -> Result<(PlanCounts, PlanCounts)> {
        accounts::account_plans(self)
    }

    fn account_counters_since(&self, account_pk: i64, oldest: Period) -> Result<Vec<(String, String, u64)>> {
        accounts::counters_since(self, account_pk, oldest)
    }

    fn audit_page(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>> {
        let rows = self.conn().query(
            "SELECT id, at, actor, action, target, details FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2",
            &[&before.unwrap_or(i64::MAX), &i64::from(limit)],
        )?;
        Ok(rows.iter().map(audit_row).collect())
    }

    fn export_user(&self, user: &UserRecord) -> Result<UserExport> {
        let updated_at_ms: i64 = self
            .conn()
            .query_opt("SELECT updated_at FROM users WHERE id = $1", &[&user.pk])?
            .map_or(user.created_at_ms, |row| row.get(0));
        let counters = self
            .conn()
            .query(
                "SELECT period, metric, value, created_at, updated_at FROM usage_counters WHERE user_pk = $1
                 ORDER BY period DESC, metric",
                &[&user.pk],
            )?
            .iter()
            .map(|row| CounterRecord {
                period: row.get(0),
                metric: row.get(1),
                value: from_stored_integer(row.get(2)),
                created_at_ms: row.get(3),
                updated_at_ms: row.get(4),
            })
            .collect();
        let feature_uses = self
            .conn()
            .query("SELECT feature, used_at FROM feature_uses WHERE user_pk = $1 ORDER BY used_at", &[&user.pk])?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let idempotency_keys = self
            .conn()
            .query(
                "SELECT key, status, created_at FROM idempotency_keys WHERE user_id = $1 ORDER BY created_at",
                &[&user.user_id],
            )?
            .iter()
            .map(|row| (row.get(0), u16::try_from(row.get::<_, i64>(1)).unwrap_or(500), row.get(2)))
            .collect();
        let audit = self
            .conn()
            .query(
                "SELECT id, at, actor, action, target, details FROM audit_log WHERE target = $1 ORDER BY id",
                &[&user.user_id],
            )?
            .iter()
            .map(audit_row)
            .collect();
        let alerts = self
            .conn()
            .query("SELECT period, metric, alert FROM usage_alerts WHERE user_pk = $1 ORDER BY period", &[&user.pk])?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let refusals = super::usage::refusals(self, &user.user_id, None)?;
        Ok(UserExport { updated_at_ms, counters, feature_uses, idempotency_keys, audit, alerts, refusals })
    }

    fn pending_erasures(&self) -> Result<Vec<ErasureRecord>> {
        let rows =
            self.conn().query("SELECT user_id, hash, actor, started_at FROM erasures ORDER BY started_at", &[])?;
        Ok(rows
            .iter()
            .map(|row| ErasureRecord {
                user_id: row.get(0),
                hash: row.get(1),
                actor: row.get(2),
                started_at_ms: row.get(3),
            })
            .collect())
    }
}

impl AdminWrite for PgDb<'_> {
    fn reset_counters(&self, user_pk: i64, period: Period, metric: Option<&str>) -> Result<Vec<(String, u64)>> {
        let period_text = period.to_string();
        let rows = self.conn().query(
            "DELETE FROM usage_counters WHERE user_pk = $1 AND period = $2 AND ($3::text IS NULL OR metric = $3)
             RETURNING metric, value",
            &[&user_pk, &period_text, &metric],
        )?;
        let before: Vec<(String, u64)> = rows.iter().map(|row| (row.get(0), from_stored_integer(row.get(1)))).collect();
        let still_active = self
            .conn()
            .query_opt(
                "SELECT 1 FROM usage_counters WHERE user_pk = $1 AND period = $2 LIMIT 1",
                &[&user_pk, &period_text],
            )?
            .is_some();
        let mut rollups = self.rollups();
        for (metric, value) in &before {
            let total = rollups.totals.entry((period_text.clone(), metric.clone())).or_default();
            *total = total.saturating_sub(i64::try_from(*value).unwrap_or(i64::MAX));
        }
        if !before.is_empty() && !still_active {
            *rollups.active_users.entry(period_text).or_default() -= 1;
        }
        Ok(before)
    }

    fn delete_counters_before(&self, oldest_kept: Period, limit: u32) -> Result<u64> {
        self.conn().execute(
            "DELETE FROM usage_counters WHERE ctid IN (SELECT ctid FROM usage_counters WHERE period < $1 LIMIT $2)",
            &[&oldest_kept.to_string(), &i64::from(limit)],
        )
    }

    fn delete_rollups_before(&self, oldest_kept: Period) -> Result<()> {
        let oldest = oldest_kept.to_string();
        self.conn().execute("DELETE FROM period_totals WHERE period < $1", &[&oldest])?;
        self.conn().execute("DELETE FROM period_users WHERE period < $1", &[&oldest])?;
        Ok(())
    }

    fn reset_account_counters(
        &self,
        account_pk: i64,
        period: Period,
        metric: Option<&str>,
    ) -> Result<Vec<(String, u64)>> {
        accounts::reset_counters(self, account_pk, period, metric)
    }

    fn put_override(&self, customer: CustomerKey<'_>, record: &OverrideRecord) -> Result<()> {
        terms::put_override(self, customer, record)
    }

    fn delete_override(&self, customer: CustomerKey<'_>) -> Result<bool> {
        terms::delete_override(self, customer)
    }

    fn add_grant(&self, grant: &GrantRecord) -> Result<i64> {
        terms::add_grant(self, grant)
    }

    fn delete_grant(&self, grant_id: i64) -> Result<Option<GrantRecord>> {
        terms::delete_grant(self, grant_id)
    }

    fn delete_terms_of(&self, customer: CustomerKey<'_>) -> Result<u64> {
        terms::delete_terms_of(self, customer)
    }

    fn delete_account(&self, account_pk: i64) -> Result<()> {
        accounts::delete_account(self, account_pk)
    }

    fn delete_account_counters_before(&self, oldest_kept: Period, limit: u32) -> Result<u64> {
        accounts::delete_counters_before(self, oldest_kept, limit)
    }

    fn prune_answers(&self, before_ms: i64, limit: u32) -> Result<u64> {
        self.conn().execute(
            "DELETE FROM idempotency_keys WHERE key IN (
                 SELECT key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
            &[&before_ms, &i64::from(limit)],
        )
    }

    fn delete_user(&self, user: &UserRecord) -> Result<()> {
        // Counters, feature uses and alert marks go with the user (ON DELETE CASCADE).
        let rows =
            self.conn().query("SELECT period, metric, value FROM usage_counters WHERE user_pk = $1", &[&user.pk])?;
        let removed = self.conn().execute("DELETE FROM users WHERE id = $1", &[&user.pk])?;
        if removed == 0 {
            return Ok(());
        }
        let mut rollups = self.rollups();
        let mut periods: Vec<String> = Vec::new();
        for row in &rows {
            let (period, metric, value): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
            let total = rollups.totals.entry((period.clone(), metric)).or_default();
            *total = total.saturating_sub(value);
            if !periods.contains(&period) {
                periods.push(period);
            }
        }
        for period in periods {
            *rollups.active_users.entry(period).or_default() -= 1;
        }
        *rollups.plan_users.entry(user.plan.clone()).or_default() -= 1;
        Ok(())
    }

    fn delete_refusals_of(&self, user_id: &str) -> Result<u64> {
        self.conn().execute("DELETE FROM refusals WHERE user_id = $1", &[&user_id])
    }

    fn prune_refusals(&self, oldest_kept: Period, limit: u32) -> Result<u64> {
        self.conn().execute(
            "DELETE FROM refusals WHERE ctid IN (SELECT ctid FROM refusals WHERE period < $1 LIMIT $2)",
            &[&oldest_kept.to_string(), &i64::from(limit)],
        )
    }

    fn delete_answers_of(&self, user_id: &str, limit: u32) -> Result<u64> {
        self.conn().execute(
            "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys WHERE user_id = $1 LIMIT $2)",
            &[&user_id, &i64::from(limit)],
        )
    }

    fn append_audit(&self, at_ms: i64, actor: &str, action: &str, target: Option<&str>, details: &str) -> Result<i64> {
        let row = self.conn().query_opt(
            "INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&at_ms, &actor, &action, &target, &details],
        )?;
        Ok(row.map_or(0, |row| row.get(0)))
    }

    fn start_erasure(&self, erasure: &ErasureRecord) -> Result<()> {
        self.conn().execute(
            "INSERT INTO erasures (user_id, hash, actor, started_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO NOTHING",
            &[&erasure.user_id, &erasure.hash, &erasure.actor, &erasure.started_at_ms],
        )?;
        Ok(())
    }

    fn finish_erasure(&self, user_id: &str) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM erasures WHERE user_id = $1", &[&user_id])? == 1)
    }

    fn claim_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        // The conditional upsert is one statement: of two nodes racing, the second waits on
        // the first's row lock and then re-checks the WHERE against the committed lease.
        let claimed = self.conn().execute(
            "INSERT INTO leases AS l (name, holder, until) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
             WHERE l.holder = EXCLUDED.holder OR l.until <= $3",
            &[&name, &holder, &now_ms, &until_ms],
        )?;
        Ok(claimed == 1)
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.conn().execute("DELETE FROM leases WHERE name = $1 AND holder = $2", &[&name, &holder])?;
        Ok(())
    }

    fn redact_audit_target(&self, target: &str, replacement: &str) -> Result<()> {
        self.conn().execute("UPDATE audit_log SET target = $2 WHERE target = $1", &[&target, &replacement])?;
        Ok(())
    }
}
