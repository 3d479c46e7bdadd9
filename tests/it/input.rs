//! Bad input of every kind gets a clear 4xx and changes nothing; none gets a 5xx. Includes
//! the request that brings down tiny_http (a huge declared Content-Length).

use crate::support::{Setup, Tally, read_reply, usage};
use serde_json::json;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn malformed_bodies_get_400_with_the_problem_named() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let cases: &[(&str, &str, &str)] = &[
        ("{\"user_id\": \"u\", \"metric\": ", "invalid_request", "EOF"),
        ("[\"u\", \"prompts\"]", "invalid_request", "object"),
        ("{\"user_id\": 5, \"metric\": \"prompts\"}", "invalid_request", "invalid type"),
        ("{\"user_id\": \"u\", \"metric\": \"prompts\", \"colour\": 1}", "invalid_request", "colour"),
        ("{\"user_id\": \"u\"}", "invalid_request", "metric"),
        ("{\"user_id\": \"u\", \"metric\": \"prompts\", \"amount\": 0}", "invalid_request", "amount"),
        ("{\"user_id\": \"u\", \"metric\": \"prompts\", \"amount\": -1}", "invalid_request", "-1"),
        ("{\"user_id\": \"u\", \"metric\": \"prompts\", \"amount\": 1.5}", "invalid_request", "1.5"),
        ("{\"user_id\": \"u\", \"metric\": \"prompts\", \"amount\": 9007199254740992}", "invalid_request", "amount"),
        ("{\"user_id\": \"u\", \"metric\": \"prompts\", \"amount\": null}", "invalid_request", "null"),
        ("{\"user_id\": \"u\", \"metric\": \"prompts\", \"amount\": \"5\"}", "invalid_request", "string"),
        ("{\"user_id\": \"u\", \"metric\": \"prompts\", \"enforce\": \"no\"}", "invalid_request", "bool"),
        ("{\"user_id\": \"u\", \"metric\": \"prompts\", \"timestamp\": \"yesterday\"}", "invalid_request", "RFC 3339"),
        ("{\"user_id\": \"\", \"metric\": \"prompts\"}", "invalid_request", "empty"),
        ("{\"user_id\": \"a b\", \"metric\": \"prompts\"}", "invalid_request", "' '"),
        ("{\"user_id\": \"u\", \"metric\": \"tokens\"}", "unknown_metric", "tokens"),
    ];
    for (body, code, hint) in cases {
        for path in ["/v1/track", "/v1/check"] {
            if path == "/v1/check" && body.contains("enforce") {
                continue;
            }
            let reply = client.request("POST", path, &[("Content-Type", "application/json")], Some(body.as_bytes()));
            assert_eq!(reply.status, 400, "{path} {body}");
            let error = reply.json()["error"].clone();
            assert_eq!(error["code"], *code, "{path} {body}");
            let message = error["message"].as_str().unwrap();
            assert!(message.contains(hint), "{path} {body}: message {message:?} should mention {hint:?}");
        }
    }
    let long_id = "x".repeat(129);
    assert_eq!(client.post("/v1/track", &usage(&long_id, "prompts", json!({}))).status, 400);
    assert_eq!(client.get("/v1/users/u").status, 404, "no bad request created a user");
}

#[test]
fn sql_looking_input_is_data() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    // Quotes are outside the user id alphabet, so the worst an id can hold is SQL comment
    // and operator characters: stored and returned verbatim.
    let user = "1|OR|1--x:y@z+w.v";
    assert_eq!(client.post("/v1/track", &usage(user, "prompts", json!({}))).status, 200);
    assert_eq!(client.get(&format!("/v1/users/{user}")).json()["user_id"], user);
    let quoted = client.get("/v1/users/x%27%3B%20DROP%20TABLE%20users%3B--");
    assert_eq!(quoted.status, 400);
    let reply = client.post("/v1/track", &usage("u", "prompts'; DROP TABLE users; --", json!({})));
    assert_eq!(reply.code(), "unknown_metric");
    let reply =
        client.post("/v1/check", &usage("u", "prompts", json!({ "timestamp": "'; DELETE FROM usage_counters; --" })));
    assert_eq!(reply.status, 400);
    assert_eq!(client.get(&format!("/v1/users/{user}")).json()["usage"]["prompts"]["used"], 1);
}

