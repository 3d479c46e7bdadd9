//! `GET` and `PUT /v1/users/{user_id}`: a user's plan and standing on every metric.

use super::error::ApiError;
use super::features::FeatureSummaryJson;
use super::request::query;
use super::{Ctx, json_response, now_ms};
use crate::domain::Rules;
use crate::domain::period::Period;
use crate::domain::plan::Enforcement;
use crate::domain::usage::Standing;
use crate::domain::user_id::validate_user_id;
use crate::domain::{admin, feature};
use crate::store::{StoreError, UsageRead, UserRecord};
use chrono::{DateTime, SecondsFormat};
use indexmap::IndexMap;
use oxhttp::model::{Body, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize)]
pub struct UserView {
    user_id: String,
    plan: String,
    created_at: String,
    period: Period,
    bypass: bool,
    usage: IndexMap<String, StandingJson>,
    features: IndexMap<String, FeatureSummaryJson>,
}

/// One metric of the user view.
#[derive(Serialize)]
pub struct StandingJson {
    used: u64,
    limit: Option<u64>,
    remaining: Option<u64>,
    enforcement: Enforcement,
    over_soft_limit: bool,
}

impl From<Standing> for StandingJson {
    fn from(standing: Standing) -> Self {
        StandingJson {
            used: standing.used,
            limit: standing.limit,
            remaining: standing.remaining,
            enforcement: standing.enforcement,
            over_soft_limit: standing.over_soft_limit,
        }
    }
}

pub fn rfc3339(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The user's standing on every configured metric in `period`, and on every feature now.
pub fn user_view(
    store: &impl UsageRead,
    rules: &Rules,
    user: &UserRecord,
    period: Period,
    now_ms: i64,
) -> Result<UserView, StoreError> {
    let plan = rules.catalog.plan_or_default(&user.plan);
    let counters: IndexMap<String, u64> = store.counters(user.pk, period)?.into_iter().collect();
    let usage = rules
        .catalog
        .metrics()
        .map(|metric| {
            let used = counters.get(&metric.name).copied().unwrap_or(0);
            (metric.name.clone(), Standing::new(plan.limit(&metric.name), used).into())
        })
        .collect();
    let features = feature::check_all(store, rules, user, now_ms)?
        .iter()
        .map(|verdict| (verdict.feature.clone(), FeatureSummaryJson::from(verdict)))
        .collect();
    Ok(UserView {
        user_id: user.user_id.clone(),
        plan: plan.name.clone(),
        created_at: rfc3339(user.created_at_ms),
        period,
        bypass: rules.is_bypass(&user.user_id),
        usage,
        features,
    })
}

pub fn user_id_param(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let user_id = ctx.params.first().cloned().unwrap_or_default();
    validate_user_id(&user_id).map_err(ApiError::invalid)?;
    Ok(user_id)
}

pub fn user_not_found(user_id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "user_not_found", format!("no user {user_id:?} has been seen"))
        .with("user_id", user_id)
}

pub fn get(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let parameters = query(ctx.request, &["period"])?;
    let now_ms = now_ms();
    let period = match parameters.get("period") {
        Some(text) => text.parse::<Period>().map_err(|error| ApiError::invalid(error.to_string()))?,
        None => Period::of_unix_ms(now_ms),
    };
    let rules = &ctx.app.rules;
    let view = ctx.app.store.read(|reader| match reader.find_user(&user_id)? {
        Some(user) => user_view(reader, rules, &user, period, now_ms).map(Some),
        None => Ok(None),
    })?;
    match view {
        Some(view) => Ok(json_response(StatusCode::OK, &view)),
        None => Err(user_not_found(&user_id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    plan: String,
}

/// Sets `user_id`'s plan, creating the user if needed, audited under `actor` when given;
/// returns the view in the current period.
pub fn set_plan(ctx: &Ctx<'_>, user_id: String, plan: String, actor: Option<String>) -> Result<UserView, ApiError> {
    let rules: Arc<Rules> = Arc::clone(&ctx.app.rules);
    if rules.catalog.find_plan(&plan).is_none() {
        let known: Vec<&str> = rules.catalog.plans().iter().map(|plan| plan.name.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_plan",
            format!("plan {plan:?} is not configured; known: {}", known.join(", ")),
        )
        .with("plan", plan));
    }
    let now_ms = now_ms();
    let view = ctx.app.store.write(move |tx| {
        let user = admin::change_plan(tx, &user_id, &plan, actor.as_deref(), now_ms)?;
        user_view(tx, &rules, &user, Period::of_unix_ms(now_ms), now_ms)
    })?;
    Ok(view)
}

pub fn put(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let body: PlanBody = ctx.json_body()?;
    let view = set_plan(ctx, user_id, body.plan, None)?;
    Ok(json_response(StatusCode::OK, &view))
}
