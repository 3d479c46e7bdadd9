//! Reading what a client sent: the JSON body (size, type and deadline checked before and while
//! reading), query parameters and headers. Every malformed input becomes a 4xx `ApiError`.

use super::error::ApiError;
use oxhttp::model::{Body, HeaderName, Request, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

/// Limits a body read is held to.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_bytes: u64,
    /// Deadline for the whole body, counted from when the request reached the handler.
    pub timeout: Duration,
}

/// The media type of a Content-Type value, without parameters.
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

fn is_json(content_type: &str) -> bool {
    essence(content_type).eq_ignore_ascii_case("application/json")
}

fn is_form(content_type: &str) -> bool {
    essence(content_type).eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// Reads the body as JSON into `T`. An absent or empty body reads as `{}`.
pub fn json_body<T: DeserializeOwned>(
    request: &mut Request<Body>,
    limits: BodyLimits,
    started: Instant,
) -> Result<T, ApiError> {
    let bytes = read_body(request, limits, started, is_json, "JSON, sent with `Content-Type: application/json`")?;
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    let bytes: &[u8] = match first {
        None => b"{}",
        Some(b'{') => &bytes,
        Some(_) => return Err(ApiError::invalid("the body must be a JSON object")),
    };
    serde_json::from_slice(bytes).map_err(|error| ApiError::invalid(format!("invalid JSON body: {error}")))
}

/// Bodies up to this size are read to the end after a refusal (by oxhttp), keeping the
/// connection; a larger or unbounded one closes it instead of reading on.
const DRAIN_LIMIT: u64 = 1 << 20;

/// Marks `error` as closing the connection when the unread rest of the body is too large
/// (or of unknown size) to be worth reading and discarding.
fn refuse_body(error: ApiError, declared: Option<u64>) -> ApiError {
    if declared.is_some_and(|length| length <= DRAIN_LIMIT) { error } else { error.closing() }
}

fn payload_too_large(limits: BodyLimits) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than the server's max_body_bytes ({})", limits.max_bytes),
    )
    .with("max_body_bytes", limits.max_bytes)
}

/// Reads an HTML form body (`application/x-www-form-urlencoded`) into a map; a field given
/// twice keeps its last value.
pub fn form_body(
    request: &mut Request<Body>,
    limits: BodyLimits,
    started: Instant,
) -> Result<HashMap<String, String>, ApiError> {
    let bytes = read_body(request, limits, started, is_form, "a form, sent as application/x-www-form-urlencoded")?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// Reads the whole body, refusing a declared or actual size over the limit, a content type
/// `accepts` does not take (`expected` says which), and a body slower than the deadline.
fn read_body(
    request: &mut Request<Body>,
    limits: BodyLimits,
    started: Instant,
    accepts: fn(&str) -> bool,
    expected: &str,
) -> Result<Vec<u8>, ApiError> {
    let declared = request.body().len();
    if declared == Some(0) {
        return Ok(Vec::new());
    }
    // Decided from the declared length, before a byte of the body is read.
    if declared.is_some_and(|length| length > limits.max_bytes) {
        return Err(refuse_body(payload_too_large(limits), declared));
    }
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    if !content_type.is_some_and(accepts) {
        let error = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be {expected}"),
        );
        return Err(refuse_body(error, declared));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(1024).min(limits.max_bytes) as usize);
    let mut chunk = [0u8; 8192];
    let deadline = started + limits.timeout;
    loop {
        // Each read is bounded by the socket timeout; the deadline bounds a slow trickle.
        if Instant::now() > deadline {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body took too long to arrive",
            )
            .closing());
        }
        // Never read more than one byte past the limit: enough to know it was passed.
        let room = (limits.max_bytes + 1).saturating_sub(body.len() as u64).min(chunk.len() as u64) as usize;
        match request.body_mut().read(&mut chunk[..room]) {
            Ok(0) => break,
            Ok(read) => {
                body.extend_from_slice(&chunk[..read]);
                if body.len() as u64 > limits.max_bytes {
                    return Err(payload_too_large(limits).closing());
                }
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) if matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the body took too long to arrive",
                )
                .closing());
            }
            Err(error) => {
                return Err(ApiError::invalid(format!("cannot read the body: {error}")).closing());
            }
        }
    }
    Ok(body)
}

/// The query string as a map; a parameter not in `allowed`, or given twice, is refused.
pub fn query(request: &Request<Body>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut parameters = HashMap::new();
    let Some(query) = request.uri().query() else {
        return Ok(parameters);
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            let accepted = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
            return Err(ApiError::invalid(format!("unknown query parameter {name:?}; this route accepts {accepted}")));
        }
        if parameters.insert(name.to_string(), value.into_owned()).is_some() {
            return Err(ApiError::invalid(format!("query parameter {name:?} is given more than once")));
        }
    }
    Ok(parameters)
}

/// A header's value as text; `None` when absent; 400 when not visible ASCII.
pub fn header_text<'r>(request: &'r Request<Body>, name: &HeaderName) -> Result<Option<&'r str>, ApiError> {
    match request.headers().get(name) {
        None => Ok(None),
        Some(value) => {
            value.to_str().map(Some).map_err(|_| ApiError::invalid(format!("header {name} must be printable ASCII")))
        }
    }
}

/// Deserializes a field that may be absent but, when present, must not be `null`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A JSON number that is a whole number, written `3` or `3.0` (JSON Schema's `integer` takes
/// both), as a `u64`. Negative and fractional numbers are refused with the value named.
pub fn whole<'de, D>(deserializer: D) -> Result<u64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(value) = number.as_u64() {
        return Ok(value);
    }
    match number.as_f64() {
        Some(value)
            if value.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&value) && value <= (1u64 << 53) as f64 =>
        {
            Ok(value as u64)
        }
        _ => Err(D::Error::custom(format!("invalid value: {number}, expected a whole number of 0 or more"))),
    }
}

/// `whole`, for a field that may be absent but, when present, must not be `null`.
pub fn present_whole<'de, D>(deserializer: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    whole(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Amount {
        #[serde(deserialize_with = "whole")]
        amount: u64,
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let parse = |text: &str| serde_json::from_str::<Amount>(text).map(|amount| amount.amount);
        assert_eq!(parse(r#"{"amount": 3}"#).unwrap(), 3);
        assert_eq!(parse(r#"{"amount": 3.0}"#).unwrap(), 3);
        for bad in [r#"{"amount": 1.5}"#, r#"{"amount": -1}"#, r#"{"amount": 1e300}"#, r#"{"amount": "3"}"#] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(r#"{"amount": -1}"#).unwrap_err().to_string().contains("-1"));
    }

    #[test]
    fn json_content_type_allows_parameters_and_case() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("text/plain"));
    }
}
