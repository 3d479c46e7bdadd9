//! `GET /v1/users/{id}/forecast`, `GET /v1/accounts/{id}/forecast` (projected now, from the
//! daily history) and `GET /v1/admin/forecast` (the hourly job's stored projections).

use super::accounts::account_id_param;
use super::error::ApiError;
use super::users::{rfc3339, user_id_param, user_not_found};
use super::{Ctx, json_response, now_ms};
use crate::app::forecasts::{self, CustomerForecast, MetricForecast};
use crate::app::{self, AppError};
use crate::domain::ports::ForecastRecord;
use crate::http::Body;
use ::http::{Response, StatusCode};
use indexmap::IndexMap;
use serde::Serialize;

#[derive(Serialize)]
struct MetricJson {
    used: u64,
    limit: Option<u64>,
    enforcement: &'static str,
    projected: u64,
    projected_low: u64,
    projected_high: u64,
    exhausted_at: Option<String>,
    method: &'static str,
}

impl From<&MetricForecast> for MetricJson {
    fn from(metric: &MetricForecast) -> MetricJson {
        MetricJson {
            used: metric.used,
            limit: metric.limit,
            enforcement: metric.enforcement,
            projected: metric.projected,
            projected_low: metric.low,
            projected_high: metric.high,
            exhausted_at: metric.exhausted_at_ms.map(rfc3339),
            method: metric.method,
        }
    }
}

#[derive(Serialize)]
struct ForecastJson {
    period: String,
    as_of: String,
    plan: String,
    /// The account whose pool it is; null for a user on their own.
    account_id: Option<String>,
    metrics: IndexMap<String, MetricJson>,
}

fn answer(forecast: &CustomerForecast) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &ForecastJson {
            period: forecast.period.to_string(),
            as_of: rfc3339(forecast.as_of_ms),
            plan: forecast.plan.clone(),
            account_id: forecast.account_id.clone(),
            metrics: forecast.metrics.iter().map(|metric| (metric.metric.clone(), metric.into())).collect(),
        },
    )
}

/// The `metric` query parameter, if given: a configured metric.
fn metric_param(ctx: &Ctx<'_>) -> Result<Option<String>, ApiError> {
    let Some(metric) = ctx.query.get("metric") else {
        return Ok(None);
    };
    app::check_metric(&ctx.app.rules, metric)?;
    Ok(Some(metric.clone()))
}

pub fn user(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = user_id_param(ctx)?;
    let metric = metric_param(ctx)?;
    match forecasts::user_forecast(&ctx.app.store, &ctx.app.rules, &user_id, metric.as_deref(), now_ms()) {
        Ok(forecast) => Ok(answer(&forecast)),
        Err(AppError::UserNotFound(_)) => Err(user_not_found(&user_id)),
        Err(error) => Err(error.into()),
    }
}

pub fn account(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let account_id = account_id_param(ctx)?;
    let metric = metric_param(ctx)?;
    let forecast =
        forecasts::account_forecast(&ctx.app.store, &ctx.app.rules, &account_id, metric.as_deref(), now_ms())?;
    Ok(answer(&forecast))
}

#[derive(Serialize)]
struct AtRiskJson<'f> {
    customer_kind: &'static str,
    customer_id: &'f str,
    plan: &'f str,
    metric: &'f str,
    used: u64,
    limit: Option<u64>,
    enforcement: &'f str,
    projected: u64,
    projected_low: u64,
    projected_high: u64,
    exhausted_at: Option<String>,
}

#[derive(Serialize, Default)]
struct TotalJson {
    used: u64,
    projected: u64,
    projected_low: u64,
    projected_high: u64,
}

#[derive(Serialize)]
struct AdminForecastJson<'f> {
    period: String,
    /// When the job last projected this period; null before its first run.
    computed_at: Option<String>,
    /// Customers projected past a hard or soft limit, soonest to run out first.
    at_risk: Vec<AtRiskJson<'f>>,
    /// Every customer's projections added up, per metric.
    totals: IndexMap<String, TotalJson>,
    projected_revenue: RevenueJson,
}

/// The month's revenue if the projections come true: every plan's price as the plans stand
/// now (the plan distribution's estimate), and the overage the projected totals would cost
/// at each plan's overage prices.
#[derive(Serialize)]
struct RevenueJson {
    currency: String,
    plans_cents: u64,
    overage_cents: u64,
    total_cents: u64,
}

/// The overage cost of every stored projection at its plan's overage price.
fn projected_overage_cents(rules: &crate::domain::Rules, records: &[ForecastRecord]) -> u64 {
    records
        .iter()
        .map(|record| {
            let plan = rules.catalog.plan_or_default(&record.plan);
            let price = plan.overage.get(&record.metric).copied();
            crate::domain::billing::overage(record.limit, record.projected, price).1
        })
        .fold(0, u64::saturating_add)
}

fn at_risk(record: &ForecastRecord) -> Option<AtRiskJson<'_>> {
    let limit = record.limit.filter(|&limit| record.projected > limit)?;
    Some(AtRiskJson {
        customer_kind: record.owner.kind(),
        customer_id: &record.customer_id,
        plan: &record.plan,
        metric: &record.metric,
        used: record.used,
        limit: Some(limit),
        enforcement: &record.enforcement,
        projected: record.projected,
        projected_low: record.low,
        projected_high: record.high,
        exhausted_at: record.exhausted_at_ms.map(rfc3339),
    })
}

pub fn admin(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let now_ms = now_ms();
    let period = super::params::period_param(&ctx.query, now_ms)?;
    let current = crate::domain::period::Period::of_unix_ms(now_ms);
    if period > current {
        return Err(ApiError::invalid(format!("period {period} has not begun; ask for {current} or an earlier month")));
    }
    let metric = metric_param(ctx)?;
    let records = forecasts::stored(&ctx.app.store, period, metric.as_deref())?;
    let mut totals: IndexMap<String, TotalJson> = IndexMap::new();
    for record in &records {
        let total = totals.entry(record.metric.clone()).or_default();
        total.used = total.used.saturating_add(record.used);
        total.projected = total.projected.saturating_add(record.projected);
        total.projected_low = total.projected_low.saturating_add(record.low);
        total.projected_high = total.projected_high.saturating_add(record.high);
    }
    let rules = &ctx.app.rules;
    let plans_cents = app::admin::distribution(&ctx.app.store, rules)?.revenue_cents_total;
    let overage_cents = projected_overage_cents(rules, &records);
    let body = AdminForecastJson {
        period: period.to_string(),
        computed_at: records.iter().map(|record| record.computed_at_ms).max().map(rfc3339),
        at_risk: records.iter().filter_map(at_risk).collect(),
        totals,
        projected_revenue: RevenueJson {
            currency: rules.currency.clone(),
            plans_cents,
            overage_cents,
            total_cents: plans_cents.saturating_add(overage_cents),
        },
    };
    Ok(json_response(StatusCode::OK, &body))
}
