//! Usage decisions: may a user use `amount` more of a metric, and recording it. The rules are
//! pure functions; `check` and `track` apply them through the store's traits, so they run
//! unchanged on any storage that implements those traits.

use super::Rules;
use super::events::{self, AlertOwner, Crossing, EventType};
use super::period::Period;
use super::plan::{Enforcement, Limit, Plan};
use super::ports::{AccountRecord, CounterOwner, RefusalKey, StoreError, UsageRead, UsageWrite, UserRecord};
use super::terms::{self, Counter, Customer, ResolvedLimit, Source, Terms};
use super::user_id::UserId;
use serde_json::json;

/// The `serialize_on` scope of everything that reads then changes one user's state.
pub const USER_SCOPE: &str = "user";

/// The `serialize_on` scope of everything that reads then changes an account's pool. Taken
/// after the user's scope when both are needed, never before.
pub const ACCOUNT_SCOPE: &str = "account";

/// Counters are stored as signed 64-bit integers: they stop at i64::MAX rather than wrap.
pub const COUNTER_MAX: u64 = i64::MAX as u64;

/// The largest `amount` a request may carry: 2^53 - 1, the largest integer every JSON
/// client can represent exactly.
pub const AMOUNT_MAX: u64 = (1 << 53) - 1;

/// Where a user stands against one metric's limit. `limit` includes `granted` and
/// `rollover`; `source` says whether its base is the plan's or an override's; `reserved` is
/// held by open reservations and counts against the limit like `used`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub used: u64,
    pub reserved: u64,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub enforcement: Enforcement,
    pub over_soft_limit: bool,
    pub source: Source,
    pub granted: u64,
    pub rollover: u64,
}

impl Standing {
    /// A plan's limit with nothing added (the decisions' unit tests).
    #[cfg(test)]
    pub fn new(limit: Limit, used: u64) -> Standing {
        Standing::held(ResolvedLimit::of_plan(limit), used, 0)
    }

