//! Feature gating: may this user do X, and for rate-limited features, let them do X now or
//! say when. A rate-limited feature allows at most `limit` successful uses in any rolling
//! window of `window_secs`; the uses are stored, so a restart keeps every window.

use super::Rules;
use super::events::{self, EventType};
use super::period::Period;
use super::plan::{FeatureGrant, Plan};
use super::ports::{AccountRecord, RefusalKey, StoreError, UsageRead, UsageWrite, UserRecord};
use super::terms::{Customer, Source, Terms};
use serde::Serialize;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    Boolean,
    Rate,
}

/// Where a user stands with one feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureVerdict {
    pub allowed: bool,
    pub user_id: String,
    pub plan: String,
    pub feature: String,
    pub kind: FeatureKind,
    pub limit: Option<u32>,
    pub window_secs: Option<u32>,
    pub remaining_in_window: Option<u32>,
    /// When the window is full: how long until its oldest counted use leaves it and a use is
    /// allowed again (a verdict read without the user's window, or of a window with room,
    /// has `None`).
    pub full_window_frees_in_ms: Option<u64>,
    /// After a use: how long until the oldest use counted in the window leaves it (when the
    /// remaining uses grow again). `None` elsewhere.
    pub oldest_use_leaves_in_ms: Option<u64>,
    /// The cheapest plan that grants the feature, when the user's terms do not.
    pub plan_required: Option<String>,
    pub bypass: bool,
    /// Whether the grant is the plan's or an override's.
    pub source: Source,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UseOutcome {
    /// Allowed; for a rate-limited feature the use was recorded. The verdict is after the use.
    Allowed(FeatureVerdict),
    /// The user's plan does not grant the feature; nothing changed.
    NotInPlan(FeatureVerdict),
    /// The window is full; nothing changed. A slot frees in `retry_after_ms`.
    RateLimited { verdict: FeatureVerdict, retry_after_ms: u64 },
}

/// The window a rate grant counts over, in milliseconds.
fn window_ms(window_secs: u32) -> i64 {
    i64::from(window_secs) * 1000
}

/// The start of the window ending at `now_ms`: uses strictly after it count.
fn window_start(window_secs: u32, now_ms: i64) -> i64 {
    now_ms - window_ms(window_secs)
}

fn plan_required(rules: &Rules, plan: &Plan, grant: FeatureGrant, feature: &str) -> Option<String> {
    if grant.is_granted() {
        return None;
    }
    rules
        .catalog
        .cheapest_plan_where(&plan.name, |other| other.feature(feature).is_granted())
        .map(|other| other.name.clone())
}

/// The verdict for `user_id` under `terms` given `uses_in_window` counted uses.
fn verdict(rules: &Rules, terms: &Terms<'_>, user_id: &str, feature: &str, uses_in_window: u32) -> FeatureVerdict {
    let bypass = rules.is_bypass(user_id);
    let (grant, source) = terms.feature(feature);
    let plan = terms.plan;
    let (kind, allowed, limit, window_secs, remaining) = match grant {
        FeatureGrant::Boolean(granted) => (FeatureKind::Boolean, bypass || granted, None, None, None),
        FeatureGrant::Rate { limit, window_secs } => (
            FeatureKind::Rate,
            bypass || uses_in_window < limit,
            Some(limit),
            Some(window_secs),
            Some(limit.saturating_sub(uses_in_window)),
        ),
    };
    FeatureVerdict {
        allowed,
        user_id: user_id.to_owned(),
        plan: plan.name.clone(),
        feature: feature.to_owned(),
        kind,
        limit,
        window_secs,
        remaining_in_window: remaining,
        full_window_frees_in_ms: None,
        oldest_use_leaves_in_ms: None,
        plan_required: plan_required(rules, plan, grant, feature),
        bypass,
        source,
    }
}

/// Whose uses a rate-limited window counts: a user's own, an account's pooled uses (a
/// member's), or nobody's (a user never seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowOwner {
    Nobody,
    User(i64),
    Account(i64),
}

impl WindowOwner {
    fn count(self, store: &(impl UsageRead + ?Sized), feature: &str, since_ms: i64) -> Result<u32, StoreError> {
        match self {
            WindowOwner::Nobody => Ok(0),
            WindowOwner::User(pk) => store.count_feature_uses(pk, feature, since_ms),
            WindowOwner::Account(pk) => store.count_account_feature_uses(pk, feature, since_ms),
        }
    }

