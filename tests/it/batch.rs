//! `POST /v1/track/batch` against the real server: each event answered alone and in input
//! order, keys shared with single tracks, the batch's bounds, and CloudEvents as OpenMeter
//! sends them.

use crate::support::{Client, Reply, Tally, usage};
use crate::telemetry::sample;
use serde_json::{Value, json};

fn batch(client: &mut Client, events: Value) -> Reply {
    client.post("/v1/track/batch", &json!({ "events": events }))
}

fn cloud(client: &mut Client, content_type: &str, body: &Value) -> Reply {
    let headers = [("Content-Type", content_type)];
    client.request("POST", "/v1/track/batch", &headers, Some(body.to_string().as_bytes()))
}

fn results(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()["results"].as_array().unwrap().clone()
}

fn statuses(results: &[Value]) -> Vec<u64> {
    results.iter().map(|result| result["status"].as_u64().unwrap()).collect()
}

fn used(client: &mut Client, user: &str, query: &str) -> Value {
    client.get(&format!("/v1/users/{user}{query}")).json()["usage"]["prompts"]["used"].clone()
}

#[test]
fn each_event_stands_alone_and_a_users_events_apply_in_input_order() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let reply = batch(
        &mut client,
        json!([
            usage("b-ann", "prompts", json!({ "amount": 20 })),
            usage("b-ann", "prompts", json!({ "amount": 20 })), // 40 > 30: refused
            usage("b-ann", "prompts", json!({ "amount": 10 })), // exactly 30 after the refusal
            usage("b-ann", "nope", json!({})),
            usage("b-ann", "prompts", json!({ "amount": 0 })),
            usage("b-ann", "prompts", json!({ "colour": "red" })),
            usage("b-bob", "e2e_runs", json!({ "amount": 4 })),
            usage("b-ann", "prompts", json!({ "amount": 1 })),
            usage("b-bob", "prompts", json!({ "amount": 31, "enforce": false })),
        ]),
    );
    let results = results(&reply);
    assert_eq!(statuses(&results), [200, 429, 200, 400, 400, 400, 200, 429, 200]);
    assert_eq!(results[0]["body"]["used"], 20);
    assert_eq!(results[1]["body"]["error"]["code"], "limit_exceeded");
    assert_eq!(results[1]["body"]["error"]["used"], 20, "the refusal saw the first event and nothing else");
    assert_eq!((results[2]["body"]["used"].clone(), results[2]["body"]["remaining"].clone()), (json!(30), json!(0)));
    assert_eq!(results[3]["body"]["error"]["code"], "unknown_metric");
    assert_eq!(results[5]["body"]["error"]["code"], "invalid_request");
    assert!(results[5]["body"]["error"]["message"].as_str().unwrap().contains("colour"), "{}", results[5]);
    assert_eq!(results[6]["body"]["used"], 4);
    assert_eq!(results[8]["body"]["enforced"], false);
    // The single-track answers, field for field.
    let single = client.post("/v1/check", &usage("b-ann", "prompts", json!({})));
    assert_eq!(single.json()["used"], 30);
    assert_eq!(used(&mut client, "b-ann", ""), 30);
    assert_eq!(used(&mut client, "b-bob", ""), 31);
}

#[test]
fn event_keys_replay_within_a_batch_and_against_single_tracks() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let keyed = |amount: u64, key: &str| usage("b-key", "prompts", json!({ "amount": amount, "idempotency_key": key }));
    let first =
        results(&batch(&mut client, json!([keyed(2, "k-1"), keyed(2, "k-1"), keyed(3, "k-1"), keyed(1, "k-2")])));
    assert_eq!(statuses(&first), [200, 200, 422, 200]);
    assert_eq!(first[1]["replayed"], true);
    assert_eq!(first[1]["body"], first[0]["body"]);
    assert_eq!(first[2]["body"]["error"]["code"], "idempotency_key_reused");
    assert_eq!(first[3]["body"]["used"], 3, "k-1 counted once");

    // The same key and fields on POST /v1/track are the same request.
    let body = usage("b-key", "prompts", json!({ "amount": 1 })).to_string();
    let headers = [("Content-Type", "application/json"), ("Idempotency-Key", "k-2")];
    let single = client.request("POST", "/v1/track", &headers, Some(body.as_bytes()));
    assert_eq!(single.header("idempotent-replayed"), Some("true"));
    assert_eq!(single.json(), first[3]["body"]);
    assert_eq!(used(&mut client, "b-key", ""), 3);

    let header = client.request(
        "POST",
        "/v1/track/batch",
        &headers,
        Some(json!({ "events": [keyed(1, "k-3")] }).to_string().as_bytes()),
    );
    assert_eq!(header.status, 400, "a batch takes keys per event, not an Idempotency-Key header");
}

