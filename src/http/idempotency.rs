//! `Idempotency-Key`: a write sent again with the same key gets the first answer back and
//! changes nothing. The lookup, the write and the saved answer share one transaction on the
//! writer, so two concurrent requests with one key cannot both write.

use super::error::ApiError;
use super::{App, Ctx, raw_json_response};
use crate::domain::ports::{StoreError, StoredAnswer, WriteTx};
use crate::http::Body;
use ::http::{HeaderName, HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::fmt::{Display, Write};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The `serialize_on` scope of an idempotency key.
const IDEMPOTENCY_SCOPE: &str = "idempotency";

pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A key and the fingerprint of the request it came with.
pub struct Once {
    key: String,
    fingerprint: Vec<u8>,
}

/// The request's key, if it sent one; `parts` describe the request (route and fields) so
/// that the same key with a different request can be told apart. They are formatted only
/// when a key came: a request without one pays nothing here.
pub fn once(ctx: &Ctx<'_>, parts: &[&dyn Display]) -> Result<Option<Once>, ApiError> {
    let Some(key) = super::request::header_text(ctx.request, &IDEMPOTENCY_KEY)? else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|byte| (0x20..=0x7e).contains(&byte)) {
        return Err(ApiError::invalid("Idempotency-Key must be 1 to 255 printable ASCII characters"));
    }
    let mut hasher = Sha256::new();
    let mut text = String::new();
    for part in parts {
        text.clear();
        write!(text, "{part}").expect("formatting into a String cannot fail");
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    Ok(Some(Once { key: key.to_owned(), fingerprint: hasher.finalize().to_vec() }))
}

/// A rendered answer: `body` is the serialized JSON; a body that cannot be serialized
/// (`what` names it in the log) becomes a 500.
pub fn rendered(status: StatusCode, body: serde_json::Result<String>, what: &str) -> (StatusCode, String) {
    match body {
        Ok(body) => (status, body),
        Err(error) => {
            log::error!("cannot serialize a {what} answer: {error}");
            (StatusCode::INTERNAL_SERVER_ERROR, ApiError::internal().body().to_string())
        }
    }
}

/// How a write under a key went.
pub enum Answered<T> {
    /// Done now; `value` is what the job returned.
    Fresh { answer: StoredAnswer, value: T },
    /// Done before: the first answer, unchanged.
    Replayed(StoredAnswer),
}

enum Lookup<T> {
    /// Done now; the stored answer when a key asked for one.
    Fresh(T, Option<StoredAnswer>),
    Replayed(StoredAnswer),
    Reused,
}

/// Runs `job` on the writer at most once per key, answering with `render` of its result.
pub fn run<T, F>(
    app: &App,
    once: Option<Once>,
    user_id: String,
    now_ms: i64,
    job: F,
    render: fn(&T) -> (StatusCode, String),
) -> Result<Answered<T>, ApiError>
where
    T: Send + 'static,
    F: FnMut(&dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
{
    let not_before_ms = now_ms - i64::from(app.rules.idempotency_hours) * 3_600_000;
    let mut job = job;
    let lookup = app.store.write(move |tx| {
        let Some(once) = &once else {
            // No key: nothing to store, so the answer is rendered after the commit, off the
            // writer thread.
            return Ok(Lookup::Fresh(job(tx)?, None));
        };
        // Two requests with one key, on any node, are serialized here: the second finds
        // the first's answer.
        tx.serialize_on(IDEMPOTENCY_SCOPE, &once.key)?;
        if let Some(prior) = tx.find_answer(&once.key, not_before_ms)? {
            return Ok(if prior.fingerprint == once.fingerprint { Lookup::Replayed(prior) } else { Lookup::Reused });
        }
        let value = job(tx)?;
        let (status, body) = render(&value);
        let answer = StoredAnswer { fingerprint: once.fingerprint.clone(), status: status.as_u16(), body };
        tx.save_answer(&once.key, &user_id, &answer, now_ms)?;
        Ok(Lookup::Fresh(value, Some(answer)))
    })?;
    match lookup {
        Lookup::Fresh(value, answer) => {
            let answer = answer.unwrap_or_else(|| {
                let (status, body) = render(&value);
                StoredAnswer { fingerprint: Vec::new(), status: status.as_u16(), body }
            });
            Ok(Answered::Fresh { answer, value })
        }
        Lookup::Replayed(answer) => Ok(Answered::Replayed(answer)),
        Lookup::Reused => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request; use a new key for a new request",
        )),
    }
}

impl<T> Answered<T> {
    pub fn into_response(self) -> Response<Body> {
        let (answer, replayed) = match self {
            Answered::Fresh { answer, .. } => (answer, false),
            Answered::Replayed(answer) => (answer, true),
        };
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
        let mut response = raw_json_response(status, answer.body.into_bytes());
        if replayed {
            response.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}
