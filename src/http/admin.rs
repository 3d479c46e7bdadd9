//! The admin API under `/v1/admin`: usage summary, offenders, plans, a user's history and
//! export, and the audited actions. Each view is a plain function of its typed parameters,
//! which the compatibility routes (compat.rs) call too: one implementation, two URL shapes.

use super::error::ApiError;
use super::request::{present, whole};
use super::users::{UserView, rfc3339, user_id_param, user_not_found};
use super::{Ctx, json_response, now_ms};
use crate::app::admin as ops;
use crate::domain::Rules;
use crate::domain::admin::{self, MetricValues};
use crate::domain::period::Period;
use crate::domain::user_id::UserId;
use crate::http::Body;
use ::http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Query parameters as given, by name.
pub type Params = HashMap<String, String>;

pub(super) fn object(values: &MetricValues) -> Value {
    Value::Object(values.iter().map(|(name, value)| (name.clone(), json!(value))).collect::<Map<_, _>>())
}

pub fn period_param(params: &Params, now_ms: i64) -> Result<Period, ApiError> {
    match params.get("period") {
        Some(text) => {
            text.parse().map_err(|error: crate::domain::period::ParsePeriodError| ApiError::invalid(error.to_string()))
        }
        None => Ok(Period::of_unix_ms(now_ms)),
    }
}

pub fn metric_param(rules: &Rules, params: &Params) -> Result<String, ApiError> {
    let first = rules.catalog.metrics().next().map(|metric| metric.name.clone()).unwrap_or_default();
    match params.get("metric") {
        None => Ok(first),
        Some(metric) if rules.catalog.has_metric(metric) => Ok(metric.clone()),
        Some(metric) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_metric",
            format!("metric {metric:?} is not configured"),
        )
        .with("metric", metric.as_str())),
    }
}

/// A whole-number parameter within `min..=max`, `default` when absent.
pub fn count_param(params: &Params, name: &str, default: u32, min: u32, max: u32) -> Result<u32, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(default);
    };
    match text.parse::<u32>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(ApiError::invalid(format!("{name} must be a whole number from {min} to {max}, got {text:?}"))),
    }
}

fn plans_json(distribution: &admin::Distribution) -> Value {
    distribution
        .plans
        .iter()
        .map(|plan| {
            json!({
                "plan": plan.plan,
                "users": plan.users,
                "share": plan.share,
                "accounts": plan.accounts,
                "members": plan.members,
                "price_cents": plan.price_cents,
                "revenue_cents": plan.revenue_cents,
            })
        })
        .collect()
}

/// `GET /v1/admin/usage`: the dashboard's numbers for a period.
pub fn usage_summary(ctx: &Ctx<'_>, params: &Params) -> Result<Response<Body>, ApiError> {
    let period = period_param(params, now_ms())?;
    let metric = metric_param(&ctx.app.rules, params)?;
    let top = count_param(params, "top", 10, 0, 1000)?;
    let summary = ops::summary(&ctx.app.store, &ctx.app.rules, period, &metric, top)?;
    let top_users: Vec<Value> = summary
        .top_users
        .iter()
        .map(|user| json!({ "user_id": user.user_id, "plan": user.plan, "usage": object(&user.usage) }))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "period": summary.period,
            "metric": summary.metric,
            "totals": object(&summary.totals),
            "active_users": summary.active_users,
            "users_total": summary.distribution.users_total,
            "plans": plans_json(&summary.distribution),
            "revenue_cents_total": summary.distribution.revenue_cents_total,
            "top_users": top_users,
        }),
    ))
}

/// `GET /v1/admin/plans`: users, share and revenue estimate per plan.
pub fn plan_distribution(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    Ok(json_response(StatusCode::OK, &plans_json(&ops::distribution(&ctx.app.store, &ctx.app.rules)?)))
}

/// `GET /v1/admin/offenders`: the largest users of a metric, against their limits.
pub fn offenders(ctx: &Ctx<'_>, params: &Params) -> Result<Response<Body>, ApiError> {
    let period = period_param(params, now_ms())?;
    let metric = metric_param(&ctx.app.rules, params)?;
    let limit = count_param(params, "limit", 10, 1, 1000)?;
    let offenders: Vec<Value> = ops::offenders(&ctx.app.store, &ctx.app.rules, period, &metric, limit)?
        .iter()
        .map(|offender| {
            json!({
                "user_id": offender.user_id,
                "plan": offender.plan,
                "used": offender.used,
                "limit": offender.limit,
                "enforcement": offender.enforcement,
                "percent_of_limit": offender.percent_of_limit,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "period": period, "metric": metric, "offenders": offenders })))
}

