//! What operators see and do: usage summaries, plan distribution with revenue estimates,
//! offenders, history, and the audited actions (plan change, reset, cleanup, erasure).
//! Each action writes its audit row through the same transaction as the change.

use super::Rules;
use super::events::{self, EventType};
use super::feature::{self, FeatureVerdict};
use super::period::Period;
use super::plan::{Enforcement, Limit};
use super::ports::{
    AdminRead, AdminWrite, BillingRead, BillingWrite, CounterOwner, CustomerFields, CustomerKey, ErasureRecord,
    ForecastWrite, RefusalCount, StoreError, UsageRead, UsageWrite, UserRecord,
};
use super::usage::{self, Standing, USER_SCOPE};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub struct PlanShare {
    pub plan: String,
    pub users: u64,
    /// users / all users, 0 when there are none.
    pub share: f64,
    /// Accounts on the plan.
    pub accounts: u64,
    /// Users on the plan who are members of an account (and pay through it).
    pub members: u64,
    pub price_cents: u64,
    /// Revenue estimate: (users who are not members + accounts) on the plan x its price. An
    /// account pays its plan once; its members do not pay theirs.
    pub revenue_cents: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    pub plans: Vec<PlanShare>,
    pub users_total: u64,
    pub revenue_cents_total: u64,
}

/// Users per configured plan, in rank order. Users on a plan no longer configured count
/// under the default plan, as they are served.
pub fn plan_distribution(store: &(impl AdminRead + ?Sized), rules: &Rules) -> Result<Distribution, StoreError> {
    let mut users_by_plan: HashMap<&str, u64> = HashMap::new();
    for (stored_plan, users) in store.plan_users()? {
        let plan = rules.catalog.plan_or_default(&stored_plan);
        *users_by_plan.entry(plan.name.as_str()).or_default() += users;
    }
    let users_total: u64 = users_by_plan.values().sum();
    let (accounts, members) = store.account_plans()?;
    let count_by_plan = |rows: Vec<(String, u64)>| {
        let mut by_plan: HashMap<String, u64> = HashMap::new();
        for (stored_plan, count) in rows {
            *by_plan.entry(rules.catalog.plan_or_default(&stored_plan).name.clone()).or_default() += count;
        }
        by_plan
    };
    let (accounts, members) = (count_by_plan(accounts), count_by_plan(members));
    let plans: Vec<PlanShare> = rules
        .catalog
        .plans()
        .iter()
        .map(|plan| {
            let users = users_by_plan.get(plan.name.as_str()).copied().unwrap_or(0);
            let accounts = accounts.get(&plan.name).copied().unwrap_or(0);
            let members = members.get(&plan.name).copied().unwrap_or(0);
            let paying = users.saturating_sub(members).saturating_add(accounts);
            PlanShare {
                plan: plan.name.clone(),
                users,
                share: if users_total == 0 { 0.0 } else { users as f64 / users_total as f64 },
                accounts,
                members,
                price_cents: plan.price_cents,
                revenue_cents: paying.saturating_mul(plan.price_cents),
            }
        })
        .collect();
    let revenue_cents_total = plans.iter().map(|plan| plan.revenue_cents).fold(0u64, u64::saturating_add);
    Ok(Distribution { plans, users_total, revenue_cents_total })
}

/// One user's usage of every configured metric in a period, in catalog order.
pub type MetricValues = Vec<(String, u64)>;

pub fn every_metric(rules: &Rules, values: impl IntoIterator<Item = (String, u64)>) -> MetricValues {
    let found: HashMap<String, u64> = values.into_iter().collect();
    rules.catalog.metrics().map(|metric| (metric.name.clone(), found.get(&metric.name).copied().unwrap_or(0))).collect()
}

#[derive(Clone, Debug, PartialEq)]
pub struct TopUser {
    pub user_id: String,
    pub plan: String,
    pub usage: MetricValues,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub period: Period,
    pub metric: String,
    pub totals: MetricValues,
    pub active_users: u64,
    pub distribution: Distribution,
    pub top_users: Vec<TopUser>,
}

