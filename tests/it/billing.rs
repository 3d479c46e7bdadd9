//! Overage billing: customers' Stripe ids and emails (checked, shown, exported, erased), the
//! report (plan prices, overage rounded up to whole blocks, an account billed once, totals
//! equal to the stored counters, CSV columns), a past period's statement that never moves,
//! and the Stripe meter events.

use crate::backend::{is_postgres, run_sql, stored_text};
use crate::support::{ADMIN_KEY, Client, Setup, Tally, usage};
use chrono::{Datelike, Duration, Utc};
use serde_json::{Value, json};

/// free: 10 prompts (hard); solo: 9.00 with 100 prompts (soft, 3 cents per started 10 over)
/// and 5 runs (soft, no price); team: 40.00, 1,000 prompts (1 cent per started 100 over);
/// meter: free, 50 prompts then 2 cents each.
const PLANS: &str = "[metrics]\nprompts = { unit = \"prompts\" }\nruns = { unit = \"runs\" }\n\
    [plans.free]\nprice_cents = 0\nlimits = { prompts = { limit = 10, enforcement = \"hard\" }, runs = \"unlimited\" }\nfeatures = {}\n\
    [plans.solo]\nprice_cents = 900\nlimits = { prompts = { limit = 100, enforcement = \"soft\", overage = { price_cents = 3, per_units = 10 } }, \
      runs = { limit = 5, enforcement = \"soft\" } }\nfeatures = {}\n\
    [plans.team]\nprice_cents = 4000\nlimits = { prompts = { limit = 1000, enforcement = \"soft\", overage = { price_cents = 1, per_units = 100 } }, \
      runs = \"unlimited\" }\nfeatures = {}\n\
    [plans.meter]\nprice_cents = 0\nlimits = { prompts = { limit = 50, enforcement = \"soft\", overage = { price_cents = 2, per_units = 1 } }, \
      runs = \"unlimited\" }\nfeatures = {}\n\
    [usage]\ndefault_plan = \"free\"\n[billing]\ncurrency = \"EUR\"\n";

fn start() -> (Tally, Client) {
    let keys = format!("[auth]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n");
    let tally = Setup::new().config(&format!("{PLANS}{keys}")).start();
    let client = tally.client().with_key(ADMIN_KEY);
    (tally, client)
}