/// `GET /v1/admin/users/{user_id}`: the user view plus monthly history, newest first.
pub fn user_details(ctx: &Ctx<'_>, user_id: &UserId, params: &Params) -> Result<Response<Body>, ApiError> {
    let months = count_param(params, "months", 12, 1, 120)?;
    let details =
        ops::user_details(&ctx.app.store, &ctx.app.rules, user_id, months)?.ok_or_else(|| user_not_found(user_id))?;
    let view = UserView::from_details(&details);
    let mut body = serde_json::to_value(view).map_err(|_| ApiError::internal())?;
    let history: Vec<Value> =
        details.history.iter().map(|(period, usage)| json!({ "period": period, "usage": object(usage) })).collect();
    body["history"] = Value::Array(history);
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/admin/users/{user_id}/plan`: as `PUT /v1/users/{id}`, audited.
pub fn change_plan(ctx: &Ctx<'_>, user_id: UserId, plan: String) -> Result<Response<Body>, ApiError> {
    let view = super::users::set_plan(ctx, &user_id, &plan, Some(&actor(ctx)))?;
    Ok(json_response(StatusCode::OK, &view))
}

/// `POST /v1/admin/users/{user_id}/reset`: zeroes the current period; answers what was there.
pub fn reset(ctx: &Ctx<'_>, user_id: UserId, metric: Option<String>) -> Result<Response<Body>, ApiError> {
    let report = ops::reset(&ctx.app.store, &ctx.app.rules, &user_id, metric.as_deref(), &actor(ctx))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "user_id": user_id.as_str(), "period": report.period, "before": object(&report.before) }),
    ))
}

/// `POST /v1/admin/cleanup`: deletes counters older than `retention_months` periods.
pub fn cleanup(ctx: &Ctx<'_>, retention_months: u64) -> Result<Response<Body>, ApiError> {
    let report = ops::cleanup(&ctx.app.store, &ctx.app.rules, retention_months, &actor(ctx))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "deleted_counters": report.deleted_counters,
            "oldest_period_kept": report.oldest_period_kept,
            "pruned_idempotency_keys": report.pruned_idempotency_keys,
            "pruned_events": report.pruned_events,
        }),
    ))
}

/// The caller's name for the audit log.
/// The audit log's actor for this request: the calling key's name.
pub(super) fn actor(ctx: &Ctx<'_>) -> String {
    ctx.caller.as_ref().map_or_else(|| "anonymous".to_owned(), |caller| caller.name.clone())
}

// ---- /v1/admin route handlers: path and query in, the functions above out ----

pub fn get_usage(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    usage_summary(ctx, &ctx.query)
}

pub fn get_plans(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    plan_distribution(ctx)
}

pub fn get_offenders(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    offenders(ctx, &ctx.query)
}

pub fn get_user(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    user_details(ctx, &user_id, &ctx.query)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    plan: String,
}

pub fn post_plan(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let body: PlanBody = ctx.json_body()?;
    change_plan(ctx, user_id, body.plan)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    #[serde(default, deserialize_with = "present")]
    metric: Option<String>,
}

pub fn post_reset(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let body: ResetBody = ctx.json_body()?;
    reset(ctx, user_id, body.metric)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupBody {
    #[serde(deserialize_with = "whole")]
    retention_months: u64,
}

pub fn post_cleanup(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let body: CleanupBody = ctx.json_body()?;
    cleanup(ctx, body.retention_months)
}

pub fn delete_user(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let hash = ops::erase(&ctx.app.store, &ctx.app.rules, &user_id, &actor(ctx))?;
    Ok(json_response(StatusCode::OK, &json!({ "erased": true, "user_id_hash": hash })))
}

pub fn get_export(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    super::export::response(ctx, &user_id, super::export::Format::accepted(ctx))
}

pub fn audit_json(record: &crate::domain::ports::AuditRecord) -> Value {
    json!({
        "id": record.id,
        "at": rfc3339(record.at_ms),
        "actor": record.actor,
        "action": record.action,
        "target": record.target,
        "details": serde_json::from_str::<Value>(&record.details).unwrap_or(Value::Null),
    })
}

pub fn get_audit(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let params = &ctx.query;
    let limit = count_param(params, "limit", 50, 1, 500)?;
    let before = match params.get("before") {
        None => None,
        Some(text) => Some(text.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            ApiError::invalid(format!("before must be an audit row id (a positive whole number), got {text:?}"))
        })?),
    };
    let rows = ops::audit_page(&ctx.app.store, limit, before)?;
    let next_before = if rows.len() as u32 == limit { rows.last().map(|row| row.id) } else { None };
    let entries: Vec<Value> = rows.iter().map(audit_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "entries": entries, "next_before": next_before })))
}
