//! `/v1/gateway/authz`: a reverse proxy asks whether to pass a request on. Where the original
//! method and URI come from (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`),
//! and how each outcome answers: the first matching `[[gateway.rules]]` entry tracks a metric
//! (`app::usage::track`, as `POST /v1/track`) or uses a feature (`app::usage::use_feature`).
//! The rules and their matching are domain::gateway's.

use super::error::ApiError;
use super::idempotency::{self, Rendered};
use super::request::header_text;
use super::{Ctx, Later, features, json_response, now_ms, usage};
use crate::app;
use crate::domain::Rules;
use crate::domain::gateway::{GatewayAction, normalize_path};
use crate::domain::period::Period;
use crate::domain::quota::Quota;
use crate::domain::usage::{TrackOutcome, UsageQuery};
use crate::domain::user_id::UserId;
use crate::metrics::{FeatureLabels, TrackLabels};
use ::http::{HeaderName, StatusCode, header};
use serde_json::json;
use std::sync::Arc;

const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The original request's method and URI, from exactly one convention: nginx's
/// `X-Original-*`, Traefik's `X-Forwarded-*`, or Envoy's path after `/v1/gateway/authz` (with
/// the original method as the request's). More than one is refused: Traefik and nginx pass
/// the client's own headers along, so a client could otherwise add the other proxy's header
/// to have a harmless path checked in place of the real one.
fn original<'r>(ctx: &'r Ctx<'_>) -> Result<(&'r str, String), ApiError> {
    let nginx = header_text(ctx.request, &X_ORIGINAL_URI)?;
    let traefik = header_text(ctx.request, &X_FORWARDED_URI)?;
    let envoy = ctx.params.first().map(|rest| format!("/{rest}"));
    let (method_header, uri) = match (nginx, traefik, envoy) {
        (Some(uri), None, None) => (Some(X_ORIGINAL_METHOD), uri.to_owned()),
        (None, Some(uri), None) => (Some(X_FORWARDED_METHOD), uri.to_owned()),
        (None, None, Some(path)) => {
            let uri = match ctx.request.uri().query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            (None, uri)
        }
        (None, None, None) => {
            return Err(ApiError::invalid(
                "the original request is unknown: send X-Original-URI and X-Original-Method (nginx), \
                 X-Forwarded-Uri and X-Forwarded-Method (Traefik), or append the path to /v1/gateway/authz (Envoy)",
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "the original request is given more than one way (X-Original-URI, X-Forwarded-Uri, a path after \
                 /v1/gateway/authz); the proxy must send exactly one, and clear the others a client may have sent",
            ));
        }
    };
    let method = match method_header {
        None => ctx.request.method().as_str(),
        Some(name) => header_text(ctx.request, &name)?
            .ok_or_else(|| ApiError::invalid(format!("header {name} is missing: the proxy must send it")))?,
    };
    Ok((method, uri))
}

fn ready(answer: Result<::http::Response<super::Body>, ApiError>) -> Later {
    Box::pin(async move { answer })
}

/// A track refused by a limit, with `Retry-After`: the seconds until the period resets it.
fn render_track(outcome: &TrackOutcome, now_ms: i64) -> Rendered {
    let mut rendered = usage::render_track(outcome, now_ms);
    if let TrackOutcome::Refused { verdict, .. } = outcome
        && let Some(quota) = Quota::of_metric(verdict, now_ms)
    {
        rendered.headers.push((header::RETRY_AFTER.as_str().to_owned(), quota.resets_in_secs.max(1).to_string()));
    }
    rendered
}

/// Any method: 200 to pass the request on (with RateLimit headers when a limit applies), else
/// 429 (limit or window, with Retry-After), 403 (feature not in the plan, or no rule and
/// `default = "deny"`) or 401 (no user header on a request a rule covers).
pub fn authz(ctx: &mut Ctx<'_>) -> Result<Later, ApiError> {
    let gateway = &ctx.app.config.gateway;
    let (method, uri) = original(ctx)?;
    let path = normalize_path(&uri).ok_or_else(|| {
        ApiError::invalid(
            "the original URI's path is ambiguous: a segment that is not UTF-8 once percent-decoded, an encoded \
                 '/', '\\', '.' or '..', or ';' parameters (the application could read it differently)",
        )
    })?;
    let Some(rule) = gateway.find_rule(method, &path) else {
        if gateway.allow_unmatched {
            return Ok(ready(Ok(json_response(StatusCode::OK, &json!({"allowed": true, "rule": null})))));
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "gateway_denied",
            format!("no gateway rule matches {method} {path}, and gateway.default is \"deny\""),
        ));
    };
    let user_header = gateway.user_header.as_str();
    let user = match ctx.request.headers().get(user_header).map(|value| value.to_str()) {
        Some(Ok(user)) if !user.trim().is_empty() => user.trim(),
        Some(Err(_)) => return Err(ApiError::invalid(format!("header {user_header} must be printable ASCII"))),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "user_missing",
                format!("{method} {path} is metered, and the request carries no {user_header} header"),
            ));
        }
    };
    let user_id = UserId::parse(user).map_err(ApiError::invalid)?;
    let now_ms = now_ms();
    let rules: Arc<Rules> = Arc::clone(&ctx.app.rules);
    let metrics = Arc::clone(&ctx.app.metrics);
    match &rule.action {
        GatewayAction::Track { metric, amount } => {
            let query =
                UsageQuery { user_id, metric: metric.clone(), amount: *amount, period: Period::of_unix_ms(now_ms) };
            let render = Arc::new(move |outcome: &TrackOutcome| render_track(outcome, now_ms));
            let write = app::usage::track(&ctx.app.store, &rules, query, true, None, now_ms, render);
            let metric = metric.clone();
            Ok(Box::pin(async move {
                let answered = write.answer().await?;
                metrics.track.get_or_create(&TrackLabels { metric, outcome: usage::outcome_label(&answered) }).inc();
                Ok(idempotency::into_response(answered))
            }))
        }
        GatewayAction::Feature { feature } => {
            let render = Arc::new(features::render_use);
            let write = app::usage::use_feature(&ctx.app.store, &rules, user_id, feature.clone(), None, now_ms, render);
            let feature = feature.clone();
            Ok(Box::pin(async move {
                let answered = write.answer().await?;
                let outcome = features::outcome_label(&answered);
                metrics.feature_use.get_or_create(&FeatureLabels { feature, outcome }).inc();
                Ok(idempotency::into_response(answered))
            }))
        }
    }
}
