//! Storage faults and startup refusals: a dead writer, a full disk, a locked file, a
//! read-only file, a database from a newer Tally, a corrupt file, a missing directory; and
//! backups taken under load.

use crate::support::{BIN, Setup, Tally, raw_post, run_tally, usage};
use chrono::Datelike;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[test]
fn a_dead_writer_turns_readiness_and_writes_to_503_and_exits_nonzero() {
    let mut tally = Setup::new().env("TALLY_TEST_WRITER_PANIC_AFTER", "5").start();
    let mut client = tally.client();
    let body = usage("w", "prompts", json!({})).to_string();
    let request = raw_post("/v1/track", body.as_bytes());
    let mut statuses = Vec::new();
    // The writer commits 5 groups, then dies; the process then exits (the connection drops).
    while let Ok(reply) = client.try_send_raw(&request) {
        statuses.push(reply.status);
        if reply.status == 503 {
            // Readiness follows the writer, unless the process is already gone (it exits next).
            if let Ok(ready) = client.try_send_raw(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n") {
                assert_eq!(ready.status, 503, "readiness follows the writer");
            }
            break;
        }
        assert!(statuses.len() < 100, "the writer never died: {statuses:?}");
    }
    assert!(statuses.contains(&503), "a write after the writer died answers 503: {statuses:?}");
    let status = tally.wait_exit();
    assert!(!status.success(), "the process exits non-zero so a supervisor restarts it");
    let log = std::fs::read_to_string(tally.dir.path().join("stderr.log")).unwrap();
    assert!(log.contains("writer"), "the death is logged: {log}");
}

#[test]
fn a_full_database_answers_503_stores_nothing_partial_and_recovers_when_space_is_freed() {
    if !crate::backend::sqlite_only("max_size_mb caps a SQLite file") {
        return;
    }
    // SQLite's max_page_count stands in for a small filesystem (making one needs privileges).
    let tally = Setup::new().database("max_size_mb = 1").start();
    let mut client = tally.client();
    let last_month = (chrono::Utc::now().with_day(1).unwrap() - chrono::Duration::days(1)).to_rfc3339();
    let (mut created, mut sequence) = (0u64, 0u64);
    let mut refused = Vec::new();
    // Fill until five new users in a row are refused: the file is full, not one odd page.
    while refused.len() < 5 {
        sequence += 1;
        let user = format!("filler-{sequence:06}-{}", "x".repeat(100));
        let reply = client.post("/v1/track", &usage(&user, "prompts", json!({ "timestamp": last_month })));
        match reply.status {
            200 => {
                created += 1;
                refused.clear();
            }
            503 => {
                assert_eq!(reply.code(), "storage_unavailable");
                assert_eq!(reply.header("retry-after"), Some("1"));
                refused.push(user);
            }
            other => panic!("status {other}: {}", String::from_utf8_lossy(&reply.body)),
        }
        assert!(created < 100_000, "the cap never bit");
    }
    for user in &refused {
        assert_eq!(client.get(&format!("/v1/users/{user}")).status, 404, "nothing partial was stored");
    }
    assert_eq!(client.get("/readyz").status, 200, "reads still work");

    // Free space by dropping last month's counters; writes succeed again without a restart.
    let cleanup = client.post("/v1/admin/cleanup", &json!({ "retention_months": 1 }));
    assert_eq!(cleanup.status, 200, "{}", String::from_utf8_lossy(&cleanup.body));
    assert_eq!(cleanup.json()["deleted_counters"], created);
    for user in &refused {
        assert_eq!(client.post("/v1/track", &usage(user, "prompts", json!({}))).status, 200);
    }
}

#[test]
fn a_locked_database_answers_503_with_retry_after_and_recovers() {
    if !crate::backend::sqlite_only("another process locking the SQLite file") {
        return;
    }
    let tally = Setup::new().database("busy_timeout_ms = 100").start();
    let mut client = tally.client();
    assert_eq!(client.post("/v1/track", &usage("lock", "prompts", json!({}))).status, 200);
    let other = rusqlite::Connection::open(tally.dir.path().join("tally.db")).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let busy = client.post("/v1/track", &usage("lock", "prompts", json!({})));
    assert_eq!((busy.status, busy.code().as_str()), (503, "storage_unavailable"));
    assert_eq!(busy.header("retry-after"), Some("1"));
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(client.post("/v1/track", &usage("lock", "prompts", json!({}))).status, 200);
    assert_eq!(client.get("/v1/users/lock").json()["usage"]["prompts"]["used"], 2, "the refused track left no trace");
}

