//! The OpenFeature Remote Evaluation Protocol (OFREP), so any OFREP provider reads Tally's
//! plan features with no custom SDK: `POST /ofrep/v1/evaluate/flags/{key}` evaluates one
//! flag, `POST /ofrep/v1/evaluate/flags` all of them (with `ETag` / `If-None-Match`). Each
//! configured feature is a boolean flag (may the user use it now; evaluating records
//! nothing) and `plan` a string flag, both for the context's `targetingKey` (the user id).
//! Errors have OFREP's shape (`{"key", "errorCode", "errorDetails"}`), not Tally's.

use super::error::ApiError;
use super::{Ctx, json_response, now_ms};
use crate::app;
use crate::domain::feature::{FeatureKind, FeatureVerdict};
use crate::domain::user_id::UserId;
use crate::http::Body;
use ::http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The string flag that carries the user's plan.
pub const PLAN_FLAG: &str = "plan";

/// Why an evaluation failed, as OFREP names it.
struct Failure {
    status: StatusCode,
    code: &'static str,
    details: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, details: impl Into<String>) -> Failure {
        Failure { status, code, details: details.into() }
    }

    /// The answer; `key` for a single flag, `None` for the bulk evaluation.
    fn response(self, key: Option<&str>) -> Response<Body> {
        let mut body = Map::new();
        if let Some(key) = key {
            body.insert("key".into(), json!(key));
        }
        body.insert("errorCode".into(), json!(self.code));
        body.insert("errorDetails".into(), json!(self.details));
        json_response(self.status, &body)
    }
}

/// The user the request's `context.targetingKey` names.
fn targeting_key(body: &[u8]) -> Result<UserId, Failure> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    let request: Value = match first {
        None => Value::Object(Map::new()),
        Some(_) => serde_json::from_slice(body).map_err(|error| {
            Failure::new(StatusCode::BAD_REQUEST, "PARSE_ERROR", format!("invalid JSON body: {error}"))
        })?,
    };
    let missing = || {
        Failure::new(StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING", "context.targetingKey (the user id) is required")
    };
    let invalid = |details: String| Failure::new(StatusCode::BAD_REQUEST, "INVALID_CONTEXT", details);
    let context = match request.get("context") {
        None | Some(Value::Null) => return Err(missing()),
        Some(Value::Object(context)) => context,
        Some(_) => return Err(invalid("context must be a JSON object".into())),
    };
    match context.get("targetingKey") {
        None | Some(Value::Null) => Err(missing()),
        Some(Value::String(key)) if key.is_empty() => Err(missing()),
        Some(Value::String(key)) => {
            UserId::parse(key.as_str()).map_err(|error| invalid(format!("targetingKey: {error}")))
        }
        Some(_) => Err(invalid("targetingKey must be a string".into())),
    }
}

#[derive(Serialize)]
struct Evaluation<'v> {
    key: &'v str,
    value: Value,
    reason: &'static str,
    variant: String,
    metadata: Map<String, Value>,
}

fn feature_evaluation(verdict: &FeatureVerdict) -> Evaluation<'_> {
    let mut metadata = Map::new();
    metadata.insert("plan".into(), json!(verdict.plan));
    let kind = match verdict.kind {
        FeatureKind::Boolean => "boolean",
        FeatureKind::Rate => "rate",
    };
    metadata.insert("kind".into(), json!(kind));
    // OpenFeature's metadata holds strings, numbers and booleans only: absent, not null.
    let numbers = [("limit", verdict.limit), ("window_secs", verdict.window_secs)];
    for (name, value) in numbers.into_iter().chain([("remaining_in_window", verdict.remaining_in_window)]) {
        if let Some(value) = value {
            metadata.insert(name.into(), json!(value));
        }
    }
    if let Some(plan) = &verdict.plan_required {
        metadata.insert("plan_required".into(), json!(plan));
    }
    Evaluation {
        key: &verdict.feature,
        value: Value::Bool(verdict.allowed),
        reason: "TARGETING_MATCH",
        variant: if verdict.allowed { "on" } else { "off" }.into(),
        metadata,
    }
}

