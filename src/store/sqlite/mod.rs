//! The SQLite backend: one file in WAL mode. One writer thread owns the only write connection
//! and commits queued jobs in groups (writer.rs); reads come from a pool of read-only
//! connections; a checkpointer thread copies the WAL into the file off the writer's path. A
//! clean shutdown closes them all and checkpoints with TRUNCATE, leaving only the file.
//! Only this folder names rusqlite.

mod accounts;
mod admin;
mod billing;
mod connection;
mod deltas;
mod events;
mod fold;
mod forecasts;
mod reservations;
mod rollup;
mod sessions;
mod terms;
mod usage;
mod writer;

/// A stored count (never negative) as the domain holds it.
fn to_u64(value: i64) -> u64 {
    value.max(0) as u64
}

use crate::config::SqliteConfig;
use crate::domain::period::Period;
use crate::domain::ports::{Backend, ReadJob, ReadScope, ReadTx, Reply, StoreError, WriteJob, WriteKind, WriteTx};
use crate::metrics::Metrics;
use crate::store::group::WriterOptions;
use rusqlite::Connection;
use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

pub(super) use connection::check_current;
pub use connection::{backup, migrate, rebuild_rollups};

/// A read-only connection from the pool, with the increments in the delta log not yet folded
/// (deltas.rs).
pub(super) struct SqliteReader<'c>(pub(super) &'c Connection, pub(super) &'c deltas::Shared);

/// The write transaction a job runs in: the writer's connection inside `BEGIN IMMEDIATE`. It
/// also notes the events a job records, so they are counted once committed, and holds the
/// group's increments not yet folded.
pub(super) struct SqliteTx<'c>(
    pub(super) &'c Connection,
    pub(super) RefCell<Vec<String>>,
    pub(super) &'c deltas::WriterDeltas<'c>,
);

impl SqliteTx<'_> {
    pub(super) fn note_event(&self, kind: &str) {
        self.1.borrow_mut().push(kind.to_owned());
    }
}

/// What the delta log holds for counters, as a reader or the writer's transaction sees it:
/// `UsageRead`'s counter methods add it to the rows (usage.rs, `live_counter`).
trait PendingView {
    fn parts(&self, owner: deltas::Owner, pk: i64, period: Period, metric: &str) -> deltas::Parts;
    fn slot_parts(&self, owner: deltas::Owner, pk: i64, period: Period) -> deltas::SlotParts;
}

impl PendingView for SqliteReader<'_> {
    fn parts(&self, owner: deltas::Owner, pk: i64, period: Period, metric: &str) -> deltas::Parts {
        self.1.parts(owner, pk, period, metric)
    }
    fn slot_parts(&self, owner: deltas::Owner, pk: i64, period: Period) -> deltas::SlotParts {
        self.1.slot_parts(owner, pk, period)
    }
}

impl PendingView for SqliteTx<'_> {
    fn parts(&self, owner: deltas::Owner, pk: i64, period: Period, metric: &str) -> deltas::Parts {
        self.2.parts(owner, pk, period, metric)
    }
    fn slot_parts(&self, owner: deltas::Owner, pk: i64, period: Period) -> deltas::SlotParts {
        self.2.slot_parts(owner, pk, period)
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
            _ => StoreError::backend(error),
        }
    }
}

/// The database file: a writer thread for every change, a pool of readers for the rest.
pub struct SqliteBackend {
    writer: writer::Writer,
    /// The delta log's committed increments not yet folded (deltas.rs).
    deltas: Arc<deltas::Shared>,
    /// None once shut down: the pool's connections must be closed for the last connection
    /// (`checkpoint_and_close`) to remove the WAL. A read holds the lock while it runs, so
    /// shutdown waits for reads in progress.
    readers: RwLock<Option<r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>>>,
    checkpointer: Mutex<Option<connection::Checkpointer>>,
    config: SqliteConfig,
}

