//! `GET /v1/admin/users/{id}/export` and the dashboard's download: everything held about a
//! user, streamed in bounded memory as one JSON document, or as NDJSON (one record a line)
//! with `Accept: application/x-ndjson`. The small parts (the user, counters, feature uses,
//! stored answers, audit rows, alert marks, refusal counts) are read first, so an unknown
//! user is a 404; then a thread writes them and pages through the user's events, however
//! many, a page at a time, while the socket takes the chunks. Events recorded during the
//! export may or may not be in it.

use super::body::{Body, BodySender};
use super::error::ApiError;
use super::users::rfc3339;
use super::webhooks::event_json;
use super::{Ctx, now_ms};
use crate::app::admin::{self as ops, UserTerms};
use crate::domain::ports::{EventQuery, Store, UserExport, UserRecord};
use crate::domain::terms::{feature_json, limit_json};
use crate::domain::user_id::UserId;
use ::http::{HeaderValue, Response, StatusCode, header};
use bytes::Bytes;
use serde_json::{Value, json};

/// Events read per page.
const EVENTS_PER_PAGE: u32 = 1_000;

/// The buffer is handed to the socket once it holds this much.
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
}

impl Format {
    /// NDJSON when the client's `Accept` names it, else one JSON document.
    pub fn accepted(ctx: &Ctx<'_>) -> Format {
        if super::request::accepts(ctx.request, "application/x-ndjson") { Format::Ndjson } else { Format::Json }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
        }
    }
}

/// The streamed export of `user_id`, or the error (404 for an unknown user) before anything
/// is sent.
pub fn response(ctx: &Ctx<'_>, user_id: &UserId, format: Format) -> Result<Response<Body>, ApiError> {
    let (user, export, terms) = ops::export(&ctx.app.store, user_id)?;
    let (sender, body) = Body::channel();
    let store = Store::clone(&ctx.app.store);
    std::thread::Builder::new()
        .name("tally-export".into())
        .spawn(move || produce(&store, &user, &export, &terms, Writer::new(sender, format)))
        .map_err(|error| {
            log::error!("cannot start the export thread: {error}");
            ApiError::internal()
        })?;
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    Ok(response)
}

/// Writes the export, then pages through the events; stops when the client goes.
fn produce(store: &Store, user: &UserRecord, export: &UserExport, terms: &UserTerms, mut writer: Writer) {
    let written = write_small_parts(&mut writer, user, export, terms).and_then(|()| {
        writer.section("events")?;
        let mut after_seq = None;
        loop {
            let query = EventQuery {
                user_id: Some(user.user_id.clone()),
                after_seq,
                limit: EVENTS_PER_PAGE,
                ..EventQuery::default()
            };
            let page = store.read(|reader| reader.events(&query)).map_err(Stop::Failed)?;
            for event in &page {
                writer.item("event", &event_json(event))?;
            }
            if (page.len() as u32) < EVENTS_PER_PAGE {
                break;
            }
            after_seq = page.last().map(|event| event.seq);
        }
        writer.finish()
    });
    match written {
        Ok(()) | Err(Stop::Gone) => {}
        Err(Stop::Failed(error)) => {
            log::error!("the export of a user stopped midway: {error}", error = crate::logging::Chain(&error));
            writer.sender.fail(error);
        }
    }
}

