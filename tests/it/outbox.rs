//! Events and webhooks at volume: receivers that hang, trickle or refuse delay only
//! themselves and give up on time; a client refused in a loop adds to one counter, not to the
//! event log; every delivery verifies with the receivers' own libraries (Standard Webhooks
//! and Stripe's), through a secret rotation.

use crate::backend::count;
use crate::receiver::{Answer, Receiver};
use crate::support::{Client, Setup, python, usage};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A plan with a hard limit of 100 prompts and a feature it does not grant.
const PLANS: &str = "[metrics]\nprompts = { unit = \"prompts\" }\n\
    [plans.trial]\nprice_cents = 0\nlimits = { prompts = { limit = 100, enforcement = \"hard\" } }\n\
    features = { export = false }\n\
    [plans.pro]\nprice_cents = 500\nlimits = { prompts = \"unlimited\" }\nfeatures = { export = true }\n";

fn hook(receiver: &Receiver, secret_line: &str) -> String {
    format!("[[webhooks]]\nurl = \"{}\"\n{secret_line}\nevents = [\"plan_changed\"]\n", receiver.url)
}

/// Polls `probe` (bounded) until it gives a value.
fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn deliveries(client: &mut Client, status: &str) -> Vec<Value> {
    let list = client.get(&format!("/v1/admin/webhooks/deliveries?status={status}&limit=500")).json();
    list["deliveries"].as_array().unwrap().clone()
}

fn change_plans(client: &mut Client, users: usize) {
    for index in 0..users {
        let reply = client.post(&format!("/v1/admin/users/u{index}/plan"), &json!({ "plan": "pro" }));
        assert_eq!(reply.status, 200);
    }
}

#[test]
fn a_hanging_receiver_delays_only_itself() {
    let hanging = Receiver::start(vec![], Answer::Hang);
    let healthy = Receiver::start(vec![], Answer::Status(200));
    // Attempts to the hanging receiver would hold a shared worker for ten minutes.
    let config = format!(
        "{}{}[webhook_delivery]\ntimeout_ms = 600000\nmax_in_flight = 2\nretry_initial_ms = 20\n",
        hook(&hanging, "secret = \"s1\""),
        hook(&healthy, "secret = \"s2\"")
    );
    let tally = Setup::new().config(PLANS).config(&config).start();
    let mut client = tally.client();
    change_plans(&mut client, 60);
    let received = healthy.wait_for("60 deliveries to the healthy receiver", |all| all.len() >= 60);
    let ids: HashSet<&str> = received.iter().filter_map(|request| request.header("webhook-id")).collect();
    assert_eq!(ids.len(), 60, "each event once");
    assert_eq!(hanging.hanging(), 2, "the hanging receiver holds its own two workers, no more");
    let delivered = wait_until("60 recorded deliveries", || {
        let delivered = deliveries(&mut client, "delivered");
        (delivered.len() == 60).then_some(delivered)
    });
    assert!(delivered.iter().all(|delivery| delivery["url"] == healthy.url.as_str()));
    hanging.release();
}

#[test]
fn a_trickling_receiver_is_cut_off_at_the_attempt_deadline() {
    let trickling = Receiver::start(vec![], Answer::Trickle);
    let config = format!(
        "{}[webhook_delivery]\ntimeout_ms = 500\nmax_in_flight = 1\nretry_initial_ms = 20\nretry_max_ms = 50\n",
        hook(&trickling, "secret = \"s\"")
    );
    let tally = Setup::new().config(PLANS).config(&config).start();
    let mut client = tally.client();
    change_plans(&mut client, 1);
    // One header byte every 100 ms never times out a read; only a whole-attempt deadline
    // ends an attempt, so the next one can start.
    trickling.wait_for("three attempts", |all| all.len() >= 3);
    let delivery = wait_until("two recorded failures", || {
        let pending = deliveries(&mut client, "pending");
        let id = pending.first()?["id"].clone();
        let one = client.get(&format!("/v1/admin/webhooks/deliveries/{id}")).json();
        (one["failed_attempts"].as_array()?.len() >= 2).then_some(one)
    });
    for failed in delivery["failed_attempts"].as_array().unwrap() {
        let error = failed["error"].as_str().unwrap().to_lowercase();
        assert!(error.contains("timeout") || error.contains("timed out"), "{error}");
    }
}

