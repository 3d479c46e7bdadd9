//! `GET` and `PUT /v1/users/{user_id}`: a user's plan and standing on every metric.

use super::error::ApiError;
use super::features::FeatureSummaryJson;
use super::request::present;
use super::{Ctx, json_response, now_ms};
use crate::app::accounts;
use crate::app::admin as ops;
use crate::domain::admin::UserStanding;
use crate::domain::customer::{self, FieldsChange};
use crate::domain::events::EventType;
use crate::domain::period::Period;
use crate::domain::plan::Enforcement;
use crate::domain::ports::RefusalCount;
use crate::domain::terms::Source;
use crate::domain::usage::Standing;
use crate::domain::user_id::UserId;
use crate::http::Body;
use ::http::{Response, StatusCode};
use chrono::{DateTime, SecondsFormat};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub struct UserView {
    user_id: String,
    /// The user's own plan; while a member, the account's plan applies instead.
    plan: String,
    /// The account the user is a member of; `usage` is then the account's pool.
    account_id: Option<String>,
    created_at: String,
    /// Billing fields the user carries (set with `PUT`).
    stripe_customer_id: Option<String>,
    email: Option<String>,
    period: Period,
    bypass: bool,
    usage: IndexMap<String, StandingJson>,
    features: IndexMap<String, FeatureSummaryJson>,
}

/// One metric of the user view: the standing, and how many tracks the limit refused in the
/// period.
#[derive(Serialize)]
pub struct StandingJson {
    used: u64,
    /// Held by open reservations: counts against the limit like `used`.
    reserved: u64,
    refused: u64,
    /// Includes `granted` and `rollover`.
    limit: Option<u64>,
    granted: u64,
    rollover: u64,
    remaining: Option<u64>,
    enforcement: Enforcement,
    over_soft_limit: bool,
    /// Whether the limit's base is the plan's or an override's.
    source: Source,
}

impl StandingJson {
    pub(super) fn new(standing: &Standing, refused: u64) -> StandingJson {
        StandingJson {
            used: standing.used,
            reserved: standing.reserved,
            refused,
            limit: standing.limit,
            granted: standing.granted,
            rollover: standing.rollover,
            remaining: standing.remaining,
            enforcement: standing.enforcement,
            over_soft_limit: standing.over_soft_limit,
            source: standing.source,
        }
    }
}

/// The refusals of `subject` in the period, of any of `kinds`.
pub(super) fn refused(refusals: &[RefusalCount], kinds: &[EventType], subject: &str) -> u64 {
    refusals
        .iter()
        .filter(|refusal| refusal.subject == subject && kinds.iter().any(|kind| kind.as_str() == refusal.kind))
        .map(|refusal| refusal.count)
        .sum()
}

pub fn rfc3339(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl UserView {
    pub fn new(standing: &UserStanding) -> UserView {
        const FEATURE_REFUSALS: [EventType; 2] = [EventType::RateLimited, EventType::FeatureDenied];
        let UserStanding { user, plan, bypass, period, usage, features, refusals, account_id, fields } = standing;
        UserView {
            user_id: user.user_id.clone(),
            plan: plan.clone(),
            account_id: account_id.clone(),
            created_at: rfc3339(user.created_at_ms),
            stripe_customer_id: fields.stripe_customer_id.clone(),
            email: fields.email.clone(),
            period: *period,
            bypass: *bypass,
            usage: usage
                .iter()
                .map(|(metric, standing)| {
                    let refused = refused(refusals, &[EventType::LimitExceeded], metric);
                    (metric.clone(), StandingJson::new(standing, refused))
                })
                .collect(),
            features: features
                .iter()
                .map(|verdict| {
                    let refused = refused(refusals, &FEATURE_REFUSALS, &verdict.feature);
                    (verdict.feature.clone(), FeatureSummaryJson::new(verdict, refused))
                })
                .collect(),
        }
    }
}

pub fn user_id_param(ctx: &Ctx<'_>) -> Result<UserId, ApiError> {
    UserId::parse(ctx.params.first().cloned().unwrap_or_default()).map_err(ApiError::invalid)
}

pub fn user_not_found(user_id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "user_not_found", format!("no user {user_id:?} has been seen"))
        .with("user_id", user_id)
}

pub fn get(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let now_ms = now_ms();
    let period = super::params::period_param(&ctx.query, now_ms)?;
    match ops::user_standing(&ctx.app.store, &ctx.app.rules, &user_id, period, now_ms)? {
        Some(standing) => Ok(json_response(StatusCode::OK, &UserView::new(&standing))),
        None => Err(user_not_found(&user_id)),
    }
}

/// The body of `POST /v1/admin/users/{id}/plan`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanBody {
    pub(super) plan: String,
}

/// The body of `PUT /v1/users/{id}`: a plan, an account to join (null: leave), billing
/// fields (null: clear), or any of them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    #[serde(default, deserialize_with = "present")]
    plan: Option<String>,
    /// Absent: membership unchanged; null: leave the account; an id: join it.
    #[serde(default, deserialize_with = "present")]
    account_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    stripe_customer_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
}

/// The billing fields of a `PUT` body, on users and accounts alike: absent keeps a field,
/// null clears it, a value (checked here, before anything changes) sets it.
pub(super) fn fields_change(
    stripe_customer_id: Option<Option<String>>,
    email: Option<Option<String>>,
) -> Result<FieldsChange, ApiError> {
    if let Some(Some(id)) = &stripe_customer_id {
        customer::validate_stripe_customer_id(id).map_err(ApiError::invalid)?;
    }
    if let Some(Some(email)) = &email {
        customer::validate_email(email).map_err(ApiError::invalid)?;
    }
    Ok(FieldsChange { stripe_customer_id, email })
}

/// Sets `user_id`'s plan, creating the user if needed, audited under `actor` when given;
/// returns the view in the current period.
pub fn set_plan(ctx: &Ctx<'_>, user_id: &UserId, plan: &str, actor: Option<&str>) -> Result<UserView, ApiError> {
    Ok(ops::change_plan(&ctx.app.store, &ctx.app.rules, user_id, plan, actor, |tx, rules, user, now_ms| {
        crate::domain::admin::user_standing(tx, rules, user.clone(), Period::of_unix_ms(now_ms), now_ms)
    })
    .map(|standing| UserView::new(&standing))?)
}

pub fn put(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let body: PutBody = ctx.json_body()?;
    let fields = fields_change(body.stripe_customer_id, body.email)?;
    if body.plan.is_none() && body.account_id.is_none() && fields.is_empty() {
        return Err(ApiError::invalid(
            "give plan, account_id (null to leave the account), stripe_customer_id or email (null to clear), or several",
        ));
    }
    let account_id = match body.account_id {
        Some(Some(text)) => Some(Some(
            UserId::parse(text).map_err(|problem| ApiError::invalid(format!("account_id: {problem}")))?.to_string(),
        )),
        Some(None) => Some(None),
        None => None,
    };
    let change = accounts::UserChange { plan: body.plan, account_id, fields };
    // Every change is audited, under the calling key's name.
    let view = accounts::change_user(
        &ctx.app.store,
        &ctx.app.rules,
        &user_id,
        change,
        &super::admin::actor(ctx),
        |tx, rules, user, now_ms| {
            crate::domain::admin::user_standing(tx, rules, user.clone(), Period::of_unix_ms(now_ms), now_ms)
        },
    )?;
    Ok(json_response(StatusCode::OK, &UserView::new(&view)))
}
