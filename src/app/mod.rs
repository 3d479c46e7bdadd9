//! The application layer: use cases over the domain's ports, called by http/ and by the
//! background jobs. It knows no SQL, no HTTP and no backend.

pub mod accounts;
pub mod admin;
pub mod billing;
mod error;
pub mod events;
pub mod forecasts;
pub mod idempotency;
pub mod jobs;
pub mod maintenance;
pub mod reservations;
pub mod terms;
pub mod usage;

#[cfg(test)]
mod tests;

pub use error::AppError;

use crate::domain::Rules;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// This process's id among the nodes sharing a database (leases name their holder by it).
pub fn node_id() -> &'static str {
    static NODE_ID: OnceLock<String> = OnceLock::new();
    NODE_ID.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

/// `metric` if the catalog has it; else the one refusal every route gives for it.
pub fn check_metric(rules: &Rules, metric: &str) -> Result<(), AppError> {
    if rules.catalog.has_metric(metric) {
        return Ok(());
    }
    let known: Vec<&str> = rules.catalog.metrics().map(|metric| metric.name.as_str()).collect();
    Err(AppError::UnknownMetric { metric: metric.to_owned(), known: known.join(", ") })
}

/// `plan` if the catalog has it; else the refusal that lists the plans there are.
pub fn check_plan(rules: &Rules, plan: &str) -> Result<(), AppError> {
    if rules.catalog.find_plan(plan).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = rules.catalog.plans().iter().map(|plan| plan.name.as_str()).collect();
    Err(AppError::UnknownPlan { plan: plan.to_owned(), known: known.join(", ") })
}

/// The clock, read once per use case and passed down as unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}
