//! PostgreSQL SQL for users, counters, feature uses, idempotent answers and dashboard
//! sessions, and `serialize_on` (a transaction-scoped advisory lock, tried; see writer.rs).

use super::{PgDb, accounts, terms};
use crate::domain::period::Period;
use crate::domain::ports::{
    AccountRecord, CustomerKey, GrantRecord, OverrideRecord, RefusalCount, RefusalKey, RefusalTally, SessionRead,
    SessionRecord, SessionWrite, StoreError, StoredAnswer, UsageRead, UsageWrite, UserRecord, as_stored_integer,
    from_stored_integer,
};
use postgres::Row;
use sha2::{Digest, Sha256};

type Result<T> = std::result::Result<T, StoreError>;

/// The advisory lock of a scope and key: the first 8 bytes of their SHA-256. A collision only
/// serializes two unrelated keys.
fn lock_id(scope: &str, key: &str) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update([0]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
}

pub(super) fn user_row(row: &Row) -> UserRecord {
    UserRecord {
        pk: row.get(0),
        uuid: row.get(1),
        user_id: row.get(2),
        plan: row.get(3),
        created_at_ms: row.get(4),
        account_pk: row.get(5),
    }
}

/// Every refusal counter of the user id, of one period or all.
pub(super) fn refusals(db: &PgDb<'_>, user_id: &str, period: Option<Period>) -> Result<Vec<RefusalCount>> {
    let rows = db.conn().query(
        "SELECT period, kind, subject, count FROM refusals WHERE user_id = $1 AND ($2::text IS NULL OR period = $2)
         ORDER BY period DESC, kind, subject",
        &[&user_id, &period.map(|period| period.to_string())],
    )?;
    Ok(rows
        .iter()
        .map(|row| RefusalCount {
            period: row.get(0),
            kind: row.get(1),
            subject: row.get(2),
            count: row.get::<_, i64>(3).max(0) as u64,
        })
        .collect())
}

impl UsageRead for PgDb<'_> {
    fn find_user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        let row = self.conn().query_opt(
            "SELECT id, uuid, user_id, plan, created_at, account_pk FROM users WHERE user_id = $1",
            &[&user_id],
        )?;
        Ok(row.as_ref().map(user_row))
    }

    fn counter(&self, user_pk: i64, period: Period, metric: &str) -> Result<u64> {
        let row = self.conn().query_opt(
            "SELECT value FROM usage_counters WHERE user_pk = $1 AND period = $2 AND metric = $3",
            &[&user_pk, &period.to_string(), &metric],
        )?;
        Ok(row.map_or(0, |row| from_stored_integer(row.get(0))))
    }

    fn counters(&self, user_pk: i64, period: Period) -> Result<Vec<(String, u64)>> {
        let rows = self.conn().query(
            "SELECT metric, value FROM usage_counters WHERE user_pk = $1 AND period = $2",
            &[&user_pk, &period.to_string()],
        )?;
        Ok(rows.iter().map(|row| (row.get(0), from_stored_integer(row.get(1)))).collect())
    }

    fn count_feature_uses(&self, user_pk: i64, feature: &str, since_ms: i64) -> Result<u32> {
        let row = self.conn().query_opt(
            "SELECT count(*) FROM feature_uses WHERE user_pk = $1 AND feature = $2 AND used_at > $3",
            &[&user_pk, &feature, &since_ms],
        )?;
        let count: i64 = row.map_or(0, |row| row.get(0));
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    fn refusals(&self, user_id: &str, period: Period) -> Result<Vec<RefusalCount>> {
        refusals(self, user_id, Some(period))
    }

    fn find_account(&self, account_id: &str) -> Result<Option<AccountRecord>> {
        accounts::find_account(self, account_id)
    }

    fn get_account(&self, account_pk: i64) -> Result<AccountRecord> {
        accounts::get_account(self, account_pk)
    }

    fn account_counter(&self, account_pk: i64, period: Period, metric: &str) -> Result<u64> {
        accounts::account_counter(self, account_pk, period, metric)
    }

    fn account_counters(&self, account_pk: i64, period: Period) -> Result<Vec<(String, u64)>> {
        accounts::account_counters(self, account_pk, period)
    }

    fn count_account_feature_uses(&self, account_pk: i64, feature: &str, since_ms: i64) -> Result<u32> {
        accounts::count_feature_uses(self, account_pk, feature, since_ms)
    }

    fn nth_oldest_account_feature_use(
        &self,
        account_pk: i64,
        feature: &str,
        since_ms: i64,
        skip: u32,
    ) -> Result<Option<i64>> {
        accounts::nth_oldest_feature_use(self, account_pk, feature, since_ms, skip)
    }

    fn members(&self, account_pk: i64) -> Result<Vec<UserRecord>> {
        accounts::members(self, account_pk)
    }

    fn find_override(&self, customer: CustomerKey<'_>) -> Result<Option<OverrideRecord>> {
        terms::find_override(self, customer)
    }

    fn sum_grants(&self, customer: CustomerKey<'_>, metric: &str, period: Period, valid_at_ms: i64) -> Result<u64> {
        terms::sum_grants(self, customer, metric, period, valid_at_ms)
    }

    fn grants(&self, customer: CustomerKey<'_>) -> Result<Vec<GrantRecord>> {
        terms::grants(self, customer)
    }

    fn nth_oldest_feature_use(&self, user_pk: i64, feature: &str, since_ms: i64, skip: u32) -> Result<Option<i64>> {
        let row = self.conn().query_opt(
            "SELECT used_at FROM feature_uses WHERE user_pk = $1 AND feature = $2 AND used_at > $3
             ORDER BY used_at LIMIT 1 OFFSET $4",
            &[&user_pk, &feature, &since_ms, &i64::from(skip)],
        )?;
        Ok(row.map(|row| row.get(0)))
    }
}

