//! Monitoring routes: `GET /metrics` (Prometheus), `GET /v1/admin/events`, and the webhook
//! outbox's deliveries with their manual retry.

use super::admin::{Params, count_param};
use super::error::ApiError;
use super::users::rfc3339;
use super::webhooks::event_json;
use super::{Ctx, json_response, now_ms};
use crate::domain::events::EventType;
use crate::domain::ports::{DeliveryRecord, EventQuery};
use crate::http::Body;
use crate::metrics::Format;
use ::http::{HeaderValue, Response, StatusCode, header};
use chrono::DateTime;
use serde_json::{Value, json};

pub fn metrics(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let metrics = &ctx.app.metrics;
    metrics.writer_queue_depth.set(ctx.app.store.queue_depth() as i64);
    if let Some(bytes) = ctx.app.store.size_bytes() {
        metrics.database_bytes.set(bytes);
    }
    let accept = ctx.request.headers().get(header::ACCEPT).and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    let mut response = Response::new(Body::from(metrics.encode(format)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    // A cache in front must not hand one format's answer to a client that asked for the other.
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    Ok(response)
}

fn since_param(params: &Params) -> Result<Option<i64>, ApiError> {
    params
        .get("since")
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|since| since.timestamp_millis())
                .map_err(|_| ApiError::invalid(format!("since must be an RFC 3339 timestamp, got {text:?}")))
        })
        .transpose()
}

/// `GET /v1/admin/events?type=&user_id=&since=&limit=&after=ID`, oldest first.
pub fn events(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let params = &ctx.query;
    let kind = match params.get("type") {
        Some(kind) => Some(kind.parse::<EventType>().map_err(ApiError::invalid)?.as_str().to_owned()),
        None => None,
    };
    let limit = count_param(params, "limit", 100, 1, 1000)?;
    let since_ms = since_param(params)?;
    let after = params.get("after").cloned();
    let user_id = params.get("user_id").cloned();
    if let Some(user_id) = &user_id
        && !user_id.starts_with("sha256:")
    {
        crate::domain::user_id::validate_user_id(user_id).map_err(ApiError::invalid)?;
    }
    let query = EventQuery { kind, user_id, since_ms, after_seq: None, limit };
    let events = crate::app::events::events(&ctx.app.store, query, after.as_deref())?;
    let next_after = if events.len() as u32 == limit { events.last().map(|event| event.id.clone()) } else { None };
    let events: Vec<Value> = events.iter().map(event_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "events": events, "next_after": next_after })))
}

fn delivery_json(delivery: &DeliveryRecord) -> Value {
    json!({
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": (delivery.status == "pending").then(|| rfc3339(delivery.next_attempt_at_ms)),
        "last_error": delivery.last_error,
        "created_at": rfc3339(delivery.created_at_ms),
        "updated_at": rfc3339(delivery.updated_at_ms),
    })
}

/// `GET /v1/admin/webhooks/deliveries?status=pending|delivered|failed&limit=&before=`.
pub fn deliveries(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let params = &ctx.query;
    let status = match params.get("status").map(String::as_str) {
        None => None,
        Some(status @ ("pending" | "delivered" | "failed")) => Some(status.to_owned()),
        Some(other) => {
            return Err(ApiError::invalid(format!("status must be pending, delivered or failed, got {other:?}")));
        }
    };
    let limit = count_param(params, "limit", 50, 1, 500)?;
    let before = match params.get("before") {
        None => None,
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ApiError::invalid(format!("before must be a delivery id, got {text:?}")))?,
        ),
    };
    let rows = crate::app::events::deliveries(&ctx.app.store, status.as_deref(), limit, before)?;
    let next_before = if rows.len() as u32 == limit { rows.last().map(|row| row.id) } else { None };
    let deliveries: Vec<Value> = rows.iter().map(delivery_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "deliveries": deliveries, "next_before": next_before })))
}

fn delivery_id_param(ctx: &Ctx<'_>) -> Result<i64, ApiError> {
    let id_text = ctx.params.first().cloned().unwrap_or_default();
    id_text
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::invalid(format!("{id_text:?} is not a delivery id")))
}

/// `GET /v1/admin/webhooks/deliveries/{id}`: one delivery with the history of its failed
/// attempts (`last_error` is cleared by a success; the history keeps every error).
pub fn delivery(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let id = delivery_id_param(ctx)?;
    let (delivery, errors) = crate::app::events::delivery(&ctx.app.store, id)?;
    let mut view = delivery_json(&delivery);
    let errors: Vec<Value> = errors
        .iter()
        .map(|error| json!({ "attempt": error.attempt, "at": rfc3339(error.at_ms), "error": error.error }))
        .collect();
    view["failed_attempts"] = Value::Array(errors);
    Ok(json_response(StatusCode::OK, &view))
}

/// `POST /v1/admin/webhooks/deliveries/{id}/retry`: a failed delivery goes back in the queue.
pub fn retry(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let id = delivery_id_param(ctx)?;
    let now_ms = now_ms();
    crate::app::events::retry_delivery(&ctx.app.store, id, now_ms)?;
    Ok(json_response(StatusCode::OK, &json!({ "id": id, "status": "pending" })))
}
