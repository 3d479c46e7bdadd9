//! `tally copy-db --to URL`: moves a SQLite database into an empty PostgreSQL one, every
//! table (rollups, audit, events and the outbox included), in one PostgreSQL transaction,
//! then checks row counts and the sum of every counter on both sides before committing.

use super::postgres::{Conn, migrate_connection};
use crate::config::{DatabaseUrl, SqliteConfig};
use crate::domain::ports::StoreError;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// What a database holds, table by table, for `copy-db`'s verification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// (table, rows), in the order tables are copied.
    pub rows: Vec<(String, u64)>,
    /// The sum of every usage counter.
    pub counter_sum: u128,
}

/// Tally's tables in an order that satisfies their foreign keys, with the identity column
/// whose sequence must continue after the copied ids.
const TABLES: [(&str, Option<&str>); 28] = [
    ("accounts", Some("id")),
    ("users", Some("id")),
    ("usage_counters", None),
    ("idempotency_keys", None),
    ("feature_uses", None),
    ("period_totals", None),
    ("period_users", None),
    ("plan_users", None),
    ("audit_log", Some("id")),
    ("events", Some("seq")),
    ("usage_alerts", None),
    ("webhook_deliveries", Some("id")),
    ("webhook_attempts", None),
    ("refusals", None),
    ("account_counters", None),
    ("account_feature_uses", None),
    ("account_alerts", None),
    ("overrides", None),
    ("grants", Some("id")),
    ("dashboard_sessions", None),
    ("leases", None),
    ("erasures", None),
    ("billing_closings", None),
    ("billing_lines", None),
    ("reservations", Some("id")),
    ("usage_days", None),
    ("forecasts", None),
    ("job_marks", None),
];

/// One value read from SQLite, converted to the PostgreSQL column's type.
fn convert(value: ValueRef<'_>, target: &Type, column: &str) -> Result<Box<dyn ToSql + Sync>, StoreError> {
    let mismatch = || StoreError::backend(format!("column {column}: a {value:?} does not fit PostgreSQL's {target}"));
    Ok(match (value, target) {
        (ValueRef::Null, &Type::INT8) => Box::new(None::<i64>),
        (ValueRef::Null, &Type::TEXT) => Box::new(None::<String>),
        (ValueRef::Null, &Type::BYTEA) => Box::new(None::<Vec<u8>>),
        (ValueRef::Null, &Type::BOOL) => Box::new(None::<bool>),
        (ValueRef::Integer(number), &Type::INT8) => Box::new(number),
        (ValueRef::Integer(number), &Type::BOOL) => Box::new(number != 0),
        (ValueRef::Text(text), &Type::TEXT) => Box::new(String::from_utf8(text.to_vec()).map_err(|_| {
            StoreError::backend(format!("column {column}: a value is not UTF-8; PostgreSQL's text needs it"))
        })?),
        (ValueRef::Blob(bytes), &Type::BYTEA) => Box::new(bytes.to_vec()),
        _ => return Err(mismatch()),
    })
}

/// The columns of `table` in PostgreSQL, with their types.
fn target_columns(conn: &mut Conn, table: &str) -> Result<Vec<(String, Type)>, StoreError> {
    let rows = conn.client().query(
        "SELECT a.attname, a.atttypid FROM pg_attribute a
         WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        &[&table],
    )?;
    rows.iter()
        .map(|row| {
            let oid: u32 = row.get(1);
            let kind =
                Type::from_oid(oid).ok_or_else(|| StoreError::backend(format!("{table}: unknown type {oid}")))?;
            Ok((row.get(0), kind))
        })
        .collect()
}

fn count_rows(conn: &mut Conn, table: &str) -> Result<u64, StoreError> {
    // Table names come from TABLES, never from input.
    let row = conn.client().query_one(&format!("SELECT count(*) FROM {table}"), &[])?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// What the SQLite file holds, read in the snapshot the copy reads.
fn sqlite_counts(source: &Connection) -> Result<TableCounts, StoreError> {
    let mut counts = TableCounts::default();
    for (table, _) in TABLES {
        let rows: i64 = source.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))?;
        counts.rows.push((table.to_owned(), rows.max(0) as u64));
    }
    // Summed here, not by SQLite's sum(), which fails on an i64 overflow (counters may each
    // reach 2^63 - 1).
    let mut values = source.prepare("SELECT value FROM usage_counters")?;
    let mut rows = values.query([])?;
    while let Some(row) = rows.next()? {
        counts.counter_sum += row.get::<_, i64>(0)?.max(0) as u128;
    }
    Ok(counts)
}

fn postgres_counts(conn: &mut Conn) -> Result<TableCounts, StoreError> {
    let mut counts = TableCounts::default();
    for (table, _) in TABLES {
        counts.rows.push((table.to_owned(), count_rows(conn, table)?));
    }
    let row = conn.client().query_one("SELECT coalesce(sum(value), 0)::text FROM usage_counters", &[])?;
    let sum: String = row.get(0);
    counts.counter_sum = sum.parse().map_err(|_| StoreError::backend(format!("a counter sum of {sum:?}")))?;
    Ok(counts)
}

