//! `/v1/check` and `/v1/track`: limits, atomicity under concurrency, rollover, idempotency,
//! bypass and the tracking switch, each against the real server.

use crate::support::{Setup, Tally, unique_user, usage};
use chrono::{Datelike, Duration, Utc};
use serde_json::json;

fn stored(tally: &Tally, user: &str, metric: &str, period: Option<&str>) -> u64 {
    let path = match period {
        Some(period) => format!("/v1/users/{user}?period={period}"),
        None => format!("/v1/users/{user}"),
    };
    let reply = tally.client().get(&path);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()["usage"][metric]["used"].as_u64().unwrap()
}

#[test]
fn trial_allows_30_prompts_then_refuses_with_upgrade_hint() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let user = unique_user("trial");
    for n in 1..=30 {
        let reply = client.post("/v1/track", &usage(&user, "prompts", json!({})));
        assert_eq!(reply.status, 200);
        let body = reply.json();
        assert_eq!(body["used"], n);
        assert_eq!(body["recorded"], true);
        assert_eq!(body["remaining"], 30 - n);
    }
    let refused = client.post("/v1/track", &usage(&user, "prompts", json!({})));
    assert_eq!(refused.status, 429);
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "limit_exceeded");
    assert_eq!(error["upgrade_to"], "solo");
    assert_eq!(error["plan"], "trial");
    assert_eq!(
        (error["used"].as_u64(), error["limit"].as_u64(), error["remaining"].as_u64()),
        (Some(30), Some(30), Some(0))
    );
    assert_eq!(stored(&tally, &user, "prompts", None), 30);

    let check = client.post("/v1/check", &usage(&user, "prompts", json!({})));
    assert_eq!(check.json()["allowed"], false);
}

#[test]
fn concurrent_tracks_never_pass_the_hard_limit() {
    let tally = Tally::start_default();
    for round in 0..10 {
        let user = unique_user(&format!("race{round}"));
        let handles: Vec<_> = (0..32)
            .map(|_| {
                let mut client = tally.client();
                let user = user.clone();
                std::thread::spawn(move || {
                    let mut counts = (0, 0);
                    for _ in 0..100 {
                        match client.post("/v1/track", &usage(&user, "prompts", json!({}))).status {
                            200 => counts.0 += 1,
                            429 => counts.1 += 1,
                            other => panic!("unexpected status {other}"),
                        }
                    }
                    counts
                })
            })
            .collect();
        let (ok, refused) =
            handles.into_iter().map(|handle| handle.join().unwrap()).fold((0, 0), |acc, c| (acc.0 + c.0, acc.1 + c.1));
        assert_eq!((ok, refused), (30, 3170), "round {round}");
        assert_eq!(stored(&tally, &user, "prompts", None), 30, "round {round}");
    }
}

#[test]
fn solo_soft_limit_allows_and_flags_the_10001st_prompt() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let user = unique_user("solo");
    assert_eq!(client.put(&format!("/v1/users/{user}"), &json!({ "plan": "solo" })).status, 200);
    let at_limit = client.post("/v1/track", &usage(&user, "prompts", json!({ "amount": 10_000 }))).json();
    assert_eq!((at_limit["used"].as_u64(), at_limit["over_soft_limit"].as_bool()), (Some(10_000), Some(false)));
    let past = client.post("/v1/track", &usage(&user, "prompts", json!({})));
    assert_eq!(past.status, 200);
    let past = past.json();
    assert_eq!(past["over_soft_limit"], true);
    assert_eq!(past["allowed"], true);
    assert_eq!(past["enforcement"], "soft");
    assert_eq!(past["used"], 10_001);
}

#[test]
fn counters_roll_over_at_the_utc_month() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let user = unique_user("rollover");
    let now = Utc::now();
    let this_month = now.format("%Y-%m").to_string();
    let first_of_month = now.with_day(1).unwrap();
    let last_month_instant = first_of_month - Duration::days(1);
    let last_month = last_month_instant.format("%Y-%m").to_string();
    let stamp = last_month_instant.to_rfc3339();

    for _ in 0..30 {
        let reply = client.post("/v1/track", &usage(&user, "prompts", json!({ "timestamp": stamp })));
        assert_eq!(reply.json()["period"], last_month.as_str());
    }
    assert_eq!(client.post("/v1/track", &usage(&user, "prompts", json!({ "timestamp": stamp }))).status, 429);
    for n in 1..=30 {
        let reply = client.post("/v1/track", &usage(&user, "prompts", json!({})));
        assert_eq!(reply.status, 200, "prompt {n} of the new month");
        assert_eq!(reply.json()["period"], this_month.as_str());
    }
    assert_eq!(client.post("/v1/track", &usage(&user, "prompts", json!({}))).status, 429);
    assert_eq!(stored(&tally, &user, "prompts", Some(&last_month)), 30);
    assert_eq!(stored(&tally, &user, "prompts", Some(&this_month)), 30);
}

