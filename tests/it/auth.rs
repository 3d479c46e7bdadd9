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
    // Two failures per route from one address: more than the default allowance per minute.
    let tally = Setup::new()
        .config(&format!(
            "[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n\
             max_failures_per_minute = 1000\n"
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

/// The request Chromium sends for a cross-site `<form method="post">` with no fields,
/// submitted from a page on https://evil.example to this server's address.
fn cross_site_form_post(host: &str, path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Connection: keep-alive\r\n\
         Content-Length: 0\r\n\
         Cache-Control: max-age=0\r\n\
         sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n\
         sec-ch-ua-mobile: ?0\r\n\
         sec-ch-ua-platform: \"Linux\"\r\n\
         Origin: https://evil.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Upgrade-Insecure-Requests: 1\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
         Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8\r\n\
         Sec-Fetch-Site: cross-site\r\n\
         Sec-Fetch-Mode: navigate\r\n\
         Sec-Fetch-User: ?1\r\n\
         Sec-Fetch-Dest: document\r\n\
         Referer: https://evil.example/\r\n\
         Accept-Encoding: gzip, deflate, br, zstd\r\n\
         Accept-Language: en-US,en;q=0.9\r\n\r\n"
    )
}

/// Drops the header lines starting with any of `names` from a raw request.
fn without(request: &str, names: &[&str]) -> String {
    request.split_inclusive("\r\n").filter(|line| !names.iter().any(|name| line.starts_with(name))).collect()
}

#[test]
fn with_auth_off_a_cross_site_form_post_changes_nothing() {
    let tally = crate::support::Tally::start_default();
    let mut client = tally.client();
    crate::support::track(&mut client, "alice", "prompts", 7);
    let host = format!("localhost:{}", tally.addr.port());
    let path = "/v1/admin/users/alice/reset";
    let browser = cross_site_form_post(&host, path);
    // As a current browser sends it, and as an older one that sends neither Sec-Fetch-Site
    // nor Origin: each defence refuses it on its own.
    let cases = [
        (browser.clone(), 403),
        (without(&browser, &["Sec-Fetch-"]), 403),
        (without(&browser, &["Origin:"]), 403),
        (without(&browser, &["Sec-Fetch-", "Origin:"]), 415),
        (without(&browser, &["Sec-Fetch-", "Origin:", "Content-Type:"]), 415),
    ];
    for (request, status) in cases {
        let reply = client.send_raw(request.as_bytes());
        assert_eq!(reply.status, status, "{request}");
    }
    // The same form as a JSON request with another Origin (a page cannot send it without a
    // CORS preflight, which Tally never answers; refused anyway).
    let scripted = client.request(
        "POST",
        path,
        &[("Host", &host), ("Content-Type", "application/json"), ("Origin", "http://localhost:3000")],
        Some(b"{}"),
    );
    assert_eq!(scripted.status, 403);
    let user = client.get("/v1/users/alice").json();
    assert_eq!(user["usage"]["prompts"]["used"], 7, "nothing was reset");
    // What a local tool sends still works, with or without a same-origin Origin.
    let json = [("Content-Type", "application/json")];
    assert_eq!(client.request("POST", path, &json, None).status, 200, "an empty JSON request");
    let same_origin = format!("http://{host}");
    let reply = client.request(
        "POST",
        path,
        &[("Host", &host), ("Content-Type", "application/json"), ("Origin", &same_origin)],
        Some(b"{}"),
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn with_auth_off_a_request_through_a_proxy_is_refused() {
    let tally = crate::support::Tally::start_default();
    let mut client = tally.client();
    // nginx's default proxy_pass sends Host: 127.0.0.1:PORT, which the Host check accepts.
    for (name, value) in [
        ("Forwarded", "for=203.0.113.9;proto=https"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Host", "tally.example.com"),
        ("X-Forwarded-Proto", "https"),
        ("X-Real-IP", "203.0.113.9"),
        ("Via", "1.1 proxy"),
    ] {
        let reply = client.request("GET", "/v1/users/x", &[("Host", "127.0.0.1:8080"), (name, value)], None);
        assert_eq!((reply.status, reply.code().as_str()), (403, "forbidden"), "{name}");
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains(&name.to_ascii_lowercase()));
    }
    assert_eq!(client.get("/v1/users/x").status, 404, "a direct local request is served");
}

#[test]
fn failed_authentications_past_the_limit_get_429_and_a_valid_key_never_does() {
    let tally = Setup::new()
        .config(&format!(
            "[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n\
             max_failures_per_minute = 5\n"
        ))
        .start();
    let mut guesser = tally.client().with_key("a-guessed-key-000000");
    for attempt in 0..5 {
        assert_eq!(guesser.get("/v1/users/x").status, 401, "attempt {attempt}");
    }
    let throttled = guesser.get("/v1/users/x");
    assert_eq!((throttled.status, throttled.code().as_str()), (429, "too_many_auth_failures"));
    let retry_after: u64 = throttled.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(tally.client().get("/v1/users/x").status, 429, "no key at all is a failure too");
    // A valid key from the same address is served as ever.
    let mut service = tally.client().with_key(SERVICE_KEY);
    for _ in 0..20 {
        assert_eq!(service.get("/v1/users/x").status, 404);
    }
    // The dashboard's sign-in counts against the same allowance.
    let mut browser = tally.client();
    let page = browser.get("/admin/login");
    let cookie = page.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let csrf = cookie.split_once('=').unwrap().1.to_owned();
    let form = format!("csrf={csrf}&key=wrong-admin-key-0000");
    let reply = browser.request(
        "POST",
        "/admin/login",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", &cookie)],
        Some(form.as_bytes()),
    );
    assert_eq!(reply.status, 429);
    assert!(reply.header("retry-after").is_some());
    let form = format!("csrf={csrf}&key={ADMIN_KEY}");
    let reply = browser.request(
        "POST",
        "/admin/login",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", &cookie)],
        Some(form.as_bytes()),
    );
    assert_eq!(reply.status, 303, "the right key signs in while the address is throttled");
    let metrics = tally.client().with_key(ADMIN_KEY).get("/metrics");
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("tally_auth_failures_total{outcome=\"unauthorized\"} 5"), "{text}");
    assert!(text.contains("tally_auth_failures_total{outcome=\"throttled\"} 3"), "{text}");
}
