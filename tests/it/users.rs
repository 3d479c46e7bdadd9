//! `/v1/users/{user_id}`: the view, plan changes, and persistence across restarts.

use crate::support::{Tally, run_tally, usage};
use serde_json::json;

#[test]
fn user_view_lists_every_metric_and_plan_changes_apply_at_once() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    assert_eq!(client.get("/v1/users/carol").code(), "user_not_found");
    for _ in 0..30 {
        client.post("/v1/track", &usage("carol", "prompts", json!({})));
    }
    client.post("/v1/track", &usage("carol", "bytes_out", json!({ "amount": 2048 })));
    let view = client.get("/v1/users/carol").json();
    assert_eq!(view["plan"], "trial");
    assert_eq!(
        view["usage"]["prompts"],
        json!({ "used": 30, "reserved": 0, "refused": 0, "limit": 30, "granted": 0, "rollover": 0, "remaining": 0, "enforcement": "hard", "over_soft_limit": false, "source": "plan" })
    );
    assert_eq!(view["usage"]["bytes_out"]["used"], 2048);
    assert_eq!(
        view["usage"]["e2e_runs"],
        json!({ "used": 0, "reserved": 0, "refused": 0, "limit": null, "granted": 0, "rollover": 0, "remaining": null, "enforcement": "unlimited", "over_soft_limit": false, "source": "plan" })
    );
    assert!(view["created_at"].as_str().unwrap().ends_with('Z'));

    assert_eq!(client.post("/v1/track", &usage("carol", "prompts", json!({}))).status, 429);
    let upgraded = client.put("/v1/users/carol", &json!({ "plan": "solo" }));
    assert_eq!(upgraded.status, 200);
    assert_eq!(upgraded.json()["usage"]["prompts"]["used"], 30, "the period's counters are kept");
    assert_eq!(client.post("/v1/track", &usage("carol", "prompts", json!({}))).status, 200, "new limits apply at once");

    let unknown = client.put("/v1/users/carol", &json!({ "plan": "gold" }));
    assert_eq!((unknown.status, unknown.code().as_str()), (400, "unknown_plan"));
    assert_eq!(client.get("/v1/users/carol").json()["plan"], "solo");
}

#[test]
fn put_creates_a_user_and_period_query_selects_a_month() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let created = client.put("/v1/users/dave", &json!({ "plan": "teams" }));
    assert_eq!(created.status, 200);
    assert_eq!(created.json()["plan"], "teams");
    let old = client.get("/v1/users/dave?period=2001-01").json();
    assert_eq!(old["period"], "2001-01");
    assert_eq!(old["usage"]["prompts"]["used"], 0);
    assert_eq!(client.get("/v1/users/dave?period=2001-13").status, 400);
    assert_eq!(client.get("/v1/users/dave?month=2001-01").status, 400);
}

#[test]
fn counters_persist_across_restart_and_migrate_changes_nothing() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    for _ in 0..7 {
        assert_eq!(client.post("/v1/track", &usage("erin", "e2e_runs", json!({}))).status, 200);
    }
    let before = client.get("/v1/users/erin").body;
    drop(client);
    let mut tally = tally;
    tally.kill();
    let config = tally.config_path();
    let (status, stdout, stderr) = run_tally(&["migrate", "--config", config.to_str().unwrap()], tally.dir.path());
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("up to date"), "{stdout}");
    let tally = tally.restart();
    assert_eq!(tally.client().get("/v1/users/erin").body, before);
}

#[test]
fn a_plan_change_through_put_is_audited_under_the_keys_name() {
    let tally = crate::support::start_with_keys();
    let mut service = tally.client().with_key(crate::support::SERVICE_KEY);
    assert_eq!(service.put("/v1/users/audited", &serde_json::json!({ "plan": "solo" })).status, 200);
    let mut admin = tally.client().with_key(crate::support::ADMIN_KEY);
    let audit = admin.get("/v1/admin/audit").json();
    let entry = &audit["entries"][0];
    assert_eq!((entry["action"].as_str(), entry["target"].as_str()), (Some("plan_changed"), Some("audited")));
    // The service key is unnamed: its name is its digest's first 8 hex digits.
    let name = entry["actor"].as_str().unwrap();
    assert!(name.len() == 8 && name.bytes().all(|byte| byte.is_ascii_hexdigit()), "{name}");
}
