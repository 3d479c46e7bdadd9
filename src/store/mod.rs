//! Storage: the only module that knows SQL. One writer thread owns the only write
//! connection and commits queued jobs in groups (writer.rs); reads come from a pool of
//! read-only connections. The domain sees storage only through `UsageRead`/`UsageWrite`.

mod admin;
mod connection;
mod events;
mod rollup;
mod usage;
mod writer;

use crate::config::DatabaseConfig;
use crate::domain::period::Period;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

pub use admin::{AdminRead, AdminWrite, AuditRecord, CounterRecord, UserExport};
pub use connection::{BackupReport, SchemaReport, backup, migrate};
pub use events::{AttemptOutcome, DeliveryRecord, EventQuery, EventRead, EventRecord, EventWrite, Requeue};
pub use writer::WriteTx;

/// Why storage could not do what was asked. `is_unavailable` errors are conditions of the
/// file or the machine (busy, full, read-only) that a retry may clear: HTTP answers 503.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is locked by another connection (busy_timeout expired)")]
    Busy,
    #[error("the database or its disk is full")]
    Full,
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    #[error("the write thread has stopped")]
    WriterStopped,
    #[error("no read connection became free in time: {0}")]
    NoReader(String),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("the database schema is not one this build can use: {0}")]
    Schema(String),
    #[error("a write job panicked: {0}")]
    JobPanicked(String),
    #[error("SQLite error: {0}")]
    Sqlite(String),
}

impl StoreError {
    /// True when the failure is the storage's state, not a bug: callers should retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Busy
                | StoreError::Full
                | StoreError::ReadOnly(_)
                | StoreError::WriterStopped
                | StoreError::NoReader(_)
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::DiskFull) => StoreError::Full,
            Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen) => StoreError::ReadOnly(error.to_string()),
            Some(ErrorCode::NotADatabase) => {
                StoreError::Open(format!("{error}: the file exists but is not an SQLite database"))
            }
            _ => StoreError::Sqlite(error.to_string()),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> StoreError {
        StoreError::NoReader(error.to_string())
    }
}

/// A stored user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub pk: i64,
    pub uuid: String,
    pub user_id: String,
    pub plan: String,
    pub created_at_ms: i64,
}

/// The first answer given under an idempotency key, replayed for repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnswer {
    pub fingerprint: Vec<u8>,
    pub status: u16,
    pub body: String,
}

/// What reading usage needs from storage.
pub trait UsageRead {
    fn find_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError>;
    fn counter(&self, user_pk: i64, period: Period, metric: &str) -> Result<u64, StoreError>;
    /// Every counter of the user in the period, by metric.
    fn counters(&self, user_pk: i64, period: Period) -> Result<Vec<(String, u64)>, StoreError>;
    /// Uses of a rate-limited feature strictly after `since_ms`.
    fn count_feature_uses(&self, user_pk: i64, feature: &str, since_ms: i64) -> Result<u32, StoreError>;
    /// The time of the use after `skip` older ones, among uses strictly after `since_ms`.
    fn nth_oldest_feature_use(
        &self,
        user_pk: i64,
        feature: &str,
        since_ms: i64,
        skip: u32,
    ) -> Result<Option<i64>, StoreError>;
}

/// What recording usage needs (events included); only the writer's transaction implements it.
pub trait UsageWrite: UsageRead + EventWrite {
    fn create_user(&self, user_id: &str, plan: &str, now_ms: i64) -> Result<UserRecord, StoreError>;
    fn set_plan(&self, user_pk: i64, plan: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Adds `amount` to the counter unless the result would pass `ceiling`; returns the new
    /// value, or `None` (and changes nothing) when it would.
    fn increment_within(
        &self,
        user_pk: i64,
        period: Period,
        metric: &str,
        amount: u64,
        ceiling: u64,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError>;
    fn record_feature_use(&self, user_pk: i64, feature: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Forgets uses at or before `until_ms`: they can no longer count in any window.
    fn prune_feature_uses(&self, user_pk: i64, feature: &str, until_ms: i64) -> Result<(), StoreError>;
    /// The answer stored under `key` if it was stored at or after `not_before_ms`.
    fn find_answer(&self, key: &str, not_before_ms: i64) -> Result<Option<StoredAnswer>, StoreError>;
    fn save_answer(&self, key: &str, user_id: &str, answer: &StoredAnswer, now_ms: i64) -> Result<(), StoreError>;
}

/// A read-only connection from the pool.
pub struct Reader<'c>(&'c rusqlite::Connection);

/// The database: a writer thread for every change, a pool of readers for the rest.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: writer::Writer,
    readers: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database, then starts the writer.
    pub fn open(config: &DatabaseConfig, metrics: Arc<Metrics>) -> Result<Store, StoreError> {
        let mut write_connection = connection::open_writer(config)?;
        connection::migrate_connection(&mut write_connection)?;
        let readers = connection::reader_pool(config)?;
        let options =
            writer::WriterOptions { panic_after: config.writer_panic_after, ..writer::WriterOptions::default() };
        let writer = writer::Writer::spawn(write_connection, options, metrics)?;
        let store = Store { inner: Arc::new(Inner { writer, readers }) };
        connection::spawn_checkpointer(config, store.clone())?;
        Ok(store)
    }

    /// Runs `job` on the writer inside the next group transaction and returns its result
    /// once that transaction has committed. A job that returns `Err` is rolled back alone.
    pub fn write<R, F>(&self, job: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.inner.writer.submit(job)
    }

    /// Runs `job` on a pooled read-only connection.
    pub fn read<R>(&self, job: impl FnOnce(&Reader<'_>) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let connection = self.inner.readers.get_timeout(Duration::from_secs(5))?;
        job(&Reader(&connection))
    }

    /// Whether the database answers a read and the writer is running.
    pub fn is_ready(&self) -> bool {
        self.inner.writer.is_running() && self.read(|reader| reader.ping()).is_ok()
    }

    pub fn is_writer_running(&self) -> bool {
        self.inner.writer.is_running()
    }

    /// Stops the writer after it has committed every job already queued.
    pub fn shutdown(&self) {
        self.inner.writer.stop();
    }

    /// Jobs waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.inner.writer.queue_depth()
    }
}
