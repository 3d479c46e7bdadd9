//! Accounts: users sharing one plan and pooled counters. Creating one or changing its plan,
//! joining and leaving, the account's standing, resetting and deleting it. Every change is
//! one writer job serialized on the account (and first on the user, when a membership
//! changes: the same order a member's track takes).

use super::Rules;
use super::admin::{Actor, MetricValues, by_month, every_metric};
use super::events::{self, EventType};
use super::feature::{self, FeatureVerdict, WindowOwner};
use super::period::Period;
use super::ports::{
    AccountRecord, AdminRead, AdminWrite, BillingRead, CounterOwner, CustomerFields, CustomerKey, ForecastWrite,
    RefusalCount, StoreError, UsageRead, UsageWrite, UserRecord,
};
use super::terms::{Customer, Terms};
use super::usage::{ACCOUNT_SCOPE, Standing, account_standings};
use serde_json::json;

/// How an account is named in the audit log (so an account and a user of the same id are
/// never confused, and erasing a user leaves the account's rows alone).
pub fn audit_target(account_id: &str) -> String {
    format!("account:{account_id}")
}

/// Creates the account on `plan` or moves it there; audited under `actor`. The pool's
/// counters are kept and the new plan's limits apply at once.
pub fn put_account(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    rules: &Rules,
    account_id: &str,
    plan: &str,
    actor: Actor<'_>,
    now_ms: i64,
) -> Result<AccountRecord, StoreError> {
    tx.serialize_on(ACCOUNT_SCOPE, account_id)?;
    let (account, previous) = match tx.find_account(account_id)? {
        Some(mut account) => {
            tx.set_account_plan(account.pk, plan, now_ms)?;
            let previous = std::mem::replace(&mut account.plan, plan.to_owned());
            (account, Some(previous))
        }
        None => (tx.create_account(account_id, plan, now_ms)?, None),
    };
    let details = json!({ "account_id": account_id, "from": previous, "to": plan });
    let action = if previous.is_some() { "account_plan_changed" } else { "account_created" };
    tx.append_audit(now_ms, actor, action, Some(&audit_target(account_id)), &details.to_string())?;
    if previous.as_deref() != Some(plan) {
        events::emit(tx, rules, EventType::PlanChanged, None, details, now_ms)?;
    }
    Ok(account)
}

/// Why a user could not join an account; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinRefusal {
    AccountNotFound,
    AccountFull { max_members: u32 },
}

/// The account a membership change names: `Some(id)` to join it, `None` to leave.
pub type Joining<'a> = Option<&'a str>;

/// Checks that `user` (None: not created yet) may make the membership change `joining`;
/// the account to join (None: leaving). Changes nothing. The caller has serialized on the
/// user; this serializes on the account joined.
pub fn check_join(
    tx: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    user: Option<&UserRecord>,
    joining: Joining<'_>,
) -> Result<Result<Option<AccountRecord>, JoinRefusal>, StoreError> {
    let Some(account_id) = joining else {
        return Ok(Ok(None));
    };
    let Some(account) = tx.find_account(account_id)? else {
        return Ok(Err(JoinRefusal::AccountNotFound));
    };
    tx.serialize_on(ACCOUNT_SCOPE, account_id)?;
    let already = user.is_some_and(|user| user.account_pk == Some(account.pk));
    if !already
        && let Some(max_members) = rules.catalog.plan_or_default(&account.plan).max_members
        && tx.members(account.pk)?.len() as u64 >= u64::from(max_members)
    {
        return Ok(Err(JoinRefusal::AccountFull { max_members }));
    }
    Ok(Ok(Some(account)))
}

/// Makes `user` a member of `account` (None: of none), as `check_join` allowed; audited
/// under `actor` when it changes anything.
pub fn set_membership(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    user: &mut UserRecord,
    account: Option<&AccountRecord>,
    actor: Actor<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let account_pk = account.map(|account| account.pk);
    if user.account_pk == account_pk {
        return Ok(());
    }
    let previous = match user.account_pk {
        Some(previous) => Some(tx.get_account(previous)?.account_id),
        None => None,
    };
    tx.set_membership(user.pk, account_pk, now_ms)?;
    user.account_pk = account_pk;
    let details = json!({ "from": previous, "to": account.map(|account| account.account_id.as_str()) });
    tx.append_audit(now_ms, actor, "membership_changed", Some(&user.user_id), &details.to_string())?;
    Ok(())
}