pub fn summary(
    store: &(impl AdminRead + UsageRead + ?Sized),
    rules: &Rules,
    period: Period,
    metric: &str,
    top: u32,
) -> Result<Summary, StoreError> {
    let mut top_users = Vec::new();
    for (user, _) in store.top_users(period, metric, top)? {
        let usage = every_metric(rules, store.counters(user.pk, period)?);
        top_users.push(TopUser {
            user_id: user.user_id,
            plan: rules.catalog.plan_or_default(&user.plan).name.clone(),
            usage,
        });
    }
    Ok(Summary {
        period,
        metric: metric.to_owned(),
        totals: every_metric(rules, store.period_totals(period)?),
        active_users: store.active_users(period)?,
        distribution: plan_distribution(store, rules)?,
        top_users,
    })
}

/// A summary of one month and the totals of the months up to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Overview {
    pub summary: Summary,
    /// Totals of every metric per month, oldest first, ending with the summary's period.
    pub months: Vec<(Period, MetricValues)>,
}

/// The summary of `period` and the totals of the `months` months ending with it (fewer when
/// they would start before 1970-01): the summary's statements and one for all the months.
/// Run it in one read snapshot so the cards and the charts agree.
pub fn overview(
    store: &(impl AdminRead + UsageRead + ?Sized),
    rules: &Rules,
    period: Period,
    metric: &str,
    top: u32,
    months: u32,
) -> Result<Overview, StoreError> {
    let summary = summary(store, rules, period, metric, top)?;
    let oldest = period.oldest_kept(months.max(1));
    let mut by_period: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for (month, metric, total) in store.totals_by_month(oldest, period.months_before(1))? {
        by_period.entry(month).or_default().push((metric, total));
    }
    let mut totals = Vec::with_capacity(months as usize);
    for back in (1..months.max(1)).rev() {
        let month = period.months_before(back);
        if totals.last().is_some_and(|(last, _)| *last == month) || month == period {
            continue; // months_before stops at 1970-01
        }
        let values = by_period.remove(&month.to_string()).unwrap_or_default();
        totals.push((month, every_metric(rules, values)));
    }
    totals.push((period, summary.totals.clone()));
    Ok(Overview { summary, months: totals })
}

#[derive(Clone, Debug, PartialEq)]
pub struct Offender {
    pub user_id: String,
    pub plan: String,
    pub used: u64,
    pub limit: Option<u64>,
    pub enforcement: Enforcement,
    /// used / limit x 100; None when unlimited or the limit is 0.
    pub percent_of_limit: Option<f64>,
}

pub fn offenders(
    store: &(impl AdminRead + ?Sized),
    rules: &Rules,
    period: Period,
    metric: &str,
    limit: u32,
) -> Result<Vec<Offender>, StoreError> {
    Ok(store
        .top_users(period, metric, limit)?
        .into_iter()
        .map(|(user, used)| {
            let plan = rules.catalog.plan_or_default(&user.plan);
            let plan_limit = plan.limit(metric);
            let percent_of_limit = match plan_limit {
                Limit::Hard(limit) | Limit::Soft(limit) if limit > 0 => Some(used as f64 * 100.0 / limit as f64),
                _ => None,
            };
            Offender {
                user_id: user.user_id,
                plan: plan.name.clone(),
                used,
                limit: plan_limit.value(),
                enforcement: plan_limit.enforcement(),
                percent_of_limit,
            }
        })
        .collect())
}

/// The user's usage in each of the `months` periods ending with `current`, newest first.
/// A user as the user view shows them, on the API and the dashboard alike.
#[derive(Clone, Debug)]
pub struct UserStanding {
    pub user: UserRecord,
    /// The plan the user is served on (the default plan if the stored one is gone).
    pub plan: String,
    pub bypass: bool,
    pub period: Period,
    /// Every configured metric in `period`, in catalog order.
    pub usage: Vec<(String, Standing)>,
    /// Every feature, now.
    pub features: Vec<FeatureVerdict>,
    /// The refusal counters of `period`.
    pub refusals: Vec<RefusalCount>,
    /// The account the user is a member of (then `usage` and `features` are the pool's).
    pub account_id: Option<String>,
    /// The user's own Stripe id and email (a member's account has its own).
    pub fields: CustomerFields,
}

