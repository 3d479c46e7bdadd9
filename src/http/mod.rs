//! HTTP: the only module that knows JSON shapes and status codes. A request goes through
//! three plain functions: `admit` decides everything the head alone can (drain, route, open
//! access guards, auth, query, body type and size) before a byte of the body is read;
//! `respond` runs the route's handler on the body, already in memory, behind a panic guard;
//! `finish` shapes the answer (errors, `Connection: close`, HEAD, request id) and writes the
//! access log and metrics. `server.rs` calls them from the sockets; `handle` calls them on an
//! in-memory request (the fuzzer).

mod accounts;
mod admin;
mod auth;
mod batch;
mod billing;
mod body;
mod compat;
mod dashboard;
mod error;
mod export;
mod features;
mod forecasts;
mod gateway;
mod health;
mod idempotency;
mod ofrep;
mod params;
mod ratelimit;
mod request;
mod reservations;
mod routes;
pub(crate) mod server;
mod telemetry;
mod terms;
mod throttle;
mod usage;
mod users;
pub(crate) mod webhooks;

pub use auth::Access;
pub(crate) use routes::{Handler, Later};
pub use routes::{ROUTES, Route};

use crate::config::Config;
use crate::domain::Rules;
use crate::domain::ports::Store;
use crate::metrics::{Metrics, OutcomeLabels, RequestLabels, RouteLabels};
use ::http::{HeaderName, HeaderValue, Method, Response, StatusCode, header};
use auth::Caller;
use bytes::Bytes;
use error::ApiError;
use routes::BodyKind;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use throttle::FailureThrottle;

pub use body::Body;

/// A request's head (method, target, headers); the body travels beside it as bytes.
pub(crate) type Head = ::http::Request<()>;

/// What a handler produces.
pub(crate) type Outcome = Result<Response<Body>, ApiError>;

/// What every handler shares.
pub struct App {
    pub(crate) config: Config,
    pub(crate) rules: Arc<Rules>,
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    /// Dashboard logins.
    pub(crate) sessions: dashboard::Sessions,
    /// Failed authentications per client address.
    auth_failures: FailureThrottle,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl App {
    pub fn new(config: Config, store: Store, metrics: Arc<Metrics>) -> App {
        let rules = Arc::new(config.rules.clone());
        let auth_failures = FailureThrottle::new(config.auth.max_failures_per_minute);
        App {
            config,
            rules,
            sessions: dashboard::Sessions::new(Store::clone(&store)),
            store,
            metrics,
            auth_failures,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// From now on new requests are refused with 503 and `Connection: close`.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Requests between their head and their answer right now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request as in flight until the guard drops.
    fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }

    /// Answers a failed authentication from `peer`: `unauthorized` while within
    /// `auth.max_failures_per_minute`, 429 with `Retry-After` past it. Counted in
    /// `tally_auth_failures`.
    pub(crate) fn auth_failed(&self, peer: IpAddr, unauthorized: ApiError) -> ApiError {
        let (outcome, error) = match self.auth_failures.fail(peer, now_ms()) {
            throttle::Verdict::Unauthorized => ("unauthorized", unauthorized),
            throttle::Verdict::Throttled { retry_after_secs } => {
                ("throttled", ApiError::too_many_auth_failures(retry_after_secs))
            }
        };
        self.metrics.auth_failures.get_or_create(&OutcomeLabels { outcome }).inc();
        error
    }
}

/// One request on its way through a handler.
pub(crate) struct Ctx<'r> {
    pub app: &'r App,
    pub request: &'r Head,
    /// The whole body, read before the handler runs (empty for a route that takes none).
    pub body: &'r [u8],
    pub params: Vec<String>,
    /// The query parameters, already checked against the route's list.
    pub query: HashMap<String, String>,
    pub caller: Option<Caller>,
    /// The client's address (the proxy's, behind one).
    pub peer: IpAddr,
}

impl Ctx<'_> {
    pub fn json_body<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        request::json_body(self.body)
    }

    /// An HTML form's fields (the dashboard's POSTs).
    pub fn form_body(&self) -> HashMap<String, String> {
        request::form_body(self.body)
    }
}

pub(crate) use crate::app::now_ms;