    /// With `reserved` held: `remaining` is what neither use nor holds have taken.
    pub fn held(resolved: ResolvedLimit, used: u64, reserved: u64) -> Standing {
        let limit = resolved.limit;
        Standing {
            used,
            reserved,
            limit: limit.value(),
            remaining: limit.value().map(|limit| limit.saturating_sub(used).saturating_sub(reserved)),
            enforcement: limit.enforcement(),
            over_soft_limit: matches!(limit, Limit::Soft(limit) if used > limit),
            source: resolved.source,
            granted: resolved.granted,
            rollover: resolved.rollover,
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

/// The highest value the counter may reach when this use is recorded, with `reserved` held
/// on it by other uses.
pub fn ceiling(limit: Limit, bypass: bool, enforce: bool, reserved: u64) -> u64 {
    match limit {
        Limit::Hard(limit) if enforce && !bypass => limit.min(COUNTER_MAX).saturating_sub(reserved),
        _ => COUNTER_MAX,
    }
}

/// The hold a use is drawn from (a reservation being committed): the counter it is on and
/// the amount it holds. Up to that amount the use was admitted when it was reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub owner: CounterOwner,
    pub amount: u64,
}

impl Hold {
    /// What this hold has on `owner`'s counter (nothing when it is on another: the user
    /// joined or left an account since).
    fn on(hold: Option<Hold>, owner: CounterOwner) -> u64 {
        hold.filter(|hold| hold.owner == owner).map_or(0, |hold| hold.amount)
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

/// The answer to a check, and the body of every track answer. For a member of an account,
/// `standing` is the account's pooled counter against the account's plan.
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
    /// The account whose pool `standing` is; None for a user on their own.
    pub account_id: Option<String>,
    /// The user's own counter (a member's own part of the pool; else `standing.used`).
    pub user_used: u64,
}

/// Whose counter a limit refused: the user's own, or their account's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    User,
    Account,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Account => "account",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackOutcome {
    /// The amount was added; `verdict.standing.used` is the value after the add.
    /// `enforced` is false for usage recorded with `enforce: false`.
    Recorded { verdict: Verdict, enforced: bool },
    /// A hard limit refused it; nothing changed.
    Refused { verdict: Verdict, upgrade_to: Option<String>, scope: Scope },
    /// The counter would pass `COUNTER_MAX`; nothing changed.
    Overflow { verdict: Verdict },
    /// Tracking is switched off: nothing was stored; the verdict is a check's.
    NotTracked { verdict: Verdict },
}

/// Where the use is decided: the plan that applies, the limit resolved for the counter it is
/// enforced on (`used` before this use, `reserved` by other uses' holds on it), `account`
/// for a member, and a member's own cap.
pub(super) struct Standpoint<'p> {
    pub(super) plan: &'p Plan,
    pub(super) limit: ResolvedLimit,
    pub(super) used: u64,
    pub(super) reserved: u64,
    pub(super) account: Option<AccountRecord>,
    pub(super) user_used: u64,
    pub(super) cap: Option<ResolvedLimit>,
    /// A member with a cap: what their own holds on the pool take of it.
    pub(super) user_reserved: u64,
}

impl Standpoint<'_> {
    /// What counts against the limit before this use: used and held.
    pub(super) fn taken(&self) -> u64 {
        self.used.saturating_add(self.reserved)
    }

    /// The counter the limit is enforced on, which holds are kept on.
    pub(super) fn owner(&self, user_pk: i64) -> CounterOwner {
        self.account.as_ref().map_or(CounterOwner::User(user_pk), |account| CounterOwner::Account(account.pk))
    }
}

pub(super) fn verdict(rules: &Rules, query: &UsageQuery, at: &Standpoint<'_>) -> Verdict {
    let bypass = rules.is_bypass(&query.user_id);
    let user_taken = at.user_used.saturating_add(at.user_reserved);
    let within_cap = at.cap.is_none_or(|cap| admits(cap.limit, bypass, user_taken, query.amount));
    Verdict {
        allowed: admits(at.limit.limit, bypass, at.taken(), query.amount) && within_cap,
        user_id: query.user_id.clone(),
        plan: at.plan.name.clone(),
        metric: query.metric.clone(),
        period: query.period,
        amount: query.amount,
        bypass,
        standing: Standing::held(at.limit, at.used, at.reserved),
        account_id: at.account.as_ref().map(|account| account.account_id.clone()),
        user_used: at.user_used,
    }
}

/// The plan and the resolved limit of `query.metric` for a user on their own (None: never
/// seen; overrides and grants may still name them).
fn own_limit<'r>(
    store: &(impl UsageRead + ?Sized),
    rules: &'r Rules,
    user: Option<&UserRecord>,
    query: &UsageQuery,
    now_ms: i64,
) -> Result<(&'r Plan, ResolvedLimit), StoreError> {
    let plan = rules.plan_of(user);
    let customer = Customer::User(&query.user_id);
    let counter = user.map_or(Counter::None, |user| Counter::User { pk: user.pk, created_at_ms: user.created_at_ms });
    let terms = Terms::load(store, plan, customer, now_ms)?;
    Ok((plan, terms::resolve(store, &terms, (customer, counter), &query.metric, query.period, now_ms)?))
}

/// The plan and the resolved pool limit of `query.metric` for a member of `account`, and the
/// member's own cap.
fn pool_limit<'r>(
    store: &(impl UsageRead + ?Sized),
    rules: &'r Rules,
    user: &UserRecord,
    account: &AccountRecord,
    query: &UsageQuery,
    now_ms: i64,
) -> Result<(&'r Plan, ResolvedLimit, Option<ResolvedLimit>), StoreError> {
    let plan = rules.catalog.plan_or_default(&account.plan);
    let customer = Customer::Account(&account.account_id);
    let counter = Counter::Account { pk: account.pk, created_at_ms: account.created_at_ms };
    let terms = Terms::load(store, plan, customer, now_ms)?;
    let limit = terms::resolve(store, &terms, (customer, counter), &query.metric, query.period, now_ms)?;
    let cap = terms::member_cap(store, rules, &user.user_id, &user.plan, &query.metric, query.period, now_ms)?;
    Ok((plan, limit, cap))
}