#[test]
fn a_database_from_a_newer_tally_is_refused() {
    let tally = Tally::start_default();
    let dir = Arc::clone(&tally.dir);
    drop(tally);
    crate::backend::run_sql(
        dir.path(),
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
         SELECT 99, 'future', applied_on, checksum FROM refinery_schema_history LIMIT 1",
    );
    let (status, stderr) = Setup::new().start_refused_in(dir.path());
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("newer Tally") && stderr.contains("99"), "{stderr}");
}

#[test]
fn a_corrupt_file_is_refused_and_never_overwritten() {
    if !crate::backend::sqlite_only("a corrupt SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let junk: Vec<u8> = (0..8192u32).map(|n| (n * 7919 % 251) as u8).collect();
    std::fs::write(dir.path().join("tally.db"), &junk).unwrap();
    let (status, stderr) = Setup::new().start_refused_in(dir.path());
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("not an SQLite database"), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("tally.db")).unwrap(), junk, "the file is untouched");
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tally.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:0\"\n[database]\npath = \"no/such/dir/tally.db\"\n")
        .unwrap();
    let (status, stdout, stderr) = run_tally(&["serve", "--config", config.to_str().unwrap()], dir.path());
    assert_eq!(status.code(), Some(1));
    assert!(stdout.is_empty());
    assert!(stderr.contains("no/such/dir") && stderr.contains("does not exist"), "{stderr}");
}

/// Runs a command as an unprivileged user when this process is root (root ignores file
/// permissions); as the current user otherwise.
fn unprivileged(program: &str) -> std::process::Command {
    let root = std::process::Command::new("id").arg("-u").output().map(|out| out.stdout == b"0\n").unwrap_or(false);
    if root {
        let mut command = std::process::Command::new("setpriv");
        command.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", program]);
        command
    } else {
        std::process::Command::new(program)
    }
}

fn open_to_all(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
}

#[test]
fn a_read_only_database_is_a_clear_startup_error() {
    if !crate::backend::sqlite_only("a write-protected SQLite file") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tally = Tally::start_default();
    let dir = Arc::clone(&tally.dir);
    drop(tally);
    open_to_all(dir.path());
    let db = dir.path().join("tally.db");
    for file in ["tally.db", "tally.db-wal", "tally.db-shm"] {
        let path = dir.path().join(file);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut command = unprivileged(BIN);
    let output = command
        .args(["serve", "--config"])
        .arg(dir.path().join("tally.toml"))
        .current_dir(dir.path())
        .output()
        .expect("run tally unprivileged (setpriv is in util-linux)");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(stderr.contains(&db.display().to_string()) && stderr.contains("read"), "{stderr}");
}

#[test]
fn a_backup_under_load_holds_every_write_acknowledged_before_it_began() {
    if !crate::backend::sqlite_only("VACUUM INTO backups; PostgreSQL uses pg_dump") {
        return;
    }
    let tally = Tally::start_default();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (acknowledged, stop, mut client) = (acknowledged.clone(), stop.clone(), tally.client());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let reply = client.post("/v1/track", &usage(&format!("b{worker}"), "bytes_out", json!({})));
                    assert_eq!(reply.status, 200);
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    while acknowledged.load(Ordering::SeqCst) < 300 {
        std::thread::yield_now();
    }
    let before_backup = acknowledged.load(Ordering::SeqCst);
    let target = tally.dir.path().join("backup.db");
    let config = tally.dir.path().join("tally.toml");
    let (status, stdout, stderr) =
        run_tally(&["backup", "--config", config.to_str().unwrap(), target.to_str().unwrap()], tally.dir.path());
    let after_backup = acknowledged.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("integrity ok"), "{stdout}");
    let copy = rusqlite::Connection::open(&target).unwrap();
    let integrity: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let stored: i64 = copy.query_row("SELECT sum(value) FROM usage_counters", [], |row| row.get(0)).unwrap();
    assert!(stored as u64 >= before_backup, "{stored} stored, {before_backup} acknowledged before the backup");
    assert!(stored as u64 <= after_backup + 8, "{stored} stored, only {after_backup} acknowledged by its end");
    let (status, _, stderr) =
        run_tally(&["backup", "--config", config.to_str().unwrap(), target.to_str().unwrap()], tally.dir.path());
    assert!(!status.success() && stderr.contains("already exists"), "never overwrites: {stderr}");
}

#[test]
fn hash_key_prints_a_digest_the_config_accepts() {
    let mut child = std::process::Command::new(BIN)
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"my-service-key\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let digest = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let tally = Setup::new().config(&format!("[auth]\nservice_keys = [\"{digest}\"]\n")).start();
    assert_eq!(tally.client().with_key("my-service-key").get("/v1/users/x").status, 404);
    assert_eq!(tally.client().with_key(&digest).get("/v1/users/x").status, 401, "the digest itself is not a key");
}
