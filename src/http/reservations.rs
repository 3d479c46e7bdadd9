//! `POST /v1/reservations`, `.../{id}/commit` and `.../{id}/release`: the request bodies,
//! their validation and the answers. The decisions are domain::reservation's.

use super::error::ApiError;
use super::idempotency::{self, Rendered};
use super::request::{present, present_whole};
use super::usage::{Valid, render_track, validate};
use super::users::rfc3339;
use super::{Ctx, Later, now_ms, ratelimit};
use crate::app;
use crate::app::idempotency::Once;
use crate::app::reservations::{Close, DEFAULT_TTL_SECS, MAX_TTL_SECS};
use crate::domain::Rules;
use crate::domain::period::Period;
use crate::domain::ports::{ReservationRecord, ReservationState};
use crate::domain::quota::Quota;
use crate::domain::reservation::{CloseOutcome, Commit, NotOpen, ReserveOutcome};
use crate::domain::usage::{AMOUNT_MAX, TrackOutcome, Verdict};
use ::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    user_id: String,
    metric: String,
    #[serde(default, deserialize_with = "present_whole")]
    amount: Option<u64>,
    #[serde(default, deserialize_with = "present_whole")]
    ttl_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    #[serde(default, deserialize_with = "present_whole")]
    amount: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    enforce: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {}

/// Every reservation answer: the reservation, and the counter it holds on as it stands after
/// the request (`remaining = limit - used - reserved`).
#[derive(Serialize)]
struct ReservationJson<'r> {
    reservation_id: &'r str,
    user_id: &'r str,
    metric: &'r str,
    amount: u64,
    expires_at: String,
    state: &'static str,
    /// What the commit recorded; null until committed.
    committed: Option<u64>,
    used: u64,
    reserved: u64,
    limit: Option<u64>,
    remaining: Option<u64>,
    period: Period,
    /// The account whose pool holds it; null on one's own.
    account_id: Option<&'r str>,
}

fn reservation_json<'r>(reservation: &'r ReservationRecord, verdict: &'r Verdict) -> ReservationJson<'r> {
    ReservationJson {
        reservation_id: &reservation.reservation_id,
        user_id: &reservation.user_id,
        metric: &reservation.metric,
        amount: reservation.amount,
        expires_at: rfc3339(reservation.expires_at_ms),
        state: reservation.state.as_str(),
        committed: reservation.committed,
        used: verdict.standing.used,
        reserved: verdict.standing.reserved,
        limit: verdict.standing.limit,
        remaining: verdict.standing.remaining,
        period: reservation.period,
        account_id: verdict.account_id.as_deref(),
    }
}

/// An answer with a body and the RateLimit headers of `verdict`'s metric.
fn rendered(status: StatusCode, body: serde_json::Result<String>, verdict: &Verdict, now_ms: i64) -> Rendered {
    let mut rendered = idempotency::allowed(body, "reservation");
    if rendered.status == StatusCode::OK.as_u16() {
        rendered.status = status.as_u16();
    }
    let quotas: Vec<Quota> = Quota::of_metric(verdict, now_ms).into_iter().collect();
    rendered.headers.extend(ratelimit::pairs(&quotas));
    rendered
}

fn tracking_disabled() -> Rendered {
    idempotency::refused(&ApiError::new(
        StatusCode::CONFLICT,
        "tracking_disabled",
        "tracking is switched off ([usage] tracking_enabled = false): nothing can be reserved or committed",
    ))
}

/// A track's refusal (429 with the limit's numbers, or 422 for an overflow) as the answer.
fn not_done(outcome: &TrackOutcome, reservation_id: Option<&str>, now_ms: i64) -> Rendered {
    if let TrackOutcome::NotTracked { .. } = outcome {
        return tracking_disabled();
    }
    let mut rendered = render_track(outcome, now_ms);
    // The refusal names the reservation, which stays open.
    if let Some(reservation_id) = reservation_id
        && let Ok(mut body) = serde_json::from_str::<serde_json::Value>(&rendered.body)
        && let Some(error) = body.get_mut("error").and_then(serde_json::Value::as_object_mut)
    {
        error.insert("reservation_id".into(), reservation_id.into());
        rendered.body = body.to_string();
    }
    rendered
}

fn render_reserve(outcome: &ReserveOutcome, now_ms: i64) -> Rendered {
    match outcome {
        ReserveOutcome::Held { reservation, verdict } => {
            let body = serde_json::to_string(&reservation_json(reservation, verdict));
            rendered(StatusCode::CREATED, body, verdict, now_ms)
        }
        ReserveOutcome::NotHeld(outcome) => not_done(outcome, None, now_ms),
    }
}

