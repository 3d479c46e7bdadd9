//! `/v1/gateway/authz` against Tally directly, in each proxy's convention: nginx's
//! `X-Original-*`, Traefik's `X-Forwarded-*`, Envoy's path after the route. nginx itself in
//! front of an application is `gateway_nginx.rs`.

use crate::support::{ADMIN_KEY, Client, SERVICE_KEY, Setup, Tally, unique_user};

pub const GATEWAY_CONFIG: &str = "[gateway]\nuser_header = \"X-User-Id\"\ndefault = \"allow\"\n\
    [[gateway.rules]]\nmethod = \"POST\"\npath_prefix = \"/api/prompts\"\nmetric = \"prompts\"\namount = 1\n\
    [[gateway.rules]]\npath_prefix = \"/api/export\"\nfeature = \"git_export\"\n\
    [[gateway.rules]]\npath_prefix = \"/api/snapshots\"\nfeature = \"active_project_snapshots\"\n";

pub fn start_gateway(default: &str) -> Tally {
    Setup::new()
        .config(&format!(
            "[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\nadmin_keys = [\"{ADMIN_KEY}\"]\n{}",
            GATEWAY_CONFIG.replace("default = \"allow\"", &format!("default = \"{default}\""))
        ))
        .start()
}

/// How each proxy says which request it asks about.
#[derive(Clone, Copy, Debug)]
enum Convention {
    Nginx,
    Traefik,
    Envoy,
}

const CONVENTIONS: [Convention; 3] = [Convention::Nginx, Convention::Traefik, Convention::Envoy];

fn ask(
    client: &mut Client,
    convention: Convention,
    method: &str,
    uri: &str,
    user: Option<&str>,
) -> crate::support::Reply {
    let mut headers: Vec<(&str, &str)> = user.map(|user| ("X-User-Id", user)).into_iter().collect();
    let (authz_method, path) = match convention {
        Convention::Nginx => {
            headers.extend([("X-Original-Method", method), ("X-Original-URI", uri)]);
            ("GET", "/v1/gateway/authz".to_owned())
        }
        Convention::Traefik => {
            headers.extend([("X-Forwarded-Method", method), ("X-Forwarded-Uri", uri), ("X-Forwarded-Proto", "http")]);
            ("GET", "/v1/gateway/authz".to_owned())
        }
        Convention::Envoy => (method, format!("/v1/gateway/authz{uri}")),
    };
    client.request(authz_method, &path, &headers, None)
}

#[test]
fn gateway_each_proxy_convention_tracks_prompts_until_the_limit_then_429_with_retry_after() {
    let tally = start_gateway("allow");
    let mut client = tally.client().with_key(SERVICE_KEY);
    for convention in CONVENTIONS {
        let user = unique_user("gw");
        for n in 1..=30u64 {
            let reply = ask(&mut client, convention, "POST", "/api/prompts?draft=1", Some(&user));
            assert_eq!(reply.status, 200, "{convention:?} prompt {n}: {}", String::from_utf8_lossy(&reply.body));
            assert_eq!(reply.header("ratelimit-policy"), Some("\"prompts\";q=30"), "{convention:?}");
            let remaining = reply.header("ratelimit").unwrap().split(';').nth(1).unwrap().to_owned();
            assert_eq!(remaining, format!("r={}", 30 - n), "{convention:?}");
        }
        let refused = ask(&mut client, convention, "POST", "/api/prompts", Some(&user));
        assert_eq!((refused.status, refused.code()), (429, "limit_exceeded".to_owned()), "{convention:?}");
        let retry_after: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=31 * 86_400).contains(&retry_after), "{retry_after}");
        // The same path with another method matches no rule: the default lets it through.
        assert_eq!(ask(&mut client, convention, "GET", "/api/prompts", Some(&user)).status, 200);
        // Exactly 30 were recorded, as POST /v1/track would have; the refusal was counted.
        let view = tally.client().with_key(SERVICE_KEY).get(&format!("/v1/users/{user}")).json();
        assert_eq!(view["usage"]["prompts"]["used"], 30, "{convention:?}: {view}");
    }
}