    fn nth_oldest(
        self,
        store: &(impl UsageRead + ?Sized),
        feature: &str,
        since_ms: i64,
        skip: u32,
    ) -> Result<Option<i64>, StoreError> {
        match self {
            WindowOwner::Nobody => Ok(None),
            WindowOwner::User(pk) => store.nth_oldest_feature_use(pk, feature, since_ms, skip),
            WindowOwner::Account(pk) => store.nth_oldest_account_feature_use(pk, feature, since_ms, skip),
        }
    }
}

/// The terms that apply to `user_id` (`user`: None when never seen) and whose uses its
/// windows count: a member's account's, else the user's own.
pub fn feature_standpoint<'r>(
    store: &(impl UsageRead + ?Sized),
    rules: &'r Rules,
    user: Option<&UserRecord>,
    user_id: &str,
    now_ms: i64,
) -> Result<(Terms<'r>, WindowOwner, Option<AccountRecord>), StoreError> {
    Ok(match user {
        Some(user) if user.account_pk.is_some() => {
            let account = store.get_account(user.account_pk.unwrap_or_default())?;
            let plan = rules.catalog.plan_or_default(&account.plan);
            let terms = Terms::load(store, plan, Customer::Account(&account.account_id), now_ms)?;
            (terms, WindowOwner::Account(account.pk), Some(account))
        }
        _ => {
            let plan = rules.plan_of(user);
            let terms = Terms::load(store, plan, Customer::User(user_id), now_ms)?;
            let owner = user.map_or(WindowOwner::Nobody, |user| WindowOwner::User(user.pk));
            (terms, owner, None)
        }
    })
}

fn uses_in_window(
    store: &(impl UsageRead + ?Sized),
    owner: WindowOwner,
    grant: FeatureGrant,
    feature: &str,
    now_ms: i64,
) -> Result<u32, StoreError> {
    match grant {
        FeatureGrant::Rate { window_secs, .. } => owner.count(store, feature, window_start(window_secs, now_ms)),
        FeatureGrant::Boolean(_) => Ok(0),
    }
}

/// How long until a full window (`used` uses counted, `limit` allowed) has room: the
/// (used - limit + 1)-th oldest counted use must leave it first.
fn frees_in_ms(
    store: &(impl UsageRead + ?Sized),
    owner: WindowOwner,
    feature: &str,
    (limit, window_secs, used): (u32, u32, u32),
    now_ms: i64,
) -> Result<u64, StoreError> {
    let since = window_start(window_secs, now_ms);
    let oldest = owner.nth_oldest(store, feature, since, used - limit)?.unwrap_or(now_ms);
    Ok((oldest + window_ms(window_secs) - now_ms).max(1) as u64)
}