fn write_small_parts(
    writer: &mut Writer,
    user: &UserRecord,
    export: &UserExport,
    terms: &UserTerms,
) -> Result<(), Stop> {
    writer.start(&json!({
        "exported_at": rfc3339(now_ms()),
        "user": {
            "uuid": user.uuid,
            "user_id": user.user_id,
            "plan": user.plan,
            "created_at": rfc3339(user.created_at_ms),
            "updated_at": rfc3339(export.updated_at_ms),
            "stripe_customer_id": terms.fields.stripe_customer_id,
            "email": terms.fields.email,
        },
    }))?;
    writer.section("counters")?;
    for counter in &export.counters {
        writer.item(
            "counter",
            &json!({
                "period": counter.period,
                "metric": counter.metric,
                "value": counter.value,
                "created_at": rfc3339(counter.created_at_ms),
                "updated_at": rfc3339(counter.updated_at_ms),
            }),
        )?;
    }
    writer.section("feature_uses")?;
    for (feature, at) in &export.feature_uses {
        writer.item("feature_use", &json!({ "feature": feature, "used_at": rfc3339(*at) }))?;
    }
    writer.section("idempotency_keys")?;
    for (key, status, at) in &export.idempotency_keys {
        writer.item("idempotency_key", &json!({ "key": key, "status": status, "created_at": rfc3339(*at) }))?;
    }
    writer.section("audit")?;
    for record in &export.audit {
        writer.item("audit", &super::admin::audit_json(record))?;
    }
    writer.section("alerts")?;
    for (period, metric, alert) in &export.alerts {
        writer.item("alert", &json!({ "period": period, "metric": metric, "alert": alert }))?;
    }
    writer.section("refusals")?;
    for refusal in &export.refusals {
        let value = json!({
            "period": refusal.period,
            "kind": refusal.kind,
            "subject": refusal.subject,
            "count": refusal.count,
        });
        writer.item("refusal", &value)?;
    }
    // The terms beyond the plan: the override (if any) and the grants, notes included.
    writer.section("overrides")?;
    if let Some(over) = &terms.override_set {
        let limits: serde_json::Map<String, Value> =
            over.limits.iter().map(|(name, limit)| (name.clone(), limit_json(*limit))).collect();
        let features: serde_json::Map<String, Value> =
            over.features.iter().map(|(name, grant)| (name.clone(), feature_json(*grant))).collect();
        let value = json!({
            "limits": limits,
            "features": features,
            "expires_at": over.expires_at_ms.map(rfc3339),
            "note": over.note,
        });
        writer.item("override", &value)?;
    }
    writer.section("grants")?;
    for grant in &terms.grants {
        writer.item("grant", &super::terms::grant_json(grant))?;
    }
    Ok(())
}

/// Why writing stopped early.
enum Stop {
    /// The client went away: nothing more to do.
    Gone,
    /// Reading failed: the answer must end visibly incomplete.
    Failed(crate::domain::ports::StoreError),
}

/// Buffers the output and sends it a chunk at a time. In JSON the document is
/// `{ head fields, "counters": [...], ..., "events": [...] }`; in NDJSON each record is a line
/// `{"kind": ..., "data": ...}`, the first of kind `user`.
struct Writer {
    sender: BodySender,
    format: Format,
    buffer: Vec<u8>,
    /// In JSON: an array is open and has an item already.
    open_array: Option<bool>,
}

impl Writer {
    fn new(sender: BodySender, format: Format) -> Writer {
        Writer { sender, format, buffer: Vec::with_capacity(CHUNK_BYTES * 2), open_array: None }
    }

    fn write_value(&mut self, value: &Value) {
        serde_json::to_writer(&mut self.buffer, value).expect("a JSON value serializes into memory");
    }

    /// The document's head: the object's first fields (JSON) or the `user` line (NDJSON).
    fn start(&mut self, head: &Value) -> Result<(), Stop> {
        match self.format {
            Format::Json => {
                let text = head.to_string();
                // The object's fields without its closing brace: the sections follow.
                let open = text.strip_suffix('}').expect("the head is a JSON object");
                self.buffer.extend_from_slice(open.as_bytes());
            }
            Format::Ndjson => self.item("user", head)?,
        }
        Ok(())
    }

    fn section(&mut self, name: &str) -> Result<(), Stop> {
        if self.format == Format::Json {
            self.close_array();
            self.buffer.extend_from_slice(b",");
            self.write_value(&Value::from(name));
            self.buffer.extend_from_slice(b":[");
            self.open_array = Some(false);
        }
        self.flush_if_full()
    }

    fn item(&mut self, kind: &str, value: &Value) -> Result<(), Stop> {
        match self.format {
            Format::Json => {
                if self.open_array == Some(true) {
                    self.buffer.push(b',');
                }
                self.open_array = Some(true);
                self.write_value(value);
            }
            Format::Ndjson => {
                self.buffer.extend_from_slice(b"{\"kind\":");
                self.write_value(&Value::from(kind));
                self.buffer.extend_from_slice(b",\"data\":");
                self.write_value(value);
                self.buffer.extend_from_slice(b"}\n");
            }
        }
        self.flush_if_full()
    }

    fn close_array(&mut self) {
        if self.open_array.take().is_some() {
            self.buffer.push(b']');
        }
    }

    fn flush_if_full(&mut self) -> Result<(), Stop> {
        if self.buffer.len() >= CHUNK_BYTES { self.flush() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), Stop> {
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES * 2)));
        self.sender.send(chunk).map_err(|_| Stop::Gone)
    }

    fn finish(&mut self) -> Result<(), Stop> {
        if self.format == Format::Json {
            self.close_array();
            self.buffer.extend_from_slice(b"}\n");
        }
        self.flush()
    }
}