impl UsageWrite for PgDb<'_> {
    fn serialize_on(&self, scope: &str, key: &str) -> Result<()> {
        let lock = lock_id(scope, key);
        if self.held_locks.borrow().contains(&lock) || self.job_locks.borrow().contains(&lock) {
            return Ok(());
        }
        let row = self.conn().query_opt("SELECT pg_try_advisory_xact_lock($1)", &[&lock])?;
        if row.is_some_and(|row| row.get::<_, bool>(0)) {
            self.job_locks.borrow_mut().push(lock);
            Ok(())
        } else {
            *self.contended.borrow_mut() = Some(lock);
            Err(StoreError::Contended(format!("the {scope} lock is held by another transaction")))
        }
    }

    fn create_user(&self, user_id: &str, plan: &str, now_ms: i64) -> Result<UserRecord> {
        let uuid = uuid::Uuid::new_v4().to_string();
        let row = self.conn().query_opt(
            "INSERT INTO users (uuid, user_id, plan, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id",
            &[&uuid, &user_id, &plan, &now_ms],
        )?;
        let pk: i64 = row.ok_or_else(|| StoreError::Backend("INSERT ... RETURNING gave no row".into()))?.get(0);
        *self.rollups().plan_users.entry(plan.to_owned()).or_default() += 1;
        Ok(UserRecord {
            pk,
            uuid,
            user_id: user_id.to_owned(),
            plan: plan.to_owned(),
            created_at_ms: now_ms,
            account_pk: None,
        })
    }

    fn set_plan(&self, user_pk: i64, plan: &str, now_ms: i64) -> Result<()> {
        let old = self.conn().query_opt(
            "UPDATE users u SET plan = $2, updated_at = $3 FROM users old WHERE u.id = $1 AND old.id = u.id
             RETURNING old.plan",
            &[&user_pk, &plan, &now_ms],
        )?;
        if let Some(old) = old {
            let old_plan: String = old.get(0);
            let mut rollups = self.rollups();
            *rollups.plan_users.entry(old_plan).or_default() -= 1;
            *rollups.plan_users.entry(plan.to_owned()).or_default() += 1;
        }
        Ok(())
    }

    fn increment_within(
        &self,
        user_pk: i64,
        period: Period,
        metric: &str,
        amount: u64,
        ceiling: u64,
        now_ms: i64,
    ) -> Result<Option<u64>> {
        // One conditional upsert, exact at READ COMMITTED on its own: under the row lock,
        // PostgreSQL re-checks the DO UPDATE's WHERE against the newest committed value. No
        // row back means the ceiling refused it and nothing changed.
        let period_text = period.to_string();
        let amount = as_stored_integer(amount);
        let row = self.conn().query_opt(
            "INSERT INTO usage_counters AS c (user_pk, period, metric, value, created_at, updated_at)
             SELECT $1::bigint, $2::text, $3::text, $4::bigint, $6::bigint, $6::bigint WHERE $4::bigint <= $5::bigint
             ON CONFLICT (user_pk, period, metric) DO UPDATE
                SET value = c.value + EXCLUDED.value, updated_at = EXCLUDED.updated_at
                WHERE c.value <= $5::bigint - EXCLUDED.value
             RETURNING value",
            &[&user_pk, &period_text, &metric, &amount, &as_stored_integer(ceiling), &now_ms],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let value: i64 = row.get(0);
        {
            let mut rollups = self.rollups();
            let total = rollups.totals.entry((period_text.clone(), metric.to_owned())).or_default();
            *total = total.saturating_add(amount);
        }
        // A counter row only grows from its first amount (a reset deletes it), so a row
        // holding exactly `amount` is one this track created: only then can the user be new
        // to the period. The user is serialized, so no other track races this test.
        if value == amount {
            let other = self.conn().query_opt(
                "SELECT 1 FROM usage_counters WHERE user_pk = $1 AND period = $2 AND metric <> $3 LIMIT 1",
                &[&user_pk, &period_text, &metric],
            )?;
            if other.is_none() {
                *self.rollups().active_users.entry(period_text).or_default() += 1;
            }
        }
        Ok(Some(from_stored_integer(value)))
    }

    fn record_feature_use(&self, user_pk: i64, feature: &str, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO feature_uses (user_pk, feature, used_at) VALUES ($1, $2, $3)",
            &[&user_pk, &feature, &now_ms],
        )?;
        Ok(())
    }

    fn prune_feature_uses(&self, user_pk: i64, feature: &str, until_ms: i64) -> Result<()> {
        self.conn().execute(
            "DELETE FROM feature_uses WHERE user_pk = $1 AND feature = $2 AND used_at <= $3",
            &[&user_pk, &feature, &until_ms],
        )?;
        Ok(())
    }

    fn find_answer(&self, key: &str, not_before_ms: i64) -> Result<Option<StoredAnswer>> {
        let row = self.conn().query_opt(
            "SELECT fingerprint, status, body, headers FROM idempotency_keys WHERE key = $1 AND created_at >= $2",
            &[&key, &not_before_ms],
        )?;
        Ok(row.map(|row| StoredAnswer {
            fingerprint: row.get(0),
            status: u16::try_from(row.get::<_, i64>(1)).unwrap_or(500),
            body: row.get(2),
            headers: StoredAnswer::parse_headers(row.get(3)),
        }))
    }

    fn save_answer(&self, key: &str, user_id: &str, answer: &StoredAnswer, now_ms: i64) -> Result<()> {
        // An expired row under the same key is replaced: the key is free again.
        self.conn().execute(
            "INSERT INTO idempotency_keys (key, user_id, fingerprint, status, body, headers, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (key) DO UPDATE SET user_id = EXCLUDED.user_id, fingerprint = EXCLUDED.fingerprint,
                status = EXCLUDED.status, body = EXCLUDED.body, headers = EXCLUDED.headers,
                created_at = EXCLUDED.created_at",
            &[
                &key,
                &user_id,
                &answer.fingerprint,
                &i64::from(answer.status),
                &answer.body,
                &answer.headers_text(),
                &now_ms,
            ],
        )?;
        Ok(())
    }

    fn create_account(&self, account_id: &str, plan: &str, now_ms: i64) -> Result<AccountRecord> {
        accounts::create_account(self, account_id, plan, now_ms)
    }

    fn set_account_plan(&self, account_pk: i64, plan: &str, now_ms: i64) -> Result<()> {
        accounts::set_account_plan(self, account_pk, plan, now_ms)
    }

    fn set_membership(&self, user_pk: i64, account_pk: Option<i64>, now_ms: i64) -> Result<()> {
        accounts::set_membership(self, user_pk, account_pk, now_ms)
    }

    fn increment_account_within(
        &self,
        account_pk: i64,
        period: Period,
        metric: &str,
        amount: u64,
        ceiling: u64,
        now_ms: i64,
    ) -> Result<Option<u64>> {
        accounts::increment_within(self, account_pk, period, metric, amount, ceiling, now_ms)
    }

    fn record_account_feature_use(&self, account_pk: i64, feature: &str, now_ms: i64) -> Result<()> {
        accounts::record_feature_use(self, account_pk, feature, now_ms)
    }

    fn prune_account_feature_uses(&self, account_pk: i64, feature: &str, until_ms: i64) -> Result<()> {
        accounts::prune_feature_uses(self, account_pk, feature, until_ms)
    }

    fn count_refusal(&self, key: &RefusalKey<'_>) -> Result<RefusalTally> {
        let row = self
            .conn()
            .query_opt(
                "INSERT INTO refusals AS r (user_id, period, kind, subject, count, unreported, reported_at)
             VALUES ($1, $2, $3, $4, 1, 1, NULL)
             ON CONFLICT (user_id, period, kind, subject)
             DO UPDATE SET count = r.count + 1, unreported = r.unreported + 1
             RETURNING count, unreported, reported_at",
                &[&key.user_id, &key.period.to_string(), &key.kind, &key.subject],
            )?
            .ok_or_else(|| StoreError::Backend("counting a refusal returned no row".into()))?;
        Ok(RefusalTally {
            count: row.get::<_, i64>(0).max(0) as u64,
            unreported: row.get::<_, i64>(1).max(0) as u64,
            reported_at_ms: row.get(2),
        })
    }

    fn mark_refusals_reported(&self, key: &RefusalKey<'_>, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE refusals SET unreported = 0, reported_at = $5
             WHERE user_id = $1 AND period = $2 AND kind = $3 AND subject = $4",
            &[&key.user_id, &key.period.to_string(), &key.kind, &key.subject, &now_ms],
        )?;
        Ok(())
    }
}

