//! SQLite's group commit: the shared writer thread (store/group.rs) with this `commit`: each
//! group in one `BEGIN IMMEDIATE` transaction, each job in its own savepoint. The writer's
//! connection is the only read-write connection to the file besides the checkpointer's.
//!
//! Usage jobs append their increments to the delta log (deltas.rs); before any other job the
//! group folds the whole log into the counters, so that job sees every counter as stored, and
//! before each COMMIT it folds the oldest sealed chunk of the log.

use super::SqliteTx;
use super::deltas::{Shared, WriterDeltas};
use crate::domain::ports::{StoreError, WriteJob, WriteKind};
use crate::metrics::Metrics;
use crate::store::group::{self, Pending, WriterOptions, fail_all};
use rusqlite::Connection;
use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

type Run = Box<dyn FnMut(&SqliteTx<'_>) -> Result<Box<dyn Any + Send>, StoreError> + Send>;

/// A job as this writer runs it: on the SQLite transaction itself.
pub(super) struct SqliteJob {
    run: Run,
    kind: WriteKind,
    /// Seal the delta log's open chunk at commit (the timer's job).
    seal: bool,
}

pub(super) type Writer = group::Writer<SqliteJob>;

/// Starts the writer thread on `connection`.
pub(super) fn spawn(
    connection: Connection,
    deltas: Arc<Shared>,
    options: WriterOptions,
    metrics: Arc<Metrics>,
) -> Result<Writer, StoreError> {
    Writer::spawn(options, metrics, move |batch| commit_group(&connection, &deltas, batch))
}

/// A port job as the SQLite writer runs it.
pub(super) fn job(mut job: WriteJob, kind: WriteKind) -> SqliteJob {
    SqliteJob { run: Box::new(move |tx: &SqliteTx<'_>| job(tx)), kind, seal: false }
}

fn nothing(_: &SqliteTx<'_>) -> Result<Box<dyn Any + Send>, StoreError> {
    Ok(Box::new(()))
}

/// A job that folds the whole delta log (a settled read's, and shutdown's).
pub(super) fn fold_job() -> SqliteJob {
    SqliteJob { run: Box::new(nothing), kind: WriteKind::Settled, seal: false }
}

/// A job that seals the delta log's open chunk, for the next group to fold (the timer's).
pub(super) fn seal_job() -> SqliteJob {
    SqliteJob { run: Box::new(nothing), kind: WriteKind::Usage, seal: true }
}

fn exec(connection: &Connection, sql: &str) -> Result<(), StoreError> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Runs `batch` in one transaction and answers every job. Leaves `batch` empty. Returns the
/// types of the events the committed jobs recorded (none if the group failed).
fn commit_group(connection: &Connection, shared: &Shared, batch: &mut Vec<Pending<SqliteJob>>) -> Vec<String> {
    if let Err(error) = exec(connection, "BEGIN IMMEDIATE") {
        log::warn!("write group of {} refused: {error}", batch.len(), error = crate::logging::Chain(&error));
        fail_all(batch, &error);
        return Vec::new();
    }
    let deltas = WriterDeltas::new(shared);
    let tx = SqliteTx(connection, RefCell::new(Vec::new()), &deltas);
    for job in batch.iter_mut() {
        let events_before = tx.1.borrow().len();
        if job.job.seal {
            deltas.seal_at_commit();
        }
        let settled = match job.job.kind {
            WriteKind::Settled if deltas.has_pending() => deltas.fold_all(connection),
            _ => Ok(()),
        };
        let outcome = match settled {
            Ok(()) => exec(connection, "SAVEPOINT job").and_then(|()| job.execute(|job| (job.run)(&tx))),
            // The fold was rolled back to its own savepoint (a full disk, say): this job, which
            // needs it, fails alone and its neighbours go on (if SQLite kept the transaction).
            Err(error) => {
                log::warn!("fold of the delta log failed: {error}", error = crate::logging::Chain(&error));
                let _ = job.execute(|_| Err(error.clone()));
                if !connection.is_autocommit() {
                    continue;
                }
                Err(error)
            }
        };
        if connection.is_autocommit() {
            // SQLite rolled the whole transaction back itself (a full disk, an I/O error):
            // every job of the group is undone, so none may be acknowledged.
            let error = outcome.err().unwrap_or(StoreError::backend("transaction rolled back"));
            log::warn!("write group of {} rolled back: {error}", batch.len(), error = crate::logging::Chain(&error));
            deltas.abort();
            fail_all(batch, &error);
            return Vec::new();
        }
        let closed = match outcome {
            Ok(()) => exec(connection, "RELEASE job").inspect(|()| deltas.release_job()),
            Err(_) => {
                tx.1.borrow_mut().truncate(events_before);
                deltas.rollback_job();
                exec(connection, "ROLLBACK TO job").and_then(|()| exec(connection, "RELEASE job"))
            }
        };
        if let Err(error) = closed {
            let _ = exec(connection, "ROLLBACK");
            deltas.abort();
            fail_all(batch, &error);
            return Vec::new();
        }
    }
    // One bounded step of folding (the oldest sealed chunk of the log) rides on every group's
    // COMMIT, so the log is folded as fast as it fills, without a long pause of the writer. It
    // is optional work: if it fails (rolled back to its savepoint), the group commits without
    // it and a later group folds the chunk.
    let step = deltas.fold_step(connection);
    let committed = match step {
        Err(error) if connection.is_autocommit() => Err(error),
        Err(error) => {
            log::warn!("a fold step of the delta log failed: {error}", error = crate::logging::Chain(&error));
            deltas.commit(|| exec(connection, "COMMIT"))
        }
        Ok(()) => deltas.commit(|| exec(connection, "COMMIT")),
    };
    match committed {
        Ok(()) => {
            for job in batch.drain(..) {
                job.finish(&Ok(()));
            }
            tx.1.into_inner()
        }
        Err(error) => {
            log::warn!(
                "commit of a write group of {} failed: {error}",
                batch.len(),
                error = crate::logging::Chain(&error)
            );
            if !connection.is_autocommit() {
                let _ = exec(connection, "ROLLBACK");
            }
            deltas.abort();
            fail_all(batch, &error);
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = crate::domain::ports::Pending<()>;

    /// A job that runs `op` on the SQLite transaction underneath.
    fn job(
        mut op: impl FnMut(&SqliteTx<'_>) -> Result<(), StoreError> + Send + 'static,
    ) -> (Pending<SqliteJob>, Answer) {
        let (reply, answer) = crate::domain::ports::reply_channel();
        let run = Box::new(move |tx: &SqliteTx<'_>| op(tx).map(|()| Box::new(()) as Box<dyn Any + Send>));
        (Pending::new(SqliteJob { run, kind: WriteKind::Usage, seal: false }, reply), answer)
    }

    fn insert(value: i64) -> impl FnMut(&SqliteTx<'_>) -> Result<(), StoreError> + Send + 'static {
        move |tx| {
            tx.0.execute("INSERT INTO t (v) VALUES (?1)", [value])?;
            tx.note_event("test_event");
            Ok(())
        }
    }

    fn stored(connection: &Connection) -> Vec<i64> {
        let mut statement = connection.prepare("SELECT v FROM t ORDER BY v").unwrap();
        statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn database() -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        connection
    }

    #[test]
    fn a_failing_job_rolls_back_alone_and_its_neighbours_commit() {
        let connection = database();
        let (first, first_answer) = job(insert(1));
        let (failing, failing_answer) = job(|tx| {
            insert(2)(tx)?;
            Err(StoreError::backend("refused"))
        });
        let (last, last_answer) = job(insert(3));
        let mut batch = vec![first, failing, last];
        let events = commit_group(&connection, &Shared::default(), &mut batch);
        assert!(batch.is_empty());
        assert_eq!(stored(&connection), [1, 3], "the failing job's insert is undone, the others kept");
        assert!(first_answer.wait().is_ok() && last_answer.wait().is_ok());
        assert!(failing_answer.wait().is_err());
        assert_eq!(events, ["test_event", "test_event"], "the rolled-back job's event is not counted");
    }

    #[test]
    fn a_group_sqlite_rolled_back_answers_every_job_with_the_error() {
        let connection = database();
        let (first, first_answer) = job(insert(1));
        // What SQLite does by itself on a full disk or an I/O error: the whole transaction
        // is gone, and the connection is back in autocommit mode.
        let (breaking, breaking_answer) = job(|tx| {
            tx.0.execute_batch("ROLLBACK")?;
            Err(StoreError::Full)
        });
        let (last, last_answer) = job(insert(3));
        let mut batch = vec![first, breaking, last];
        let events = commit_group(&connection, &Shared::default(), &mut batch);
        assert!(events.is_empty());
        assert!(stored(&connection).is_empty(), "nothing of the group is stored");
        for answer in [first_answer, breaking_answer, last_answer] {
            assert!(matches!(answer.wait(), Err(StoreError::Full)), "every job hears the failure");
        }
    }

    #[test]
    fn a_panicking_job_is_answered_and_rolled_back() {
        let connection = database();
        let (first, first_answer) = job(insert(1));
        let (panicking, panicking_answer) = job(|tx| {
            insert(2)(tx)?;
            panic!("a bug in a job")
        });
        let mut batch = vec![first, panicking];
        commit_group(&connection, &Shared::default(), &mut batch);
        assert_eq!(stored(&connection), [1]);
        assert!(first_answer.wait().is_ok());
        assert!(matches!(panicking_answer.wait(), Err(StoreError::JobPanicked(_))));
    }
}
