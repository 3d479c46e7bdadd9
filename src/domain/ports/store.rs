//! `Store`: the handle the application holds, over whichever backend the config chose. A
//! backend is a `dyn Backend` (object-safe: jobs and results are boxed); `Store` puts the
//! types back, so callers write `store.write(|tx| ...)` and get their own result type.

use super::{ReadTx, StoreError, WriteTx};
use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// What a write job gives back once its group is committed (or has failed).
pub type JobResult = Result<Box<dyn Any + Send>, StoreError>;

/// Where a job's result goes: a one-shot slot that a caller can wait on (a thread) or await
/// (an async task, which then holds no thread while the group commits).
struct Slot {
    state: Mutex<SlotState>,
    filled: Condvar,
}

#[derive(Default)]
struct SlotState {
    result: Option<JobResult>,
    waker: Option<Waker>,
}

fn lock(slot: &Slot) -> MutexGuard<'_, SlotState> {
    slot.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer's end of a job's slot. Dropped unsent (the writer stopped or died holding the
/// job), it answers `WriterStopped`: a caller never waits forever.
pub struct Reply(Option<Arc<Slot>>);

impl Reply {
    /// A reply nobody waits for: a job a backend queues for itself.
    pub fn unanswered() -> Reply {
        Reply(None)
    }

    pub fn send(mut self, result: JobResult) {
        if let Some(slot) = self.0.take() {
            fill(&slot, result);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            fill(&slot, Err(StoreError::WriterStopped));
        }
    }
}

fn fill(slot: &Slot, result: JobResult) {
    let waker = {
        let mut state = lock(slot);
        state.result = Some(result);
        state.waker.take()
    };
    slot.filled.notify_all();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// A write submitted and not yet answered: `wait` for it on a thread, or `.await` it.
pub struct Pending<R> {
    slot: Arc<Slot>,
    result: PhantomData<fn() -> R>,
}

impl<R: 'static> Pending<R> {
    fn resolve(result: JobResult) -> Result<R, StoreError> {
        result?
            .downcast::<R>()
            .map(|value| *value)
            .map_err(|_| StoreError::JobPanicked("a write job's result came back as another type".into()))
    }

    /// Blocks this thread until the job's group has committed (or failed).
    pub fn wait(self) -> Result<R, StoreError> {
        let mut state = lock(&self.slot);
        loop {
            if let Some(result) = state.result.take() {
                return Self::resolve(result);
            }
            state = self.slot.filled.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<R: 'static> Future for Pending<R> {
    type Output = Result<R, StoreError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.slot);
        match state.result.take() {
            Some(result) => Poll::Ready(Self::resolve(result)),
            None => {
                state.waker = Some(context.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A job's two ends: the writer's `Reply` and the caller's `Pending`.
pub fn reply_channel<R>() -> (Reply, Pending<R>) {
    let slot = Arc::new(Slot { state: Mutex::default(), filled: Condvar::new() });
    (Reply(Some(Arc::clone(&slot))), Pending { slot, result: PhantomData })
}

/// A write job as a backend runs it: possibly more than once before it is answered (see the
/// module contract in ports/mod.rs), its result boxed.
pub type WriteJob = Box<dyn FnMut(&dyn WriteTx) -> Result<Box<dyn Any + Send>, StoreError> + Send>;

/// A read job, run on a read connection (again on a fresh one if the first was dropped).
pub type ReadJob<'a> = &'a mut dyn FnMut(&dyn ReadTx) -> Result<(), StoreError>;

/// What a read job's statements see of concurrent writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadScope {
    /// Each statement sees what was committed when it ran: the cheapest read, for a job whose
    /// statements need not agree (a check reads one user's counter).
    EachStatement,
    /// One read transaction: every statement sees the same committed moment (SQLite: a
    /// deferred transaction, whose WAL snapshot holds from its first read; PostgreSQL:
    /// REPEATABLE READ, READ ONLY). For views that add up several reads.
    Snapshot,
}

/// What a write job may do with counters, so a backend that keeps recent increments apart
/// from the stored counters (SQLite's delta log) knows when to fold them in first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Records usage: reads counters only through `UsageRead` (which add what is pending)
    /// and changes them only through `increment_within` / `increment_account_within`.
    Usage,
    /// Anything else: the backend first folds every pending increment into the counters
    /// and rollups, so the job's SQL sees them as stored.
    Settled,
}

/// What a storage backend provides to the application.
pub trait Backend: Send + Sync {
    /// Queues `job` for the next group transaction; `reply` gets its result once that
    /// transaction has committed (a job that returns `Err` is rolled back alone). Returns
    /// once the job is queued: it waits only while the queue is full.
    fn submit_job(&self, job: WriteJob, reply: Reply, kind: WriteKind);
    /// Returns once every increment committed before the call is in the stored counters
    /// and rollups (a no-op for a backend that updates them in place).
    fn settle(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Runs `job` on a read connection. With `ReadScope::EachStatement` each of its
    /// statements sees what was committed when it ran, so several statements are not one
    /// snapshot (a view may mix a moment before and after a concurrent write); with
    /// `ReadScope::Snapshot` they all see one moment.
    fn read_job(&self, job: ReadJob<'_>, scope: ReadScope) -> Result<(), StoreError>;
    /// Whether the database answers a read and this node's writer is running.
    fn is_ready(&self) -> bool;
    /// False once the writer has died for good: the process should exit and be restarted.
    fn is_writer_running(&self) -> bool;
    /// Commits every job already queued, then stops the writer.
    fn shutdown(&self);
    /// Jobs waiting for the writer.
    fn queue_depth(&self) -> usize;
    /// Bytes the database occupies, when the backend can tell cheaply.
    fn size_bytes(&self) -> Option<u64>;
    /// "sqlite" or "postgres", for logs and /metrics.
    fn kind(&self) -> &'static str;
    /// True when a read is local and short (a file on this machine), so a caller may run it
    /// on a thread that must not block for long; false when it crosses a network.
    fn reads_are_local(&self) -> bool;
}

/// The database, as the application sees it.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Store {
        Store { backend }
    }

    /// Runs `job` on the writer inside the next group transaction and returns its result
    /// once that transaction has committed. A job that returns `Err` is rolled back alone.
    pub fn write<R, F>(&self, job: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&dyn WriteTx) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(job).wait()
    }

    /// Queues `job` like `write`, without waiting for its commit: the returned `Pending` is
    /// waited for or awaited.
    pub fn submit<R, F>(&self, job: F) -> Pending<R>
    where
        R: Send + 'static,
        F: FnMut(&dyn WriteTx) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit_as(WriteKind::Settled, job)
    }

    /// Queues a job that records usage (`WriteKind::Usage`): the hot path's tracks, uses and
    /// reservations, which a backend may run without folding pending increments first.
    pub fn submit_usage<R, F>(&self, job: F) -> Pending<R>
    where
        R: Send + 'static,
        F: FnMut(&dyn WriteTx) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit_as(WriteKind::Usage, job)
    }

    fn submit_as<R, F>(&self, kind: WriteKind, mut job: F) -> Pending<R>
    where
        R: Send + 'static,
        F: FnMut(&dyn WriteTx) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, pending) = reply_channel();
        let boxed: WriteJob = Box::new(move |tx| job(tx).map(|value| Box::new(value) as Box<dyn Any + Send>));
        self.backend.submit_job(boxed, reply, kind);
        pending
    }

    /// Runs `job` on a read connection. It may run twice: a backend replaces a connection
    /// the server dropped (a database restart) and runs the read again; reads have no effects.
    /// Each statement sees what was committed when it ran (`ReadScope::EachStatement`),
    /// every increment included: the backend settles first (`Backend::settle`), so a read
    /// of stored counters, rollups or indexes misses nothing acknowledged before it began.
    pub fn read<R>(&self, job: impl FnMut(&dyn ReadTx) -> Result<R, StoreError>) -> Result<R, StoreError> {
        self.backend.settle()?;
        self.read_in(ReadScope::EachStatement, job)
    }

    /// Runs `job` in one read transaction: every statement sees the same committed moment
    /// (`ReadScope::Snapshot`), settled first as `read` is. It may run twice, as `read` may.
    pub fn read_snapshot<R>(&self, job: impl FnMut(&dyn ReadTx) -> Result<R, StoreError>) -> Result<R, StoreError> {
        self.backend.settle()?;
        self.read_in(ReadScope::Snapshot, job)
    }

    /// A read on the hot path (a check, a user's standing, feature flags): like `read`, not
    /// settled, so it never waits for the writer. It must read counters only through
    /// `UsageRead`, whose counter methods add what is pending.
    pub fn read_live<R>(&self, job: impl FnMut(&dyn ReadTx) -> Result<R, StoreError>) -> Result<R, StoreError> {
        self.read_in(ReadScope::EachStatement, job)
    }

    /// `read_live` in one read transaction, as `read_snapshot` is.
    pub fn read_live_snapshot<R>(
        &self,
        job: impl FnMut(&dyn ReadTx) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.read_in(ReadScope::Snapshot, job)
    }

    fn read_in<R>(
        &self,
        scope: ReadScope,
        mut job: impl FnMut(&dyn ReadTx) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut result = None;
        self.backend.read_job(
            &mut |reader| {
                result = Some(job(reader)?);
                Ok(())
            },
            scope,
        )?;
        result.ok_or_else(|| StoreError::backend("a read job did not run"))
    }

    pub fn is_ready(&self) -> bool {
        self.backend.is_ready()
    }

    pub fn is_writer_running(&self) -> bool {
        self.backend.is_writer_running()
    }

    pub fn shutdown(&self) {
        self.backend.shutdown();
    }

    pub fn queue_depth(&self) -> usize {
        self.backend.queue_depth()
    }

    pub fn size_bytes(&self) -> Option<u64> {
        self.backend.size_bytes()
    }

    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    pub fn reads_are_local(&self) -> bool {
        self.backend.reads_are_local()
    }
}
