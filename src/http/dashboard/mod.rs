//! The admin dashboard at /admin: server-rendered HTML embedded in the binary. (Skeleton:
//! the pages are being written.)

use super::Ctx;
use super::error::ApiError;
use oxhttp::model::{Body, Response, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;

/// Dashboard login sessions, by session token.
#[derive(Default)]
pub struct Sessions {
    #[allow(dead_code)]
    by_token: Mutex<HashMap<String, ()>>,
}

fn not_yet(_: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    // No page yet, and no session can exist: every page sends the visitor to the login page.
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(oxhttp::model::header::LOCATION, oxhttp::model::HeaderValue::from_static("/admin/login"));
    Ok(response)
}

pub fn overview(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn login_page(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn login(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn logout(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn find_user(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn user_page(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn change_plan(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn reset(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn export(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn erase_page(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn erase(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn maintenance(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
pub fn cleanup(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    not_yet(ctx)
}
