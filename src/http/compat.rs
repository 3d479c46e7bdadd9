//! The origin design's admin API, `GET`/`POST /api/v1/admin/usage`, for clients written
//! against it. Every request maps onto the `/v1/admin` functions in admin.rs: one
//! implementation, two URL shapes. Same admin auth.

use super::Ctx;
use super::admin;
use super::error::ApiError;
use super::params::{self, Params};
use super::request::{present, present_whole};
use crate::domain::user_id::UserId;
use crate::http::Body;
use ::http::Response;
use serde::Deserialize;

/// `?endpoint=` (absent: dashboard data), `user` (needs `userId`), `offenders`, `plans`.
pub fn get_usage(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let mut params: Params = ctx.query.clone();
    // Every parameter given is checked, whether or not the chosen endpoint reads it.
    let user_id =
        params.get("userId").map(|user_id| UserId::parse(user_id.as_str())).transpose().map_err(ApiError::invalid)?;
    params::period_param(&params, 0)?;
    params::metric_param(&ctx.app.rules, &params)?;
    params::count_param(&params, "top", 10, 0, 1000)?;
    params::count_param(&params, "limit", 10, 1, 1000)?;
    params::count_param(&params, "months", 12, 1, 120)?;
    let endpoint = params.remove("endpoint");
    match endpoint.as_deref() {
        None | Some("dashboard") => admin::usage_summary(ctx, &params),
        Some("user") => {
            let user_id = user_id.ok_or_else(|| ApiError::invalid("endpoint=user needs userId"))?;
            admin::user_details(ctx, &user_id, &params)
        }
        Some("offenders") => admin::offenders(ctx, &params),
        Some("plans") => admin::plan_distribution(ctx),
        Some(other) => Err(ApiError::invalid(format!(
            "unknown endpoint {other:?}; use user, offenders or plans, or leave it out for the dashboard"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActionBody {
    action: String,
    #[serde(default, deserialize_with = "present_whole")]
    retention_months: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    plan: Option<String>,
    #[serde(default, deserialize_with = "present")]
    metric: Option<String>,
}

fn required<T>(value: Option<T>, action: &str, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid(format!("action {action:?} needs {field}")))
}

/// `{"action": "cleanup" | "upgrade_plan" | "reset_user", ...}`.
pub fn post_usage(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let body: ActionBody = ctx.json_body()?;
    let user_id = body.user_id.clone().map(UserId::parse).transpose().map_err(ApiError::invalid)?;
    if let Some(metric) = &body.metric {
        crate::app::check_metric(&ctx.app.rules, metric)?;
    }
    if let Some(plan) = &body.plan {
        crate::app::check_plan(&ctx.app.rules, plan)?;
    }
    match body.action.as_str() {
        "cleanup" => admin::cleanup(ctx, required(body.retention_months, "cleanup", "retentionMonths")?),
        "upgrade_plan" => admin::change_plan(
            ctx,
            required(user_id, "upgrade_plan", "userId")?,
            required(body.plan, "upgrade_plan", "plan")?,
        ),
        "reset_user" => admin::reset(ctx, required(user_id, "reset_user", "userId")?, body.metric),
        other => Err(ApiError::invalid(format!("unknown action {other:?}; use cleanup, upgrade_plan or reset_user"))),
    }
}
