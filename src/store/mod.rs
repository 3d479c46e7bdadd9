//! Storage backends: the only module that knows SQL. `open` picks the backend the config
//! names (a SQLite file, or a PostgreSQL URL) and hands the application a `Store` over the
//! domain's ports. Each backend owns its SQL and its migrations folder.

pub(crate) mod copy;
mod group;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use crate::config::{DatabaseBackend, DatabaseConfig};
use crate::metrics::Metrics;
use std::sync::Arc;

pub use crate::domain::ports::Store;
use crate::domain::ports::StoreError;

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> StoreError {
        StoreError::NoConnection(error.to_string())
    }
}

/// Opens (creating and migrating if needed) the configured database.
pub fn open(config: &DatabaseConfig, metrics: Arc<Metrics>) -> Result<Store, StoreError> {
    Ok(match &config.backend {
        DatabaseBackend::Sqlite(sqlite) => Store::new(sqlite::SqliteBackend::open(sqlite, metrics)?),
        DatabaseBackend::Postgres(postgres) => Store::new(postgres::PostgresBackend::open(postgres, metrics)?),
    })
}

/// What `tally migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaReport {
    pub applied: Vec<String>,
    pub version: u32,
}

/// Recomputes the rollups from the counters and users, for a SQLite file written around the
/// store (the scale benchmark's seed). PostgreSQL databases are only written by Tally.
pub fn rebuild_rollups(config: &DatabaseConfig) -> Result<(), StoreError> {
    match &config.backend {
        DatabaseBackend::Sqlite(sqlite) => sqlite::rebuild_rollups(sqlite),
        DatabaseBackend::Postgres(_) => Err(StoreError::backend("rollups are rebuilt only in a SQLite file")),
    }
}

/// `tally migrate`: open, migrate, close.
pub fn migrate(config: &DatabaseConfig) -> Result<SchemaReport, StoreError> {
    match &config.backend {
        DatabaseBackend::Sqlite(sqlite) => sqlite::migrate(sqlite),
        DatabaseBackend::Postgres(postgres) => postgres::migrate(postgres),
    }
}
