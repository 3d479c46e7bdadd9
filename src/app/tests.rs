//! The use cases on a real SQLite port, without HTTP: the decisions as the API makes them.

use super::idempotency::{Answered, Once, Render, Rendered};
use super::{AppError, admin, maintenance, usage};
use crate::config::Config;
use crate::domain::Rules;
use crate::domain::feature::UseOutcome;
use crate::domain::period::Period;
use crate::domain::ports::Store;
use crate::domain::usage::{TrackOutcome, UsageQuery};
use crate::domain::user_id::UserId;
use std::sync::Arc;

const NOW: i64 = 1_790_000_000_000;

/// A store on a SQLite file in a temp dir (kept alive with it), and the default rules.
fn setup() -> (Store, Arc<Rules>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[database]\npath = {:?}\n", dir.path().join("t.db").display().to_string());
    let config = Config::from_toml("test", &text, &|_| None).unwrap();
    let store = crate::store::open(&config.database, Default::default()).unwrap();
    (store, Arc::new(config.rules), dir)
}

fn id(text: &str) -> UserId {
    UserId::parse(text).unwrap()
}

fn query(user_id: &str, amount: u64) -> UsageQuery {
    UsageQuery { user_id: id(user_id), metric: "prompts".into(), amount, period: Period::of_unix_ms(NOW) }
}

fn status() -> Render<TrackOutcome> {
    Arc::new(|outcome: &TrackOutcome| {
        let status = if matches!(outcome, TrackOutcome::Refused { .. }) { 429 } else { 200 };
        Rendered { status, headers: Vec::new(), body: format!("{outcome:?}") }
    })
}

fn track(store: &Store, rules: &Arc<Rules>, user_id: &str, amount: u64, once: Option<Once>) -> Answered<TrackOutcome> {
    usage::track(store, rules, query(user_id, amount), true, once, NOW, status()).wait().unwrap()
}

#[test]
fn a_track_past_the_trial_limit_is_refused_and_changes_nothing() {
    let (store, rules, _dir) = setup();
    assert!(matches!(
        track(&store, &rules, "ann", 30, None),
        Answered::Fresh { value: TrackOutcome::Recorded { .. }, .. }
    ));
    let refused = track(&store, &rules, "ann", 1, None);
    let Answered::Fresh { value: TrackOutcome::Refused { verdict, upgrade_to, .. }, .. } = refused else {
        panic!("the 31st prompt on trial is refused");
    };
    assert_eq!((verdict.standing.used, upgrade_to.as_deref()), (30, Some("solo")));
    assert_eq!(usage::check(&store, &rules, &query("ann", 1), 0).unwrap().standing.used, 30);
}

#[test]
fn an_idempotent_track_replays_and_a_reused_key_is_refused() {
    let (store, rules, _dir) = setup();
    let once = || Some(Once::new("key-1", &[&"track", &"bob", &1]).unwrap());
    assert!(matches!(track(&store, &rules, "bob", 1, once()), Answered::Fresh { .. }));
    assert!(matches!(track(&store, &rules, "bob", 1, once()), Answered::Replayed(_)));
    let other = Some(Once::new("key-1", &[&"track", &"bob", &2]).unwrap());
    let reused = usage::track(&store, &rules, query("bob", 2), true, other, NOW, status()).wait();
    assert!(matches!(reused, Err(AppError::IdempotencyKeyReused)));
    assert_eq!(usage::check(&store, &rules, &query("bob", 1), 0).unwrap().standing.used, 1);
}

#[test]
fn a_rate_limited_feature_allows_its_window_and_then_says_when() {
    let (store, rules, _dir) = setup();
    admin::change_plan(&store, &rules, &id("sol"), "solo", None, |_, _, _, _| Ok(())).unwrap();
    let render: Render<UseOutcome> =
        Arc::new(|_: &UseOutcome| Rendered { status: 200, headers: Vec::new(), body: String::new() });
    let use_it = |at: i64| {
        usage::use_feature(&store, &rules, id("sol"), "active_project_snapshots".into(), None, at, Arc::clone(&render))
            .wait()
            .unwrap()
    };
    assert!(matches!(use_it(NOW), Answered::Fresh { value: UseOutcome::Allowed(_), .. }));
    let Answered::Fresh { value: UseOutcome::RateLimited { retry_after_ms, .. }, .. } = use_it(NOW + 1_000) else {
        panic!("solo allows one snapshot a minute");
    };
    assert_eq!(retry_after_ms, 59_000);
    assert!(matches!(use_it(NOW + 60_001), Answered::Fresh { value: UseOutcome::Allowed(_), .. }));
}

#[test]
fn erasure_forgets_the_user_and_a_second_one_finds_nothing() {
    let (store, rules, _dir) = setup();
    track(&store, &rules, "eve", 3, None);
    let hash = admin::erase(&store, &rules, &id("eve"), "ops").unwrap();
    assert!(hash.starts_with("sha256:"));
    assert!(matches!(admin::export(&store, &id("eve")), Err(AppError::UserNotFound(_))));
    assert!(matches!(admin::erase(&store, &rules, &id("eve"), "ops"), Err(AppError::UserNotFound(_))));
    let audit = admin::audit_page(&store, 10, None).unwrap();
    assert_eq!((audit[0].action.as_str(), audit[0].target.as_deref()), ("user_erased", Some(hash.as_str())));
}

#[test]
fn two_cleanups_at_once_run_one_at_a_time() {
    let (store, rules, _dir) = setup();
    // The lease held by another run: this one is refused without deleting anything.
    store.write(|tx| tx.claim_lease("cleanup", "another-node:run", NOW, i64::MAX)).unwrap();
    assert!(maintenance::cleanup(&store, &rules, 1, "ops", NOW).unwrap().is_none());
    assert!(matches!(admin::cleanup(&store, &rules, 1, "ops"), Err(AppError::CleanupInProgress)));
    store.write(|tx| tx.release_lease("cleanup", "another-node:run")).unwrap();
    assert!(maintenance::cleanup(&store, &rules, 1, "ops", NOW).unwrap().is_some());
}
