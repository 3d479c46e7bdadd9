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
