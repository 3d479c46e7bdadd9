//! SQLite SQL for users, counters and idempotent answers: the `UsageRead` and `UsageWrite`
//! ports for the pool's readers and the writer's transaction. Reads are shared by both.

use super::deltas::Owner;
use super::{PendingView, SqliteReader, SqliteTx, accounts, fold, rollup, terms};
use crate::domain::period::Period;
use crate::domain::ports::{
    AccountRecord, CustomerKey, GrantRecord, OverrideRecord, RefusalCount, RefusalKey, RefusalTally, StoreError,
    StoredAnswer, UsageRead, UsageWrite, UserRecord, as_stored_integer,
};
use rusqlite::{Connection, OptionalExtension, params};

/// A user from `SELECT id, uuid, user_id, plan, created_at, account_pk`.
pub(super) fn user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        pk: row.get(0)?,
        uuid: row.get(1)?,
        user_id: row.get(2)?,
        plan: row.get(3)?,
        created_at_ms: row.get(4)?,
        account_pk: row.get(5)?,
    })
}

fn find_user(connection: &Connection, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
    let mut statement = connection
        .prepare_cached("SELECT id, uuid, user_id, plan, created_at, account_pk FROM users WHERE user_id = ?1")?;
    Ok(statement.query_row([user_id], user_row).optional()?)
}

