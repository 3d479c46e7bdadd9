//! OpenFeature (OFREP) against the real server: the real `@openfeature/server-sdk` with the
//! real `@openfeature/ofrep-provider` (tests/it/ofrep_client.cjs, installed from npm by
//! scripts/install-node.sh) evaluates features and the plan; the bulk evaluation's ETag and
//! 304 are checked over HTTP directly.

use crate::support::{Client, SERVICE_KEY, Tally, start_with_keys};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn node_modules() -> PathBuf {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/node-ofrep/node_modules");
    assert!(
        modules.join("@openfeature/ofrep-provider").exists(),
        "{} lacks the OpenFeature packages: run ./scripts/install-node.sh (./scripts/test.sh does)",
        modules.display()
    );
    modules
}

/// Runs `cases` through the OpenFeature SDK against `tally`; returns the SDK's details.
fn evaluate(tally: &Tally, cases: &Value) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ofrep_client.cjs");
    let output = std::process::Command::new("node")
        .env("NODE_PATH", node_modules())
        .arg(&script)
        .arg(format!("http://{}", tally.addr))
        .arg(SERVICE_KEY)
        .arg(cases.to_string())
        .output()
        .unwrap_or_else(|error| panic!("cannot run node ({error}): run ./scripts/install-node.sh"));
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{report}");
    serde_json::from_slice::<Value>(&output.stdout).unwrap_or_else(|_| panic!("{report}")).as_array().unwrap().clone()
}

fn case(kind: &str, flag: &str, default: Value, user: Option<&str>) -> Value {
    let context = match user {
        Some(user) => json!({ "targetingKey": user, "country": "fr" }),
        None => json!({}),
    };
    json!({ "type": kind, "flag": flag, "default": default, "context": context })
}

fn set_plan(client: &mut Client, user: &str, plan: &str) {
    assert_eq!(client.put(&format!("/v1/users/{user}"), &json!({ "plan": plan })).status, 200);
}

#[test]
fn the_openfeature_sdk_reads_features_and_the_plan_through_ofrep() {
    let tally = start_with_keys();
    let mut client = tally.client().with_key(SERVICE_KEY);
    set_plan(&mut client, "of-sol", "solo");
    set_plan(&mut client, "of-full", "solo");
    let snapshot = json!({ "user_id": "of-full", "feature": "active_project_snapshots" });
    assert_eq!(client.post("/v1/features/use", &snapshot).status, 200, "solo's one snapshot a minute, used");

    let results = evaluate(
        &tally,
        &json!([
            case("boolean", "git_export", json!(false), Some("of-sol")),
            case("boolean", "git_export", json!(true), Some("of-new")),
            case("string", "plan", json!("none"), Some("of-sol")),
            case("string", "plan", json!("none"), Some("of-new")),
            case("boolean", "active_project_snapshots", json!(false), Some("of-sol")),
            case("boolean", "active_project_snapshots", json!(false), Some("of-sol")),
            case("boolean", "active_project_snapshots", json!(true), Some("of-full")),
            case("boolean", "no_such_flag", json!(true), Some("of-sol")),
            case("boolean", "git_export", json!(true), None),
            case("string", "git_export", json!("x"), Some("of-sol")),
        ]),
    );
    let summary: Vec<(Value, Value)> =
        results.iter().map(|result| (result["value"].clone(), result["errorCode"].clone())).collect();
    assert_eq!(
        summary,
        [
            (json!(true), Value::Null),
            (json!(false), Value::Null),
            (json!("solo"), Value::Null),
            (json!("trial"), Value::Null),
            (json!(true), Value::Null),
            (json!(true), Value::Null),
            (json!(false), Value::Null),
            (json!(true), json!("FLAG_NOT_FOUND")),
            (json!(true), json!("TARGETING_KEY_MISSING")),
            (json!("x"), json!("TYPE_MISMATCH")),
        ],
        "{results:#?}"
    );
    assert_eq!((results[0]["variant"].clone(), results[0]["reason"].clone()), (json!("on"), json!("TARGETING_MATCH")));
    assert_eq!(results[1]["metadata"], json!({ "plan": "trial", "kind": "boolean", "plan_required": "solo" }));
    assert_eq!(results[2]["variant"], "solo");
    assert_eq!(results[6]["metadata"]["remaining_in_window"], 0);

    // Evaluating recorded nothing: of-sol's one snapshot a minute is still there to use.
    let sol_snapshot = json!({ "user_id": "of-sol", "feature": "active_project_snapshots" });
    assert_eq!(client.post("/v1/features/use", &sol_snapshot).status, 200);
    // of-new was evaluated, never created.
    assert_eq!(client.get("/v1/users/of-new").status, 404);
}

#[test]
fn bulk_evaluation_answers_304_while_nothing_changed() {
    let tally = start_with_keys();
    let mut client = tally.client().with_key(SERVICE_KEY);
    set_plan(&mut client, "of-bulk", "teams");
    let bulk = |client: &mut Client, if_none_match: Option<&str>| {
        let body = json!({ "context": { "targetingKey": "of-bulk" } }).to_string();
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(if_none_match.map(|etag| ("If-None-Match", etag)));
        client.request("POST", "/ofrep/v1/evaluate/flags", &headers, Some(body.as_bytes()))
    };
    let first = bulk(&mut client, None);
    assert_eq!(first.status, 200);
    let flags = first.json()["flags"].clone();
    let keys: Vec<&str> = flags.as_array().unwrap().iter().map(|flag| flag["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["plan", "git_export", "multi_user", "active_project_snapshots"]);
    assert_eq!(flags[0]["value"], "teams");
    assert_eq!(flags[3]["metadata"]["remaining_in_window"], 10);
    let etag = first.header("etag").unwrap().to_owned();

    let again = bulk(&mut client, Some(&etag));
    assert_eq!((again.status, again.body.len(), again.header("etag")), (304, 0, Some(etag.as_str())));
    // A use changes the window: a new answer, a new tag.
    let snapshot = json!({ "user_id": "of-bulk", "feature": "active_project_snapshots" });
    assert_eq!(client.post("/v1/features/use", &snapshot).status, 200);
    let changed = bulk(&mut client, Some(&etag));
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert_eq!(changed.json()["flags"][3]["metadata"]["remaining_in_window"], 9);

    let headers = [("Content-Type", "application/json")];
    let missing = client.request("POST", "/ofrep/v1/evaluate/flags", &headers, Some(b"{\"context\": {}}"));
    assert_eq!((missing.status, missing.json()["errorCode"].clone()), (400, json!("TARGETING_KEY_MISSING")));
    let unknown = client.request("POST", "/ofrep/v1/evaluate/flags/nope", &headers, Some(b"{\"context\": {}}"));
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json(),
        json!({ "key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": unknown.json()["errorDetails"] })
    );
    let anonymous = Client::new(tally.addr).request("POST", "/ofrep/v1/evaluate/flags", &headers, Some(b"{}"));
    assert_eq!(anonymous.status, 401, "a service or admin key is required");
}
