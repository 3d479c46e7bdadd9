//! The whole API on one screen. The table is data, not a `match`, because three things read
//! it: the dispatcher, the 405 `Allow` header, and the tests that walk every route for auth.

use super::auth::Access;
use super::error::ApiError;
use super::{Ctx, admin, compat, dashboard, features, health, telemetry, usage, users};
use Access::{Admin, Metrics, Public, Service, Session};
use oxhttp::model::{Body, Method, Response};
use percent_encoding::percent_decode_str;

pub type Handler = fn(&mut Ctx<'_>) -> Result<Response<Body>, ApiError>;

pub struct Route {
    pub method: Method,
    /// `/v1/users/{user_id}`: literal segments and `{name}` parameters.
    pub pattern: &'static str,
    /// The query parameters it accepts; any other is refused with 400 before the handler.
    pub query: &'static [&'static str],
    pub access: Access,
    pub handler: Handler,
}

#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    //    method  pattern                                      access   handler                   query parameters
    route(GET,    "/healthz",                                  Public,  health::healthz,          &[]),
    route(GET,    "/readyz",                                   Public,  health::readyz,           &[]),
    route(GET,    "/openapi.yaml",                             Public,  health::openapi,          &[]),
    route(GET,    "/metrics",                                  Metrics, telemetry::metrics,       &[]),
    route(POST,   "/v1/check",                                 Service, usage::check,             &[]),
    route(POST,   "/v1/track",                                 Service, usage::track,             &[]),
    route(POST,   "/v1/features/check",                        Service, features::check,          &[]),
    route(POST,   "/v1/features/use",                          Service, features::use_feature,    &[]),
    route(GET,    "/v1/users/{user_id}",                       Service, users::get,               &["period"]),
    route(PUT,    "/v1/users/{user_id}",                       Service, users::put,               &[]),
    route(GET,    "/v1/admin/usage",                           Admin,   admin::get_usage,         &["period", "metric", "top"]),
    route(GET,    "/v1/admin/offenders",                       Admin,   admin::get_offenders,     &["period", "metric", "limit"]),
    route(GET,    "/v1/admin/plans",                           Admin,   admin::get_plans,         &[]),
    route(GET,    "/v1/admin/audit",                           Admin,   admin::get_audit,         &["limit", "before"]),
    route(POST,   "/v1/admin/cleanup",                         Admin,   admin::post_cleanup,      &[]),
    route(GET,    "/v1/admin/users/{user_id}",                 Admin,   admin::get_user,          &["months"]),
    route(DELETE, "/v1/admin/users/{user_id}",                 Admin,   admin::delete_user,       &[]),
    route(GET,    "/v1/admin/users/{user_id}/export",          Admin,   admin::get_export,        &[]),
    route(POST,   "/v1/admin/users/{user_id}/plan",            Admin,   admin::post_plan,         &[]),
    route(POST,   "/v1/admin/users/{user_id}/reset",           Admin,   admin::post_reset,        &[]),
    route(GET,    "/v1/admin/events",                          Admin,   telemetry::events,        &["type", "user_id", "since", "limit", "after"]),
    route(GET,    "/v1/admin/webhooks/deliveries",             Admin,   telemetry::deliveries,    &["status", "limit", "before"]),
    route(POST,   "/v1/admin/webhooks/deliveries/{id}/retry",  Admin,   telemetry::retry,         &[]),
    route(GET,    "/api/v1/admin/usage",                       Admin,   compat::get_usage,        &["endpoint", "userId", "period", "metric", "top", "limit", "months"]),
    route(POST,   "/api/v1/admin/usage",                       Admin,   compat::post_usage,       &[]),
    route(GET,    "/admin",                                    Session, dashboard::overview,      &["period", "metric"]),
    route(GET,    "/admin/login",                              Public,  dashboard::login_page,    &["signed_out"]),
    route(POST,   "/admin/login",                              Public,  dashboard::login,         &[]),
    route(POST,   "/admin/logout",                             Session, dashboard::logout,        &[]),
    route(GET,    "/admin/users",                              Session, dashboard::find_user,     &["user_id"]),
    route(GET,    "/admin/users/{user_id}",                    Session, dashboard::user_page,     &[]),
    route(POST,   "/admin/users/{user_id}/plan",               Session, dashboard::change_plan,   &[]),
    route(POST,   "/admin/users/{user_id}/reset",              Session, dashboard::reset,         &[]),
    route(GET,    "/admin/users/{user_id}/export",             Session, dashboard::export,        &[]),
    route(GET,    "/admin/users/{user_id}/erase",              Session, dashboard::erase_page,    &[]),
    route(POST,   "/admin/users/{user_id}/erase",              Session, dashboard::erase,         &[]),
    route(GET,    "/admin/maintenance",                        Session, dashboard::maintenance,   &["before"]),
    route(POST,   "/admin/maintenance/cleanup",                Session, dashboard::cleanup,       &[]),
];

const fn route(
    method: Method,
    pattern: &'static str,
    access: Access,
    handler: Handler,
    query: &'static [&'static str],
) -> Route {
    Route { method, pattern, query, access, handler }
}

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const DELETE: Method = Method::DELETE;

/// Matches `path` against `pattern`; returns the decoded parameters.
fn match_pattern(pattern: &str, path: &str) -> Option<Result<Vec<String>, ApiError>> {
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    let mut params = Vec::new();
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(Ok(params)),
            (Some(expected), Some(actual)) if expected.starts_with('{') => {
                if actual.is_empty() {
                    return None;
                }
                match percent_decode_str(actual).decode_utf8() {
                    Ok(decoded) => params.push(decoded.into_owned()),
                    Err(_) => return Some(Err(ApiError::invalid("the path is not valid UTF-8 once percent-decoded"))),
                }
            }
            (Some(expected), Some(actual)) if expected == actual => {}
            _ => return None,
        }
    }
}

/// The route for `method` and `path`, with its parameters; 404 or 405 when there is none.
pub fn find(method: &Method, path: &str) -> Result<(&'static Route, Vec<String>), ApiError> {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_pattern(route.pattern, path) {
            if route.method == *method {
                return Ok((route, params?));
            }
            allowed.push(route.method.as_str());
        }
    }
    if allowed.is_empty() { Err(ApiError::not_found()) } else { Err(ApiError::method_not_allowed(&allowed)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_literal_and_parameter_segments() {
        let (route, params) = find(&Method::GET, "/v1/users/auth0%7C42").unwrap();
        assert_eq!(route.pattern, "/v1/users/{user_id}");
        assert_eq!(params, ["auth0|42"]);
        assert_eq!(find(&Method::POST, "/v1/track").unwrap().0.pattern, "/v1/track");
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
        assert_eq!(find(&Method::GET, "/v1/nope").err().unwrap().code, "not_found");
        assert_eq!(find(&Method::GET, "/v1/users/").err().unwrap().code, "not_found");
        assert_eq!(find(&Method::GET, "/v1/track/").err().unwrap().code, "not_found");
        let error = find(&Method::DELETE, "/v1/users/x").err().unwrap();
        assert_eq!(error.code, "method_not_allowed");
        assert_eq!(error.headers[0].1, "GET, PUT");
    }

    #[test]
    fn every_pattern_is_unique_per_method() {
        for (index, route) in ROUTES.iter().enumerate() {
            for other in &ROUTES[index + 1..] {
                assert!(route.pattern != other.pattern || route.method != other.method, "{}", route.pattern);
            }
        }
    }
}
