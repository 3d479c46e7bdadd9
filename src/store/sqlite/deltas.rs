//! The delta log's memory (issue 12). A recorded increment is appended to `usage_deltas`
//! (fold.rs) under an increasing sequence number instead of updating its counter row; its
//! amount is kept here too, by counter, so the writer's limit decisions and the readers see
//! "stored + pending" without reading the log. Folds move the log into the counters a chunk
//! at a time and record the highest sequence number folded (`fold_state.folded_seq`).
//!
//! Memory, in layers:
//! - `Shared::memory`: increments of committed groups, not yet folded, in chunks of about
//!   `CHUNK_ROWS` log rows: sealed chunks (oldest first, each folded whole) and the open one.
//!   Each chunk knows the last sequence number it holds. It changes only after a COMMIT has
//!   returned: folded chunks leave it, the group's increments join the open chunk.
//! - `WriterDeltas::group`: the current group's released jobs (since its full fold, if any).
//! - `WriterDeltas::job`: the running job's, dropped if its savepoint rolls back.
//!
//! How a reader combines them, with no lock held across a statement: it takes what memory
//! holds for a counter (each amount with its chunk's last sequence number), then reads the
//! counter row and `folded_seq` in one statement, and adds the amounts of the chunks past
//! `folded_seq`. A chunk folded before that statement is skipped, even if memory still held it;
//! one still in memory is counted unless its fold committed before the statement; a chunk leaves
//! memory only after its fold's COMMIT, so none is missed. A failed COMMIT changes no memory.

