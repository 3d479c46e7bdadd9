//! Overrides and grants over HTTP, under `/v1/admin/users/{id}/...` and
//! `/v1/admin/accounts/{id}/...`: the bodies, their validation against the catalog, and the
//! JSON of an override and a grant.

use super::admin::actor;
use super::error::ApiError;
use super::params::period_param;
use super::request::{present, present_whole};
use super::users::rfc3339;
use super::{Ctx, json_response, now_ms};
use crate::app::terms as ops;
use crate::domain::Rules;
use crate::domain::period::Period;
use crate::domain::plan::{FeatureGrant, Limit};
use crate::domain::ports::GrantRecord;
use crate::domain::terms::{Customer, Override, feature_json, limit_json};
use crate::domain::usage::AMOUNT_MAX;
use crate::domain::user_id::UserId;
use crate::http::Body;
use ::http::{Response, StatusCode};
use chrono::DateTime;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Whose terms a route is about, from its path.
fn customer_param(ctx: &Ctx<'_>) -> Result<(bool, UserId), ApiError> {
    let account = ctx.request.uri().path().starts_with("/v1/admin/accounts/");
    let id = UserId::parse(ctx.params.first().cloned().unwrap_or_default()).map_err(ApiError::invalid)?;
    Ok((account, id))
}

fn customer((account, id): &(bool, UserId)) -> Customer<'_> {
    if *account { Customer::Account(id) } else { Customer::User(id) }
}

fn time_ms(name: &str, text: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.timestamp_millis()).map_err(|error| {
        ApiError::invalid(format!("{name} {text:?} is not RFC 3339 ({error}); e.g. 2026-12-31T23:59:59Z"))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    #[serde(default)]
    limits: IndexMap<String, Value>,
    #[serde(default)]
    features: IndexMap<String, Value>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<String>,
    #[serde(default, deserialize_with = "present")]
    note: Option<String>,
}

fn parse_limit(metric: &str, value: &Value) -> Result<Limit, ApiError> {
    let wrong = || {
        ApiError::invalid(format!(
            "limits.{metric} must be \"unlimited\" or {{\"limit\": N, \"enforcement\": \"hard\" | \"soft\"}}"
        ))
    };
    if value.as_str() == Some("unlimited") {
        return Ok(Limit::Unlimited);
    }
    let object = value.as_object().ok_or_else(wrong)?;
    if object.keys().any(|key| key != "limit" && key != "enforcement") {
        return Err(wrong());
    }
    let limit = object.get("limit").and_then(Value::as_u64).filter(|limit| *limit <= AMOUNT_MAX).ok_or_else(wrong)?;
    match object.get("enforcement").and_then(Value::as_str) {
        Some("hard") => Ok(Limit::Hard(limit)),
        Some("soft") => Ok(Limit::Soft(limit)),
        _ => Err(wrong()),
    }
}

fn parse_feature(rules: &Rules, feature: &str, value: &Value) -> Result<FeatureGrant, ApiError> {
    let is_rate = matches!(rules.catalog.default_plan().feature(feature), FeatureGrant::Rate { .. });
    let small = |value: Option<&Value>| value.and_then(Value::as_u64).and_then(|number| u32::try_from(number).ok());
    let grant = match (is_rate, value) {
        (false, Value::Bool(granted)) => Some(FeatureGrant::Boolean(*granted)),
        (true, Value::Object(object)) if object.len() == 1 && object.contains_key("per_minute") => {
            small(object.get("per_minute")).map(|limit| FeatureGrant::Rate { limit, window_secs: 60 })
        }
        (true, Value::Object(object)) if object.len() == 2 => {
            match (small(object.get("limit")), small(object.get("window_secs"))) {
                (Some(limit), Some(window_secs)) if window_secs > 0 => Some(FeatureGrant::Rate { limit, window_secs }),
                _ => None,
            }
        }
        _ => None,
    };
    grant.ok_or_else(|| {
        let expected = if is_rate {
            "{\"per_minute\": N} or {\"limit\": N, \"window_secs\": S} (a rate-limited feature)"
        } else {
            "true or false (a boolean feature)"
        };
        ApiError::invalid(format!("features.{feature} must be {expected}"))
    })
}

fn override_json(over: &Override) -> Value {
    let limits: Map<String, Value> =
        over.limits.iter().map(|(name, limit)| (name.clone(), limit_json(*limit))).collect();
    let features: Map<String, Value> =
        over.features.iter().map(|(name, grant)| (name.clone(), feature_json(*grant))).collect();
    json!({
        "limits": limits,
        "features": features,
        "expires_at": over.expires_at_ms.map(rfc3339),
        "note": over.note,
    })
}

/// `PUT .../overrides`: replaces the customer's override set (audited).
pub fn put_override(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let who = customer_param(ctx)?;
    let body: OverrideBody = ctx.json_body()?;
    let rules = &ctx.app.rules;
    let mut over = Override::default();
    for (metric, value) in &body.limits {
        if !rules.catalog.has_metric(metric) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_metric",
                format!("metric {metric:?} is not configured"),
            )
            .with("metric", metric.as_str()));
        }
        over.limits.insert(metric.clone(), parse_limit(metric, value)?);
    }
    for (feature, value) in &body.features {
        if !rules.catalog.has_feature(feature) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_feature",
                format!("feature {feature:?} is not configured"),
            )
            .with("feature", feature.as_str()));
        }
        over.features.insert(feature.clone(), parse_feature(rules, feature, value)?);
    }
    over.expires_at_ms = body.expires_at.as_deref().map(|text| time_ms("expires_at", text)).transpose()?;
    over.note = body.note;
    ops::set_override(&ctx.app.store, customer(&who), over.clone(), &actor(ctx))?;
    Ok(json_response(StatusCode::OK, &override_json(&over)))
}