/// The standpoint of `user` (None: never seen, nothing used).
fn standpoint<'r>(
    store: &(impl UsageRead + ?Sized),
    rules: &'r Rules,
    user: Option<&UserRecord>,
    query: &UsageQuery,
    now_ms: i64,
) -> Result<Standpoint<'r>, StoreError> {
    let user_used = match user {
        Some(user) => store.counter(user.pk, query.period, &query.metric)?,
        None => 0,
    };
    if let Some(user) = user
        && let Some(account_pk) = user.account_pk
    {
        let account = store.get_account(account_pk)?;
        let (plan, limit, cap) = pool_limit(store, rules, user, &account, query, now_ms)?;
        let used = store.account_counter(account_pk, query.period, &query.metric)?;
        let reserved = store.reserved(CounterOwner::Account(account_pk), query.period, &query.metric, now_ms)?;
        let user_reserved = match cap {
            Some(_) => store.member_reserved(account_pk, user.pk, query.period, &query.metric, now_ms)?,
            None => 0,
        };
        return Ok(Standpoint { plan, limit, used, reserved, account: Some(account), user_used, cap, user_reserved });
    }
    let (plan, limit) = own_limit(store, rules, user, query, now_ms)?;
    let reserved = match user {
        Some(user) => store.reserved(CounterOwner::User(user.pk), query.period, &query.metric, now_ms)?,
        None => 0,
    };
    Ok(Standpoint { plan, limit, used: user_used, reserved, account: None, user_used, cap: None, user_reserved: 0 })
}

/// The standpoint of `user` for a write: serialized on the user (and the account for a
/// member) by the caller, so nothing it read can move before the write.
pub(super) fn write_standpoint<'r>(
    store: &(impl UsageWrite + ?Sized),
    rules: &'r Rules,
    user: Option<&UserRecord>,
    query: &UsageQuery,
    now_ms: i64,
) -> Result<Standpoint<'r>, StoreError> {
    if let Some(user) = user
        && let Some(account_pk) = user.account_pk
    {
        let account = store.get_account(account_pk)?;
        store.serialize_on(ACCOUNT_SCOPE, &account.account_id)?;
    }
    standpoint(store, rules, user, query, now_ms)
}

/// Answers "may this user use `amount` more?" without changing anything. A user never seen
/// is on the default plan with nothing used; a member is asked about the account's pool (and
/// their own cap, if an override gives them one).
pub fn check(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    query: &UsageQuery,
    now_ms: i64,
) -> Result<Verdict, StoreError> {
    let user = store.find_user(&query.user_id)?;
    Ok(verdict(rules, query, &standpoint(store, rules, user.as_ref(), query, now_ms)?))
}

/// Checks and records in one step, inside one write transaction serialized on the user (the
/// user's creation, the add and the once-only alerts), so no concurrent track can slip
/// between the check and the add, on any node. A member's track is serialized on the account
/// too, and adds to the pool and to the member's own counter in the same transaction.
pub fn track(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    query: &UsageQuery,
    enforce: bool,
    now_ms: i64,
) -> Result<TrackOutcome, StoreError> {
    track_from(store, rules, query, enforce, None, now_ms)
}