fn render_close(outcome: &CloseOutcome, now_ms: i64) -> Rendered {
    match outcome {
        CloseOutcome::Closed { reservation, verdict } => {
            let body = serde_json::to_string(&reservation_json(reservation, verdict));
            rendered(StatusCode::OK, body, verdict, now_ms)
        }
        CloseOutcome::NotCommitted { reservation, outcome } => {
            not_done(outcome, Some(&reservation.reservation_id), now_ms)
        }
        CloseOutcome::Refused(closed) => idempotency::refused(&closed_error(closed)),
    }
}

fn closed_error(closed: &NotOpen) -> ApiError {
    match closed {
        NotOpen::NotFound => ApiError::new(StatusCode::NOT_FOUND, "reservation_not_found", "no such reservation"),
        NotOpen::Closed(reservation) => {
            let state = reservation.state.as_str();
            ApiError::new(StatusCode::CONFLICT, "reservation_closed", format!("the reservation is already {state}"))
                .with("reservation_id", reservation.reservation_id.as_str())
                .with("state", state)
                .with("committed", reservation.committed)
        }
        NotOpen::Expired(reservation) => ApiError::new(
            StatusCode::GONE,
            "reservation_expired",
            format!("the reservation expired at {}; its hold is freed", rfc3339(reservation.expires_at_ms)),
        )
        .with("reservation_id", reservation.reservation_id.as_str())
        .with("expires_at", rfc3339(reservation.expires_at_ms))
        .with("state", ReservationState::Expired.as_str()),
    }
}

/// The reservation id of the path, refused before anything is read when it cannot be one.
fn reservation_id(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let id = ctx.params.first().cloned().unwrap_or_default();
    let well_formed = id.len() <= 64
        && id
            .strip_prefix("res_")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|byte| byte.is_ascii_alphanumeric()));
    if !well_formed {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "reservation_not_found", format!("no reservation {id:?}")));
    }
    Ok(id)
}

pub fn reserve(ctx: &mut Ctx<'_>) -> Result<Later, ApiError> {
    let body: ReserveBody = ctx.json_body()?;
    let now_ms = now_ms();
    let rules: Arc<Rules> = Arc::clone(&ctx.app.rules);
    let ttl_secs = body.ttl_secs.unwrap_or(u64::from(DEFAULT_TTL_SECS));
    if !(1..=u64::from(MAX_TTL_SECS)).contains(&ttl_secs) {
        return Err(ApiError::invalid(format!("ttl_secs must be an integer from 1 to {MAX_TTL_SECS}, got {ttl_secs}")));
    }
    let ttl_secs = ttl_secs as u32;
    let Valid { query, .. } = validate(&rules, body.user_id, body.metric, body.amount, None, now_ms)?;
    let once = idempotency::once(ctx, &[&"reserve", &query.user_id, &query.metric, &query.amount, &ttl_secs])?;
    let render = Arc::new(move |outcome: &ReserveOutcome| render_reserve(outcome, now_ms));
    let write = app::reservations::reserve(&ctx.app.store, &rules, query, ttl_secs, once, now_ms, render);
    Ok(Box::pin(async move { Ok(idempotency::into_response(write.answer().await?)) }))
}

pub fn commit(ctx: &mut Ctx<'_>) -> Result<Later, ApiError> {
    let id = reservation_id(ctx)?;
    let body: CommitBody = ctx.json_body()?;
    if let Some(amount) = body.amount
        && amount > AMOUNT_MAX
    {
        return Err(ApiError::invalid(format!("amount must be an integer from 0 to {AMOUNT_MAX}, got {amount}")));
    }
    let enforce = body.enforce.unwrap_or(true);
    let amount_part = body.amount.map_or_else(String::new, |amount| amount.to_string());
    let once = idempotency::once(ctx, &[&"commit", &id, &amount_part, &enforce])?;
    closing(ctx, id, Close::Commit(Commit { amount: body.amount, enforce }), once)
}

pub fn release(ctx: &mut Ctx<'_>) -> Result<Later, ApiError> {
    let id = reservation_id(ctx)?;
    let _: ReleaseBody = ctx.json_body()?;
    let once = idempotency::once(ctx, &[&"release", &id])?;
    closing(ctx, id, Close::Release, once)
}

/// Queues the commit or release; the answer is awaited once its group commits.
fn closing(ctx: &Ctx<'_>, id: String, close: Close, once: Option<Once>) -> Result<Later, ApiError> {
    let now_ms = now_ms();
    let render = Arc::new(move |outcome: &CloseOutcome| render_close(outcome, now_ms));
    let rules = Arc::clone(&ctx.app.rules);
    // A read first (whose reservation it is), so it may block.
    let write = super::may_block(|| app::reservations::close(&ctx.app.store, &rules, id, close, once, now_ms, render))?;
    Ok(Box::pin(async move { Ok(idempotency::into_response(write.answer().await?)) }))
}
