//! Events, webhooks, Prometheus metrics and logs, against the real server and a real local
//! webhook receiver.

use crate::backend::{count, run_sql};
use crate::receiver::{Answer, Receiver};
use crate::support::{Client, Setup, Tally, track, usage};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_dGVzdF9zZWNyZXQ=";

/// A plan with a hard limit of 100 prompts and a soft one of 100 e2e runs.
const PLANS: &str = "[metrics]\nprompts = { unit = \"prompts\" }\ne2e_runs = { unit = \"runs\" }\n\
    [plans.trial]\nprice_cents = 0\n\
    limits = { prompts = { limit = 100, enforcement = \"hard\" }, e2e_runs = { limit = 100, enforcement = \"soft\" } }\n\
    features = { export = false, snap = { limit = 1, window_secs = 3600 } }\n\
    [plans.pro]\nprice_cents = 500\nlimits = { prompts = \"unlimited\", e2e_runs = \"unlimited\" }\n\
    features = { export = true, snap = { per_minute = 100 } }\n";

fn events(client: &mut Client, query: &str) -> Vec<Value> {
    let reply = client.get(&format!("/v1/admin/events?limit=1000{query}"));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()["events"].as_array().unwrap().clone()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|event| event["type"] == kind).collect()
}

fn race(tally: &Tally, user: &str, metric: &str) -> (usize, usize) {
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let mut client = tally.client();
            let (user, metric) = (user.to_owned(), metric.to_owned());
            std::thread::spawn(move || {
                let mut counts = (0, 0);
                for _ in 0..5 {
                    match client.post("/v1/track", &usage(&user, &metric, json!({}))).status {
                        200 => counts.0 += 1,
                        429 => counts.1 += 1,
                        other => panic!("status {other}"),
                    }
                }
                counts
            })
        })
        .collect();
    handles.into_iter().map(|handle| handle.join().unwrap()).fold((0, 0), |acc, c| (acc.0 + c.0, acc.1 + c.1))
}

#[test]
fn each_event_is_written_exactly_once_when_32_threads_race_across_the_thresholds() {
    let tally = Setup::new().config(PLANS).start();
    let (ok, refused) = race(&tally, "racer", "prompts");
    assert_eq!((ok, refused), (100, 60));
    let (ok, _) = race(&tally, "racer", "e2e_runs");
    assert_eq!(ok, 160, "a soft limit refuses nothing");

    let mut client = tally.client();
    let all = events(&mut client, "&user_id=racer");
    let crossed = of_type(&all, "threshold_crossed");
    let mut seen: Vec<(String, f64)> = crossed
        .iter()
        .map(|event| {
            (event["data"]["metric"].as_str().unwrap().to_owned(), event["data"]["threshold"].as_f64().unwrap())
        })
        .collect();
    seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        seen,
        [("e2e_runs".into(), 0.8), ("e2e_runs".into(), 1.0), ("prompts".into(), 0.8), ("prompts".into(), 1.0)],
        "one event per metric and threshold"
    );
    let at_80 =
        crossed.iter().find(|event| event["data"]["metric"] == "prompts" && event["data"]["threshold"] == 0.8).unwrap();
    assert_eq!(at_80["data"]["used"], 80, "emitted by the track that reached 80");
    assert_eq!(of_type(&all, "soft_limit_exceeded").len(), 1);
    assert_eq!(of_type(&all, "soft_limit_exceeded")[0]["data"]["used"], 101);
    // 60 tracks were refused: they are counted, and the first writes the one event of the
    // hour ([usage] refusal_event_interval_secs).
    let exceeded = of_type(&all, "limit_exceeded");
    assert_eq!(exceeded.len(), 1, "one event for the refusals of the interval");
    assert_eq!(
        exceeded[0]["data"],
        json!({ "metric": "prompts", "period": exceeded[0]["data"]["period"], "plan": "trial", "used": 100, "limit": 100, "amount": 1, "refusals": 1 })
    );
    let view = client.get("/v1/users/racer").json();
    assert_eq!(
        (view["usage"]["prompts"]["used"].as_u64(), view["usage"]["prompts"]["refused"].as_u64()),
        (Some(100), Some(60))
    );
    for event in &all {
        assert_eq!(event["user_id"], "racer");
        assert!(event["id"].as_str().unwrap().len() == 36 && event["at"].as_str().unwrap().ends_with('Z'));
    }
}