/// `track`, drawing on `hold`: the hold's own amount does not count against the limit (the
/// other holds on the counter do), and a use within it is recorded whatever the limit says
/// now (it was admitted when reserved). The caller frees the hold once this records.
pub(super) fn track_from(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    query: &UsageQuery,
    enforce: bool,
    hold: Option<Hold>,
    now_ms: i64,
) -> Result<TrackOutcome, StoreError> {
    if !rules.tracking_enabled {
        return Ok(TrackOutcome::NotTracked { verdict: check(store, rules, query, now_ms)? });
    }
    store.serialize_on(USER_SCOPE, &query.user_id)?;
    let user = store.find_user(&query.user_id)?;
    if let Some(user) = &user
        && let Some(account_pk) = user.account_pk
    {
        return track_member(store, rules, query, enforce, hold, user, account_pk, now_ms);
    }
    let (plan, resolved) = own_limit(store, rules, user.as_ref(), query, now_ms)?;
    let limit = resolved.limit;
    let (reserved, held) = match &user {
        Some(user) => {
            let owner = CounterOwner::User(user.pk);
            let held = Hold::on(hold, owner);
            (store.reserved(owner, query.period, &query.metric, now_ms)?.saturating_sub(held), held)
        }
        None => (0, 0),
    };
    let enforce_limit = enforce && query.amount > held;
    let ceiling = ceiling(limit, rules.is_bypass(&query.user_id), enforce_limit, reserved);

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
            let at = Standpoint {
                plan,
                limit: resolved,
                used: used_after - query.amount,
                reserved,
                account: None,
                user_used: used_after,
                cap: None,
                user_reserved: 0,
            };
            let mut verdict = verdict(rules, query, &at);
            verdict.standing = Standing::held(resolved, used_after, reserved);
            let crossing = Crossing {
                owner: AlertOwner::User(user_pk),
                user_id: &query.user_id,
                plan: &plan.name,
                metric: &query.metric,
                period: query.period,
                limit,
                used_before: used_after - query.amount,
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
            let at = Standpoint {
                plan,
                limit: resolved,
                used,
                reserved,
                account: None,
                user_used: used,
                cap: None,
                user_reserved: 0,
            };
            not_recorded(store, rules, query, enforce_limit, &at, now_ms)?
        }
    })
}

/// A member's track: the account's plan applies and its pooled counter is the one enforced;
/// the member's own counter grows with it.
#[allow(clippy::too_many_arguments)]
fn track_member(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    query: &UsageQuery,
    enforce: bool,
    hold: Option<Hold>,
    user: &UserRecord,
    account_pk: i64,
    now_ms: i64,
) -> Result<TrackOutcome, StoreError> {
    let account = store.get_account(account_pk)?;
    store.serialize_on(ACCOUNT_SCOPE, &account.account_id)?;
    let (plan, resolved, cap) = pool_limit(store, rules, user, &account, query, now_ms)?;
    let bypass = rules.is_bypass(&query.user_id);
    let limit = resolved.limit;
    let user_used = store.counter(user.pk, query.period, &query.metric)?;
    let user_fits = user_used.checked_add(query.amount).is_some_and(|total| total <= COUNTER_MAX);
    let owner = CounterOwner::Account(account.pk);
    let held = Hold::on(hold, owner);
    let reserved = store.reserved(owner, query.period, &query.metric, now_ms)?.saturating_sub(held);
    let enforce_limit = enforce && query.amount > held;
    // The member's own cap first: the user is serialized, so their counter and holds cannot
    // move. Their holds on the pool count against it, but for the one this use draws on.
    let user_reserved = match cap {
        Some(_) => {
            store.member_reserved(account.pk, user.pk, query.period, &query.metric, now_ms)?.saturating_sub(held)
        }
        None => 0,
    };
    let user_taken = user_used.saturating_add(user_reserved);
    let within_cap = cap.is_none_or(|cap| !enforce_limit || admits(cap.limit, bypass, user_taken, query.amount));
    let ceiling = if user_fits && within_cap { ceiling(limit, bypass, enforce_limit, reserved) } else { 0 };
    let added =
        store.increment_account_within(account.pk, query.period, &query.metric, query.amount, ceiling, now_ms)?;
    let Some(pool_after) = added else {
        let used = store.account_counter(account.pk, query.period, &query.metric)?;
        let at =
            Standpoint { plan, limit: resolved, used, reserved, account: Some(account), user_used, cap, user_reserved };
        return not_recorded(store, rules, query, enforce_limit && user_fits, &at, now_ms);
    };
    // The member's own counter cannot refuse: it was checked to fit above.
    let user_after = store
        .increment_within(user.pk, query.period, &query.metric, query.amount, COUNTER_MAX, now_ms)?
        .unwrap_or(user_used);
    let crossing = Crossing {
        owner: AlertOwner::Account { pk: account.pk, account_id: &account.account_id },
        user_id: &query.user_id,
        plan: &plan.name,
        metric: &query.metric,
        period: query.period,
        limit,
        used_before: pool_after - query.amount,
        used: pool_after,
    };
    events::usage_alerts(store, rules, &crossing, now_ms)?;
    // The verdict is of the use before it was added (as for a user on their own), then shows
    // the counters after it.
    let at = Standpoint {
        plan,
        limit: resolved,
        used: pool_after - query.amount,
        reserved,
        account: Some(account.clone()),
        user_used,
        cap,
        user_reserved,
    };
    let mut verdict = verdict(rules, query, &at);
    verdict.standing = Standing::held(resolved, pool_after, reserved);
    verdict.user_used = user_after;
    Ok(TrackOutcome::Recorded { verdict, enforced: enforce })
}

