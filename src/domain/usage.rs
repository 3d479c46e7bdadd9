//! Usage decisions: may a user use `amount` more of a metric, and recording it. The rules are
//! pure functions; `check` and `track` apply them through the store's traits, so they run
//! unchanged on any storage that implements those traits.

use super::Rules;
use super::events::{self, Crossing, EventType};
use super::period::Period;
use super::plan::{Enforcement, Limit, Plan};
use super::ports::{RefusalKey, StoreError, UsageRead, UsageWrite, UserRecord};
use super::user_id::UserId;
use serde_json::json;

/// The `serialize_on` scope of everything that reads then changes one user's state.
pub const USER_SCOPE: &str = "user";

/// Counters are stored as signed 64-bit integers: they stop at i64::MAX rather than wrap.
pub const COUNTER_MAX: u64 = i64::MAX as u64;

/// The largest `amount` a request may carry: 2^53 - 1, the largest integer every JSON
/// client can represent exactly.
pub const AMOUNT_MAX: u64 = (1 << 53) - 1;

/// Where a user stands against one metric's limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub used: u64,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub enforcement: Enforcement,
    pub over_soft_limit: bool,
}

impl Standing {
    pub fn new(limit: Limit, used: u64) -> Standing {
        Standing {
            used,
            limit: limit.value(),
            remaining: limit.value().map(|limit| limit.saturating_sub(used)),
            enforcement: limit.enforcement(),
            over_soft_limit: matches!(limit, Limit::Soft(limit) if used > limit),
        }
    }
}

/// Whether a use of `amount` on top of `used` is within `limit`: bypass users and non-hard
/// limits always are.
pub fn admits(limit: Limit, bypass: bool, used: u64, amount: u64) -> bool {
    match limit {
        Limit::Hard(limit) if !bypass => used.checked_add(amount).is_some_and(|total| total <= limit),
        _ => true,
    }
}

/// The highest value the counter may reach when this use is recorded.
pub fn ceiling(limit: Limit, bypass: bool, enforce: bool) -> u64 {
    match limit {
        Limit::Hard(limit) if enforce && !bypass => limit.min(COUNTER_MAX),
        _ => COUNTER_MAX,
    }
}

/// A question about one user, metric and period.
#[derive(Clone, Debug)]
pub struct UsageQuery {
    pub user_id: UserId,
    pub metric: String,
    pub amount: u64,
    pub period: Period,
}

/// The answer to a check, and the body of every track answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub user_id: UserId,
    pub plan: String,
    pub metric: String,
    pub period: Period,
    pub amount: u64,
    pub bypass: bool,
    pub standing: Standing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackOutcome {
    /// The amount was added; `verdict.standing.used` is the value after the add.
    /// `enforced` is false for usage recorded with `enforce: false`.
    Recorded { verdict: Verdict, enforced: bool },
    /// A hard limit refused it; nothing changed.
    Refused { verdict: Verdict, upgrade_to: Option<String> },
    /// The counter would pass `COUNTER_MAX`; nothing changed.
    Overflow { verdict: Verdict },
    /// Tracking is switched off: nothing was stored; the verdict is a check's.
    NotTracked { verdict: Verdict },
}

fn verdict(rules: &Rules, plan: &Plan, query: &UsageQuery, used: u64) -> Verdict {
    let bypass = rules.is_bypass(&query.user_id);
    let limit = plan.limit(&query.metric);
    Verdict {
        allowed: admits(limit, bypass, used, query.amount),
        user_id: query.user_id.clone(),
        plan: plan.name.clone(),
        metric: query.metric.clone(),
        period: query.period,
        amount: query.amount,
        bypass,
        standing: Standing::new(limit, used),
    }
}

/// Answers "may this user use `amount` more?" without changing anything. A user never seen
/// is on the default plan with nothing used.
pub fn check(store: &(impl UsageRead + ?Sized), rules: &Rules, query: &UsageQuery) -> Result<Verdict, StoreError> {
    let (plan, used) = match store.find_user(&query.user_id)? {
        Some(user) => (rules.catalog.plan_or_default(&user.plan), store.counter(user.pk, query.period, &query.metric)?),
        None => (rules.catalog.default_plan(), 0),
    };
    Ok(verdict(rules, plan, query, used))
}