#[test]
fn only_the_track_that_crosses_a_threshold_marks_it() {
    let tally = Setup::new().config(PLANS).start();
    let mut client = tally.client();
    let dir = tally.dir.path();
    // 85 of 100 prompts crosses 0.8; 101 of 100 soft e2e runs cross 0.8, 1.0 and the soft limit.
    track(&mut client, "past", "prompts", 85);
    track(&mut client, "past", "e2e_runs", 101);
    assert_eq!(count(dir, "SELECT count(*) FROM usage_alerts"), 4);
    // Forget the marks: a track that still looked at every threshold at or below its usage
    // would write them (and their events) again.
    run_sql(dir, "DELETE FROM usage_alerts");
    for _ in 0..5 {
        track(&mut client, "past", "prompts", 1);
        track(&mut client, "past", "e2e_runs", 1);
    }
    assert_eq!(count(dir, "SELECT count(*) FROM usage_alerts"), 0, "tracks past the thresholds mark nothing");
    let all = events(&mut client, "&user_id=past");
    assert_eq!((of_type(&all, "threshold_crossed").len(), of_type(&all, "soft_limit_exceeded").len()), (3, 1));
    // Crossing the next level still marks and emits: 90 + 10 reaches the prompts' 1.0.
    track(&mut client, "past", "prompts", 10);
    assert_eq!(count(dir, "SELECT count(*) FROM usage_alerts"), 1);
    assert_eq!(of_type(&events(&mut client, "&user_id=past"), "threshold_crossed").len(), 4);
}

#[test]
fn feature_and_admin_actions_emit_their_events_and_paging_works() {
    let tally = Setup::new().config(PLANS).start();
    let mut client = tally.client();
    assert_eq!(client.post("/v1/features/use", &json!({ "user_id": "f", "feature": "export" })).status, 403);
    assert_eq!(client.post("/v1/features/use", &json!({ "user_id": "f", "feature": "snap" })).status, 200);
    assert_eq!(client.post("/v1/features/use", &json!({ "user_id": "f", "feature": "snap" })).status, 429);
    client.post("/v1/admin/users/f/plan", &json!({ "plan": "pro" }));
    client.post("/v1/admin/users/f/reset", &json!({}));
    client.post("/v1/admin/cleanup", &json!({ "retention_months": 12 }));
    client.request("DELETE", "/v1/admin/users/f", &[("Content-Type", "application/json")], None);

    let all = events(&mut client, "");
    let kinds: Vec<&str> = all.iter().map(|event| event["type"].as_str().unwrap()).collect();
    // The first cleanup is the scheduled one at startup.
    assert_eq!(
        kinds,
        ["cleanup", "feature_denied", "rate_limited", "plan_changed", "usage_reset", "cleanup", "user_erased"]
    );
    assert_eq!(all[1]["data"]["plan_required"], "pro");
    assert!(all[2]["data"]["retry_after_ms"].as_u64().unwrap() > 0);
    assert_eq!(all[3]["data"], json!({ "from": "trial", "to": "pro" }));
    let hash = all[6]["user_id"].as_str().unwrap();
    assert!(hash.starts_with("sha256:"));
    assert!(all.iter().all(|event| event["user_id"] != "f"), "erasure redacts the user's events");

    let first = client.get("/v1/admin/events?limit=2").json();
    let after = first["next_after"].as_str().unwrap().to_owned();
    let second = client.get(&format!("/v1/admin/events?limit=2&after={after}")).json();
    assert_eq!(second["events"][0]["type"], "rate_limited");
    assert_eq!(events(&mut client, "&type=cleanup").len(), 2);
    assert_eq!(client.get("/v1/admin/events?type=nope").status, 400);
    assert_eq!(client.get("/v1/admin/events?since=yesterday").status, 400);
    assert!(events(&mut client, "&since=2999-01-01T00:00:00Z").is_empty());
}

