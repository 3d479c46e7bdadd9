//! The admin API: numbers against the usage the test sent, the compatibility routes, the
//! audit log, erasure, export, reset under concurrent tracks, and cleanup.

use crate::support::{ADMIN_KEY, Client, SERVICE_KEY, Setup, Tally, seed_six_users, start_with_keys, track, usage};
use chrono::{Datelike, Duration, Utc};
use serde_json::{Value, json};

fn admin(tally: &Tally) -> Client {
    tally.client().with_key(ADMIN_KEY)
}

fn last_month_stamp() -> String {
    (Utc::now().with_day(1).unwrap() - Duration::days(1)).to_rfc3339()
}

fn audit(client: &mut Client) -> Vec<Value> {
    client.get("/v1/admin/audit?limit=500").json()["entries"].as_array().unwrap().clone()
}

#[test]
fn usage_summary_plans_and_offenders_match_the_usage_sent() {
    let tally = start_with_keys();
    let mut client = admin(&tally);
    seed_six_users(&mut client);
    // Last month's usage must not leak into this month's numbers.
    let stamp = last_month_stamp();
    assert_eq!(
        client.post("/v1/track", &usage("old", "prompts", json!({ "amount": 9, "timestamp": stamp }))).status,
        200
    );

    let summary = client.get("/v1/admin/usage?top=3").json();
    assert_eq!(summary["metric"], "prompts", "the first configured metric is the default");
    assert_eq!(summary["totals"], json!({ "prompts": 12_725, "e2e_runs": 3, "bytes_out": 1_500_000_000u64 }));
    assert_eq!(summary["active_users"], 4);
    assert_eq!(summary["users_total"], 6);
    assert_eq!(
        summary["plans"],
        json!([
            { "plan": "trial", "users": 3, "share": 0.5, "accounts": 0, "members": 0, "price_cents": 0, "revenue_cents": 0 },
            { "plan": "solo", "users": 1, "share": 1.0 / 6.0, "accounts": 0, "members": 0, "price_cents": 1900, "revenue_cents": 1900 },
            { "plan": "teams", "users": 2, "share": 2.0 / 6.0, "accounts": 0, "members": 0, "price_cents": 4900, "revenue_cents": 9800 },
        ])
    );
    assert_eq!(summary["revenue_cents_total"], 11_700);
    let top: Vec<&str> =
        summary["top_users"].as_array().unwrap().iter().map(|u| u["user_id"].as_str().unwrap()).collect();
    assert_eq!(top, ["sol", "tim", "ann"]);
    assert_eq!(
        summary["top_users"][1]["usage"],
        json!({ "prompts": 700, "e2e_runs": 0, "bytes_out": 1_500_000_000u64 })
    );

    let by_bytes = client.get("/v1/admin/usage?metric=bytes_out&top=1").json();
    assert_eq!(by_bytes["top_users"][0]["user_id"], "tim");
    let last_month = (Utc::now().with_day(1).unwrap() - Duration::days(1)).format("%Y-%m").to_string();
    let old = client.get(&format!("/v1/admin/usage?period={last_month}")).json();
    assert_eq!((old["totals"]["prompts"].as_u64(), old["active_users"].as_u64()), (Some(9), Some(1)));

    let offenders = client.get("/v1/admin/offenders?limit=2").json();
    assert_eq!(
        offenders["offenders"],
        json!([
            { "user_id": "sol", "plan": "solo", "used": 12_000, "limit": 10_000, "enforcement": "soft", "percent_of_limit": 120.0 },
            { "user_id": "tim", "plan": "teams", "used": 700, "limit": null, "enforcement": "unlimited", "percent_of_limit": null },
        ])
    );
    assert_eq!(client.get("/v1/admin/plans").json(), summary["plans"]);

    for bad in [
        "/v1/admin/usage?period=2026-13",
        "/v1/admin/usage?metric=tokens",
        "/v1/admin/usage?top=-1",
        "/v1/admin/offenders?limit=0",
        "/v1/admin/usage?colour=red",
    ] {
        assert_eq!(client.get(bad).status, 400, "{bad}");
    }
}

