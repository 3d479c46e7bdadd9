//! Background jobs: the daily cleanup that deletes counters (and events) older than
//! `usage.retention_months` and prunes expired idempotency answers. It runs once at startup,
//! before the server answers (so the first state anyone reads is already clean, and the
//! audit log starts in a known order), then every 24 hours, through the writer like any
//! other change, and is audited.

use super::{forecasts, maintenance, now_ms, reservations};
use crate::domain::Rules;
use crate::domain::ports::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The audit log's actor for the scheduled cleanup.
pub const CLEANUP_ACTOR: &str = "scheduled-cleanup";

const CLEANUP_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// How often expired reservations are marked so. Their holds stop counting at `expires_at`
/// whether or not they are marked yet: the mark is bookkeeping.
const EXPIRE_EVERY: Duration = Duration::from_secs(10);

/// Finishes erasures a crash interrupted, then cleans up; the startup runs it before serving.
pub fn run_startup_maintenance(store: &Store, rules: &Arc<Rules>) {
    match maintenance::resume_erasures(store, rules) {
        Ok(0) => {}
        Ok(count) => log::info!("finished {count} erasure(s) interrupted by a stop"),
        Err(error) => log::warn!(
            "cannot finish interrupted erasures, retrying at the next start: {error}",
            error = crate::logging::Chain(&error)
        ),
    }
    run_cleanup(store, rules);
}

pub fn run_cleanup(store: &Store, rules: &Arc<Rules>) {
    match maintenance::cleanup(store, rules, rules.retention_months, CLEANUP_ACTOR, now_ms()) {
        Ok(None) => log::info!("scheduled cleanup: another node is running one; skipped"),
        Ok(Some(report)) => log::info!(
            "scheduled cleanup: deleted {} counters before {}, pruned {} idempotency keys",
            report.deleted_counters,
            report.oldest_period_kept,
            report.pruned_idempotency_keys
        ),
        Err(error) => log::warn!(
            "scheduled cleanup failed, retrying at the next run: {error}",
            error = crate::logging::Chain(&error)
        ),
    }
}

fn expire_reservations(store: &Store) {
    match reservations::expire_due(store, now_ms()) {
        Ok(0) => {}
        Ok(count) => log::debug!("marked {count} reservation(s) expired"),
        Err(error) => log::warn!(
            "cannot mark expired reservations, retrying shortly: {error}",
            error = crate::logging::Chain(&error)
        ),
    }
}

/// Starts the thread that runs the forecast job every `[usage] forecast_interval_secs` (one node at a time, under a lease). It stops when the
/// writer stops.
pub fn spawn_forecasts(store: Store, rules: Arc<Rules>) -> std::io::Result<()> {
    std::thread::Builder::new().name("tally-forecast".into()).spawn(move || {
        let every = Duration::from_secs(u64::from(rules.forecast_interval_secs));
        loop {
            // The first run is one interval after the start: a restart does not add a run.
            let next = Instant::now() + every;
            while Instant::now() < next {
                if !store.is_writer_running() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200).min(every));
            }
            match forecasts::run(&store, &rules, now_ms()) {
                Ok(None) => log::debug!("forecast job: another node is running it"),
                Ok(Some(report)) => log::info!(
                    "forecast job: copied {} counters into daily history, projected {} customers",
                    report.days_copied,
                    report.customers
                ),
                Err(error) => log::warn!(
                    "forecast job failed, retrying at the next run: {error}",
                    error = crate::logging::Chain(&error)
                ),
            }
        }
    })?;
    Ok(())
}

/// Starts the thread that runs the cleanup every 24 hours and marks expired reservations every
/// 10 seconds (the startup run is the caller's).
/// It stops when the writer stops.
pub fn spawn_cleanup(store: Store, rules: Arc<Rules>) -> std::io::Result<()> {
    std::thread::Builder::new().name("tally-cleanup".into()).spawn(move || {
        loop {
            let next = Instant::now() + CLEANUP_EVERY;
            let mut next_expiry = Instant::now();
            while Instant::now() < next {
                if !store.is_writer_running() {
                    return;
                }
                if Instant::now() >= next_expiry {
                    expire_reservations(&store);
                    next_expiry = Instant::now() + EXPIRE_EVERY;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            // An erasure a database outage cut short is finished now, not at the next start.
            if let Err(error) = maintenance::resume_erasures(&store, &rules) {
                log::warn!(
                    "cannot finish interrupted erasures, retrying at the next run: {error}",
                    error = crate::logging::Chain(&error)
                );
            }
            run_cleanup(&store, &rules);
        }
    })?;
    Ok(())
}