#[test]
fn deliveries_past_give_up_are_failed_within_a_poll_period_while_the_receiver_hangs() {
    let hanging = Receiver::start(vec![], Answer::Hang);
    let config = format!(
        "{}[webhook_delivery]\ntimeout_ms = 600000\nmax_in_flight = 1\nretry_initial_ms = 100\ngive_up_after_secs = 1\n",
        hook(&hanging, "secret = \"s\"")
    );
    let tally = Setup::new().config(PLANS).config(&config).start();
    let mut client = tally.client();
    change_plans(&mut client, 10);
    hanging.wait_hanging();
    // One attempt hangs (for ten minutes); the other nine, queued in its lane or still in the
    // outbox, are failed once their second is over, without an attempt.
    let failed = wait_until("nine deliveries given up", || {
        let failed = deliveries(&mut client, "failed");
        (failed.len() == 9).then_some(failed)
    });
    for delivery in &failed {
        assert!(delivery["last_error"].as_str().unwrap().starts_with("gave up"), "{delivery}");
        assert_eq!(delivery["attempts"], 0, "never attempted: {delivery}");
    }
    assert_eq!(deliveries(&mut client, "pending").len(), 1, "the attempt in flight");
    assert_eq!(hanging.hanging(), 1);
    hanging.release();
}

#[test]
fn standard_webhooks_and_stripe_verify_a_delivery_signed_with_both_rotating_secrets() {
    let receiver = Receiver::start(vec![], Answer::Status(200));
    let (new, old, plain) = ("whsec_bmV3LXNlY3JldC1rZXk=", "whsec_b2xkLXNlY3JldC1rZXk=", "d3Jvbmc=");
    let tally =
        Setup::new().config(PLANS).config(&hook(&receiver, &format!("secrets = [\"{new}\", \"{old}\"]"))).start();
    tally.client().post("/v1/admin/users/rotating/plan", &json!({ "plan": "pro" }));
    let received = receiver.wait_for("a delivery", |all| !all.is_empty());
    let request = &received[0];
    let headers: serde_json::Map<String, Value> =
        request.headers.iter().map(|(name, value)| (name.clone(), Value::from(value.as_str()))).collect();
    let delivery = tally.dir.path().join("delivery.json");
    std::fs::write(&delivery, json!({ "headers": headers, "body": request.body }).to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/verify_webhook.py");
    // Both secrets verify with both libraries; a third one is refused by both.
    let output = std::process::Command::new(python())
        .arg(&script)
        .arg(&delivery)
        .args([new, old, &format!("!whsec_{plain}")])
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{report}");
    assert_eq!(report.lines().count(), 3, "{report}");
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(request.header("webhook-id"), body["id"].as_str(), "webhook-id is the event id");
}

#[test]
fn a_client_refused_in_a_loop_adds_to_one_counter_and_one_event_per_interval() {
    let tally = Setup::new().config(PLANS).start();
    let mut client = tally.client();
    assert_eq!(client.post("/v1/track", &usage("looper", "prompts", json!({ "amount": 100 }))).status, 200);
    for _ in 0..500 {
        assert_eq!(client.post("/v1/track", &usage("looper", "prompts", json!({}))).status, 429);
    }
    for _ in 0..50 {
        let denied = client.post("/v1/features/use", &json!({ "user_id": "looper", "feature": "export" }));
        assert_eq!(denied.status, 403);
    }
    let dir = tally.dir.path();
    let events = |kind: &str| count(dir, &format!("SELECT count(*) FROM events WHERE type = '{kind}'"));
    // The default interval is an hour: the first refusal of each counter writes its event.
    assert_eq!((events("limit_exceeded"), events("feature_denied")), (1, 1), "550 refusals, one event per counter");
    assert_eq!(count(dir, "SELECT count(*) FROM refusals"), 2, "one row per user, period, kind and subject");
    let all = client.get("/v1/admin/events?user_id=looper").json();
    let looper_events = count(dir, "SELECT count(*) FROM events WHERE user_id = 'looper'");
    assert_eq!(looper_events, 4, "two thresholds crossed, two refusal events: {all}");

    let view = client.get("/v1/users/looper").json();
    assert_eq!(view["usage"]["prompts"]["refused"], 500);
    assert_eq!(view["usage"]["prompts"]["used"], 100);
    assert_eq!(view["features"]["export"]["refused"], 50);
    let admin_view = client.get("/v1/admin/users/looper").json();
    assert_eq!(admin_view["usage"]["prompts"]["refused"], 500);
    let metrics = client.get("/metrics").body;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("tally_track_total{metric=\"prompts\",outcome=\"limit_exceeded\"} 500"), "{metrics}");
}

