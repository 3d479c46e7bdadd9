//! Reservations: a hold counts against the limit for every check, track and reservation until
//! it is committed, released or expires; a commit records the real amount (the part above the
//! hold checked like a track); closed and expired reservations are refused; holds survive a
//! restart; keys make every step idempotent; members reserve on their account's pool; and
//! racing reservations never grant past the limit.

use crate::support::{ADMIN_KEY, Client, Reply, SERVICE_KEY, Setup, Tally, usage};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// trial: 30 prompts (hard); team: a pooled plan, 30 prompts; pro: unlimited.
const PLANS: &str = "[metrics]\nprompts = { unit = \"prompts\" }\n\
    [plans.trial]\nprice_cents = 0\nlimits = { prompts = { limit = 30, enforcement = \"hard\" } }\nfeatures = {}\n\
    [plans.team]\nprice_cents = 1000\nlimits = { prompts = { limit = 30, enforcement = \"hard\" } }\nfeatures = {}\n\
    [plans.pro]\nprice_cents = 5000\nlimits = { prompts = \"unlimited\" }\nfeatures = {}\n";

fn start() -> Tally {
    Setup::new().config(PLANS).start()
}

fn reserve(client: &mut Client, user: &str, amount: u64, extra: Value) -> Reply {
    let mut body = json!({ "user_id": user, "metric": "prompts", "amount": amount });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    client.post("/v1/reservations", &body)
}

fn held(client: &mut Client, user: &str, amount: u64) -> String {
    let reply = reserve(client, user, amount, json!({}));
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()["reservation_id"].as_str().unwrap().to_owned()
}

fn commit(client: &mut Client, id: &str, body: Value) -> Reply {
    client.post(&format!("/v1/reservations/{id}/commit"), &body)
}

fn release(client: &mut Client, id: &str) -> Reply {
    client.post(&format!("/v1/reservations/{id}/release"), &json!({}))
}

fn used_and_reserved(client: &mut Client, user: &str) -> (u64, u64) {
    let view = client.get(&format!("/v1/users/{user}")).json();
    let prompts = &view["usage"]["prompts"];
    (prompts["used"].as_u64().unwrap(), prompts["reserved"].as_u64().unwrap())
}

#[test]
fn a_hold_counts_against_the_limit_until_committed() {
    let tally = start();
    let mut client = tally.client();
    crate::support::track(&mut client, "alice", "prompts", 10);

    let reply = reserve(&mut client, "alice", 15, json!({ "ttl_secs": 600 }));
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    let ratelimit = reply.header("ratelimit").unwrap_or_default();
    assert!(ratelimit.starts_with("\"prompts\";r=5;t="), "remaining counts the hold: {ratelimit}");
    let body = reply.json();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "reservation_id",
            "user_id",
            "metric",
            "amount",
            "expires_at",
            "state",
            "committed",
            "used",
            "reserved",
            "limit",
            "remaining",
            "period",
            "account_id"
        ]
    );
    assert_eq!((body["used"].as_u64(), body["reserved"].as_u64()), (Some(10), Some(15)));
    assert_eq!((body["limit"].as_u64(), body["remaining"].as_u64()), (Some(30), Some(5)));
    assert_eq!((body["state"].as_str(), body["committed"].clone()), (Some("open"), Value::Null));
    let id = body["reservation_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("res_"), "{id}");

    // Every decision sees the hold.
    let check = |client: &mut Client, amount: u64| {
        client.post("/v1/check", &usage("alice", "prompts", json!({ "amount": amount }))).json()
    };
    assert_eq!(check(&mut client, 5)["allowed"], true);
    let refused_check = check(&mut client, 6);
    assert_eq!((refused_check["allowed"].as_bool(), refused_check["reserved"].as_u64()), (Some(false), Some(15)));
    let track = client.post("/v1/track", &usage("alice", "prompts", json!({ "amount": 6 })));
    assert_eq!(track.status, 429);
    assert_eq!(track.json()["error"]["reserved"], 15);
    let second = reserve(&mut client, "alice", 6, json!({}));
    assert_eq!((second.status, second.code()), (429, "limit_exceeded".to_owned()));
    assert_eq!(used_and_reserved(&mut client, "alice"), (10, 15), "refusals changed nothing");

    // Commit less than held: the rest is freed.
    let committed = commit(&mut client, &id, json!({ "amount": 12 }));
    assert_eq!(committed.status, 200, "{}", String::from_utf8_lossy(&committed.body));
    let body = committed.json();
    assert_eq!(
        (body["state"].as_str(), body["committed"].as_u64(), body["amount"].as_u64()),
        (Some("committed"), Some(12), Some(15))
    );
    assert_eq!(
        (body["used"].as_u64(), body["reserved"].as_u64(), body["remaining"].as_u64()),
        (Some(22), Some(0), Some(8))
    );
    assert_eq!(used_and_reserved(&mut client, "alice"), (22, 0));

    // Closed: a second commit or a release changes nothing.
    let again = commit(&mut client, &id, json!({}));
    assert_eq!((again.status, again.code()), (409, "reservation_closed".to_owned()));
    assert_eq!(again.json()["error"]["state"], "committed");
    assert_eq!(release(&mut client, &id).status, 409);
    assert_eq!(used_and_reserved(&mut client, "alice"), (22, 0));
}

