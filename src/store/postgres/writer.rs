//! This node's group commit on PostgreSQL: the shared writer thread (store/group.rs) with
//! this `commit`, which adds what a shared database needs. Each job runs in its own savepoint
//! inside one transaction; the group's rollups are applied, it commits once, and only then
//! is each job answered.
//!
//! Across nodes, a job serializes on what it reads (`serialize_on`: a transaction-scoped
//! advisory lock). Inside a group the lock is only *tried*: a group never waits for a lock
//! while holding others in an arbitrary order. When a lock is held elsewhere, the jobs done
//! so far are committed and answered, a fresh transaction waits for the contended locks in
//! sorted order (holding nothing else), and the job runs again (jobs are `FnMut` for this).
//! No two writers can then wait on each other in a cycle; a deadlock PostgreSQL still finds
//! (two admin chunks, say) is retried the same way, a bounded number of times.
//!
//! If the database goes away, the group's jobs are answered with `Unreachable` (503, nothing
//! acknowledged), the connection is dropped, and the next group reconnects.

use super::{Conn, PgDb, Rollups};
use crate::domain::ports::{StoreError, WriteJob};
use crate::metrics::Metrics;
use crate::store::group::{self, WriterOptions, fail_all};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Jobs in one transaction at most. Each job's savepoint that writes takes a subtransaction
/// id, and PostgreSQL caches only 64 of them per transaction: past that, every snapshot on the
/// server (other nodes' included) has to look subtransactions up in pg_subtrans. Staying
/// under the cache costs one more commit per 48 jobs.
const MAX_GROUP: usize = 48;

/// How often one job may lose a lock race or a deadlock before it is answered 503.
const MAX_RETRIES: u32 = 20;
/// Reconnection attempts are at least this far apart while the database is down.
const RECONNECT_EVERY: Duration = Duration::from_millis(250);

pub(super) type Writer = group::Writer<WriteJob>;
type Pending = group::Pending<WriteJob>;

/// Starts this node's writer thread on `conn`; it reconnects through `driver` after a loss.
pub(super) fn spawn(
    conn: Conn,
    driver: postgres::Config,
    panic_after: Option<u64>,
    metrics: Arc<Metrics>,
) -> Result<Writer, StoreError> {
    let mut conn = Some(conn);
    let mut last_connect = Instant::now();
    let options = WriterOptions { max_batch: MAX_GROUP, panic_after, ..WriterOptions::default() };
    Writer::spawn(options, metrics, move |batch| {
        if conn.as_ref().is_none_or(Conn::is_closed) {
            conn = None;
            if last_connect.elapsed() >= RECONNECT_EVERY {
                last_connect = Instant::now();
                match Conn::connect(&driver) {
                    Ok(fresh) => {
                        log::info!("the database is reachable again; writes resume");
                        conn = Some(fresh);
                    }
                    Err(error) => {
                        log::warn!("cannot reach the database: {error}", error = crate::logging::Chain(&error))
                    }
                }
            }
        }
        let Some(live) = conn.as_mut() else {
            fail_all(batch, &StoreError::Unreachable("the database is down; retry shortly".into()));
            return Vec::new();
        };
        let committed_events = commit_group(live, batch);
        if live.is_closed() {
            conn = None;
        }
        committed_events
    })
}

/// Applies the transaction's rollups in their global order, then commits.
fn flush_and_commit(db: &PgDb<'_>) -> Result<(), StoreError> {
    let rollups = std::mem::take(&mut *db.rollups.borrow_mut());
    super::admin::apply_rollups(db, &rollups)?;
    db.conn().batch("COMMIT")
}

/// Ends the current transaction (committing when jobs are done in it) and answers its jobs.
/// On a failed commit that a retry may fix (a deadlock), the jobs go back to the front of
/// `queue` instead; returns the event types committed.
fn end_transaction(
    db: &PgDb<'_>,
    done: &mut Vec<Pending>,
    queue: &mut VecDeque<Pending>,
    group_retries: &mut u32,
) -> Vec<String> {
    let outcome = if done.is_empty() { db.conn().batch("ROLLBACK") } else { flush_and_commit(db) };
    db.held_locks.borrow_mut().clear();
    *db.rollups.borrow_mut() = Rollups::default();
    let events = std::mem::take(&mut *db.events.borrow_mut());
    match outcome {
        Ok(()) => {
            for job in done.drain(..) {
                job.finish(&Ok(()));
            }
            events
        }
        Err(error) => {
            db.conn().abandon();
            if matches!(error, StoreError::Contended(_)) && *group_retries < MAX_RETRIES {
                *group_retries += 1;
                log::info!("a write group met a deadlock at commit; running its {} jobs again", done.len());
                for mut job in done.drain(..).rev() {
                    job.result = None;
                    queue.push_front(job);
                }
            } else {
                log::warn!(
                    "commit of a write group of {} failed: {error}",
                    done.len(),
                    error = crate::logging::Chain(&error)
                );
                for job in done.drain(..) {
                    job.finish(&Err(error.clone()));
                }
            }
            Vec::new()
        }
    }
}