#[test]
fn a_refusal_event_carries_the_refusals_since_the_previous_one() {
    let tally = Setup::new().config(PLANS).config("[usage]\nrefusal_event_interval_secs = 1\n").start();
    let mut client = tally.client();
    client.post("/v1/track", &usage("again", "prompts", json!({ "amount": 100 })));
    let first = Instant::now();
    for _ in 0..20 {
        assert_eq!(client.post("/v1/track", &usage("again", "prompts", json!({}))).status, 429);
    }
    while first.elapsed() < Duration::from_millis(1100) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(client.post("/v1/track", &usage("again", "prompts", json!({}))).status, 429);
    // Whatever the pace of the 21 refusals, each event stands for those since the previous
    // one, the events are at least the interval apart, and none is lost or counted twice.
    let listed = client.get("/v1/admin/events?type=limit_exceeded&user_id=again").json();
    let listed = listed["events"].as_array().unwrap().clone();
    assert!(listed.len() >= 2, "the first refusal and one after the interval: {listed:?}");
    assert_eq!(listed[0]["data"]["refusals"], 1, "the first refusal reports itself");
    let at: Vec<chrono::DateTime<chrono::Utc>> =
        listed.iter().map(|event| event["at"].as_str().unwrap().parse().unwrap()).collect();
    assert!(at.windows(2).all(|pair| (pair[1] - pair[0]).num_milliseconds() >= 1000), "{at:?}");
    let reported: i64 = listed.iter().map(|event| event["data"]["refusals"].as_i64().unwrap()).sum();
    let unreported = count(tally.dir.path(), "SELECT unreported FROM refusals WHERE user_id = 'again'");
    assert_eq!(reported + unreported, 21);
}

/// Inserts `n` events naming `user_id` straight into the server's database.
fn seed_events(dir: &Path, user_id: &str, n: u32) {
    let sql = if crate::backend::is_postgres() {
        format!(
            "INSERT INTO events (id, type, at, user_id, data)
             SELECT 'seed-' || i, 'plan_changed', 1764547200000 + i, '{user_id}', '{{\"n\":' || i || '}}'
             FROM generate_series(1, {n}) AS i"
        )
    } else {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
             INSERT INTO events (id, type, at, user_id, data)
             SELECT 'seed-' || i, 'plan_changed', 1764547200000 + i, '{user_id}', '{{\"n\":' || i || '}}' FROM n"
        )
    };
    crate::backend::run_sql(dir, &sql);
}

#[test]
fn an_export_of_100_000_events_streams_complete_as_json_and_as_ndjson() {
    let tally = Setup::new().config(PLANS).start();
    let mut client = tally.client();
    assert_eq!(client.post("/v1/track", &usage("exporter", "prompts", json!({ "amount": 3 }))).status, 200);
    seed_events(tally.dir.path(), "exporter", 100_000);

    let reply = client.get("/v1/admin/users/exporter/export");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"), "streamed, not held whole");
    let document = reply.json();
    assert_eq!(document["user"]["user_id"], "exporter");
    assert_eq!(document["counters"][0]["value"], 3);
    let events = document["events"].as_array().unwrap();
    assert_eq!(events.len(), 100_000, "every event, in order");
    assert!(events.iter().enumerate().all(|(index, event)| event["data"]["n"] == index as u64 + 1));

    let reply = client.request("GET", "/v1/admin/users/exporter/export", &[("Accept", "application/x-ndjson")], None);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> =
        String::from_utf8(reply.body).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines[0]["kind"], "user");
    assert_eq!(lines[0]["data"]["user"]["user_id"], "exporter");
    let events: Vec<&Value> = lines.iter().filter(|line| line["kind"] == "event").collect();
    assert_eq!(events.len(), 100_000);
    assert_eq!(events[99_999]["data"]["data"]["n"], 100_000);
    assert_eq!(lines.iter().filter(|line| line["kind"] == "counter").count(), 1);
    assert_eq!(client.get("/v1/admin/users/nobody/export").code(), "user_not_found");
}