#[test]
fn gateway_feature_rules_answer_403_off_plan_200_on_it_and_429_past_the_window() {
    let tally = start_gateway("allow");
    let mut client = tally.client().with_key(SERVICE_KEY);
    for convention in CONVENTIONS {
        let user = unique_user("gw-feature");
        let refused = ask(&mut client, convention, "GET", "/api/export/repo.git", Some(&user));
        assert_eq!((refused.status, refused.code()), (403, "feature_not_in_plan".to_owned()), "{convention:?}");
        assert_eq!(refused.json()["error"]["plan_required"], "solo");
        let put = client.put(&format!("/v1/users/{user}"), &serde_json::json!({"plan": "solo"}));
        assert_eq!(put.status, 200);
        assert_eq!(ask(&mut client, convention, "GET", "/api/export/repo.git", Some(&user)).status, 200);
        // solo: one snapshot per minute.
        let first = ask(&mut client, convention, "POST", "/api/snapshots", Some(&user));
        assert_eq!(first.status, 200, "{convention:?}");
        assert_eq!(first.header("ratelimit-policy"), Some("\"active_project_snapshots\";q=1;w=60"));
        let second = ask(&mut client, convention, "POST", "/api/snapshots", Some(&user));
        assert_eq!((second.status, second.code()), (429, "rate_limited".to_owned()), "{convention:?}");
        assert!(second.header("retry-after").is_some_and(|secs| secs.parse::<u64>().is_ok_and(|secs| secs >= 1)));
    }
}

#[test]
fn gateway_without_the_user_header_is_401_and_unmatched_requests_follow_the_default() {
    let allow = start_gateway("allow");
    let deny = start_gateway("deny");
    for convention in CONVENTIONS {
        let mut client = allow.client().with_key(SERVICE_KEY);
        let reply = ask(&mut client, convention, "POST", "/api/prompts", None);
        assert_eq!((reply.status, reply.code()), (401, "user_missing".to_owned()), "{convention:?}");
        // Unmatched: no user needed, nothing recorded.
        let open = ask(&mut client, convention, "GET", "/public/page", None);
        assert_eq!((open.status, open.json()["allowed"].clone()), (200, serde_json::json!(true)), "{convention:?}");
        let mut client = deny.client().with_key(SERVICE_KEY);
        let closed = ask(&mut client, convention, "GET", "/public/page", Some("someone"));
        assert_eq!((closed.status, closed.code()), (403, "gateway_denied".to_owned()), "{convention:?}");
        assert_eq!(ask(&mut client, convention, "POST", "/api/prompts", Some("someone")).status, 200);
    }
}

#[test]
fn gateway_needs_a_service_key_and_exactly_one_original_request() {
    let tally = start_gateway("allow");
    let anonymous = tally.client().request("GET", "/v1/gateway/authz/api/prompts", &[("X-User-Id", "u")], None);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.code(), "unauthorized");
    let mut client = tally.client().with_key(SERVICE_KEY);
    assert_eq!(client.request("GET", "/v1/gateway/authz", &[], None).status, 400);
    // A client behind Traefik adding nginx's header (or the reverse) must not pick the path checked.
    let both = [
        ("X-User-Id", "u"),
        ("X-Forwarded-Method", "POST"),
        ("X-Forwarded-Uri", "/api/prompts"),
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/harmless"),
    ];
    assert_eq!(client.request("GET", "/v1/gateway/authz", &both, None).status, 400);
    let envoy_and_header = [("X-User-Id", "u"), ("X-Original-Method", "GET"), ("X-Original-URI", "/harmless")];
    assert_eq!(client.request("POST", "/v1/gateway/authz/api/prompts", &envoy_and_header, None).status, 400);
    // nginx's URI without its method is refused, not guessed.
    assert_eq!(client.request("GET", "/v1/gateway/authz", &[("X-Original-URI", "/api/prompts")], None).status, 400);
}

#[test]
fn gateway_matches_the_path_the_application_would_see() {
    let tally = start_gateway("allow");
    let mut client = tally.client().with_key(SERVICE_KEY);
    let user = unique_user("gw-path");
    for uri in ["/api/%70rompts", "//api/prompts/", "/x/../api/prompts/7"] {
        let reply = ask(&mut client, Convention::Nginx, "POST", uri, Some(&user));
        assert!(reply.header("ratelimit").is_some(), "{uri} was not metered");
    }
    let view = client.get(&format!("/v1/users/{user}")).json();
    assert_eq!(view["usage"]["prompts"]["used"], 3, "{view}");
}
