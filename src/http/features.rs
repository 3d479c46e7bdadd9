//! `POST /v1/features/check` and `POST /v1/features/use`: feature gating by plan, and
//! rate-limited uses recorded atomically with their window test.

use super::error::ApiError;
use super::idempotency::{self, Answered, Rendered};
use super::{Ctx, Later, json_response, now_ms, ratelimit};
use crate::app;
use crate::domain::Rules;
use crate::domain::feature::{FeatureKind, FeatureVerdict, UseOutcome};
use crate::domain::quota::Quota;
use crate::domain::user_id::UserId;
use crate::http::Body;
use crate::metrics::FeatureLabels;
use ::http::{Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureBody {
    user_id: String,
    feature: String,
}

#[derive(Serialize)]
pub struct FeatureJson<'v> {
    allowed: bool,
    user_id: &'v str,
    plan: &'v str,
    feature: &'v str,
    kind: FeatureKind,
    limit: Option<u32>,
    window_secs: Option<u32>,
    remaining_in_window: Option<u32>,
    plan_required: Option<&'v str>,
    bypass: bool,
}

impl<'v> From<&'v FeatureVerdict> for FeatureJson<'v> {
    fn from(verdict: &'v FeatureVerdict) -> Self {
        FeatureJson {
            allowed: verdict.allowed,
            user_id: &verdict.user_id,
            plan: &verdict.plan,
            feature: &verdict.feature,
            kind: verdict.kind,
            limit: verdict.limit,
            window_secs: verdict.window_secs,
            remaining_in_window: verdict.remaining_in_window,
            plan_required: verdict.plan_required.as_deref(),
            bypass: verdict.bypass,
        }
    }
}

/// A feature as the user view lists it: `allowed`, plus the window for a rate feature.
#[derive(Serialize)]
pub struct FeatureSummaryJson {
    allowed: bool,
    /// Uses refused in the period (not in the plan, or the window full).
    refused: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_in_window: Option<u32>,
    /// Whether the grant is the plan's or an override's.
    source: crate::domain::terms::Source,
}

impl FeatureSummaryJson {
    pub fn new(verdict: &FeatureVerdict, refused: u64) -> Self {
        FeatureSummaryJson {
            allowed: verdict.allowed,
            refused,
            limit: verdict.limit,
            window_secs: verdict.window_secs,
            remaining_in_window: verdict.remaining_in_window,
            source: verdict.source,
        }
    }
}

/// The body's user id, once the feature is known to be configured.
fn validate(rules: &Rules, body: &FeatureBody) -> Result<UserId, ApiError> {
    let user_id = UserId::parse(body.user_id.as_str()).map_err(ApiError::invalid)?;
    if !rules.catalog.has_feature(&body.feature) {
        let known = rules.catalog.features().join(", ");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_feature",
            format!("feature {:?} is not configured; known: {known}", body.feature),
        )
        .with("feature", body.feature.as_str()));
    }
    Ok(user_id)
}

pub fn check(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let body: FeatureBody = ctx.json_body()?;
    let rules = &ctx.app.rules;
    let user_id = validate(rules, &body)?;
    let now_ms = now_ms();
    let verdict = app::usage::check_feature(&ctx.app.store, rules, &user_id, &body.feature, now_ms)?;
    Ok(json_response(StatusCode::OK, &FeatureJson::from(&verdict)))
}

/// A rolling window in words: "minute", "hour", "day", else "N seconds".
fn window_text(seconds: u32) -> String {
    match seconds {
        1 => "second".to_owned(),
        60 => "minute".to_owned(),
        3600 => "hour".to_owned(),
        86_400 => "day".to_owned(),
        seconds => format!("{seconds} seconds"),
    }
}