#[test]
fn a_batch_holds_one_to_a_thousand_events() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    for events in [json!([]), json!(vec![usage("b-many", "e2e_runs", json!({})); 1001])] {
        let reply = batch(&mut client, events);
        assert_eq!((reply.status, reply.code()), (400, "invalid_request".to_owned()));
    }
    assert_eq!(client.post("/v1/track/batch", &json!({ "events": {} })).status, 400);
    let malformed = batch(&mut client, json!([usage("b-many", "e2e_runs", json!({})), "not an event"]));
    assert_eq!((malformed.status, malformed.json()["error"]["index"].clone()), (400, json!(1)));
    let check = client.post("/v1/check", &usage("b-many", "e2e_runs", json!({})));
    assert_eq!(check.json()["used"], 0, "a malformed batch records nothing");
    let thousand: Vec<Value> =
        (0..1000).map(|index| usage(&format!("b-many-{}", index % 7), "prompts", json!({ "amount": 1 }))).collect();
    let results = results(&batch(&mut client, Value::from(thousand)));
    assert_eq!(results.len(), 1000);
    // Seven trial users, 143 or 142 tracks each against a limit of 30: exactly 30 each pass.
    let passed = results.iter().filter(|result| result["status"] == 200).count();
    assert_eq!(passed, 7 * 30);
    assert_eq!(results.iter().filter(|result| result["status"] == 429).count(), 1000 - 7 * 30);
    for index in 0..7 {
        assert_eq!(used(&mut client, &format!("b-many-{index}"), ""), 30);
    }
}

#[test]
fn cloudevents_are_tracked_as_openmeter_sends_them() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let event = |id: &str, extra: Value| {
        let mut event =
            json!({ "specversion": "1.0", "id": id, "source": "my-app", "type": "prompts", "subject": "ce-ann" });
        event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        event
    };
    let one = cloud(&mut client, "application/cloudevents+json", &event("e-1", json!({ "data": { "amount": 3 } })));
    assert_eq!(statuses(&results(&one)), [200]);

    let last_month = {
        let view = client.get("/v1/users/ce-ann").json();
        let period = view["period"].as_str().unwrap().to_owned();
        let (year, month): (i32, u32) = (period[..4].parse().unwrap(), period[5..].parse().unwrap());
        let (year, month) = if month == 1 { (year - 1, 12) } else { (year, month - 1) };
        format!("{year:04}-{month:02}")
    };
    let batch = json!([
        event("e-2", json!({ "data": { "value": "5" } })),
        event("e-3", json!({})),
        event("e-1", json!({ "data": { "amount": 3 } })), // sent again: replayed
        event("e-4", json!({ "time": format!("{last_month}-15T12:00:00Z"), "data": { "value": 7 } })),
        json!({ "specversion": "1.0", "id": "e-5", "source": "my-app", "type": "prompts" }), // no subject
        event("e-6", json!({ "specversion": "0.3" })),
        event("e-7", json!({ "type": "nope" })),
        event("e-8", json!({ "data": { "value": "lots" } })),
        json!({ "specversion": "1.0", "id": "e-9", "source": "other-app", "type": "prompts", "subject": "ce-ann", "tenant": "x" }),
    ]);
    let results = results(&cloud(&mut client, "application/cloudevents-batch+json", &batch));
    assert_eq!(statuses(&results), [200, 200, 200, 200, 400, 400, 400, 400, 200]);
    assert_eq!(results[0]["body"]["used"], 8, "data.value as a string");
    assert_eq!(results[1]["body"]["used"], 9, "no data: 1");
    assert_eq!(results[2]["replayed"], true, "source + id is the key");
    assert_eq!(results[3]["body"]["period"], last_month.as_str(), "time picks the period");
    assert_eq!(results[8]["body"]["used"], 10, "an extension attribute is allowed");
    assert_eq!(used(&mut client, "ce-ann", ""), 10);
    assert_eq!(used(&mut client, "ce-ann", &format!("?period={last_month}")), 7);
}

#[test]
fn a_batch_is_one_writer_job_committed_in_one_group() {
    let tally = Tally::start_default();
    let mut client = tally.client();
    let scrape = |client: &mut Client| {
        let text = String::from_utf8(client.get("/metrics").body).unwrap();
        let jobs = sample(&text, "tally_writer_batch_size_sum", &[]);
        let groups = sample(&text, "tally_writer_batch_size_count", &[]);
        let tracked = sample(&text, "tally_track_total", &[("metric", "e2e_runs"), ("outcome", "recorded")]);
        (jobs, groups, tracked)
    };
    let before = scrape(&mut client);
    let events: Vec<Value> =
        (0..100).map(|index| usage(&format!("b-one-{}", index % 10), "e2e_runs", json!({}))).collect();
    assert_eq!(statuses(&results(&batch(&mut client, Value::from(events)))), vec![200; 100]);
    let after = scrape(&mut client);
    assert_eq!((after.0 - before.0, after.1 - before.1), (1.0, 1.0), "one job in one group for 100 events");
    assert_eq!(after.2 - before.2, 100.0, "each event counted in tally_track_total");
}