#[test]
fn timestamps_before_1970_are_refused_and_a_leap_second_counts_in_its_own_month() {
    // A retention long enough to reach 1970, so only the 1970 rule can refuse.
    let tally = Setup::new().config("[usage]\nretention_months = 1200\n").start();
    let mut client = tally.client();
    let user = unique_user("epoch");
    let reply = client.post("/v1/track", &usage(&user, "prompts", json!({ "timestamp": "1969-12-31T23:59:59Z" })));
    assert_eq!((reply.status, reply.code().as_str()), (400, "invalid_request"));
    let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("before 1970-01-01"), "{message}");
    let at_epoch = client.post("/v1/track", &usage(&user, "prompts", json!({ "timestamp": "1970-01-01T00:00:00Z" })));
    assert_eq!(at_epoch.json()["period"], "1970-01");

    let first_of_this_month = Utc::now().date_naive().with_day(1).unwrap();
    let last_day = first_of_this_month - Duration::days(1);
    let leap = format!("{last_day}T23:59:60Z");
    let reply = client.post("/v1/track", &usage(&user, "prompts", json!({ "timestamp": leap })));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let last_month = last_day.format("%Y-%m").to_string();
    assert_eq!(reply.json()["period"], last_month.as_str(), "{leap}");
    assert_eq!(stored(&tally, &user, "prompts", Some(&last_month)), 1);
}

#[test]
fn user_ids_dot_and_dot_dot_are_refused() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    for user in [".", ".."] {
        let reply = client.post("/v1/track", &usage(user, "prompts", json!({})));
        assert_eq!((reply.status, reply.code().as_str()), (400, "invalid_request"), "{user:?}");
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains("path segment"));
        // Sent as written (this client does not normalise paths, as a browser would).
        assert_eq!(client.get(&format!("/v1/users/{user}")).status, 400, "{user:?}");
        assert_eq!(client.put(&format!("/v1/users/{user}"), &json!({ "plan": "solo" })).status, 400);
    }
    assert_eq!(client.post("/v1/track", &usage("...", "prompts", json!({}))).status, 200, "three dots are a name");
}

#[test]
fn timestamps_ahead_or_past_retention_are_refused() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let ahead = (Utc::now() + Duration::minutes(6)).to_rfc3339();
    let reply = client.post("/v1/track", &usage("t", "prompts", json!({ "timestamp": ahead })));
    assert_eq!((reply.status, reply.code().as_str()), (400, "invalid_request"));
    let old = (Utc::now() - Duration::days(400)).to_rfc3339();
    let reply = client.post("/v1/track", &usage("t", "prompts", json!({ "timestamp": old })));
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("retention_months"));
    let slightly_ahead = (Utc::now() + Duration::minutes(4)).to_rfc3339();
    assert_eq!(client.post("/v1/check", &usage("t", "prompts", json!({ "timestamp": slightly_ahead }))).status, 200);
}

#[test]
fn idempotency_key_counts_once_and_survives_a_restart() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let user = unique_user("idem");
    let body = usage(&user, "prompts", json!({ "amount": 3 })).to_string();
    let send = |client: &mut crate::support::Client, key: &str, body: &str| {
        client.request(
            "POST",
            "/v1/track",
            &[("Content-Type", "application/json"), ("Idempotency-Key", key)],
            Some(body.as_bytes()),
        )
    };
    let first = send(&mut client, "order-1", &body);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotent-replayed"), None);
    for _ in 0..4 {
        let again = send(&mut client, "order-1", &body);
        assert_eq!(again.status, 200);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.body, first.body, "a replay is the first answer, byte for byte");
    }
    assert_eq!(stored(&tally, &user, "prompts", None), 3);

    let other_amount = usage(&user, "prompts", json!({ "amount": 4 })).to_string();
    let reused = send(&mut client, "order-1", &other_amount);
    assert_eq!((reused.status, reused.code().as_str()), (422, "idempotency_key_reused"));

    let tally = tally.restart();
    let mut client = tally.client();
    let after_restart = send(&mut client, "order-1", &body);
    assert_eq!(after_restart.header("idempotent-replayed"), Some("true"));
    assert_eq!(stored(&tally, &user, "prompts", None), 3);

    for bad_key in ["", &"k".repeat(256), "tab\there"] {
        let reply = send(&mut client, bad_key, &body);
        assert_eq!(reply.status, 400, "key {bad_key:?}");
    }
    assert_eq!(stored(&tally, &user, "prompts", None), 3);
}

