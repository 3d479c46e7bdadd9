//! `POST /v1/track/batch`: up to 1,000 tracks in one request, as Tally's own JSON
//! (`{"events": [...]}`) or as CloudEvents the way OpenMeter ingests them (one event as
//! `application/cloudevents+json`, an array as `application/cloudevents-batch+json`). Each
//! event is validated and answered on its own, exactly as `POST /v1/track` would answer it;
//! the valid ones are tracked in input order by one writer job (`app::usage::track_batch`).

use super::error::ApiError;
use super::idempotency::{Answered, IDEMPOTENCY_KEY};
use super::request::{self, CLOUDEVENT, CLOUDEVENTS_BATCH, present, present_whole};
use super::usage::{Valid, once, outcome_label, render_track, validate};
use super::{Ctx, Later, now_ms, raw_json_response};
use crate::app::AppError;
use crate::app::usage::{BatchTrack, track_batch};
use crate::domain::Rules;
use crate::domain::usage::TrackOutcome;
use crate::metrics::TrackLabels;
use ::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::sync::Arc;

/// Events one request may carry.
pub const MAX_EVENTS: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    /// Kept as JSON values so that a malformed event is refused alone.
    events: Vec<Value>,
}

/// One event of Tally's own batch: a track body plus its idempotency key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackEvent {
    user_id: String,
    metric: String,
    #[serde(default, deserialize_with = "present_whole")]
    amount: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    timestamp: Option<String>,
    #[serde(default, deserialize_with = "present")]
    enforce: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    idempotency_key: Option<String>,
}

/// A CloudEvents 1.0 event in structured mode, as OpenMeter reads one. Extension attributes
/// are allowed (and ignored), as the spec requires.
#[derive(Deserialize)]
struct CloudEvent {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    data: Option<Value>,
}

/// An event as a track: what `POST /v1/track` would be sent, and the key it would carry.
struct Event {
    user_id: String,
    metric: String,
    amount: Option<u64>,
    timestamp: Option<String>,
    enforce: bool,
    key: Option<String>,
}

fn from_track_event(value: Value) -> Result<Event, ApiError> {
    let event: TrackEvent =
        serde_json::from_value(value).map_err(|error| ApiError::invalid(format!("invalid event: {error}")))?;
    Ok(Event {
        user_id: event.user_id,
        metric: event.metric,
        amount: event.amount,
        timestamp: event.timestamp,
        enforce: event.enforce.unwrap_or(true),
        key: event.idempotency_key,
    })
}

/// `data.amount` or `data.value`: a whole number, or a string of one (OpenMeter sends
/// either); absent: 1.
fn cloud_amount(data: Option<&Value>) -> Result<Option<u64>, ApiError> {
    let Some(data) = data else {
        return Ok(None);
    };
    let Some(fields) = data.as_object() else {
        return Err(ApiError::invalid("data must be a JSON object"));
    };
    let Some(amount) = fields.get("amount").or_else(|| fields.get("value")) else {
        return Ok(None);
    };
    let parsed = match amount {
        Value::String(text) => text.trim().parse::<u64>().ok(),
        other => request::whole(other).ok(),
    };
    parsed
        .map(Some)
        .ok_or_else(|| ApiError::invalid(format!("data.amount (or data.value) must be a whole number, got {amount}")))
}

fn from_cloud_event(value: Value) -> Result<Event, ApiError> {
    let event: CloudEvent = serde_json::from_value(value).map_err(|error| {
        ApiError::invalid(format!("invalid CloudEvent (specversion, id, source and type are required): {error}"))
    })?;
    if event.specversion != "1.0" {
        return Err(ApiError::invalid(format!("specversion must be \"1.0\", got {:?}", event.specversion)));
    }
    let Some(user_id) = event.subject else {
        return Err(ApiError::invalid("subject (the user id) is required"));
    };
    // `source` + `id` identify an event; hashed, any length and characters make a key.
    let mut hasher = Sha256::new();
    hasher.update(event.source.as_bytes());
    hasher.update([0]);
    hasher.update(event.id.as_bytes());
    let mut key = String::from("cloudevents:");
    for byte in hasher.finalize() {
        write!(key, "{byte:02x}").expect("formatting into a String cannot fail");
    }
    Ok(Event {
        user_id,
        metric: event.kind,
        amount: cloud_amount(event.data.as_ref())?,
        timestamp: event.time,
        enforce: true,
        key: Some(key),
    })
}

/// How one event of the body becomes a track.
type ParseEvent = fn(Value) -> Result<Event, ApiError>;

