//! The writer thread: the only owner of the write connection. Jobs arrive on a bounded
//! channel; the thread takes everything queued (up to `max_batch`), runs each job in its own
//! savepoint inside one `BEGIN IMMEDIATE` transaction, commits once, and only then hands each
//! job its result. One fsync covers the whole group, and no caller hears "done" before the
//! commit that holds its write has returned.

use super::SqliteTx;
use crate::domain::ports::{Reply, StoreError, WriteJob};
use crate::metrics::{Metrics, type_labels};
use rusqlite::Connection;
use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub(super) struct WriterOptions {
    /// Jobs committed together at most.
    pub max_batch: usize,
    /// Jobs waiting at most; a caller past it waits for room.
    pub queue_capacity: usize,
    /// Test builds only: panic (outside any job) after this many groups.
    pub panic_after: Option<u64>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { max_batch: 512, queue_capacity: 8192, panic_after: None }
    }
}

/// A job as this writer runs it: on the SQLite transaction itself.
type SqliteJob = Box<dyn FnMut(&SqliteTx<'_>) -> Result<Box<dyn Any + Send>, StoreError> + Send>;

/// A queued job with the channel its result goes back on.
struct Pending {
    job: SqliteJob,
    result: Option<Result<Box<dyn Any + Send>, StoreError>>,
    reply: Reply,
}

impl Pending {
    /// Runs the job; returns its error when it failed (its savepoint is then rolled back).
    fn execute(&mut self, tx: &SqliteTx<'_>) -> Result<(), StoreError> {
        let job = &mut self.job;
        let result = catch_unwind(AssertUnwindSafe(|| job(tx)))
            .unwrap_or_else(|panic| Err(StoreError::JobPanicked(panic_message(panic.as_ref()))));
        let status = match &result {
            Ok(_) => Ok(()),
            Err(error) => Err(error.clone()),
        };
        self.result = Some(result);
        status
    }

    /// Delivers the result now that the group's transaction has committed or failed.
    fn finish(self, committed: Result<(), StoreError>) {
        let result = match committed {
            Ok(()) => self.result.unwrap_or(Err(StoreError::WriterStopped)),
            Err(error) => Err(error),
        };
        // The caller may have gone (its connection closed); nothing to tell then.
        self.reply.send(result);
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
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
        connection: Connection,
        options: WriterOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Writer, StoreError> {
        let (sender, receiver) = sync_channel(options.queue_capacity);
        let shared = Arc::new(Shared { running: AtomicBool::new(true), depth: AtomicUsize::new(0) });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tally-writer".into())
            .spawn(move || run(connection, receiver, thread_shared, options, &metrics))
            .map_err(|error| StoreError::Open(format!("cannot start the writer thread: {error}")))?;
        Ok(Writer { sender, shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues `job`; `reply` hears its result after the commit that holds it. A job the
    /// writer never runs (it stopped or died) is answered `WriterStopped` by `reply`'s drop.
    pub(super) fn submit(&self, job: WriteJob, reply: Reply) {
        if !self.is_running() {
            reply.send(Err(StoreError::WriterStopped));
            return;
        }
        let mut job = job;
        let job: SqliteJob = Box::new(move |tx: &SqliteTx<'_>| job(tx));
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

    /// Asks the thread to commit what is queued and exit, and waits for it.
    pub(super) fn stop(&self) {
        let thread = self.thread.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(thread) = thread {
            let _ = self.sender.send(Message::Stop);
            let _ = thread.join();
        }
    }
}

/// Marks the writer stopped when its thread ends, by return or by panic.
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
    connection: Connection,
    receiver: Receiver<Message>,
    shared: Arc<Shared>,
    options: WriterOptions,
    metrics: &Metrics,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(options.max_batch);
    // Declared after `batch`, so dropped before it: when this thread dies the writer is
    // marked stopped before the jobs it held are dropped and their callers answered 503.
    let _guard = RunningGuard(Arc::clone(&shared));
    let mut groups: u64 = 0;
    loop {
        match receiver.recv() {
            Ok(Message::Job(job)) => batch.push(job),
            Ok(Message::Stop) | Err(_) => return,
        }
        let mut stop = false;
        while batch.len() < options.max_batch {
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
        if options.panic_after.is_some_and(|limit| groups > limit) {
            panic!("injected writer failure after {limit} groups", limit = groups - 1);
        }
        let depth = shared.depth.fetch_sub(batch.len(), Ordering::Relaxed) - batch.len();
        metrics.writer_queue_depth.set(depth as i64);
        metrics.writer_batch_size.observe(batch.len() as f64);
        let started = Instant::now();
        let committed_events = commit_group(&connection, &mut batch);
        metrics.writer_commit_duration.observe(started.elapsed().as_secs_f64());
        for kind in committed_events {
            metrics.events.get_or_create(&type_labels(kind)).inc();
        }
        if stop {
            return;
        }
    }
}

fn exec(connection: &Connection, sql: &str) -> Result<(), StoreError> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn fail_all(batch: &mut Vec<Pending>, error: &StoreError) {
    for job in batch.drain(..) {
        job.finish(Err(error.clone()));
    }
}

/// Runs `batch` in one transaction and answers every job. Leaves `batch` empty. Returns the
/// types of the events the committed jobs recorded (none if the group failed).
fn commit_group(connection: &Connection, batch: &mut Vec<Pending>) -> Vec<String> {
    if let Err(error) = exec(connection, "BEGIN IMMEDIATE") {
        log::warn!("write group of {} refused: {error}", batch.len());
        fail_all(batch, &error);
        return Vec::new();
    }
    let tx = SqliteTx(connection, RefCell::new(Vec::new()));
    for job in batch.iter_mut() {
        let events_before = tx.1.borrow().len();
        let outcome = exec(connection, "SAVEPOINT job").and_then(|()| job.execute(&tx));
        if connection.is_autocommit() {
            // SQLite rolled the whole transaction back itself (a full disk, an I/O error):
            // every job of the group is undone, so none may be acknowledged.
            let error = outcome.err().unwrap_or(StoreError::Backend("transaction rolled back".into()));
            log::warn!("write group of {} rolled back: {error}", batch.len());
            fail_all(batch, &error);
            return Vec::new();
        }
        let closed = match outcome {
            Ok(()) => exec(connection, "RELEASE job"),
            Err(_) => {
                tx.1.borrow_mut().truncate(events_before);
                exec(connection, "ROLLBACK TO job").and_then(|()| exec(connection, "RELEASE job"))
            }
        };
        if let Err(error) = closed {
            let _ = exec(connection, "ROLLBACK");
            fail_all(batch, &error);
            return Vec::new();
        }
    }
    match exec(connection, "COMMIT") {
        Ok(()) => {
            for job in batch.drain(..) {
                job.finish(Ok(()));
            }
            tx.1.into_inner()
        }
        Err(error) => {
            log::warn!("commit of a write group of {} failed: {error}", batch.len());
            if !connection.is_autocommit() {
                let _ = exec(connection, "ROLLBACK");
            }
            fail_all(batch, &error);
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = crate::domain::ports::Pending<()>;

    /// A job that runs `op` on the SQLite transaction underneath.
    fn job(mut op: impl FnMut(&SqliteTx<'_>) -> Result<(), StoreError> + Send + 'static) -> (Pending, Answer) {
        let (reply, answer) = crate::domain::ports::reply_channel();
        let job: SqliteJob = Box::new(move |tx: &SqliteTx<'_>| op(tx).map(|()| Box::new(()) as Box<dyn Any + Send>));
        (Pending { job, result: None, reply }, answer)
    }

    fn insert(value: i64) -> impl FnMut(&SqliteTx<'_>) -> Result<(), StoreError> + Send + 'static {
        move |tx| {
            tx.0.execute("INSERT INTO t (v) VALUES (?1)", [value])?;
            tx.note_event("test_event");
            Ok(())
        }
    }

    fn stored(connection: &Connection) -> Vec<i64> {
        let mut statement = connection.prepare("SELECT v FROM t ORDER BY v").unwrap();
        statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn database() -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        connection
    }

    #[test]
    fn a_failing_job_rolls_back_alone_and_its_neighbours_commit() {
        let connection = database();
        let (first, first_answer) = job(insert(1));
        let (failing, failing_answer) = job(|tx| {
            insert(2)(tx)?;
            Err(StoreError::Backend("refused".into()))
        });
        let (last, last_answer) = job(insert(3));
        let mut batch = vec![first, failing, last];
        let events = commit_group(&connection, &mut batch);
        assert!(batch.is_empty());
        assert_eq!(stored(&connection), [1, 3], "the failing job's insert is undone, the others kept");
        assert!(first_answer.wait().is_ok() && last_answer.wait().is_ok());
        assert!(failing_answer.wait().is_err());
        assert_eq!(events, ["test_event", "test_event"], "the rolled-back job's event is not counted");
    }

    #[test]
    fn a_group_sqlite_rolled_back_answers_every_job_with_the_error() {
        let connection = database();
        let (first, first_answer) = job(insert(1));
        // What SQLite does by itself on a full disk or an I/O error: the whole transaction
        // is gone, and the connection is back in autocommit mode.
        let (breaking, breaking_answer) = job(|tx| {
            tx.0.execute_batch("ROLLBACK")?;
            Err(StoreError::Full)
        });
        let (last, last_answer) = job(insert(3));
        let mut batch = vec![first, breaking, last];
        let events = commit_group(&connection, &mut batch);
        assert!(events.is_empty());
        assert!(stored(&connection).is_empty(), "nothing of the group is stored");
        for answer in [first_answer, breaking_answer, last_answer] {
            assert!(matches!(answer.wait(), Err(StoreError::Full)), "every job hears the failure");
        }
    }

    #[test]
    fn a_panicking_job_is_answered_and_rolled_back() {
        let connection = database();
        let (first, first_answer) = job(insert(1));
        let (panicking, panicking_answer) = job(|tx| {
            insert(2)(tx)?;
            panic!("a bug in a job")
        });
        let mut batch = vec![first, panicking];
        commit_group(&connection, &mut batch);
        assert_eq!(stored(&connection), [1]);
        assert!(first_answer.wait().is_ok());
        assert!(matches!(panicking_answer.wait(), Err(StoreError::JobPanicked(_))));
    }
}