use super::fold;
use crate::domain::period::Period;
use crate::domain::ports::StoreError;
use rusqlite::Connection;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Whose counter: `usage_deltas.owner_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    User = 0,
    Account = 1,
}

/// One owner's counters of one period.
type Slot = (Owner, i64, Period);

/// Pending amounts by counter: (owner, pk, period) to each metric's amount.
#[derive(Clone, Default, Debug)]
pub(crate) struct Increments {
    slots: HashMap<Slot, Vec<(Box<str>, u64)>>,
    counters: usize,
}

impl Increments {
    fn get(&self, owner: Owner, pk: i64, period: Period, metric: &str) -> u64 {
        self.slot(owner, pk, period).iter().find(|(name, _)| &**name == metric).map_or(0, |(_, amount)| *amount)
    }

    fn slot(&self, owner: Owner, pk: i64, period: Period) -> &[(Box<str>, u64)] {
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

/// What memory holds for one counter: each chunk's amount with the chunk's last sequence
/// number (`i64::MAX` for the writer's uncommitted layers, which no fold has covered).
#[derive(Default)]
pub(crate) struct Parts(Vec<(i64, u64)>);

impl Parts {
    /// The amounts a counter row read with `folded_seq` does not yet contain.
    pub(crate) fn after(&self, folded_seq: i64) -> u64 {
        self.0.iter().filter(|(last, _)| *last > folded_seq).fold(0u64, |sum, (_, amount)| sum.saturating_add(*amount))
    }
}

/// `Parts` for every metric of one owner's period.
#[derive(Default)]
pub(crate) struct SlotParts(Vec<(i64, Box<str>, u64)>);

impl SlotParts {
    fn push(&mut self, last: i64, metrics: &[(Box<str>, u64)]) {
        self.0.extend(metrics.iter().map(|(metric, amount)| (last, metric.clone(), *amount)));
    }

    /// Adds the amounts past `folded_seq` to `counters`, metric by metric.
    pub(crate) fn add_after(&self, folded_seq: i64, counters: &mut Vec<(String, u64)>) {
        for (_, metric, amount) in self.0.iter().filter(|(last, _, _)| *last > folded_seq) {
            match counters.iter_mut().find(|(name, _)| name.as_str() == &**metric) {
                Some((_, value)) => *value = value.saturating_add(*amount),
                None => counters.push((metric.to_string(), *amount)),
            }
        }
    }
}

/// Log rows in a chunk before it is sealed (folded whole, in one step of one group).
const CHUNK_ROWS: usize = 128;

/// Past this many pending counters a group folds everything before it commits: memory stays
/// bounded should chunked folds fall behind.
const FOLD_AT_COUNTERS: usize = 100_000;

/// Increments of a contiguous run of log rows, up to `last` (its highest sequence number).
#[derive(Clone, Default)]
struct Chunk {
    last: i64,
    rows: usize,
    increments: Increments,
}

#[derive(Default)]
struct Memory {
    sealed: Vec<Arc<Chunk>>,
    open: Arc<Chunk>,
}

impl Memory {
    fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.sealed.iter().map(|chunk| &**chunk).chain(std::iter::once(&*self.open)).filter(|chunk| chunk.rows > 0)
    }

    fn counters(&self) -> usize {
        self.chunks().map(|chunk| chunk.increments.len()).sum()
    }
}

/// What the writer and the readers share.
pub(crate) struct Shared {
    memory: Mutex<Memory>,
    /// Counters with a pending amount in `memory`, readable without the lock.
    pending: AtomicUsize,
    /// The next log row's sequence number (only the writer takes them).
    next_seq: AtomicI64,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared { memory: Mutex::default(), pending: AtomicUsize::new(0), next_seq: AtomicI64::new(1) }
    }
}

impl Shared {
    /// The log as a previous run left it (a crash, or `kill -9`: a clean stop folds it), as one
    /// sealed chunk for the writer's first fold. Loading, not folding, at start: a start never
    /// fails for want of space the fold would need.
    pub(crate) fn load(connection: &Connection) -> Result<Shared, StoreError> {
        let (counters, last, folded) = fold::read_log(connection)?;
        let mut chunk = Chunk { last, rows: 0, increments: Increments::default() };
        for counter in counters {
            chunk.increments.add(counter.owner, counter.pk, counter.period, &counter.metric, counter.amount);
            chunk.rows += 1;
        }
        let pending = chunk.increments.len();
        let memory = Memory { sealed: vec![Arc::new(chunk)], open: Arc::default() };
        Ok(Shared {
            memory: Mutex::new(memory),
            pending: AtomicUsize::new(pending),
            // Past every row and every folded number: a row numbered at or below folded_seq
            // would be taken for folded by every reader.
            next_seq: AtomicI64::new(last.max(folded).saturating_add(1)),
        })
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What memory holds for one counter; read it BEFORE the counter's row.
    pub(crate) fn parts(&self, owner: Owner, pk: i64, period: Period, metric: &str) -> Parts {
        let memory = self.memory();
        Parts(memory.chunks().map(|chunk| (chunk.last, chunk.increments.get(owner, pk, period, metric))).collect())
    }

    /// What memory holds for every metric of one owner's period; read it BEFORE the rows.
    pub(crate) fn slot_parts(&self, owner: Owner, pk: i64, period: Period) -> SlotParts {
        let memory = self.memory();
        let mut parts = SlotParts::default();
        for chunk in memory.chunks() {
            parts.push(chunk.last, chunk.increments.slot(owner, pk, period));
        }
        parts
    }

    /// Whether some committed increment awaits its fold.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }
}

/// The writer's side of one group: its group and job layers over `Shared`, and what the
/// group's transaction has folded.
pub(crate) struct WriterDeltas<'s> {
    shared: &'s Shared,
    group: RefCell<Increments>,
    group_rows: Cell<usize>,
    job: RefCell<Increments>,
    job_rows: Cell<usize>,
    /// Sealed chunks up to this sequence number are folded in this transaction.
    folded_through: Cell<i64>,
    /// The whole log was folded in this transaction (every chunk, and the group's rows then).
    full: Cell<bool>,
    /// A job asked for the open chunk to be sealed at commit (the timer's).
    seal: Cell<bool>,
}

impl<'s> WriterDeltas<'s> {
    pub(crate) fn new(shared: &'s Shared) -> WriterDeltas<'s> {
        WriterDeltas {
            shared,
            group: RefCell::default(),
            group_rows: Cell::new(0),
            job: RefCell::default(),
            job_rows: Cell::new(0),
            folded_through: Cell::new(0),
            full: Cell::new(false),
            seal: Cell::new(false),
        }
    }

    /// What is pending on one counter, as this transaction sees it (`Parts::after` its own
    /// `folded_seq` skips what it folded).
    pub(crate) fn parts(&self, owner: Owner, pk: i64, period: Period, metric: &str) -> Parts {
        let mut parts = self.shared.parts(owner, pk, period, metric);
        let own = self.group.borrow().get(owner, pk, period, metric) + self.job.borrow().get(owner, pk, period, metric);
        parts.0.push((i64::MAX, own));
        parts
    }

    pub(crate) fn slot_parts(&self, owner: Owner, pk: i64, period: Period) -> SlotParts {
        let mut parts = self.shared.slot_parts(owner, pk, period);
        parts.push(i64::MAX, self.group.borrow().slot(owner, pk, period));
        parts.push(i64::MAX, self.job.borrow().slot(owner, pk, period));
        parts
    }

    /// The sequence number of the next row the running job appends.
    pub(crate) fn next_seq(&self) -> i64 {
        self.shared.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Notes an increment the running job appended to the log.
    pub(crate) fn record(&self, owner: Owner, pk: i64, period: Period, metric: &str, amount: u64) {
        self.job.borrow_mut().add(owner, pk, period, metric, amount);
        self.job_rows.set(self.job_rows.get() + 1);
    }

    /// The running job's savepoint was released: its increments join the group's.
    pub(crate) fn release_job(&self) {
        let job = self.job.take();
        self.group.borrow_mut().merge(job);
        self.group_rows.set(self.group_rows.get() + self.job_rows.replace(0));
    }

    /// The running job's savepoint was rolled back.
    pub(crate) fn rollback_job(&self) {
        self.job.take();
        self.job_rows.set(0);
    }

    /// Asks for the open chunk to be sealed when this group commits.
    pub(crate) fn seal_at_commit(&self) {
        self.seal.set(true);
    }

    /// Whether the log holds anything this transaction has not folded.
    pub(crate) fn has_pending(&self) -> bool {
        if !self.group.borrow().is_empty() {
            return true;
        }
        let through = self.folded_through.get();
        !self.full.get() && self.shared.memory().chunks().any(|chunk| chunk.last > through)
    }

    /// Folds the whole log inside the group's transaction (between jobs): before a settled job,
    /// or when memory has grown past its bound.
    pub(crate) fn fold_all(&self, connection: &Connection) -> Result<(), StoreError> {
        let through = self.shared.next_seq.load(Ordering::Relaxed) - 1;
        in_savepoint(connection, || fold::fold_through(connection, through))?;
        self.folded_through.set(through);
        self.full.set(true);
        self.group.take();
        self.group_rows.set(0);
        Ok(())
    }

    /// Folds the oldest sealed chunk not yet folded, if there is one: the bounded step a group
    /// takes before it commits. The group's own rows are newer and stay in the log.
    pub(crate) fn fold_step(&self, connection: &Connection) -> Result<(), StoreError> {
        if self.full.get() {
            return Ok(());
        }
        if self.group.borrow().len() + self.shared.pending.load(Ordering::Acquire) > FOLD_AT_COUNTERS {
            return self.fold_all(connection);
        }
        let through = self.folded_through.get();
        let next = self.shared.memory().sealed.iter().map(|chunk| chunk.last).find(|last| *last > through);
        if let Some(last) = next {
            in_savepoint(connection, || fold::fold_through(connection, last))?;
            self.folded_through.set(last);
        }
        Ok(())
    }

    /// Commits the group's transaction with `commit`, then updates memory: the chunks it
    /// folded leave, its increments join the open chunk (sealed once it is big enough). No lock
    /// is held across the COMMIT: readers skip folded chunks by `folded_seq` (module comment).
    pub(crate) fn commit(&self, commit: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let result = commit();
        let (group, rows) = (self.group.take(), self.group_rows.replace(0));
        let (through, full, seal) =
            (self.folded_through.replace(0), self.full.replace(false), self.seal.replace(false));
        self.rollback_job();
        result?;
        let mut memory = self.shared.memory();
        if full {
            *memory = Memory::default();
        } else if through > 0 {
            memory.sealed.retain(|chunk| chunk.last > through);
        }
        if rows > 0 {
            let last = self.shared.next_seq.load(Ordering::Relaxed) - 1;
            let open = Arc::make_mut(&mut memory.open);
            open.increments.merge(group);
            open.rows += rows;
            open.last = last;
        }
        if memory.open.rows >= CHUNK_ROWS || (seal && memory.open.rows > 0) {
            let open = std::mem::take(&mut memory.open);
            memory.sealed.push(open);
        }
        self.shared.pending.store(memory.counters(), Ordering::Release);
        Ok(())
    }

    /// The group failed: its transaction is gone, and so are its increments.
    pub(crate) fn abort(&self) {
        self.group.take();
        self.group_rows.set(0);
        self.rollback_job();
        self.folded_through.set(0);
        self.full.set(false);
        self.seal.set(false);
    }
}

fn in_savepoint(connection: &Connection, step: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
    connection.execute_batch("SAVEPOINT fold")?;
    match step() {
        Ok(()) => Ok(connection.execute_batch("RELEASE fold")?),
        Err(error) => {
            if !connection.is_autocommit() {
                connection.execute_batch("ROLLBACK TO fold; RELEASE fold")?;
            }
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    fn period() -> Period {
        "2026-12".parse().unwrap()
    }

    fn seen(shared: &Shared, folded_seq: i64) -> u64 {
        shared.parts(Owner::User, 1, period(), "prompts").after(folded_seq)
    }

    /// A job appending `amount` for user 1 (memory only, as the unit tests of memory need).
    fn record(deltas: &WriterDeltas<'_>, amount: u64) {
        deltas.next_seq();
        deltas.record(Owner::User, 1, period(), "prompts", amount);
    }

    #[test]
    fn a_rolled_back_job_leaves_nothing_and_a_released_one_counts_from_its_commit() {
        let shared = Shared::default();
        let deltas = WriterDeltas::new(&shared);
        record(&deltas, 3);
        assert_eq!(deltas.parts(Owner::User, 1, period(), "prompts").after(0), 3, "the job sees its own");
        deltas.rollback_job();
        assert_eq!(deltas.parts(Owner::User, 1, period(), "prompts").after(0), 0);
        record(&deltas, 2);
        deltas.release_job();
        assert_eq!(seen(&shared, 0), 0, "readers see nothing before the COMMIT");
        assert!(!shared.has_pending());
        deltas.commit(|| Ok(())).unwrap();
        assert_eq!(seen(&shared, 0), 2);
        assert!(shared.has_pending());
        assert_eq!(shared.parts(Owner::Account, 1, period(), "prompts").after(0), 0, "owners stay apart");
        assert_eq!(shared.parts(Owner::User, 1, period(), "e2e_runs").after(0), 0, "metrics stay apart");
        assert_eq!(seen(&shared, 2), 0, "a row folded through the chunk's last number holds it already");
    }

    #[test]
    fn a_failed_commit_or_group_leaves_memory_as_it_was() {
        let shared = Shared::default();
        let deltas = WriterDeltas::new(&shared);
        record(&deltas, 2);
        deltas.release_job();
        deltas.commit(|| Ok(())).unwrap();
        record(&deltas, 5);
        deltas.release_job();
        assert_eq!(deltas.parts(Owner::User, 1, period(), "prompts").after(0), 7);
        assert!(deltas.commit(|| Err(StoreError::Full)).is_err());
        assert_eq!(seen(&shared, 0), 2, "a failed COMMIT changes no memory");
        record(&deltas, 4);
        deltas.release_job();
        deltas.abort();
        assert_eq!(seen(&shared, 0), 2, "nor does a group given up");
        assert_eq!(deltas.parts(Owner::User, 1, period(), "prompts").after(0), 2);
    }

    /// A file with the tables a fold touches, and a second connection to read it as a reader
    /// does while the writer's transactions run.
    fn database() -> (tempfile::TempDir, Connection, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE users (id INTEGER PRIMARY KEY); CREATE TABLE accounts (id INTEGER PRIMARY KEY);
                 INSERT INTO users (id) VALUES (1);
                 CREATE TABLE usage_counters (user_pk, period, metric, value, created_at, updated_at,
                     PRIMARY KEY (user_pk, period, metric));
                 CREATE TABLE account_counters (account_pk, period, metric, value, created_at, updated_at,
                     PRIMARY KEY (account_pk, period, metric));
                 CREATE TABLE period_users (period PRIMARY KEY, active_users);
                 CREATE TABLE period_totals (period, metric, total, PRIMARY KEY (period, metric));
                 CREATE TABLE usage_deltas (seq INTEGER PRIMARY KEY, owner_kind, owner_pk, period, metric, amount, at);
                 CREATE TABLE fold_state (id INTEGER PRIMARY KEY, folded_seq INTEGER);
                 INSERT INTO fold_state VALUES (1, 0);",
            )
            .unwrap();
        let reader = Connection::open(&path).unwrap();
        (dir, writer, reader)
    }

    /// What a reader sees of user 1's counter: memory first, then the row and folded_seq.
    fn read(shared: &Shared, reader: &Connection) -> u64 {
        let parts = shared.parts(Owner::User, 1, period(), "prompts");
        let (folded, value): (i64, Option<i64>) = reader
            .query_row(
                "SELECT f.folded_seq, c.value FROM fold_state f LEFT JOIN usage_counters c ON c.user_pk = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        value.unwrap_or(0) as u64 + parts.after(folded)
    }

    fn append(connection: &Connection, deltas: &WriterDeltas<'_>, amount: u64) {
        let seq = deltas.next_seq();
        connection
            .execute(
                "INSERT INTO usage_deltas VALUES (?1, 0, 1, '2026-12', 'prompts', ?2, ?1)",
                params![seq, amount as i64],
            )
            .unwrap();
        deltas.record(Owner::User, 1, period(), "prompts", amount);
        deltas.release_job();
    }

    #[test]
    fn a_reader_counts_each_increment_once_before_during_and_after_a_chunked_fold() {
        let (_dir, writer, reader) = database();
        let shared = Shared::default();
        let deltas = WriterDeltas::new(&shared);
        // Group 1: two increments, sealed at commit (as the timer's job asks).
        writer.execute_batch("BEGIN").unwrap();
        append(&writer, &deltas, 2);
        append(&writer, &deltas, 3);
        deltas.seal_at_commit();
        deltas.commit(|| Ok(writer.execute_batch("COMMIT")?)).unwrap();
        assert_eq!(read(&shared, &reader), 5);

        // Group 2: one more, then the step that folds the sealed chunk, then the COMMIT, with
        // a reader looking between the COMMIT and the change of memory.
        writer.execute_batch("BEGIN").unwrap();
        append(&writer, &deltas, 4);
        deltas.fold_step(&writer).unwrap();
        assert_eq!(deltas.parts(Owner::User, 1, period(), "prompts").after(2), 4, "the writer skips what it folded");
        assert_eq!(read(&shared, &reader), 5, "uncommitted: the reader's snapshot has neither");
        deltas
            .commit(|| {
                writer.execute_batch("COMMIT")?;
                assert_eq!(read(&shared, &reader), 5, "committed, memory not yet changed: no double count");
                Ok(())
            })
            .unwrap();
        assert_eq!(read(&shared, &reader), 9);
        let stored: i64 = writer.query_row("SELECT value FROM usage_counters", [], |row| row.get(0)).unwrap();
        let left: i64 = writer.query_row("SELECT count(*) FROM usage_deltas", [], |row| row.get(0)).unwrap();
        assert_eq!((stored, left), (5, 1), "the sealed chunk is in the counter; group 2's row is not");

        // A settled job's full fold: everything, the group's own row included.
        writer.execute_batch("BEGIN").unwrap();
        append(&writer, &deltas, 1);
        deltas.fold_all(&writer).unwrap();
        append(&writer, &deltas, 6);
        deltas.commit(|| Ok(writer.execute_batch("COMMIT")?)).unwrap();
        assert_eq!(read(&shared, &reader), 16);
        let stored: i64 = writer.query_row("SELECT value FROM usage_counters", [], |row| row.get(0)).unwrap();
        let (total, active): (i64, i64) = writer
            .query_row("SELECT (SELECT total FROM period_totals), (SELECT active_users FROM period_users)", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!((stored, total, active), (10, 10, 1), "2 + 3 + 4 + 1 folded; the 6 after the fold pending");
    }
}
