//! Reading what a client sent: the checks on a body made from the head alone (type and
//! declared size, before a byte is read), the body once in memory (JSON or form), query
//! parameters and headers. Every malformed input becomes a 4xx `ApiError`.

use super::Head;
use super::error::ApiError;
use super::routes::BodyKind;
use ::http::{HeaderName, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// The media type of a Content-Type value, without parameters.
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

pub fn is_json(content_type: &str) -> bool {
    essence(content_type).eq_ignore_ascii_case("application/json")
}

/// JSON, or CloudEvents in structured mode: one event or a batch (an array).
pub fn is_events(content_type: &str) -> bool {
    let essence = essence(content_type);
    ["application/json", CLOUDEVENT, CLOUDEVENTS_BATCH].iter().any(|accepted| essence.eq_ignore_ascii_case(accepted))
}

pub const CLOUDEVENT: &str = "application/cloudevents+json";
pub const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

/// Whether the request's body is of the media type `wanted` (parameters aside).
pub fn is_type(head: &Head, wanted: &str) -> bool {
    content_type(head).is_some_and(|content_type| essence(content_type).eq_ignore_ascii_case(wanted))
}

fn is_form(content_type: &str) -> bool {
    essence(content_type).eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// The request's Content-Type, when it is text.
pub fn content_type(head: &Head) -> Option<&str> {
    head.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok())
}

pub fn unsupported_media_type(expected: &str) -> ApiError {
    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", format!("the body must be {expected}"))
}

pub fn payload_too_large(max_bytes: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than the server's max_body_bytes ({max_bytes})"),
    )
    .with("max_body_bytes", max_bytes)
    .closing()
}

pub fn body_timeout() -> ApiError {
    ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the body took too long to arrive").closing()
}

/// Decides from the head alone whether the body will be read: not for a route that takes
/// none or a body declared empty; 413 for a declared length over `max_bytes` and 415 for a
/// type the route does not take, before a byte of it is read. `declared` is the length the
/// head gives (`None`: chunked, so unknown).
pub fn check_body_head(kind: BodyKind, head: &Head, declared: Option<u64>, max_bytes: u64) -> Result<bool, ApiError> {
    let (accepts, expected): (fn(&str) -> bool, &str) = match kind {
        BodyKind::Nothing => return Ok(false),
        BodyKind::Json => (is_json, "JSON, sent with `Content-Type: application/json`"),
        BodyKind::Events => (
            is_events,
            "JSON (application/json), or CloudEvents (application/cloudevents+json or application/cloudevents-batch+json)",
        ),
        BodyKind::Form => (is_form, "a form, sent as application/x-www-form-urlencoded"),
    };
    if declared == Some(0) {
        return Ok(false);
    }
    if declared.is_some_and(|length| length > max_bytes) {
        return Err(payload_too_large(max_bytes));
    }
    if !content_type(head).is_some_and(accepts) {
        return Err(unsupported_media_type(expected).closing());
    }
    Ok(true)
}

/// Parses a JSON body into `T`. An empty body reads as `{}`.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    let bytes: &[u8] = match first {
        None => b"{}",
        Some(b'{') => bytes,
        Some(_) => return Err(ApiError::invalid("the body must be a JSON object")),
    };
    serde_json::from_slice(bytes).map_err(|error| ApiError::invalid(format!("invalid JSON body: {error}")))
}

/// Parses an HTML form body into a map; a field given twice keeps its last value.
pub fn form_body(bytes: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// The query string as a map; a parameter not in `allowed`, or given twice, is refused.
pub fn query(request: &Head, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut parameters = HashMap::new();
    let Some(query) = request.uri().query() else {
        return Ok(parameters);
    };
    if allowed == super::routes::ANY_QUERY {
        // The gateway's query is the proxied request's, not a parameter of Tally's.
        return Ok(parameters);
    }
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

/// Whether the request's `Accept` names `media_type` (parameters and quality aside).
pub fn accepts(request: &Head, media_type: &str) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|range| essence(range).eq_ignore_ascii_case(media_type)))
}

/// A header's value as text; `None` when absent; 400 when not visible ASCII.
pub fn header_text<'r>(request: &'r Head, name: &HeaderName) -> Result<Option<&'r str>, ApiError> {
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
