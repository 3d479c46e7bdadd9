//! `POST /v1/check` and `POST /v1/track`: the request bodies, their validation, and the JSON
//! of a verdict. The decisions themselves are domain::usage's.

use super::error::ApiError;
use super::idempotency::{self, Answered, Rendered};
use super::request::{present, present_whole};
use super::{Ctx, Later, json_response, now_ms, ratelimit};
use crate::app;
use crate::app::idempotency::Once;
use crate::domain::Rules;
use crate::domain::period::Period;
use crate::domain::quota::Quota;
use crate::domain::usage::{self, AMOUNT_MAX, TrackOutcome, UsageQuery, Verdict};
use crate::domain::user_id::UserId;
use crate::http::Body;
use crate::metrics::TrackLabels;
use ::http::{Response, StatusCode};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::sync::Arc;

/// How far ahead of the server's clock a timestamp may be.
const FUTURE_TOLERANCE_MS: i64 = 5 * 60 * 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    user_id: String,
    metric: String,
    #[serde(default, deserialize_with = "present_whole")]
    amount: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackBody {
    user_id: String,
    metric: String,
    #[serde(default, deserialize_with = "present_whole")]
    amount: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    timestamp: Option<String>,
    #[serde(default, deserialize_with = "present")]
    enforce: Option<bool>,
}

/// A validated query plus the instant it is about, for fingerprints.
pub(super) struct Valid {
    pub query: UsageQuery,
    pub at_ms: Option<i64>,
}

pub(super) fn validate(
    rules: &Rules,
    user_id: String,
    metric: String,
    amount: Option<u64>,
    timestamp: Option<&str>,
    now_ms: i64,
) -> Result<Valid, ApiError> {
    let user_id = UserId::parse(user_id).map_err(ApiError::invalid)?;
    crate::app::check_metric(rules, &metric)?;
    let amount = amount.unwrap_or(1);
    if !(1..=AMOUNT_MAX).contains(&amount) {
        return Err(ApiError::invalid(format!("amount must be an integer from 1 to {AMOUNT_MAX}, got {amount}")));
    }
    let at_ms = timestamp.map(timestamp_ms).transpose()?;
    let current = Period::of_unix_ms(now_ms);
    let period = match at_ms {
        None => current,
        Some(at_ms) if at_ms > now_ms + FUTURE_TOLERANCE_MS => {
            return Err(ApiError::invalid("timestamp is more than 5 minutes ahead of the server's clock"));
        }
        Some(at_ms) => {
            let period = Period::of_unix_ms(at_ms);
            let oldest = current.oldest_kept(rules.retention_months);
            if period < oldest {
                return Err(ApiError::invalid(format!(
                    "timestamp falls in {period}, before the oldest period kept ({oldest}, retention_months = {})",
                    rules.retention_months
                )));
            }
            period
        }
    };
    Ok(Valid { query: UsageQuery { user_id, metric, amount, period }, at_ms })
}

/// An RFC 3339 timestamp as unix milliseconds. Before 1970 is refused (periods are computed
/// from non-negative milliseconds). A leap second (`23:59:60`, which chrono holds as second 59
/// with a nanosecond part of a second or more) stays in its own minute: clamped to `:59.999`,
/// so on a month's last day it counts in that month, not the next.
fn timestamp_ms(text: &str) -> Result<i64, ApiError> {
    let at = DateTime::parse_from_rfc3339(text).map_err(|error| {
        ApiError::invalid(format!("timestamp {text:?} is not RFC 3339 ({error}); e.g. 2026-11-27T12:00:00Z"))
    })?;
    let millis = i64::from(at.timestamp_subsec_nanos().min(999_999_999) / 1_000_000);
    let at_ms = at.timestamp().saturating_mul(1000).saturating_add(millis);
    if at_ms < 0 {
        return Err(ApiError::invalid(format!("timestamp {text:?} is before 1970-01-01T00:00:00Z")));
    }
    Ok(at_ms)
}