fn put(client: &mut Client, path: &str, body: Value) -> Value {
    let reply = client.put(path, &body);
    assert_eq!(reply.status, 200, "PUT {path}: {}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

/// Tracks `amount`, at `timestamp` when given (RFC 3339), and insists on a 200.
fn track_at(client: &mut Client, user: &str, metric: &str, amount: u64, timestamp: Option<&str>) {
    let mut extra = json!({ "amount": amount });
    if let Some(timestamp) = timestamp {
        extra["timestamp"] = json!(timestamp);
    }
    let reply = client.post("/v1/track", &usage(user, metric, extra));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
}

/// The middle of last month, as a track's timestamp, and that month.
fn last_month() -> (String, String) {
    let first = Utc::now().date_naive().with_day(1).unwrap();
    let middle = first - Duration::days(15);
    (format!("{middle}T12:00:00Z"), middle.format("%Y-%m").to_string())
}

fn body_text(reply: &crate::support::Reply) -> String {
    String::from_utf8(reply.body.clone()).expect("UTF-8")
}

#[test]
fn customer_fields_are_checked_shown_cleared_and_exported() {
    let (_tally, mut client) = start();
    let view =
        put(&mut client, "/v1/users/ann", json!({ "stripe_customer_id": "cus_Ann123", "email": "ann@example.com" }));
    assert_eq!(
        (view["stripe_customer_id"].as_str(), view["email"].as_str()),
        (Some("cus_Ann123"), Some("ann@example.com"))
    );
    assert_eq!(view["plan"], "free", "a user created by setting fields is on the default plan");

    // Each refusal is a 400 that names the field and changes nothing, not even the plan sent
    // beside it, and creates no user.
    for body in [
        json!({ "plan": "solo", "email": "ann@example" }),
        json!({ "plan": "solo", "email": "ann at example.com" }),
        json!({ "plan": "solo", "email": format!("{}@example.com", "a".repeat(250)) }),
        json!({ "plan": "solo", "stripe_customer_id": "acct_123" }),
        json!({ "plan": "solo", "stripe_customer_id": "cus_12-3" }),
        json!({ "plan": "solo", "stripe_customer_id": format!("cus_{}", "a".repeat(300)) }),
        json!({ "plan": "solo", "stripe_customer_id": 42 }),
    ] {
        let refused = client.put("/v1/users/ann", &body);
        assert_eq!((refused.status, refused.code().as_str()), (400, "invalid_request"), "{body}");
        let field = if body.get("email").is_some() { "email" } else { "stripe_customer_id" };
        let message = refused.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(field) || message.starts_with("invalid JSON body"), "{body}: {message}");
        assert_eq!(client.put("/v1/users/zed", &body).status, 400);
    }
    let unchanged = client.get("/v1/users/ann").json();
    assert_eq!((unchanged["plan"].as_str(), unchanged["email"].as_str()), (Some("free"), Some("ann@example.com")));
    assert_eq!(unchanged["stripe_customer_id"], "cus_Ann123");
    assert_eq!(client.get("/v1/users/zed").status, 404, "a refused PUT created no user");

    // Absent keeps a field, null clears it.
    let cleared = put(&mut client, "/v1/users/ann", json!({ "email": null }));
    assert_eq!((cleared["email"].clone(), cleared["stripe_customer_id"].as_str()), (Value::Null, Some("cus_Ann123")));
    let audit = client.get("/v1/admin/audit").json();
    let changes: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "customer_fields_changed")
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["details"], json!({ "changed": ["email"] }));
    assert!(!audit.to_string().contains("ann@example.com"), "the audit names fields, never an address");

    let export = body_text(&client.get("/v1/admin/users/ann/export"));
    let export: Value = serde_json::from_str(&export).unwrap();
    assert_eq!(
        (export["user"]["stripe_customer_id"].as_str(), export["user"]["email"].clone()),
        (Some("cus_Ann123"), Value::Null)
    );

    // Accounts carry the same fields, with the same checks; an account may be created by them.
    let account = put(&mut client, "/v1/accounts/acme", json!({ "email": "billing@acme.example" }));
    assert_eq!((account["plan"].as_str(), account["email"].as_str()), (Some("free"), Some("billing@acme.example")));
    let refused = client.put("/v1/accounts/acme", &json!({ "plan": "team", "stripe_customer_id": "cus_" }));
    assert_eq!(refused.status, 400);
    assert_eq!(client.get("/v1/accounts/acme").json()["plan"], "free");
    let account = put(&mut client, "/v1/accounts/acme", json!({ "plan": "team", "stripe_customer_id": "cus_Acme" }));
    assert_eq!((account["plan"].as_str(), account["stripe_customer_id"].as_str()), (Some("team"), Some("cus_Acme")));
    assert_eq!(client.put("/v1/accounts/acme", &json!({})).status, 400, "a PUT must change something");
    assert_eq!(client.put("/v1/accounts/acme", &json!({ "emails": "x@y.io" })).status, 400, "unknown fields");
}

