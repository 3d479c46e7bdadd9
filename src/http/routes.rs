//! The whole API on one screen. The table is data, not a `match`, because several things read
//! it: the dispatcher, the 405 `Allow` header, the checks made before a body is read (what
//! body a route takes), and the tests that walk every route for auth. `HEAD` is served
//! wherever `GET` is; CONNECT is 501.

use super::auth::Access;
use super::error::ApiError;
use super::{
    Body, Ctx, accounts, admin, batch, billing, compat, dashboard, features, forecasts, gateway, health, ofrep,
    reservations, telemetry, terms, usage, users,
};
use ::http::{Method, Response};
use Access::{Admin, Metrics, Public, Service, Session};
use BodyKind::{Events, Form, Json, Nothing};
use Handler::{Blocking, Read, Write};
use percent_encoding::percent_decode_str;
use std::future::Future;
use std::pin::Pin;

/// An answer still to come: a write queued on the writer, answered once it commits.
pub type Later = Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send>>;

/// A route's handler, by how it may wait. The server runs `Read` handlers on the async
/// worker itself when the backend's reads are local (a SQLite file: microseconds), `Blocking`
/// ones inside `block_in_place`, and awaits what a `Write` handler queued: no thread is held
/// while a group commits.
#[derive(Clone, Copy)]
pub enum Handler {
    /// A read at most.
    Read(fn(&mut Ctx<'_>) -> Result<Response<Body>, ApiError>),
    /// May wait for a while: writes answered in place, scans, the dashboard.
    Blocking(fn(&mut Ctx<'_>) -> Result<Response<Body>, ApiError>),
    /// Validates, queues a write, and returns the answer to await.
    Write(fn(&mut Ctx<'_>) -> Result<Later, ApiError>),
}

/// The body a route reads. Its type and size are checked from the head before a byte of it
/// is read; a route that takes `Nothing` never reads one (a body sent anyway closes the
/// connection after the answer, unread).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Nothing,
    /// `application/json`; an empty body reads as `{}`.
    Json,
    /// `application/json` or CloudEvents (`application/cloudevents+json`, or
    /// `application/cloudevents-batch+json`), up to `max_batch_body_bytes`: the batch ingest.
    Events,
    /// `application/x-www-form-urlencoded` (the dashboard's forms).
    Form,
}

pub struct Route {
    pub method: Method,
    /// `/v1/users/{user_id}`: literal segments and `{name}` parameters; a last segment
    /// `{*name}` takes the rest of the path, as sent (`/v1/gateway/authz/{*path}`).
    pub pattern: &'static str,
    /// The query parameters it accepts; any other is refused with 400 before the handler.
    pub query: &'static [&'static str],
    pub access: Access,
    pub(crate) body: BodyKind,
    pub(crate) handler: Handler,
}

#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    //    method  pattern                                      access   body     handler                                query parameters
    route(GET,    "/healthz",                                 Public,  Nothing, Read(health::healthz),            &[]),
    route(GET,    "/readyz",                                  Public,  Nothing, Read(health::readyz),             &[]),
    route(GET,    "/openapi.yaml",                            Public,  Nothing, Read(health::openapi),            &[]),
    route(GET,    "/metrics",                                 Metrics, Nothing, Blocking(telemetry::metrics),     &[]),
    route(POST,   "/v1/check",                                Service, Json,    Read(usage::check),               &[]),
    route(POST,   "/v1/track",                                Service, Json,    Write(usage::track),              &[]),
    route(POST,   "/v1/track/batch",                          Service, Events,  Write(batch::track_batch_route),  &[]),
    route(POST,   "/v1/reservations",                         Service, Json,    Write(reservations::reserve),     &[]),
    route(POST,   "/v1/reservations/{id}/commit",             Service, Json,    Write(reservations::commit),      &[]),
    route(POST,   "/v1/reservations/{id}/release",            Service, Json,    Write(reservations::release),     &[]),
    route(POST,   "/v1/features/check",                       Service, Json,    Read(features::check),            &[]),
    route(POST,   "/v1/features/use",                         Service, Json,    Write(features::use_feature),     &[]),
    route(POST,   "/ofrep/v1/evaluate/flags",                 Service, Json,    Read(ofrep::evaluate_all),        &[]),
    route(POST,   "/ofrep/v1/evaluate/flags/{key}",           Service, Json,    Read(ofrep::evaluate),            &[]),
    route(GET,    "/v1/gateway/authz",                        Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(POST,   "/v1/gateway/authz",                        Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(PUT,    "/v1/gateway/authz",                        Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(PATCH,  "/v1/gateway/authz",                        Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(DELETE, "/v1/gateway/authz",                        Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(OPTIONS, "/v1/gateway/authz",                        Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(GET,    "/v1/gateway/authz/{*path}",               Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(POST,   "/v1/gateway/authz/{*path}",               Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(PUT,    "/v1/gateway/authz/{*path}",               Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(PATCH,  "/v1/gateway/authz/{*path}",               Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(DELETE, "/v1/gateway/authz/{*path}",               Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(OPTIONS, "/v1/gateway/authz/{*path}",               Service, Nothing, Write(gateway::authz),           ANY_QUERY),
    route(GET,    "/v1/users/{user_id}",                      Service, Nothing, Read(users::get),                 &["period"]),
    route(PUT,    "/v1/users/{user_id}",                      Service, Json,    Blocking(users::put),             &[]),
    route(GET,    "/v1/users/{user_id}/forecast",             Service, Nothing, Blocking(forecasts::user),        &["metric"]),
    route(GET,    "/v1/accounts/{account_id}",                Service, Nothing, Blocking(accounts::get),          &["period"]),
    route(PUT,    "/v1/accounts/{account_id}",                Service, Json,    Blocking(accounts::put),          &[]),
    route(GET,    "/v1/accounts/{account_id}/forecast",       Service, Nothing, Blocking(forecasts::account),     &["metric"]),
    route(GET,    "/v1/admin/accounts",                       Admin,   Nothing, Blocking(accounts::list),         &["limit", "before"]),
    route(GET,    "/v1/admin/accounts/{account_id}",          Admin,   Nothing, Blocking(accounts::admin_get),    &["months"]),
    route(DELETE, "/v1/admin/accounts/{account_id}",          Admin,   Nothing, Blocking(accounts::admin_delete), &[]),
    route(POST,   "/v1/admin/accounts/{account_id}/plan",     Admin,   Json,    Blocking(accounts::admin_plan),   &[]),
    route(POST,   "/v1/admin/accounts/{account_id}/reset",    Admin,   Json,    Blocking(accounts::admin_reset),  &[]),
    route(GET,    "/v1/admin/users/{user_id}/overrides",      Admin,   Nothing, Blocking(terms::get_override),    &[]),
    route(PUT,    "/v1/admin/users/{user_id}/overrides",      Admin,   Json,    Blocking(terms::put_override),    &[]),
    route(DELETE, "/v1/admin/users/{user_id}/overrides",      Admin,   Nothing, Blocking(terms::delete_override), &[]),
    route(GET,    "/v1/admin/users/{user_id}/grants",         Admin,   Nothing, Blocking(terms::get_grants),      &[]),
    route(POST,   "/v1/admin/users/{user_id}/grants",         Admin,   Json,    Blocking(terms::post_grant),      &[]),
    route(GET,    "/v1/admin/accounts/{account_id}/overrides", Admin,  Nothing, Blocking(terms::get_override),    &[]),
    route(PUT,    "/v1/admin/accounts/{account_id}/overrides", Admin,  Json,    Blocking(terms::put_override),    &[]),
    route(DELETE, "/v1/admin/accounts/{account_id}/overrides", Admin,  Nothing, Blocking(terms::delete_override), &[]),
    route(GET,    "/v1/admin/accounts/{account_id}/grants",   Admin,   Nothing, Blocking(terms::get_grants),      &[]),
    route(POST,   "/v1/admin/accounts/{account_id}/grants",   Admin,   Json,    Blocking(terms::post_grant),      &[]),
    route(DELETE, "/v1/admin/grants/{grant_id}",              Admin,   Nothing, Blocking(terms::delete_grant),    &[]),
    route(GET,    "/v1/admin/usage",                          Admin,   Nothing, Blocking(admin::get_usage),       &["period", "metric", "top"]),
    route(GET,    "/v1/admin/offenders",                      Admin,   Nothing, Blocking(admin::get_offenders),   &["period", "metric", "limit"]),
    route(GET,    "/v1/admin/plans",                          Admin,   Nothing, Blocking(admin::get_plans),       &[]),
    route(GET,    "/v1/admin/forecast",                       Admin,   Nothing, Blocking(forecasts::admin),       &["period", "metric"]),
    route(GET,    "/v1/admin/audit",                          Admin,   Nothing, Blocking(admin::get_audit),       &["limit", "before"]),
    route(GET,    "/v1/admin/billing",                        Admin,   Nothing, Blocking(billing::report),        &["period", "format"]),
    route(GET,    "/v1/admin/billing/stripe-meter-events",    Admin,   Nothing, Blocking(billing::stripe_meter_events), &["period"]),
    route(POST,   "/v1/admin/cleanup",                        Admin,   Json,    Blocking(admin::post_cleanup),    &[]),
    route(GET,    "/v1/admin/users/{user_id}",                Admin,   Nothing, Blocking(admin::get_user),        &["months"]),
    route(DELETE, "/v1/admin/users/{user_id}",                Admin,   Nothing, Blocking(admin::delete_user),     &[]),
    route(GET,    "/v1/admin/users/{user_id}/export",         Admin,   Nothing, Blocking(admin::get_export),      &[]),
    route(POST,   "/v1/admin/users/{user_id}/plan",           Admin,   Json,    Blocking(admin::post_plan),       &[]),
    route(POST,   "/v1/admin/users/{user_id}/reset",          Admin,   Json,    Blocking(admin::post_reset),      &[]),
    route(GET,    "/v1/admin/events",                         Admin,   Nothing, Blocking(telemetry::events),      &["type", "user_id", "since", "limit", "after"]),
    route(GET,    "/v1/admin/webhooks/deliveries",            Admin,   Nothing, Blocking(telemetry::deliveries),  &["status", "limit", "before"]),
    route(GET,    "/v1/admin/webhooks/deliveries/{id}",       Admin,   Nothing, Blocking(telemetry::delivery),    &[]),
    route(POST,   "/v1/admin/webhooks/deliveries/{id}/retry", Admin,   Nothing, Blocking(telemetry::retry),       &[]),
    route(GET,    "/api/v1/admin/usage",                      Admin,   Nothing, Blocking(compat::get_usage),      &["endpoint", "userId", "period", "metric", "top", "limit", "months"]),
    route(POST,   "/api/v1/admin/usage",                      Admin,   Json,    Blocking(compat::post_usage),     &[]),
    route(GET,    "/admin",                                   Session, Nothing, Blocking(dashboard::overview),    &["period", "metric"]),
    route(GET,    "/admin/login",                             Public,  Nothing, Blocking(dashboard::login_page),  &["signed_out"]),
    route(POST,   "/admin/login",                             Public,  Form,    Blocking(dashboard::login),       &[]),
    route(POST,   "/admin/logout",                            Session, Form,    Blocking(dashboard::logout),      &[]),
    route(GET,    "/admin/users",                             Session, Nothing, Blocking(dashboard::find_user),   &["user_id"]),
    route(GET,    "/admin/users/{user_id}",                   Session, Nothing, Blocking(dashboard::user_page),   &[]),
    route(POST,   "/admin/users/{user_id}/plan",              Session, Form,    Blocking(dashboard::change_plan), &[]),
    route(POST,   "/admin/users/{user_id}/reset",             Session, Form,    Blocking(dashboard::reset),       &[]),
    route(GET,    "/admin/users/{user_id}/export",            Session, Nothing, Blocking(dashboard::export),      &[]),
    route(GET,    "/admin/users/{user_id}/erase",             Session, Nothing, Blocking(dashboard::erase_page),  &[]),
    route(POST,   "/admin/users/{user_id}/erase",             Session, Form,    Blocking(dashboard::erase),       &[]),
    route(POST,   "/admin/users/{user_id}/overrides",         Session, Form,    Blocking(dashboard::set_override),    &[]),
    route(POST,   "/admin/users/{user_id}/overrides/remove",  Session, Form,    Blocking(dashboard::remove_override), &[]),
    route(POST,   "/admin/users/{user_id}/grants",            Session, Form,    Blocking(dashboard::add_grant),       &[]),
    route(POST,   "/admin/users/{user_id}/grants/{grant_id}/revoke", Session, Form, Blocking(dashboard::revoke_grant), &[]),
    route(GET,    "/admin/accounts",                          Session, Nothing, Blocking(dashboard::accounts),    &["before", "account_id"]),
    route(GET,    "/admin/accounts/{account_id}",             Session, Nothing, Blocking(dashboard::account_page), &[]),
    route(POST,   "/admin/accounts/{account_id}/plan",        Session, Form,    Blocking(dashboard::change_account_plan), &[]),
    route(POST,   "/admin/accounts/{account_id}/overrides",   Session, Form,    Blocking(dashboard::set_override),    &[]),
    route(POST,   "/admin/accounts/{account_id}/overrides/remove", Session, Form, Blocking(dashboard::remove_override), &[]),
    route(POST,   "/admin/accounts/{account_id}/grants",      Session, Form,    Blocking(dashboard::add_grant),       &[]),
    route(POST,   "/admin/accounts/{account_id}/grants/{grant_id}/revoke", Session, Form, Blocking(dashboard::revoke_grant), &[]),
    route(GET,    "/admin/maintenance",                       Session, Nothing, Blocking(dashboard::maintenance), &["before"]),
    route(POST,   "/admin/maintenance/cleanup",               Session, Form,    Blocking(dashboard::cleanup),     &[]),
];

const fn route(
    method: Method,
    pattern: &'static str,
    access: Access,
    body: BodyKind,
    handler: Handler,
    query: &'static [&'static str],
) -> Route {
    Route { method, pattern, query, access, body, handler }
}

/// The query list of a route that takes any query: the gateway's is the proxied request's.
pub const ANY_QUERY: &[&str] = &["*"];

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const DELETE: Method = Method::DELETE;
const PATCH: Method = Method::PATCH;
const OPTIONS: Method = Method::OPTIONS;

/// Matches `path` against `pattern`; returns the decoded parameters.
fn match_pattern(pattern: &str, path: &str) -> Option<Result<Vec<String>, ApiError>> {
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    let mut params = Vec::new();
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(Ok(params)),
            (Some(expected), Some(actual)) if expected.starts_with("{*") => {
                // A tail: the rest of the path as sent, slashes and escapes kept (its one
                // user, the gateway, normalizes it the way it matches rules).
                let rest: Vec<&str> = std::iter::once(actual).chain(path_segments).collect();
                params.push(rest.join("/"));
                return pattern_segments.next().is_none().then_some(Ok(params));
            }
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

/// The methods RFC 9110 and RFC 5789 define, CONNECT aside.
fn is_standard(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ]
    .contains(method)
}

/// The route for `method` and `path`, with its parameters. `HEAD` finds the `GET` route. A
/// path that exists answers any other method 405 with `Allow`; a path that does not, 404 (or
/// 501 for a method HTTP does not define). CONNECT is 501 anywhere: its target is a host,
/// not a path, and Tally tunnels nothing.
pub fn find(method: &Method, path: &str) -> Result<(&'static Route, Vec<String>), ApiError> {
    if *method == Method::CONNECT {
        return Err(ApiError::not_implemented(method.as_str()));
    }
    let wanted = if *method == Method::HEAD { &Method::GET } else { method };
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_pattern(route.pattern, path) {
            if route.method == *wanted {
                return Ok((route, params?));
            }
            allowed.push(route.method.as_str());
            if route.method == Method::GET {
                allowed.push("HEAD");
            }
        }
    }
    match (allowed.is_empty(), is_standard(method)) {
        (false, _) => Err(ApiError::method_not_allowed(&allowed)),
        (true, true) => Err(ApiError::not_found()),
        (true, false) => Err(ApiError::not_implemented(method.as_str())),
    }
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
    fn a_tail_parameter_takes_the_rest_of_the_path_as_sent() {
        let (route, params) = find(&Method::POST, "/v1/gateway/authz/api/prompts/%41/7").unwrap();
        assert_eq!(route.pattern, "/v1/gateway/authz/{*path}");
        assert_eq!(params, ["api/prompts/%41/7"]);
        assert_eq!(find(&Method::DELETE, "/v1/gateway/authz/").unwrap().1, [""]);
        let (route, params) = find(&Method::OPTIONS, "/v1/gateway/authz").unwrap();
        assert_eq!((route.pattern, params.len()), ("/v1/gateway/authz", 0));
        assert_eq!(find(&Method::HEAD, "/v1/gateway/authz/x").unwrap().0.method, Method::GET);
        assert_eq!(find(&Method::GET, "/v1/gateway/authzx").err().unwrap().code(), "not_found");
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
        assert_eq!(find(&Method::GET, "/v1/nope").err().unwrap().code(), "not_found");
        assert_eq!(find(&Method::GET, "/v1/users/").err().unwrap().code(), "not_found");
        assert_eq!(find(&Method::GET, "/v1/track/").err().unwrap().code(), "not_found");
        let error = find(&Method::DELETE, "/v1/users/x").err().unwrap();
        assert_eq!(error.code(), "method_not_allowed");
        assert_eq!(error.headers()[0].1, "GET, HEAD, PUT");
    }

    #[test]
    fn head_finds_the_get_route_and_connect_and_unknown_methods_elsewhere_are_501() {
        assert_eq!(find(&Method::HEAD, "/healthz").unwrap().0.pattern, "/healthz");
        assert_eq!(find(&Method::HEAD, "/v1/track").err().unwrap().headers()[0].1, "POST");
        let brew = Method::from_bytes(b"BREW").unwrap();
        for method in [Method::TRACE, Method::OPTIONS, brew.clone()] {
            let error = find(&method, "/healthz").err().unwrap();
            assert_eq!((error.code(), error.headers()[0].1.to_str().unwrap()), ("method_not_allowed", "GET, HEAD"));
        }
        assert_eq!(find(&Method::TRACE, "/nowhere").err().unwrap().code(), "not_found");
        for (method, path) in [(Method::CONNECT, "/healthz"), (Method::CONNECT, ""), (brew, "/nowhere")] {
            let error = find(&method, path).err().unwrap();
            assert_eq!((error.status().as_u16(), error.code()), (501, "not_implemented"), "{method} {path}");
        }
    }

    #[test]
    fn routes_that_read_a_body_say_which() {
        for route in ROUTES {
            let reads = route.body != BodyKind::Nothing;
            if route.method == Method::GET {
                assert!(!reads, "{} {}", route.method, route.pattern);
            }
            if route.access == Access::Session && route.method == Method::POST {
                assert_eq!(route.body, BodyKind::Form, "{}", route.pattern);
            }
        }
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
