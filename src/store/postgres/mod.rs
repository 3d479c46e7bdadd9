//! The PostgreSQL backend: any number of Tally nodes on one database. Each node has one
//! writer thread that commits queued jobs in groups, like SQLite's (writer.rs), and a pool
//! of connections for reads and background work. What keeps each use case exact across
//! nodes (advisory locks through `serialize_on`, conditional upserts, rollups applied in one
//! order at commit) is written beside the code that does it. Only this folder names
//! the `postgres` crate.
//!
//! Facts about the `postgres` crate (0.19, synchronous, over tokio-postgres) relied on here:
//! `Client::query(&str, ..)` prepares the statement on every call (a round trip of its own),
//! so every connection keeps its prepared statements (`Conn::statement`); `Client::is_closed`
//! turns true once the server has gone; errors carry the SQLSTATE in `Error::code`.

mod accounts;
mod admin;
mod billing;
mod events;
mod forecasts;
mod migrate;
mod reservations;
mod terms;
mod usage;
mod writer;

use crate::config::PostgresConfig;
use crate::domain::ports::{Backend, ReadJob, ReadScope, ReadTx, Reply, StoreError, WriteJob, WriteKind, WriteTx};
use crate::metrics::Metrics;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use std::cell::{RefCell, RefMut};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub use migrate::migrate;
pub(super) use migrate::migrate_connection;

/// Parameters of a statement.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One connection and the statements it has prepared.
pub struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// Set when the connection's transaction state is unknown (a ROLLBACK failed): it is
    /// treated as closed and replaced.
    broken: bool,
}

impl Conn {
    pub(super) fn connect(config: &postgres::Config) -> Result<Conn, StoreError> {
        let client = config.connect(NoTls).map_err(|error| StoreError::Unreachable(describe(&error)))?;
        Ok(Conn { client, statements: HashMap::new(), broken: false })
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    pub(super) fn query(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        Ok(self.client.query(&statement, params)?)
    }

    pub(super) fn query_opt(&mut self, sql: &'static str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        let statement = self.statement(sql)?;
        Ok(self.client.query_opt(&statement, params)?)
    }

    pub(super) fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        Ok(self.client.execute(&statement, params)?)
    }

    /// Runs statements without parameters (transaction control).
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client.batch_execute(sql)?)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// Ends whatever transaction is open after a failure; a connection that cannot even do
    /// that is marked broken, so the writer replaces it instead of reusing an aborted
    /// transaction for every later group.
    pub(super) fn abandon(&mut self) {
        if !self.client.is_closed() && self.client.batch_execute("ROLLBACK").is_err() {
            self.broken = true;
        }
    }

    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// The message of a driver error, with the server's detail when there is one.
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> StoreError {
        if error.is_closed() {
            return StoreError::Unreachable(describe(&error));
        }
        let Some(code) = error.code() else {
            // No SQLSTATE: the socket or the protocol failed.
            return StoreError::Unreachable(describe(&error));
        };
        if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::LOCK_NOT_AVAILABLE
        {
            StoreError::Contended(describe(&error))
        } else if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
            StoreError::Full
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            StoreError::ReadOnly(describe(&error))
        } else if code.code().starts_with("08")
            || code.code().starts_with("57")
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            // Connection exceptions, and the server shutting down or refusing connections.
            StoreError::Unreachable(describe(&error))
        } else {
            StoreError::backend(error)
        }
    }
}

/// Running totals a transaction has changed, applied at its commit in one global order
/// (totals, then active users, then plan users, each sorted by key). Every node's groups
/// touch these few hot rows; taking their row locks last and in one order means two groups
/// never wait on each other in a cycle.
#[derive(Default, Debug)]
pub(super) struct Rollups {
    pub totals: BTreeMap<(String, String), i64>,
    pub active_users: BTreeMap<String, i64>,
    pub plan_users: BTreeMap<String, i64>,
}

impl Rollups {
    fn merge(&mut self, other: Rollups) {
        for (key, delta) in other.totals {
            let total = self.totals.entry(key).or_default();
            *total = total.saturating_add(delta);
        }
        for (key, delta) in other.active_users {
            *self.active_users.entry(key).or_default() += delta;
        }
        for (key, delta) in other.plan_users {
            *self.plan_users.entry(key).or_default() += delta;
        }
    }
}

/// A connection as the ports see it: a reader (from the pool) or the writer's transaction.
/// The state below `conn` is the transaction's and stays empty for a reader.
pub(super) struct PgDb<'c> {
    conn: RefCell<&'c mut Conn>,
    /// Event types recorded by the running job, counted once committed.
    events: RefCell<Vec<String>>,
    /// Advisory locks the transaction holds (from jobs that succeeded, and pre-acquired).
    held_locks: RefCell<BTreeSet<i64>>,
    /// Advisory locks the running job took (released if its savepoint rolls back).
    job_locks: RefCell<Vec<i64>>,
    /// The lock a job found held by another transaction.
    contended: RefCell<Option<i64>>,
    /// Rollup changes of the jobs that succeeded, and of the running job.
    rollups: RefCell<Rollups>,
    job_rollups: RefCell<Rollups>,
}

