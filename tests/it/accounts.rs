//! Accounts with pooled quotas: members share the account's plan and counters, a track adds
//! to the pool and to the member's own counter at once, the pool never passes a hard limit
//! under racing members, and the admin routes list, reset, re-plan and delete accounts.

use crate::support::{Client, Setup, Tally, unique_user, usage};
use serde_json::{Value, json};

/// trial: 30 prompts (hard), snapshots 2 a minute; duo: at most 2 members; pro: unlimited.
const PLANS: &str = "[metrics]\nprompts = { unit = \"prompts\" }\n\
    [plans.trial]\nprice_cents = 0\nlimits = { prompts = { limit = 30, enforcement = \"hard\" } }\n\
    features = { export = false, snap = { per_minute = 2 } }\n\
    [plans.duo]\nprice_cents = 1000\nmax_members = 2\nlimits = { prompts = { limit = 100, enforcement = \"hard\" } }\n\
    features = { export = true, snap = { per_minute = 5 } }\n\
    [plans.pro]\nprice_cents = 5000\nlimits = { prompts = \"unlimited\" }\nfeatures = { export = true, snap = { per_minute = 100 } }\n";

fn start() -> Tally {
    Setup::new().config(PLANS).start()
}

fn put_account(client: &mut Client, account: &str, plan: &str) -> Value {
    let reply = client.put(&format!("/v1/accounts/{account}"), &json!({ "plan": plan }));
    assert_eq!(reply.status, 200, "{:?}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

fn join(client: &mut Client, user: &str, account: Value) -> crate::support::Reply {
    client.put(&format!("/v1/users/{user}"), &json!({ "account_id": account }))
}

#[test]
fn members_share_the_accounts_plan_and_pool_and_keep_their_own_counters() {
    let tally = start();
    let mut client = tally.client();
    // Usage recorded before joining stays with the user.
    assert_eq!(client.post("/v1/track", &usage("carol", "prompts", json!({ "amount": 4 }))).status, 200);
    let created = put_account(&mut client, "acme", "trial");
    assert_eq!((created["account_id"].as_str(), created["plan"].as_str()), (Some("acme"), Some("trial")));
    for user in ["alice", "bob", "carol"] {
        let view = join(&mut client, user, json!("acme"));
        assert_eq!(view.status, 200);
        assert_eq!(view.json()["account_id"], "acme");
    }
    let first = client.post("/v1/track", &usage("alice", "prompts", json!({ "amount": 10 }))).json();
    assert_eq!((first["used"].as_u64(), first["user_used"].as_u64()), (Some(10), Some(10)));
    assert_eq!((first["account_id"].as_str(), first["limit"].as_u64()), (Some("acme"), Some(30)));
    client.post("/v1/track", &usage("bob", "prompts", json!({ "amount": 15 })));
    let last = client.post("/v1/track", &usage("carol", "prompts", json!({ "amount": 5 }))).json();
    assert_eq!(
        (last["used"].as_u64(), last["remaining"].as_u64(), last["user_used"].as_u64()),
        (Some(30), Some(0), Some(9))
    );

    let refused = client.post("/v1/track", &usage("carol", "prompts", json!({})));
    assert_eq!(refused.status, 429);
    let error = &refused.json()["error"];
    assert_eq!((error["scope"].as_str(), error["account_id"].as_str()), (Some("account"), Some("acme")));
    assert_eq!((error["used"].as_u64(), error["user_used"].as_u64()), (Some(30), Some(9)));
    let check = client.post("/v1/check", &usage("bob", "prompts", json!({}))).json();
    assert_eq!(
        (check["allowed"].as_bool(), check["account_id"].as_str(), check["user_used"].as_u64()),
        (Some(false), Some("acme"), Some(15))
    );

    let account = client.get("/v1/accounts/acme").json();
    assert_eq!(account["usage"]["prompts"]["used"], 30);
    assert_eq!(account["usage"]["prompts"]["refused"], 1);
    let members: Vec<(String, u64)> = account["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| (member["user_id"].as_str().unwrap().to_owned(), member["usage"]["prompts"].as_u64().unwrap()))
        .collect();
    assert_eq!(members, [("alice".to_owned(), 10), ("bob".to_owned(), 15), ("carol".to_owned(), 9)]);

    // Leaving: the user's own plan and counter apply again.
    assert_eq!(join(&mut client, "carol", Value::Null).json()["account_id"], Value::Null);
    let own = client.post("/v1/track", &usage("carol", "prompts", json!({})));
    assert_eq!(own.status, 200);
    assert_eq!((own.json()["used"].as_u64(), own.json()["account_id"].clone()), (Some(10), Value::Null));
    assert_eq!(client.get("/v1/accounts/acme").json()["members"].as_array().unwrap().len(), 2);
}

#[test]
fn joining_refuses_an_unknown_or_full_account_and_changes_nothing() {
    let tally = start();
    let mut client = tally.client();
    let unknown = join(&mut client, "dora", json!("nowhere"));
    assert_eq!((unknown.status, unknown.code().as_str()), (404, "account_not_found"));
    assert_eq!(client.get("/v1/users/dora").status, 404, "the refusal created no user");
    put_account(&mut client, "pair", "duo");
    assert_eq!(join(&mut client, "u1", json!("pair")).status, 200);
    assert_eq!(join(&mut client, "u2", json!("pair")).status, 200);
    assert_eq!(join(&mut client, "u1", json!("pair")).status, 200, "joining again is no change");
    let full = join(&mut client, "u3", json!("pair"));
    assert_eq!((full.status, full.code().as_str()), (409, "account_full"));
    assert_eq!(full.json()["error"]["max_members"], 2);
    assert_eq!(client.get("/v1/users/u3").status, 404);
    let bad = client.put("/v1/users/u4", &json!({}));
    assert_eq!(bad.status, 400);
    assert_eq!(client.put("/v1/accounts/x", &json!({ "plan": "gold" })).code(), "unknown_plan");
    assert_eq!(client.get("/v1/accounts/ghost").code(), "account_not_found");
}

#[test]
fn racing_members_never_pass_the_pools_hard_limit() {
    let tally = start();
    let mut setup = tally.client();
    for round in 0..10 {
        let account = unique_user(&format!("pool{round}"));
        put_account(&mut setup, &account, "trial");
        let members: Vec<String> = (0..3).map(|index| format!("{account}-m{index}")).collect();
        for member in &members {
            assert_eq!(join(&mut setup, member, json!(account)).status, 200);
        }
        let handles: Vec<_> = (0..32)
            .map(|thread| {
                let mut client = tally.client();
                let member = members[thread % 3].clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for _ in 0..100 {
                        match client.post("/v1/track", &usage(&member, "prompts", json!({}))).status {
                            200 => ok += 1,
                            429 => {}
                            other => panic!("unexpected status {other}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        let ok: u32 = handles.into_iter().map(|handle| handle.join().unwrap()).sum();
        assert_eq!(ok, 30, "round {round}");
        let view = setup.get(&format!("/v1/accounts/{account}")).json();
        assert_eq!(view["usage"]["prompts"]["used"], 30, "round {round}");
        let own: u64 =
            view["members"].as_array().unwrap().iter().map(|m| m["usage"]["prompts"].as_u64().unwrap()).sum();
        assert_eq!(own, 30, "the members' own counters add up to the pool (round {round})");
    }
}

#[test]
fn a_rate_limited_feature_is_windowed_on_the_pool() {
    let tally = start();
    let mut client = tally.client();
    put_account(&mut client, "snappy", "trial");
    for user in ["s1", "s2"] {
        join(&mut client, user, json!("snappy"));
    }
    let use_snap = |client: &mut Client, user: &str| {
        client.post("/v1/features/use", &json!({ "user_id": user, "feature": "snap" })).status
    };
    assert_eq!(use_snap(&mut client, "s1"), 200);
    assert_eq!(use_snap(&mut client, "s2"), 200);
    assert_eq!(use_snap(&mut client, "s1"), 429, "the pool's two a minute are used");
    let view = client.get("/v1/accounts/snappy").json();
    assert_eq!(view["features"]["snap"]["remaining_in_window"], 0);
    assert_eq!(view["features"]["snap"]["refused"], 1);
    // The account's plan decides booleans too.
    assert_eq!(client.post("/v1/features/use", &json!({ "user_id": "s1", "feature": "export" })).status, 403);
}

#[test]
fn pool_alerts_name_the_account_and_fire_once() {
    let tally = start();
    let mut client = tally.client();
    put_account(&mut client, "alerts", "trial");
    for user in ["a1", "a2"] {
        join(&mut client, user, json!("alerts"));
    }
    client.post("/v1/track", &usage("a1", "prompts", json!({ "amount": 20 })));
    client.post("/v1/track", &usage("a2", "prompts", json!({ "amount": 4 })));
    client.post("/v1/track", &usage("a1", "prompts", json!({ "amount": 6 })));
    let events = client.get("/v1/admin/events?type=threshold_crossed").json();
    let crossed: Vec<(f64, String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["data"]["threshold"].as_f64().unwrap(),
                event["data"]["account_id"].as_str().unwrap().to_owned(),
                event["user_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(crossed, [(0.8, "alerts".to_owned(), "a2".to_owned()), (1.0, "alerts".to_owned(), "a1".to_owned())]);
    let refused = client.post("/v1/track", &usage("a2", "prompts", json!({})));
    assert_eq!(refused.status, 429);
    let exceeded = client.get("/v1/admin/events?type=limit_exceeded").json();
    assert_eq!(exceeded["events"][0]["data"]["account_id"], "alerts");
}

#[test]
fn admins_list_replan_reset_and_delete_accounts_and_revenue_counts_an_account_once() {
    let tally = start();
    let mut client = tally.client();
    for (account, plan) in [("a-one", "duo"), ("b-two", "pro"), ("c-three", "duo")] {
        put_account(&mut client, account, plan);
    }
    for (user, account) in [("m1", "a-one"), ("m2", "a-one"), ("m3", "b-two")] {
        client.put(&format!("/v1/users/{user}"), &json!({ "plan": "pro", "account_id": account }));
    }
    client.post("/v1/track", &usage("m1", "prompts", json!({ "amount": 7 })));

    let first = client.get("/v1/admin/accounts?limit=2").json();
    let ids: Vec<&str> =
        first["accounts"].as_array().unwrap().iter().map(|a| a["account_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c-three", "b-two"]);
    assert_eq!(first["accounts"][1]["members"], 1);
    let next = first["next_before"].as_str().unwrap();
    let second = client.get(&format!("/v1/admin/accounts?limit=2&before={next}")).json();
    assert_eq!(second["accounts"][0]["account_id"], "a-one");
    assert_eq!(second["next_before"], Value::Null);

    let details = client.get("/v1/admin/accounts/a-one?months=2").json();
    assert_eq!(details["history"][0]["usage"]["prompts"], 7);
    assert_eq!(details["history"].as_array().unwrap().len(), 2);

    // Revenue: duo twice (two accounts), pro once (b-two) plus no member (m1..m3 pay through
    // their accounts).
    let plans = client.get("/v1/admin/plans").json();
    let of = |name: &str| plans.as_array().unwrap().iter().find(|plan| plan["plan"] == name).unwrap().clone();
    assert_eq!((of("duo")["accounts"].as_u64(), of("duo")["revenue_cents"].as_u64()), (Some(2), Some(2000)));
    assert_eq!((of("pro")["members"].as_u64(), of("pro")["revenue_cents"].as_u64()), (Some(3), Some(5000)));

    let replanned = client.post("/v1/admin/accounts/a-one/plan", &json!({ "plan": "pro" })).json();
    assert_eq!(replanned["usage"]["prompts"]["limit"], Value::Null);
    assert_eq!(client.post("/v1/admin/accounts/ghost/plan", &json!({ "plan": "pro" })).code(), "account_not_found");
    let reset = client.post("/v1/admin/accounts/a-one/reset", &json!({})).json();
    assert_eq!(reset["before"]["prompts"], 7);
    let after = client.get("/v1/accounts/a-one").json();
    assert_eq!(after["usage"]["prompts"]["used"], 0);
    assert_eq!(after["members"][0]["usage"]["prompts"], 7, "members keep their own counters");

    // Open access (no keys): a state-changing request says it is JSON, as a form cannot.
    let deleted = client.request("DELETE", "/v1/admin/accounts/a-one", &[("Content-Type", "application/json")], None);
    assert_eq!(deleted.status, 200);
    assert_eq!(client.get("/v1/accounts/a-one").code(), "account_not_found");
    let m1 = client.get("/v1/users/m1").json();
    assert_eq!((m1["account_id"].clone(), m1["usage"]["prompts"]["used"].as_u64()), (Value::Null, Some(7)));
    let audit = client.get("/v1/admin/audit?limit=50").json();
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["account_created", "account_plan_changed", "account_reset", "account_deleted", "membership_changed"]
    {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
}

#[test]
fn a_members_ratelimit_headers_describe_the_pool() {
    let tally = start();
    let mut client = tally.client();
    put_account(&mut client, "headers", "trial");
    for user in ["h1", "h2"] {
        join(&mut client, user, json!("headers"));
    }
    assert_eq!(client.post("/v1/track", &usage("h1", "prompts", json!({ "amount": 20 }))).status, 200);
    let tracked = client.post("/v1/track", &usage("h2", "prompts", json!({ "amount": 4 })));
    assert_eq!(tracked.header("ratelimit-policy"), Some(r#""prompts";q=30"#));
    assert!(tracked.header("ratelimit").unwrap().starts_with(r#""prompts";r=6;t="#), "{:?}", tracked.headers);
    let refused = client.post("/v1/track", &usage("h1", "prompts", json!({ "amount": 7 })));
    assert_eq!(refused.status, 429);
    assert!(refused.header("ratelimit").unwrap().starts_with(r#""prompts";r=6;t="#));
    let snap = |client: &mut Client, user: &str| {
        client.post("/v1/features/use", &json!({ "user_id": user, "feature": "snap" }))
    };
    assert_eq!(snap(&mut client, "h1").header("ratelimit-policy"), Some(r#""snap";q=2;w=60"#));
    let second = snap(&mut client, "h2");
    assert!(second.header("ratelimit").unwrap().starts_with(r#""snap";r=0;t="#), "{:?}", second.headers);
}
