//! The delta log (issue 12). A recorded increment is appended to `usage_deltas` instead of
//! updating its counter row in place; its amount is kept in memory too, by counter, so the
//! writer's limit decisions and the readers see "folded + pending" without reading the log.
//! `fold` moves the log into the counters and rollups in bulk, in a writer transaction.
//!
//! Memory, in three layers:
//! - `Shared::committed`: increments in the log by commits that have returned, not yet folded.
//!   Readers hold its read lock for a whole read job, so the pair (the counters of their
//!   snapshot, `committed`) is one moment: the writer takes the write lock around a COMMIT
//!   that folds, and swaps `committed` before releasing it.
//! - `WriterDeltas::group`: the current group's released jobs since its last fold (or start).
//! - `WriterDeltas::job`: the running job's, dropped if its savepoint rolls back.
//!
//! A failed group drops `group` and `job`; `committed` is only ever changed after a COMMIT
//! succeeded, so memory is what the file says.

use crate::domain::period::Period;
use crate::domain::ports::StoreError;
use rusqlite::Connection;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

/// Whose counter: `usage_deltas.owner_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    User = 0,
    Account = 1,
}

/// One owner's counters of one period.
type Slot = (Owner, i64, Period);

/// Pending amounts by counter: (owner, pk, period) to each metric's amount.
#[derive(Default, Debug)]
pub(crate) struct Increments {
    slots: HashMap<Slot, Vec<(Box<str>, u64)>>,
    counters: usize,
}

impl Increments {
    pub(crate) fn get(&self, owner: Owner, pk: i64, period: Period, metric: &str) -> u64 {
        self.slot(owner, pk, period).iter().find(|(name, _)| &**name == metric).map_or(0, |(_, amount)| *amount)
    }

    /// Every pending metric of one owner's period.
    pub(crate) fn slot(&self, owner: Owner, pk: i64, period: Period) -> &[(Box<str>, u64)] {
        self.slots.get(&(owner, pk, period)).map_or(&[], Vec::as_slice)
    }

    fn add(&mut self, owner: Owner, pk: i64, period: Period, metric: &str, amount: u64) {
        let metrics = self.slots.entry((owner, pk, period)).or_default();
        match metrics.iter_mut().find(|(name, _)| &**name == metric) {
            Some((_, sum)) => *sum = sum.saturating_add(amount),
            None => {
                metrics.push((metric.into(), amount));
                self.counters += 1;
            }
        }
    }