#[test]
fn the_part_of_a_commit_above_its_hold_is_checked_like_a_track() {
    let tally = start();
    let mut client = tally.client();
    let first = held(&mut client, "bob", 10);
    let second = held(&mut client, "bob", 15);
    // 16 used + 15 still held by the other = 31 > 30: refused, and the hold stays open.
    let over = commit(&mut client, &first, json!({ "amount": 16 }));
    assert_eq!((over.status, over.code()), (429, "limit_exceeded".to_owned()));
    assert_eq!(over.json()["error"]["reservation_id"], first.as_str());
    assert_eq!(used_and_reserved(&mut client, "bob"), (0, 25));
    // 15 + 15 = 30 fits.
    assert_eq!(commit(&mut client, &first, json!({ "amount": 15 })).status, 200);
    // Past the limit only when told not to enforce it.
    let forced = commit(&mut client, &second, json!({ "amount": 20, "enforce": false }));
    assert_eq!(forced.status, 200, "{}", String::from_utf8_lossy(&forced.body));
    assert_eq!(used_and_reserved(&mut client, "bob"), (35, 0));
}

#[test]
fn a_commit_within_its_hold_is_recorded_even_when_the_limit_fell_since() {
    let keys = format!(
        "[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n"
    );
    let tally = Setup::new().config(PLANS).config(&keys).start();
    let mut client = tally.client().with_key(SERVICE_KEY);
    let mut admin = tally.client().with_key(ADMIN_KEY);
    let id = held(&mut client, "erin", 20);
    let lowered = admin.put(
        "/v1/admin/users/erin/overrides",
        &json!({ "limits": { "prompts": { "limit": 5, "enforcement": "hard" } } }),
    );
    assert_eq!(lowered.status, 200, "{}", String::from_utf8_lossy(&lowered.body));
    let reply = commit(&mut client, &id, json!({ "amount": 20 }));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(used_and_reserved(&mut client, "erin"), (20, 0));
}

#[test]
fn release_frees_the_hold_and_records_nothing() {
    let tally = start();
    let mut client = tally.client();
    let id = held(&mut client, "carol", 30);
    assert_eq!(reserve(&mut client, "carol", 1, json!({})).status, 429);
    let released = release(&mut client, &id);
    assert_eq!(released.status, 200);
    assert_eq!((released.json()["state"].as_str(), released.json()["reserved"].as_u64()), (Some("released"), Some(0)));
    assert_eq!(used_and_reserved(&mut client, "carol"), (0, 0));
    assert_eq!(reserve(&mut client, "carol", 30, json!({})).status, 201);
    let gone = commit(&mut client, &id, json!({}));
    assert_eq!((gone.status, gone.code()), (409, "reservation_closed".to_owned()));
    assert_eq!(gone.json()["error"]["state"], "released");
}