#[derive(Serialize)]
struct VerdictJson<'v> {
    allowed: bool,
    user_id: &'v str,
    plan: &'v str,
    metric: &'v str,
    period: Period,
    used: u64,
    /// Held by open reservations: counts against the limit like `used`.
    reserved: u64,
    amount: u64,
    limit: Option<u64>,
    remaining: Option<u64>,
    enforcement: crate::domain::plan::Enforcement,
    over_soft_limit: bool,
    bypass: bool,
    /// The account whose pool `used`, `limit` and `remaining` are; null on one's own.
    account_id: Option<&'v str>,
    /// The user's own counter.
    user_used: u64,
}

impl<'v> From<&'v Verdict> for VerdictJson<'v> {
    fn from(verdict: &'v Verdict) -> Self {
        VerdictJson {
            allowed: verdict.allowed,
            user_id: &verdict.user_id,
            plan: &verdict.plan,
            metric: &verdict.metric,
            period: verdict.period,
            used: verdict.standing.used,
            reserved: verdict.standing.reserved,
            amount: verdict.amount,
            limit: verdict.standing.limit,
            remaining: verdict.standing.remaining,
            enforcement: verdict.standing.enforcement,
            over_soft_limit: verdict.standing.over_soft_limit,
            bypass: verdict.bypass,
            account_id: verdict.account_id.as_deref(),
            user_used: verdict.user_used,
        }
    }
}

#[derive(Serialize)]
struct TrackJson<'v> {
    recorded: bool,
    enforced: bool,
    tracking_enabled: bool,
    #[serde(flatten)]
    verdict: VerdictJson<'v>,
}

pub fn check(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let body: CheckBody = ctx.json_body()?;
    let rules = &ctx.app.rules;
    let now_ms = now_ms();
    let valid = validate(rules, body.user_id, body.metric, body.amount, body.timestamp.as_deref(), now_ms)?;
    let verdict = app::usage::check(&ctx.app.store, rules, &valid.query, now_ms)?;
    let mut response = json_response(StatusCode::OK, &VerdictJson::from(&verdict));
    let quotas: Vec<Quota> = Quota::of_metric(&verdict, now_ms).into_iter().collect();
    ratelimit::insert(response.headers_mut(), &quotas);
    Ok(response)
}

/// The track answer at `now_ms` (the RateLimit headers count down to the period's end).
pub(super) fn render_track(outcome: &TrackOutcome, now_ms: i64) -> Rendered {
    let verdict = match outcome {
        TrackOutcome::Recorded { verdict, .. }
        | TrackOutcome::NotTracked { verdict }
        | TrackOutcome::Refused { verdict, .. }
        | TrackOutcome::Overflow { verdict } => verdict,
    };
    let quotas: Vec<Quota> = Quota::of_metric(verdict, now_ms).into_iter().collect();
    let headers = ratelimit::pairs(&quotas);
    let track_json = |verdict, recorded, enforced| TrackJson {
        recorded,
        enforced,
        tracking_enabled: !matches!(outcome, TrackOutcome::NotTracked { .. }),
        verdict,
    };
    let body = match outcome {
        TrackOutcome::Recorded { verdict, enforced } => {
            serde_json::to_string(&track_json(verdict.into(), true, *enforced))
        }
        TrackOutcome::NotTracked { verdict } => serde_json::to_string(&track_json(verdict.into(), false, true)),
        TrackOutcome::Refused { verdict, upgrade_to, scope } => {
            let standing = &verdict.standing;
            let whose = match &verdict.account_id {
                Some(account_id) => format!("account {account_id}'s plan"),
                None => "plan".to_owned(),
            };
            let error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "limit_exceeded",
                format!(
                    "{whose} {} allows {} {} per month; {} used",
                    verdict.plan,
                    standing.limit.unwrap_or(0),
                    verdict.metric,
                    standing.used
                ),
            )
            .with("user_id", verdict.user_id.as_str())
            .with("metric", verdict.metric.as_str())
            .with("period", verdict.period.to_string())
            .with("plan", verdict.plan.as_str())
            .with("used", standing.used)
            .with("reserved", standing.reserved)
            .with("amount", verdict.amount)
            .with("limit", standing.limit)
            .with("remaining", standing.remaining)
            .with("upgrade_to", upgrade_to.clone())
            .with("scope", scope.as_str())
            .with("account_id", verdict.account_id.clone())
            .with("user_used", verdict.user_used);
            let mut rendered = idempotency::refused(&error);
            rendered.headers.extend(headers);
            return rendered;
        }
        TrackOutcome::Overflow { verdict } => {
            let error = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "counter_overflow",
                format!("the {} counter cannot grow past {}", verdict.metric, usage::COUNTER_MAX),
            )
            .with("metric", verdict.metric.as_str())
            .with("used", verdict.standing.used);
            let mut rendered = idempotency::refused(&error);
            rendered.headers.extend(headers);
            return rendered;
        }
    };
    let mut rendered = idempotency::allowed(body, "track");
    rendered.headers.extend(headers);
    rendered
}