#[test]
fn telemetry_disabled_writes_no_events_but_still_audits() {
    let tally = Setup::new().config(PLANS).env("TELEMETRY_ENABLED", "false").start();
    let mut client = tally.client();
    client.post("/v1/track", &usage("quiet", "prompts", json!({ "amount": 100 })));
    assert_eq!(client.post("/v1/track", &usage("quiet", "prompts", json!({}))).status, 429);
    client.post("/v1/admin/users/quiet/plan", &json!({ "plan": "pro" }));
    assert!(events(&mut client, "").is_empty());
    let audit = client.get("/v1/admin/audit").json();
    assert_eq!(audit["entries"][0]["action"], "plan_changed");
}

fn webhook_config(receiver: &Receiver, events: &str) -> String {
    format!(
        "[[webhooks]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nevents = {events}\n\
         [webhook_delivery]\nretry_initial_ms = 20\nretry_max_ms = 100\ntimeout_ms = 2000\n",
        receiver.url
    )
}

fn verify(received: &crate::receiver::Received) -> Value {
    let signature = received.header("tally-signature").expect("Tally-Signature");
    let (t, v1) = signature.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", received.body).as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(v1, expected, "the signature verifies with the secret");
    let body: Value = serde_json::from_str(&received.body).unwrap();
    assert_eq!(received.header("tally-event-id"), body["id"].as_str());
    body
}