#[test]
fn erasure_removes_the_email_and_stripe_id_and_keeps_closed_sums() {
    let (tally, mut client) = start();
    let (at, period) = last_month();
    put(
        &mut client,
        "/v1/users/eve",
        json!({ "plan": "solo", "stripe_customer_id": "cus_Eve42", "email": "eve@example.org" }),
    );
    track_at(&mut client, "eve", "prompts", 120, Some(&at));
    let before = client.get(&format!("/v1/admin/billing?period={period}")).json();
    assert_eq!(before["customers"][0]["customer_id"], "eve");

    assert_eq!(client.request("DELETE", "/v1/admin/users/eve", &[], None).status, 200);
    let stored = stored_text(tally.dir.path());
    for secret in ["cus_Eve42", "eve@example.org"] {
        assert!(!stored.contains(secret), "{secret} is still stored");
    }
    let after = client.get(&format!("/v1/admin/billing?period={period}")).json();
    assert!(after["customers"][0]["customer_id"].as_str().unwrap().starts_with("sha256:"), "{after}");
    assert_eq!(after["totals"], before["totals"], "a closed statement keeps its sums");
    let events = body_text(&client.get(&format!("/v1/admin/billing/stripe-meter-events?period={period}")));
    assert_eq!(events, "", "an erased customer has no Stripe id left to send");
}

/// The `used` of `metric` in a user's or an account's view this month.
fn used(client: &mut Client, path: &str, metric: &str) -> u64 {
    client.get(path).json()["usage"][metric]["used"].as_u64().unwrap()
}

