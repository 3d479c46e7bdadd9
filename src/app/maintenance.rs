//! Maintenance use cases: the retention cleanup, run as a sequence of short writer jobs so
//! that tracks and other writes interleave with it however much there is to delete, and on
//! one node at a time (a lease in the database, renewed at every step).

use crate::domain::Rules;
use crate::domain::admin::{self, CleanupReport, Retention};
use crate::domain::ports::{ErasureRecord, Store, StoreError};
use std::sync::Arc;

/// The lease that keeps cleanups to one node at a time.
const CLEANUP_LEASE: &str = "cleanup";
/// How long a cleanup's lease lasts without renewal: a node that dies mid-cleanup holds it
/// no longer than this.
const LEASE_MS: i64 = 60_000;

/// Deletes what `retention_months` no longer keeps, chunk by chunk, then audits it once
/// under `actor`. A failure midway leaves the rows deleted so far deleted (each chunk is
/// committed) and the next run carries on. `None` when another node is running a cleanup.
pub fn cleanup(
    store: &Store,
    rules: &Arc<Rules>,
    retention_months: u32,
    actor: &str,
    now_ms: i64,
) -> Result<Option<CleanupReport>, StoreError> {
    // One holder per run (this node's id and a run id): a second cleanup on the same node
    // is refused like one on another node.
    let holder = format!("{}:{}", super::node_id(), uuid::Uuid::new_v4().simple());
    let claim = || {
        let holder = holder.clone();
        store.write(move |tx| {
            let now = crate::app::now_ms();
            tx.claim_lease(CLEANUP_LEASE, &holder, now, now + LEASE_MS)
        })
    };
    if !claim()? {
        return Ok(None);
    }
    let result = run_cleanup(store, rules, retention_months, actor, now_ms, &claim);
    let release = store.write(move |tx| tx.release_lease(CLEANUP_LEASE, &holder));
    let report = result?;
    release?;
    Ok(Some(report))
}

fn run_cleanup(
    store: &Store,
    rules: &Arc<Rules>,
    retention_months: u32,
    actor: &str,
    now_ms: i64,
    renew: &dyn Fn() -> Result<bool, StoreError>,
) -> Result<CleanupReport, StoreError> {
    let retention = Retention::new(rules, retention_months, now_ms);
    let mut report = CleanupReport {
        deleted_counters: 0,
        oldest_period_kept: retention.oldest_period_kept,
        pruned_idempotency_keys: 0,
        pruned_events: 0,
    };
    loop {
        let before = report.clone();
        let (done, step) = store.write(move |tx| {
            // Counted from `before` on each run: a job may run more than once.
            let mut step = before.clone();
            let done = admin::cleanup_step(tx, retention, &mut step)?;
            Ok((done, step))
        })?;
        report = step;
        if done {
            break;
        }
        if !renew()? {
            return Err(StoreError::backend("the cleanup lease was lost (this node stalled past it)"));
        }
    }
    let (rules, actor, finished) = (Arc::clone(rules), actor.to_owned(), report.clone());
    store.write(move |tx| admin::finish_cleanup(tx, &rules, retention_months, &finished, &actor, now_ms))?;
    Ok(report)
}

/// Erases `user_id` as a sequence of short jobs (see `admin::begin_erasure`); returns the
/// hash that names them from now on, or `None` when nothing named them.
pub fn erase(
    store: &Store,
    rules: &Arc<Rules>,
    user_id: &str,
    actor: &str,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let (target, actor_name) = (user_id.to_owned(), actor.to_owned());
    let Some(erasure) = store.write(move |tx| admin::begin_erasure(tx, &target, &actor_name, now_ms))? else {
        return Ok(None);
    };
    let hash = erasure.hash.clone();
    complete_erasure(store, rules, erasure)?;
    Ok(Some(hash))
}

/// Runs an erasure's remaining steps.
fn complete_erasure(store: &Store, rules: &Arc<Rules>, erasure: ErasureRecord) -> Result<(), StoreError> {
    loop {
        let step = erasure.clone();
        if store.write(move |tx| admin::erasure_step(tx, &step))? {
            break;
        }
    }
    let rules = Arc::clone(rules);
    store.write(move |tx| admin::finish_erasure(tx, &rules, &erasure, crate::app::now_ms()))
}

/// Finishes the erasures a crash interrupted; run at startup, before serving.
pub fn resume_erasures(store: &Store, rules: &Arc<Rules>) -> Result<usize, StoreError> {
    let pending = store.read(|reader| reader.pending_erasures())?;
    let count = pending.len();
    for erasure in pending {
        complete_erasure(store, rules, erasure)?;
    }
    Ok(count)
}
