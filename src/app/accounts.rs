//! Accounts as the API and the dashboard use them: create or re-plan one (and set its billing
//! fields), read its standing, join and leave, and the admin's list, history, reset and delete. Each change is one writer
//! job; each read one read job.

use super::check_plan;
use super::{AppError, now_ms};
use crate::domain::Rules;
use crate::domain::account::{self, AccountDetails, JoinRefusal};
use crate::domain::admin;
use crate::domain::admin::{Actor, MetricValues};
use crate::domain::customer::{self, FieldsChange};
use crate::domain::period::Period;
use crate::domain::ports::{AccountRecord, Store, StoreError, UserRecord, WriteTx};
use crate::domain::terms::Customer;
use crate::domain::usage::{ACCOUNT_SCOPE, USER_SCOPE};
use crate::domain::user_id::UserId;
use std::sync::Arc;

fn not_found(account_id: &str) -> AppError {
    AppError::AccountNotFound(account_id.to_owned())
}

/// What `PUT /v1/accounts/{id}` changes: the plan, the account's billing fields, or both.
pub struct AccountChange {
    pub plan: Option<String>,
    pub fields: FieldsChange,
}

/// Creates the account (on `plan`, else the default plan) or changes its plan and fields, in
/// one job, audited; its details in the current period. A refusal changes nothing.
pub fn put(
    store: &Store,
    rules: &Arc<Rules>,
    account_id: &UserId,
    change: AccountChange,
    actor: &str,
) -> Result<AccountDetails, AppError> {
    if let Some(plan) = &change.plan {
        check_plan(rules, plan)?;
    }
    let rules = Arc::clone(rules);
    let (id, actor) = (account_id.to_string(), actor.to_owned());
    let now_ms = now_ms();
    Ok(store.write(move |tx| {
        tx.serialize_on(ACCOUNT_SCOPE, &id)?;
        let account = match (&change.plan, tx.find_account(&id)?) {
            (None, Some(account)) => account,
            (plan, _) => {
                let plan = plan.as_deref().unwrap_or(&rules.catalog.default_plan().name);
                account::put_account(tx, &rules, &id, plan, &actor, now_ms)?
            }
        };
        if !change.fields.is_empty() {
            customer::set_fields(tx, Customer::Account(&id), &change.fields, &actor, now_ms)?;
        }
        account::details(tx, &rules, account, Period::of_unix_ms(now_ms), now_ms)
    })?)
}

/// Moves an existing account to `plan` (the admin route: 404 for an unknown account).
pub fn change_plan(
    store: &Store,
    rules: &Arc<Rules>,
    account_id: &UserId,
    plan: &str,
    actor: &str,
) -> Result<AccountDetails, AppError> {
    set_plan(store, rules, account_id, plan, actor)
}

/// Moves an existing account to `plan`.
fn set_plan(
    store: &Store,
    rules: &Arc<Rules>,
    account_id: &UserId,
    plan: &str,
    actor: &str,
) -> Result<AccountDetails, AppError> {
    check_plan(rules, plan)?;
    let rules = Arc::clone(rules);
    let (id, plan, actor) = (account_id.to_string(), plan.to_owned(), actor.to_owned());
    let now_ms = now_ms();
    let changed = store.write(move |tx| {
        if tx.find_account(&id)?.is_none() {
            return Ok(None);
        }
        let account = account::put_account(tx, &rules, &id, &plan, &actor, now_ms)?;
        account::details(tx, &rules, account, Period::of_unix_ms(now_ms), now_ms).map(Some)
    })?;
    changed.ok_or_else(|| not_found(account_id))
}

/// The account's standing in `period`; 404 for an unknown account.
pub fn details(store: &Store, rules: &Rules, account_id: &UserId, period: Period) -> Result<AccountDetails, AppError> {
    let now_ms = now_ms();
    let found = store.read(|reader| match reader.find_account(account_id)? {
        Some(account) => account::details(reader, rules, account, period, now_ms).map(Some),
        None => Ok(None),
    })?;
    found.ok_or_else(|| not_found(account_id))
}

/// The account's standing now and its pooled counters month by month, newest first.
pub fn admin_details(
    store: &Store,
    rules: &Rules,
    account_id: &UserId,
    months: u32,
) -> Result<(AccountDetails, Vec<(Period, MetricValues)>), AppError> {
    let now_ms = now_ms();
    let period = Period::of_unix_ms(now_ms);
    let found = store.read(|reader| {
        let Some(account) = reader.find_account(account_id)? else {
            return Ok(None);
        };
        let history = account::history(reader, rules, &account, period, months)?;
        Ok(Some((account::details(reader, rules, account, period, now_ms)?, history)))
    })?;
    found.ok_or_else(|| not_found(account_id))
}