#[test]
fn the_report_bills_prices_and_rounded_overage_once_per_customer() {
    let (_tally, mut client) = start();
    put(&mut client, "/v1/users/sol", json!({ "plan": "solo" }));
    track_at(&mut client, "sol", "prompts", 125, None); // 25 over: 3 blocks of 10
    track_at(&mut client, "sol", "runs", 7, None); // 2 over, no price
    put(&mut client, "/v1/users/granted", json!({ "plan": "solo" }));
    let grant = json!({ "metric": "prompts", "amount": 20 });
    assert_eq!(client.post("/v1/admin/users/granted/grants", &grant).status, 201);
    track_at(&mut client, "granted", "prompts", 121, None); // included 120: 1 over, one block
    put(&mut client, "/v1/users/metered", json!({ "plan": "meter" }));
    track_at(&mut client, "metered", "prompts", 51, None); // free plan, 1 over at 2 cents: pays
    put(&mut client, "/v1/users/light", json!({ "plan": "meter" }));
    track_at(&mut client, "light", "prompts", 50, None); // free, nothing over: not paying
    track_at(&mut client, "trialist", "prompts", 10, None); // free plan: not paying
    put(&mut client, "/v1/accounts/acme", json!({ "plan": "team" }));
    for member in ["m1", "m2"] {
        put(&mut client, &format!("/v1/users/{member}"), json!({ "plan": "solo", "account_id": "acme" }));
        track_at(&mut client, member, "prompts", 600, None); // the pool: 1,200, 200 over
    }
    put(&mut client, "/v1/users/idle", json!({ "plan": "solo" })); // pays the plan, no use

    let report = client.get("/v1/admin/billing").json();
    assert_eq!((report["currency"].as_str(), report["closed"].as_bool()), (Some("EUR"), Some(false)));
    assert_eq!(report["closed_at"], Value::Null);
    let lines: Vec<&Value> = report["customers"].as_array().unwrap().iter().collect();
    let ids: Vec<(&str, &str)> = lines
        .iter()
        .map(|line| (line["customer_kind"].as_str().unwrap(), line["customer_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [("account", "acme"), ("user", "granted"), ("user", "idle"), ("user", "metered"), ("user", "sol")],
        "accounts first, then users on their own; members and non-paying users are not listed"
    );
    let line = |id: &str| *lines.iter().find(|line| line["customer_id"] == id).unwrap();
    assert_eq!(
        line("sol")["metrics"],
        json!({
            "prompts": { "included": 100, "used": 125, "overage_units": 30, "overage_cents": 9 },
            "runs": { "included": 5, "used": 7, "overage_units": 2, "overage_cents": 0 },
        })
    );
    assert_eq!((line("sol")["plan_price_cents"].as_u64(), line("sol")["total_cents"].as_u64()), (Some(900), Some(909)));
    assert_eq!(
        line("granted")["metrics"]["prompts"],
        json!({ "included": 120, "used": 121, "overage_units": 10, "overage_cents": 3 })
    );
    assert_eq!(
        (line("metered")["plan_price_cents"].as_u64(), line("metered")["total_cents"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(
        line("acme")["metrics"]["prompts"],
        json!({ "included": 1000, "used": 1200, "overage_units": 200, "overage_cents": 2 })
    );
    assert_eq!(line("acme")["metrics"]["runs"]["included"], Value::Null, "unlimited");
    assert_eq!(line("idle")["total_cents"], 900);

    // The totals add up the lines, and each line's use is the stored counter the views show.
    let totals = &report["totals"];
    assert_eq!(totals["customers"], 5);
    assert_eq!((totals["plan_price_cents"].as_u64(), totals["overage_cents"].as_u64()), (Some(6700), Some(16)));
    assert_eq!(totals["total_cents"], 6716);
    for metric in ["prompts", "runs"] {
        let mut counters = used(&mut client, "/v1/accounts/acme", metric);
        for user in ["granted", "idle", "metered", "sol"] {
            counters += used(&mut client, &format!("/v1/users/{user}"), metric);
        }
        assert_eq!(totals["metrics"][metric]["used"].as_u64(), Some(counters), "{metric}");
        let summed: u64 = lines.iter().map(|line| line["metrics"][metric]["overage_cents"].as_u64().unwrap()).sum();
        assert_eq!(totals["metrics"][metric]["overage_cents"].as_u64(), Some(summed));
    }
}

#[test]
fn the_csv_has_stable_documented_columns_and_a_totals_row() {
    let (_tally, mut client) = start();
    put(&mut client, "/v1/users/sol", json!({ "plan": "solo" }));
    track_at(&mut client, "sol", "prompts", 125, None);
    put(&mut client, "/v1/accounts/acme", json!({ "plan": "team" }));
    let by_param = client.get("/v1/admin/billing?format=csv");
    let by_accept = client.request("GET", "/v1/admin/billing", &[("Accept", "text/csv")], None);
    assert_eq!(by_param.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(body_text(&by_param), body_text(&by_accept));
    let period = Utc::now().format("%Y-%m").to_string();
    let expected = format!(
        "period,customer_kind,customer_id,plan,plan_price_cents,currency,prompts_included,prompts_used,\
         prompts_overage_units,prompts_overage_cents,runs_included,runs_used,runs_overage_units,runs_overage_cents,\
         overage_cents,total_cents\r\n\
         {period},account,acme,team,4000,EUR,1000,0,0,0,,0,0,0,0,4000\r\n\
         {period},user,sol,solo,900,EUR,100,125,30,9,5,0,0,0,9,909\r\n\
         {period},total,2,,4900,EUR,,125,30,9,,0,0,0,9,4909\r\n"
    );
    assert_eq!(body_text(&by_param), expected);
    let json_anyway = client.request("GET", "/v1/admin/billing?format=json", &[("Accept", "text/csv")], None);
    assert_eq!(json_anyway.header("content-type"), Some("application/json"), "format wins over Accept");
    assert_eq!(client.get("/v1/admin/billing?format=xml").status, 400);
    let next_year = format!("{}-01", Utc::now().year() + 1);
    assert_eq!(client.get(&format!("/v1/admin/billing?period={next_year}")).status, 400);
}

#[test]
fn a_past_periods_report_is_the_same_every_time_it_is_asked() {
    let (tally, mut client) = start();
    let (at, period) = last_month();
    put(&mut client, "/v1/users/sol", json!({ "plan": "solo" }));
    track_at(&mut client, "sol", "prompts", 125, Some(&at));
    put(&mut client, "/v1/users/free", json!({ "stripe_customer_id": "cus_Free" }));
    track_at(&mut client, "free", "prompts", 4, Some(&at));
    let path = format!("/v1/admin/billing?period={period}");
    let first = client.get(&path);
    assert_eq!(first.status, 200);
    let report = first.json();
    assert_eq!((report["closed"].as_bool(), report["totals"]["total_cents"].as_u64()), (Some(true), Some(909)));
    assert_eq!(report["customers"].as_array().unwrap().len(), 1, "only sol pays");

    // What would resolve differently now: sol's plan, an override, a grant for that month,
    // the prices in the config; and a late track into that month.
    put(&mut client, "/v1/users/sol", json!({ "plan": "team" }));
    let over = json!({ "limits": { "prompts": { "limit": 5000, "enforcement": "soft" } } });
    assert_eq!(client.put("/v1/admin/users/sol/overrides", &over).status, 200);
    let grant = json!({ "metric": "prompts", "amount": 500, "period": period });
    assert_eq!(client.post("/v1/admin/users/sol/grants", &grant).status, 201);
    track_at(&mut client, "sol", "prompts", 50, Some(&at));
    let second = client.get(&path);
    assert_eq!(body_text(&second), body_text(&first));
    let csv = body_text(&client.get(&format!("{path}&format=csv")));
    assert!(csv.contains(&format!("{period},user,sol,solo,900,EUR,100,125,30,9,")), "{csv}");

    let mut tally = tally.restart_with(Setup::new().config(&format!(
        "{}[auth]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n",
        PLANS.replace("price_cents = 900", "price_cents = 1900").replace("\"EUR\"", "\"USD\"")
    )));
    let mut client = tally.client().with_key(ADMIN_KEY);
    assert_eq!(body_text(&client.get(&path)), body_text(&first), "new prices and currency leave it as it closed");
    let audit = client.get("/v1/admin/audit?limit=500").json();
    let closings =
        audit["entries"].as_array().unwrap().iter().filter(|entry| entry["action"] == "statement_closed").count();
    assert_eq!(closings, 1, "closed once");
    tally.kill();
}

#[test]
fn stripe_meter_events_take_stripes_shape_and_keep_their_identifiers() {
    let (_tally, mut client) = start();
    let (at, period) = last_month();
    put(&mut client, "/v1/users/sol", json!({ "plan": "solo", "stripe_customer_id": "cus_Sol" }));
    track_at(&mut client, "sol", "prompts", 125, Some(&at));
    track_at(&mut client, "sol", "runs", 3, Some(&at));
    put(&mut client, "/v1/users/free", json!({ "stripe_customer_id": "cus_Free" }));
    track_at(&mut client, "free", "prompts", 4, Some(&at)); // not paying, still metered
    track_at(&mut client, "nostripe", "prompts", 4, Some(&at));
    put(&mut client, "/v1/accounts/acme", json!({ "plan": "team", "stripe_customer_id": "cus_Acme" }));
    put(&mut client, "/v1/users/m1", json!({ "account_id": "acme" }));
    track_at(&mut client, "m1", "prompts", 7, Some(&at));

    let path = format!("/v1/admin/billing/stripe-meter-events?period={period}");
    let reply = client.get(&path);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    let text = body_text(&reply);
    let events: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let sent: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|event| {
            (
                event["payload"]["stripe_customer_id"].as_str().unwrap(),
                event["event_name"].as_str().unwrap(),
                event["payload"]["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("cus_Acme", "tally_prompts", "7"),
            ("cus_Free", "tally_prompts", "4"),
            ("cus_Sol", "tally_prompts", "125"),
            ("cus_Sol", "tally_runs", "3"),
        ]
    );
    let last_second = (Utc::now().date_naive().with_day(1).unwrap() - Duration::days(1)).format("%Y-%m-%dT23:59:59Z");
    for event in &events {
        let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["event_name", "identifier", "payload", "timestamp"]);
        assert_eq!(event["timestamp"], last_second.to_string());
        let identifier = event["identifier"].as_str().unwrap();
        assert!(identifier.starts_with(&format!("tally_{period}_")) && identifier.len() <= 100, "{identifier}");
    }
    let identifiers: std::collections::HashSet<&str> =
        events.iter().map(|event| event["identifier"].as_str().unwrap()).collect();
    assert_eq!(identifiers.len(), events.len(), "one identifier per customer and metric");

    // A resend is the same, byte for byte: Stripe drops the repeats by identifier.
    put(&mut client, "/v1/users/sol", json!({ "plan": "team" }));
    assert_eq!(body_text(&client.get(&path)), text);
    let current = client.get(&format!("/v1/admin/billing/stripe-meter-events?period={}", Utc::now().format("%Y-%m")));
    assert_eq!((current.status, current.code().as_str()), (409, "period_not_ended"));
}

#[test]
fn nodes_asking_at_once_close_a_large_statement_once() {
    let (tally, mut client) = start();
    let (_, period) = last_month();
    // 450 paying users, more than two pages, seeded beside the server.
    let users: Vec<String> =
        (0..450).map(|index| format!("('u-{index:04}', 'bulk{index:04}', 'solo', 0, 0)")).collect();
    run_sql(
        tally.dir.path(),
        &format!(
            "INSERT INTO users (uuid, user_id, plan, created_at, updated_at) VALUES {};
             INSERT INTO usage_counters (user_pk, period, metric, value, created_at, updated_at)
               SELECT id, '{period}', 'prompts', 111, 0, 0 FROM users WHERE user_id LIKE 'bulk%';",
            users.join(", ")
        ),
    );
    // On PostgreSQL the second request goes to a second node on the same database.
    let keys = format!("[auth]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n");
    let other = is_postgres().then(|| Setup::new().config(&format!("{PLANS}{keys}")).start_sharing(&tally));
    let nodes = [&tally, other.as_ref().unwrap_or(&tally)];
    let path = format!("/v1/admin/billing?period={period}");
    let answers: Vec<String> = nodes
        .iter()
        .map(|node| {
            let mut client = node.client().with_key(ADMIN_KEY);
            let path = path.clone();
            std::thread::spawn(move || body_text(&client.get(&path)))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();
    assert_eq!(answers[0], answers[1]);
    let report: Value = serde_json::from_str(&answers[0]).unwrap();
    assert_eq!(report["customers"].as_array().unwrap().len(), 450);
    // 111 used of 100: 11 over, two blocks of 10 at 3 cents.
    assert_eq!(
        report["totals"]["metrics"]["prompts"],
        json!({ "used": 49_950, "overage_units": 9_000, "overage_cents": 2_700 })
    );
    assert_eq!(report["totals"]["total_cents"], 450 * 906);
    assert_eq!(crate::backend::count(tally.dir.path(), "SELECT count(*) FROM billing_lines"), 450);
    let csv = body_text(&client.get(&format!("{path}&format=csv")));
    assert_eq!(csv.lines().count(), 1 + 450 + 1);
}

#[test]
fn a_past_period_bills_only_who_existed_or_used_it_and_none_before_retention() {
    let (_tally, mut client) = start();
    put(&mut client, "/v1/users/newcomer", json!({ "plan": "solo" }));
    let (timestamp, last) = last_month();
    // Created now too, but with usage recorded in that month: billed for it.
    track_at(&mut client, "backdated", "prompts", 5, Some(&timestamp));
    put(&mut client, "/v1/users/backdated", json!({ "plan": "solo" }));
    let before = client.get(&format!("/v1/admin/billing?period={last}")).json();
    let listed: Vec<&str> =
        before["customers"].as_array().unwrap().iter().filter_map(|line| line["customer_id"].as_str()).collect();
    assert!(!listed.contains(&"newcomer"), "created this month: not billed for {last}: {before}");
    assert!(listed.contains(&"backdated"), "{before}");
    let old = client.get("/v1/admin/billing?period=1970-01");
    assert_eq!(old.status, 400, "{}", body_text(&old));
    assert!(body_text(&old).contains("retention_months"), "{}", body_text(&old));
    assert_eq!(client.get("/v1/admin/billing/stripe-meter-events?period=1970-01").status, 400);
}