pub(crate) fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
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
    let mut response = raw_json_response(error.status(), error.body().to_string().into_bytes());
    for (name, value) in error.headers() {
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

/// A request whose head passed every check: what its handler needs besides the body.
pub(crate) struct Admitted {
    route: &'static Route,
    params: Vec<String>,
    query: HashMap<String, String>,
    caller: Option<Caller>,
    /// Whether the body is to be read (the route takes one and the head declares one).
    pub read_body: bool,
    /// The most of it that may be read.
    pub max_body_bytes: u64,
}

impl Admitted {
    pub fn pattern(&self) -> &'static str {
        self.route.pattern
    }
}

/// A request answered from its head alone: the route pattern (for logs) and why.
pub(crate) struct Refused {
    pub route: &'static str,
    /// `None`: a dashboard page without a login, sent to the login page.
    error: Option<ApiError>,
}

impl Refused {
    pub fn into_outcome(self) -> Outcome {
        match self.error {
            Some(error) => Err(error),
            None => Ok(dashboard::to_login_page()),
        }
    }
}

fn refuse(route: &'static str, error: ApiError) -> Refused {
    Refused { route, error: Some(error) }
}

/// Everything decided from the head alone, in order: draining (503), route (404, 405, 501),
/// the open-access guards (403, 415), auth (401, 403, 429; a dashboard page without a login
/// goes to the login page), query parameters (400), then the body's declared size and type
/// (413, 415). `declared` is the body length the head gives (`None`: chunked, unknown).
pub(crate) fn admit(app: &App, head: &Head, peer: IpAddr, declared: Option<u64>) -> Result<Admitted, Refused> {
    if app.is_draining() {
        return Err(refuse(
            "unmatched",
            ApiError::unavailable("shutting_down", "the server is shutting down").closing(),
        ));
    }
    let (route, params) = routes::find(head.method(), head.uri().path()).map_err(|error| refuse("unmatched", error))?;
    let auth = &app.config.auth;
    if auth.is_open() && route.access != Access::Public {
        auth::check_open_access(head, route.access == Access::Session).map_err(|error| refuse(route.pattern, error))?;
    }
    let caller = match auth::authorize(auth, app.config.server.metrics_public, head, route.access) {
        Ok(caller) => caller,
        Err(error) if error.status() == StatusCode::UNAUTHORIZED => {
            return Err(refuse(route.pattern, app.auth_failed(peer, error)));
        }
        Err(error) => return Err(refuse(route.pattern, error)),
    };
    // A session is a database read.
    if route.access == Access::Session && !may_block(|| dashboard::has_visitor(app, head)) {
        return Err(Refused { route: route.pattern, error: None });
    }
    let query = request::query(head, route.query).map_err(|error| refuse(route.pattern, error))?;
    let max_body_bytes = match route.body {
        BodyKind::Events => app.config.server.max_batch_body_bytes,
        _ => app.config.server.max_body_bytes,
    };
    let read_body = request::check_body_head(route.body, head, declared, max_body_bytes)
        .map_err(|error| refuse(route.pattern, error))?;
    Ok(Admitted { route, params, query, caller, read_body, max_body_bytes })
}

/// What a handler gave: the answer, or the write it queued, to await.
pub(crate) enum Dispatched {
    Now(Outcome),
    Later(Later),
}

/// Runs the admitted request's handler on its body; a panic becomes a 500.
pub(crate) fn respond(app: &App, head: &Head, peer: IpAddr, admitted: Admitted, body: &[u8]) -> Dispatched {
    let Admitted { route, params, query, caller, .. } = admitted;
    let mut ctx = Ctx { app, request: head, body, params, query, caller, peer };
    let dispatched = catch_unwind(AssertUnwindSafe(|| match route.handler {
        Handler::Read(handler) | Handler::Blocking(handler) => Dispatched::Now(handler(&mut ctx)),
        Handler::Write(handler) => match handler(&mut ctx) {
            Ok(later) => Dispatched::Later(later),
            Err(error) => Dispatched::Now(Err(error)),
        },
    }));
    dispatched.unwrap_or_else(|_| {
        log::error!("a handler panicked on {} {}", head.method(), head.uri().path());
        Dispatched::Now(Err(ApiError::internal()))
    })
}

