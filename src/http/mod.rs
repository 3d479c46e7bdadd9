//! HTTP: the only module that knows JSON shapes and status codes. `handle` wraps every
//! request (drain check, routing, auth, panic guard, access log); handlers in the route
//! modules parse input, call the domain through the store, and shape the answer.

mod admin;
mod admin_ops;
mod auth;
mod compat;
mod dashboard;
mod error;
mod features;
mod health;
mod idempotency;
mod request;
mod routes;
mod telemetry;
mod usage;
mod users;
pub mod webhooks;

pub use auth::Access;
pub use routes::{ROUTES, Route};

use crate::config::Config;
use crate::domain::Rules;
use crate::domain::ports::Store;
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use auth::Caller;
use error::ApiError;
use oxhttp::model::{Body, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use request::BodyLimits;
use serde::Serialize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What every handler shares.
pub struct App {
    pub config: Config,
    pub rules: Arc<Rules>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Dashboard logins.
    pub sessions: dashboard::Sessions,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl App {
    pub fn new(config: Config, store: Store, metrics: Arc<Metrics>) -> App {
        let rules = Arc::new(config.rules.clone());
        App {
            config,
            rules,
            store,
            metrics,
            sessions: dashboard::Sessions::default(),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// From now on new requests are refused with 503 and `Connection: close`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Requests inside a handler right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// One request on its way through a handler.
pub struct Ctx<'r> {
    pub app: &'r App,
    pub request: &'r mut Request<Body>,
    pub params: Vec<String>,
    /// The query parameters, already checked against the route's list.
    pub query: std::collections::HashMap<String, String>,
    pub caller: Option<Caller>,
    pub started: Instant,
}

impl Ctx<'_> {
    fn body_limits(&self) -> BodyLimits {
        BodyLimits { max_bytes: self.app.config.server.max_body_bytes, timeout: self.app.config.server.request_timeout }
    }

    pub fn json_body<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        request::json_body(self.request, self.body_limits(), self.started)
    }

    /// An HTML form's fields (the dashboard's POSTs).
    pub fn form_body(&mut self) -> Result<std::collections::HashMap<String, String>, ApiError> {
        request::form_body(self.request, self.body_limits(), self.started)
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => raw_json_response(status, body),
        Err(error) => {
            log::error!("cannot serialize a response: {error}");
            error_response(&ApiError::internal())
        }
    }
}

fn raw_json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = raw_json_response(error.status, error.body().to_string().into_bytes());
    for (name, value) in &error.headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The entry point oxhttp calls for every request.
pub fn handle(app: &App, request: &mut Request<Body>) -> Response<Body> {
    let started = Instant::now();
    app.in_flight.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight(&app.in_flight);
    let method = request.method().clone();
    let (route_pattern, outcome) = if app.draining.load(Ordering::SeqCst) {
        ("unmatched", Err(ApiError::unavailable("shutting_down", "the server is shutting down").closing()))
    } else {
        match catch_unwind(AssertUnwindSafe(|| route(app, request, started))) {
            Ok(outcome) => outcome,
            Err(_) => {
                log::error!("a handler panicked on {method} {}", request.uri().path());
                ("unmatched", Err(ApiError::internal()))
            }
        }
    };
    let mut response = match outcome {
        Ok(response) => response,
        Err(error) => {
            if error.close_connection {
                // oxhttp reads what is left of the body before answering, which for a huge or
                // endless body never ends: drop the body and have oxhttp close (it reads the
                // request's Connection header to decide).
                *request.body_mut() = Body::empty();
                request.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // oxhttp strips a response's Connection header; the client sees the close itself.
            error_response(&error)
        }
    };
    let request_id = request_id(request);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let method = method_label(&method);
    app.metrics.http_requests.get_or_create(&RequestLabels { route: route_pattern, method, status }).inc();
    app.metrics.http_duration.get_or_create(&RouteLabels { route: route_pattern }).observe(elapsed.as_secs_f64());
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    log::info!(
        target: "tally::access",
        method, route = route_pattern, status, duration_ms, request_id = request_id.as_str();
        "{method} {route_pattern} {status} {duration_ms}ms"
    );
    response
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's `X-Request-Id` when it is sane (1 to 128 of `A-Z a-z 0-9 . _ : -`), else a
/// new one: it is echoed in the answer and logged, never trusted for anything else.
fn request_id(request: &Request<Body>) -> String {
    let given = request.headers().get(X_REQUEST_ID).and_then(|value| value.to_str().ok());
    match given {
        Some(id)
            if (1..=128).contains(&id.len())
                && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"._:-".contains(&byte)) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::new_v4().simple().to_string(),
    }
}

/// A bounded label for the method: arbitrary tokens must not grow the metrics.
fn method_label(method: &oxhttp::model::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

fn route(app: &App, request: &mut Request<Body>, started: Instant) -> (&'static str, Result<Response<Body>, ApiError>) {
    let (route, params) = match routes::find(request.method(), request.uri().path()) {
        Ok(found) => found,
        Err(error) => return ("unmatched", Err(error)),
    };
    if app.config.auth.is_open() && route.access != Access::Public && !auth::addressed_to_loopback(request) {
        // With auth off, only clients that name this host as loopback are served: a web page
        // elsewhere (DNS rebinding) or a reverse proxy passing a public Host gets nothing.
        return (
            route.pattern,
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "auth is off, so only requests addressed to localhost are served; configure [auth] keys to serve others",
            )),
        );
    }
    let caller = match auth::authorize(&app.config.auth, app.config.server.metrics_public, request, route.access) {
        Ok(caller) => caller,
        Err(error) => return (route.pattern, Err(error)),
    };
    let query = match request::query(request, route.query) {
        Ok(query) => query,
        Err(error) => return (route.pattern, Err(error)),
    };
    let mut ctx = Ctx { app, request, params, query, caller, started };
    (route.pattern, (route.handler)(&mut ctx))
}

/// How long to wait, after draining starts, for requests already on the wire to arrive.
pub const DRAIN_QUIET: Duration = Duration::from_millis(200);