/// Checks and records in one step, inside one write transaction serialized on the user (the
/// user's creation, the add and the once-only alerts), so no concurrent track can slip
/// between the check and the add, on any node.
pub fn track(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    query: &UsageQuery,
    enforce: bool,
    now_ms: i64,
) -> Result<TrackOutcome, StoreError> {
    if !rules.tracking_enabled {
        return Ok(TrackOutcome::NotTracked { verdict: check(store, rules, query)? });
    }
    store.serialize_on(USER_SCOPE, &query.user_id)?;
    let user = store.find_user(&query.user_id)?;
    let plan = rules.plan_of(user.as_ref());
    let bypass = rules.is_bypass(&query.user_id);
    let limit = plan.limit(&query.metric);
    let ceiling = ceiling(limit, bypass, enforce);

    let user_pk = match &user {
        Some(user) => Some(user.pk),
        // A new user is only created when the use is recorded: a refusal changes nothing.
        None if query.amount <= ceiling => Some(store.create_user(&query.user_id, &plan.name, now_ms)?.pk),
        None => None,
    };
    let added = match user_pk {
        Some(user_pk) => store.increment_within(user_pk, query.period, &query.metric, query.amount, ceiling, now_ms)?,
        None => None,
    };
    Ok(match (added, user_pk) {
        (Some(used_after), Some(user_pk)) => {
            let used_before = used_after - query.amount;
            let mut verdict = verdict(rules, plan, query, used_before);
            verdict.standing = Standing::new(limit, used_after);
            let crossing = Crossing {
                user_pk,
                user_id: &query.user_id,
                plan: &plan.name,
                metric: &query.metric,
                period: query.period,
                limit,
                used_before,
                used: used_after,
            };
            events::usage_alerts(store, rules, &crossing, now_ms)?;
            TrackOutcome::Recorded { verdict, enforced: enforce }
        }
        _ => {
            let used = match &user {
                Some(user) => store.counter(user.pk, query.period, &query.metric)?,
                None => 0,
            };
            let verdict = verdict(rules, plan, query, used);
            if verdict.allowed || !enforce {
                TrackOutcome::Overflow { verdict }
            } else {
                let upgrade_to = rules
                    .catalog
                    .cheapest_plan_where(&plan.name, |other| {
                        admits(other.limit(&query.metric), false, used, query.amount)
                    })
                    .map(|other| other.name.clone());
                let data = json!({
                    "metric": query.metric,
                    "period": query.period.to_string(),
                    "plan": plan.name,
                    "used": used,
                    "limit": limit.value(),
                    "amount": query.amount,
                });
                let key = RefusalKey {
                    user_id: &query.user_id,
                    period: query.period,
                    kind: EventType::LimitExceeded.as_str(),
                    subject: &query.metric,
                };
                events::refusal(store, rules, EventType::LimitExceeded, &key, data, now_ms)?;
                TrackOutcome::Refused { verdict, upgrade_to }
            }
        }
    })
}

/// The user's standing on every configured metric in `period`, in catalog order.
pub fn standings(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    user: &UserRecord,
    period: Period,
) -> Result<Vec<(String, Standing)>, StoreError> {
    let plan = rules.catalog.plan_or_default(&user.plan);
    let counters = store.counters(user.pk, period)?;
    Ok(rules
        .catalog
        .metrics()
        .map(|metric| {
            let used = counters.iter().find(|(name, _)| *name == metric.name).map_or(0, |(_, used)| *used);
            (metric.name.clone(), Standing::new(plan.limit(&metric.name), used))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_limit_admits_up_to_the_limit_exactly() {
        assert!(admits(Limit::Hard(30), false, 29, 1));
        assert!(!admits(Limit::Hard(30), false, 30, 1));
        assert!(!admits(Limit::Hard(30), false, 0, 31));
    }

    #[test]
    fn bypass_soft_and_unlimited_always_admit() {
        assert!(admits(Limit::Hard(30), true, 30, 5));
        assert!(admits(Limit::Soft(10), false, 10, 5));
        assert!(admits(Limit::Unlimited, false, u64::MAX, 5));
    }

    #[test]
    fn admits_never_overflows() {
        assert!(!admits(Limit::Hard(u64::MAX), false, u64::MAX, 1));
    }

    #[test]
    fn ceiling_is_the_limit_only_when_enforced_and_hard() {
        assert_eq!(ceiling(Limit::Hard(30), false, true), 30);
        assert_eq!(ceiling(Limit::Hard(30), false, false), COUNTER_MAX);
        assert_eq!(ceiling(Limit::Hard(30), true, true), COUNTER_MAX);
        assert_eq!(ceiling(Limit::Soft(30), false, true), COUNTER_MAX);
    }

    #[test]
    fn standing_reports_remaining_and_soft_overage() {
        let soft = Standing::new(Limit::Soft(10_000), 10_001);
        assert!(soft.over_soft_limit);
        assert_eq!(soft.remaining, Some(0));
        let at_limit = Standing::new(Limit::Soft(10_000), 10_000);
        assert!(!at_limit.over_soft_limit);
        let unlimited = Standing::new(Limit::Unlimited, 7);
        assert_eq!((unlimited.limit, unlimited.remaining), (None, None));
        assert_eq!(Standing::new(Limit::Hard(30), 12).remaining, Some(18));
    }
}