/// The outcome of a track whose add did not happen: a refusal by the hard limit (counted,
/// its event written when due, naming the account for a member), or an overflow.
pub(super) fn not_recorded(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    query: &UsageQuery,
    enforce: bool,
    at: &Standpoint<'_>,
    now_ms: i64,
) -> Result<TrackOutcome, StoreError> {
    let mut verdict = verdict(rules, query, at);
    if verdict.allowed || !enforce {
        return Ok(TrackOutcome::Overflow { verdict });
    }
    // A member refused by their own cap (the pool would have taken it) is a user refusal,
    // told in the cap's numbers.
    let pool_admits = admits(at.limit.limit, verdict.bypass, at.taken(), query.amount);
    let (scope, limit, used) = match (&at.account, at.cap) {
        (Some(_), Some(cap)) if pool_admits => {
            verdict.standing = Standing::held(cap, at.user_used, at.user_reserved);
            (Scope::User, cap.limit, at.user_used)
        }
        (Some(_), _) => (Scope::Account, at.limit.limit, at.used),
        (None, _) => (Scope::User, at.limit.limit, at.used),
    };
    // What the other plan would have to admit: this use on top of what is used and held.
    let taken = if scope == Scope::User && at.account.is_some() { used } else { at.taken() };
    // A plan can only help when the plan's own limit refused it (not an override or a cap).
    let upgrade_to = match (at.limit.source, scope, &at.account) {
        (Source::Plan, Scope::Account, _) | (Source::Plan, Scope::User, None) => rules
            .catalog
            .cheapest_plan_where(&at.plan.name, |other| admits(other.limit(&query.metric), false, taken, query.amount))
            .map(|other| other.name.clone()),
        _ => None,
    };
    let mut data = json!({
        "metric": query.metric,
        "period": query.period.to_string(),
        "plan": at.plan.name,
        "used": used,
        "limit": limit.value(),
        "amount": query.amount,
    });
    if let Some(account) = &at.account {
        data["account_id"] = account.account_id.clone().into();
    }
    let key = RefusalKey {
        user_id: &query.user_id,
        period: query.period,
        kind: EventType::LimitExceeded.as_str(),
        subject: &query.metric,
    };
    events::refusal(store, rules, EventType::LimitExceeded, &key, data, now_ms)?;
    Ok(TrackOutcome::Refused { verdict, upgrade_to, scope })
}