impl SessionRead for PgDb<'_> {
    fn find_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<SessionRecord>> {
        let row = self.conn().query_opt(
            "SELECT key_name, key_digest, csrf, expires_at, flash_ok, flash_text FROM dashboard_sessions
             WHERE token_hash = $1 AND expires_at > $2",
            &[&token_hash, &now_ms],
        )?;
        Ok(row.map(|row| {
            let flash_ok: Option<bool> = row.get(4);
            let flash_text: Option<String> = row.get(5);
            SessionRecord {
                key_name: row.get(0),
                key_digest: row.get(1),
                csrf: row.get(2),
                expires_at_ms: row.get(3),
                flash: flash_ok.zip(flash_text),
            }
        }))
    }
}

impl SessionWrite for PgDb<'_> {
    fn save_session(&self, token_hash: &str, session: &SessionRecord) -> Result<()> {
        let (flash_ok, flash_text) = match &session.flash {
            Some((ok, text)) => (Some(*ok), Some(text.as_str())),
            None => (None, None),
        };
        self.conn().execute(
            "INSERT INTO dashboard_sessions (token_hash, key_name, key_digest, csrf, expires_at, flash_ok, flash_text)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (token_hash) DO UPDATE SET key_name = EXCLUDED.key_name, key_digest = EXCLUDED.key_digest,
                 csrf = EXCLUDED.csrf, expires_at = EXCLUDED.expires_at, flash_ok = EXCLUDED.flash_ok,
                 flash_text = EXCLUDED.flash_text",
            &[
                &token_hash,
                &session.key_name,
                &session.key_digest,
                &session.csrf,
                &session.expires_at_ms,
                &flash_ok,
                &flash_text,
            ],
        )?;
        Ok(())
    }

    fn set_session_flash(&self, token_hash: &str, flash: Option<(bool, &str)>) -> Result<bool> {
        let (flash_ok, flash_text) = (flash.map(|(ok, _)| ok), flash.map(|(_, text)| text));
        let changed = self.conn().execute(
            "UPDATE dashboard_sessions SET flash_ok = $2, flash_text = $3 WHERE token_hash = $1",
            &[&token_hash, &flash_ok, &flash_text],
        )?;
        Ok(changed == 1)
    }

    fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.conn().execute("DELETE FROM dashboard_sessions WHERE token_hash = $1", &[&token_hash])?;
        Ok(())
    }

    fn prune_sessions(&self, now_ms: i64) -> Result<u64> {
        self.conn().execute("DELETE FROM dashboard_sessions WHERE expires_at <= $1", &[&now_ms])
    }
}
