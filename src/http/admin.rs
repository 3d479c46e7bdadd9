//! The admin API under `/v1/admin`: usage summary, offenders, plans, a user's history and
//! export, and the audited actions. Each view is a plain function of its typed parameters,
//! which the compatibility routes (compat.rs) call too: one implementation, two URL shapes.

use super::error::ApiError;
use super::request::{present, query};
use super::users::{rfc3339, user_id_param, user_not_found, user_view};
use super::{Ctx, json_response, now_ms};
use crate::domain::Rules;
use crate::domain::admin::{self, MetricValues};
use crate::domain::period::Period;
use crate::domain::user_id::validate_user_id;
use crate::store::{AdminRead, UsageRead};
use oxhttp::model::{Body, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Query parameters as given, by name.
pub type Params = HashMap<String, String>;

fn object(values: &MetricValues) -> Value {
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
                "price_cents": plan.price_cents,
                "revenue_cents": plan.revenue_cents,
            })
        })
        .collect()
}

/// `GET /v1/admin/usage`: the dashboard's numbers for a period.
pub fn usage_summary(ctx: &Ctx<'_>, params: &Params) -> Result<Response<Body>, ApiError> {
    let rules = &ctx.app.rules;
    let period = period_param(params, now_ms())?;
    let metric = metric_param(rules, params)?;
    let top = count_param(params, "top", 10, 0, 1000)?;
    let summary = ctx.app.store.read(|reader| admin::summary(reader, rules, period, &metric, top))?;
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
    let rules = &ctx.app.rules;
    let distribution = ctx.app.store.read(|reader| admin::plan_distribution(reader, rules))?;
    Ok(json_response(StatusCode::OK, &plans_json(&distribution)))
}

