//! Maintenance never stalls writes: a cleanup over many rows runs in short steps, and a
//! track sent while it runs is answered before it finishes; a second cleanup meanwhile is
//! refused. Both backends.

use crate::backend::{count, run_sql};
use crate::support::{ADMIN_KEY, start_with_keys, track};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const OLD_ROWS: i64 = 60_000;

#[test]
fn a_track_sent_during_a_large_cleanup_is_answered_before_it_finishes() {
    let tally = start_with_keys();
    let mut client = tally.client().with_key(ADMIN_KEY);
    track(&mut client, "hoarder", "prompts", 1);
    // 60,000 counters of an old month and as many old events, straight into the database.
    run_sql(
        tally.dir.path(),
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {OLD_ROWS})
             INSERT INTO usage_counters (user_pk, period, metric, value, created_at, updated_at)
             SELECT (SELECT id FROM users WHERE user_id = 'hoarder'), '2020-01', 'old' || i, 1, 0, 0 FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {OLD_ROWS})
             INSERT INTO events (id, type, at, user_id, data) SELECT 'old-' || i, 'cleanup', 0, NULL, '{{}}' FROM n;"
        ),
    );
    let old_counters = "SELECT count(*) FROM usage_counters WHERE period = '2020-01'";
    assert_eq!(count(tally.dir.path(), old_counters), OLD_ROWS);

    let finished = Arc::new(AtomicBool::new(false));
    let cleanup = {
        let (finished, addr) = (Arc::clone(&finished), tally.addr);
        std::thread::spawn(move || {
            let mut admin = crate::support::Client::new(addr).with_key(ADMIN_KEY);
            let reply = admin.post("/v1/admin/cleanup", &json!({ "retention_months": 1 }));
            finished.store(true, Ordering::SeqCst);
            reply
        })
    };
    // Once the cleanup has visibly started (rows are going) and is not done, send a track.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = count(tally.dir.path(), old_counters);
        if left < OLD_ROWS && left > 0 {
            break;
        }
        assert!(left > 0, "the cleanup finished before a track could be sent: make OLD_ROWS larger");
        assert!(std::time::Instant::now() < deadline, "the cleanup never started");
    }
    // A second cleanup meanwhile is refused: one runs at a time (across nodes too: the lease
    // is in the database).
    let second = client.post("/v1/admin/cleanup", &json!({ "retention_months": 1 }));
    assert_eq!((second.status, second.code().as_str()), (409, "cleanup_in_progress"));
    let mut user = tally.client().with_key(crate::support::SERVICE_KEY);
    let reply = user.post("/v1/track", &crate::support::usage("busy-hours", "prompts", json!({})));
    assert_eq!(reply.status, 200);
    assert!(!finished.load(Ordering::SeqCst), "the track waited for the whole cleanup");
    let report = cleanup.join().unwrap();
    assert_eq!(report.status, 200, "{}", String::from_utf8_lossy(&report.body));
    assert_eq!(report.json()["deleted_counters"], OLD_ROWS);
    assert_eq!(count(tally.dir.path(), old_counters), 0);
    assert_eq!(count(tally.dir.path(), "SELECT count(*) FROM events WHERE at = 0"), 0);
}

#[test]
fn a_large_erasure_interleaves_with_tracks_and_hides_the_user_from_its_first_step() {
    let tally = start_with_keys();
    let mut client = tally.client().with_key(ADMIN_KEY);
    track(&mut client, "talker", "prompts", 1);
    run_sql(
        tally.dir.path(),
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {OLD_ROWS})
             INSERT INTO events (id, type, at, user_id, data) SELECT 'talk-' || i, 'rate_limited', 1, 'talker', '{{}}' FROM n;"
        ),
    );
    let named = "SELECT count(*) FROM events WHERE user_id = 'talker'";
    let finished = Arc::new(AtomicBool::new(false));
    let erasure = {
        let (finished, addr) = (Arc::clone(&finished), tally.addr);
        std::thread::spawn(move || {
            let mut admin = crate::support::Client::new(addr).with_key(ADMIN_KEY);
            let reply = admin.request("DELETE", "/v1/admin/users/talker", &[], None);
            finished.store(true, Ordering::SeqCst);
            reply
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = count(tally.dir.path(), named);
        if left < OLD_ROWS && left > 0 {
            break;
        }
        assert!(left > 0, "the erasure finished before it could be observed: make OLD_ROWS larger");
        assert!(std::time::Instant::now() < deadline, "the erasure never started");
    }
    // Mid-erasure: the user is already gone for every reader, and writes go on.
    assert_eq!(client.get("/v1/users/talker").status, 404);
    assert_eq!(client.get("/v1/admin/users/talker/export").status, 404);
    let reply = client.post("/v1/track", &crate::support::usage("bystander", "prompts", json!({})));
    assert_eq!(reply.status, 200);
    assert!(!finished.load(Ordering::SeqCst), "the track waited for the whole erasure");
    let reply = erasure.join().unwrap();
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(count(tally.dir.path(), named), 0);
    let hash = reply.json()["user_id_hash"].as_str().unwrap().to_owned();
    // The scrubbed events, and the user_erased event itself.
    let hashed = format!("SELECT count(*) FROM events WHERE user_id = '{hash}'");
    assert_eq!(count(tally.dir.path(), &hashed), OLD_ROWS + 1);
    assert_eq!(count(tally.dir.path(), "SELECT count(*) FROM erasures"), 0);
}

#[test]
fn an_erasure_cut_short_by_a_crash_is_finished_at_the_next_start() {
    let tally = start_with_keys();
    let mut client = tally.client().with_key(ADMIN_KEY);
    track(&mut client, "cutshort", "prompts", 1);
    let hash = "sha256:8c0bd1a1ba7f1be6aef9a2b0c4ccbbce1cdc1a4e4c4b6bd2e8d0e4cdbd3e3e9a";
    // What a crash right after the erasure's first step leaves: the erasure recorded, events
    // still naming the user.
    run_sql(
        tally.dir.path(),
        &format!(
            "DELETE FROM users WHERE user_id = 'cutshort';
             INSERT INTO erasures (user_id, hash, actor, started_at) VALUES ('cutshort', '{hash}', 'ops', 1);
             INSERT INTO events (id, type, at, user_id, data) VALUES ('cut-1', 'rate_limited', 1, 'cutshort', '{{}}');"
        ),
    );
    let tally = tally.restart();
    let dir = tally.dir.path();
    assert_eq!(count(dir, "SELECT count(*) FROM events WHERE user_id = 'cutshort'"), 0);
    assert_eq!(count(dir, &format!("SELECT count(*) FROM events WHERE user_id = '{hash}'")), 1);
    assert_eq!(count(dir, "SELECT count(*) FROM erasures"), 0);
    let audit = tally.client().with_key(ADMIN_KEY).get("/v1/admin/audit").json();
    let erased: Vec<_> =
        audit["entries"].as_array().unwrap().iter().filter(|entry| entry["action"] == "user_erased").collect();
    assert_eq!(erased.len(), 1, "{audit}");
    assert_eq!(erased[0]["target"], hash);
}