    fn merge(&mut self, other: Increments) {
        if self.slots.is_empty() {
            *self = other;
            return;
        }
        for ((owner, pk, period), metrics) in other.slots {
            for (metric, amount) in metrics {
                self.add(owner, pk, period, &metric, amount);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Counters with a pending amount.
    fn len(&self) -> usize {
        self.counters
    }
}

/// Adds `extra` to `base`, metric by metric (a metric only in `extra` is appended).
pub(crate) fn combine(base: &mut Vec<(String, u64)>, extra: &[(Box<str>, u64)]) {
    for (metric, amount) in extra {
        match base.iter_mut().find(|(name, _)| name.as_str() == &**metric) {
            Some((_, value)) => *value = value.saturating_add(*amount),
            None => base.push((metric.to_string(), *amount)),
        }
    }
}

/// Past this many pending counters a group folds before it commits, whatever the timer says:
/// memory stays bounded (about 100 bytes a counter).
const FOLD_AT_COUNTERS: usize = 100_000;

/// What the writer and the readers share.
#[derive(Default)]
pub(crate) struct Shared {
    committed: RwLock<Increments>,
    /// `committed.len()`, readable without the lock.
    pending: AtomicUsize,
}

impl Shared {
    /// The log as a previous run left it (a crash, or `kill -9`: a clean stop folds it), in
    /// memory, for the writer's first fold. Loading, not folding, at start: a start never
    /// fails for want of space the fold would need.
    pub(crate) fn load(connection: &Connection) -> Result<Shared, StoreError> {
        let mut increments = Increments::default();
        let mut statement = connection.prepare(
            "SELECT owner_kind, owner_pk, period, metric, sum(amount) FROM usage_deltas
             GROUP BY owner_kind, owner_pk, period, metric",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let owner = if row.get::<_, i64>(0)? == 0 { Owner::User } else { Owner::Account };
            let period: String = row.get(2)?;
            let period = period.parse().map_err(|_| StoreError::backend(format!("a delta of period {period:?}")))?;
            let metric: String = row.get(3)?;
            increments.add(owner, row.get(1)?, period, &metric, row.get::<_, i64>(4)?.max(0) as u64);
        }
        let pending = AtomicUsize::new(increments.len());
        Ok(Shared { committed: RwLock::new(increments), pending })
    }

    /// The committed increments, held for a whole read job.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Increments> {
        self.committed.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether some committed increment awaits its fold.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }
}

/// The writer's side: its group and job layers over `Shared`.
pub(crate) struct WriterDeltas<'s> {
    shared: &'s Shared,
    group: RefCell<Increments>,
    job: RefCell<Increments>,
    /// The group's transaction has folded the log: `committed` is in the counters now.
    folded: Cell<bool>,
}

impl<'s> WriterDeltas<'s> {
    pub(crate) fn new(shared: &'s Shared) -> WriterDeltas<'s> {
        WriterDeltas { shared, group: RefCell::default(), job: RefCell::default(), folded: Cell::new(false) }
    }

    /// What is pending on one counter, as this transaction sees it.
    pub(crate) fn pending(&self, owner: Owner, pk: i64, period: Period, metric: &str) -> u64 {
        let committed = if self.folded.get() { 0 } else { self.shared.read().get(owner, pk, period, metric) };
        committed
            .saturating_add(self.group.borrow().get(owner, pk, period, metric))
            .saturating_add(self.job.borrow().get(owner, pk, period, metric))
    }

    /// Adds what is pending on every metric of one owner's period to `counters`.
    pub(crate) fn add_pending(&self, owner: Owner, pk: i64, period: Period, counters: &mut Vec<(String, u64)>) {
        if !self.folded.get() {
            combine(counters, self.shared.read().slot(owner, pk, period));
        }
        combine(counters, self.group.borrow().slot(owner, pk, period));
        combine(counters, self.job.borrow().slot(owner, pk, period));
    }

    /// Notes an increment the running job appended to the log.
    pub(crate) fn record(&self, owner: Owner, pk: i64, period: Period, metric: &str, amount: u64) {
        self.job.borrow_mut().add(owner, pk, period, metric, amount);
    }

    /// The running job's savepoint was released: its increments join the group's.
    pub(crate) fn release_job(&self) {
        let job = self.job.take();
        self.group.borrow_mut().merge(job);
    }

    /// The running job's savepoint was rolled back.
    pub(crate) fn rollback_job(&self) {
        self.job.take();
    }

    /// Whether the log holds anything this transaction could fold.
    pub(crate) fn has_pending(&self) -> bool {
        !self.group.borrow().is_empty() || (!self.folded.get() && self.shared.has_pending())
    }

    /// Whether the group should fold before committing, to bound memory.
    pub(crate) fn is_over_bound(&self) -> bool {
        let committed = if self.folded.get() { 0 } else { self.shared.pending.load(Ordering::Acquire) };
        committed + self.group.borrow().len() > FOLD_AT_COUNTERS
    }

    /// Folds the log inside the group's transaction (between jobs).
    pub(crate) fn fold(&self, connection: &Connection) -> Result<(), StoreError> {
        connection.execute_batch("SAVEPOINT fold")?;
        match fold(connection) {
            Ok(()) => {
                connection.execute_batch("RELEASE fold")?;
                self.folded.set(true);
                self.group.take();
                Ok(())
            }
            Err(error) => {
                if !connection.is_autocommit() {
                    connection.execute_batch("ROLLBACK TO fold; RELEASE fold")?;
                }
                Err(error)
            }
        }
    }

    /// Commits the group's transaction with `commit`, then makes its increments committed
    /// ones. A group that folded commits under the write lock, so no reader pairs the new
    /// counters with the increments they already contain.
    pub(crate) fn commit(&self, commit: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let folded = self.folded.replace(false);
        let group = self.group.take();
        self.job.take();
        if !folded && group.is_empty() {
            return commit();
        }
        let mut committed = self.shared.committed.write().unwrap_or_else(PoisonError::into_inner);
        commit()?;
        if folded {
            *committed = group;
        } else {
            committed.merge(group);
        }
        self.shared.pending.store(committed.len(), Ordering::Release);
        Ok(())
    }

    /// The group failed: its transaction is gone, and so are its increments.
    pub(crate) fn abort(&self) {
        self.folded.set(false);
        self.group.take();
        self.job.take();
    }
}

/// Moves every row of the log into its counter and the rollups, and empties the log. Exact and
/// idempotent whenever it runs: the log and the counters change in one transaction. The log
/// is summed into a TEMP table and deleted before any counter is written, so the pages it
/// frees are there for the counters (a fold fits in a full file: it frees what it needs).
/// Rows of an owner deleted meanwhile (only SQL written around Tally can leave one: every
/// deletion is a settled job, folded first) are dropped, as its counters were.
pub(crate) fn fold(connection: &Connection) -> Result<(), StoreError> {
    connection.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS fold_sums (
             owner_kind INTEGER, owner_pk INTEGER, period TEXT, metric TEXT,
             amount INTEGER, first_at INTEGER, last_at INTEGER)",
    )?;
    let steps = [
        // Each counter's sum stays within its ceiling (<= i64::MAX): the writer decided it so.
        "INSERT INTO temp.fold_sums
         SELECT owner_kind, owner_pk, period, metric, sum(amount), min(at), max(at) FROM usage_deltas d
         WHERE (owner_kind = 0 AND EXISTS (SELECT 1 FROM users WHERE id = d.owner_pk))
            OR (owner_kind = 1 AND EXISTS (SELECT 1 FROM accounts WHERE id = d.owner_pk))
         GROUP BY owner_kind, owner_pk, period, metric",
        "DELETE FROM usage_deltas",
        // A user's first counter of a period makes them active in it (counted before the
        // counters are written, which would hide it).
        "INSERT INTO period_users (period, active_users)
         SELECT period, count(*) FROM (
             SELECT DISTINCT f.owner_pk, f.period FROM temp.fold_sums f
             WHERE f.owner_kind = 0 AND NOT EXISTS (
                 SELECT 1 FROM usage_counters c WHERE c.user_pk = f.owner_pk AND c.period = f.period))
         WHERE true GROUP BY period
         ON CONFLICT (period) DO UPDATE SET active_users = active_users + excluded.active_users",
        // Totals as `rollup::add_total` keeps them: saturating at i64::MAX.
        "INSERT INTO period_totals (period, metric, total)
         SELECT period, metric, CAST(min(total(amount), 9223372036854775807.0) AS INTEGER)
         FROM temp.fold_sums WHERE owner_kind = 0 GROUP BY period, metric
         ON CONFLICT (period, metric) DO UPDATE SET total = CASE
             WHEN total > 9223372036854775807 - excluded.total THEN 9223372036854775807
             ELSE total + excluded.total END",
        "INSERT INTO usage_counters (user_pk, period, metric, value, created_at, updated_at)
         SELECT owner_pk, period, metric, amount, first_at, last_at FROM temp.fold_sums WHERE owner_kind = 0
         ON CONFLICT (user_pk, period, metric) DO UPDATE
            SET value = value + excluded.value, updated_at = max(updated_at, excluded.updated_at)",
        "INSERT INTO account_counters (account_pk, period, metric, value, created_at, updated_at)
         SELECT owner_pk, period, metric, amount, first_at, last_at FROM temp.fold_sums WHERE owner_kind = 1
         ON CONFLICT (account_pk, period, metric) DO UPDATE
            SET value = value + excluded.value, updated_at = max(updated_at, excluded.updated_at)",
        "DELETE FROM temp.fold_sums",
    ];
    for step in steps {
        connection.prepare_cached(step)?.execute([])?;
    }
    Ok(())
}

/// Folds a file's whole log in one transaction, on a connection to a file no server runs on
/// (a backup's copy). Returns the rows folded.
pub(crate) fn fold_file(connection: &Connection) -> Result<u64, StoreError> {
    let rows: i64 = connection.query_row("SELECT count(*) FROM usage_deltas", [], |row| row.get(0))?;
    if rows > 0 {
        connection.execute_batch("BEGIN IMMEDIATE")?;
        match fold(connection) {
            Ok(()) => connection.execute_batch("COMMIT")?,
            Err(error) => {
                let _ = connection.execute_batch("ROLLBACK");
                return Err(error);
            }
        }
    }
    Ok(rows.max(0) as u64)
}

/// Appends one increment to the log.
pub(crate) fn append(
    connection: &Connection,
    owner: Owner,
    pk: i64,
    period: Period,
    metric: &str,
    amount: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO usage_deltas (owner_kind, owner_pk, period, metric, amount, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(rusqlite::params![owner as i64, pk, period.to_string(), metric, amount, now_ms])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period() -> Period {
        "2026-12".parse().unwrap()
    }

    fn committed(shared: &Shared) -> u64 {
        shared.read().get(Owner::User, 1, period(), "prompts")
    }

    #[test]
    fn a_rolled_back_job_leaves_nothing_and_a_released_one_counts_from_its_commit() {
        let shared = Shared::default();
        let deltas = WriterDeltas::new(&shared);
        deltas.record(Owner::User, 1, period(), "prompts", 3);
        assert_eq!(deltas.pending(Owner::User, 1, period(), "prompts"), 3, "the job sees its own increment");
        deltas.rollback_job();
        assert_eq!(deltas.pending(Owner::User, 1, period(), "prompts"), 0);
        deltas.record(Owner::User, 1, period(), "prompts", 2);
        deltas.release_job();
        assert_eq!(committed(&shared), 0, "readers see nothing before the COMMIT");
        assert!(!shared.has_pending());
        deltas.commit(|| Ok(())).unwrap();
        assert_eq!(committed(&shared), 2);
        assert!(shared.has_pending());
        // Another metric and another owner stay apart.
        assert_eq!(shared.read().get(Owner::Account, 1, period(), "prompts"), 0);
        assert_eq!(shared.read().get(Owner::User, 1, period(), "e2e_runs"), 0);
    }

    #[test]
    fn a_failed_commit_or_group_leaves_memory_as_it_was() {
        let shared = Shared::default();
        let deltas = WriterDeltas::new(&shared);
        deltas.record(Owner::User, 1, period(), "prompts", 2);
        deltas.release_job();
        deltas.commit(|| Ok(())).unwrap();

        deltas.record(Owner::User, 1, period(), "prompts", 5);
        deltas.release_job();
        assert_eq!(deltas.pending(Owner::User, 1, period(), "prompts"), 7);
        assert!(deltas.commit(|| Err(StoreError::Full)).is_err());
        deltas.abort();
        assert_eq!(committed(&shared), 2, "a failed COMMIT changes no memory");
        assert_eq!(deltas.pending(Owner::User, 1, period(), "prompts"), 2);

        deltas.record(Owner::User, 1, period(), "prompts", 4);
        deltas.release_job();
        deltas.abort();
        assert_eq!(committed(&shared), 2, "nor does a group given up");
    }

    #[test]
    fn a_fold_replaces_what_was_committed_with_what_came_after_it() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE users (id INTEGER PRIMARY KEY); CREATE TABLE accounts (id INTEGER PRIMARY KEY);
                 INSERT INTO users (id) VALUES (1);
                 CREATE TABLE usage_counters (user_pk, period, metric, value, created_at, updated_at,
                     PRIMARY KEY (user_pk, period, metric));
                 CREATE TABLE account_counters (account_pk, period, metric, value, created_at, updated_at,
                     PRIMARY KEY (account_pk, period, metric));
                 CREATE TABLE period_users (period PRIMARY KEY, active_users);
                 CREATE TABLE period_totals (period, metric, total, PRIMARY KEY (period, metric));
                 CREATE TABLE usage_deltas (seq INTEGER PRIMARY KEY, owner_kind, owner_pk, period, metric, amount, at);",
            )
            .unwrap();
        let shared = Shared::default();
        let deltas = WriterDeltas::new(&shared);
        connection.execute_batch("BEGIN").unwrap();
        append(&connection, Owner::User, 1, period(), "prompts", 2, 10).unwrap();
        deltas.record(Owner::User, 1, period(), "prompts", 2);
        deltas.release_job();
        deltas.commit(|| Ok(connection.execute_batch("COMMIT")?)).unwrap();
        assert_eq!(committed(&shared), 2);

        // A group: one more increment, a fold (as before a settled job), one more after it.
        connection.execute_batch("BEGIN").unwrap();
        append(&connection, Owner::User, 1, period(), "prompts", 3, 20).unwrap();
        deltas.record(Owner::User, 1, period(), "prompts", 3);
        deltas.release_job();
        deltas.fold(&connection).unwrap();
        assert_eq!(deltas.pending(Owner::User, 1, period(), "prompts"), 0, "all of it is in the counter now");
        append(&connection, Owner::User, 1, period(), "prompts", 4, 30).unwrap();
        deltas.record(Owner::User, 1, period(), "prompts", 4);
        deltas.release_job();
        assert_eq!(committed(&shared), 2, "readers keep the old pair until the COMMIT");
        deltas.commit(|| Ok(connection.execute_batch("COMMIT")?)).unwrap();
        let stored: i64 =
            connection.query_row("SELECT value FROM usage_counters WHERE user_pk = 1", [], |row| row.get(0)).unwrap();
        assert_eq!((stored, committed(&shared)), (5, 4), "folded 2 + 3; pending only the 4 after the fold");
        let total: i64 = connection.query_row("SELECT total FROM period_totals", [], |row| row.get(0)).unwrap();
        let active: i64 = connection.query_row("SELECT active_users FROM period_users", [], |row| row.get(0)).unwrap();
        assert_eq!((total, active), (5, 1));
        let left: i64 = connection.query_row("SELECT count(*) FROM usage_deltas", [], |row| row.get(0)).unwrap();
        assert_eq!(left, 1);
    }
}