impl SqliteBackend {
    /// Opens (creating if needed) and migrates the database, then starts the writer and the
    /// checkpointer.
    pub fn open(config: &SqliteConfig, metrics: Arc<Metrics>) -> Result<Arc<SqliteBackend>, StoreError> {
        let mut write_connection = connection::open_writer(config)?;
        connection::migrate_connection(&mut write_connection)?;
        let shared = Arc::new(deltas::Shared::load(&write_connection)?);
        if shared.has_pending() {
            log::info!("the delta log holds increments from the last run; the writer folds them now");
        }
        let readers = connection::reader_pool(config)?;
        let options = WriterOptions { panic_after: config.writer_panic_after, ..WriterOptions::default() };
        let writer = writer::spawn(write_connection, Arc::clone(&shared), options, metrics)?;
        let backend = Arc::new(SqliteBackend {
            writer,
            deltas: shared,
            readers: RwLock::new(Some(readers)),
            checkpointer: Mutex::new(None),
            config: config.clone(),
        });
        let weak = Arc::downgrade(&backend);
        // Each tick of the checkpointer (every 200 ms) also has the writer seal the open
        // chunk of the delta log, if anything is pending, so the next group folds it even
        // when no traffic fills it: sealed at one tick, folded by the next tick's group at
        // the latest (by design; not measured).
        let checkpointer = connection::spawn_checkpointer(config, move || {
            weak.upgrade().is_some_and(|backend| {
                if backend.config.fold_on_timer && backend.deltas.has_pending() {
                    backend.writer.submit(writer::seal_job(), Reply::unanswered());
                }
                backend.is_writer_running()
            })
        })?;
        *backend.checkpointer.lock().unwrap_or_else(PoisonError::into_inner) = Some(checkpointer);
        Ok(backend)
    }

    fn with_reader<T>(
        &self,
        timeout: Duration,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let readers = self.readers.read().unwrap_or_else(PoisonError::into_inner);
        // Shut down: the writer has stopped too, and this is what callers hear of it.
        let pool = readers.as_ref().ok_or(StoreError::WriterStopped)?;
        let connection = pool.get_timeout(timeout)?;
        read(&connection)
    }
}

impl Backend for SqliteBackend {
    fn submit_job(&self, job: WriteJob, reply: Reply, kind: WriteKind) {
        self.writer.submit(writer::job(job, kind), reply);
    }

    /// Folds the delta log through the writer, and waits, when it holds anything. When the
    /// writer cannot (stopped, queue full, disk full), the read goes ahead unsettled rather
    /// than fail: it may then miss the last increments in its sums (warned), never more.
    fn settle(&self) -> Result<(), StoreError> {
        if !self.deltas.has_pending() {
            return Ok(());
        }
        let (reply, pending) = crate::domain::ports::reply_channel::<()>();
        self.writer.submit(writer::fold_job(), reply);
        if let Err(error) = pending.wait() {
            log::warn!(
                "a read could not fold the delta log first ({error}); it reads the counters as stored",
                error = crate::logging::Chain(&error)
            );
        }
        Ok(())
    }

    fn read_job(&self, job: ReadJob<'_>, scope: ReadScope) -> Result<(), StoreError> {
        self.with_reader(Duration::from_secs(5), |connection| match scope {
            ReadScope::EachStatement => job(&SqliteReader(connection, &self.deltas)),
            ReadScope::Snapshot => {
                // A deferred transaction keeps the WAL snapshot of its first read to its end;
                // dropping it rolls back, which for a read only ends it.
                let transaction = connection.unchecked_transaction()?;
                job(&SqliteReader(&transaction, &self.deltas))
            }
        })
    }

    fn is_ready(&self) -> bool {
        self.writer.is_running()
            && self
                .with_reader(Duration::from_secs(1), |connection| Ok(usage::ping(connection).is_ok()))
                .unwrap_or(false)
    }

    fn is_writer_running(&self) -> bool {
        self.writer.is_running()
    }

    /// Commits what is queued and stops the writer, then closes every connection (the
    /// writer's, the checkpointer's, the read pool's) and checkpoints the whole WAL into the
    /// file from one last connection, whose close removes `-wal` and `-shm`.
    fn shutdown(&self) {
        // Fold what is pending first, so the file left behind has no delta log to recover
        // (a start folds one anyway).
        if self.deltas.has_pending() {
            self.writer.submit(writer::fold_job(), Reply::unanswered());
        }
        self.writer.stop();
        if let Some(checkpointer) = self.checkpointer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            checkpointer.stop();
        }
        let readers = self.readers.write().unwrap_or_else(PoisonError::into_inner).take();
        drop(readers);
        match connection::checkpoint_and_close(&self.config) {
            Ok(()) => log::info!("{}: checkpointed and closed", self.config.path.display()),
            // Nothing is lost: the WAL holds every commit, and the next start replays it.
            Err(error) => {
                log::warn!(
                    "{}: final checkpoint failed ({error}); the WAL is kept",
                    self.config.path.display(),
                    error = crate::logging::Chain(&error)
                )
            }
        }
    }

    fn queue_depth(&self) -> usize {
        self.writer.queue_depth()
    }

    fn size_bytes(&self) -> Option<u64> {
        let path = self.config.path.as_os_str();
        let mut wal = path.to_owned();
        wal.push("-wal");
        let files = [path.to_owned(), wal];
        Some(files.iter().filter_map(|file| std::fs::metadata(file).ok()).map(|meta| meta.len()).sum())
    }

    fn reads_are_local(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}