impl<'c> PgDb<'c> {
    fn new(conn: &'c mut Conn) -> PgDb<'c> {
        PgDb {
            conn: RefCell::new(conn),
            events: RefCell::default(),
            held_locks: RefCell::default(),
            job_locks: RefCell::default(),
            contended: RefCell::default(),
            rollups: RefCell::default(),
            job_rollups: RefCell::default(),
        }
    }

    pub(super) fn conn(&self) -> RefMut<'_, &'c mut Conn> {
        self.conn.borrow_mut()
    }

    pub(super) fn note_event(&self, kind: &str) {
        self.events.borrow_mut().push(kind.to_owned());
    }

    pub(super) fn rollups(&self) -> RefMut<'_, Rollups> {
        self.job_rollups.borrow_mut()
    }
}

impl ReadTx for PgDb<'_> {}
impl WriteTx for PgDb<'_> {}

/// r2d2's view of a pooled connection.
struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = StoreError;

    fn connect(&self) -> Result<Conn, StoreError> {
        Conn::connect(&self.config)
    }

    /// Checked at every checkout, without a round trip: the driver's background task marks
    /// a connection closed as soon as the server drops it (a restart), so a stale one is
    /// replaced instead of failing a request.
    fn is_valid(&self, conn: &mut Conn) -> Result<(), StoreError> {
        if conn.is_closed() { Err(StoreError::Unreachable("the connection was closed".into())) } else { Ok(()) }
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_closed()
    }
}

/// The driver's config for the URL, with a connect timeout so an unreachable server is
/// noticed in seconds.
fn driver_config(config: &PostgresConfig) -> Result<postgres::Config, StoreError> {
    let mut driver: postgres::Config = config
        .url
        .expose()
        .parse()
        .map_err(|error: postgres::Error| StoreError::Open(format!("{}: {error}", config.url.redacted())))?;
    if driver.get_connect_timeout().is_none() {
        driver.connect_timeout(Duration::from_secs(5));
    }
    driver.application_name("tally");
    // Whatever the role's or the database's defaults: commits are durable before they are
    // acknowledged; no statement waits for a lock more than 5 s (a lock held by a node that
    // vanished, say: the job is answered 503 instead of stalling the writer); none runs more
    // than a minute. NOTICEs ("relation ... already exists, skipping" at every migration
    // check) are not worth a log line each start.
    driver.options(
        "-c synchronous_commit=on -c lock_timeout=5000 -c statement_timeout=60000 -c client_min_messages=warning",
    );
    // A server or network that vanishes without closing the connection is noticed in about
    // half a minute, not after the kernel's two hours.
    driver.keepalives(true).keepalives_idle(Duration::from_secs(10)).keepalives_interval(Duration::from_secs(5));
    driver.keepalives_retries(3).tcp_user_timeout(Duration::from_secs(30));
    Ok(driver)
}

/// A PostgreSQL database shared by any number of nodes: this node's writer and its pool.
pub struct PostgresBackend {
    writer: writer::Writer,
    pool: r2d2::Pool<Manager>,
}

impl PostgresBackend {
    /// Connects, applies the migrations (once, whichever node gets there first) and starts
    /// this node's writer.
    pub fn open(config: &PostgresConfig, metrics: Arc<Metrics>) -> Result<Arc<PostgresBackend>, StoreError> {
        let driver = driver_config(config)?;
        let mut conn =
            Conn::connect(&driver).map_err(|error| StoreError::Open(format!("{}: {error}", config.url.redacted())))?;
        migrate::migrate_connection(&mut conn)?;
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size - 1)
            .min_idle(Some(1))
            .test_on_check_out(true)
            .connection_timeout(Duration::from_secs(5))
            .build_unchecked(Manager { config: driver.clone() });
        let writer = writer::spawn(conn, driver, config.writer_panic_after, metrics)?;
        Ok(Arc::new(PostgresBackend { writer, pool }))
    }
}

/// Runs a read job in one REPEATABLE READ, READ ONLY transaction: its statements share the
/// snapshot of its first one. The transaction always ends before the connection goes back to
/// the pool.
fn in_snapshot(conn: &mut Conn, job: ReadJob<'_>) -> Result<(), StoreError> {
    conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
    let result = job(&PgDb::new(conn));
    let ended = conn.batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    result.and(ended)
}

impl Backend for PostgresBackend {
    /// Counters are updated in place here: every kind of job runs as it is.
    fn submit_job(&self, job: WriteJob, reply: Reply, _kind: WriteKind) {
        self.writer.submit(job, reply);
    }

    fn read_job(&self, job: ReadJob<'_>, scope: ReadScope) -> Result<(), StoreError> {
        // Pooled connections may have been dropped by the server (a restart) without the
        // driver knowing until one is used: such a read runs again on the next connection,
        // until one is live (the pool replaces the dead ones) or the pool has been gone through.
        let mut attempts = self.pool.max_size() + 1;
        loop {
            let mut conn = self.pool.get()?;
            let result = match scope {
                ReadScope::EachStatement => job(&PgDb::new(&mut conn)),
                ReadScope::Snapshot => in_snapshot(&mut conn, &mut *job),
            };
            attempts -= 1;
            match result {
                Err(StoreError::Unreachable(_)) if conn.is_closed() && attempts > 0 => continue,
                other => return other,
            }
        }
    }

    fn is_ready(&self) -> bool {
        self.writer.is_running()
            && self.pool.get_timeout(Duration::from_secs(1)).is_ok_and(|mut conn| conn.batch("SELECT 1").is_ok())
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
        let mut conn = self.pool.get_timeout(Duration::from_secs(1)).ok()?;
        let row = conn.query_opt("SELECT pg_database_size(current_database())", &[]).ok()??;
        Some(row.get::<_, i64>(0).max(0) as u64)
    }

    fn reads_are_local(&self) -> bool {
        false
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}