#[test]
fn compatibility_routes_give_the_same_data_and_actions() {
    let tally = start_with_keys();
    let mut client = admin(&tally);
    track(&mut client, "ann", "prompts", 7);
    track(&mut client, "bob", "prompts", 3);
    let same = |client: &mut Client, v1: &str, compat: &str| {
        let (a, b) = (client.get(v1), client.get(compat));
        assert_eq!((a.status, b.status), (200, 200), "{v1} / {compat}");
        assert_eq!(a.json(), b.json(), "{v1} / {compat}");
    };
    same(&mut client, "/v1/admin/usage", "/api/v1/admin/usage");
    same(&mut client, "/v1/admin/plans", "/api/v1/admin/usage?endpoint=plans");
    same(&mut client, "/v1/admin/offenders", "/api/v1/admin/usage?endpoint=offenders");
    same(&mut client, "/v1/admin/users/ann", "/api/v1/admin/usage?endpoint=user&userId=ann");
    assert_eq!(client.get("/api/v1/admin/usage?endpoint=nope").status, 400);
    assert_eq!(client.get("/api/v1/admin/usage?endpoint=user").status, 400);

    let upgraded =
        client.post("/api/v1/admin/usage", &json!({ "action": "upgrade_plan", "userId": "ann", "plan": "solo" }));
    assert_eq!(upgraded.status, 200);
    assert_eq!(client.get("/v1/users/ann").json()["plan"], "solo");
    let reset = client.post("/api/v1/admin/usage", &json!({ "action": "reset_user", "userId": "bob" }));
    assert_eq!(reset.json()["before"]["prompts"], 3);
    assert_eq!(client.get("/v1/users/bob").json()["usage"]["prompts"]["used"], 0);
    let cleaned = client.post("/api/v1/admin/usage", &json!({ "action": "cleanup", "retentionMonths": 12 }));
    assert_eq!(cleaned.status, 200);
    assert!(cleaned.json()["oldest_period_kept"].is_string());
    let unknown = client.post("/api/v1/admin/usage", &json!({ "action": "drop_tables" }));
    assert_eq!((unknown.status, unknown.code().as_str()), (400, "invalid_request"));
    assert_eq!(client.post("/api/v1/admin/usage", &json!({ "action": "cleanup" })).status, 400);

    let actions: Vec<String> = audit(&mut client)
        .iter()
        .filter(|row| row["actor"] == "ops")
        .map(|row| row["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["cleanup", "usage_reset", "plan_changed"]);
    let service = tally.client().with_key(SERVICE_KEY).get("/api/v1/admin/usage");
    assert_eq!(service.status, 403);
}

#[test]
fn every_mutation_is_audited_with_the_key_name_and_the_log_pages() {
    let tally = start_with_keys();
    let mut client = admin(&tally);
    track(&mut client, "ann", "prompts", 4);
    assert_eq!(client.post("/v1/admin/users/ann/plan", &json!({ "plan": "teams" })).json()["plan"], "teams");
    let reset = client.post("/v1/admin/users/ann/reset", &json!({ "metric": "prompts" })).json();
    assert_eq!(reset["before"], json!({ "prompts": 4 }));
    assert_eq!(client.post("/v1/admin/cleanup", &json!({ "retention_months": 6 })).status, 200);
    assert_eq!(client.request("DELETE", "/v1/admin/users/ann", &[], None).status, 200);

    let rows = audit(&mut client);
    let actions: Vec<&str> = rows.iter().map(|row| row["action"].as_str().unwrap()).collect();
    assert!(actions.starts_with(&["user_erased", "cleanup", "usage_reset", "plan_changed"]), "{actions:?}");
    for row in &rows[..4] {
        assert_eq!(row["actor"], "ops", "the key's name, never the key");
        assert!(row["at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(rows[3]["details"], json!({ "from": "trial", "to": "teams" }));
    assert_eq!(rows[1]["details"]["retention_months"], 6);
    assert!(!serde_json::to_string(&rows).unwrap().contains(ADMIN_KEY));

    let first_page = client.get("/v1/admin/audit?limit=2").json();
    assert_eq!(first_page["entries"].as_array().unwrap().len(), 2);
    let before = first_page["next_before"].as_i64().unwrap();
    let second_page = client.get(&format!("/v1/admin/audit?limit=2&before={before}")).json();
    assert_eq!(second_page["entries"][0]["action"], "usage_reset");
    assert_eq!(client.get("/v1/admin/audit?before=x").status, 400);

    assert_eq!(client.post("/v1/admin/users/ghost/reset", &json!({})).code(), "user_not_found");
    assert_eq!(client.post("/v1/admin/users/ann/plan", &json!({ "plan": "gold" })).code(), "unknown_plan");
    assert_eq!(client.post("/v1/admin/cleanup", &json!({ "retention_months": 0 })).status, 400);
    assert_eq!(audit(&mut client).len(), rows.len(), "refusals are not audited: they changed nothing");
}

#[test]
fn erasure_leaves_nothing_about_the_user_but_the_audit_hash() {
    let tally = start_with_keys();
    let mut client = admin(&tally);
    let secret_name = "erase-me@example.com";
    track(&mut client, secret_name, "prompts", 3);
    let stamp = last_month_stamp();
    client.request(
        "POST",
        "/v1/track",
        &[("Content-Type", "application/json"), ("Idempotency-Key", "erase-key-1")],
        Some(usage(secret_name, "e2e_runs", json!({ "timestamp": stamp })).to_string().as_bytes()),
    );
    client.put(&format!("/v1/users/{secret_name}"), &json!({ "plan": "teams" }));
    assert_eq!(
        client
            .post("/v1/features/use", &json!({ "user_id": secret_name, "feature": "active_project_snapshots" }))
            .status,
        200
    );
    client.post(&format!("/v1/admin/users/{secret_name}/plan"), &json!({ "plan": "solo" }));

    let export = client.get(&format!("/v1/admin/users/{secret_name}/export")).json();
    assert_eq!(export["user"]["user_id"], secret_name);
    assert_eq!(export["counters"].as_array().unwrap().len(), 2);
    assert_eq!(export["feature_uses"].as_array().unwrap().len(), 1);
    assert_eq!(export["idempotency_keys"][0]["key"], "erase-key-1");
    assert_eq!(export["audit"][0]["action"], "plan_changed");

    let erased = client.request("DELETE", &format!("/v1/admin/users/{secret_name}"), &[], None).json();
    let hash = erased["user_id_hash"].as_str().unwrap().to_owned();
    assert!(hash.starts_with("sha256:"));
    assert_eq!(client.get(&format!("/v1/users/{secret_name}")).status, 404);
    assert_eq!(client.get(&format!("/v1/admin/users/{secret_name}/export")).status, 404);
    assert_eq!(client.request("DELETE", &format!("/v1/admin/users/{secret_name}"), &[], None).status, 404);
    let summary = client.get("/v1/admin/usage").json();
    assert_eq!((summary["users_total"].as_u64(), summary["totals"]["prompts"].as_u64()), (Some(0), Some(0)));

    // Read every row of every table: the name is nowhere, the hash is in the audit log.
    let dump = crate::backend::stored_text(tally.dir.path());
    assert!(!dump.contains(secret_name), "the erased id is still stored");
    assert!(!dump.contains("erase-key-1"), "the erased user's idempotency key is still stored");
    assert!(dump.contains(&hash));
}

#[test]
fn a_reset_racing_concurrent_tracks_loses_nothing() {
    let tally = start_with_keys();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let mut client = admin(&tally);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    track(&mut client, "busy", "bytes_out", 1);
                }
            })
        })
        .collect();
    let mut client = admin(&tally);
    // Reset while the tracks are arriving (once some have landed).
    while client.get("/v1/users/busy").status != 200 {
        std::thread::yield_now();
    }
    let before =
        client.post("/v1/admin/users/busy/reset", &json!({ "metric": "bytes_out" })).json()["before"]["bytes_out"]
            .as_u64()
            .unwrap();
    for worker in workers {
        worker.join().unwrap();
    }
    let after = client.get("/v1/users/busy").json()["usage"]["bytes_out"]["used"].as_u64().unwrap();
    assert_eq!(before + after, 16 * 50, "reset saw {before}, {after} came after: every track is in one or the other");
    assert!(before > 0 && after > 0, "the reset landed among the tracks ({before} before, {after} after)");
    assert_eq!(client.get("/v1/admin/usage").json()["totals"]["bytes_out"], after, "the rollup follows the reset");
}

