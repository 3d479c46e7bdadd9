//! Maintenance use cases: the retention cleanup, run as a sequence of short writer jobs so
//! that tracks and other writes interleave with it however much there is to delete.

use crate::domain::Rules;
use crate::domain::admin::{self, CleanupReport, Retention};
use crate::domain::ports::{Store, StoreError};
use std::sync::Arc;

/// Deletes what `retention_months` no longer keeps, chunk by chunk, then audits it once
/// under `actor`. A failure midway leaves the rows deleted so far deleted (each chunk is
/// committed) and the next run carries on.
pub fn cleanup(
    store: &Store,
    rules: &Arc<Rules>,
    retention_months: u32,
    actor: &str,
    now_ms: i64,
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
    }
    let (rules, actor, finished) = (Arc::clone(rules), actor.to_owned(), report.clone());
    store.write(move |tx| admin::finish_cleanup(tx, &rules, retention_months, &finished, &actor, now_ms))?;
    Ok(report)
}
