//! A customer's terms beyond the plan: overrides replace what they name until they expire,
//! grants add to a period's limit while valid, unused allowance rolls over up to
//! `rollover_max`, and a member's own override caps them inside the pool.

use crate::backend::run_sql;
use crate::support::{Client, Setup, Tally, usage};
use chrono::{Datelike, Duration, Utc};
use serde_json::{Value, json};

/// trial: 30 prompts (hard), e2e_runs unlimited, export off, snap 1 a minute; roll: 100
/// prompts with up to 50 rolling over.
const PLANS: &str = "[metrics]\nprompts = { unit = \"prompts\" }\ne2e_runs = { unit = \"runs\" }\n\
    [plans.trial]\nprice_cents = 0\nlimits = { prompts = { limit = 30, enforcement = \"hard\" }, e2e_runs = \"unlimited\" }\n\
    features = { export = false, snap = { per_minute = 1 } }\n\
    [plans.roll]\nprice_cents = 900\n\
    limits = { prompts = { limit = 100, enforcement = \"hard\", rollover_max = 50 }, e2e_runs = \"unlimited\" }\n\
    features = { export = true, snap = { per_minute = 5 } }\n";

fn start() -> Tally {
    Setup::new().config(PLANS).start()
}

fn prompts(client: &mut Client, user: &str) -> Value {
    client.get(&format!("/v1/users/{user}")).json()["usage"]["prompts"].clone()
}

fn track(client: &mut Client, user: &str, amount: u64) -> u16 {
    client.post("/v1/track", &usage(user, "prompts", json!({ "amount": amount }))).status
}

#[test]
fn an_override_replaces_what_it_names_until_removed_or_expired() {
    let tally = start();
    let mut client = tally.client();
    assert_eq!(track(&mut client, "olga", 10), 200);
    let set = client.put(
        "/v1/admin/users/olga/overrides",
        &json!({ "limits": { "prompts": { "limit": 50, "enforcement": "hard" } }, "features": { "export": true, "snap": { "per_minute": 3 } }, "note": "pilot" }),
    );
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    let standing = prompts(&mut client, "olga");
    assert_eq!((standing["limit"].as_u64(), standing["source"].as_str()), (Some(50), Some("override")));
    assert_eq!(track(&mut client, "olga", 40), 200, "the override's 50, not the plan's 30");
    assert_eq!(track(&mut client, "olga", 1), 429);
    let view = client.get("/v1/users/olga").json();
    assert_eq!(
        (view["features"]["export"]["allowed"].as_bool(), view["features"]["export"]["source"].as_str()),
        (Some(true), Some("override"))
    );
    assert_eq!(view["features"]["snap"]["limit"], 3);
    assert_eq!(view["usage"]["e2e_runs"]["source"], "plan");
    assert_eq!(client.post("/v1/features/use", &json!({ "user_id": "olga", "feature": "export" })).status, 200);
    let read = client.get("/v1/admin/users/olga/overrides").json();
    assert_eq!((read["limits"]["prompts"]["limit"].as_u64(), read["note"].as_str()), (Some(50), Some("pilot")));

    assert_eq!(
        client
            .request("DELETE", "/v1/admin/users/olga/overrides", &[("Content-Type", "application/json")], None)
            .status,
        200
    );
    assert_eq!(prompts(&mut client, "olga")["limit"], 30);
    assert_eq!(client.get("/v1/admin/users/olga/overrides").code(), "override_not_found");

    let past = (Utc::now() - Duration::minutes(1)).to_rfc3339();
    let expired = json!({ "limits": { "prompts": "unlimited" }, "expires_at": past });
    assert_eq!(client.put("/v1/admin/users/olga/overrides", &expired).status, 200);
    assert_eq!(prompts(&mut client, "olga")["source"], "plan", "an expired override is ignored");

    for (body, code) in [
        (json!({ "limits": { "tokens": "unlimited" } }), "unknown_metric"),
        (json!({ "features": { "teleport": true } }), "unknown_feature"),
        (json!({ "features": { "export": { "per_minute": 3 } } }), "invalid_request"),
        (json!({ "limits": { "prompts": { "limit": 5 } } }), "invalid_request"),
    ] {
        assert_eq!(client.put("/v1/admin/users/olga/overrides", &body).code(), code, "{body}");
    }
    let audit = client.get("/v1/admin/audit?limit=20").json();
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"override_set") && actions.contains(&"override_removed"), "{actions:?}");
}