pub fn get_override(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let who = customer_param(ctx)?;
    let over = ops::get_override(&ctx.app.store, customer(&who))?;
    Ok(json_response(StatusCode::OK, &override_json(&over)))
}

pub fn delete_override(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let who = customer_param(ctx)?;
    ops::remove_override(&ctx.app.store, customer(&who), &actor(ctx))?;
    Ok(json_response(StatusCode::OK, &json!({ "removed": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    metric: String,
    #[serde(deserialize_with = "present_whole")]
    amount: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    period: Option<String>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<String>,
    #[serde(default, deserialize_with = "present")]
    note: Option<String>,
}

pub(super) fn grant_json(grant: &GrantRecord) -> Value {
    json!({
        "grant_id": grant.id,
        "metric": grant.metric,
        "amount": grant.amount,
        "period": grant.period,
        "expires_at": grant.expires_at_ms.map(rfc3339),
        "note": grant.note,
        "created_at": rfc3339(grant.created_at_ms),
    })
}

/// `POST .../grants`: 201 with the grant; 409 `grant_has_no_effect` when it could raise no
/// enforced limit.
pub fn post_grant(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let who = customer_param(ctx)?;
    let body: GrantBody = ctx.json_body()?;
    let rules = &ctx.app.rules;
    if !rules.catalog.has_metric(&body.metric) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_metric",
            format!("metric {:?} is not configured", body.metric),
        )
        .with("metric", body.metric.as_str()));
    }
    let amount = body.amount.unwrap_or(0);
    if !(1..=AMOUNT_MAX).contains(&amount) {
        return Err(ApiError::invalid(format!("amount must be an integer from 1 to {AMOUNT_MAX}, got {amount}")));
    }
    let now_ms = now_ms();
    let period = match &body.period {
        Some(text) => text.parse::<Period>().map_err(|error| ApiError::invalid(error.to_string()))?,
        None => period_param(&Default::default(), now_ms)?,
    };
    let (kind, id) = match customer(&who) {
        Customer::User(id) => ("user", id),
        Customer::Account(id) => ("account", id),
    };
    let mut grant = GrantRecord {
        id: 0,
        customer_kind: kind.to_owned(),
        customer_id: id.to_owned(),
        metric: body.metric,
        amount,
        period: period.to_string(),
        expires_at_ms: body.expires_at.as_deref().map(|text| time_ms("expires_at", text)).transpose()?,
        note: body.note,
        created_at_ms: now_ms,
    };
    grant.id = ops::add_grant(&ctx.app.store, rules, customer(&who), grant.clone(), &actor(ctx))?;
    Ok(json_response(StatusCode::CREATED, &grant_json(&grant)))
}

pub fn get_grants(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let who = customer_param(ctx)?;
    let grants: Vec<Value> = ops::grants(&ctx.app.store, customer(&who))?.iter().map(grant_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "grants": grants })))
}

/// `DELETE /v1/admin/grants/{grant_id}`.
pub fn delete_grant(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let text = ctx.params.first().cloned().unwrap_or_default();
    let grant_id = text
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::invalid(format!("{text:?} is not a grant id")))?;
    let grant = ops::revoke_grant(&ctx.app.store, grant_id, &actor(ctx))?;
    Ok(json_response(StatusCode::OK, &json!({ "revoked": true, "grant": grant_json(&grant) })))
}
