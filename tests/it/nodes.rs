//! Several Tally nodes on one PostgreSQL database, with requests spread over them as a load
//! balancer would: hard limits, rate windows, idempotency and once-only alerts stay exact
//! across nodes, and a node killed under load loses no acknowledged track. PostgreSQL only:
//! a SQLite file belongs to one process.

use crate::backend::is_postgres;
use crate::support::{Client, Setup, Tally, raw_post, track, usage};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Three nodes on one database, each with the same keys and config.
fn three_nodes(setup: impl Fn() -> Setup) -> Vec<Tally> {
    let first = setup().start();
    let second = setup().start_sharing(&first);
    let third = setup().start_sharing(&first);
    vec![first, second, third]
}

fn with_keys() -> Setup {
    Setup::new().config(&format!(
        "[auth]\nservice_keys = [\"{}\"]\nadmin_keys = [{{ name = \"ops\", key = \"{}\" }}]\n",
        crate::support::SERVICE_KEY,
        crate::support::ADMIN_KEY
    ))
}

fn clients(nodes: &[Tally]) -> Vec<Client> {
    nodes.iter().map(|node| node.client().with_key(crate::support::ADMIN_KEY)).collect()
}

fn multi_node_only() -> bool {
    if !is_postgres() {
        eprintln!("multi-node test: needs PostgreSQL (a SQLite file belongs to one process); not run on SQLite");
        return false;
    }
    true
}

