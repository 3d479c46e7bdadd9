//! Admin use cases, shared by the JSON admin API, the compatibility routes and the dashboard:
//! validated inputs in, domain values or an `AppError` out. Rendering (JSON or HTML) is the
//! caller's; the numbers are the same everywhere.

use super::{AppError, check_metric, check_plan, maintenance, now_ms};
use crate::domain::Rules;
use crate::domain::admin::{
    self, CleanupReport, Distribution, MetricValues, Offender, Overview, ResetReport, Summary, UserStanding,
};
use crate::domain::period::Period;
use crate::domain::ports::{AuditRecord, Store, StoreError, UserExport, UserRecord, WriteTx};
use crate::domain::user_id::UserId;
use std::sync::Arc;

pub fn summary(store: &Store, rules: &Arc<Rules>, period: Period, metric: &str, top: u32) -> Result<Summary, AppError> {
    check_metric(rules, metric)?;
    Ok(store.read(|reader| admin::summary(reader, rules, period, metric, top))?)
}

/// The overview: `period`'s summary and the totals of the `months` months ending with it,
/// in one read snapshot (one transaction on either backend).
pub fn overview(
    store: &Store,
    rules: &Arc<Rules>,
    period: Period,
    metric: &str,
    top: u32,
    months: u32,
) -> Result<Overview, AppError> {
    check_metric(rules, metric)?;
    Ok(store.read_snapshot(|reader| admin::overview(reader, rules, period, metric, top, months))?)
}

pub fn user_not_found(user_id: &str) -> AppError {
    AppError::UserNotFound(user_id.to_owned())
}

pub fn distribution(store: &Store, rules: &Arc<Rules>) -> Result<Distribution, AppError> {
    Ok(store.read(|reader| admin::plan_distribution(reader, rules))?)
}

pub fn offenders(
    store: &Store,
    rules: &Arc<Rules>,
    period: Period,
    metric: &str,
    limit: u32,
) -> Result<Vec<Offender>, AppError> {
    check_metric(rules, metric)?;
    Ok(store.read(|reader| admin::offenders(reader, rules, period, metric, limit))?)
}

/// The user view in `period`; `None` when the user is unknown.
pub fn user_standing(
    store: &Store,
    rules: &Arc<Rules>,
    user_id: &UserId,
    period: Period,
    now_ms: i64,
) -> Result<Option<UserStanding>, AppError> {
    // On the hot path (GET /v1/users/{id}): counters only through UsageRead.
    Ok(store.read_live(|reader| match reader.find_user(user_id)? {
        Some(user) => admin::user_standing(reader, rules, user, period, now_ms).map(Some),
        None => Ok(None),
    })?)
}

/// A user as an operator sees them: the user view's standing this month, and history.
pub struct UserDetails {
    pub standing: UserStanding,
    /// Newest first, one entry per month.
    pub history: Vec<(Period, MetricValues)>,
}

/// `None` when the user is unknown.
pub fn user_details(
    store: &Store,
    rules: &Arc<Rules>,
    user_id: &UserId,
    months: u32,
) -> Result<Option<UserDetails>, AppError> {
    let now_ms = now_ms();
    let period = Period::of_unix_ms(now_ms);
    Ok(store.read(|reader| {
        let Some(user) = reader.find_user(user_id)? else {
            return Ok(None);
        };
        let history = admin::history(reader, rules, &user, period, months)?;
        let standing = admin::user_standing(reader, rules, user, period, now_ms)?;
        Ok(Some(UserDetails { standing, history }))
    })?)
}

/// Sets the plan (creating the user if needed), audited under `actor` when given; runs
/// `then` in the same job, for callers that answer with a view of the changed user.
pub fn change_plan<R, F>(
    store: &Store,
    rules: &Arc<Rules>,
    user_id: &UserId,
    plan: &str,
    actor: Option<&str>,
    mut then: F,
) -> Result<R, AppError>
where
    R: Send + 'static,
    F: FnMut(&dyn WriteTx, &Rules, &UserRecord, i64) -> Result<R, StoreError> + Send + 'static,
{
    check_plan(rules, plan)?;
    let rules = Arc::clone(rules);
    let (user_id, plan, actor) = (user_id.to_owned(), plan.to_owned(), actor.map(str::to_owned));
    let now_ms = now_ms();
    Ok(store.write(move |tx| {
        let user = admin::change_plan(tx, &rules, &user_id, &plan, actor.as_deref(), now_ms)?;
        then(tx, &rules, &user, now_ms)
    })?)
}

pub fn reset(
    store: &Store,
    rules: &Arc<Rules>,
    user_id: &UserId,
    metric: Option<&str>,
    actor: &str,
) -> Result<ResetReport, AppError> {
    if let Some(metric) = metric {
        check_metric(rules, metric)?;
    }
    let rules = Arc::clone(rules);
    let (target, metric, actor) = (user_id.to_owned(), metric.map(str::to_owned), actor.to_owned());
    let now_ms = now_ms();
    store
        .write(move |tx| admin::reset_usage(tx, &rules, &target, metric.as_deref(), &actor, now_ms))?
        .ok_or_else(|| user_not_found(user_id))
}

pub fn cleanup(
    store: &Store,
    rules: &Arc<Rules>,
    retention_months: u64,
    actor: &str,
) -> Result<CleanupReport, AppError> {
    if !(1..=1200).contains(&retention_months) {
        return Err(AppError::Invalid(format!(
            "retention_months must be a whole number from 1 to 1200, got {retention_months}"
        )));
    }
    maintenance::cleanup(store, rules, retention_months as u32, actor, now_ms())?.ok_or(AppError::CleanupInProgress)
}

/// Erases the user; returns the hash that names them in the audit log from now on.
pub fn erase(store: &Store, rules: &Arc<Rules>, user_id: &UserId, actor: &str) -> Result<String, AppError> {
    maintenance::erase(store, rules, user_id, actor, now_ms())?.ok_or_else(|| user_not_found(user_id))
}

/// A user's terms beyond the plan, for the export: their override and their grants, and the
/// billing fields they carry.
pub struct UserTerms {
    pub override_set: Option<crate::domain::terms::Override>,
    pub grants: Vec<crate::domain::ports::GrantRecord>,
    pub fields: crate::domain::ports::CustomerFields,
}

pub fn export(store: &Store, user_id: &UserId) -> Result<(UserRecord, UserExport, UserTerms), AppError> {
    let customer = crate::domain::terms::Customer::User(user_id);
    store
        .read(|reader| match reader.find_user(user_id)? {
            Some(user) => {
                let override_set = reader
                    .find_override(customer.key())?
                    .as_ref()
                    .and_then(crate::domain::terms::Override::from_record);
                let terms = UserTerms {
                    override_set,
                    grants: reader.grants(customer.key())?,
                    fields: reader.customer_fields(customer.key())?,
                };
                Ok(Some((reader.export_user(&user)?, user, terms)))
            }
            None => Ok(None),
        })?
        .map(|(export, user, terms)| (user, export, terms))
        .ok_or_else(|| user_not_found(user_id))
}

pub fn audit_page(store: &Store, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>, AppError> {
    Ok(store.read(|reader| reader.audit_page(limit, before))?)
}
