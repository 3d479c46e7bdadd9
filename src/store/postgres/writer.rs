//! This node's writer thread: the SQLite writer's group commit, on PostgreSQL, with what a
//! shared database adds. Jobs arrive on a bounded channel; the thread takes everything queued
//! (up to `MAX_BATCH`), runs each job in its own savepoint inside one transaction, applies the
//! group's rollups, commits once, and only then answers each job.
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
use crate::domain::ports::{Reply, StoreError, WriteJob};
use crate::metrics::{Metrics, type_labels};
use std::any::Any;
use std::collections::{BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MAX_BATCH: usize = 512;
const QUEUE_CAPACITY: usize = 8192;
/// How often one job may lose a lock race or a deadlock before it is answered 503.
const MAX_RETRIES: u32 = 20;
/// Reconnection attempts are at least this far apart while the database is down.
const RECONNECT_EVERY: Duration = Duration::from_millis(250);

struct Pending {
    job: WriteJob,
    result: Option<Result<Box<dyn Any + Send>, StoreError>>,
    reply: Reply,
}

impl Pending {
    fn execute(&mut self, db: &PgDb<'_>) -> Result<(), StoreError> {
        let job = &mut self.job;
        let result = catch_unwind(AssertUnwindSafe(|| job(db))).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(StoreError::JobPanicked(message))
        });
        let status = match &result {
            Ok(_) => Ok(()),
            Err(error) => Err(error.clone()),
        };
        self.result = Some(result);
        status
    }

    fn finish(self, committed: &Result<(), StoreError>) {
        let result = match committed {
            Ok(()) => self.result.unwrap_or(Err(StoreError::WriterStopped)),
            Err(error) => Err(error.clone()),
        };
        self.reply.send(result);
    }
}

enum Message {
    Job(Pending),
    Stop,
}

struct Shared {
    running: AtomicBool,
    depth: AtomicUsize,
}

pub(super) struct Writer {
    sender: SyncSender<Message>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(super) fn spawn(
        conn: Conn,
        driver: postgres::Config,
        panic_after: Option<u64>,
        metrics: Arc<Metrics>,
    ) -> Result<Writer, StoreError> {
        let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared { running: AtomicBool::new(true), depth: AtomicUsize::new(0) });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tally-writer".into())
            .spawn(move || run(conn, driver, receiver, thread_shared, panic_after, &metrics))
            .map_err(|error| StoreError::Open(format!("cannot start the writer thread: {error}")))?;
        Ok(Writer { sender, shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues `job`; `reply` hears its result after the commit that holds it (or
    /// `WriterStopped`, by its drop, if the writer never runs it).
    pub(super) fn submit(&self, job: WriteJob, reply: Reply) {
        if !self.is_running() {
            reply.send(Err(StoreError::WriterStopped));
            return;
        }
        self.shared.depth.fetch_add(1, Ordering::Relaxed);
        if let Err(refused) = self.sender.send(Message::Job(Pending { job, result: None, reply })) {
            self.shared.depth.fetch_sub(1, Ordering::Relaxed);
            drop(refused);
        }
    }

    pub(super) fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    pub(super) fn queue_depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed)
    }

    pub(super) fn stop(&self) {
        let thread = self.thread.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(thread) = thread {
            let _ = self.sender.send(Message::Stop);
            let _ = thread.join();
        }
    }
}

struct RunningGuard(Arc<Shared>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
        if std::thread::panicking() {
            log::error!("the writer thread panicked; writes are refused until restart");
        }
    }
}

fn run(
    conn: Conn,
    driver: postgres::Config,
    receiver: Receiver<Message>,
    shared: Arc<Shared>,
    panic_after: Option<u64>,
    metrics: &Metrics,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    let _guard = RunningGuard(Arc::clone(&shared));
    let mut conn = Some(conn);
    let mut last_connect = Instant::now();
    let mut groups: u64 = 0;
    loop {
        match receiver.recv() {
            Ok(Message::Job(job)) => batch.push(job),
            Ok(Message::Stop) | Err(_) => return,
        }
        let mut stop = false;
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Stop) => {
                    stop = true;
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        groups += 1;
        if panic_after.is_some_and(|limit| groups > limit) {
            panic!("injected writer failure after {limit} groups", limit = groups - 1);
        }
        let depth = shared.depth.fetch_sub(batch.len(), Ordering::Relaxed) - batch.len();
        metrics.writer_queue_depth.set(depth as i64);
        metrics.writer_batch_size.observe(batch.len() as f64);
        if conn.as_ref().is_none_or(Conn::is_closed) {
            conn = None;
            if last_connect.elapsed() >= RECONNECT_EVERY {
                last_connect = Instant::now();
                match Conn::connect(&driver) {
                    Ok(fresh) => {
                        log::info!("the database is reachable again; writes resume");
                        conn = Some(fresh);
                    }
                    Err(error) => log::warn!("cannot reach the database: {error}"),
                }
            }
        }
        let started = Instant::now();
        match conn.as_mut() {
            Some(live) => {
                let committed_events = commit_group(live, &mut batch);
                for kind in committed_events {
                    metrics.events.get_or_create(&type_labels(kind)).inc();
                }
                if live.is_closed() {
                    conn = None;
                }
            }
            None => {
                let error = StoreError::Unreachable("the database is down; retry shortly".into());
                for job in batch.drain(..) {
                    job.finish(&Err(error.clone()));
                }
            }
        }
        metrics.writer_commit_duration.observe(started.elapsed().as_secs_f64());
        if stop {
            return;
        }
    }
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
            if !db.conn().is_closed() {
                let _ = db.conn().batch("ROLLBACK");
            }
            if matches!(error, StoreError::Contended(_)) && *group_retries < MAX_RETRIES {
                *group_retries += 1;
                log::info!("a write group met a deadlock at commit; running its {} jobs again", done.len());
                for mut job in done.drain(..).rev() {
                    job.result = None;
                    queue.push_front(job);
                }
            } else {
                log::warn!("commit of a write group of {} failed: {error}", done.len());
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
    db.conn().batch("BEGIN")?;
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
        log::warn!("a write group failed: {error}");
        for job in done.drain(..).chain(queue.drain(..)) {
            job.finish(&Err(error.clone()));
        }
    };
    if let Err(error) = begin(&db, &retry_locks) {
        fail_everything(error, &mut done, &mut queue);
        return committed_events;
    }
    loop {
        while let Some(mut job) = queue.pop_front() {
            let events_before = db.events.borrow().len();
            // Two statements: the connection's borrow must end before the job borrows it.
            let savepoint = db.conn().batch("SAVEPOINT job");
            let outcome = savepoint.and_then(|()| job.execute(&db));
            let retry = matches!(outcome, Err(StoreError::Contended(_))) && job_retries < MAX_RETRIES;
            let closed = match &outcome {
                Ok(()) => db.conn().batch("RELEASE job"),
                Err(_) => db.conn().batch("ROLLBACK TO job; RELEASE job"),
            };
            if let Err(error) = closed {
                let _ = db.conn().batch("ROLLBACK");
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
            committed_events.extend(end_transaction(&db, &mut done, &mut queue, &mut group_retries));
            if let Err(error) = begin(&db, &retry_locks) {
                fail_everything(error, &mut done, &mut queue);
                return committed_events;
            }
        }
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