/// `GET /v1/admin/offenders`: the largest users of a metric, against their limits.
pub fn offenders(ctx: &Ctx<'_>, params: &Params) -> Result<Response<Body>, ApiError> {
    let rules = &ctx.app.rules;
    let period = period_param(params, now_ms())?;
    let metric = metric_param(rules, params)?;
    let limit = count_param(params, "limit", 10, 1, 1000)?;
    let offenders = ctx.app.store.read(|reader| admin::offenders(reader, rules, period, &metric, limit))?;
    let offenders: Vec<Value> = offenders
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
pub fn user_details(ctx: &Ctx<'_>, user_id: &str, params: &Params) -> Result<Response<Body>, ApiError> {
    validate_user_id(user_id).map_err(ApiError::invalid)?;
    let rules = &ctx.app.rules;
    let now_ms = now_ms();
    let months = count_param(params, "months", 12, 1, 120)?;
    let current = Period::of_unix_ms(now_ms);
    let found = ctx.app.store.read(|reader| {
        let Some(user) = reader.find_user(user_id)? else {
            return Ok(None);
        };
        let view = user_view(reader, rules, &user, current, now_ms)?;
        let history = admin::history(reader, rules, &user, current, months)?;
        Ok(Some((view, history)))
    })?;
    let (view, history) = found.ok_or_else(|| user_not_found(user_id))?;
    let mut body = serde_json::to_value(view).map_err(|_| ApiError::internal())?;
    let history: Vec<Value> =
        history.iter().map(|(period, usage)| json!({ "period": period, "usage": object(usage) })).collect();
    body["history"] = Value::Array(history);
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/admin/users/{user_id}/plan`: as `PUT /v1/users/{id}`, audited.
pub fn change_plan(ctx: &Ctx<'_>, user_id: String, plan: String) -> Result<Response<Body>, ApiError> {
    validate_user_id(&user_id).map_err(ApiError::invalid)?;
    let view = super::users::set_plan(ctx, user_id, plan, Some(actor(ctx)))?;
    Ok(json_response(StatusCode::OK, &view))
}

/// `POST /v1/admin/users/{user_id}/reset`: zeroes the current period; answers what was there.
pub fn reset(ctx: &Ctx<'_>, user_id: String, metric: Option<String>) -> Result<Response<Body>, ApiError> {
    validate_user_id(&user_id).map_err(ApiError::invalid)?;
    let rules: Arc<Rules> = Arc::clone(&ctx.app.rules);
    if let Some(metric) = &metric {
        metric_param(&rules, &HashMap::from([("metric".to_owned(), metric.clone())]))?;
    }
    let actor = actor(ctx);
    let now_ms = now_ms();
    let target = user_id.clone();
    let report = ctx
        .app
        .store
        .write(move |tx| admin::reset_usage(tx, &rules, &target, metric.as_deref(), &actor, now_ms))?
        .ok_or_else(|| user_not_found(&user_id))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "user_id": user_id, "period": report.period, "before": object(&report.before) }),
    ))
}

/// `POST /v1/admin/cleanup`: deletes counters older than `retention_months` periods.
pub fn cleanup(ctx: &Ctx<'_>, retention_months: u32) -> Result<Response<Body>, ApiError> {
    if !(1..=1200).contains(&retention_months) {
        return Err(ApiError::invalid("retention_months must be a whole number from 1 to 1200"));
    }
    let rules: Arc<Rules> = Arc::clone(&ctx.app.rules);
    let actor = actor(ctx);
    let now_ms = now_ms();
    let report = ctx.app.store.write(move |tx| admin::cleanup(tx, &rules, retention_months, &actor, now_ms))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "deleted_counters": report.deleted_counters,
            "oldest_period_kept": report.oldest_period_kept,
            "pruned_idempotency_keys": report.pruned_idempotency_keys,
        }),
    ))
}

/// The caller's name for the audit log.
fn actor(ctx: &Ctx<'_>) -> String {
    ctx.caller.as_ref().map_or_else(|| "anonymous".to_owned(), |caller| caller.name.clone())
}

// ---- /v1/admin route handlers: path and query in, the functions above out ----

pub fn get_usage(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let params = query(ctx.request, &["period", "metric", "top"])?;
    usage_summary(ctx, &params)
}

pub fn get_plans(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    query(ctx.request, &[])?;
    plan_distribution(ctx)
}

pub fn get_offenders(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let params = query(ctx.request, &["period", "metric", "limit"])?;
    offenders(ctx, &params)
}

pub fn get_user(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let params = query(ctx.request, &["months"])?;
    let user_id = user_id_param(ctx)?;
    user_details(ctx, &user_id, &params)
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
    retention_months: u32,
}

pub fn post_cleanup(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let body: CleanupBody = ctx.json_body()?;
    cleanup(ctx, body.retention_months)
}

pub fn delete_user(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let actor = actor(ctx);
    let now_ms = now_ms();
    let target = user_id.clone();
    let hash = ctx
        .app
        .store
        .write(move |tx| admin::erase_user(tx, &target, &actor, now_ms))?
        .ok_or_else(|| user_not_found(&user_id))?;
    Ok(json_response(StatusCode::OK, &json!({ "erased": true, "user_id_hash": hash })))
}

pub fn get_export(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let export = ctx.app.store.read(|reader| match reader.find_user(&user_id)? {
        Some(user) => Ok(Some((reader.export_user(&user)?, user))),
        None => Ok(None),
    })?;
    let (export, user) = export.ok_or_else(|| user_not_found(&user_id))?;
    let counters: Vec<Value> = export
        .counters
        .iter()
        .map(|counter| {
            json!({
                "period": counter.period,
                "metric": counter.metric,
                "value": counter.value,
                "created_at": rfc3339(counter.created_at_ms),
                "updated_at": rfc3339(counter.updated_at_ms),
            })
        })
        .collect();
    let feature_uses: Vec<Value> = export
        .feature_uses
        .iter()
        .map(|(feature, at)| json!({ "feature": feature, "used_at": rfc3339(*at) }))
        .collect();
    let keys: Vec<Value> = export
        .idempotency_keys
        .iter()
        .map(|(key, status, at)| json!({ "key": key, "status": status, "created_at": rfc3339(*at) }))
        .collect();
    let audit: Vec<Value> = export.audit.iter().map(audit_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "exported_at": rfc3339(now_ms()),
            "user": {
                "uuid": user.uuid,
                "user_id": user.user_id,
                "plan": user.plan,
                "created_at": rfc3339(user.created_at_ms),
                "updated_at": rfc3339(export.updated_at_ms),
            },
            "counters": counters,
            "feature_uses": feature_uses,
            "idempotency_keys": keys,
            "audit": audit,
        }),
    ))
}

pub fn audit_json(record: &crate::store::AuditRecord) -> Value {
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
    let params = query(ctx.request, &["limit", "before"])?;
    let limit = count_param(&params, "limit", 50, 1, 500)?;
    let before = match params.get("before") {
        None => None,
        Some(text) => Some(text.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            ApiError::invalid(format!("before must be an audit row id (a positive whole number), got {text:?}"))
        })?),
    };
    let rows = ctx.app.store.read(|reader| reader.audit_page(limit, before))?;
    let next_before = if rows.len() as u32 == limit { rows.last().map(|row| row.id) } else { None };
    let entries: Vec<Value> = rows.iter().map(audit_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "entries": entries, "next_before": next_before })))
}
