//! The hot use cases: check and track a metric, check and use a feature. Each track or use
//! is one writer job serialized on the user (and on its Idempotency-Key when it has one),
//! queued without waiting: the caller waits for or awaits its `IdempotentWrite`.

use super::AppError;
use super::idempotency::{self, IdempotentWrite, Once, Render};
use crate::domain::Rules;
use crate::domain::feature::{self, FeatureVerdict, UseOutcome};
use crate::domain::ports::Store;
use crate::domain::usage::{self, TrackOutcome, UsageQuery, Verdict};
use crate::domain::user_id::UserId;
use std::sync::Arc;

/// May the user use `query.amount` more? Changes nothing.
pub fn check(store: &Store, rules: &Rules, query: &UsageQuery) -> Result<Verdict, AppError> {
    Ok(store.read(|reader| usage::check(reader, rules, query))?)
}

/// Checks and records, at most once per `once` key; `render` makes the answer kept for it.
pub fn track(
    store: &Store,
    rules: &Arc<Rules>,
    query: UsageQuery,
    enforce: bool,
    once: Option<Once>,
    now_ms: i64,
    render: Render<TrackOutcome>,
) -> IdempotentWrite<TrackOutcome> {
    // With tracking off nothing is stored, not even the key.
    let once = once.filter(|_| rules.tracking_enabled);
    let (keep_hours, user_id, rules) = (rules.idempotency_hours, query.user_id.to_string(), Arc::clone(rules));
    idempotency::submit(
        store,
        keep_hours,
        once,
        user_id,
        now_ms,
        move |tx| usage::track(tx, &rules, &query, enforce, now_ms),
        render,
    )
}

/// May the user use `feature` now? Changes nothing.
pub fn check_feature(
    store: &Store,
    rules: &Rules,
    user_id: &UserId,
    feature: &str,
    now_ms: i64,
) -> Result<FeatureVerdict, AppError> {
    Ok(store.read(|reader| feature::check(reader, rules, user_id, feature, now_ms))?)
}

/// Uses `feature` now if the plan and the window allow it, at most once per `once` key.
pub fn use_feature(
    store: &Store,
    rules: &Arc<Rules>,
    user_id: UserId,
    feature_name: String,
    once: Option<Once>,
    now_ms: i64,
    render: Render<UseOutcome>,
) -> IdempotentWrite<UseOutcome> {
    let (keep_hours, rules) = (rules.idempotency_hours, Arc::clone(rules));
    let key_user = user_id.to_string();
    idempotency::submit(
        store,
        keep_hours,
        once,
        key_user,
        now_ms,
        move |tx| feature::use_feature(tx, &rules, &user_id, &feature_name, now_ms),
        render,
    )
}