fn plan_evaluation(plan: &str) -> Evaluation<'static> {
    Evaluation {
        key: PLAN_FLAG,
        value: json!(plan),
        reason: "TARGETING_MATCH",
        variant: plan.to_owned(),
        metadata: Map::new(),
    }
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
pub fn evaluate(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let key = ctx.params[0].as_str();
    let rules = &ctx.app.rules;
    if key != PLAN_FLAG && !rules.catalog.has_feature(key) {
        let known = rules.catalog.features().join(", ");
        let details = format!("no flag {key:?}; the flags are {PLAN_FLAG} and the features: {known}");
        return Ok(Failure::new(StatusCode::NOT_FOUND, "FLAG_NOT_FOUND", details).response(Some(key)));
    }
    let user_id = match targeting_key(ctx.body) {
        Ok(user_id) => user_id,
        Err(failure) => return Ok(failure.response(Some(key))),
    };
    if key == PLAN_FLAG {
        let plan = app::usage::plan_name(&ctx.app.store, rules, &user_id, now_ms())?;
        return Ok(json_response(StatusCode::OK, &plan_evaluation(&plan)));
    }
    let verdict = app::usage::check_feature(&ctx.app.store, rules, &user_id, key, now_ms())?;
    Ok(json_response(StatusCode::OK, &feature_evaluation(&verdict)))
}

/// Whether `If-None-Match` names `etag`; weak tags compare as strong ones. `*` names no tag
/// here: the bulk evaluation is a POST, for which a wildcard precondition means nothing useful
/// (RFC 9110 would answer 412), so it gets the full answer.
fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| tag != "*" && tag.trim_start_matches("W/") == etag)
}

/// `POST /ofrep/v1/evaluate/flags`: every flag, with an `ETag` of the answer; 304 when the
/// client's `If-None-Match` already holds it.
pub fn evaluate_all(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let user_id = match targeting_key(ctx.body) {
        Ok(user_id) => user_id,
        Err(failure) => return Ok(failure.response(None)),
    };
    let flags = app::usage::flags(&ctx.app.store, &ctx.app.rules, &user_id, now_ms())?;
    let mut evaluations = vec![plan_evaluation(&flags.plan)];
    evaluations.extend(flags.features.iter().map(feature_evaluation));
    let body = match serde_json::to_vec(&json!({ "flags": evaluations })) {
        Ok(body) => body,
        Err(error) => {
            log::error!("cannot serialize an OFREP answer: {error}");
            return Err(ApiError::internal());
        }
    };
    let digest = Sha256::digest(&body);
    let etag = format!("\"{}\"", crate::domain::hex(&digest[..16]));
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::internal())?;
    let if_none_match = ctx.request.headers().get(header::IF_NONE_MATCH).and_then(|value| value.to_str().ok());
    let mut response = if if_none_match.is_some_and(|tags| matches(tags, &etag)) {
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    response.headers_mut().insert(header::ETAG, etag_value);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_and_weak_tags_but_not_a_star() {
        assert!(matches("\"abc\"", "\"abc\""));
        assert!(matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(!matches("*", "\"abc\""), "a wildcard gets the full answer");
        assert!(!matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn the_targeting_key_is_required_and_must_be_a_user_id() {
        let code = |body: &str| targeting_key(body.as_bytes()).err().map(|failure| failure.code);
        assert_eq!(code(r#"{"context": {"targetingKey": "alice", "plan": "x"}}"#), None);
        assert_eq!(code(""), Some("TARGETING_KEY_MISSING"));
        assert_eq!(code(r#"{"context": {}}"#), Some("TARGETING_KEY_MISSING"));
        assert_eq!(code(r#"{"context": {"targetingKey": ""}}"#), Some("TARGETING_KEY_MISSING"));
        assert_eq!(code(r#"{"context": {"targetingKey": 7}}"#), Some("INVALID_CONTEXT"));
        assert_eq!(code(r#"{"context": {"targetingKey": "a b"}}"#), Some("INVALID_CONTEXT"));
        assert_eq!(code("{"), Some("PARSE_ERROR"));
    }
}