/// A counter's row, if it has one, and `fold_state.folded_seq`, read in ONE statement (so at
/// one moment): the row holds every log row up to `folded_seq` (see deltas.rs).
fn stored_counter(
    connection: &Connection,
    owner: Owner,
    pk: i64,
    period: Period,
    metric: &str,
) -> Result<(Option<u64>, i64), StoreError> {
    let mut statement = connection.prepare_cached(match owner {
        Owner::User => {
            "SELECT f.folded_seq, c.value FROM fold_state f
             LEFT JOIN usage_counters c ON c.user_pk = ?1 AND c.period = ?2 AND c.metric = ?3"
        }
        Owner::Account => {
            "SELECT f.folded_seq, c.value FROM fold_state f
             LEFT JOIN account_counters c ON c.account_pk = ?1 AND c.period = ?2 AND c.metric = ?3"
        }
    })?;
    let (folded, value): (i64, Option<i64>) =
        statement.query_row(params![pk, period.to_string(), metric], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok((value.map(|value| value.max(0) as u64), folded))
}

/// Every counter row of one owner's period, by metric, and `folded_seq`, in one statement.
fn stored_counters(
    connection: &Connection,
    owner: Owner,
    pk: i64,
    period: Period,
) -> Result<(Vec<(String, u64)>, i64), StoreError> {
    let mut statement = connection.prepare_cached(match owner {
        Owner::User => {
            "SELECT f.folded_seq, c.metric, c.value FROM fold_state f
             LEFT JOIN usage_counters c ON c.user_pk = ?1 AND c.period = ?2"
        }
        Owner::Account => {
            "SELECT f.folded_seq, c.metric, c.value FROM fold_state f
             LEFT JOIN account_counters c ON c.account_pk = ?1 AND c.period = ?2"
        }
    })?;
    let mut rows = statement.query(params![pk, period.to_string()])?;
    let (mut counters, mut folded) = (Vec::new(), 0);
    while let Some(row) = rows.next()? {
        folded = row.get(0)?;
        if let Some(metric) = row.get::<_, Option<String>>(1)? {
            counters.push((metric, row.get::<_, i64>(2)?.max(0) as u64));
        }
    }
    Ok((counters, folded))
}

/// A counter as readers see it: its row plus what the delta log holds past `folded_seq`.
/// Memory is read first, then the row (deltas.rs says why that order misses nothing).
fn live_counter(
    store: &impl PendingView,
    connection: &Connection,
    owner: Owner,
    pk: i64,
    period: Period,
    metric: &str,
) -> Result<u64, StoreError> {
    let parts = store.parts(owner, pk, period, metric);
    let (stored, folded) = stored_counter(connection, owner, pk, period, metric)?;
    Ok(stored.unwrap_or(0).saturating_add(parts.after(folded)))
}

fn live_counters(
    store: &impl PendingView,
    connection: &Connection,
    owner: Owner,
    pk: i64,
    period: Period,
) -> Result<Vec<(String, u64)>, StoreError> {
    let parts = store.slot_parts(owner, pk, period);
    let (mut counters, folded) = stored_counters(connection, owner, pk, period)?;
    parts.add_after(folded, &mut counters);
    Ok(counters)
}

/// The conditional upsert of a counter in place (a user's with its rollups): a counter's
/// first increment (see `increment_within`).
#[allow(clippy::too_many_arguments)]
fn upsert_within(
    connection: &Connection,
    owner: Owner,
    pk: i64,
    period: Period,
    metric: &str,
    amount: u64,
    ceiling: u64,
    now_ms: i64,
) -> Result<Option<u64>, StoreError> {
    // One conditional upsert. A new row is inserted only if amount <= ceiling (the
    // SELECT's WHERE); an existing row is updated only if value + amount <= ceiling,
    // written as value <= ceiling - amount so nothing can overflow (both lie within
    // 0..=i64::MAX). When neither guard passes, no row comes back and nothing changed.
    let mut statement = connection.prepare_cached(match owner {
        Owner::User => {
            "INSERT INTO usage_counters (user_pk, period, metric, value, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?6, ?6 WHERE ?4 <= ?5
             ON CONFLICT (user_pk, period, metric) DO UPDATE
                SET value = value + excluded.value, updated_at = excluded.updated_at
                WHERE value <= ?5 - excluded.value
             RETURNING value"
        }
        Owner::Account => {
            "INSERT INTO account_counters (account_pk, period, metric, value, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?6, ?6 WHERE ?4 <= ?5
             ON CONFLICT (account_pk, period, metric) DO UPDATE
                SET value = value + excluded.value, updated_at = excluded.updated_at
                WHERE value <= ?5 - excluded.value
             RETURNING value"
        }
    })?;
    let period_text = period.to_string();
    let (amount, ceiling) = (as_stored_integer(amount), as_stored_integer(ceiling));
    let value: Option<i64> =
        statement.query_row(params![pk, period_text, metric, amount, ceiling, now_ms], |row| row.get(0)).optional()?;
    if let Some(value) = value
        && owner == Owner::User
    {
        rollup::add_total(connection, period, metric, amount)?;
        // Counters only grow from their first amount (a reset deletes them), so a row
        // holding exactly `amount` is one this track created: only then can the user be
        // new to the period, which costs one more lookup.
        if value == amount && !rollup::has_other_counters(connection, pk, &period_text, metric)? {
            rollup::add_active_users(connection, &period_text, 1)?;
        }
    }
    Ok(value.map(|value| value.max(0) as u64))
}

fn count_feature_uses(connection: &Connection, user_pk: i64, feature: &str, since_ms: i64) -> Result<u32, StoreError> {
    let mut statement = connection
        .prepare_cached("SELECT count(*) FROM feature_uses WHERE user_pk = ?1 AND feature = ?2 AND used_at > ?3")?;
    let count: i64 = statement.query_row(params![user_pk, feature, since_ms], |row| row.get(0))?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

fn nth_oldest_feature_use(
    connection: &Connection,
    user_pk: i64,
    feature: &str,
    since_ms: i64,
    skip: u32,
) -> Result<Option<i64>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT used_at FROM feature_uses WHERE user_pk = ?1 AND feature = ?2 AND used_at > ?3
         ORDER BY used_at LIMIT 1 OFFSET ?4",
    )?;
    Ok(statement.query_row(params![user_pk, feature, since_ms, skip], |row| row.get(0)).optional()?)
}

