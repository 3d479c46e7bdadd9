//! Fuzzes request handling end to end, without a socket: the first byte picks a route with a
//! JSON body, the second a content type, the rest is the body; the request goes through
//! `tally::http::handle` (the same admit, respond and finish steps as a request from a
//! socket) against a real store. Whatever the bytes, the answer is never a 5xx and nothing
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use http::{Method, Request};
use std::sync::OnceLock;
use tally::http::App;

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tally-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "[database]\npath = {:?}\nsynchronous = \"normal\"\n",
            dir.join("tally.db").display().to_string()
        );
        let config = tally::config::Config::from_toml("fuzz", &text, &|_| None).unwrap();
        let metrics = std::sync::Arc::new(tally::metrics::Metrics::new());
        let store = tally::store::open(&config.database, metrics.clone()).unwrap();
        App::new(config, store, metrics)
    })
}

const ROUTES: [(&str, &str); 8] = [
    ("POST", "/v1/check"),
    ("POST", "/v1/track"),
    ("POST", "/v1/features/check"),
    ("POST", "/v1/features/use"),
    ("PUT", "/v1/users/fuzz-user"),
    ("POST", "/v1/admin/users/fuzz-user/reset"),
    ("POST", "/v1/admin/cleanup"),
    ("POST", "/api/v1/admin/usage"),
];

const CONTENT_TYPES: [&str; 3] = ["application/json", "application/json; charset=utf-8", "text/plain"];

fuzz_target!(|data: &[u8]| {
    let [route, content_type, body @ ..] = data else {
        return;
    };
    let (method, path) = ROUTES[*route as usize % ROUTES.len()];
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(format!("http://localhost{path}"))
        .header("content-type", CONTENT_TYPES[*content_type as usize % CONTENT_TYPES.len()])
        .body(bytes::Bytes::copy_from_slice(body))
        .unwrap();
    let response = tally::http::handle(app(), request, std::net::Ipv4Addr::LOCALHOST.into());
    assert!(response.status().as_u16() < 500, "{method} {path} answered {}", response.status());
});