#[test]
fn history_is_newest_first_and_user_details_include_the_view() {
    let tally = start_with_keys();
    let mut client = admin(&tally);
    track(&mut client, "hist", "prompts", 2);
    let stamp = last_month_stamp();
    client.post("/v1/track", &usage("hist", "prompts", json!({ "amount": 5, "timestamp": stamp })));
    let details = client.get("/v1/admin/users/hist?months=3").json();
    assert_eq!(details["plan"], "trial");
    assert_eq!(details["usage"]["prompts"]["used"], 2);
    let history = details["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["period"], Utc::now().format("%Y-%m").to_string());
    assert_eq!((history[0]["usage"]["prompts"].as_u64(), history[1]["usage"]["prompts"].as_u64()), (Some(2), Some(5)));
    assert_eq!(history[2]["usage"]["prompts"], 0);
    assert_eq!(client.get("/v1/admin/users/hist?months=0").status, 400);
    assert_eq!(client.get("/v1/admin/users/nobody").code(), "user_not_found");
}

#[test]
fn cleanup_deletes_old_periods_by_request_and_on_schedule() {
    let stamp = last_month_stamp();
    let tally = Setup::new().config("[usage]\nretention_months = 3\n").start();
    let mut client = tally.client();
    client.post("/v1/track", &usage("keep", "prompts", json!({ "amount": 1 })));
    client.post("/v1/track", &usage("keep", "prompts", json!({ "amount": 2, "timestamp": stamp })));
    let report = client.post("/v1/admin/cleanup", &json!({ "retention_months": 2 })).json();
    assert_eq!(report["deleted_counters"], 0, "last month is within 2 months");
    let report = client.post("/v1/admin/cleanup", &json!({ "retention_months": 1 })).json();
    assert_eq!(report["deleted_counters"], 1);
    assert_eq!(report["oldest_period_kept"], Utc::now().format("%Y-%m").to_string());
    assert_eq!(client.get("/v1/users/keep").json()["usage"]["prompts"]["used"], 1);

    // The scheduled job runs at startup with usage.retention_months.
    client.post("/v1/track", &usage("sched", "prompts", json!({ "amount": 4, "timestamp": stamp })));
    drop(client);
    let tally = tally.restart_with(Setup::new().config("[usage]\nretention_months = 1\n"));
    let mut client = tally.client();
    // The first start ran it too (deleting nothing); wait for the second run.
    let scheduled = (0..500)
        .find_map(|_| {
            let rows: Vec<Value> =
                audit(&mut client).into_iter().filter(|row| row["actor"] == "scheduled-cleanup").collect();
            if rows.len() < 2 {
                std::thread::sleep(std::time::Duration::from_millis(10));
                return None;
            }
            Some(rows[0].clone())
        })
        .expect("the scheduled cleanup ran at startup");
    assert_eq!(scheduled["details"]["deleted_counters"], 1);
}

#[test]
fn erasing_a_user_refused_on_first_contact_erases_what_names_them() {
    let tally = start_with_keys();
    let mut client = admin(&tally);
    // Never stored: a feature refusal (an event) and a keyed refusal (a stored answer).
    let denied = client.post("/v1/features/use", &json!({ "user_id": "dora", "feature": "git_export" }));
    assert_eq!(denied.status, 403);
    let keyed = client.request(
        "POST",
        "/v1/track",
        &[("Content-Type", "application/json"), ("Idempotency-Key", "dora-key")],
        Some(usage("dora", "prompts", json!({ "amount": 31 })).to_string().as_bytes()),
    );
    assert_eq!(keyed.status, 429);
    assert_eq!(client.get("/v1/users/dora").status, 404, "never stored");
    assert_eq!(client.get("/v1/admin/events?user_id=dora").json()["events"].as_array().unwrap().len(), 2);

    let erased = client.request("DELETE", "/v1/admin/users/dora", &[], None);
    assert_eq!(erased.status, 200, "{}", String::from_utf8_lossy(&erased.body));
    assert!(client.get("/v1/admin/events?user_id=dora").json()["events"].as_array().unwrap().is_empty());
    let replay = client.request(
        "POST",
        "/v1/track",
        &[("Content-Type", "application/json"), ("Idempotency-Key", "dora-key")],
        Some(usage("dora", "prompts", json!({ "amount": 31 })).to_string().as_bytes()),
    );
    assert_eq!(replay.header("idempotent-replayed"), None, "the stored answer is gone");
    assert_eq!(client.request("DELETE", "/v1/admin/users/nobody-at-all", &[], None).status, 404);
}

#[test]
fn a_reset_user_is_not_active_until_their_next_use_and_leaves_the_rankings() {
    let tally = start_with_keys();
    let mut client = admin(&tally);
    track(&mut client, "reset-me", "prompts", 7);
    track(&mut client, "stays", "prompts", 1);
    assert_eq!(client.get("/v1/admin/usage").json()["active_users"], 2);
    client.post("/v1/admin/users/reset-me/reset", &json!({}));
    let summary = client.get("/v1/admin/usage").json();
    assert_eq!((summary["active_users"].as_u64(), summary["totals"]["prompts"].as_u64()), (Some(1), Some(1)));
    let offenders = client.get("/v1/admin/offenders").json();
    assert_eq!(offenders["offenders"].as_array().unwrap().len(), 1, "{offenders}");
    // Used again: counted once, whatever the order of reset and tracks.
    for _ in 0..3 {
        track(&mut client, "reset-me", "prompts", 1);
        client.post("/v1/admin/users/reset-me/reset", &json!({}));
        track(&mut client, "reset-me", "prompts", 1);
    }
    let summary = client.get("/v1/admin/usage").json();
    assert_eq!((summary["active_users"].as_u64(), summary["totals"]["prompts"].as_u64()), (Some(2), Some(2)));
}
