//! Crash safety: under a 32-connection track load, `kill -9` at a varying moment, restart, and
//! check that every 200 is stored, nothing beyond the requests in flight is, and the file
//! passes `PRAGMA integrity_check`. CI runs 3 rounds; `scripts/soak.sh` sets
//! TALLY_CRASH_ROUNDS=20.

use crate::support::{Tally, raw_post, usage};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const WORKERS: usize = 32;

/// One round: returns (answers of 200, requests left unanswered by the kill, stored).
fn crash_round(round: u64) -> (u64, u64, u64) {
    let mut tally = Tally::start_default();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let unanswered = Arc::new(AtomicU64::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (acknowledged, unanswered, killed) = (acknowledged.clone(), unanswered.clone(), killed.clone());
            let mut client = tally.client();
            std::thread::spawn(move || {
                let body = usage(&format!("crash-{worker}"), "e2e_runs", json!({})).to_string();
                let request = raw_post("/v1/track", body.as_bytes());
                loop {
                    match client.try_send_raw(&request) {
                        Ok(reply) => {
                            assert_eq!(reply.status, 200);
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => {
                            // Sent (perhaps) and never answered: it may or may not be stored.
                            assert!(killed.load(Ordering::SeqCst), "a request failed before the kill");
                            unanswered.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    // Vary the kill point: after a different number of acknowledged tracks each round.
    let kill_after = 200 + (round * 7919) % 1500;
    while acknowledged.load(Ordering::SeqCst) < kill_after {
        std::thread::sleep(Duration::from_millis(1));
    }
    killed.store(true, Ordering::SeqCst);
    tally.kill();
    for worker in workers {
        worker.join().unwrap();
    }
    let tally = tally.restart();
    let mut client = tally.client();
    let stored: u64 = (0..WORKERS)
        .map(|worker| {
            let reply = client.get(&format!("/v1/users/crash-{worker}"));
            if reply.status == 404 { 0 } else { reply.json()["usage"]["e2e_runs"]["used"].as_u64().unwrap() }
        })
        .sum();
    if crate::backend::sqlite_only("the file's integrity_check after a kill") {
        let db = rusqlite::Connection::open_with_flags(
            tally.dir.path().join("tally.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let integrity: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        assert_eq!(integrity, "ok", "round {round}");
    }
    (acknowledged.load(Ordering::SeqCst), unanswered.load(Ordering::SeqCst), stored)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_track() {
    let rounds: u64 = std::env::var("TALLY_CRASH_ROUNDS").ok().and_then(|rounds| rounds.parse().ok()).unwrap_or(3);
    for round in 0..rounds {
        let (acknowledged, unanswered, stored) = crash_round(round);
        eprintln!("crash round {round}: {acknowledged} acknowledged, {unanswered} in flight, {stored} stored");
        assert!(stored >= acknowledged, "round {round}: {stored} stored < {acknowledged} acknowledged");
        assert!(
            stored <= acknowledged + unanswered,
            "round {round}: {stored} stored > {acknowledged} acknowledged + {unanswered} in flight"
        );
    }
}