/// The account, if it exists.
pub fn find(store: &Store, account_id: &UserId) -> Result<Option<AccountRecord>, AppError> {
    Ok(store.read(|reader| reader.find_account(account_id))?)
}

/// Accounts by id, descending, with their member counts; only ids below `before`.
pub fn page(store: &Store, limit: u32, before: Option<&str>) -> Result<Vec<(AccountRecord, u64)>, AppError> {
    Ok(store.read(|reader| reader.accounts_page(limit, before))?)
}

/// Zeroes the pool's counters of the current period (audited).
pub fn reset(
    store: &Store,
    rules: &Arc<Rules>,
    account_id: &UserId,
    metric: Option<&str>,
    actor: &str,
) -> Result<(Period, MetricValues), AppError> {
    if let Some(metric) = metric {
        super::check_metric(rules, metric)?;
    }
    let rules = Arc::clone(rules);
    let (id, metric, actor) = (account_id.to_string(), metric.map(str::to_owned), actor.to_owned());
    let now_ms = now_ms();
    store
        .write(move |tx| account::reset(tx, &rules, &id, metric.as_deref(), &actor, now_ms))?
        .ok_or_else(|| not_found(account_id))
}

/// Deletes the account; its members leave it and keep their own data (audited).
pub fn delete(store: &Store, account_id: &UserId, actor: &str) -> Result<(), AppError> {
    let (id, actor) = (account_id.to_string(), actor.to_owned());
    let now_ms = now_ms();
    if store.write(move |tx| account::delete(tx, &id, &actor, now_ms))? { Ok(()) } else { Err(not_found(account_id)) }
}

/// What `PUT /v1/users/{id}` changes: the user's own plan, their account, their billing
/// fields, or any of them.
pub struct UserChange {
    pub plan: Option<String>,
    /// `Some(Some(id))` joins that account, `Some(None)` leaves, `None` leaves it as it is.
    pub account_id: Option<Option<String>>,
    pub fields: FieldsChange,
}

/// Applies a `UserChange` in one job (the user is created if needed, on `plan` or the
/// default plan), audited under `actor`; runs `then` in the same job for the answer. A
/// refusal (unknown plan or account, a full account) changes nothing.
pub fn change_user<R, F>(
    store: &Store,
    rules: &Arc<Rules>,
    user_id: &UserId,
    change: UserChange,
    actor: Actor<'_>,
    mut then: F,
) -> Result<R, AppError>
where
    R: Send + 'static,
    F: FnMut(&dyn WriteTx, &Rules, &UserRecord, i64) -> Result<R, StoreError> + Send + 'static,
{
    if let Some(plan) = &change.plan {
        check_plan(rules, plan)?;
    }
    let rules = Arc::clone(rules);
    let (user_id, actor) = (user_id.to_string(), actor.to_owned());
    let now_ms = now_ms();
    store.write(move |tx| {
        tx.serialize_on(USER_SCOPE, &user_id)?;
        let found = tx.find_user(&user_id)?;
        // Every refusal is known before anything changes.
        let account = match &change.account_id {
            None => None,
            Some(joining) => match account::check_join(tx, &rules, found.as_ref(), joining.as_deref())? {
                Ok(account) => Some(account),
                Err(refusal) => return Ok(Err(join_refused(refusal, joining.as_deref().unwrap_or_default()))),
            },
        };
        let mut user = match (&change.plan, found) {
            (Some(plan), _) => admin::change_plan(tx, &rules, &user_id, plan, Some(&actor), now_ms)?,
            (None, Some(user)) => user,
            (None, None) => tx.create_user(&user_id, &rules.catalog.default_plan().name, now_ms)?,
        };
        if let Some(account) = &account {
            account::set_membership(tx, &mut user, account.as_ref(), &actor, now_ms)?;
        }
        if !change.fields.is_empty() {
            customer::set_fields(tx, Customer::User(&user_id), &change.fields, &actor, now_ms)?;
        }
        then(tx, &rules, &user, now_ms).map(Ok)
    })?
}

fn join_refused(refusal: JoinRefusal, account_id: &str) -> AppError {
    match refusal {
        JoinRefusal::AccountNotFound => not_found(account_id),
        JoinRefusal::AccountFull { max_members } => {
            AppError::AccountFull { account_id: account_id.to_owned(), max_members }
        }
    }
}