/// The user's standing on every configured metric in `period`, in catalog order, with
/// limits resolved at `now_ms`: for a member, the account's pool under the account's terms.
pub fn standings(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    user: &UserRecord,
    period: Period,
    now_ms: i64,
) -> Result<Vec<(String, Standing)>, StoreError> {
    match user.account_pk {
        Some(account_pk) => {
            let account = store.get_account(account_pk)?;
            account_standings(store, rules, &account, period, now_ms)
        }
        None => {
            let plan = rules.catalog.plan_or_default(&user.plan);
            let customer = Customer::User(&user.user_id);
            let terms = Terms::load(store, plan, customer, now_ms)?;
            let counter = Counter::User { pk: user.pk, created_at_ms: user.created_at_ms };
            let counters = store.counters(user.pk, period)?;
            let reserved = store.reserved_by_metric(CounterOwner::User(user.pk), period, now_ms)?;
            customer_standings(store, rules, &terms, (customer, counter), (&counters, &reserved), period, now_ms)
        }
    }
}

/// The account's pool on every configured metric in `period`, against its terms.
pub fn account_standings(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    account: &AccountRecord,
    period: Period,
    now_ms: i64,
) -> Result<Vec<(String, Standing)>, StoreError> {
    let plan = rules.catalog.plan_or_default(&account.plan);
    let customer = Customer::Account(&account.account_id);
    let terms = Terms::load(store, plan, customer, now_ms)?;
    let counter = Counter::Account { pk: account.pk, created_at_ms: account.created_at_ms };
    let counters = store.account_counters(account.pk, period)?;
    let reserved = store.reserved_by_metric(CounterOwner::Account(account.pk), period, now_ms)?;
    customer_standings(store, rules, &terms, (customer, counter), (&counters, &reserved), period, now_ms)
}

/// (metric, value) rows.
type ByMetric<'a> = &'a [(String, u64)];

fn customer_standings(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    terms: &Terms<'_>,
    whose: (Customer<'_>, Counter),
    (counters, reserved): (ByMetric<'_>, ByMetric<'_>),
    period: Period,
    now_ms: i64,
) -> Result<Vec<(String, Standing)>, StoreError> {
    let of = |values: &[(String, u64)], metric: &str| {
        values.iter().find(|(name, _)| name == metric).map_or(0, |(_, value)| *value)
    };
    rules
        .catalog
        .metrics()
        .map(|metric| {
            let resolved = terms::resolve(store, terms, whose, &metric.name, period, now_ms)?;
            let standing = Standing::held(resolved, of(counters, &metric.name), of(reserved, &metric.name));
            Ok((metric.name.clone(), standing))
        })
        .collect()
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
        assert_eq!(ceiling(Limit::Hard(30), false, true, 0), 30);
        assert_eq!(ceiling(Limit::Hard(30), false, false, 0), COUNTER_MAX);
        assert_eq!(ceiling(Limit::Hard(30), true, true, 0), COUNTER_MAX);
        assert_eq!(ceiling(Limit::Soft(30), false, true, 0), COUNTER_MAX);
    }

    #[test]
    fn holds_lower_the_ceiling_of_a_hard_limit_only() {
        assert_eq!(ceiling(Limit::Hard(30), false, true, 12), 18);
        assert_eq!(ceiling(Limit::Hard(30), false, true, 40), 0);
        assert_eq!(ceiling(Limit::Soft(30), false, true, 12), COUNTER_MAX);
        assert_eq!(ceiling(Limit::Hard(30), true, true, 12), COUNTER_MAX);
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
        let held = Standing::held(ResolvedLimit::of_plan(Limit::Hard(30)), 12, 10);
        assert_eq!((held.reserved, held.remaining), (10, Some(8)));
        let overheld = Standing::held(ResolvedLimit::of_plan(Limit::Hard(30)), 25, 10);
        assert_eq!(overheld.remaining, Some(0));
    }
}
