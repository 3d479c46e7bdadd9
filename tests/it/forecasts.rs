//! Forecasts: a customer's projection from their daily history (seeded here as the job would
//! have copied it), the routes' shapes and refusals, the job that copies counters into day
//! rows, stores projections for the admin view and emits `forecast_exceeds_limit` once per
//! customer, metric and month, and erasure removing a user's history.

use crate::backend::{count, run_sql};
use crate::support::{Client, Setup, Tally, track};
use chrono::{Datelike, Duration as Days, Utc};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// pro: 1,000 prompts (hard); flat: 100,000 (soft, then 1 cent per 100); open: unlimited.
const PLANS: &str = "[metrics]\nprompts = { unit = \"prompts\" }\n\
    [plans.pro]\nprice_cents = 1000\nlimits = { prompts = { limit = 1000, enforcement = \"hard\" } }\nfeatures = {}\n\
    [plans.flat]\nprice_cents = 2000\nlimits = { prompts = { limit = 100000, enforcement = \"soft\", overage = { price_cents = 1, per_units = 100 } } }\nfeatures = {}\n\
    [plans.open]\nprice_cents = 0\nlimits = { prompts = \"unlimited\" }\nfeatures = {}\n";

fn start(interval_secs: u32) -> Tally {
    let usage = format!("[usage]\ndefault_plan = \"pro\"\nforecast_interval_secs = {interval_secs}\n");
    Setup::new().config(PLANS).config(&usage).start()
}

/// A customer who has used `per_day` prompts every day for the last four months: their day
/// rows as the job would have copied them, their counter of this month, and their creation
/// four months back. Returns this month's usage.
fn seed(tally: &Tally, client: &mut Client, user: &str, per_day: u64) -> u64 {
    let today = Utc::now().date_naive();
    let first_of_month = today.with_day(1).unwrap();
    let used_today = per_day / 2;
    let this_month = per_day * u64::from(today.day() - 1) + used_today;
    // Recorded even past a hard limit: late in a month a heavy customer's usage passes it.
    let reply = client
        .post("/v1/track", &json!({ "user_id": user, "metric": "prompts", "amount": this_month, "enforce": false }));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let dir = tally.dir.path();
    let pk = count(dir, &format!("SELECT id FROM users WHERE user_id = '{user}'"));
    let start = first_of_month.checked_sub_months(chrono::Months::new(4)).unwrap();
    let mut rows = Vec::new();
    let (mut day, mut cumulative, mut period) = (start, 0u64, String::new());
    while day < today {
        let day_period = day.format("%Y-%m").to_string();
        if day_period != period {
            (period, cumulative) = (day_period, 0);
        }
        cumulative += per_day;
        rows.push(format!("('user', {pk}, 'prompts', '{}', '{period}', {cumulative})", day.format("%Y-%m-%d")));
        day += Days::days(1);
    }
    let created = start.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
    run_sql(
        dir,
        &format!(
            "INSERT INTO usage_days (owner_kind, owner_pk, metric, day, period, cumulative) VALUES {};
             UPDATE users SET created_at = {created} WHERE id = {pk};",
            rows.join(", ")
        ),
    );
    this_month
}

fn days_in_this_month() -> u64 {
    let today = Utc::now().date_naive();
    let first = today.with_day(1).unwrap();
    let next = first.checked_add_months(chrono::Months::new(1)).unwrap();
    (next - first).num_days() as u64
}

#[test]
fn a_steady_customer_is_projected_near_their_rate_with_an_interval_around_it() {
    let tally = start(3600);
    let mut client = tally.client();
    let used = seed(&tally, &mut client, "steady", 10);
    let reply = client.get("/v1/users/steady/forecast");
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let body = reply.json();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["period", "as_of", "plan", "account_id", "metrics"]);
    let prompts = &body["metrics"]["prompts"];
    let keys: Vec<&str> = prompts.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["used", "limit", "enforcement", "projected", "projected_low", "projected_high", "exhausted_at", "method"]
    );
    assert_eq!((prompts["used"].as_u64(), prompts["limit"].as_u64()), (Some(used), Some(1000)));
    let (low, projected, high) = (
        prompts["projected_low"].as_u64().unwrap(),
        prompts["projected"].as_u64().unwrap(),
        prompts["projected_high"].as_u64().unwrap(),
    );
    assert!(used <= low && low <= projected && projected <= high, "{prompts}");
    let expected = 10 * days_in_this_month();
    assert!(projected.abs_diff(expected) * 10 <= expected * 2, "{projected} within 20% of {expected}: {prompts}");
    assert!(
        low < expected + expected / 20 && high + expected / 20 > expected,
        "the interval holds the rate: {prompts}"
    );
    assert_eq!(prompts["exhausted_at"], Value::Null, "1,000 is never reached at 10 a day");
    assert_ne!(prompts["method"], "none");
}