#[test]
fn a_grant_raises_a_periods_limit_while_valid_and_is_refused_where_it_could_do_nothing() {
    let tally = start();
    let mut client = tally.client();
    assert_eq!(track(&mut client, "gina", 30), 200);
    assert_eq!(track(&mut client, "gina", 1), 429);
    let granted =
        client.post("/v1/admin/users/gina/grants", &json!({ "metric": "prompts", "amount": 100, "note": "goodwill" }));
    assert_eq!(granted.status, 201);
    let grant_id = granted.json()["grant_id"].as_i64().unwrap();
    let standing = prompts(&mut client, "gina");
    assert_eq!((standing["limit"].as_u64(), standing["granted"].as_u64()), (Some(130), Some(100)));
    assert_eq!(track(&mut client, "gina", 100), 200);
    assert_eq!(track(&mut client, "gina", 1), 429);

    let past = (Utc::now() - Duration::minutes(1)).to_rfc3339();
    client.post("/v1/admin/users/gina/grants", &json!({ "metric": "prompts", "amount": 5, "expires_at": past }));
    assert_eq!(prompts(&mut client, "gina")["granted"], 100, "an expired grant adds nothing");
    let listed = client.get("/v1/admin/users/gina/grants").json();
    assert_eq!(listed["grants"].as_array().unwrap().len(), 2);

    let unlimited = client.post("/v1/admin/users/gina/grants", &json!({ "metric": "e2e_runs", "amount": 5 }));
    assert_eq!((unlimited.status, unlimited.code().as_str()), (409, "grant_has_no_effect"));
    let revoked = client.request(
        "DELETE",
        &format!("/v1/admin/grants/{grant_id}"),
        &[("Content-Type", "application/json")],
        None,
    );
    assert_eq!(revoked.status, 200);
    assert_eq!(prompts(&mut client, "gina")["limit"], 30);
    let gone = client.request(
        "DELETE",
        &format!("/v1/admin/grants/{grant_id}"),
        &[("Content-Type", "application/json")],
        None,
    );
    assert_eq!(gone.code(), "grant_not_found");
    assert_eq!(client.post("/v1/admin/users/gina/grants", &json!({ "metric": "prompts", "amount": 0 })).status, 400);
    assert_eq!(
        client.post("/v1/admin/accounts/nope/grants", &json!({ "metric": "prompts", "amount": 1 })).code(),
        "account_not_found"
    );
}

#[test]
fn a_members_own_override_caps_them_inside_the_pool_and_grants_go_to_the_pool() {
    let tally = start();
    let mut client = tally.client();
    client.put("/v1/accounts/crew", &json!({ "plan": "trial" }));
    for user in ["m1", "m2"] {
        client.put(&format!("/v1/users/{user}"), &json!({ "account_id": "crew" }));
    }
    let no_cap = client.post("/v1/admin/users/m2/grants", &json!({ "metric": "prompts", "amount": 5 }));
    assert_eq!(no_cap.code(), "grant_has_no_effect", "the pool decides for a member without a cap");
    client.put(
        "/v1/admin/users/m1/overrides",
        &json!({ "limits": { "prompts": { "limit": 5, "enforcement": "hard" } } }),
    );
    let recorded = client.post("/v1/track", &usage("m1", "prompts", json!({ "amount": 5 })));
    assert_eq!(recorded.status, 200);
    let recorded = recorded.json();
    assert_eq!((recorded["allowed"].as_bool(), recorded["user_used"].as_u64()), (Some(true), Some(5)), "{recorded}");
    let capped = client.post("/v1/track", &usage("m1", "prompts", json!({})));
    assert_eq!(capped.status, 429);
    let error = &capped.json()["error"];
    assert_eq!(
        (error["scope"].as_str(), error["limit"].as_u64(), error["used"].as_u64()),
        (Some("user"), Some(5), Some(5))
    );
    assert_eq!(error["upgrade_to"], Value::Null, "no plan lifts a member's own cap");
    assert_eq!(track(&mut client, "m2", 25), 200, "the pool still had 25");
    let full = client.post("/v1/track", &usage("m2", "prompts", json!({})));
    assert_eq!(full.json()["error"]["scope"], "account");
    assert_eq!(
        client.post("/v1/admin/accounts/crew/grants", &json!({ "metric": "prompts", "amount": 10 })).status,
        201
    );
    let account = client.get("/v1/accounts/crew").json();
    assert_eq!(
        (account["usage"]["prompts"]["limit"].as_u64(), account["usage"]["prompts"]["granted"].as_u64()),
        (Some(40), Some(10))
    );
    assert_eq!(track(&mut client, "m2", 10), 200);
}

