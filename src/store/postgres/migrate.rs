//! PostgreSQL migrations: refinery's runner over `migrations/postgres/`, under a session
//! advisory lock, so several nodes starting at once apply each migration once (the others
//! wait, then find nothing to do). A database migrated past what this build knows is refused.

use super::Conn;
use crate::config::PostgresConfig;
use crate::domain::ports::StoreError;
use crate::store::SchemaReport;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The session advisory lock every node takes to migrate ("tally-mg" in ASCII).
const MIGRATION_LOCK: i64 = 0x7461_6c6c_792d_6d67;

fn latest_known_version() -> u32 {
    embedded::migrations::runner().get_migrations().iter().map(|m| m.version() as u32).max().unwrap_or(0)
}

/// Applies the embedded migrations on `conn`, one node at a time.
pub(in crate::store) fn migrate_connection(conn: &mut Conn) -> Result<SchemaReport, StoreError> {
    conn.client().query("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let report = migrate_locked(conn);
    // Unlocked whatever happened; a closed connection has released it anyway.
    let _ = conn.client().query("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    report
}

fn migrate_locked(conn: &mut Conn) -> Result<SchemaReport, StoreError> {
    let latest = latest_known_version();
    let has_history = conn
        .client()
        .query_opt(
            "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'refinery_schema_history'",
            &[],
        )?
        .is_some();
    if has_history {
        let newest = conn
            .client()
            .query_opt("SELECT version, name FROM refinery_schema_history ORDER BY version DESC LIMIT 1", &[])?;
        if let Some(row) = newest {
            let (version, name): (i32, String) = (row.get(0), row.get(1));
            if i64::from(version) > i64::from(latest) {
                return Err(StoreError::Schema(format!(
                    "the database is at schema version {version} ({name}), written by a newer Tally; \
                     this build knows versions up to {latest}. Run the newer Tally, or restore a backup"
                )));
            }
        }
    }
    let runner = embedded::migrations::runner().set_abort_missing(true).set_abort_divergent(true);
    let report = runner.run(conn.client()).map_err(|error| {
        // The database's own words are at the end of the error's chain.
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(inner) = cause {
            message = format!("{message}: {inner}");
            cause = inner.source();
        }
        if message.contains("permission denied") {
            StoreError::Schema(format!(
                "{message}; Tally's role must own the database (createdb -O ROLE DATABASE) to create its tables"
            ))
        } else {
            StoreError::Schema(message)
        }
    })?;
    Ok(SchemaReport {
        applied: report.applied_migrations().iter().map(|m| format!("V{}__{}", m.version(), m.name())).collect(),
        version: latest,
    })
}

/// `tally migrate` on PostgreSQL: connect, migrate, disconnect.
pub fn migrate(config: &PostgresConfig) -> Result<SchemaReport, StoreError> {
    let driver = super::driver_config(config)?;
    let mut conn =
        Conn::connect(&driver).map_err(|error| StoreError::Open(format!("{}: {error}", config.url.redacted())))?;
    migrate_connection(&mut conn)
}
