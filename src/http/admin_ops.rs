//! Admin operations shared by the JSON admin API (admin.rs), the compatibility routes
//! (compat.rs) and the dashboard: validated inputs in, domain values or an `ApiError` out.
//! Rendering (JSON or HTML) is the caller's; the numbers are the same everywhere.

use super::error::ApiError;
use super::users::user_not_found;
use super::{App, now_ms};
use crate::domain::admin::{self, CleanupReport, Distribution, MetricValues, Offender, ResetReport, Summary};
use crate::domain::feature::{self, FeatureVerdict};
use crate::domain::period::Period;
use crate::domain::ports::{AuditRecord, StoreError, UserExport, UserRecord, WriteTx};
use crate::domain::usage::{self, Standing};
use crate::domain::user_id::validate_user_id;
use ::http::StatusCode;
use std::sync::Arc;

pub fn unknown_metric(metric: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "unknown_metric", format!("metric {metric:?} is not configured"))
        .with("metric", metric)
}

pub fn summary(app: &App, period: Period, metric: &str, top: u32) -> Result<Summary, ApiError> {
    if !app.rules.catalog.has_metric(metric) {
        return Err(unknown_metric(metric));
    }
    Ok(app.store.read(|reader| admin::summary(reader, &app.rules, period, metric, top))?)
}

pub fn distribution(app: &App) -> Result<Distribution, ApiError> {
    Ok(app.store.read(|reader| admin::plan_distribution(reader, &app.rules))?)
}

pub fn offenders(app: &App, period: Period, metric: &str, limit: u32) -> Result<Vec<Offender>, ApiError> {
    if !app.rules.catalog.has_metric(metric) {
        return Err(unknown_metric(metric));
    }
    Ok(app.store.read(|reader| admin::offenders(reader, &app.rules, period, metric, limit))?)
}

/// A user as an operator sees them: plan, this month's standing, features, history.
pub struct UserDetails {
    pub user: UserRecord,
    /// The plan the user is served on (the default plan if the stored one is gone).
    pub plan: String,
    pub bypass: bool,
    pub period: Period,
    pub usage: Vec<(String, Standing)>,
    pub features: Vec<FeatureVerdict>,
    /// Newest first, one entry per month.
    pub history: Vec<(Period, MetricValues)>,
}

/// `None` when the user is unknown.
pub fn user_details(app: &App, user_id: &str, months: u32) -> Result<Option<UserDetails>, ApiError> {
    validate_user_id(user_id).map_err(ApiError::invalid)?;
    let rules = &app.rules;
    let now_ms = now_ms();
    let period = Period::of_unix_ms(now_ms);
    Ok(app.store.read(|reader| {
        let Some(user) = reader.find_user(user_id)? else {
            return Ok(None);
        };
        let plan = rules.catalog.plan_or_default(&user.plan);
        let usage = usage::standings(reader, rules, &user, period)?;
        let features = feature::check_all(reader, rules, &user, now_ms)?;
        let history = admin::history(reader, rules, &user, period, months)?;
        Ok(Some(UserDetails {
            plan: plan.name.clone(),
            bypass: rules.is_bypass(&user.user_id),
            period,
            usage,
            features,
            history,
            user,
        }))
    })?)
}

pub fn check_plan(app: &App, plan: &str) -> Result<(), ApiError> {
    if app.rules.catalog.find_plan(plan).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = app.rules.catalog.plans().iter().map(|plan| plan.name.as_str()).collect();
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "unknown_plan",
        format!("plan {plan:?} is not configured; known: {}", known.join(", ")),
    )
    .with("plan", plan))
}

/// Sets the plan (creating the user if needed), audited under `actor` when given; runs
/// `then` in the same job, for callers that answer with a view of the changed user.
pub fn change_plan<R, F>(app: &App, user_id: &str, plan: &str, actor: Option<&str>, mut then: F) -> Result<R, ApiError>
where
    R: Send + 'static,
    F: FnMut(&dyn WriteTx, &crate::domain::Rules, &UserRecord, i64) -> Result<R, StoreError> + Send + 'static,
{
    validate_user_id(user_id).map_err(ApiError::invalid)?;
    check_plan(app, plan)?;
    let rules = Arc::clone(&app.rules);
    let (user_id, plan, actor) = (user_id.to_owned(), plan.to_owned(), actor.map(str::to_owned));
    let now_ms = now_ms();
    Ok(app.store.write(move |tx| {
        let user = admin::change_plan(tx, &rules, &user_id, &plan, actor.as_deref(), now_ms)?;
        then(tx, &rules, &user, now_ms)
    })?)
}

pub fn reset(app: &App, user_id: &str, metric: Option<&str>, actor: &str) -> Result<ResetReport, ApiError> {
    validate_user_id(user_id).map_err(ApiError::invalid)?;
    if let Some(metric) = metric
        && !app.rules.catalog.has_metric(metric)
    {
        return Err(unknown_metric(metric));
    }
    let rules = Arc::clone(&app.rules);
    let (target, metric, actor) = (user_id.to_owned(), metric.map(str::to_owned), actor.to_owned());
    let now_ms = now_ms();
    app.store
        .write(move |tx| admin::reset_usage(tx, &rules, &target, metric.as_deref(), &actor, now_ms))?
        .ok_or_else(|| user_not_found(user_id))
}

pub fn cleanup(app: &App, retention_months: u64, actor: &str) -> Result<CleanupReport, ApiError> {
    if !(1..=1200).contains(&retention_months) {
        return Err(ApiError::invalid(format!(
            "retention_months must be a whole number from 1 to 1200, got {retention_months}"
        )));
    }
    crate::app::maintenance::cleanup(&app.store, &app.rules, retention_months as u32, actor, now_ms())?.ok_or_else(
        || {
            ApiError::new(
                StatusCode::CONFLICT,
                "cleanup_in_progress",
                "a cleanup is already running (on this node or another); retry once it has finished",
            )
        },
    )
}

/// Erases the user; returns the hash that names them in the audit log from now on.
pub fn erase(app: &App, user_id: &str, actor: &str) -> Result<String, ApiError> {
    validate_user_id(user_id).map_err(ApiError::invalid)?;
    crate::app::maintenance::erase(&app.store, &app.rules, user_id, actor, now_ms())?
        .ok_or_else(|| user_not_found(user_id))
}

pub fn export(app: &App, user_id: &str) -> Result<(UserRecord, UserExport), ApiError> {
    validate_user_id(user_id).map_err(ApiError::invalid)?;
    app.store
        .read(|reader| match reader.find_user(user_id)? {
            Some(user) => Ok(Some((reader.export_user(&user)?, user))),
            None => Ok(None),
        })?
        .map(|(export, user)| (user, export))
        .ok_or_else(|| user_not_found(user_id))
}

pub fn audit_page(app: &App, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>, ApiError> {
    Ok(app.store.read(|reader| reader.audit_page(limit, before))?)
}