/// Starts a transaction holding `locks` (waited for in sorted order: nothing else is held).
fn begin(db: &PgDb<'_>, locks: &BTreeSet<i64>) -> Result<(), StoreError> {
    // READ COMMITTED whatever the server's default: a lock won mid-group must make the
    // previous holder's commit visible to the statements after it.
    db.conn().batch("BEGIN ISOLATION LEVEL READ COMMITTED")?;
    for lock in locks {
        db.conn().query("SELECT pg_advisory_xact_lock($1)", &[lock])?;
    }
    *db.held_locks.borrow_mut() = locks.clone();
    Ok(())
}

/// Runs `batch` and answers every job; leaves `batch` empty. Returns the event types of
/// the committed jobs.
fn commit_group(conn: &mut Conn, batch: &mut Vec<Pending>) -> Vec<String> {
    let db = PgDb::new(conn);
    let mut queue: VecDeque<Pending> = batch.drain(..).collect();
    let mut done: Vec<Pending> = Vec::with_capacity(queue.len());
    let mut committed_events = Vec::new();
    let mut retry_locks = BTreeSet::new();
    let mut job_retries = 0;
    let mut group_retries = 0;
    let fail_everything = |error: StoreError, done: &mut Vec<Pending>, queue: &mut VecDeque<Pending>| {
        log::warn!("a write group failed: {error}", error = crate::logging::Chain(&error));
        db.conn().abandon();
        for job in done.drain(..).chain(queue.drain(..)) {
            job.finish(&Err(error.clone()));
        }
    };
    if let Err(error) = begin(&db, &retry_locks) {
        fail_everything(error, &mut done, &mut queue);
        return committed_events;
    }
    // Whether the savepoint the next job runs in is already there: each round trip saved
    // counts, since a node's writer is bound by them (docs/PERFORMANCE.md), so one job's
    // RELEASE and the next one's SAVEPOINT go in one message, and a ROLLBACK TO keeps it.
    let mut savepoint_open = false;
    loop {
        while let Some(mut job) = queue.pop_front() {
            let events_before = db.events.borrow().len();
            // Two statements: the connection's borrow must end before the job borrows it.
            let savepoint = if savepoint_open { Ok(()) } else { db.conn().batch("SAVEPOINT job") };
            savepoint_open = savepoint.is_ok();
            let outcome = savepoint.and_then(|()| job.execute(|run| run(&db)));
            let retry = matches!(outcome, Err(StoreError::Contended(_))) && job_retries < MAX_RETRIES;
            let closed = match &outcome {
                Ok(()) if !queue.is_empty() && !retry => db.conn().batch("RELEASE job; SAVEPOINT job"),
                Ok(()) => {
                    savepoint_open = false;
                    db.conn().batch("RELEASE job")
                }
                Err(_) => db.conn().batch("ROLLBACK TO job"),
            };
            if let Err(error) = closed {
                done.push(job);
                fail_everything(error, &mut done, &mut queue);
                return committed_events;
            }
            match outcome {
                Ok(()) => {
                    let job_locks = std::mem::take(&mut *db.job_locks.borrow_mut());
                    db.held_locks.borrow_mut().extend(job_locks);
                    let job_rollups = std::mem::take(&mut *db.job_rollups.borrow_mut());
                    db.rollups.borrow_mut().merge(job_rollups);
                }
                Err(_) => {
                    db.job_locks.borrow_mut().clear();
                    *db.job_rollups.borrow_mut() = Rollups::default();
                    db.events.borrow_mut().truncate(events_before);
                }
            }
            if !retry {
                db.contended.borrow_mut().take();
                done.push(job);
                retry_locks.clear();
                job_retries = 0;
                continue;
            }
            // Another transaction holds what this job needs: commit what is done, then wait for
            // the job's locks in a transaction that holds nothing else, and run it again.
            job_retries += 1;
            if let Some(lock) = db.contended.borrow_mut().take() {
                retry_locks.insert(lock);
            }
            job.result = None;
            queue.push_front(job);
            savepoint_open = false;
            committed_events.extend(end_transaction(&db, &mut done, &mut queue, &mut group_retries));
            if let Err(error) = begin(&db, &retry_locks) {
                // Waiting for the job's locks failed (lock_timeout: their holder is stuck or
                // gone): that job is answered with it; the others go on without them.
                db.conn().abandon();
                if let Some(job) = queue.pop_front() {
                    job.finish(&Err(error));
                }
                retry_locks.clear();
                job_retries = 0;
                if let Err(error) = begin(&db, &retry_locks) {
                    fail_everything(error, &mut done, &mut queue);
                    return committed_events;
                }
            }
        }
        savepoint_open = false;
        committed_events.extend(end_transaction(&db, &mut done, &mut queue, &mut group_retries));
        if queue.is_empty() {
            return committed_events;
        }
        // The commit met a deadlock and put its jobs back: run them again in a new transaction.
        if let Err(error) = begin(&db, &BTreeSet::new()) {
            fail_everything(error, &mut done, &mut queue);
            return committed_events;
        }
    }
}