pub(super) fn render_use(outcome: &UseOutcome) -> Rendered {
    // The window the use touched, as RateLimit headers (stored with the answer, replayed).
    let quotas: Vec<Quota> = match outcome {
        UseOutcome::Allowed(verdict) | UseOutcome::RateLimited { verdict, .. } => {
            Quota::of_feature(verdict).into_iter().collect()
        }
        UseOutcome::NotInPlan(_) => Vec::new(),
    };
    let quota_headers = ratelimit::pairs(&quotas);
    let error = match outcome {
        UseOutcome::Allowed(verdict) => {
            let mut rendered = idempotency::allowed(serde_json::to_string(&FeatureJson::from(verdict)), "feature");
            rendered.headers.extend(quota_headers);
            return rendered;
        }
        UseOutcome::NotInPlan(verdict) => {
            let required = match &verdict.plan_required {
                Some(plan) => format!("; plan {plan} grants it"),
                None => "; no plan grants it".to_owned(),
            };
            ApiError::new(
                StatusCode::FORBIDDEN,
                "feature_not_in_plan",
                format!("plan {} does not include {}{required}", verdict.plan, verdict.feature),
            )
            .with("user_id", verdict.user_id.as_str())
            .with("feature", verdict.feature.as_str())
            .with("plan", verdict.plan.as_str())
            .with("plan_required", verdict.plan_required.clone())
        }
        UseOutcome::RateLimited { verdict, retry_after_ms } => {
            let limit = verdict.limit.unwrap_or(0);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "plan {} allows {limit} {} of {} per {}; retry in {retry_after_ms} ms",
                    verdict.plan,
                    if limit == 1 { "use" } else { "uses" },
                    verdict.feature,
                    window_text(verdict.window_secs.unwrap_or(0)),
                ),
            )
            .with("user_id", verdict.user_id.as_str())
            .with("feature", verdict.feature.as_str())
            .with("plan", verdict.plan.as_str())
            .with("limit", verdict.limit)
            .with("window_secs", verdict.window_secs)
            .with("retry_after_ms", *retry_after_ms)
            .with_header(header::RETRY_AFTER, &retry_after_ms.div_ceil(1000).max(1).to_string())
        }
    };
    let mut rendered = idempotency::refused(&error);
    rendered.headers.extend(quota_headers);
    rendered
}

/// The `outcome` label of `tally_feature_use_total`.
pub(super) fn outcome_label(answered: &Answered<UseOutcome>) -> &'static str {
    match answered {
        Answered::Fresh { value: UseOutcome::Allowed(_), .. } => "allowed",
        Answered::Fresh { value: UseOutcome::NotInPlan(_), .. } => "not_in_plan",
        Answered::Fresh { value: UseOutcome::RateLimited { .. }, .. } => "rate_limited",
        Answered::Replayed(_) => "replayed",
    }
}

/// Queues the use; the answer is awaited once its group commits (no thread waits for it).
pub fn use_feature(ctx: &mut Ctx<'_>) -> Result<Later, ApiError> {
    let body: FeatureBody = ctx.json_body()?;
    let rules: Arc<Rules> = Arc::clone(&ctx.app.rules);
    let user_id = validate(&rules, &body)?;
    let once = idempotency::once(ctx, &[&"feature_use", &user_id, &body.feature])?;
    let now_ms = now_ms();
    let feature_name = body.feature.clone();
    let render = Arc::new(render_use);
    let write = app::usage::use_feature(&ctx.app.store, &rules, user_id, body.feature, once, now_ms, render);
    let metrics = Arc::clone(&ctx.app.metrics);
    Ok(Box::pin(async move {
        let answered = write.answer().await?;
        let outcome = outcome_label(&answered);
        metrics.feature_use.get_or_create(&FeatureLabels { feature: feature_name, outcome }).inc();
        Ok(idempotency::into_response(answered))
    }))
}

#[cfg(test)]
mod tests {
    use super::window_text;

    #[test]
    fn windows_read_as_words() {
        assert_eq!(window_text(60), "minute");
        assert_eq!(window_text(3600), "hour");
        assert_eq!(window_text(90), "90 seconds");
        assert_eq!(window_text(1), "second");
    }
}
