//! Liveness, readiness and the API description: the routes that need no key.

use super::error::ApiError;
use super::{Ctx, json_response};
use crate::http::Body;
use ::http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

pub fn healthz(_: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    Ok(json_response(StatusCode::OK, &json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })))
}

pub fn readyz(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    if ctx.app.store.is_ready() {
        Ok(json_response(StatusCode::OK, &json!({ "status": "ready" })))
    } else {
        Err(ApiError::unavailable("storage_unavailable", "the database does not answer or the writer has stopped"))
    }
}

pub fn openapi(_: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let mut response = Response::new(Body::from(OPENAPI));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
    Ok(response)
}
