//! The `Idempotency-Key` header and how an idempotent answer goes out; the mechanism (one
//! serialized writer job per key) is `app::idempotency`.

use super::error::ApiError;
use super::{Ctx, raw_json_response};
pub use crate::app::idempotency::Answered;
use crate::app::idempotency::{Once, Rendered};
use crate::http::Body;
use ::http::{HeaderName, HeaderValue, Response, StatusCode};
use std::fmt::Display;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The request's key, if it sent one; `parts` describe the request (route and fields). They
/// are formatted only when a key came: a request without one pays nothing here.
pub fn once(ctx: &Ctx<'_>, parts: &[&dyn Display]) -> Result<Option<Once>, ApiError> {
    let Some(key) = super::request::header_text(ctx.request, &IDEMPOTENCY_KEY)? else {
        return Ok(None);
    };
    Ok(Some(Once::new(key, parts)?))
}

/// A rendered answer: `body` is the serialized JSON, `headers` are `name: value` lines; a
/// body that cannot be serialized (`what` names it in the log) becomes a 500.
pub fn rendered(status: StatusCode, body: serde_json::Result<String>, headers: String, what: &str) -> Rendered {
    match body {
        Ok(body) => Rendered { status: status.as_u16(), body, headers },
        Err(error) => {
            log::error!("cannot serialize a {what} answer: {error}");
            let body = ApiError::internal().body().to_string();
            Rendered { status: StatusCode::INTERNAL_SERVER_ERROR.as_u16(), body, headers: String::new() }
        }
    }
}

/// The answer as HTTP: the stored status, body and headers, marked when replayed.
pub fn into_response<T>(answered: Answered<T>) -> Response<Body> {
    let (answer, replayed) = match answered {
        Answered::Fresh { answer, .. } => (answer, false),
        Answered::Replayed(answer) => (answer, true),
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = raw_json_response(status, answer.body.into_bytes());
    let headers = response.headers_mut();
    for line in answer.headers.lines() {
        let parsed = line
            .split_once(": ")
            .map(|(name, value)| (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)));
        match parsed {
            Some((Ok(name), Ok(value))) => {
                headers.append(name, value);
            }
            _ => log::warn!("a stored answer has a header line that is not one: {line:?}"),
        }
    }
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
