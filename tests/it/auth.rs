//! Auth over every route in the router's own table: a new route cannot be forgotten.

use crate::support::{ADMIN_KEY, SERVICE_KEY, Setup};
use tally::http::{Access, ROUTES};

fn path_of(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| if segment.starts_with('{') { "someone" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_route_answers_401_without_a_valid_key_and_403_to_a_service_key_on_admin_routes() {
    let tally = Setup::new()
        .config(&format!(
            "[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n"
        ))
        .start();
    let mut checked = 0;
    for route in ROUTES {
        let path = path_of(route.pattern);
        let method = route.method.as_str();
        let json = [("Content-Type", "application/json")];
        let send = |key: Option<&str>| {
            let mut client = tally.client();
            if let Some(key) = key {
                client = client.with_key(key);
            }
            client.request(method, &path, &json, Some(b"{}"))
        };
        let anonymous = send(None).status;
        let wrong = send(Some("not-a-key")).status;
        let service = send(Some(SERVICE_KEY)).status;
        let admin = send(Some(ADMIN_KEY)).status;
        match route.access {
            Access::Public => {
                assert!(![401, 403].contains(&anonymous), "{method} {path} is public");
            }
            Access::Service => {
                assert_eq!((anonymous, wrong), (401, 401), "{method} {path}");
                assert!(![401, 403].contains(&service), "{method} {path}: service key refused");
                assert!(![401, 403].contains(&admin), "{method} {path}: admin key refused");
            }
            Access::Admin => {
                assert_eq!((anonymous, wrong, service), (401, 401, 403), "{method} {path}");
                assert!(![401, 403].contains(&admin), "{method} {path}: admin key refused");
            }
            Access::Metrics => {
                // Admin-only unless server.metrics_public is set (not here).
                assert_eq!((anonymous, wrong, service), (401, 401, 403), "{method} {path}");
                assert_eq!(admin, 200, "{method} {path}");
            }
            Access::Session => {
                // Dashboard pages need a login session; a bearer key is not one.
                for status in [anonymous, wrong, service, admin] {
                    assert_eq!(status, 303, "{method} {path} without a session goes to the login page");
                }
                assert_eq!(reply_location(&tally, method, &path).as_deref(), Some("/admin/login"), "{method} {path}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, ROUTES.len());
    assert!(ROUTES.iter().any(|route| route.access == Access::Service));
}

fn reply_location(tally: &crate::support::Tally, method: &str, path: &str) -> Option<String> {
    let reply =
        tally.client().request(method, path, &[("Content-Type", "application/x-www-form-urlencoded")], Some(b""));
    reply.header("location").map(str::to_owned)
}

#[test]
fn bearer_scheme_is_case_insensitive_and_keys_are_exact() {
    let tally = Setup::new().config(&format!("[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\n")).start();
    let mut client = tally.client();
    let lower = client.request("GET", "/v1/users/x", &[("Authorization", &format!("bearer {SERVICE_KEY}"))], None);
    assert_eq!(lower.status, 404, "authenticated, and the user is unknown");
    let prefix = client.request("GET", "/v1/users/x", &[("Authorization", &format!("Bearer {SERVICE_KEY}x"))], None);
    assert_eq!(prefix.status, 401);
    let basic = client.request("GET", "/v1/users/x", &[("Authorization", &format!("Basic {SERVICE_KEY}"))], None);
    assert_eq!(basic.status, 401);
    assert_eq!(basic.header("www-authenticate"), Some("Bearer"));
}

#[test]
fn with_auth_off_only_requests_addressed_to_localhost_are_served() {
    let tally = crate::support::Tally::start_default();
    let mut client = tally.client();
    for host in ["localhost", "127.0.0.1:9", "[::1]"] {
        let reply = client.request("GET", "/v1/users/x", &[("Host", host)], None);
        assert_eq!(reply.status, 404, "{host}: served (the user is unknown)");
    }
    // A page elsewhere reaching this port through DNS rebinding, or a proxy passing its
    // public name, names another host.
    for host in ["evil.example", "tally.example.com:443", "10.0.0.5"] {
        let reply = client.request("GET", "/v1/users/x", &[("Host", host)], None);
        assert_eq!((reply.status, reply.code().as_str()), (403, "forbidden"), "{host}");
        let track = client.request(
            "POST",
            "/v1/track",
            &[("Host", host), ("Content-Type", "application/json")],
            Some(br#"{"user_id": "x", "metric": "prompts"}"#),
        );
        assert_eq!(track.status, 403, "{host}");
    }
    assert_eq!(client.request("GET", "/healthz", &[("Host", "evil.example")], None).status, 200, "probes stay open");
    assert_eq!(client.get("/v1/users/x").status, 404, "nothing was recorded");
}