#[test]
fn a_receiver_gets_signed_events_and_one_failing_three_times_gets_them_later() {
    let receiver =
        Receiver::start(vec![Answer::Status(500), Answer::Status(503), Answer::Status(404)], Answer::Status(204));
    let tally = Setup::new()
        .config(PLANS)
        .config(&webhook_config(&receiver, "[\"limit_exceeded\", \"threshold_crossed\"]"))
        .start();
    let mut client = tally.client();
    client.post("/v1/track", &usage("hooked", "prompts", json!({ "amount": 100 })));
    assert_eq!(client.post("/v1/track", &usage("hooked", "prompts", json!({}))).status, 429);

    // Two thresholds and one refusal: three events, delivered after three failed attempts.
    let received = receiver.wait_for("three distinct events", |all| {
        let ids: std::collections::HashSet<_> = all.iter().filter_map(|r| r.header("tally-event-id")).collect();
        ids.len() >= 3 && all.len() >= 6
    });
    let mut delivered = std::collections::HashMap::new();
    for request in &received {
        let body = verify(request);
        delivered.insert(body["id"].as_str().unwrap().to_owned(), body); // the receiver deduplicates by id
    }
    let mut kinds: Vec<&str> = delivered.values().map(|body| body["type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["limit_exceeded", "threshold_crossed", "threshold_crossed"]);
    assert!(delivered.values().all(|body| body["user_id"] == "hooked" && body["data"].is_object()));

    let done = (0..500).find_map(|_| {
        let list = client.get("/v1/admin/webhooks/deliveries?status=delivered").json();
        let deliveries = list["deliveries"].as_array().unwrap().clone();
        (deliveries.len() == 3).then_some(deliveries).or_else(|| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            None
        })
    });
    let deliveries = done.expect("all three deliveries are marked delivered");
    assert_eq!(deliveries.iter().map(|d| d["attempts"].as_u64().unwrap()).sum::<u64>(), 6, "3 failures + 3 successes");
    assert!(deliveries.iter().all(|d| d["last_error"].is_null()), "a success clears last_error: {deliveries:?}");
    let mut errors: Vec<String> = Vec::new();
    for delivery in &deliveries {
        let one = client.get(&format!("/v1/admin/webhooks/deliveries/{}", delivery["id"])).json();
        assert_eq!(one["status"], "delivered");
        for failed in one["failed_attempts"].as_array().unwrap() {
            errors.push(failed["error"].as_str().unwrap().to_owned());
        }
    }
    errors.sort();
    assert_eq!(
        errors,
        ["the receiver answered HTTP 404", "the receiver answered HTTP 500", "the receiver answered HTTP 503"],
        "the history keeps the failed attempts"
    );
    assert_eq!(client.get("/v1/admin/webhooks/deliveries/999999").code(), "delivery_not_found");
}

#[test]
fn a_restart_during_retries_still_delivers() {
    let receiver = Receiver::start(vec![], Answer::Status(500));
    let tally = Setup::new().config(PLANS).config(&webhook_config(&receiver, "[\"plan_changed\"]")).start();
    let mut client = tally.client();
    client.post("/v1/admin/users/r/plan", &json!({ "plan": "pro" }));
    receiver.wait_for("two failed attempts", |all| all.iter().filter(|r| r.body.contains("plan_changed")).count() >= 2);
    let mut tally = tally;
    tally.kill();
    receiver.answer_all(Answer::Status(200));
    let tally = tally.restart();
    let received = receiver.wait_for("a delivery after the restart", |all| all.len() >= 3);
    let plan_changes: Vec<Value> = received.iter().map(verify).filter(|body| body["type"] == "plan_changed").collect();
    assert!(plan_changes.len() >= 3);
    assert!(plan_changes.windows(2).all(|pair| pair[0]["id"] == pair[1]["id"]), "the same event, retried");
    drop(tally);
}

#[test]
fn a_hanging_receiver_does_not_slow_tracks_down() {
    let receiver = Receiver::start(vec![], Answer::Hang);
    let tally = Setup::new().config(PLANS).config(&webhook_config(&receiver, "[\"plan_changed\"]")).start();
    let mut client = tally.client();
    client.post("/v1/admin/users/h/plan", &json!({ "plan": "pro" }));
    receiver.wait_hanging();
    // The delivery is stuck inside the receiver; tracks answer regardless.
    for _ in 0..50 {
        assert_eq!(client.post("/v1/track", &usage("h", "prompts", json!({}))).status, 200);
    }
    let pending = client.get("/v1/admin/webhooks/deliveries?status=pending").json();
    assert_eq!(pending["deliveries"].as_array().unwrap().len(), 1, "still waiting on the receiver");
    receiver.release();
}

#[test]
fn a_failed_delivery_can_be_retried_by_hand() {
    let receiver = Receiver::start(vec![], Answer::Status(500));
    let config = webhook_config(&receiver, "[\"plan_changed\"]")
        .replace("timeout_ms = 2000", "timeout_ms = 2000\ngive_up_after_secs = 1");
    let tally = Setup::new().config(PLANS).config(&config).start();
    let mut client = tally.client();
    assert_eq!(client.post("/v1/admin/webhooks/deliveries/999/retry", &json!({})).code(), "delivery_not_found");
    client.post("/v1/admin/users/m/plan", &json!({ "plan": "pro" }));
    let failed = (0..1000)
        .find_map(|_| {
            let list = client.get("/v1/admin/webhooks/deliveries?status=failed").json();
            let found = list["deliveries"].as_array().unwrap().first().cloned();
            if found.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            found
        })
        .expect("the delivery fails once its retry window is over");
    assert!(failed["attempts"].as_u64().unwrap() >= 2);
    assert!(failed["last_error"].as_str().unwrap().contains("500"));
    let attempts_before = receiver.wait_for("the failed attempts", |_| true).len();

    receiver.answer_all(Answer::Status(200));
    let id = failed["id"].as_i64().unwrap();
    let requeued = client.post(&format!("/v1/admin/webhooks/deliveries/{id}/retry"), &json!({}));
    assert_eq!(requeued.json()["status"], "pending");
    receiver.wait_for("the retried delivery", |all| all.len() > attempts_before);
    let delivered = (0..1000).find(|_| {
        let list = client.get("/v1/admin/webhooks/deliveries?status=delivered").json();
        let done = list["deliveries"].as_array().unwrap().iter().any(|d| d["id"] == id);
        if !done {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        done
    });
    assert!(delivered.is_some(), "marked delivered after the manual retry");
    let conflict = client.post(&format!("/v1/admin/webhooks/deliveries/{id}/retry"), &json!({}));
    assert_eq!((conflict.status, conflict.code().as_str()), (409, "delivery_not_failed"));
    assert_eq!(client.get("/v1/admin/webhooks/deliveries?status=lost").status, 400);
}

pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text parses");
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| labels.iter().all(|(key, value)| sample.labels.get(key) == Some(*value)))
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Gauge(value) => value,
            prometheus_parse::Value::Untyped(value) => value,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_the_traffic_sent() {
    let tally = Setup::new().config(PLANS).config("[auth]\nadmin_keys = [\"admin-key-for-metrics\"]\n").start();
    let mut client = tally.client().with_key("admin-key-for-metrics");
    for _ in 0..8 {
        client.post("/v1/track", &usage("m", "prompts", json!({ "amount": 10 })));
    }
    for _ in 0..3 {
        client.post("/v1/features/use", &json!({ "user_id": "m", "feature": "export" }));
    }
    client.request(
        "POST",
        "/v1/track",
        &[("Content-Type", "application/json"), ("Idempotency-Key", "k")],
        Some(usage("m", "e2e_runs", json!({})).to_string().as_bytes()),
    );
    client.request(
        "POST",
        "/v1/track",
        &[("Content-Type", "application/json"), ("Idempotency-Key", "k")],
        Some(usage("m", "e2e_runs", json!({})).to_string().as_bytes()),
    );
    assert_eq!(tally.client().get("/metrics").status, 401, "admin key by default");
    let reply = client.get("/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = String::from_utf8(reply.body).unwrap();
    assert_eq!(sample(&text, "tally_track_total", &[("metric", "prompts"), ("outcome", "recorded")]), 8.0);
    assert_eq!(sample(&text, "tally_track_total", &[("metric", "e2e_runs"), ("outcome", "replayed")]), 1.0);
    assert_eq!(sample(&text, "tally_feature_use_total", &[("feature", "export"), ("outcome", "not_in_plan")]), 3.0);
    assert_eq!(
        sample(&text, "tally_http_requests_total", &[("route", "/v1/track"), ("method", "POST"), ("status", "200")]),
        10.0
    );
    assert_eq!(sample(&text, "tally_http_requests_total", &[("route", "/metrics"), ("status", "401")]), 1.0);
    assert_eq!(sample(&text, "tally_events_total", &[("type", "threshold_crossed")]), 1.0, "80 of 100 prompts");
    assert_eq!(sample(&text, "tally_events_total", &[("type", "feature_denied")]), 1.0, "refusals aggregate");
    assert_eq!(sample(&text, "tally_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(sample(&text, "tally_database_bytes", &[]) > 0.0);
    assert!(sample(&text, "tally_writer_batch_size_count", &[]) >= 10.0);
    assert!(text.contains("tally_http_request_duration_seconds_bucket{route=\"/v1/track\",le="), "{text}");
    assert!(!text.contains("\"m\""), "no user id becomes a label");

    let public = Setup::new()
        .server("metrics_public = true")
        .config("[auth]\nadmin_keys = [\"admin-key-for-metrics\"]\n")
        .start();
    assert_eq!(public.client().get("/metrics").status, 200);
}

const PROMTOOL: &str = "/usr/bin/promtool";

/// `promtool check metrics` on `text`: its exit status and what it printed.
fn promtool_check(text: &str) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {PROMTOOL} ({error}); run scripts/install-promtool.sh"));
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status, said)
}

#[test]
fn metrics_negotiate_the_classic_text_format_unless_openmetrics_is_asked_for() {
    let tally = Setup::new().config(PLANS).server("metrics_public = true").start();
    let mut client = tally.client();
    // Every kind of series: counters with labels, histograms, gauges, the event counter.
    client.post("/v1/track", &usage("m", "prompts", json!({ "amount": 90 })));
    client.post("/v1/track", &usage("m", "prompts", json!({ "amount": 90 })));
    client.post("/v1/features/use", &json!({ "user_id": "m", "feature": "export" }));

    let classic = client.get("/metrics");
    assert_eq!(classic.status, 200);
    assert_eq!(classic.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(classic.header("vary"), Some("Accept"));
    let text = String::from_utf8(classic.body).unwrap();
    assert!(text.contains("# TYPE tally_track_total counter\n"), "{text}");
    assert!(text.contains("# HELP tally_track_total "), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    let (status, said) = promtool_check(&text);
    assert!(status.success(), "promtool check metrics refused the classic format:\n{said}\n{text}");

    let scraper_accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    for accept in ["application/openmetrics-text", scraper_accept] {
        let open = client.request("GET", "/metrics", &[("Accept", accept)], None);
        assert_eq!(open.status, 200);
        assert_eq!(open.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
        let text = String::from_utf8(open.body).unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE tally_track counter\n"), "OpenMetrics names the family without _total: {text}");
        assert!(text.contains("tally_track_total{metric=\"prompts\",outcome=\"limit_exceeded\"} 1"), "{text}");
    }

    let plain = client.request("GET", "/metrics", &[("Accept", "text/plain")], None);
    assert_eq!(plain.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
}

#[test]
fn json_logs_parse_carry_the_request_id_and_never_the_key() {
    let key = "super-secret-admin-key-0123456789";
    let tally =
        Setup::new().server("log_format = \"json\"").config(&format!("[auth]\nadmin_keys = [\"{key}\"]\n")).start();
    let mut client = tally.client().with_key(key);
    let reply = client.request(
        "POST",
        "/v1/track",
        &[("Content-Type", "application/json"), ("X-Request-Id", "req-42.a:b")],
        Some(usage("logged", "prompts", json!({})).to_string().as_bytes()),
    );
    assert_eq!(reply.header("x-request-id"), Some("req-42.a:b"));
    let generated = client.request("GET", "/v1/users/logged", &[("X-Request-Id", "bad id with spaces")], None);
    let generated_id = generated.header("x-request-id").unwrap().to_owned();
    assert_ne!(generated_id, "bad id with spaces");
    tally.client().request("GET", "/v1/users/logged", &[("Authorization", &format!("Bearer {key}x"))], None);

    let log = std::fs::read_to_string(tally.dir.path().join("stderr.log")).unwrap();
    assert!(!log.contains(key), "a key reached the log");
    let lines: Vec<Value> = log.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
    let access: Vec<&Value> = lines.iter().filter(|line| line["target"] == "tally::access").collect();
    let tracked = access.iter().find(|line| line["request_id"] == "req-42.a:b").expect("the access line");
    assert_eq!(
        (tracked["method"].as_str(), tracked["route"].as_str(), tracked["status"].as_u64()),
        (Some("POST"), Some("/v1/track"), Some(200))
    );
    assert!(tracked["duration_ms"].is_number() && tracked["ts"].is_string() && tracked["level"] == "INFO");
    assert!(access.iter().any(|line| line["request_id"] == generated_id.as_str()));
}
