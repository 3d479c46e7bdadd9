//! Opening the database file: pragmas for every connection, the one-time WAL switch, the
//! read pool, and the embedded refinery migrations. Nothing here runs per request.

use crate::config::{SqliteConfig, Synchronous};
use crate::domain::ports::StoreError;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

use crate::store::SchemaReport;

fn check_parent_directory(path: &Path) -> Result<(), StoreError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => return Ok(()),
    };
    if !parent.is_dir() {
        return Err(StoreError::Open(format!(
            "the directory {} for the database file {} does not exist; create it or change database.path",
            parent.display(),
            path.display()
        )));
    }
    Ok(())
}

fn apply_pragmas(connection: &Connection, config: &SqliteConfig) -> rusqlite::Result<()> {
    let synchronous = match config.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    connection.busy_timeout(config.busy_timeout)?;
    connection.execute_batch(&format!("PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous};"))?;
    // Read pages through a shared memory map instead of a pread each; SQLite's own cache
    // then only holds pages being changed. Both are bounded: 1 GiB of address space, and
    // 16 MiB of private cache per connection.
    connection.execute_batch(&format!("PRAGMA mmap_size = {}; PRAGMA cache_size = -16384;", 1u64 << 30))?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Opens the read-write connection the writer thread will own, and puts the file in WAL
/// mode (stored in the file, so readers inherit it).
pub(super) fn open_writer(config: &SqliteConfig) -> Result<Connection, StoreError> {
    check_parent_directory(&config.path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(&config.path, flags)
        .map_err(|error| StoreError::Open(format!("{}: {error}", config.path.display())))?;
    apply_pragmas(&connection, config).map_err(|error| describe_open_error(config, error))?;
    // The first statement that reads the file: a file that is not SQLite fails here, before
    // anything is written to it.
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|error| describe_open_error(config, error))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open(format!(
            "{}: could not switch to WAL mode (still {mode})",
            config.path.display()
        )));
    }
    // The writer reads through its own page cache, not the memory map: it is the only
    // connection that changes the file, so its cache stays valid from one transaction to the
    // next, where every page fetched through the map is first looked up in the WAL index
    // (`walFindFrame`), whose chains grow with every frame of a hot page. Measured with
    // bench/instructions.sh: 175k -> 145k instructions per track. Its folds' scratch table
    // (deltas.rs) lives in memory.
    connection.execute_batch("PRAGMA mmap_size = 0; PRAGMA temp_store = MEMORY;")?;
    // Checkpoints run on their own thread (spawn_checkpointer); this is only a backstop that
    // keeps the WAL bounded (about 40 MB) should that thread fall behind.
    connection.query_row("PRAGMA wal_autocheckpoint = 10000", [], |_| Ok(()))?;
    // SQLite opens a write-protected file read-only without a word; say so at startup.
    if connection.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(StoreError::Open(format!(
            "{}: the database file (or its directory) is read-only; Tally needs to write it",
            config.path.display()
        )));
    }
    if let Some(megabytes) = config.max_size_mb {
        let page_size: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let pages = (megabytes << 20) / (page_size.max(1) as u64);
        // A database already larger keeps its size as the cap (SQLite never truncates here).
        connection.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    }
    Ok(connection)
}

fn describe_open_error(config: &SqliteConfig, error: rusqlite::Error) -> StoreError {
    match StoreError::from(error) {
        StoreError::Open(message) | StoreError::ReadOnly(message) => {
            StoreError::Open(format!("{}: {message}", config.path.display()))
        }
        StoreError::Backend(source) => StoreError::Open(format!("{}: {source}", config.path.display())),
        other => other,
    }
}

pub(super) fn reader_pool(config: &SqliteConfig) -> Result<r2d2::Pool<SqliteConnectionManager>, StoreError> {
    let read_config = config.clone();
    let manager = SqliteConnectionManager::file(&config.path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |connection| {
            apply_pragmas(connection, &read_config)?;
            connection.execute_batch("PRAGMA query_only = ON;")
        });
    r2d2::Pool::builder()
        // A read-only SQLite connection does not go stale; testing each checkout costs a
        // query per request.
        .test_on_check_out(false)
        .max_size(config.read_connections)
        .min_idle(Some(1))
        .build(manager)
        .map_err(|error| StoreError::Open(format!("{}: read pool: {error}", config.path.display())))
}

fn latest_known_version() -> u32 {
    embedded::migrations::runner().get_migrations().iter().map(|m| m.version() as u32).max().unwrap_or(0)
}

/// Applies the migrations this build embeds. Refuses a database that a newer Tally has
/// migrated past what this build knows, rather than run on a schema it does not understand.
pub(super) fn migrate_connection(connection: &mut Connection) -> Result<SchemaReport, StoreError> {
    let runner = embedded::migrations::runner();
    let latest = latest_known_version();
    // Read the newest applied version with plain SQL: refinery's own reader panics on a
    // history row it cannot parse, and a refusal must never be a crash.
    let has_history: bool = connection
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history'")?
        .exists([])?;
    if has_history {
        let newest: Option<(i64, String)> = connection
            .query_row("SELECT version, name FROM refinery_schema_history ORDER BY version DESC LIMIT 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        if let Some((version, name)) = newest
            && version > i64::from(latest)
        {
            return Err(StoreError::Schema(format!(
                "the database is at schema version {version} ({name}), written by a newer Tally; \
                 this build knows versions up to {latest}. Run the newer Tally, or restore a backup"
            )));
        }
    }
    let runner = runner.set_abort_missing(true).set_abort_divergent(true);
    // refinery unwraps what it reads from its history table; a damaged row must refuse the
    // start with a message, not abort it.
    let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run(connection)))
        .map_err(|_| StoreError::Schema("the migration history table is damaged (refinery could not read it)".into()))?
        .map_err(|error| StoreError::Schema(error.to_string()))?;
    Ok(SchemaReport {
        applied: report.applied_migrations().iter().map(|m| format!("V{}__{}", m.version(), m.name())).collect(),
        version: latest,
    })
}