#[test]
fn a_customer_heading_past_the_limit_is_told_when_it_runs_out() {
    let tally = start(3600);
    let mut client = tally.client();
    let used = seed(&tally, &mut client, "heavy", 60);
    let prompts = client.get("/v1/users/heavy/forecast?metric=prompts").json()["metrics"]["prompts"].clone();
    assert!(prompts["projected"].as_u64().unwrap() > 1000, "{prompts}");
    let runs_out = chrono::DateTime::parse_from_rfc3339(prompts["exhausted_at"].as_str().unwrap()).unwrap();
    // 1,000 at 60 a day is reached on day 17; once passed, it ran out today.
    let today = Utc::now().day();
    let expected = if used >= 1000 { today } else { 17 };
    assert!(
        runs_out.day().abs_diff(expected) <= 3,
        "runs out on day {} rather than about {expected}: {prompts}",
        runs_out.day()
    );
    assert_eq!(runs_out.month(), Utc::now().month());
}

#[test]
fn forecast_routes_refuse_what_they_cannot_answer_and_members_get_their_pool() {
    let tally = start(3600);
    let mut client = tally.client();
    assert_eq!(client.get("/v1/users/nobody/forecast").code(), "user_not_found");
    track(&mut client, "ann", "prompts", 3);
    let unknown = client.get("/v1/users/ann/forecast?metric=nope");
    assert_eq!((unknown.status, unknown.code()), (400, "unknown_metric".to_owned()));
    assert_eq!(client.get("/v1/users/ann/forecast?color=red").status, 400);
    assert_eq!(client.get("/v1/accounts/none/forecast").status, 404);
    let future = client.get("/v1/admin/forecast?period=9999-12");
    assert_eq!((future.status, future.code()), (400, "invalid_request".to_owned()), "a month that has not begun");

    assert_eq!(client.put("/v1/accounts/acme", &json!({ "plan": "flat" })).status, 200);
    assert_eq!(client.put("/v1/users/ann", &json!({ "account_id": "acme" })).status, 200);
    track(&mut client, "ann", "prompts", 7);
    let account = client.get("/v1/accounts/acme/forecast").json();
    assert_eq!((account["account_id"].as_str(), account["plan"].as_str()), (Some("acme"), Some("flat")));
    assert_eq!(account["metrics"]["prompts"]["used"], 7, "the pool counts what members used as members");
    assert_eq!(account["metrics"]["prompts"]["limit"], 100000);
    let member = client.get("/v1/users/ann/forecast").json();
    assert_eq!(member["account_id"], "acme");
    assert_eq!(member["metrics"], account["metrics"], "a member's forecast is their pool's");
}