/// Copies the SQLite database of `source` into the empty PostgreSQL database at `target`;
/// returns what was copied (identical on both sides, or nothing is committed).
pub fn sqlite_to_postgres(source: &SqliteConfig, target: &DatabaseUrl) -> Result<TableCounts, StoreError> {
    if !source.path.is_file() {
        return Err(StoreError::Open(format!("{} does not exist: there is nothing to copy", source.path.display())));
    }
    let sqlite = Connection::open_with_flags(&source.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    sqlite.busy_timeout(source.busy_timeout)?;
    // The SQLite file must be at the schema this build writes, so every column exists.
    super::sqlite::check_current(&sqlite)?;
    // One read transaction: the copy and its counts see one snapshot, even while Tally serves.
    sqlite.execute_batch("BEGIN")?;
    // Increments still in the delta log are counted nowhere else yet; only the server that
    // wrote them (whose memory holds them) may fold them, which it does when it stops.
    let unfolded: i64 = sqlite.query_row("SELECT count(*) FROM usage_deltas", [], |row| row.get(0))?;
    if unfolded > 0 {
        return Err(StoreError::Open(format!(
            "{} holds {unfolded} increments not yet folded into its counters (Tally is running, or \
             stopped without a clean shutdown): stop Tally (or start it and stop it once), then copy",
            source.path.display()
        )));
    }
    let expected = sqlite_counts(&sqlite)?;

    let driver: postgres::Config = target
        .expose()
        .parse()
        .map_err(|error: postgres::Error| StoreError::Open(format!("{}: {error}", target.redacted())))?;
    let mut conn =
        Conn::connect(&driver).map_err(|error| StoreError::Open(format!("{}: {error}", target.redacted())))?;
    migrate_connection(&mut conn)?;
    let existing = postgres_counts(&mut conn)?;
    if let Some((table, rows)) = existing.rows.iter().find(|(_, rows)| *rows > 0) {
        return Err(StoreError::Open(format!(
            "{} is not empty ({table} holds {rows} rows); copy-db only fills an empty database",
            target.redacted()
        )));
    }
    conn.batch("BEGIN")?;
    for (table, identity) in TABLES {
        let columns = target_columns(&mut conn, table)?;
        let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
        let types: Vec<Type> = columns.iter().map(|(_, kind)| kind.clone()).collect();
        let mut select = sqlite.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
        let mut rows = select.query([])?;
        let sink = conn.client().copy_in(&format!("COPY {table} ({}) FROM STDIN BINARY", names.join(", ")))?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        while let Some(row) = rows.next()? {
            let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(columns.len());
            for (index, (name, kind)) in columns.iter().enumerate() {
                values.push(convert(row.get_ref(index)?, kind, &format!("{table}.{name}"))?);
            }
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|value| value.as_ref()).collect();
            writer.write(&refs)?;
        }
        writer.finish()?;
        if let Some(column) = identity {
            // New rows continue after the copied ids, and after every id SQLite ever gave
            // (AUTOINCREMENT never reuses one, even once its row is pruned: event pages
            // resume `after` an id).
            let given: i64 = sqlite
                .query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [table], |row| row.get(0))
                .optional()?
                .unwrap_or(0);
            conn.client().execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                     GREATEST((SELECT coalesce(max({column}), 0) FROM {table}), $1::bigint) + 1, false)"
                ),
                &[&given],
            )?;
        }
    }
    let copied = postgres_counts(&mut conn)?;
    if copied != expected {
        conn.batch("ROLLBACK")?;
        return Err(StoreError::backend(format!(
            "the copy does not match the source (source {expected:?}, copy {copied:?}); nothing was committed"
        )));
    }
    conn.batch("COMMIT")?;
    Ok(copied)
}

#[cfg(test)]
mod table_list_tests {
    use super::TABLES;
    use std::collections::BTreeSet;

    /// Every table a SQLite migration creates is copied (and nothing else is named): a new
    /// table without a line in TABLES would be silently left behind by copy-db.
    #[test]
    fn the_copy_names_every_table_the_migrations_create() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        let mut created = BTreeSet::new();
        for entry in std::fs::read_dir(folder).unwrap() {
            let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in sql.lines() {
                if let Some(rest) = line.trim().strip_prefix("CREATE TABLE ") {
                    created.insert(rest.split_whitespace().next().unwrap().trim_end_matches('(').to_owned());
                }
            }
        }
        // The delta log is SQLite's alone and is empty when a copy runs (checked first).
        assert!(created.remove("usage_deltas") && created.remove("fold_state"));
        let copied: BTreeSet<String> = TABLES.iter().map(|(table, _)| (*table).to_owned()).collect();
        assert_eq!(copied, created);
    }
}
