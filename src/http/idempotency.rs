//! The `Idempotency-Key` header and how an idempotent answer goes out, fresh or replayed:
//! the same status, body and headers either way; the mechanism (one serialized writer job
//! per key, the answer stored with the change) is `app::idempotency`.

use super::error::ApiError;
use super::{Ctx, raw_json_response};
use crate::app::idempotency::Once;
pub use crate::app::idempotency::{Answered, Rendered};
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

/// A 200 answer: `body` is the serialized JSON; a body that cannot be serialized (`what`
/// names it in the log) becomes a 500.
pub fn allowed(body: serde_json::Result<String>, what: &str) -> Rendered {
    match body {
        Ok(body) => Rendered { status: StatusCode::OK.as_u16(), headers: Vec::new(), body },
        Err(error) => {
            log::error!("cannot serialize a {what} answer: {error}");
            let status = StatusCode::INTERNAL_SERVER_ERROR.as_u16();
            Rendered { status, headers: Vec::new(), body: ApiError::internal().body().to_string() }
        }
    }
}

/// A refusal (a 429 of a limit or a window, a 403 of a plan, ...) as an idempotent answer:
/// its status, its body and the headers it carries (a 429's `Retry-After`), which are stored
/// with it and replayed.
pub fn refused(error: &ApiError) -> Rendered {
    let headers = error
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    Rendered { status: error.status().as_u16(), headers, body: error.body().to_string() }
}

/// The answer as HTTP: the stored status, headers and body, marked when replayed.
pub fn into_response<T>(answered: Answered<T>) -> Response<Body> {
    let (answer, replayed) = match answered {
        Answered::Fresh { answer, .. } => (answer, false),
        Answered::Replayed(answer) => (answer, true),
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = raw_json_response(status, answer.body.into_bytes());
    let headers = response.headers_mut();
    for (name, value) in &answer.headers {
        // Written by `rendered` from valid names and values; a row that does not parse is
        // left out rather than failing the replay.
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(name), Ok(value)) => _ = headers.append(name, value),
            _ => log::warn!("a stored answer has an invalid header {name:?}; replayed without it"),
        }
    }
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
