//! Accounts over HTTP: `PUT` and `GET /v1/accounts/{account_id}` (service keys), and the
//! admin's list, details with history, plan change, reset and delete under
//! `/v1/admin/accounts`. The account view's JSON lives here.

use super::admin::{actor, object};
use super::error::ApiError;
use super::features::FeatureSummaryJson;
use super::params::{Params, count_param, period_param};
use super::request::present;
use super::users::{StandingJson, fields_change, refused, rfc3339};
use super::{Ctx, json_response, now_ms};
use crate::app::accounts as ops;
use crate::domain::account::AccountDetails;
use crate::domain::events::EventType;
use crate::domain::period::Period;
use crate::domain::user_id::UserId;
use crate::http::Body;
use ::http::{Response, StatusCode};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Serialize)]
pub struct AccountView {
    account_id: String,
    plan: String,
    created_at: String,
    /// Billing fields the account carries (set with `PUT`).
    stripe_customer_id: Option<String>,
    email: Option<String>,
    period: Period,
    /// The pool: what the members recorded while members, against the account's plan.
    usage: IndexMap<String, StandingJson>,
    features: IndexMap<String, FeatureSummaryJson>,
    members: Vec<MemberJson>,
}

#[derive(Serialize)]
struct MemberJson {
    user_id: String,
    /// The member's own counters in the period.
    usage: IndexMap<String, u64>,
}

impl AccountView {
    pub fn new(details: &AccountDetails) -> AccountView {
        const FEATURE_REFUSALS: [EventType; 2] = [EventType::RateLimited, EventType::FeatureDenied];
        let refusals = &details.refusals;
        AccountView {
            account_id: details.account.account_id.clone(),
            plan: details.plan.clone(),
            created_at: rfc3339(details.account.created_at_ms),
            stripe_customer_id: details.fields.stripe_customer_id.clone(),
            email: details.fields.email.clone(),
            period: details.period,
            usage: details
                .usage
                .iter()
                .map(|(metric, standing)| {
                    let refused = refused(refusals, &[EventType::LimitExceeded], metric);
                    (metric.clone(), StandingJson::new(standing, refused))
                })
                .collect(),
            features: details
                .features
                .iter()
                .map(|verdict| {
                    let refused = refused(refusals, &FEATURE_REFUSALS, &verdict.feature);
                    (verdict.feature.clone(), FeatureSummaryJson::new(verdict, refused))
                })
                .collect(),
            members: details
                .members
                .iter()
                .map(|(member, usage)| MemberJson {
                    user_id: member.user_id.clone(),
                    usage: usage.iter().cloned().collect(),
                })
                .collect(),
        }
    }
}

pub(super) fn account_id_param(ctx: &Ctx<'_>) -> Result<UserId, ApiError> {
    UserId::parse(ctx.params.first().cloned().unwrap_or_default())
        .map_err(|problem| ApiError::invalid(problem.replace("user id", "account id")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    plan: String,
}

/// The body of `PUT /v1/accounts/{id}`: a plan, billing fields (null: clear), or both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    #[serde(default, deserialize_with = "present")]
    plan: Option<String>,
    #[serde(default, deserialize_with = "present")]
    stripe_customer_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
}

/// `PUT /v1/accounts/{account_id}`: creates the account (on `plan`, else the default plan) or
/// changes its plan and billing fields (audited).
pub fn put(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let account_id = account_id_param(ctx)?;
    let body: PutBody = ctx.json_body()?;
    let fields = fields_change(body.stripe_customer_id, body.email)?;
    if body.plan.is_none() && fields.is_empty() {
        return Err(ApiError::invalid("give plan, stripe_customer_id or email (null to clear), or several"));
    }
    let change = ops::AccountChange { plan: body.plan, fields };
    let details = ops::put(&ctx.app.store, &ctx.app.rules, &account_id, change, &actor(ctx))?;
    Ok(json_response(StatusCode::OK, &AccountView::new(&details)))
}

/// `GET /v1/accounts/{account_id}?period=YYYY-MM`.
pub fn get(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let account_id = account_id_param(ctx)?;
    let period = period_param(&ctx.query, now_ms())?;
    let details = ops::details(&ctx.app.store, &ctx.app.rules, &account_id, period)?;
    Ok(json_response(StatusCode::OK, &AccountView::new(&details)))
}

/// `GET /v1/admin/accounts?limit=&before=`: accounts by id, descending.
pub fn list(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let params: &Params = &ctx.query;
    let limit = count_param(params, "limit", 50, 1, 500)?;
    let before = match params.get("before") {
        Some(text) => Some(UserId::parse(text.as_str()).map_err(|problem| {
            ApiError::invalid(format!("before must be an account id from the previous page: {problem}"))
        })?),
        None => None,
    };
    let rows = ops::page(&ctx.app.store, limit, before.as_deref())?;
    let next_before =
        if rows.len() as u32 == limit { rows.last().map(|(account, _)| account.account_id.clone()) } else { None };
    let accounts: Vec<Value> = rows
        .iter()
        .map(|(account, members)| {
            json!({
                "account_id": account.account_id,
                "plan": account.plan,
                "created_at": rfc3339(account.created_at_ms),
                "members": members,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "accounts": accounts, "next_before": next_before })))
}

/// `GET /v1/admin/accounts/{account_id}?months=`: the account view plus its pool's history.
pub fn admin_get(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let account_id = account_id_param(ctx)?;
    let months = count_param(&ctx.query, "months", 12, 1, 120)?;
    let (details, history) = ops::admin_details(&ctx.app.store, &ctx.app.rules, &account_id, months)?;
    let mut body = serde_json::to_value(AccountView::new(&details)).map_err(|_| ApiError::internal())?;
    let history: Vec<Value> =
        history.iter().map(|(period, usage)| json!({ "period": period, "usage": object(usage) })).collect();
    body["history"] = Value::Array(history);
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v1/admin/accounts/{account_id}/plan` `{"plan"}`: audited; 404 for an unknown account.
pub fn admin_plan(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let account_id = account_id_param(ctx)?;
    let body: PlanBody = ctx.json_body()?;
    let details = ops::change_plan(&ctx.app.store, &ctx.app.rules, &account_id, &body.plan, &actor(ctx))?;
    Ok(json_response(StatusCode::OK, &AccountView::new(&details)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    #[serde(default, deserialize_with = "present")]
    metric: Option<String>,
}

/// `POST /v1/admin/accounts/{account_id}/reset` `{"metric"?}`: zeroes the pool's current
/// period (members keep their own counters); answers what was there.
pub fn admin_reset(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let account_id = account_id_param(ctx)?;
    let body: ResetBody = ctx.json_body()?;
    let (period, before) =
        ops::reset(&ctx.app.store, &ctx.app.rules, &account_id, body.metric.as_deref(), &actor(ctx))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "account_id": account_id.as_str(), "period": period, "before": object(&before) }),
    ))
}

/// `DELETE /v1/admin/accounts/{account_id}`: members leave and keep their own data.
pub fn admin_delete(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let account_id = account_id_param(ctx)?;
    ops::delete(&ctx.app.store, &account_id, &actor(ctx))?;
    Ok(json_response(StatusCode::OK, &json!({ "deleted": true, "account_id": account_id.as_str() })))
}