/// The body's events, each one parsed or refused alone; the whole request is refused only
/// when it is not a list of 1 to 1,000 events.
fn events(ctx: &Ctx<'_>) -> Result<Vec<Result<Event, ApiError>>, ApiError> {
    let invalid = |error: serde_json::Error| ApiError::invalid(format!("invalid JSON body: {error}"));
    let (values, parse): (Vec<Value>, ParseEvent) = if request::is_type(ctx.request, CLOUDEVENTS_BATCH) {
        (serde_json::from_slice(ctx.body).map_err(invalid)?, from_cloud_event)
    } else if request::is_type(ctx.request, CLOUDEVENT) {
        (vec![serde_json::from_slice(ctx.body).map_err(invalid)?], from_cloud_event)
    } else {
        let body: BatchBody = ctx.json_body()?;
        (body.events, from_track_event)
    };
    if values.is_empty() || values.len() > MAX_EVENTS {
        return Err(ApiError::invalid(format!("a batch holds 1 to {MAX_EVENTS} events, got {}", values.len()))
            .with("max_events", MAX_EVENTS));
    }
    // An event that is an object but not a valid one is refused alone; one that is not even
    // an object means the batch itself is malformed.
    if let Some(index) = values.iter().position(|value| !value.is_object()) {
        return Err(ApiError::invalid(format!("event {index} is not a JSON object")).with("index", index));
    }
    Ok(values.into_iter().map(parse).collect())
}

fn validated(rules: &Rules, event: Event, now_ms: i64) -> Result<BatchTrack, ApiError> {
    let valid: Valid = validate(rules, event.user_id, event.metric, event.amount, event.timestamp.as_deref(), now_ms)?;
    let once = once(event.key.as_deref(), &valid, event.enforce)?;
    Ok(BatchTrack { query: valid.query, enforce: event.enforce, once })
}

/// One result: `{"status": N, "body": {...}}`, with `"replayed": true` for a stored answer.
fn push_result(out: &mut String, status: u16, body: &str, replayed: bool) {
    if out.len() > 1 {
        out.push(',');
    }
    // `body` is an answer Tally serialized itself (fresh or stored): valid JSON as it is.
    let replayed = if replayed { ",\"replayed\":true" } else { "" };
    write!(out, "{{\"status\":{status},\"body\":{body}{replayed}}}").expect("formatting into a String cannot fail");
}

/// Validates every event, queues the valid ones as one job, and answers each in input order.
pub fn track_batch_route(ctx: &mut Ctx<'_>) -> Result<Later, ApiError> {
    if ctx.request.headers().contains_key(IDEMPOTENCY_KEY) {
        return Err(ApiError::invalid(
            "a batch takes no Idempotency-Key header: give each event its own idempotency_key (a CloudEvent's source and id are its key)",
        ));
    }
    let now_ms = now_ms();
    let rules: Arc<Rules> = Arc::clone(&ctx.app.rules);
    // Each slot: the event's refusal, or the index of its track in the job.
    let mut slots: Vec<Result<usize, ApiError>> = Vec::new();
    let mut tracks = Vec::new();
    for event in events(ctx)? {
        slots.push(event.and_then(|event| validated(&rules, event, now_ms)).map(|track| {
            tracks.push(track);
            tracks.len() - 1
        }));
    }
    let metrics: Vec<String> = tracks.iter().map(|track| track.query.metric.clone()).collect();
    let render = Arc::new(move |outcome: &TrackOutcome| render_track(outcome, now_ms));
    let write = (!tracks.is_empty()).then(|| track_batch(&ctx.app.store, &rules, tracks, now_ms, render));
    let counters = Arc::clone(&ctx.app.metrics);
    Ok(Box::pin(async move {
        let answers = match write {
            Some(write) => write.answer().await?,
            None => Vec::new(),
        };
        let mut answers: Vec<Option<Result<Answered<TrackOutcome>, AppError>>> =
            answers.into_iter().map(Some).collect();
        let mut out = String::from("[");
        for slot in slots {
            let answer = match slot {
                Err(error) => Err(error),
                Ok(index) => {
                    let answer = answers[index].take().expect("each track is answered once");
                    if let Ok(answered) = &answer {
                        let labels = TrackLabels { metric: metrics[index].clone(), outcome: outcome_label(answered) };
                        counters.track.get_or_create(&labels).inc();
                    }
                    answer.map_err(ApiError::from)
                }
            };
            match answer {
                Ok(Answered::Fresh { answer, .. }) => push_result(&mut out, answer.status, &answer.body, false),
                Ok(Answered::Replayed(answer)) => push_result(&mut out, answer.status, &answer.body, true),
                Err(error) => push_result(&mut out, error.status().as_u16(), &error.body().to_string(), false),
            }
        }
        out.push(']');
        let body = format!("{{\"results\":{out}}}");
        Ok(raw_json_response(StatusCode::OK, body.into_bytes()))
    }))
}
