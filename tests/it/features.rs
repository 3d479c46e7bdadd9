//! Feature gating and rate-limited features against the real server: the default plans'
//! matrix, exactness under concurrency, rolling windows, restarts, bypass and idempotency.

use crate::support::{Client, Setup, Tally};
use serde_json::{Value, json};

fn feature(user: &str, feature: &str) -> Value {
    json!({ "user_id": user, "feature": feature })
}

/// Plans with a rate-limited feature sized for a test.
fn window_config(limit: u32, window_secs: u32) -> String {
    format!(
        "[metrics]\nprompts = {{ unit = \"prompts\" }}\n\
         [plans.trial]\nprice_cents = 0\nlimits = {{ prompts = \"unlimited\" }}\n\
         features = {{ export = {{ limit = {limit}, window_secs = {window_secs} }}, beta = false }}\n\
         [plans.pro]\nprice_cents = 100\nlimits = {{ prompts = \"unlimited\" }}\n\
         features = {{ export = {{ per_minute = 100 }}, beta = true }}\n"
    )
}

fn set_plan(client: &mut Client, user: &str, plan: &str) {
    assert_eq!(client.put(&format!("/v1/users/{user}"), &json!({ "plan": plan })).status, 200);
}

#[test]
fn default_plans_grant_features_as_the_design_says() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    // (plan, feature, granted, limit, plan_required)
    type Row<'a> = (&'a str, &'a str, bool, Option<u64>, Option<&'a str>);
    let matrix: &[Row] = &[
        ("trial", "git_export", false, None, Some("solo")),
        ("trial", "multi_user", false, None, Some("teams")),
        ("trial", "active_project_snapshots", false, Some(0), Some("solo")),
        ("solo", "git_export", true, None, None),
        ("solo", "multi_user", false, None, Some("teams")),
        ("solo", "active_project_snapshots", true, Some(1), None),
        ("teams", "git_export", true, None, None),
        ("teams", "multi_user", true, None, None),
        ("teams", "active_project_snapshots", true, Some(10), None),
    ];
    for &(plan, name, granted, limit, required) in matrix {
        let user = format!("{plan}-{name}");
        set_plan(&mut client, &user, plan);
        let check = client.post("/v1/features/check", &feature(&user, name));
        assert_eq!(check.status, 200);
        let check = check.json();
        assert_eq!(check["allowed"], granted, "{plan} {name}");
        assert_eq!(check["plan"], plan);
        assert_eq!(check["kind"], if limit.is_some() { "rate" } else { "boolean" });
        assert_eq!(check["limit"].as_u64(), limit, "{plan} {name}");
        assert_eq!(check["window_secs"].as_u64(), limit.map(|_| 60));
        assert_eq!(check["remaining_in_window"].as_u64(), limit);
        assert_eq!(check["plan_required"].as_str(), required, "{plan} {name}");
        assert_eq!(check["bypass"], false);

        let used = client.post("/v1/features/use", &feature(&user, name));
        if granted {
            assert_eq!(used.status, 200, "{plan} {name}");
            let body = used.json();
            assert_eq!(body["allowed"], true);
            assert_eq!(body["remaining_in_window"].as_u64(), limit.map(|limit| limit - 1));
        } else {
            assert_eq!(used.status, 403, "{plan} {name}");
            let error = &used.json()["error"];
            assert_eq!(error["code"], "feature_not_in_plan");
            assert_eq!((error["feature"].as_str(), error["plan"].as_str()), (Some(name), Some(plan)));
            assert_eq!(error["user_id"].as_str(), Some(user.as_str()), "like limit_exceeded");
            assert_eq!(error["plan_required"].as_str(), required);
        }
    }
    // solo: one snapshot a minute; the second is refused.
    let second = client.post("/v1/features/use", &feature("solo-active_project_snapshots", "active_project_snapshots"));
    assert_eq!((second.status, second.code().as_str()), (429, "rate_limited"));
    // The user view lists every feature.
    let view = client.get("/v1/users/solo-active_project_snapshots").json();
    assert_eq!(view["features"]["git_export"], json!({ "allowed": true, "refused": 0, "source": "plan" }));
    assert_eq!(view["features"]["multi_user"], json!({ "allowed": false, "refused": 0, "source": "plan" }));
    assert_eq!(
        view["features"]["active_project_snapshots"],
        json!({ "allowed": false, "refused": 1, "limit": 1, "window_secs": 60, "remaining_in_window": 0, "source": "plan" })
    );
}

#[test]
fn fifty_concurrent_uses_against_a_limit_of_ten_pass_exactly_ten() {
    let tally = Setup::new().config(&window_config(10, 60)).start();
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let mut client = tally.client();
            std::thread::spawn(move || client.post("/v1/features/use", &feature("racer", "export")))
        })
        .collect();
    let replies: Vec<_> = handles.into_iter().map(|handle| handle.join().unwrap()).collect();
    assert_eq!(replies.iter().filter(|reply| reply.status == 200).count(), 10);
    assert_eq!(replies.iter().filter(|reply| reply.status == 429).count(), 40);

    let eleventh = tally.client().post("/v1/features/use", &feature("racer", "export"));
    assert_eq!(eleventh.status, 429);
    let retry_after: u64 = eleventh.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let error = &eleventh.json()["error"];
    assert_eq!(error["code"], "rate_limited");
    assert_eq!((error["limit"].as_u64(), error["window_secs"].as_u64()), (Some(10), Some(60)));
    assert_eq!(
        (error["user_id"].as_str(), error["plan"].as_str()),
        (Some("racer"), Some("trial")),
        "like limit_exceeded"
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("plan trial allows 10 uses of export per minute; retry in "), "{message}");
    let retry_after_ms = error["retry_after_ms"].as_u64().unwrap();
    assert_eq!(retry_after_ms.div_ceil(1000), retry_after, "header and body agree");
}

