//! The RateLimit and RateLimit-Policy headers (draft-ietf-httpapi-ratelimit-headers-10) on
//! check, track and feature use, parsed as a client would with `http-sf`, an RFC 9651
//! parser (tests/it/parse_ratelimit.py), and replayed unchanged with an idempotent answer.

use crate::support::{Client, Reply, Tally, python, usage};
use serde_json::{Value, json};
use std::path::Path;

/// The headers of `replies`, parsed by http-sf: (answers, seconds to the UTC month's end).
fn parse(tally: &Tally, replies: &[&Reply]) -> (Vec<Value>, f64) {
    let answers: Vec<Value> = replies
        .iter()
        .map(|reply| json!({ "RateLimit-Policy": reply.header("ratelimit-policy"), "RateLimit": reply.header("ratelimit") }))
        .collect();
    let file = tally.dir.path().join("ratelimit.json");
    std::fs::write(&file, Value::from(answers).to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/parse_ratelimit.py");
    let output = std::process::Command::new(python()).arg(&script).arg(&file).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "http-sf refused a header: {report}");
    let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
    (parsed["answers"].as_array().unwrap().clone(), parsed["seconds_to_month_end"].as_f64().unwrap())
}

fn post(client: &mut Client, path: &str, body: Value) -> Reply {
    client.post(path, &body)
}

#[test]
fn monthly_limits_count_down_to_the_month_end_and_unlimited_metrics_send_none() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let tracked = post(&mut client, "/v1/track", usage("rl-ann", "prompts", json!({ "amount": 12 })));
    let checked = post(&mut client, "/v1/check", usage("rl-ann", "prompts", json!({ "amount": 5 })));
    let refused = post(&mut client, "/v1/track", usage("rl-ann", "prompts", json!({ "amount": 19 })));
    let unlimited = post(&mut client, "/v1/track", usage("rl-ann", "e2e_runs", json!({})));
    assert_eq!((tracked.status, checked.status, refused.status, unlimited.status), (200, 200, 429, 200));
    let (answers, to_month_end) = parse(&tally, &[&tracked, &checked, &refused, &unlimited]);

    for (answer, remaining) in answers[..3].iter().zip([18, 18, 18]) {
        assert_eq!(answer["policy"], json!({ "prompts": { "q": 30 } }), "a month has no fixed window: no w");
        let state = &answer["state"]["prompts"];
        assert_eq!(state["r"], remaining, "{answer}");
        // `t` was taken when the request was answered, a moment before the parser's clock.
        let t = state["t"].as_f64().unwrap();
        assert!(t >= to_month_end - 1.0 && t <= to_month_end + 60.0, "t = {t}, month ends in {to_month_end} s");
    }
    assert_eq!(answers[3], json!({ "policy": null, "state": null }), "an unlimited metric sends none");
}

#[test]
fn a_rolling_window_gives_its_length_and_when_the_oldest_use_leaves() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    for (user, plan) in [("rl-tim", "teams"), ("rl-sol", "solo")] {
        assert_eq!(client.put(&format!("/v1/users/{user}"), &json!({ "plan": plan })).status, 200);
    }
    let snapshot = |user: &str| json!({ "user_id": user, "feature": "active_project_snapshots" });
    let first = post(&mut client, "/v1/features/use", snapshot("rl-tim"));
    let second = post(&mut client, "/v1/features/use", snapshot("rl-tim"));
    let boolean = post(&mut client, "/v1/features/use", json!({ "user_id": "rl-tim", "feature": "git_export" }));
    let solo_first = post(&mut client, "/v1/features/use", snapshot("rl-sol"));
    let solo_refused = post(&mut client, "/v1/features/use", snapshot("rl-sol"));
    let statuses = [&first, &second, &boolean, &solo_first, &solo_refused].map(|reply| reply.status);
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    let (answers, _) = parse(&tally, &[&first, &second, &boolean, &solo_first, &solo_refused]);

    let window = "active_project_snapshots";
    assert_eq!(answers[0]["policy"][window], json!({ "q": 10, "w": 60 }));
    assert_eq!(answers[0]["state"][window], json!({ "r": 9, "t": 60 }), "the only use leaves in a full window");
    assert_eq!(answers[1]["state"][window]["r"], 8);
    let t = answers[1]["state"][window]["t"].as_u64().unwrap();
    assert!((59..=60).contains(&t), "the first use, a moment older, leaves first: t = {t}");
    assert_eq!(answers[2], json!({ "policy": null, "state": null }), "a boolean feature has no quota");
    assert_eq!(answers[3]["policy"][window], json!({ "q": 1, "w": 60 }));
    assert_eq!(answers[3]["state"][window]["r"], 0);
    assert_eq!(answers[4]["state"][window]["r"], 0);
    let refused_t = answers[4]["state"][window]["t"].as_u64().unwrap();
    let retry_after: u64 = solo_refused.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(refused_t, retry_after, "a full window resets when a use may be retried");
}

#[test]
fn a_replayed_answer_carries_the_first_answers_headers() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let body = usage("rl-key", "prompts", json!({ "amount": 3 })).to_string();
    let send = |client: &mut Client| {
        let headers = [("Content-Type", "application/json"), ("Idempotency-Key", "rl-key-1")];
        client.request("POST", "/v1/track", &headers, Some(body.as_bytes()))
    };
    let first = send(&mut client);
    // Another use in between: a fresh answer would now say r=26.
    assert_eq!(post(&mut client, "/v1/track", usage("rl-key", "prompts", json!({}))).status, 200);
    let again = send(&mut client);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert!(first.header("ratelimit").unwrap().starts_with(r#""prompts";r=27;t="#), "{first:?}");
    assert_eq!(again.header("ratelimit"), first.header("ratelimit"));
    assert_eq!(again.header("ratelimit-policy"), first.header("ratelimit-policy"));
    assert_eq!(again.body, first.body);

    let use_body = json!({ "user_id": "rl-key", "feature": "git_export" }).to_string();
    let headers = [("Content-Type", "application/json"), ("Idempotency-Key", "rl-key-2")];
    for _ in 0..2 {
        // git_export is not in trial: 403, no quota, and none replayed either.
        let reply = client.request("POST", "/v1/features/use", &headers, Some(use_body.as_bytes()));
        assert_eq!((reply.status, reply.header("ratelimit")), (403, None));
    }
}