#[test]
fn three_nodes_never_pass_a_hard_limit() {
    if !multi_node_only() {
        return;
    }
    let nodes = three_nodes(with_keys);
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    for round in 0..5 {
        let users: Vec<String> = (0..4).map(|user| format!("round{round}-user{user}")).collect();
        let accepted: Arc<Vec<AtomicU64>> = Arc::new((0..users.len()).map(|_| AtomicU64::new(0)).collect());
        let workers: Vec<_> = (0..32)
            .map(|worker| {
                let (addrs, users, accepted) = (addrs.clone(), users.clone(), Arc::clone(&accepted));
                std::thread::spawn(move || {
                    let mut clients: Vec<Client> =
                        addrs.iter().map(|addr| Client::new(*addr).with_key(crate::support::SERVICE_KEY)).collect();
                    for request in 0..100 {
                        let node = (worker + request) % clients.len();
                        let user = (worker * 7 + request) % users.len();
                        let reply = clients[node].post("/v1/track", &usage(&users[user], "prompts", json!({})));
                        match reply.status {
                            200 => {
                                accepted[user].fetch_add(1, Ordering::SeqCst);
                            }
                            429 => assert_eq!(reply.code(), "limit_exceeded"),
                            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&reply.body)),
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let mut client = nodes[round % 3].client().with_key(crate::support::ADMIN_KEY);
        for (index, user) in users.iter().enumerate() {
            assert_eq!(accepted[index].load(Ordering::SeqCst), 30, "round {round}, {user}: answers of 200");
            let used = client.get(&format!("/v1/users/{user}")).json()["usage"]["prompts"]["used"].as_u64();
            assert_eq!(used, Some(30), "round {round}, {user}: stored");
        }
    }
    let mut client = nodes[0].client().with_key(crate::support::ADMIN_KEY);
    let summary = client.get("/v1/admin/usage").json();
    assert_eq!(summary["totals"]["prompts"], 5 * 4 * 30, "the period total, kept by every node, is exact");
    assert_eq!(summary["active_users"], 20);
}

#[test]
fn three_nodes_never_pass_an_accounts_pooled_hard_limit() {
    if !multi_node_only() {
        return;
    }
    let nodes = three_nodes(with_keys);
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    let mut admin = nodes[0].client().with_key(crate::support::ADMIN_KEY);
    for round in 0..10 {
        // trial: 30 prompts, hard, for the three members together.
        let account = format!("pool-round{round}");
        assert_eq!(admin.put(&format!("/v1/accounts/{account}"), &json!({ "plan": "trial" })).status, 200);
        let members: Vec<String> = (0..3).map(|member| format!("{account}-member{member}")).collect();
        for member in &members {
            let joined = admin.put(&format!("/v1/users/{member}"), &json!({ "account_id": account }));
            assert_eq!(joined.status, 200);
        }
        let accepted = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..32)
            .map(|worker| {
                let (addrs, members, accepted) = (addrs.clone(), members.clone(), Arc::clone(&accepted));
                std::thread::spawn(move || {
                    let mut clients: Vec<Client> =
                        addrs.iter().map(|addr| Client::new(*addr).with_key(crate::support::SERVICE_KEY)).collect();
                    for request in 0..100 {
                        let node = (worker + request) % clients.len();
                        let member = &members[(worker + request / 3) % members.len()];
                        let reply = clients[node].post("/v1/track", &usage(member, "prompts", json!({})));
                        match reply.status {
                            200 => {
                                accepted.fetch_add(1, Ordering::SeqCst);
                            }
                            429 => assert_eq!(reply.json()["error"]["scope"], "account"),
                            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&reply.body)),
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 30, "round {round}: answers of 200 over three nodes");
        let view = nodes[round % 3]
            .client()
            .with_key(crate::support::ADMIN_KEY)
            .get(&format!("/v1/accounts/{account}"))
            .json();
        assert_eq!(view["usage"]["prompts"]["used"], 30, "round {round}: the pool stored");
        let own: u64 =
            view["members"].as_array().unwrap().iter().map(|m| m["usage"]["prompts"].as_u64().unwrap()).sum();
        assert_eq!(own, 30, "round {round}: the members' own counters add up to the pool");
    }
}

#[test]
fn an_idempotency_key_replays_on_another_node_and_races_count_once() {
    if !multi_node_only() {
        return;
    }
    let nodes = three_nodes(with_keys);
    let mut clients = clients(&nodes);
    let body = usage("idem-nodes", "e2e_runs", json!({})).to_string();
    let headers = [("Content-Type", "application/json"), ("Idempotency-Key", "nodes-key-1")];
    let first = clients[0].request("POST", "/v1/track", &headers, Some(body.as_bytes()));
    let second = clients[1].request("POST", "/v1/track", &headers, Some(body.as_bytes()));
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(second.header("idempotent-replayed"), Some("true"), "node B replays node A's answer");
    assert_eq!(first.body, second.body);
    // The same key sent to every node at once, many times: it counts once.
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    let racers: Vec<_> = (0..24)
        .map(|racer| {
            let addr = addrs[racer % 3];
            std::thread::spawn(move || {
                let body = usage("idem-race", "e2e_runs", json!({})).to_string();
                let headers = [("Content-Type", "application/json"), ("Idempotency-Key", "nodes-race-key")];
                Client::new(addr)
                    .with_key(crate::support::SERVICE_KEY)
                    .request("POST", "/v1/track", &headers, Some(body.as_bytes()))
                    .status
            })
        })
        .collect();
    for racer in racers {
        assert_eq!(racer.join().unwrap(), 200);
    }
    let used = clients[2].get("/v1/users/idem-race").json()["usage"]["e2e_runs"]["used"].as_u64();
    assert_eq!(used, Some(1));
}

#[test]
fn fifty_feature_uses_over_three_nodes_pass_a_window_of_ten_exactly() {
    if !multi_node_only() {
        return;
    }
    let nodes = three_nodes(with_keys);
    let mut clients = clients(&nodes);
    assert_eq!(clients[0].put("/v1/users/snapper", &json!({ "plan": "teams" })).status, 200);
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    let users: Vec<_> = (0..50)
        .map(|attempt| {
            let addr = addrs[attempt % 3];
            std::thread::spawn(move || {
                let body = json!({ "user_id": "snapper", "feature": "active_project_snapshots" });
                Client::new(addr).with_key(crate::support::SERVICE_KEY).post("/v1/features/use", &body).status
            })
        })
        .collect();
    let statuses: Vec<u16> = users.into_iter().map(|thread| thread.join().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|status| **status == 200).count(), 10, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 40, "{statuses:?}");
}

#[test]
fn a_threshold_alert_fires_once_whichever_nodes_cross_it() {
    if !multi_node_only() {
        return;
    }
    let nodes = three_nodes(with_keys);
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    // 30 tracks of one user over three nodes at once: 0.8 and 1.0 of 30 are each crossed once.
    let racers: Vec<_> = (0..30)
        .map(|racer| {
            let addr = addrs[racer % 3];
            std::thread::spawn(move || {
                Client::new(addr)
                    .with_key(crate::support::SERVICE_KEY)
                    .post("/v1/track", &usage("alerted", "prompts", json!({})))
                    .status
            })
        })
        .collect();
    for racer in racers {
        assert_eq!(racer.join().unwrap(), 200);
    }
    let mut client = nodes[1].client().with_key(crate::support::ADMIN_KEY);
    let events = client.get("/v1/admin/events?type=threshold_crossed&user_id=alerted").json();
    let thresholds: Vec<f64> =
        events["events"].as_array().unwrap().iter().map(|event| event["data"]["threshold"].as_f64().unwrap()).collect();
    assert_eq!(thresholds.len(), 2, "{thresholds:?}");
    assert!(thresholds.contains(&0.8) && thresholds.contains(&1.0), "{thresholds:?}");
}

#[test]
fn killing_one_node_under_load_loses_no_acknowledged_track() {
    if !multi_node_only() {
        return;
    }
    let mut nodes = three_nodes(with_keys);
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // Workers on node 0 (the one killed) and on the others; each has its own user.
    let workers: Vec<_> = (0..12)
        .map(|worker| {
            let (acknowledged, killed, stop) = (acknowledged.clone(), killed.clone(), stop.clone());
            let addr = addrs[worker % 3];
            std::thread::spawn(move || {
                let mut client = Client::new(addr).with_key(crate::support::SERVICE_KEY);
                let body = usage(&format!("kill-{worker}"), "e2e_runs", json!({})).to_string();
                let mut mine = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let mut request = raw_post("/v1/track", body.as_bytes());
                    let auth = format!("Authorization: Bearer {}\r\n", crate::support::SERVICE_KEY);
                    let at = request.windows(2).position(|pair| pair == b"\r\n").unwrap() + 2;
                    request.splice(at..at, auth.bytes());
                    match client.try_send_raw(&request) {
                        Ok(reply) if reply.status == 200 => {
                            mine += 1;
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(reply) => panic!("unexpected {}", reply.status),
                        Err(_) => {
                            assert!(
                                killed.load(Ordering::SeqCst) && worker % 3 == 0,
                                "a request failed before the kill"
                            );
                            return (worker, mine);
                        }
                    }
                }
                (worker, mine)
            })
        })
        .collect();
    while acknowledged.load(Ordering::SeqCst) < 600 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    killed.store(true, Ordering::SeqCst);
    nodes[0].kill();
    while acknowledged.load(Ordering::SeqCst) < 1200 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    stop.store(true, Ordering::SeqCst);
    let mut client = nodes[1].client().with_key(crate::support::ADMIN_KEY);
    for worker in workers {
        let (worker, mine) = worker.join().unwrap();
        let reply = client.get(&format!("/v1/users/kill-{worker}"));
        let stored = if reply.status == 404 { 0 } else { reply.json()["usage"]["e2e_runs"]["used"].as_u64().unwrap() };
        // Every acknowledged track is stored; at most the one in flight at the kill is extra.
        assert!(stored >= mine && stored <= mine + 1, "kill-{worker}: {stored} stored, {mine} acknowledged");
    }
    drop(nodes);
}

#[test]
fn a_plan_change_on_one_node_applies_on_the_others_at_once() {
    if !multi_node_only() {
        return;
    }
    let nodes = three_nodes(with_keys);
    let mut clients = clients(&nodes);
    track(&mut clients[0], "mover", "prompts", 30);
    assert_eq!(clients[1].post("/v1/track", &usage("mover", "prompts", json!({}))).status, 429);
    assert_eq!(clients[2].put("/v1/users/mover", &json!({ "plan": "solo" })).status, 200);
    assert_eq!(clients[1].post("/v1/track", &usage("mover", "prompts", json!({}))).status, 200);
}

/// Runs the cluster's pg_ctl (from scripts/with-postgres.sh) with `args`.
fn pg_ctl(args: &[&str]) {
    let pg_ctl = std::env::var("TALLY_TEST_PG_CTL").expect("TALLY_TEST_PG_CTL");
    let status = std::process::Command::new(pg_ctl).args(args).status().expect("run pg_ctl");
    assert!(status.success(), "pg_ctl {args:?}");
}

/// Polls `/readyz` until it answers `status` (bounded: 30 s).
fn wait_ready(client: &mut Client, status: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if client.get("/readyz").status == status {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "/readyz never answered {status}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Restarts the whole PostgreSQL server, so scripts/test.sh runs it alone, on a cluster of
/// its own (`cargo test postgres_restart`), and skips it in the suite's parallel run.
#[test]
fn postgres_restart_under_load_loses_nothing_and_nodes_recover() {
    if !multi_node_only() {
        return;
    }
    if std::env::var("TALLY_TEST_PG_CTL").is_err() {
        eprintln!("needs TALLY_TEST_PG_CTL (scripts/with-postgres.sh sets it); not run on a given server");
        return;
    }
    let nodes = vec![with_keys().start()];
    let nodes = {
        let second = with_keys().start_sharing(&nodes[0]);
        let mut nodes = nodes;
        nodes.push(second);
        nodes
    };
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged_total = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (stop, acknowledged_total) = (stop.clone(), acknowledged_total.clone());
            let addr = addrs[worker % 2];
            std::thread::spawn(move || {
                let mut client = Client::new(addr).with_key(crate::support::SERVICE_KEY);
                let body = usage(&format!("pgrestart-{worker}"), "e2e_runs", json!({}));
                let (mut acknowledged, mut uncertain, mut refused) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    let reply = client.post("/v1/track", &body);
                    match reply.status {
                        200 => {
                            acknowledged += 1;
                            acknowledged_total.fetch_add(1, Ordering::SeqCst);
                        }
                        503 => {
                            assert_eq!(reply.code(), "storage_unavailable");
                            assert!(reply.header("retry-after").is_some());
                            // A commit cut by the restart may or may not have landed.
                            uncertain += 1;
                            refused += 1;
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&reply.body)),
                    }
                }
                (worker, acknowledged, uncertain, refused)
            })
        })
        .collect();
    let wait_for = |count: u64| {
        while acknowledged_total.load(Ordering::SeqCst) < count {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    wait_for(300);
    // Down: nodes answer 503 and say they are not ready.
    pg_ctl(&["stop", "-m", "immediate"]);
    let mut probe = nodes[0].client();
    wait_ready(&mut probe, 503);
    pg_ctl(&["start", "-w"]);
    // Back: both nodes recover by themselves.
    wait_ready(&mut probe, 200);
    wait_ready(&mut nodes[1].client(), 200);
    let resumed_from = acknowledged_total.load(Ordering::SeqCst);
    wait_for(resumed_from + 300);
    // And once more while they are busy: an immediate restart.
    pg_ctl(&["restart", "-m", "immediate"]);
    wait_ready(&mut probe, 200);
    let resumed_from = acknowledged_total.load(Ordering::SeqCst);
    wait_for(resumed_from + 300);
    stop.store(true, Ordering::SeqCst);
    let mut client = nodes[1].client().with_key(crate::support::ADMIN_KEY);
    let mut refusals = 0;
    for worker in workers {
        let (worker, acknowledged, uncertain, refused) = worker.join().unwrap();
        refusals += refused;
        let reply = client.get(&format!("/v1/users/pgrestart-{worker}"));
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let stored = reply.json()["usage"]["e2e_runs"]["used"].as_u64().unwrap();
        assert!(
            stored >= acknowledged && stored <= acknowledged + uncertain,
            "pgrestart-{worker}: {stored} stored, {acknowledged} acknowledged, {uncertain} uncertain"
        );
    }
    assert!(refusals > 0, "the outage was seen as 503 storage_unavailable");
}

#[test]
fn nodes_starting_together_migrate_once() {
    if !multi_node_only() {
        return;
    }
    let url = crate::backend::create_database();
    let starters: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let dir = Arc::new(tempfile::tempdir().unwrap());
                std::fs::write(dir.path().join("database_url"), url).unwrap();
                Tally::start_with_command(with_keys(), dir, std::process::Command::new(crate::support::BIN))
            })
        })
        .collect();
    let nodes: Vec<Tally> = starters.into_iter().map(|starter| starter.join().unwrap()).collect();
    let dir = nodes[0].dir.path();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")).unwrap().count();
    let applied = crate::backend::count(dir, "SELECT count(*) FROM refinery_schema_history");
    assert_eq!(applied as usize, migrations, "each migration applied once");
    for node in &nodes {
        assert_eq!(node.client().get("/readyz").status, 200);
    }
}

#[test]
fn each_webhook_event_is_delivered_once_with_three_senders() {
    if !multi_node_only() {
        return;
    }
    use crate::receiver::{Answer, Receiver};
    let receiver = Receiver::start(vec![], Answer::Status(200));
    let webhook = format!(
        "[[webhooks]]\nurl = \"{}\"\nsecret = \"whsec_bm9kZXNfdGVzdF9zZWNyZXQ=\"\nevents = [\"plan_changed\"]\n\
         [webhook_delivery]\nretry_initial_ms = 20\nretry_max_ms = 100\ntimeout_ms = 2000\n",
        receiver.url
    );
    let nodes = three_nodes(|| with_keys().config(&webhook));
    let mut clients = clients(&nodes);
    // 60 events, made on all three nodes; every node's sender polls the one outbox.
    for user in 0..60 {
        let plan = if user % 2 == 0 { "solo" } else { "teams" };
        assert_eq!(clients[user % 3].put(&format!("/v1/users/hooked-{user}"), &json!({ "plan": plan })).status, 200);
    }
    let received = receiver.wait_for("60 deliveries", |all| all.len() >= 60);
    // All delivered: nothing is pending, so no sender can attempt one again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while clients[0].get("/v1/admin/webhooks/deliveries?status=pending").json()["deliveries"]
        .as_array()
        .is_some_and(|pending| !pending.is_empty())
    {
        assert!(std::time::Instant::now() < deadline, "deliveries stayed pending");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let received = receiver.wait_for("the same deliveries", |all| all.len() >= received.len());
    let mut ids: Vec<String> = received
        .iter()
        .map(|delivery| {
            serde_json::from_str::<serde_json::Value>(&delivery.body).unwrap()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), total), (60, 60), "each event once, none twice");
}

/// Limit 30 (trial), 3 nodes: racing reservations of 1 through every node never hold or
/// commit past the limit, and a reservation committed through two nodes at once records once.
#[test]
fn three_nodes_never_reserve_past_a_hard_limit_and_commit_once() {
    if !multi_node_only() {
        return;
    }
    let nodes = three_nodes(with_keys);
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    let threads: Vec<_> = (0..12usize)
        .map(|thread| {
            let addr = addrs[thread % addrs.len()];
            std::thread::spawn(move || {
                let mut client = Client::new(addr).with_key(crate::support::ADMIN_KEY);
                let mut committed = 0;
                for _ in 0..5 {
                    let body = json!({ "user_id": "pooled-r", "metric": "prompts", "amount": 1 });
                    let reply = client.post("/v1/reservations", &body);
                    if reply.status == 429 {
                        continue;
                    }
                    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
                    let held = reply.json();
                    assert!(held["used"].as_u64().unwrap() + held["reserved"].as_u64().unwrap() <= 30, "{held}");
                    let id = held["reservation_id"].as_str().unwrap();
                    assert_eq!(client.post(&format!("/v1/reservations/{id}/commit"), &json!({})).status, 200);
                    committed += 1;
                }
                committed
            })
        })
        .collect();
    let committed: u64 = threads.into_iter().map(|thread| thread.join().unwrap()).sum();
    let mut client = nodes[0].client().with_key(crate::support::ADMIN_KEY);
    let view = client.get("/v1/users/pooled-r").json();
    assert_eq!(view["usage"]["prompts"]["used"].as_u64(), Some(committed));
    assert_eq!(committed, 30, "60 attempts fill the limit exactly");

    // One more reservation, committed through two nodes at once.
    track(&mut client, "twice-r", "prompts", 1);
    let reply = client.post("/v1/reservations", &json!({ "user_id": "twice-r", "metric": "prompts", "amount": 5 }));
    let id = reply.json()["reservation_id"].as_str().unwrap().to_owned();
    let racers: Vec<_> = addrs[1..]
        .iter()
        .map(|&addr| {
            let path = format!("/v1/reservations/{id}/commit");
            std::thread::spawn(move || {
                Client::new(addr).with_key(crate::support::ADMIN_KEY).post(&path, &json!({})).status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = racers.into_iter().map(|racer| racer.join().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(client.get("/v1/users/twice-r").json()["usage"]["prompts"]["used"], 6);
}