#[test]
fn the_window_rolls_a_use_back_in_once_the_oldest_leaves() {
    let tally = Setup::new().config(&window_config(2, 1)).start();
    let mut client = tally.client();
    assert_eq!(client.post("/v1/features/use", &feature("roller", "export")).status, 200);
    assert_eq!(client.post("/v1/features/use", &feature("roller", "export")).status, 200);
    let refused = client.post("/v1/features/use", &feature("roller", "export"));
    assert_eq!(refused.status, 429);
    let wait_ms = refused.json()["error"]["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1000).contains(&wait_ms), "{wait_ms}");
    std::thread::sleep(std::time::Duration::from_millis(wait_ms));
    let after = client.post("/v1/features/use", &feature("roller", "export"));
    assert_eq!(after.status, 200, "the window moved past the first use after retry_after_ms");
}

#[test]
fn a_restart_keeps_the_window() {
    let tally = Setup::new().config(&window_config(2, 3600)).start();
    let mut client = tally.client();
    for _ in 0..2 {
        assert_eq!(client.post("/v1/features/use", &feature("keeper", "export")).status, 200);
    }
    assert_eq!(client.post("/v1/features/use", &feature("keeper", "export")).status, 429);
    let tally = tally.restart();
    let mut client = tally.client();
    assert_eq!(client.post("/v1/features/use", &feature("keeper", "export")).status, 429);
    let check = client.post("/v1/features/check", &feature("keeper", "export")).json();
    assert_eq!((check["allowed"].as_bool(), check["remaining_in_window"].as_u64()), (Some(false), Some(0)));
}

#[test]
fn bypass_users_are_always_allowed_and_their_uses_recorded() {
    let tally = Setup::new().config(&window_config(5, 3600)).env("ADMIN_USER_IDS", "root").start();
    let mut client = tally.client();
    for _ in 0..3 {
        let reply = client.post("/v1/features/use", &feature("root", "export"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["bypass"], true);
    }
    assert_eq!(client.post("/v1/features/use", &feature("root", "beta")).status, 200);
    // The three uses were recorded: the plan's window of 5 has 2 left.
    let check = client.post("/v1/features/check", &feature("root", "export")).json();
    assert_eq!((check["allowed"].as_bool(), check["remaining_in_window"].as_u64()), (Some(true), Some(2)));
}

#[test]
fn unknown_features_and_bad_bodies_are_400_and_change_nothing() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let reply = client.post("/v1/features/use", &feature("u", "teleport"));
    assert_eq!((reply.status, reply.code().as_str()), (400, "unknown_feature"));
    for body in [
        json!({ "user_id": "u" }),
        json!({ "user_id": "u", "feature": "git_export", "x": 1 }),
        json!({ "user_id": "a b", "feature": "git_export" }),
    ] {
        for path in ["/v1/features/check", "/v1/features/use"] {
            let reply = client.post(path, &body);
            assert_eq!((reply.status, reply.code().as_str()), (400, "invalid_request"), "{path} {body}");
        }
    }
    assert_eq!(client.get("/v1/users/u").status, 404);
}

#[test]
fn a_use_is_idempotent_under_its_key() {
    let tally = Setup::new().config(&window_config(5, 3600)).start();
    let mut client = tally.client();
    let body = feature("retrier", "export").to_string();
    let send = |client: &mut Client, key: &str| {
        client.request(
            "POST",
            "/v1/features/use",
            &[("Content-Type", "application/json"), ("Idempotency-Key", key)],
            Some(body.as_bytes()),
        )
    };
    let first = send(&mut client, "snap-1");
    assert_eq!(first.json()["remaining_in_window"], 4);
    for _ in 0..3 {
        let again = send(&mut client, "snap-1");
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.body, first.body);
    }
    let fresh = send(&mut client, "snap-2");
    assert_eq!(fresh.json()["remaining_in_window"], 3, "the replays counted nothing");
}

#[test]
fn a_replayed_refusal_keeps_its_status_body_and_retry_after() {
    let tally = Setup::new().config(&window_config(1, 3600)).start();
    let mut client = tally.client();
    let body = feature("retrier", "export").to_string();
    let send = |client: &mut Client, key: &str| {
        client.request(
            "POST",
            "/v1/features/use",
            &[("Content-Type", "application/json"), ("Idempotency-Key", key)],
            Some(body.as_bytes()),
        )
    };
    let allowed = send(&mut client, "use-1");
    assert_eq!(allowed.status, 200);
    let refused = send(&mut client, "use-2");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.code(), "rate_limited");
    let message = refused.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("plan trial allows 1 use of export per hour; retry in "), "{message}");
    let retry_after = refused.header("retry-after").expect("a fresh 429 carries Retry-After").to_owned();
    assert!(retry_after.parse::<u64>().unwrap() > 3500, "about an hour: {retry_after}");
    for _ in 0..2 {
        let replayed = send(&mut client, "use-2");
        assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
        assert_eq!(replayed.status, 429, "the original status");
        assert_eq!(replayed.body, refused.body, "the original body");
        assert_eq!(replayed.header("retry-after"), Some(retry_after.as_str()), "the original Retry-After");
    }
    let replayed_allowed = send(&mut client, "use-1");
    assert_eq!((replayed_allowed.status, &replayed_allowed.body), (200, &allowed.body));
    assert_eq!(replayed_allowed.header("retry-after"), None, "headers belong to their answer only");

    // Survives a restart: the headers are stored with the answer, not recomputed.
    let tally = tally.restart();
    let mut client = tally.client();
    let replayed = send(&mut client, "use-2");
    assert_eq!((replayed.status, replayed.header("retry-after")), (429, Some(retry_after.as_str())));
}