/// The key a track is sent under, if any, and the fingerprint of what it asks: a batch
/// event with the same key and fields is the same request.
pub(super) fn once(key: Option<&str>, valid: &Valid, enforce: bool) -> Result<Option<Once>, ApiError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let query = &valid.query;
    let at: &dyn Display = match &valid.at_ms {
        Some(at_ms) => at_ms,
        None => &"",
    };
    Ok(Some(Once::new(key, &[&"track", &query.user_id, &query.metric, &query.amount, at, &enforce])?))
}

/// The `outcome` label of `tally_track_total`.
pub(super) fn outcome_label(answered: &Answered<TrackOutcome>) -> &'static str {
    match answered {
        Answered::Fresh { value: TrackOutcome::Recorded { .. }, .. } => "recorded",
        Answered::Fresh { value: TrackOutcome::Refused { .. }, .. } => "limit_exceeded",
        Answered::Fresh { value: TrackOutcome::Overflow { .. }, .. } => "overflow",
        Answered::Fresh { value: TrackOutcome::NotTracked { .. }, .. } => "not_tracked",
        Answered::Replayed(_) => "replayed",
    }
}

/// Queues the track; the answer is awaited once its group commits (no thread waits for it).
pub fn track(ctx: &mut Ctx<'_>) -> Result<Later, ApiError> {
    let body: TrackBody = ctx.json_body()?;
    let now_ms = now_ms();
    let rules: Arc<Rules> = Arc::clone(&ctx.app.rules);
    let enforce = body.enforce.unwrap_or(true);
    let valid = validate(&rules, body.user_id, body.metric, body.amount, body.timestamp.as_deref(), now_ms)?;
    let key = super::request::header_text(ctx.request, &idempotency::IDEMPOTENCY_KEY)?;
    let once = once(key, &valid, enforce)?;
    let query = valid.query;
    let metric = query.metric.clone();
    let render = Arc::new(move |outcome: &TrackOutcome| render_track(outcome, now_ms));
    let write = app::usage::track(&ctx.app.store, &rules, query, enforce, once, now_ms, render);
    let metrics = Arc::clone(&ctx.app.metrics);
    Ok(Box::pin(async move {
        let answered = write.answer().await?;
        metrics.track.get_or_create(&TrackLabels { metric, outcome: outcome_label(&answered) }).inc();
        Ok(idempotency::into_response(answered))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leap_second_counts_in_its_own_month() {
        let at_ms = timestamp_ms("2016-12-31T23:59:60Z").unwrap();
        assert_eq!(Period::of_unix_ms(at_ms).to_string(), "2016-12");
        assert_eq!(at_ms, timestamp_ms("2016-12-31T23:59:59.999Z").unwrap());
        let offset = timestamp_ms("2017-01-01T00:59:60+01:00").unwrap();
        assert_eq!(Period::of_unix_ms(offset).to_string(), "2016-12");
    }

    #[test]
    fn timestamps_before_1970_are_refused() {
        let error = timestamp_ms("1969-12-31T23:59:59Z").unwrap_err();
        assert!(error.message().contains("1970"), "{}", error.message());
        assert!(timestamp_ms("1969-12-31T23:59:59.999Z").is_err());
        assert_eq!(timestamp_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(timestamp_ms("1970-01-01T01:00:00+01:00").unwrap(), 0);
    }
}
