//! The SQLite delta log (issue 12): increments after a counter's first are appended to
//! `usage_deltas` and folded into the counters in bulk. These tests run with the fold timer
//! off (`TALLY_TEST_NO_FOLD_TIMER`), so what sits in the log is decided by the test alone.

use crate::backend::{count, sqlite_only};
use crate::support::{ADMIN_KEY, Client, Setup, run_tally, usage};
use serde_json::json;

fn setup() -> Setup {
    Setup::new()
        .config(&format!("[auth]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n"))
        .env("TALLY_TEST_NO_FOLD_TIMER", "1")
}

fn track(client: &mut Client, user: &str, amount: u64) {
    let reply = client.post("/v1/track", &usage(user, "prompts", json!({ "amount": amount })));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
}

fn used(client: &mut Client, user: &str) -> u64 {
    client.get(&format!("/v1/users/{user}")).json()["usage"]["prompts"]["used"].as_u64().unwrap()
}

#[test]
fn increments_in_the_log_are_seen_at_once_survive_kill_9_and_fold_exactly() {
    if !sqlite_only("the delta log is SQLite's") {
        return;
    }
    let mut tally = setup().start();
    let mut client = tally.client().with_key(ADMIN_KEY);
    // A counter's first increment writes its row; the next ones go to the log.
    for _ in 0..5 {
        track(&mut client, "ann", 1);
    }
    for _ in 0..3 {
        track(&mut client, "bob", 2);
    }
    let dir = tally.dir.path().to_owned();
    assert_eq!(count(&dir, "SELECT count(*) FROM usage_deltas"), 6, "4 of ann's tracks and 2 of bob's");
    assert_eq!(count(&dir, "SELECT sum(value) FROM usage_counters"), 3, "only the first of each is in place");
    // Live reads (the user view, a check) add what the log holds.
    assert_eq!((used(&mut client, "ann"), used(&mut client, "bob")), (5, 6));
    let check = client.post("/v1/check", &usage("bob", "prompts", json!({}))).json();
    assert_eq!(check["used"], 6, "{check}");

    // kill -9: the log is in the file, and the next start reads it back before answering.
    tally.kill();
    assert_eq!(count(&dir, "SELECT count(*) FROM usage_deltas"), 6);
    let tally = tally.restart_with(setup());
    let mut client = tally.client().with_key(ADMIN_KEY);
    // (Read back into memory at start, or already folded by a background job's settling:
    // either way each increment counts once.)
    assert_eq!((used(&mut client, "ann"), used(&mut client, "bob")), (5, 6));

    // A read of rollups and indexes (the admin summary) is settled first: the log is folded,
    // every figure counts every increment once, and nothing is left in the log.
    let summary = client.get("/v1/admin/usage?top=2").json();
    assert_eq!(summary["totals"]["prompts"], 11, "{summary}");
    assert_eq!(summary["active_users"], 2, "{summary}");
    let top: Vec<(&str, u64)> = summary["top_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| (user["user_id"].as_str().unwrap(), user["usage"]["prompts"].as_u64().unwrap()))
        .collect();
    assert_eq!(top, [("bob", 6), ("ann", 5)], "{summary}");
    assert_eq!(count(&dir, "SELECT count(*) FROM usage_deltas"), 0);
    assert_eq!(count(&dir, "SELECT sum(value) FROM usage_counters"), 11);
    assert_eq!((used(&mut client, "ann"), used(&mut client, "bob")), (5, 6), "folded, not counted twice");
}

#[test]
fn a_hard_limit_counts_the_log_and_a_settled_job_folds_it_first() {
    if !sqlite_only("the delta log is SQLite's") {
        return;
    }
    let tally = setup().start();
    let mut client = tally.client().with_key(ADMIN_KEY);
    let dir = tally.dir.path().to_owned();
    // The default plan's prompts limit is hard; fill it through the log.
    let limit = client.post("/v1/check", &usage("cap", "prompts", json!({}))).json()["limit"].as_u64().unwrap();
    for _ in 0..limit {
        track(&mut client, "cap", 1);
    }
    assert_eq!(count(&dir, "SELECT count(*) FROM usage_deltas"), limit as i64 - 1);
    let refused = client.post("/v1/track", &usage("cap", "prompts", json!({})));
    assert_eq!(refused.status, 429, "the log's increments count toward the limit");
    // A reset is a settled job: the log is folded before it deletes the counter, so nothing
    // pending survives the reset to reappear at a later fold.
    assert_eq!(client.post("/v1/admin/users/cap/reset", &json!({})).status, 200);
    assert_eq!(count(&dir, "SELECT count(*) FROM usage_deltas"), 0);
    assert_eq!(used(&mut client, "cap"), 0);
    track(&mut client, "cap", 1);
    assert_eq!(used(&mut client, "cap"), 1);
}

#[test]
fn copy_db_refuses_a_file_whose_log_is_not_folded() {
    if !sqlite_only("the delta log is SQLite's") {
        return;
    }
    let mut tally = setup().start();
    let mut client = tally.client().with_key(ADMIN_KEY);
    for _ in 0..3 {
        track(&mut client, "ann", 1);
    }
    tally.kill();
    let config = tally.config_path();
    // Refused before any connection to the target: the URL need not answer.
    let args = ["copy-db", "--config", config.to_str().unwrap(), "--to", "postgres://tally@127.0.0.1:9/tally"];
    let (status, _, stderr) = run_tally(&args, tally.dir.path());
    assert!(!status.success());
    assert!(stderr.contains("2 increments not yet folded"), "{stderr}");
    // A start and a clean stop fold the log; then the file is complete on its own.
    let mut tally = tally.restart_with(setup());
    assert_eq!(tally.signal_and_wait("TERM").code(), Some(0));
    assert_eq!(count(tally.dir.path(), "SELECT count(*) FROM usage_deltas"), 0);
    assert_eq!(count(tally.dir.path(), "SELECT sum(value) FROM usage_counters"), 3);
}

/// The invariant the log must keep while it is folded under load: a read counts every
/// increment acknowledged before it began, and none twice. 8 threads track (the log seals a
/// chunk every 128 rows and each group folds one, and an admin thread's settled reads fold all
/// of it), while readers check each value they see against two bounds taken around the read:
/// at least what was acknowledged before it, at most what had been sent by its end.
#[test]
fn reads_during_folds_count_every_acknowledged_increment_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    if !sqlite_only("the delta log is SQLite's") {
        return;
    }
    let tally =
        Setup::new().config(&format!("[auth]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n")).start();
    let (sent, acknowledged, done) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let trackers: Vec<_> = (0..8)
        .map(|_| {
            let (sent, acknowledged) = (sent.clone(), acknowledged.clone());
            let mut client = tally.client().with_key(ADMIN_KEY);
            std::thread::spawn(move || {
                for _ in 0..250 {
                    sent.fetch_add(1, Ordering::SeqCst);
                    let reply = client.post("/v1/track", &usage("mono", "bytes_out", json!({})));
                    assert_eq!(reply.status, 200);
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let (sent, acknowledged, done) = (sent.clone(), acknowledged.clone(), done.clone());
            let mut client = tally.client().with_key(ADMIN_KEY);
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::SeqCst) {
                    let before = acknowledged.load(Ordering::SeqCst);
                    let seen = match reader {
                        0 => client.get("/v1/users/mono").json()["usage"]["bytes_out"]["used"].as_u64(),
                        1 => client.post("/v1/check", &usage("mono", "bytes_out", json!({}))).json()["used"].as_u64(),
                        // Settled: folds the whole log first, then reads the rollup.
                        _ => client.get("/v1/admin/usage?metric=bytes_out").json()["totals"]["bytes_out"].as_u64(),
                    }
                    .unwrap_or(0);
                    let after = sent.load(Ordering::SeqCst);
                    assert!(
                        seen >= before,
                        "reader {reader} saw {seen}, but {before} were acknowledged before it read"
                    );
                    assert!(seen <= after, "reader {reader} saw {seen}, but only {after} had been sent");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for tracker in trackers {
        tracker.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    let mut client = tally.client().with_key(ADMIN_KEY);
    assert_eq!(client.get("/v1/users/mono").json()["usage"]["bytes_out"]["used"], 2000);
    assert_eq!(client.get("/v1/admin/usage?metric=bytes_out").json()["totals"]["bytes_out"], 2000);
    assert_eq!(count(tally.dir.path(), "SELECT count(*) FROM usage_deltas"), 0, "the settled read folded it all");
}

/// `tally backup` folds what the running server had not into its copy; a server started on
/// the copy counts from there, and its new increments (numbered past the copy's folded_seq)
/// are seen.
#[test]
fn a_backup_holds_the_log_folded_and_a_server_on_it_counts_on() {
    if !sqlite_only("the delta log is SQLite's") {
        return;
    }
    let mut tally = setup().start();
    let mut client = tally.client().with_key(ADMIN_KEY);
    for _ in 0..4 {
        track(&mut client, "ann", 2);
    }
    let dir = tally.dir.path().to_owned();
    assert_eq!(count(&dir, "SELECT count(*) FROM usage_deltas"), 3);
    let copy = dir.join("copy.db");
    let config = tally.config_path();
    let (status, _, stderr) =
        run_tally(&["backup", "--config", config.to_str().unwrap(), copy.to_str().unwrap()], &dir);
    assert!(status.success(), "{stderr}");
    let backup = rusqlite::Connection::open(&copy).unwrap();
    let (stored, left): (i64, i64) = backup
        .query_row("SELECT (SELECT sum(value) FROM usage_counters), (SELECT count(*) FROM usage_deltas)", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    assert_eq!((stored, left), (8, 0), "the copy holds every increment in its counters");
    drop(backup);
    // Restore: the copy replaces the file, and a server starts on it.
    tally.kill();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("tally.db{suffix}")));
    }
    std::fs::rename(&copy, dir.join("tally.db")).unwrap();
    let tally = tally.restart_with(setup());
    let mut client = tally.client().with_key(ADMIN_KEY);
    assert_eq!(used(&mut client, "ann"), 8);
    track(&mut client, "ann", 1);
    track(&mut client, "ann", 1);
    assert_eq!(used(&mut client, "ann"), 10, "increments after the restore are seen");
    assert_eq!(client.get("/v1/admin/usage").json()["totals"]["prompts"], 10);
}