/// An account as the views show it.
#[derive(Clone, Debug)]
pub struct AccountDetails {
    pub account: AccountRecord,
    /// The plan the account is served on (the default plan if the stored one is gone).
    pub plan: String,
    pub period: Period,
    pub usage: Vec<(String, Standing)>,
    pub features: Vec<FeatureVerdict>,
    /// Each member with their own counters of the period, every metric.
    pub members: Vec<(UserRecord, MetricValues)>,
    /// The members' refusal counters of the period (the pool's refusals are counted on the
    /// member refused).
    pub refusals: Vec<RefusalCount>,
    /// The account's Stripe id and email.
    pub fields: CustomerFields,
}

/// The account's pool against its plan in `period`, its pooled feature windows now, and
/// its members' own usage.
pub fn details(
    store: &(impl UsageRead + BillingRead + ?Sized),
    rules: &Rules,
    account: AccountRecord,
    period: Period,
    now_ms: i64,
) -> Result<AccountDetails, StoreError> {
    let plan = rules.catalog.plan_or_default(&account.plan);
    let usage = account_standings(store, rules, &account, period, now_ms)?;
    let owner = WindowOwner::Account(account.pk);
    let terms = Terms::load(store, plan, Customer::Account(&account.account_id), now_ms)?;
    let features = rules
        .catalog
        .features()
        .iter()
        .map(|name| feature::standing(store, rules, (&terms, owner), &account.account_id, name, now_ms))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut members, mut refusals) = (Vec::new(), Vec::new());
    for member in store.members(account.pk)? {
        let own = every_metric(rules, store.counters(member.pk, period)?);
        refusals.extend(store.refusals(&member.user_id, period)?);
        members.push((member, own));
    }
    let fields = store.customer_fields(CustomerKey { kind: "account", id: &account.account_id })?;
    Ok(AccountDetails { plan: plan.name.clone(), period, usage, features, members, refusals, fields, account })
}

/// The account's pooled counters, one entry per month, newest first.
pub fn history(
    store: &(impl AdminRead + ?Sized),
    rules: &Rules,
    account: &AccountRecord,
    current: Period,
    months: u32,
) -> Result<Vec<(Period, MetricValues)>, StoreError> {
    let rows = store.account_counters_since(account.pk, current.oldest_kept(months))?;
    Ok(by_month(rules, rows, current, months))
}

/// Zeroes the pool's counters of the current period (one metric or all); audited. `None`
/// when the account is unknown. Members' own counters are kept.
pub fn reset(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    rules: &Rules,
    account_id: &str,
    metric: Option<&str>,
    actor: Actor<'_>,
    now_ms: i64,
) -> Result<Option<(Period, MetricValues)>, StoreError> {
    tx.serialize_on(ACCOUNT_SCOPE, account_id)?;
    let Some(account) = tx.find_account(account_id)? else {
        return Ok(None);
    };
    let period = Period::of_unix_ms(now_ms);
    let found = tx.reset_account_counters(account.pk, period, metric)?;
    let before: MetricValues =
        every_metric(rules, found).into_iter().filter(|(name, _)| metric.is_none_or(|metric| metric == name)).collect();
    let details = json!({
        "account_id": account_id,
        "period": period.to_string(),
        "metric": metric,
        "before": before.iter().map(|(name, value)| (name.clone(), json!(value))).collect::<serde_json::Map<_, _>>(),
    });
    tx.append_audit(now_ms, actor, "account_reset", Some(&audit_target(account_id)), &details.to_string())?;
    events::emit(tx, rules, EventType::UsageReset, None, details, now_ms)?;
    Ok(Some((period, before)))
}

/// Deletes the account: its members leave it and keep their own data; audited. False when
/// the account is unknown.
pub fn delete(
    tx: &(impl UsageWrite + AdminWrite + ForecastWrite + ?Sized),
    account_id: &str,
    actor: Actor<'_>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    tx.serialize_on(ACCOUNT_SCOPE, account_id)?;
    let Some(account) = tx.find_account(account_id)? else {
        return Ok(false);
    };
    let members: Vec<String> = tx.members(account.pk)?.into_iter().map(|member| member.user_id).collect();
    // Its override and grants go too: an account created again with this id starts clean.
    tx.delete_terms_of(CustomerKey { kind: "account", id: account_id })?;
    tx.delete_account(account.pk)?;
    tx.delete_forecast_data(CounterOwner::Account(account.pk))?;
    let details = json!({ "account_id": account_id, "plan": account.plan, "members": members });
    tx.append_audit(now_ms, actor, "account_deleted", Some(&audit_target(account_id)), &details.to_string())?;
    Ok(true)
}