/// Polls the admin view until the job has run `runs` times (its computed_at moved on).
fn wait_for_runs(client: &mut Client, runs: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let view = client.get("/v1/admin/forecast").json();
        if let Some(at) = view["computed_at"].as_str()
            && !seen.iter().any(|seen: &String| seen == at)
        {
            seen.push(at.to_owned());
            if seen.len() >= runs {
                return view;
            }
        }
        assert!(Instant::now() < deadline, "the job ran {} times: {view}", seen.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_job_copies_days_stores_projections_and_alerts_once() {
    let tally = start(1);
    let mut client = tally.client();
    let heavy = seed(&tally, &mut client, "heavy", 60);
    let steady = seed(&tally, &mut client, "steady", 10);
    track(&mut client, "unlimited-user", "prompts", 5);
    assert_eq!(client.put("/v1/users/unlimited-user", &json!({ "plan": "open" })).status, 200);
    let big = seed(&tally, &mut client, "big", 6000);
    assert_eq!(client.put("/v1/users/big", &json!({ "plan": "flat" })).status, 200);

    let view = wait_for_runs(&mut client, 3);
    let at_risk: Vec<&str> =
        view["at_risk"].as_array().unwrap().iter().map(|c| c["customer_id"].as_str().unwrap()).collect();
    assert_eq!(at_risk.len(), 2, "{view}");
    assert!(at_risk.contains(&"heavy") && at_risk.contains(&"big"), "{view}");
    let of =
        |id: &str| view["at_risk"].as_array().unwrap().iter().find(|risk| risk["customer_id"] == id).unwrap().clone();
    let risk = &of("heavy");
    assert_eq!(
        (risk["customer_kind"].as_str(), risk["metric"].as_str(), risk["limit"].as_u64()),
        (Some("user"), Some("prompts"), Some(1000))
    );
    assert!(risk["exhausted_at"].is_string());
    assert_eq!(view["totals"]["prompts"]["used"].as_u64(), Some(heavy + steady + 5 + big), "{view}");
    // Two users on pro (10.00 a month), one on flat (20.00), one on open (free); big's projection
    // past 100,000 costs 1 cent per started 100.
    let overage = (of("big")["projected"].as_u64().unwrap() - 100_000).div_ceil(100);
    assert_eq!(
        view["projected_revenue"],
        json!({ "currency": "USD", "plans_cents": 4000, "overage_cents": overage, "total_cents": 4000 + overage }),
        "{view}"
    );

    // Today's row is the counter as the job copied it.
    let dir = tally.dir.path();
    let today = Utc::now().format("%Y-%m-%d");
    let pk = count(dir, "SELECT id FROM users WHERE user_id = 'heavy'");
    let copied = count(
        dir,
        &format!("SELECT cumulative FROM usage_days WHERE owner_pk = {pk} AND owner_kind = 'user' AND day = '{today}'"),
    );
    assert_eq!(copied as u64, heavy);

    // Three runs, one event per customer past a limit.
    let events = client.get("/v1/admin/events?type=forecast_exceeds_limit").json()["events"].clone();
    let events = events.as_array().unwrap();
    let mut named: Vec<&str> = events.iter().map(|event| event["user_id"].as_str().unwrap()).collect();
    named.sort_unstable();
    assert_eq!(named, ["big", "heavy"], "{events:?}");
    let data = &events.iter().find(|event| event["user_id"] == "heavy").unwrap()["data"];
    assert_eq!(
        (data["metric"].as_str(), data["limit"].as_u64(), data["used"].as_u64()),
        (Some("prompts"), Some(1000), Some(heavy))
    );
    assert!(data["projected"].as_u64().unwrap() > 1000 && data["exhausted_at"].is_string(), "{data}");

    // Erasure takes the user's history and projections with it.
    let erased = client.request("DELETE", "/v1/admin/users/heavy", &[("Content-Type", "application/json")], None);
    assert!(erased.status == 200 || erased.status == 202, "{}", String::from_utf8_lossy(&erased.body));
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(dir, &format!("SELECT count(*) FROM usage_days WHERE owner_kind = 'user' AND owner_pk = {pk}")) > 0 {
        assert!(Instant::now() < deadline, "the erased user's day rows remain");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(dir, &format!("SELECT count(*) FROM forecasts WHERE owner_kind = 'user' AND owner_pk = {pk}")), 0);
}

#[test]
fn the_dashboard_shows_projections_the_running_out_list_and_a_forecast_line() {
    let tally = start(1);
    let mut client = tally.client();
    seed(&tally, &mut client, "heavy", 60);
    seed(&tally, &mut client, "steady", 10);
    let before = String::from_utf8(client.get("/admin").body).unwrap();
    assert!(before.contains("No forecast yet"), "before the job's first run");
    wait_for_runs(&mut client, 1);

    let overview = String::from_utf8(client.get("/admin").body).unwrap();
    let list = &overview[overview.find("Will run out soon").expect("the list")..];
    let list = &list[..list.find("</table>").expect("a table of customers")];
    assert!(list.contains("data-customer=\"heavy\""), "{list}");
    assert!(!list.contains("data-customer=\"steady\""), "10 a day stays under 1,000: {list}");
    assert!(overview.contains("class=\"projected\""), "this month's bar shows the projection");
    assert!(overview.contains("class=\"interval\""), "and its interval");

    let page = String::from_utf8(client.get("/admin/users/heavy").body).unwrap();
    let line = &page[page.find("class=\"muted forecast\"").expect("a forecast line")..];
    assert!(line.contains("Projected by the month") && line.contains("runs out"), "{}", &line[..300.min(line.len())]);
    let steady = String::from_utf8(client.get("/admin/users/steady").body).unwrap();
    let line = &steady[steady.find("class=\"muted forecast\"").expect("a forecast line")..];
    let line = &line[..line.find("</div>").unwrap()];
    assert!(!line.contains("runs out"), "{line}");
}
