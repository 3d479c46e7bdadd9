//! Opening the database file: pragmas for every connection, the one-time WAL switch, the
//! read pool, and the embedded refinery migrations. Nothing here runs per request.

use super::StoreError;
use crate::config::{DatabaseConfig, Synchronous};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// What `tally migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaReport {
    pub applied: Vec<String>,
    pub version: u32,
}

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

fn apply_pragmas(connection: &Connection, config: &DatabaseConfig) -> rusqlite::Result<()> {
    let synchronous = match config.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    connection.busy_timeout(config.busy_timeout)?;
    connection.execute_batch(&format!("PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous};"))?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Opens the read-write connection the writer thread will own, and puts the file in WAL
/// mode (stored in the file, so readers inherit it).
pub(super) fn open_writer(config: &DatabaseConfig) -> Result<Connection, StoreError> {
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
    Ok(connection)
}

fn describe_open_error(config: &DatabaseConfig, error: rusqlite::Error) -> StoreError {
    match StoreError::from(error) {
        StoreError::Open(message) | StoreError::Sqlite(message) | StoreError::ReadOnly(message) => {
            StoreError::Open(format!("{}: {message}", config.path.display()))
        }
        other => other,
    }
}

pub(super) fn reader_pool(config: &DatabaseConfig) -> Result<r2d2::Pool<SqliteConnectionManager>, StoreError> {
    let read_config = config.clone();
    let manager = SqliteConnectionManager::file(&config.path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |connection| {
            apply_pragmas(connection, &read_config)?;
            connection.execute_batch("PRAGMA query_only = ON;")
        });
    r2d2::Pool::builder()
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
    let has_history: bool = connection
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history'")?
        .exists([])?;
    let applied_before = if has_history {
        runner.get_last_applied_migration(connection).map_err(|error| StoreError::Schema(error.to_string()))?
    } else {
        None
    };
    if let Some(last) = &applied_before {
        let version = last.version() as u32;
        if version > latest {
            return Err(StoreError::Schema(format!(
                "the database is at schema version {version} ({}), written by a newer Tally; \
                 this build knows versions up to {latest}. Run the newer Tally, or restore a backup",
                last.name()
            )));
        }
    }
    let report = runner
        .set_abort_missing(true)
        .set_abort_divergent(true)
        .run(connection)
        .map_err(|error| StoreError::Schema(error.to_string()))?;
    Ok(SchemaReport {
        applied: report.applied_migrations().iter().map(|m| format!("V{}__{}", m.version(), m.name())).collect(),
        version: latest,
    })
}

/// `tally migrate`: open, migrate, close.
pub fn migrate(config: &DatabaseConfig) -> Result<SchemaReport, StoreError> {
    let mut connection = open_writer(config)?;
    migrate_connection(&mut connection)
}