#[test]
fn concurrent_retries_with_one_key_count_once() {
    let tally = Tally::start_default();
    let user = unique_user("idem-race");
    let body = usage(&user, "e2e_runs", json!({})).to_string();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let mut client = tally.client();
            let body = body.clone();
            std::thread::spawn(move || {
                client
                    .request(
                        "POST",
                        "/v1/track",
                        &[("Content-Type", "application/json"), ("Idempotency-Key", "same")],
                        Some(body.as_bytes()),
                    )
                    .status
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), 200);
    }
    assert_eq!(stored(&tally, &user, "e2e_runs", None), 1);
}

#[test]
fn admin_user_ids_from_env_bypass_limits_and_are_still_counted() {
    let tally = Setup::new().env("ADMIN_USER_IDS", "boss, other").start();
    let mut client = tally.client();
    for _ in 0..35 {
        let reply = client.post("/v1/track", &usage("boss", "prompts", json!({})));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["bypass"], true);
    }
    assert_eq!(stored(&tally, "boss", "prompts", None), 35);
    let check = client.post("/v1/check", &usage("boss", "prompts", json!({ "amount": 1000 }))).json();
    assert_eq!((check["allowed"].as_bool(), check["bypass"].as_bool()), (Some(true), Some(true)));
    assert_eq!(tally.client().get("/v1/users/boss").json()["bypass"], true);
}

#[test]
fn tracking_disabled_by_env_records_nothing() {
    let tally = Setup::new().env("USAGE_TRACKING_ENABLED", "false").start();
    let mut client = tally.client();
    let reply = client.request(
        "POST",
        "/v1/track",
        &[("Content-Type", "application/json"), ("Idempotency-Key", "k1")],
        Some(usage("quiet", "prompts", json!({ "amount": 5 })).to_string().as_bytes()),
    );
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!((body["recorded"].as_bool(), body["tracking_enabled"].as_bool()), (Some(false), Some(false)));
    assert_eq!(body["used"], 0);
    assert_eq!(client.get("/v1/users/quiet").status, 404, "not even the user is stored");
}

#[test]
fn enforce_false_records_past_a_hard_limit_and_says_so() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let user = unique_user("bytes");
    let reply = client.post("/v1/track", &usage(&user, "prompts", json!({ "amount": 40, "enforce": false })));
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["recorded"], true);
    assert_eq!(body["enforced"], false);
    assert_eq!(body["allowed"], false, "it was past the limit, and recorded anyway");
    assert_eq!(body["used"], 40);
    assert_eq!(stored(&tally, &user, "prompts", None), 40);
    assert_eq!(client.post("/v1/track", &usage(&user, "prompts", json!({}))).status, 429);
}

#[test]
fn check_changes_nothing_and_does_not_create_the_user() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let reply = client.post("/v1/check", &usage("ghost", "prompts", json!({ "amount": 30 })));
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(
        (body["allowed"].as_bool(), body["plan"].as_str(), body["used"].as_u64()),
        (Some(true), Some("trial"), Some(0))
    );
    assert_eq!(client.post("/v1/check", &usage("ghost", "prompts", json!({ "amount": 31 }))).json()["allowed"], false);
    assert_eq!(client.get("/v1/users/ghost").status, 404);
}

#[test]
fn a_refused_track_of_a_new_user_stores_nothing() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let reply = client.post("/v1/track", &usage("newbie", "prompts", json!({ "amount": 31 })));
    assert_eq!(reply.status, 429);
    assert_eq!(client.get("/v1/users/newbie").status, 404);
}

#[test]
fn counters_refuse_to_overflow() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let max_amount: u64 = (1 << 53) - 1;
    // i64::MAX / (2^53 - 1) is just over 1024: the 1025th add would overflow.
    for n in 1..=1024u64 {
        let reply = client.post("/v1/track", &usage("heavy", "bytes_out", json!({ "amount": max_amount })));
        assert_eq!(reply.status, 200, "add {n}");
    }
    let reply = client.post("/v1/track", &usage("heavy", "bytes_out", json!({ "amount": max_amount })));
    assert_eq!((reply.status, reply.code().as_str()), (422, "counter_overflow"));
    assert_eq!(stored(&tally, "heavy", "bytes_out", None), 1024 * max_amount);
}