/// Awaits a queued write's answer; a panic while rendering it becomes a 500.
pub async fn answer_later(later: Later) -> Outcome {
    CatchUnwind(later).await.unwrap_or_else(|()| {
        log::error!("a handler panicked while answering a write");
        Err(ApiError::internal())
    })
}

/// A future whose panic is caught and returned as `Err(())`.
struct CatchUnwind(Later);

impl std::future::Future for CatchUnwind {
    type Output = Result<Outcome, ()>;

    fn poll(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(context))) {
            Ok(poll) => poll.map(Ok),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

/// Runs `work` where it may block: inside `block_in_place` on the server's multi-thread
/// runtime (the worker hands its other connections to another thread meanwhile); directly
/// elsewhere (the fuzz target's `handle`).
pub(crate) fn may_block<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// What `finish` needs of a request, taken before its head goes to a handler's thread.
pub(crate) struct Trace {
    method: &'static str,
    is_head: bool,
    request_id: String,
    started: Instant,
}

impl Trace {
    pub fn new(head: &Head, started: Instant) -> Trace {
        Trace {
            method: method_label(head.method()),
            is_head: head.method() == Method::HEAD,
            request_id: request_id(head),
            started,
        }
    }
}

/// Turns an outcome into the response sent: errors rendered as JSON (a refusal made before a
/// dashboard handler ran too), `Connection: close` when the connection must not be reused (`close`: a body was
/// left unread, or the error says so), no body for HEAD, the request id; then the access log
/// line and the request metrics.
pub(crate) fn finish(app: &App, trace: Trace, route: &'static str, outcome: Outcome, close: bool) -> Response<Body> {
    let (mut response, close) = match outcome {
        Ok(response) => (response, close),
        Err(error) => (error_response(&error), close || error.closes_connection()),
    };
    let headers = response.headers_mut();
    if close || app.is_draining() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Ok(value) = HeaderValue::from_str(&trace.request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    if trace.is_head {
        // The GET answer's headers, its length included when known (not for a stream), and
        // no body (a stream's producer sees the client gone and stops).
        if let Some(length) = http_body::Body::size_hint(response.body()).exact() {
            response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        *response.body_mut() = Body::default();
    }
    let status = response.status().as_u16();
    let elapsed = trace.started.elapsed();
    let method = trace.method;
    app.metrics.http_requests.get_or_create(&RequestLabels { route, method, status }).inc();
    app.metrics.http_duration.get_or_create(&RouteLabels { route }).observe(elapsed.as_secs_f64());
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    log::info!(
        target: "tally::access",
        method, route, status, duration_ms, request_id = trace.request_id.as_str();
        "{method} {route} {status} {duration_ms}ms"
    );
    response
}

/// Answers a request held whole in memory, through the same steps as one from a socket.
pub fn handle(app: &App, request: ::http::Request<Bytes>, peer: IpAddr) -> Response<Body> {
    let started = Instant::now();
    let _in_flight = app.enter();
    let (parts, body) = request.into_parts();
    let head = Head::from_parts(parts, ());
    let trace = Trace::new(&head, started);
    let (route, outcome) = match admit(app, &head, peer, Some(body.len() as u64)) {
        Err(refused) => (refused.route, refused.into_outcome()),
        Ok(admitted) => {
            let route = admitted.pattern();
            let body = if admitted.read_body { body } else { Bytes::new() };
            let outcome = match respond(app, &head, peer, admitted, &body) {
                Dispatched::Now(outcome) => outcome,
                Dispatched::Later(later) => block_on(answer_later(later)),
            };
            (route, outcome)
        }
    };
    finish(app, trace, route, outcome, false)
}

/// Polls `future` to its end on this thread (for `handle`, which has no runtime).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's `X-Request-Id` when it is sane (1 to 128 of `A-Z a-z 0-9 . _ : -`), else a
/// new one: it is echoed in the answer and logged, never trusted for anything else.
fn request_id(request: &Head) -> String {
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
fn method_label(method: &Method) -> &'static str {
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

/// How long to wait, after draining starts, for requests already on the wire to arrive.
pub(crate) const DRAIN_QUIET: Duration = Duration::from_millis(200);
