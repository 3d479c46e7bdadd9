//! The whole API on one screen. The table is data, not a `match`, because three things read
//! it: the dispatcher, the 405 `Allow` header, and the tests that walk every route for auth.

use super::auth::Access;
use super::error::ApiError;
use super::{Ctx, admin, compat, dashboard, features, health, telemetry, usage, users};
use oxhttp::model::{Body, Method, Response};
use percent_encoding::percent_decode_str;

pub type Handler = fn(&mut Ctx<'_>) -> Result<Response<Body>, ApiError>;

pub struct Route {
    pub method: Method,
    /// `/v1/users/{user_id}`: literal segments and `{name}` parameters.
    pub pattern: &'static str,
    pub access: Access,
    pub handler: Handler,
}

pub static ROUTES: &[Route] = &[
    Route { method: Method::GET, pattern: "/healthz", access: Access::Public, handler: health::healthz },
    Route { method: Method::GET, pattern: "/readyz", access: Access::Public, handler: health::readyz },
    Route { method: Method::GET, pattern: "/openapi.yaml", access: Access::Public, handler: health::openapi },
    Route { method: Method::GET, pattern: "/metrics", access: Access::Metrics, handler: telemetry::metrics },
    Route { method: Method::POST, pattern: "/v1/check", access: Access::Service, handler: usage::check },
    Route { method: Method::POST, pattern: "/v1/track", access: Access::Service, handler: usage::track },
    Route { method: Method::POST, pattern: "/v1/features/check", access: Access::Service, handler: features::check },
    Route {
        method: Method::POST,
        pattern: "/v1/features/use",
        access: Access::Service,
        handler: features::use_feature,
    },
    Route { method: Method::GET, pattern: "/v1/users/{user_id}", access: Access::Service, handler: users::get },
    Route { method: Method::PUT, pattern: "/v1/users/{user_id}", access: Access::Service, handler: users::put },
    Route { method: Method::GET, pattern: "/v1/admin/usage", access: Access::Admin, handler: admin::get_usage },
    Route { method: Method::GET, pattern: "/v1/admin/offenders", access: Access::Admin, handler: admin::get_offenders },
    Route { method: Method::GET, pattern: "/v1/admin/plans", access: Access::Admin, handler: admin::get_plans },
    Route { method: Method::GET, pattern: "/v1/admin/audit", access: Access::Admin, handler: admin::get_audit },
    Route { method: Method::POST, pattern: "/v1/admin/cleanup", access: Access::Admin, handler: admin::post_cleanup },
    Route {
        method: Method::GET,
        pattern: "/v1/admin/users/{user_id}",
        access: Access::Admin,
        handler: admin::get_user,
    },
    Route {
        method: Method::DELETE,
        pattern: "/v1/admin/users/{user_id}",
        access: Access::Admin,
        handler: admin::delete_user,
    },
    Route {
        method: Method::GET,
        pattern: "/v1/admin/users/{user_id}/export",
        access: Access::Admin,
        handler: admin::get_export,
    },
    Route {
        method: Method::POST,
        pattern: "/v1/admin/users/{user_id}/plan",
        access: Access::Admin,
        handler: admin::post_plan,
    },
    Route {
        method: Method::POST,
        pattern: "/v1/admin/users/{user_id}/reset",
        access: Access::Admin,
        handler: admin::post_reset,
    },
    Route { method: Method::GET, pattern: "/v1/admin/events", access: Access::Admin, handler: telemetry::events },
    Route {
        method: Method::GET,
        pattern: "/v1/admin/webhooks/deliveries",
        access: Access::Admin,
        handler: telemetry::deliveries,
    },
    Route {
        method: Method::POST,
        pattern: "/v1/admin/webhooks/deliveries/{id}/retry",
        access: Access::Admin,
        handler: telemetry::retry,
    },
    Route { method: Method::GET, pattern: "/api/v1/admin/usage", access: Access::Admin, handler: compat::get_usage },
    Route { method: Method::POST, pattern: "/api/v1/admin/usage", access: Access::Admin, handler: compat::post_usage },
    Route { method: Method::GET, pattern: "/admin", access: Access::Session, handler: dashboard::overview },
    Route { method: Method::GET, pattern: "/admin/login", access: Access::Public, handler: dashboard::login_page },
    Route { method: Method::POST, pattern: "/admin/login", access: Access::Public, handler: dashboard::login },
    Route { method: Method::POST, pattern: "/admin/logout", access: Access::Session, handler: dashboard::logout },
    Route { method: Method::GET, pattern: "/admin/users", access: Access::Session, handler: dashboard::find_user },
    Route {
        method: Method::GET,
        pattern: "/admin/users/{user_id}",
        access: Access::Session,
        handler: dashboard::user_page,
    },
    Route {
        method: Method::POST,
        pattern: "/admin/users/{user_id}/plan",
        access: Access::Session,
        handler: dashboard::change_plan,
    },
    Route {
        method: Method::POST,
        pattern: "/admin/users/{user_id}/reset",
        access: Access::Session,
        handler: dashboard::reset,
    },
    Route {
        method: Method::GET,
        pattern: "/admin/users/{user_id}/export",
        access: Access::Session,
        handler: dashboard::export,
    },
    Route {
        method: Method::GET,
        pattern: "/admin/users/{user_id}/erase",
        access: Access::Session,
        handler: dashboard::erase_page,
    },
    Route {
        method: Method::POST,
        pattern: "/admin/users/{user_id}/erase",
        access: Access::Session,
        handler: dashboard::erase,
    },
    Route {
        method: Method::GET,
        pattern: "/admin/maintenance",
        access: Access::Session,
        handler: dashboard::maintenance,
    },
    Route {
        method: Method::POST,
        pattern: "/admin/maintenance/cleanup",
        access: Access::Session,
        handler: dashboard::cleanup,
    },
];

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