#[test]
fn wrong_content_type_is_415_and_unknown_routes_404_and_wrong_methods_405() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let body = usage("u", "prompts", json!({})).to_string();
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let headers: Vec<(&str, &str)> = content_type.map(|value| ("Content-Type", value)).into_iter().collect();
        let reply = client.request("POST", "/v1/track", &headers, Some(body.as_bytes()));
        assert_eq!((reply.status, reply.code().as_str()), (415, "unsupported_media_type"), "{content_type:?}");
    }
    assert_eq!(client.get("/v1/nothing").code(), "not_found");
    let reply = client.get("/v1/track");
    assert_eq!((reply.status, reply.header("allow")), (405, Some("POST")));
    assert_eq!(client.get("/v1/users/u").status, 404, "nothing was recorded");
}

#[test]
fn body_over_max_body_bytes_is_413() {
    let tally = Setup::new().server("max_body_bytes = 1024").start();
    let mut client = tally.client();
    let padding = "x".repeat(1024);
    let big = format!("{{\"user_id\": \"u\", \"metric\": \"prompts\", \"pad\": \"{padding}\"}}");
    let reply = client.request("POST", "/v1/track", &[("Content-Type", "application/json")], Some(big.as_bytes()));
    assert_eq!((reply.status, reply.code().as_str()), (413, "payload_too_large"));
    // At the edge: exactly max_body_bytes is read (and then refused only for its content).
    let mut exact = String::from("{\"user_id\": \"u\", \"metric\": \"prompts\", \"amount\": 1}");
    exact.push_str(&" ".repeat(1024 - exact.len()));
    assert_eq!(exact.len(), 1024);
    let reply = client.request("POST", "/v1/track", &[("Content-Type", "application/json")], Some(exact.as_bytes()));
    assert_eq!(reply.status, 200);
}

#[test]
fn huge_declared_content_length_is_refused_and_the_server_survives() {
    let tally = Tally::start_default();
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!(
        "POST /v1/track HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100000000000000\r\n\r\n{{\"user_id\"",
        tally.addr
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let reply = read_reply(&mut reader);
    assert_eq!((reply.status, reply.code().as_str()), (413, "payload_too_large"));
    // The server does not try to read 100 TB: it closes the connection after answering.
    assert_eq!(reader.read(&mut [0u8; 16]).unwrap(), 0);
    let health = tally.client().get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
}

#[test]
fn health_and_readiness_and_the_spec_are_served() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    assert_eq!(client.get("/healthz").json()["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(client.get("/readyz").json()["status"], "ready");
    let spec = client.get("/openapi.yaml");
    assert_eq!(spec.header("content-type"), Some("application/yaml"));
    assert!(String::from_utf8_lossy(&spec.body).contains("/v1/track"));
}

#[test]
fn every_route_refuses_a_query_parameter_it_does_not_take() {
    let tally = Tally::start_default();
    // The gateway takes any query: it is the proxied request's (tests/it/gateway.rs).
    for route in tally::http::ROUTES.iter().filter(|route| route.query != ["*"]) {
        let path = route
            .pattern
            .split('/')
            .map(|segment| if segment.starts_with('{') { "someone" } else { segment })
            .collect::<Vec<_>>()
            .join("/");
        // With auth off a state-changing request must say it is JSON (a browser form cannot).
        let json = [("Content-Type", "application/json")];
        let reply = tally.client().request(route.method.as_str(), &format!("{path}?zz_unknown=1"), &json, None);
        assert_eq!(reply.status, 400, "{} {}", route.method, route.pattern);
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains("zz_unknown"));
    }
}