/// The user's standing on every metric in `period` and on every feature at `now_ms`: for a
/// member, the account's pool under the account's terms.
pub fn user_standing(
    store: &(impl UsageRead + BillingRead + ?Sized),
    rules: &Rules,
    user: UserRecord,
    period: Period,
    now_ms: i64,
) -> Result<UserStanding, StoreError> {
    let plan = rules.catalog.plan_or_default(&user.plan).name.clone();
    let usage = usage::standings(store, rules, &user, period, now_ms)?;
    let features = feature::check_all(store, rules, &user, now_ms)?;
    let refusals = store.refusals(&user.user_id, period)?;
    let bypass = rules.is_bypass(&user.user_id);
    let account_id = match user.account_pk {
        Some(account_pk) => Some(store.get_account(account_pk)?.account_id),
        None => None,
    };
    let fields = store.customer_fields(CustomerKey { kind: "user", id: &user.user_id })?;
    Ok(UserStanding { user, plan, bypass, period, usage, features, refusals, account_id, fields })
}

pub fn history(
    store: &(impl AdminRead + ?Sized),
    rules: &Rules,
    user: &UserRecord,
    current: Period,
    months: u32,
) -> Result<Vec<(Period, MetricValues)>, StoreError> {
    let rows = store.counters_since(user.pk, current.oldest_kept(months))?;
    Ok(by_month(rules, rows, current, months))
}

/// (period, metric, value) rows as one entry per month, newest first, every metric in each.
pub fn by_month(
    rules: &Rules,
    rows: Vec<(String, String, u64)>,
    current: Period,
    months: u32,
) -> Vec<(Period, MetricValues)> {
    let mut by_period: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for (period, metric, value) in rows {
        by_period.entry(period).or_default().push((metric, value));
    }
    (0..months)
        .map(|back| {
            let period = current.months_before(back);
            let values = by_period.remove(&period.to_string()).unwrap_or_default();
            (period, every_metric(rules, values))
        })
        .collect()
}

/// Who did it, for the audit log: a key's name, or a job's.
pub type Actor<'a> = &'a str;