/// Where `user_id` stands with `feature` at `now_ms` under `terms`, its windows counting
/// `owner`'s uses.
pub fn standing(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    (terms, owner): (&Terms<'_>, WindowOwner),
    user_id: &str,
    feature: &str,
    now_ms: i64,
) -> Result<FeatureVerdict, StoreError> {
    let (grant, _) = terms.feature(feature);
    let used = uses_in_window(store, owner, grant, feature, now_ms)?;
    let mut verdict = verdict(rules, terms, user_id, feature, used);
    if let FeatureGrant::Rate { limit, window_secs } = grant
        && limit > 0
        && used >= limit
    {
        verdict.full_window_frees_in_ms = Some(frees_in_ms(store, owner, feature, (limit, window_secs, used), now_ms)?);
    }
    Ok(verdict)
}

/// Answers "may this user use `feature` now?" without changing anything.
pub fn check(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    user_id: &str,
    feature: &str,
    now_ms: i64,
) -> Result<FeatureVerdict, StoreError> {
    let user = store.find_user(user_id)?;
    let (terms, owner, _) = feature_standpoint(store, rules, user.as_ref(), user_id, now_ms)?;
    standing(store, rules, (&terms, owner), user_id, feature, now_ms)
}

/// The verdict of every configured feature for a known user.
pub fn check_all(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    user: &UserRecord,
    now_ms: i64,
) -> Result<Vec<FeatureVerdict>, StoreError> {
    let (terms, owner, _) = feature_standpoint(store, rules, Some(user), &user.user_id, now_ms)?;
    let features = rules.catalog.features().iter();
    features.map(|feature| standing(store, rules, (&terms, owner), &user.user_id, feature, now_ms)).collect()
}

/// The counter a feature refusal of `kind` at `now_ms` adds to: per feature and UTC month.
fn refusal_key<'a>(user_id: &'a str, kind: EventType, feature: &'a str, now_ms: i64) -> RefusalKey<'a> {
    RefusalKey { user_id, period: Period::of_unix_ms(now_ms), kind: kind.as_str(), subject: feature }
}

/// Uses `feature` now if the plan and the window allow it. Runs inside one write
/// transaction serialized on the user, so the window test and the recorded use cannot be
/// split by another use on any node.
pub fn use_feature(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    user_id: &str,
    feature: &str,
    now_ms: i64,
) -> Result<UseOutcome, StoreError> {
    store.serialize_on(super::usage::USER_SCOPE, user_id)?;
    let user = store.find_user(user_id)?;
    let (terms, owner, account) = feature_standpoint(store, rules, user.as_ref(), user_id, now_ms)?;
    let plan = terms.plan;
    if let Some(account) = &account {
        store.serialize_on(super::usage::ACCOUNT_SCOPE, &account.account_id)?;
    }
    let name_account = |data: &mut serde_json::Value| {
        if let Some(account) = &account {
            data["account_id"] = account.account_id.clone().into();
        }
    };
    let (grant, _) = terms.feature(feature);
    let bypass = rules.is_bypass(user_id);
    if !bypass && !grant.is_granted() {
        let verdict = verdict(rules, &terms, user_id, feature, 0);
        let mut data = json!({ "feature": feature, "plan": plan.name, "plan_required": verdict.plan_required });
        name_account(&mut data);
        let key = refusal_key(user_id, EventType::FeatureDenied, feature, now_ms);
        events::refusal(store, rules, EventType::FeatureDenied, &key, data, now_ms)?;
        return Ok(UseOutcome::NotInPlan(verdict));
    }
    let FeatureGrant::Rate { limit, window_secs } = grant else {
        // A boolean feature: allowed, and nothing to record.
        return Ok(UseOutcome::Allowed(verdict(rules, &terms, user_id, feature, 0)));
    };
    let used = uses_in_window(store, owner, grant, feature, now_ms)?;
    if !bypass && used >= limit {
        let retry_after_ms = frees_in_ms(store, owner, feature, (limit, window_secs, used), now_ms)?;
        let mut data = json!({
            "feature": feature,
            "plan": plan.name,
            "limit": limit,
            "window_secs": window_secs,
            "retry_after_ms": retry_after_ms,
        });
        name_account(&mut data);
        let key = refusal_key(user_id, EventType::RateLimited, feature, now_ms);
        events::refusal(store, rules, EventType::RateLimited, &key, data, now_ms)?;
        let verdict = FeatureVerdict {
            full_window_frees_in_ms: Some(retry_after_ms),
            ..verdict(rules, &terms, user_id, feature, used)
        };
        return Ok(UseOutcome::RateLimited { verdict, retry_after_ms });
    }
    let user = match user {
        Some(user) => user,
        None => store.create_user(user_id, &plan.name, now_ms)?,
    };
    // Uses older than the longest window any plan has for this feature count for nobody.
    let longest_window = rules.catalog.longest_window_secs(feature).unwrap_or(window_secs);
    let forgotten = window_start(longest_window, now_ms);
    store.prune_feature_uses(user.pk, feature, forgotten)?;
    store.record_feature_use(user.pk, feature, now_ms)?;
    if let Some(account) = &account {
        // A member's use counts in the pool's window (the user's own record is kept for
        // when they leave).
        store.prune_account_feature_uses(account.pk, feature, forgotten)?;
        store.record_account_feature_use(account.pk, feature, now_ms)?;
    }
    // The oldest use in the window that counted (the pool's for a member) is this one
    // unless others are counted.
    let since = window_start(window_secs, now_ms);
    let oldest = match used {
        0 => now_ms,
        _ => owner.nth_oldest(store, feature, since, 0)?.unwrap_or(now_ms),
    };
    // This use was allowed; the rest of the verdict describes the window after it.
    let after = FeatureVerdict {
        allowed: true,
        oldest_use_leaves_in_ms: Some((oldest + window_ms(window_secs) - now_ms).max(0) as u64),
        ..verdict(rules, &terms, user_id, feature, used + 1)
    };
    Ok(UseOutcome::Allowed(after))
}
