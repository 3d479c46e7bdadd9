//! The SQLite backend: one file in WAL mode. One writer thread owns the only write connection
//! and commits queued jobs in groups (writer.rs); reads come from a pool of read-only
//! connections; a checkpointer thread copies the WAL into the file off the writer's path.
//! Only this folder names rusqlite.

mod admin;
mod connection;
mod events;
mod rollup;
mod sessions;
mod usage;
mod writer;

use crate::config::SqliteConfig;
use crate::domain::ports::{Backend, ReadJob, ReadScope, ReadTx, Reply, StoreError, WriteJob, WriteTx};
use crate::metrics::Metrics;
use crate::store::group::WriterOptions;
use rusqlite::{Connection, TransactionBehavior};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(super) use connection::check_current;
pub use connection::{BackupReport, backup, migrate};

/// A read-only connection from the pool.
pub(super) struct SqliteReader<'c>(pub(super) &'c Connection);

/// The write transaction a job runs in: the writer's connection inside `BEGIN IMMEDIATE`. It
/// also notes the events a job records, so they are counted once committed.
pub(super) struct SqliteTx<'c>(pub(super) &'c Connection, pub(super) RefCell<Vec<String>>);

impl SqliteTx<'_> {
    pub(super) fn note_event(&self, kind: &str) {
        self.1.borrow_mut().push(kind.to_owned());
    }
}

impl ReadTx for SqliteReader<'_> {}
impl ReadTx for SqliteTx<'_> {}
impl WriteTx for SqliteTx<'_> {}

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
            _ => StoreError::Backend(error.to_string()),
        }
    }
}

/// The database file: a writer thread for every change, a pool of readers for the rest.
pub struct SqliteBackend {
    writer: writer::Writer,
    readers: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>,
    path: PathBuf,
}

impl SqliteBackend {
    /// Opens (creating if needed) and migrates the database, then starts the writer and the
    /// checkpointer.
    pub fn open(config: &SqliteConfig, metrics: Arc<Metrics>) -> Result<Arc<SqliteBackend>, StoreError> {
        let mut write_connection = connection::open_writer(config)?;
        connection::migrate_connection(&mut write_connection)?;
        let readers = connection::reader_pool(config)?;
        let options = WriterOptions { panic_after: config.writer_panic_after, ..WriterOptions::default() };
        let writer = writer::spawn(write_connection, options, metrics)?;
        let backend = Arc::new(SqliteBackend { writer, readers, path: config.path.clone() });
        let weak = Arc::downgrade(&backend);
        connection::spawn_checkpointer(config, move || {
            weak.upgrade().is_some_and(|backend| backend.is_writer_running())
        })?;
        Ok(backend)
    }
}

impl Backend for SqliteBackend {
    fn submit_job(&self, job: WriteJob, reply: Reply) {
        self.writer.submit(writer::job(job), reply);
    }

    fn read_job(&self, job: ReadJob<'_>, scope: ReadScope) -> Result<(), StoreError> {
        let mut connection = self.readers.get_timeout(Duration::from_secs(5))?;
        match scope {
            ReadScope::EachStatement => job(&SqliteReader(&connection)),
            ReadScope::Snapshot => {
                // A deferred transaction keeps the WAL snapshot of its first read to its end;
                // dropping it rolls back, which for a read only ends it.
                let transaction = connection.transaction_with_behavior(TransactionBehavior::Deferred)?;
                job(&SqliteReader(&transaction))
            }
        }
    }

    fn is_ready(&self) -> bool {
        self.writer.is_running()
            && self.readers.get_timeout(Duration::from_secs(1)).is_ok_and(|connection| usage::ping(&connection).is_ok())
    }

    fn is_writer_running(&self) -> bool {
        self.writer.is_running()
    }

    fn shutdown(&self) {
        self.writer.stop();
    }

    fn queue_depth(&self) -> usize {
        self.writer.queue_depth()
    }

    fn size_bytes(&self) -> Option<u64> {
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        let files = [self.path.as_os_str().to_owned(), wal];
        Some(files.iter().filter_map(|file| std::fs::metadata(file).ok()).map(|meta| meta.len()).sum())
    }

    fn reads_are_local(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}
