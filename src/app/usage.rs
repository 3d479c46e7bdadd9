//! The hot use cases: check and track a metric, check and use a feature. Each track or use
//! is one writer job serialized on the user (and on its Idempotency-Key when it has one),
//! queued without waiting: the caller waits for or awaits its `IdempotentWrite`. A batch of
//! tracks is one writer job that runs them in order.

use super::AppError;
use super::idempotency::{self, Answered, IdempotentWrite, Lookup, Once, Render};
use crate::domain::Rules;
use crate::domain::feature::{self, FeatureVerdict, UseOutcome};
use crate::domain::ports::{Pending, Store, WriteTx};
use crate::domain::usage::{self, TrackOutcome, UsageQuery, Verdict};
use crate::domain::user_id::UserId;
use std::sync::Arc;

/// May the user use `query.amount` more? Changes nothing.
pub fn check(store: &Store, rules: &Rules, query: &UsageQuery, now_ms: i64) -> Result<Verdict, AppError> {
    Ok(store.read_live(|reader| usage::check(reader, rules, query, now_ms))?)
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
    Ok(store.read_live(|reader| feature::check(reader, rules, user_id, feature, now_ms))?)
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

/// One track of a batch, validated.
pub struct BatchTrack {
    pub query: UsageQuery,
    pub enforce: bool,
    pub once: Option<Once>,
}

/// A batch queued on the writer as one job; `answer` awaits its commit.
pub struct BatchWrite {
    pending: Pending<Vec<Lookup<TrackOutcome>>>,
    render: Render<TrackOutcome>,
}

impl BatchWrite {
    /// Each track's answer in input order (`Err`: its key was reused with another request),
    /// or the failure of the whole batch, which then recorded nothing.
    pub async fn answer(self) -> Result<Vec<Result<Answered<TrackOutcome>, AppError>>, AppError> {
        let lookups = self.pending.await?;
        Ok(lookups.into_iter().map(|lookup| idempotency::finish(lookup, &*self.render)).collect())
    }
}

/// Tracks every one of `tracks` in input order, in ONE writer job, so the batch commits in
/// one group and a user's tracks apply in the order sent. Each stands alone: a track that is
/// refused, overflows or reuses a key returns its outcome having changed no usage (only the
/// refusal counters, as a single refused track does), so the next one runs as if it were
/// sent by itself; no savepoint per track is needed. A storage failure is not an outcome:
/// it fails the job, whose savepoint rolls back every track of it (nothing acknowledged;
/// a retry with the same keys is safe).
pub fn track_batch(
    store: &Store,
    rules: &Arc<Rules>,
    mut tracks: Vec<BatchTrack>,
    now_ms: i64,
    render: Render<TrackOutcome>,
) -> BatchWrite {
    if !rules.tracking_enabled {
        // With tracking off nothing is stored, not even the keys.
        tracks.iter_mut().for_each(|track| track.once = None);
    }
    let (keep_hours, rules) = (rules.idempotency_hours, Arc::clone(rules));
    let job_render = Arc::clone(&render);
    let pending = store.submit_usage(move |tx| {
        let mut lookups = Vec::with_capacity(tracks.len());
        for track in &tracks {
            let mut job = |tx: &dyn WriteTx| usage::track(tx, &rules, &track.query, track.enforce, now_ms);
            let lookup = match &track.once {
                None => Lookup::Fresh(job(tx)?, None),
                Some(once) => {
                    let user_id = track.query.user_id.as_str();
                    idempotency::run_once(tx, keep_hours, once, user_id, now_ms, &mut job, &*job_render)?
                }
            };
            lookups.push(lookup);
        }
        Ok(lookups)
    });
    BatchWrite { pending, render }
}

/// Every flag OFREP serves for one user, read at one moment: the plan that applies (a
/// member's is their account's), and every configured feature's verdict (may they use it
/// now), in catalog order. Changes nothing.
pub struct Flags {
    pub plan: String,
    pub features: Vec<FeatureVerdict>,
}

pub fn flags(store: &Store, rules: &Rules, user_id: &UserId, now_ms: i64) -> Result<Flags, AppError> {
    Ok(store.read_live_snapshot(|reader| {
        let user = reader.find_user(user_id)?;
        let features = match &user {
            Some(user) => feature::check_all(reader, rules, user, now_ms)?,
            None => {
                let features = rules.catalog.features().iter();
                features.map(|name| feature::check(reader, rules, user_id, name, now_ms)).collect::<Result<_, _>>()?
            }
        };
        let (terms, _, _) = feature::feature_standpoint(reader, rules, user.as_ref(), user_id.as_str(), now_ms)?;
        Ok(Flags { plan: terms.plan.name.clone(), features })
    })?)
}

/// The plan that applies to the user: a member's account's, else their own (the default
/// plan for a user never seen).
pub fn plan_name(store: &Store, rules: &Rules, user_id: &UserId, now_ms: i64) -> Result<String, AppError> {
    Ok(store.read_live(|reader| {
        let user = reader.find_user(user_id)?;
        let (terms, _, _) = feature::feature_standpoint(reader, rules, user.as_ref(), user_id.as_str(), now_ms)?;
        Ok(terms.plan.name.clone())
    })?)
}
