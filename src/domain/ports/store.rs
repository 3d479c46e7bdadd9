//! `Store`: the handle the application holds, over whichever backend the config chose. A
//! backend is a `dyn Backend` (object-safe: jobs and results are boxed); `Store` puts the
//! types back, so callers write `store.write(|tx| ...)` and get their own result type.

use super::{ReadTx, StoreError, WriteTx};
use std::any::Any;
use std::sync::Arc;

/// A write job as a backend runs it: possibly more than once before it is answered (see the
/// module contract in ports/mod.rs), its result boxed.
pub type WriteJob = Box<dyn FnMut(&dyn WriteTx) -> Result<Box<dyn Any + Send>, StoreError> + Send>;

/// A read job, run on a read connection (again on a fresh one if the first was dropped).
pub type ReadJob<'a> = &'a mut dyn FnMut(&dyn ReadTx) -> Result<(), StoreError>;

/// What a storage backend provides to the application.
pub trait Backend: Send + Sync {
    /// Runs `job` in the next group transaction and returns its result once that
    /// transaction has committed. A job that returns `Err` is rolled back alone.
    fn write_job(&self, job: WriteJob) -> Result<Box<dyn Any + Send>, StoreError>;
    /// Runs `job` on a read connection (a consistent snapshot for its duration).
    fn read_job(&self, job: ReadJob<'_>) -> Result<(), StoreError>;
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
    pub fn write<R, F>(&self, mut job: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&dyn WriteTx) -> Result<R, StoreError> + Send + 'static,
    {
        let boxed =
            self.backend.write_job(Box::new(move |tx| job(tx).map(|value| Box::new(value) as Box<dyn Any + Send>)))?;
        boxed
            .downcast::<R>()
            .map(|value| *value)
            .map_err(|_| StoreError::JobPanicked("a write job's result came back as another type".into()))
    }

    /// Runs `job` on a read connection. It may run twice: a backend replaces a connection
    /// the server dropped (a database restart) and runs the read again; reads have no effects.
    pub fn read<R>(&self, mut job: impl FnMut(&dyn ReadTx) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let mut result = None;
        self.backend.read_job(&mut |reader| {
            result = Some(job(reader)?);
            Ok(())
        })?;
        result.ok_or_else(|| StoreError::Backend("a read job did not run".into()))
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
}