/// Sets the user's plan, creating the user if needed; audited when `actor` is given.
pub fn change_plan(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    rules: &Rules,
    user_id: &str,
    plan: &str,
    actor: Option<Actor<'_>>,
    now_ms: i64,
) -> Result<UserRecord, StoreError> {
    tx.serialize_on(USER_SCOPE, user_id)?;
    let (user, previous) = match tx.find_user(user_id)? {
        Some(mut user) => {
            tx.set_plan(user.pk, plan, now_ms)?;
            let previous = std::mem::replace(&mut user.plan, plan.to_owned());
            (user, Some(previous))
        }
        None => (tx.create_user(user_id, plan, now_ms)?, None),
    };
    let details = json!({ "from": previous, "to": plan });
    if let Some(actor) = actor {
        tx.append_audit(now_ms, actor, "plan_changed", Some(user_id), &details.to_string())?;
    }
    if previous.as_deref() != Some(plan) {
        events::emit(tx, rules, EventType::PlanChanged, Some(user_id), details, now_ms)?;
    }
    Ok(user)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetReport {
    pub period: Period,
    /// Every reset metric with its value before the reset.
    pub before: MetricValues,
}

/// Zeroes the user's counters of the current period (one metric or all). `None` when the
/// user is unknown. Runs on the writer, so it is ordered with concurrent tracks.
pub fn reset_usage(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    rules: &Rules,
    user_id: &str,
    metric: Option<&str>,
    actor: Actor<'_>,
    now_ms: i64,
) -> Result<Option<ResetReport>, StoreError> {
    tx.serialize_on(USER_SCOPE, user_id)?;
    let Some(user) = tx.find_user(user_id)? else {
        return Ok(None);
    };
    let period = Period::of_unix_ms(now_ms);
    let found = tx.reset_counters(user.pk, period, metric)?;
    let before: MetricValues =
        every_metric(rules, found).into_iter().filter(|(name, _)| metric.is_none_or(|metric| metric == name)).collect();
    let details = json!({
        "period": period.to_string(),
        "metric": metric,
        "before": before.iter().map(|(name, value)| (name.clone(), json!(value))).collect::<serde_json::Map<_, _>>(),
    });
    tx.append_audit(now_ms, actor, "usage_reset", Some(user_id), &details.to_string())?;
    events::emit(tx, rules, EventType::UsageReset, Some(user_id), details, now_ms)?;
    Ok(Some(ResetReport { period, before }))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanupReport {
    pub deleted_counters: u64,
    pub oldest_period_kept: Period,
    pub pruned_idempotency_keys: u64,
    pub pruned_events: u64,
}

/// How many rows one cleanup step deletes of each kind at most: small enough that a step
/// is a short writer job, so tracks interleave with a long cleanup.
pub const CLEANUP_CHUNK: u32 = 2000;

/// What a cleanup keeps: counters from `oldest_period_kept` on, answers stored from
/// `answers_since_ms` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub oldest_period_kept: Period,
    pub answers_since_ms: i64,
}

impl Retention {
    pub fn new(rules: &Rules, retention_months: u32, now_ms: i64) -> Retention {
        Retention {
            oldest_period_kept: Period::of_unix_ms(now_ms).oldest_kept(retention_months),
            answers_since_ms: now_ms - i64::from(rules.idempotency_hours) * 3_600_000,
        }
    }
}

/// One bounded step of a cleanup: deletes up to `CLEANUP_CHUNK` rows of each kind older
/// than `retention` and adds the counts to `report`. Returns true when nothing was left to
/// delete (then call `finish_cleanup`). Each step is its own writer job.
pub fn cleanup_step(
    tx: &(impl UsageWrite + AdminWrite + ForecastWrite + ?Sized),
    retention: Retention,
    report: &mut CleanupReport,
) -> Result<bool, StoreError> {
    let counters = tx.delete_counters_before(retention.oldest_period_kept, CLEANUP_CHUNK)?;
    let answers = tx.prune_answers(retention.answers_since_ms, CLEANUP_CHUNK)?;
    let events = tx.prune_events(retention.oldest_period_kept.start_unix_ms(), CLEANUP_CHUNK)?;
    let alerts = tx.prune_alerts(&retention.oldest_period_kept.to_string(), CLEANUP_CHUNK)?;
    let refusals = tx.prune_refusals(retention.oldest_period_kept, CLEANUP_CHUNK)?;
    let pooled = tx.delete_account_counters_before(retention.oldest_period_kept, CLEANUP_CHUNK)?;
    let holds = tx.prune_reservations(retention.oldest_period_kept, CLEANUP_CHUNK)?;
    let days = tx.prune_forecast_data(retention.oldest_period_kept, CLEANUP_CHUNK)?;
    report.deleted_counters += counters;
    report.pruned_idempotency_keys += answers;
    report.pruned_events += events;
    Ok(counters == 0
        && answers == 0
        && events == 0
        && alerts == 0
        && refusals == 0
        && pooled == 0
        && holds == 0
        && days == 0)
}

/// The last step of a cleanup: drops the rollups of deleted periods, writes the audit row
/// and the event.
pub fn finish_cleanup(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    rules: &Rules,
    retention_months: u32,
    report: &CleanupReport,
    actor: Actor<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.delete_rollups_before(report.oldest_period_kept)?;
    let details = json!({
        "retention_months": retention_months,
        "deleted_counters": report.deleted_counters,
        "oldest_period_kept": report.oldest_period_kept.to_string(),
        "pruned_idempotency_keys": report.pruned_idempotency_keys,
        "pruned_events": report.pruned_events,
    });
    tx.append_audit(now_ms, actor, "cleanup", None, &details.to_string())?;
    events::emit(tx, rules, EventType::Cleanup, None, details, now_ms)?;
    Ok(())
}

/// What an erased user is called afterwards: `sha256:` and the hex digest of their id.
pub fn erased_name(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    let hex = super::hex(&digest);
    format!("sha256:{hex}")
}

/// How many answers and events one erasure step scrubs at most.
pub const ERASURE_CHUNK: u32 = 2000;

/// The first step of erasing a user: the user row goes (with their counters, feature uses
/// and alert marks), audit rows that named them name the hash instead, and the erasure is
/// recorded so that it finishes even across a crash. From this step on the user is
/// unreachable. `None` when nothing names the user (no row, no answer, no event, no
/// erasure already under way).
pub fn begin_erasure(
    tx: &(impl UsageWrite + AdminWrite + BillingWrite + ForecastWrite + ?Sized),
    user_id: &str,
    actor: Actor<'_>,
    now_ms: i64,
) -> Result<Option<ErasureRecord>, StoreError> {
    let hash = erased_name(user_id);
    tx.serialize_on(USER_SCOPE, user_id)?;
    let pending = tx.pending_erasures()?.into_iter().find(|erasure| erasure.user_id == user_id);
    // A user refused on first contact was never stored, yet events and idempotent answers
    // may name them: those are erased too.
    let user = tx.find_user(user_id)?;
    if let Some(user) = &user {
        tx.delete_user(user)?;
        tx.delete_forecast_data(CounterOwner::User(user.pk))?;
    }
    let erasure = pending.unwrap_or(ErasureRecord {
        user_id: user_id.to_owned(),
        hash,
        actor: actor.to_owned(),
        started_at_ms: now_ms,
    });
    let refusals = tx.delete_refusals_of(user_id)? + tx.delete_terms_of(CustomerKey { kind: "user", id: user_id })?;
    // Closed statements keep their sums: the user's lines stay, under the hash. (Their Stripe
    // id and email were columns of the user row, deleted above.)
    let statement_lines = tx.redact_statement_user(user_id, &erasure.hash)?;
    let (answers, events) = scrub(tx, &erasure)?;
    if user.is_none()
        && refusals == 0
        && statement_lines == 0
        && answers == 0
        && events == 0
        && !tx.pending_erasures()?.contains(&erasure)
    {
        return Ok(None);
    }
    tx.redact_audit_target(user_id, &erasure.hash)?;
    tx.start_erasure(&erasure)?;
    Ok(Some(erasure))
}

/// Deletes a chunk of the user's idempotent answers and scrubs a chunk of their events.
fn scrub(tx: &(impl UsageWrite + AdminWrite + ?Sized), erasure: &ErasureRecord) -> Result<(u64, u64), StoreError> {
    let answers = tx.delete_answers_of(&erasure.user_id, ERASURE_CHUNK)?;
    let events = tx.redact_event_user(&erasure.user_id, &erasure.hash, ERASURE_CHUNK)?;
    Ok((answers, events))
}

/// One bounded step of an erasure; true when nothing was left to scrub (then call
/// `finish_erasure`).
pub fn erasure_step(tx: &(impl UsageWrite + AdminWrite + ?Sized), erasure: &ErasureRecord) -> Result<bool, StoreError> {
    let (answers, events) = scrub(tx, erasure)?;
    Ok(answers == 0 && events == 0)
}

/// The last step: the erasure is done; it is audited under the hash and its event emitted.
pub fn finish_erasure(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    rules: &Rules,
    erasure: &ErasureRecord,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.serialize_on(USER_SCOPE, &erasure.user_id)?;
    if !tx.finish_erasure(&erasure.user_id)? {
        // Another node finished it (two nodes resuming one erasure at startup).
        return Ok(());
    }
    tx.append_audit(now_ms, &erasure.actor, "user_erased", Some(&erasure.hash), "{}")?;
    events::emit(tx, rules, EventType::UserErased, Some(&erasure.hash), json!({}), now_ms)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erased_name_is_a_stable_sha256() {
        assert_eq!(erased_name("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
