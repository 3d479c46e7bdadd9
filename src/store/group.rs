//! The writer thread both backends share: jobs arrive on a bounded channel; the thread takes
//! everything queued (up to `max_batch`) as one group and hands it to the backend's
//! `commit` (which runs each job in its own savepoint inside one transaction, commits once,
//! and only then answers each job). One fsync covers the whole group, and no caller hears
//! "done" before the commit that holds its write has returned. What differs between the
//! backends is only `commit`.

use crate::domain::ports::{JobResult, Reply, StoreError};
use crate::metrics::{Metrics, type_labels};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub(super) struct WriterOptions {
    /// Jobs committed together at most.
    pub max_batch: usize,
    /// Jobs waiting at most; past it a job is refused with `QueueFull`.
    pub queue_capacity: usize,
    /// Test builds only: panic (outside any job) after this many groups.
    pub panic_after: Option<u64>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { max_batch: 512, queue_capacity: 8192, panic_after: None }
    }
}

/// A queued job (`J`: the backend's form of it) with where its result goes.
pub(super) struct Pending<J> {
    pub job: J,
    pub result: Option<JobResult>,
    reply: Reply,
}

impl<J> Pending<J> {
    pub fn new(job: J, reply: Reply) -> Pending<J> {
        Pending { job, result: None, reply }
    }

    /// Runs `run` (the job on the backend's transaction), keeping its result; a panic is the
    /// job's error. Returns the error when it failed (its savepoint is then rolled back).
    pub fn execute(&mut self, run: impl FnOnce(&mut J) -> JobResult) -> Result<(), StoreError> {
        let job = &mut self.job;
        let result = catch_unwind(AssertUnwindSafe(|| run(job)))
            .unwrap_or_else(|panic| Err(StoreError::JobPanicked(panic_message(panic.as_ref()))));
        let status = match &result {
            Ok(_) => Ok(()),
            Err(error) => Err(error.clone()),
        };
        self.result = Some(result);
        status
    }

    /// Delivers the result now that the group's transaction has committed or failed.
    pub fn finish(self, committed: &Result<(), StoreError>) {
        let result = match committed {
            Ok(()) => self.result.unwrap_or(Err(StoreError::WriterStopped)),
            Err(error) => Err(error.clone()),
        };
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

/// Answers every job of `batch` with `error`, leaving it empty.
pub(super) fn fail_all<J>(batch: &mut Vec<Pending<J>>, error: &StoreError) {
    for job in batch.drain(..) {
        job.finish(&Err(error.clone()));
    }
}

enum Message<J> {
    Job(Pending<J>),
    Stop,
}

struct Shared {
    running: AtomicBool,
    depth: AtomicUsize,
}

/// The handle callers queue jobs through.
pub(super) struct Writer<J> {
    sender: SyncSender<Message<J>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<J: Send + 'static> Writer<J> {
    /// Starts the thread. `commit` runs one group, answers every job of it (leaving it
    /// empty) and returns the event types the committed jobs recorded.
    pub(super) fn spawn(
        options: WriterOptions,
        metrics: Arc<Metrics>,
        commit: impl FnMut(&mut Vec<Pending<J>>) -> Vec<String> + Send + 'static,
    ) -> Result<Writer<J>, StoreError> {
        let (sender, receiver) = sync_channel(options.queue_capacity);
        let shared = Arc::new(Shared { running: AtomicBool::new(true), depth: AtomicUsize::new(0) });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tally-writer".into())
            .spawn(move || run(receiver, thread_shared, options, &metrics, commit))
            .map_err(|error| StoreError::Open(format!("cannot start the writer thread: {error}")))?;
        Ok(Writer { sender, shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues `job`; `reply` hears its result after the commit that holds it. A job the
    /// writer never runs (it stopped or died) is answered `WriterStopped` by `reply`'s drop.
    /// Never waits: past `queue_capacity` the job is answered `QueueFull` (503) at once, so
    /// no caller (an async worker among them) blocks behind a stalled writer.
    pub(super) fn submit(&self, job: J, reply: Reply) {
        if !self.is_running() {
            reply.send(Err(StoreError::WriterStopped));
            return;
        }
        self.shared.depth.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(Message::Job(Pending::new(job, reply))) {
            Ok(()) => {}
            Err(TrySendError::Full(Message::Job(pending))) => {
                self.shared.depth.fetch_sub(1, Ordering::Relaxed);
                pending.reply.send(Err(StoreError::QueueFull));
            }
            Err(refused) => {
                self.shared.depth.fetch_sub(1, Ordering::Relaxed);
                drop(refused);
            }
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

fn run<J>(
    receiver: Receiver<Message<J>>,
    shared: Arc<Shared>,
    options: WriterOptions,
    metrics: &Metrics,
    mut commit: impl FnMut(&mut Vec<Pending<J>>) -> Vec<String>,
) {
    let mut batch: Vec<Pending<J>> = Vec::with_capacity(options.max_batch);
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
        let committed_events = commit(&mut batch);
        metrics.writer_commit_duration.observe(started.elapsed().as_secs_f64());
        for kind in committed_events {
            metrics.events.get_or_create(&type_labels(kind)).inc();
        }
        if stop {
            return;
        }
    }
}
