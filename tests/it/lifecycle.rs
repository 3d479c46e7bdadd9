//! Process lifecycle: graceful shutdown on SIGTERM and SIGINT answers what was sent and
//! stores every 200, and on SQLite leaves the database file alone, without `-wal` or `-shm`.

use crate::support::{Setup, Tally, raw_post, usage};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn graceful_shutdown_answers_everything_sent_before(signal: &str) {
    let mut tally = Tally::start_default();
    let ok = Arc::new(AtomicUsize::new(0));
    let signalled_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let unanswered_before_signal = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (ok, signalled_at, unanswered, stop) =
                (ok.clone(), signalled_at.clone(), unanswered_before_signal.clone(), stop.clone());
            let mut client = tally.client();
            std::thread::spawn(move || {
                let body = usage(&format!("w{worker}"), "e2e_runs", json!({})).to_string();
                let request = raw_post("/v1/track", body.as_bytes());
                while !stop.load(Ordering::SeqCst) {
                    let sent_at = Instant::now();
                    match client.try_send_raw(&request) {
                        Ok(reply) if reply.status == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(reply) => {
                            assert_eq!(reply.code(), "shutting_down");
                            return;
                        }
                        Err(_) => {
                            let signal = *signalled_at.lock().unwrap();
                            if signal.is_none_or(|signal| sent_at < signal) {
                                unanswered.fetch_add(1, Ordering::SeqCst);
                            }
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    while ok.load(Ordering::SeqCst) < 400 {
        std::thread::yield_now();
    }
    *signalled_at.lock().unwrap() = Some(Instant::now());
    let status = tally.signal_and_wait(signal);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(unanswered_before_signal.load(Ordering::SeqCst), 0, "a request sent before the signal got no answer");

    let tally = tally.restart();
    let mut client = tally.client();
    let stored: u64 = (0..8)
        .map(|worker| client.get(&format!("/v1/users/w{worker}")).json()["usage"]["e2e_runs"]["used"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, ok.load(Ordering::SeqCst) as u64, "every 200 is stored, and nothing else");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    graceful_shutdown_answers_everything_sent_before("TERM");
}

#[test]
fn sigint_drains_and_exits_zero() {
    graceful_shutdown_answers_everything_sent_before("INT");
}

fn clean_shutdown_leaves_only_the_database_file(signal: &str) {
    let mut tally = Setup::new().sqlite().start();
    let mut client = tally.client();
    for round in 0..200 {
        let reply = client.post("/v1/track", &usage(&format!("u{}", round % 7), "e2e_runs", json!({})));
        assert_eq!(reply.status, 200);
        // Reads too, so the read pool holds open connections at the signal.
        assert_eq!(client.get(&format!("/v1/users/u{}", round % 7)).status, 200);
    }
    let dir = std::sync::Arc::clone(&tally.dir);
    let file = |suffix: &str| dir.path().join(format!("tally.db{suffix}"));
    assert!(file("-wal").exists() && file("-shm").exists(), "while serving, SQLite keeps its WAL and shared memory");
    assert!(tally.signal_and_wait(signal).success());
    assert!(file("").is_file());
    assert!(!file("-wal").exists(), "the WAL is checkpointed and removed on a clean {signal}");
    assert!(!file("-shm").exists(), "the shared-memory file is removed on a clean {signal}");
    let connection = rusqlite::Connection::open_with_flags(file(""), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database file alone");
    let stored: i64 = connection.query_row("SELECT sum(value) FROM usage_counters", [], |row| row.get(0)).unwrap();
    assert_eq!(stored, 200, "every acknowledged write is in the database file itself");
}

#[test]
fn sigterm_on_sqlite_leaves_only_the_database_file() {
    clean_shutdown_leaves_only_the_database_file("TERM");
}

#[test]
fn sigint_on_sqlite_leaves_only_the_database_file() {
    clean_shutdown_leaves_only_the_database_file("INT");
}