pub(super) fn refusals(
    connection: &Connection,
    user_id: &str,
    period: Option<Period>,
) -> Result<Vec<RefusalCount>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT period, kind, subject, count FROM refusals WHERE user_id = ?1 AND (?2 IS NULL OR period = ?2)
         ORDER BY period DESC, kind, subject",
    )?;
    let rows = statement.query_map(params![user_id, period.map(|period| period.to_string())], |row| {
        Ok(RefusalCount {
            period: row.get(0)?,
            kind: row.get(1)?,
            subject: row.get(2)?,
            count: row.get::<_, i64>(3)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A trivial query, for readiness.
pub(super) fn ping(connection: &Connection) -> Result<(), StoreError> {
    connection.prepare_cached("SELECT 1 FROM users LIMIT 1")?.exists([])?;
    Ok(())
}

/// The conditional increment, on the delta log (after a counter's first, see below): the
/// counter as stored plus what is pending on it is the value; only if `value + amount <= ceiling` (written so nothing overflows: both
/// lie within 0..=i64::MAX) is the increment appended to the log and noted in memory. One
/// writer runs every job, so nothing changes between the read and the append.
#[allow(clippy::too_many_arguments)]
fn increment_within(
    tx: &SqliteTx<'_>,
    owner: Owner,
    pk: i64,
    period: Period,
    metric: &str,
    amount: u64,
    ceiling: u64,
    now_ms: i64,
) -> Result<Option<u64>, StoreError> {
    let parts = tx.parts(owner, pk, period, metric);
    let (stored, folded) = stored_counter(tx.0, owner, pk, period, metric)?;
    let pending = parts.after(folded);
    if stored.is_none() && pending == 0 {
        // A counter's first increment writes its row in place, with the rollups: a new row
        // takes space, and a full disk must refuse the track that needs it (503, nothing
        // stored), not a later fold, which would then need space it cannot free.
        return upsert_within(tx.0, owner, pk, period, metric, amount, ceiling, now_ms);
    }
    let value = stored.unwrap_or(0).saturating_add(pending);
    let (amount, ceiling) = (as_stored_integer(amount), as_stored_integer(ceiling));
    let value = as_stored_integer(value);
    if amount > ceiling || value > ceiling - amount {
        return Ok(None);
    }
    fold::append(tx.0, tx.2.next_seq(), owner, pk, period, metric, amount, now_ms)?;
    tx.2.record(owner, pk, period, metric, amount as u64);
    Ok(Some((value + amount) as u64))
}

macro_rules! impl_usage_read {
    ($type:ty) => {
        impl UsageRead for $type {
            fn find_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
                find_user(self.0, user_id)
            }
            fn counter(&self, user_pk: i64, period: Period, metric: &str) -> Result<u64, StoreError> {
                live_counter(self, self.0, Owner::User, user_pk, period, metric)
            }
            fn counters(&self, user_pk: i64, period: Period) -> Result<Vec<(String, u64)>, StoreError> {
                live_counters(self, self.0, Owner::User, user_pk, period)
            }
            fn count_feature_uses(&self, user_pk: i64, feature: &str, since_ms: i64) -> Result<u32, StoreError> {
                count_feature_uses(self.0, user_pk, feature, since_ms)
            }
            fn refusals(&self, user_id: &str, period: Period) -> Result<Vec<RefusalCount>, StoreError> {
                refusals(self.0, user_id, Some(period))
            }
            fn find_account(&self, account_id: &str) -> Result<Option<AccountRecord>, StoreError> {
                accounts::find_account(self.0, account_id)
            }
            fn get_account(&self, account_pk: i64) -> Result<AccountRecord, StoreError> {
                accounts::get_account(self.0, account_pk)
            }
            fn account_counter(&self, account_pk: i64, period: Period, metric: &str) -> Result<u64, StoreError> {
                live_counter(self, self.0, Owner::Account, account_pk, period, metric)
            }
            fn account_counters(&self, account_pk: i64, period: Period) -> Result<Vec<(String, u64)>, StoreError> {
                live_counters(self, self.0, Owner::Account, account_pk, period)
            }
            fn count_account_feature_uses(
                &self,
                account_pk: i64,
                feature: &str,
                since_ms: i64,
            ) -> Result<u32, StoreError> {
                accounts::count_feature_uses(self.0, account_pk, feature, since_ms)
            }
            fn nth_oldest_account_feature_use(
                &self,
                account_pk: i64,
                feature: &str,
                since_ms: i64,
                skip: u32,
            ) -> Result<Option<i64>, StoreError> {
                accounts::nth_oldest_feature_use(self.0, account_pk, feature, since_ms, skip)
            }
            fn members(&self, account_pk: i64) -> Result<Vec<UserRecord>, StoreError> {
                accounts::members(self.0, account_pk)
            }
            fn find_override(&self, customer: CustomerKey<'_>) -> Result<Option<OverrideRecord>, StoreError> {
                terms::find_override(self.0, customer)
            }
            fn sum_grants(
                &self,
                customer: CustomerKey<'_>,
                metric: &str,
                period: Period,
                valid_at_ms: i64,
            ) -> Result<u64, StoreError> {
                terms::sum_grants(self.0, customer, metric, period, valid_at_ms)
            }
            fn grants(&self, customer: CustomerKey<'_>) -> Result<Vec<GrantRecord>, StoreError> {
                terms::grants(self.0, customer)
            }
            fn nth_oldest_feature_use(
                &self,
                user_pk: i64,
                feature: &str,
                since_ms: i64,
                skip: u32,
            ) -> Result<Option<i64>, StoreError> {
                nth_oldest_feature_use(self.0, user_pk, feature, since_ms, skip)
            }
        }
    };
}

impl_usage_read!(SqliteReader<'_>);
impl_usage_read!(SqliteTx<'_>);

impl UsageWrite for SqliteTx<'_> {
    fn serialize_on(&self, _scope: &str, _key: &str) -> Result<(), StoreError> {
        // One writer thread runs every job of this database one after another.
        Ok(())
    }

    fn create_user(&self, user_id: &str, plan: &str, now_ms: i64) -> Result<UserRecord, StoreError> {
        let uuid = uuid::Uuid::new_v4().to_string();
        let mut statement = self.0.prepare_cached(
            "INSERT INTO users (uuid, user_id, plan, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
        )?;
        let pk: i64 = statement.query_row(params![uuid, user_id, plan, now_ms], |row| row.get(0))?;
        rollup::add_plan_users(self.0, plan, 1)?;
        Ok(UserRecord {
            pk,
            uuid,
            user_id: user_id.to_owned(),
            plan: plan.to_owned(),
            created_at_ms: now_ms,
            account_pk: None,
        })
    }

    fn set_plan(&self, user_pk: i64, plan: &str, now_ms: i64) -> Result<(), StoreError> {
        let old_plan: Option<String> = self
            .0
            .prepare_cached("SELECT plan FROM users WHERE id = ?1")?
            .query_row([user_pk], |row| row.get(0))
            .optional()?;
        self.0
            .prepare_cached("UPDATE users SET plan = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![user_pk, plan, now_ms])?;
        if let Some(old_plan) = old_plan {
            rollup::add_plan_users(self.0, &old_plan, -1)?;
            rollup::add_plan_users(self.0, plan, 1)?;
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
    ) -> Result<Option<u64>, StoreError> {
        increment_within(self, Owner::User, user_pk, period, metric, amount, ceiling, now_ms)
    }

    fn record_feature_use(&self, user_pk: i64, feature: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut statement =
            self.0.prepare_cached("INSERT INTO feature_uses (user_pk, feature, used_at) VALUES (?1, ?2, ?3)")?;
        statement.execute(params![user_pk, feature, now_ms])?;
        Ok(())
    }

    fn prune_feature_uses(&self, user_pk: i64, feature: &str, until_ms: i64) -> Result<(), StoreError> {
        let mut statement =
            self.0.prepare_cached("DELETE FROM feature_uses WHERE user_pk = ?1 AND feature = ?2 AND used_at <= ?3")?;
        statement.execute(params![user_pk, feature, until_ms])?;
        Ok(())
    }

    fn find_answer(&self, key: &str, not_before_ms: i64) -> Result<Option<StoredAnswer>, StoreError> {
        let mut statement = self.0.prepare_cached(
            "SELECT fingerprint, status, body, headers FROM idempotency_keys WHERE key = ?1 AND created_at >= ?2",
        )?;
        let answer = statement
            .query_row(params![key, not_before_ms], |row| {
                Ok(StoredAnswer {
                    fingerprint: row.get(0)?,
                    status: row.get(1)?,
                    body: row.get(2)?,
                    headers: StoredAnswer::parse_headers(row.get_ref(3)?.as_str()?),
                })
            })
            .optional()?;
        Ok(answer)
    }

    fn save_answer(&self, key: &str, user_id: &str, answer: &StoredAnswer, now_ms: i64) -> Result<(), StoreError> {
        // An expired row under the same key is replaced: the key is free again.
        let mut statement = self.0.prepare_cached(
            "INSERT INTO idempotency_keys (key, user_id, fingerprint, status, body, headers, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (key) DO UPDATE SET user_id = excluded.user_id, fingerprint = excluded.fingerprint,
                status = excluded.status, body = excluded.body, headers = excluded.headers,
                created_at = excluded.created_at",
        )?;
        let headers = answer.headers_text();
        statement.execute(params![key, user_id, answer.fingerprint, answer.status, answer.body, headers, now_ms])?;
        Ok(())
    }

    fn create_account(&self, account_id: &str, plan: &str, now_ms: i64) -> Result<AccountRecord, StoreError> {
        accounts::create_account(self.0, account_id, plan, now_ms)
    }

    fn set_account_plan(&self, account_pk: i64, plan: &str, now_ms: i64) -> Result<(), StoreError> {
        accounts::set_account_plan(self.0, account_pk, plan, now_ms)
    }

    fn set_membership(&self, user_pk: i64, account_pk: Option<i64>, now_ms: i64) -> Result<(), StoreError> {
        accounts::set_membership(self.0, user_pk, account_pk, now_ms)
    }

    fn increment_account_within(
        &self,
        account_pk: i64,
        period: Period,
        metric: &str,
        amount: u64,
        ceiling: u64,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        increment_within(self, Owner::Account, account_pk, period, metric, amount, ceiling, now_ms)
    }

    fn record_account_feature_use(&self, account_pk: i64, feature: &str, now_ms: i64) -> Result<(), StoreError> {
        accounts::record_feature_use(self.0, account_pk, feature, now_ms)
    }

    fn prune_account_feature_uses(&self, account_pk: i64, feature: &str, until_ms: i64) -> Result<(), StoreError> {
        accounts::prune_feature_uses(self.0, account_pk, feature, until_ms)
    }

    fn count_refusal(&self, key: &RefusalKey<'_>) -> Result<RefusalTally, StoreError> {
        let mut statement = self.0.prepare_cached(
            "INSERT INTO refusals (user_id, period, kind, subject, count, unreported, reported_at)
             VALUES (?1, ?2, ?3, ?4, 1, 1, NULL)
             ON CONFLICT (user_id, period, kind, subject)
             DO UPDATE SET count = count + 1, unreported = unreported + 1
             RETURNING count, unreported, reported_at",
        )?;
        let tally =
            statement.query_row(params![key.user_id, key.period.to_string(), key.kind, key.subject], |row| {
                Ok(RefusalTally {
                    count: row.get::<_, i64>(0)?.max(0) as u64,
                    unreported: row.get::<_, i64>(1)?.max(0) as u64,
                    reported_at_ms: row.get(2)?,
                })
            })?;
        Ok(tally)
    }

    fn mark_refusals_reported(&self, key: &RefusalKey<'_>, now_ms: i64) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "UPDATE refusals SET unreported = 0, reported_at = ?5
                 WHERE user_id = ?1 AND period = ?2 AND kind = ?3 AND subject = ?4",
            )?
            .execute(params![key.user_id, key.period.to_string(), key.kind, key.subject, now_ms])?;
        Ok(())
    }
}
