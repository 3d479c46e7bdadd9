//! `tally copy-db`: a SQLite database moved into PostgreSQL answers exactly as before, a
//! non-empty target is refused, and the password never shows. Needs a PostgreSQL server, so
//! it runs in the PostgreSQL pass of scripts/test.sh.

use crate::backend::{create_database, is_postgres};
use crate::support::{ADMIN_KEY, Setup, Tally, run_tally, seed_six_users, track};
use serde_json::{Value, json};

fn keys() -> String {
    format!("[auth]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n")
}

/// What the admin API says about the seeded data (the same on both databases), then the
/// events oldest first and the audit log newest first (a server's startup cleanup adds one
/// of each).
fn views(tally: &Tally) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let mut client = tally.client().with_key(ADMIN_KEY);
    let mut views = vec![client.get("/v1/admin/usage?top=10").json(), client.get("/v1/admin/plans").json()];
    for user in ["ann", "bob", "sol", "tim", "idle"] {
        let mut view = client.get(&format!("/v1/admin/users/{user}")).json();
        // A rate feature's window is counted from now; everything else must match.
        view["features"] = Value::Null;
        views.push(view);
    }
    let events = client.get("/v1/admin/events?limit=1000").json()["events"].as_array().unwrap().clone();
    let audit = client.get("/v1/admin/audit").json()["entries"].as_array().unwrap().clone();
    (views, events, audit)
}

#[test]
fn copy_db_moves_everything_and_refuses_a_non_empty_target() {
    if !is_postgres() {
        eprintln!("copy-db test: needs a PostgreSQL server; runs in the PostgreSQL pass");
        return;
    }
    let mut source = Setup::new().sqlite().config(&keys()).start();
    let mut client = source.client().with_key(ADMIN_KEY);
    seed_six_users(&mut client);
    track(&mut client, "ann", "prompts", 10);
    assert_eq!(client.post("/v1/track", &json!({ "user_id": "ann", "metric": "prompts" })).status, 429);
    assert_eq!(client.post("/v1/admin/users/bob/reset", &json!({})).status, 200);
    let before = views(&source);
    assert_eq!(source.signal_and_wait("TERM").code(), Some(0));

    let target = create_database();
    // The password as it would appear in the URL (the test role's password is its name, so
    // look for it in its place, not anywhere).
    let secret = format!(":{}@", target.split('@').next().unwrap().rsplit(':').next().unwrap());
    let config = source.config_path();
    let args = ["copy-db", "--config", config.to_str().unwrap(), "--to", target.as_str()];
    let (status, stdout, stderr) = run_tally(&args, source.dir.path());
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("usage_counters: 5"), "{stdout}");
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret), "the password is shown:\n{stdout}\n{stderr}");

    // A second copy into the same (now full) database is refused and changes nothing.
    let (status, stdout, stderr) = run_tally(&args, source.dir.path());
    assert!(!status.success(), "{stdout}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");

    // A server on the copy answers as the SQLite one did, and keeps going.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(dir.path().join("database_url"), &target).unwrap();
    let copy =
        Tally::start_with_command(Setup::new().config(&keys()), dir, std::process::Command::new(crate::support::BIN));
    let (state, events, audit) = views(&copy);
    assert!(state == before.0, "the copy answers differently:\n{state:?}\nwas\n{:?}", before.0);
    assert!(events.starts_with(&before.1) && events.len() == before.1.len() + 1, "events differ");
    assert!(audit.ends_with(&before.2) && audit.len() == before.2.len() + 1, "audit differs");
    let mut client = copy.client().with_key(ADMIN_KEY);
    track(&mut client, "newcomer", "prompts", 1);
    assert_eq!(client.post("/v1/admin/users/newcomer/plan", &json!({ "plan": "solo" })).status, 200);
    let audit = client.get("/v1/admin/audit").json();
    assert_eq!(audit["entries"][0]["action"], "plan_changed", "new audit rows get new ids: {audit}");
    // After the copied rows come the copy's startup cleanup, then this change.
    let copied_newest = before.2[0]["id"].as_i64().unwrap();
    assert_eq!(audit["entries"][0]["id"], copied_newest + 2, "ids continue after the copied ones");
}