#[test]
fn unused_allowance_rolls_over_up_to_rollover_max_without_compounding() {
    let tally = start();
    let mut client = tally.client();
    let last_month = (Utc::now().with_day(1).unwrap() - Duration::days(1)).to_rfc3339();
    for (user, used) in [("light", 30), ("heavy", 80)] {
        client.put(&format!("/v1/users/{user}"), &json!({ "plan": "roll" }));
        let reply =
            client.post("/v1/track", &usage(user, "prompts", json!({ "amount": used, "timestamp": last_month })));
        assert_eq!(reply.status, 200);
    }
    client.put("/v1/users/newcomer", &json!({ "plan": "roll" }));
    // They existed last month (the users were created just now, so say when they began).
    run_sql(tally.dir.path(), "UPDATE users SET created_at = 0 WHERE user_id IN ('light', 'heavy')");
    let light = prompts(&mut client, "light");
    assert_eq!(
        (light["limit"].as_u64(), light["rollover"].as_u64()),
        (Some(150), Some(50)),
        "70 left, at most 50 roll over"
    );
    let heavy = prompts(&mut client, "heavy");
    assert_eq!((heavy["limit"].as_u64(), heavy["rollover"].as_u64()), (Some(120), Some(20)));
    assert_eq!(prompts(&mut client, "newcomer")["rollover"], 0, "nothing rolls over from before a customer existed");
    // An override set this month did not decide last month: the leftover is still the plan's.
    let boost = json!({ "limits": { "prompts": { "limit": 1000, "enforcement": "hard" } } });
    assert_eq!(client.put("/v1/admin/users/heavy/overrides", &boost).status, 200);
    let boosted = prompts(&mut client, "heavy");
    assert_eq!((boosted["limit"].as_u64(), boosted["rollover"].as_u64()), (Some(1020), Some(20)));
    client.request("DELETE", "/v1/admin/users/heavy/overrides", &[("Content-Type", "application/json")], None);
    assert_eq!(track(&mut client, "heavy", 120), 200);
    assert_eq!(track(&mut client, "heavy", 1), 429);
}

#[test]
fn terms_go_with_a_deleted_account_and_come_out_in_a_users_export() {
    let tally = start();
    let mut client = tally.client();
    client.put("/v1/accounts/gone", &json!({ "plan": "trial" }));
    client.put("/v1/admin/accounts/gone/overrides", &json!({ "limits": { "prompts": "unlimited" } }));
    let json_header = [("Content-Type", "application/json")];
    assert_eq!(client.request("DELETE", "/v1/admin/accounts/gone", &json_header, None).status, 200);
    client.put("/v1/accounts/gone", &json!({ "plan": "trial" }));
    let again = client.get("/v1/accounts/gone").json();
    assert_eq!(
        (again["usage"]["prompts"]["limit"].as_u64(), again["usage"]["prompts"]["source"].as_str()),
        (Some(30), Some("plan"))
    );
    assert_eq!(client.get("/v1/admin/accounts/gone/overrides").code(), "override_not_found");

    assert_eq!(track(&mut client, "exported", 1), 200);
    client.put(
        "/v1/admin/users/exported/overrides",
        &json!({ "limits": { "prompts": { "limit": 40, "enforcement": "hard" } }, "note": "vip" }),
    );
    client.post("/v1/admin/users/exported/grants", &json!({ "metric": "prompts", "amount": 5, "note": "ticket 7" }));
    let export = client.get("/v1/admin/users/exported/export").json();
    assert_eq!(export["overrides"][0]["note"], "vip");
    assert_eq!(
        (export["grants"][0]["amount"].as_u64(), export["grants"][0]["note"].as_str()),
        (Some(5), Some("ticket 7"))
    );
}
