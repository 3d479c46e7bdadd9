//! Process lifecycle: graceful shutdown on SIGTERM and SIGINT answers what was sent and
//! stores every 200.

use crate::support::{Tally, raw_post, usage};
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