/// Refuses a file that is not at the schema this build writes (`copy-db` reads every column
/// of it): run `tally migrate` first.
pub(in crate::store) fn check_current(connection: &Connection) -> Result<(), StoreError> {
    let latest = latest_known_version();
    let version: Option<i64> = connection
        .query_row("SELECT max(version) FROM refinery_schema_history", [], |row| row.get(0))
        .optional()?
        .flatten();
    match version {
        Some(version) if version == i64::from(latest) => Ok(()),
        other => Err(StoreError::Schema(format!(
            "the SQLite database is at schema version {}, this build writes {latest}: run `tally migrate` on it first",
            other.map_or("none".to_owned(), |version| version.to_string())
        ))),
    }
}

/// How often the checkpointer copies committed WAL frames into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// The checkpointer thread; `stop` ends it and closes its connection.
pub(super) struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    pub(super) fn stop(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            log::warn!("the checkpoint thread panicked");
        }
    }
}

/// Starts the checkpointer: a thread with its own connection that runs PASSIVE checkpoints,
/// which never wait for the writer and never block it, so the writer's commits do not pay
/// for copying the WAL into the database file. It stops when the writer stops, or at once
/// when told to.
pub(super) fn spawn_checkpointer(
    config: &SqliteConfig,
    writer_running: impl Fn() -> bool + Send + 'static,
) -> Result<Checkpointer, StoreError> {
    let connection = Connection::open_with_flags(&config.path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|error| describe_open_error(config, error))?;
    apply_pragmas(&connection, config).map_err(|error| describe_open_error(config, error))?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("tally-checkpoint".into())
        .spawn(move || {
            // Nothing is ever sent: `stop` being dropped is the signal.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                if !writer_running() {
                    break;
                }
                if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    log::warn!(
                        "checkpoint failed (the next one retries): {error}",
                        error = crate::logging::Chain(&error)
                    );
                }
            }
        })
        .map_err(|error| StoreError::Open(format!("cannot start the checkpoint thread: {error}")))?;
    Ok(Checkpointer { stop, thread })
}

/// The last step of a clean shutdown, once every other connection to the file is closed:
/// copies the whole WAL into the database file and truncates it (TRUNCATE waits for no
/// reader because there is none), then closes; SQLite removes `-wal` and `-shm` when the last
/// connection closes, so only the database file is left.
pub(super) fn checkpoint_and_close(config: &SqliteConfig) -> Result<(), StoreError> {
    let connection = Connection::open_with_flags(&config.path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|error| describe_open_error(config, error))?;
    connection.busy_timeout(config.busy_timeout)?;
    let blocked: i64 = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if blocked != 0 {
        return Err(StoreError::Busy);
    }
    connection.close().map_err(|(_, error)| StoreError::from(error))
}

/// What `tally backup` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub bytes: u64,
}

/// `tally backup PATH`: `VACUUM INTO` from a read-only connection, which reads one consistent
/// snapshot (every transaction committed before it began, nothing after) while the server
/// keeps writing; then checks the copy's integrity. Never overwrites an existing file.
pub fn backup(config: &SqliteConfig, target: &Path) -> Result<BackupReport, StoreError> {
    if target.exists() {
        return Err(StoreError::Open(format!("{} already exists; choose a new file for the backup", target.display())));
    }
    check_parent_directory(target)?;
    if !config.path.is_file() {
        return Err(StoreError::Open(format!("{} does not exist: there is nothing to back up", config.path.display())));
    }
    let source = Connection::open_with_flags(&config.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|error| describe_open_error(config, error))?;
    source.busy_timeout(config.busy_timeout)?;
    let target_text = target.to_str().ok_or_else(|| StoreError::Open("the backup path is not valid UTF-8".into()))?;
    source.execute("VACUUM INTO ?1", [target_text]).map_err(|error| describe_open_error(config, error))?;
    // The copy is a file of its own: what the running server had not yet folded from the
    // delta log is folded into the copy's counters now, so it reads complete as it stands.
    let copy = Connection::open(target)?;
    let has_log: bool = copy.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'usage_deltas')",
        [],
        |row| row.get(0),
    )?;
    if has_log {
        super::fold::fold_file(&copy)?;
    }
    let integrity: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if integrity != "ok" {
        return Err(StoreError::backend(format!("the backup failed its integrity check: {integrity}")));
    }
    let bytes = std::fs::metadata(target).map(|meta| meta.len()).unwrap_or(0);
    Ok(BackupReport { bytes })
}

/// `tally migrate`: open, migrate, close.
pub fn migrate(config: &SqliteConfig) -> Result<SchemaReport, StoreError> {
    let mut connection = open_writer(config)?;
    migrate_connection(&mut connection)
}

/// Recomputes the rollups of a database written around the store (see `rollup::rebuild`),
/// then truncates the WAL.
pub fn rebuild_rollups(config: &SqliteConfig) -> Result<(), StoreError> {
    let connection = open_writer(config)?;
    check_current(&connection)?;
    super::rollup::rebuild(&connection)?;
    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}