#[test]
fn an_expired_hold_is_freed_and_its_commit_refused_with_410() {
    let tally = start();
    let mut client = tally.client();
    let reply = reserve(&mut client, "dave", 30, json!({ "ttl_secs": 1 }));
    assert_eq!(reply.status, 201);
    let id = reply.json()["reservation_id"].as_str().unwrap().to_owned();
    let expires_at = chrono::DateTime::parse_from_rfc3339(reply.json()["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(used_and_reserved(&mut client, "dave"), (0, 30));
    // Freed by expires_at itself: poll until the clock passes it, and no longer than 1 s after.
    let deadline = Instant::now() + Duration::from_secs(3);
    while chrono::Utc::now() < expires_at && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(chrono::Utc::now() >= expires_at, "the clock passed expires_at");
    assert_eq!(used_and_reserved(&mut client, "dave"), (0, 0), "no hold after expires_at");
    let late = commit(&mut client, &id, json!({}));
    assert_eq!((late.status, late.code()), (410, "reservation_expired".to_owned()));
    let again = release(&mut client, &id);
    assert_eq!(
        (again.status, again.code()),
        (410, "reservation_expired".to_owned()),
        "an expiry is told as one every time"
    );
    assert_eq!(used_and_reserved(&mut client, "dave"), (0, 0));
}

#[test]
fn holds_survive_a_restart() {
    let tally = start();
    let mut client = tally.client();
    let id = held(&mut client, "frank", 25);
    let tally = tally.restart();
    let mut client = tally.client();
    assert_eq!(used_and_reserved(&mut client, "frank"), (0, 25));
    assert_eq!(reserve(&mut client, "frank", 6, json!({})).status, 429);
    assert_eq!(commit(&mut client, &id, json!({})).status, 200);
    assert_eq!(used_and_reserved(&mut client, "frank"), (25, 0));
}

#[test]
fn idempotency_keys_make_each_step_happen_once() {
    let tally = start();
    let mut client = tally.client();
    let send = |client: &mut Client, path: &str, key: &str, body: &Value| {
        let headers = [("Content-Type", "application/json"), ("Idempotency-Key", key)];
        client.request("POST", path, &headers, Some(body.to_string().as_bytes()))
    };
    let body = json!({ "user_id": "gina", "metric": "prompts", "amount": 10 });
    let first = send(&mut client, "/v1/reservations", "r-1", &body);
    let again = send(&mut client, "/v1/reservations", "r-1", &body);
    assert_eq!((first.status, again.status), (201, 201));
    assert_eq!(first.json()["reservation_id"], again.json()["reservation_id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(used_and_reserved(&mut client, "gina"), (0, 10));
    let other =
        send(&mut client, "/v1/reservations", "r-1", &json!({ "user_id": "gina", "metric": "prompts", "amount": 11 }));
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused".to_owned()));

    let id = first.json()["reservation_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/reservations/{id}/commit");
    let committed = send(&mut client, &path, "c-1", &json!({ "amount": 4 }));
    let replayed = send(&mut client, &path, "c-1", &json!({ "amount": 4 }));
    assert_eq!((committed.status, replayed.status), (200, 200), "a retried commit gets its first answer, not 409");
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(used_and_reserved(&mut client, "gina"), (4, 0));

    let second = held(&mut client, "gina", 3);
    let path = format!("/v1/reservations/{second}/release");
    assert_eq!(send(&mut client, &path, "x-1", &json!({})).status, 200);
    let replayed = send(&mut client, &path, "x-1", &json!({}));
    assert_eq!((replayed.status, replayed.header("idempotent-replayed")), (200, Some("true")));
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let tally = start();
    let mut client = tally.client();
    for (extra, what) in [
        (json!({ "ttl_secs": 0 }), "ttl_secs"),
        (json!({ "ttl_secs": 86_401 }), "ttl_secs"),
        (json!({ "amount": 0 }), "amount"),
        (json!({ "metric": "nope" }), "metric"),
        (json!({ "color": "red" }), "color"),
    ] {
        let reply = reserve(&mut client, "hank", 1, extra);
        assert_eq!(reply.status, 400, "{what}: {}", String::from_utf8_lossy(&reply.body));
    }
    assert_eq!(client.get("/v1/users/hank").status, 404, "no user was created");
    for id in ["res_0000", "nothing", "res_", "res_a-b"] {
        let reply = commit(&mut client, id, json!({}));
        assert_eq!((reply.status, reply.code()), (404, "reservation_not_found".to_owned()), "{id}");
    }
    let id = held(&mut client, "hank", 5);
    for body in [
        json!({ "amount": -1 }),
        json!({ "amount": 1.5 }),
        json!({ "amount": 9_007_199_254_740_992_u64 }),
        json!({ "enforce": "no" }),
        json!({ "x": 1 }),
    ] {
        let reply = commit(&mut client, &id, body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", String::from_utf8_lossy(&reply.body));
    }
    assert_eq!(client.post(&format!("/v1/reservations/{id}/release"), &json!({ "amount": 1 })).status, 400);
    assert_eq!(used_and_reserved(&mut client, "hank"), (0, 5));
    // A commit of 0 closes it having recorded nothing.
    let zero = commit(&mut client, &id, json!({ "amount": 0 }));
    assert_eq!((zero.status, zero.json()["committed"].as_u64()), (200, Some(0)));
    assert_eq!(used_and_reserved(&mut client, "hank"), (0, 0));
}

#[test]
fn members_reserve_on_their_accounts_pool() {
    let tally = start();
    let mut client = tally.client();
    assert_eq!(client.put("/v1/accounts/acme", &json!({ "plan": "team" })).status, 200);
    for user in ["ivy", "jack"] {
        assert_eq!(client.put(&format!("/v1/users/{user}"), &json!({ "account_id": "acme" })).status, 200);
    }
    let reply = reserve(&mut client, "ivy", 20, json!({}));
    assert_eq!(reply.status, 201);
    assert_eq!((reply.json()["account_id"].as_str(), reply.json()["reserved"].as_u64()), (Some("acme"), Some(20)));
    let pool = client.get("/v1/accounts/acme").json();
    assert_eq!(
        (pool["usage"]["prompts"]["reserved"].as_u64(), pool["usage"]["prompts"]["remaining"].as_u64()),
        (Some(20), Some(10))
    );
    let check = client.post("/v1/check", &usage("jack", "prompts", json!({ "amount": 11 }))).json();
    assert_eq!(check["allowed"], false, "another member sees the pool's hold");
    let refused = reserve(&mut client, "jack", 11, json!({}));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"]["scope"], "account");
    assert_eq!(client.post("/v1/track", &usage("jack", "prompts", json!({ "amount": 10 }))).status, 200);
    let id = reply.json()["reservation_id"].as_str().unwrap().to_owned();
    let committed = commit(&mut client, &id, json!({ "amount": 20 }));
    assert_eq!(committed.status, 200);
    assert_eq!((committed.json()["used"].as_u64(), committed.json()["remaining"].as_u64()), (Some(30), Some(0)));
    let members = client.get("/v1/accounts/acme").json()["members"].clone();
    assert_eq!((members[0]["user_id"].as_str(), members[0]["usage"]["prompts"].as_u64()), (Some("ivy"), Some(20)));
}

#[test]
fn tracking_off_reserves_nothing() {
    let tally = Setup::new().config(PLANS).config("[usage]\ntracking_enabled = false").start();
    let mut client = tally.client();
    let reply = reserve(&mut client, "kim", 1, json!({}));
    assert_eq!((reply.status, reply.code()), (409, "tracking_disabled".to_owned()));
}

/// Limit 30; 40 threads each reserve 1 and then commit or release it, over and over. No
/// reservation is granted past `limit - used - reserved`, the committed total never passes
/// 30, and once the commits have filled the limit every further reservation is refused.
#[test]
fn racing_reservations_never_pass_the_limit() {
    let tally = start();
    let addr = tally.addr;
    let threads: Vec<_> = (0..40u64)
        .map(|thread| {
            std::thread::spawn(move || {
                let mut client = Client::new(addr);
                let mut commits = 0u64;
                for round in 0..6u64 {
                    let reply = reserve(&mut client, "racer", 1, json!({}));
                    if reply.status == 429 {
                        continue;
                    }
                    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
                    let body = reply.json();
                    let taken = body["used"].as_u64().unwrap() + body["reserved"].as_u64().unwrap();
                    assert!(taken <= 30, "granted with {taken} used and held");
                    let id = body["reservation_id"].as_str().unwrap().to_owned();
                    // Commit about two thirds, release the rest, in a mix that differs per thread.
                    if (thread + round) % 3 != 0 {
                        assert_eq!(commit(&mut client, &id, json!({})).status, 200);
                        commits += 1;
                    } else {
                        assert_eq!(release(&mut client, &id).status, 200);
                    }
                }
                commits
            })
        })
        .collect();
    let commits: u64 = threads.into_iter().map(|thread| thread.join().unwrap()).sum();
    let mut client = tally.client();
    let (used, reserved) = used_and_reserved(&mut client, "racer");
    assert_eq!((used, reserved), (commits, 0), "every commit counted once, every hold freed");
    assert_eq!(used, 30, "the commits filled the limit exactly, and no further");
    assert_eq!(reserve(&mut client, "racer", 1, json!({})).status, 429);
}

#[test]
fn a_reservation_committed_by_racing_clients_is_recorded_once() {
    let tally = start();
    let mut client = tally.client();
    let id = held(&mut client, "racer-c", 7);
    let addr = tally.addr;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let id = id.clone();
            std::thread::spawn(move || commit(&mut Client::new(addr), &id, json!({})).status)
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(used_and_reserved(&mut client, "racer-c"), (7, 0));
}

#[test]
fn a_members_own_cap_counts_their_holds_on_the_pool() {
    let keys = format!(
        "[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n"
    );
    let tally = Setup::new().config(PLANS).config(&keys).start();
    let mut client = tally.client().with_key(SERVICE_KEY);
    let mut admin = tally.client().with_key(ADMIN_KEY);
    assert_eq!(client.put("/v1/accounts/capped", &json!({ "plan": "team" })).status, 200);
    assert_eq!(client.put("/v1/users/m1", &json!({ "account_id": "capped" })).status, 200);
    let cap = json!({ "limits": { "prompts": { "limit": 10, "enforcement": "hard" } } });
    assert_eq!(admin.put("/v1/admin/users/m1/overrides", &cap).status, 200);

    assert_eq!(reserve(&mut client, "m1", 11, json!({})).status, 429, "past the cap by itself");
    let first = held(&mut client, "m1", 8);
    let track = client.post("/v1/track", &usage("m1", "prompts", json!({ "amount": 3 })));
    assert_eq!(track.status, 429, "3 used on top of 8 held passes the cap of 10");
    assert_eq!(track.json()["error"]["scope"], "user");
    assert_eq!(reserve(&mut client, "m1", 3, json!({})).status, 429);
    let check = client.post("/v1/check", &usage("m1", "prompts", json!({ "amount": 3 }))).json();
    assert_eq!(check["allowed"], false);
    assert_eq!(client.post("/v1/track", &usage("m1", "prompts", json!({ "amount": 2 }))).status, 200);
    // The commit draws on its own hold: within it, it passes.
    assert_eq!(commit(&mut client, &first, json!({})).status, 200);
    let members = client.get("/v1/accounts/capped").json()["members"].clone();
    assert_eq!(members[0]["usage"]["prompts"], 10, "the member used exactly their cap");
}
