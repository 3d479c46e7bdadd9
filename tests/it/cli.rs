//! The command line: `check-config` refusals exit 2 and name every key; `--version`; the
//! built-in default config; `--listen` and `--database` over the environment over the file;
//! `backup`'s refusal to overwrite.

use crate::support::{BIN, Setup, Tally, run_tally};
use std::process::Command;
use std::sync::Arc;

fn check_config(text: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tally.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = std::process::Command::new(crate::support::BIN);
    command.args(["check-config", "--config"]).arg(&path).current_dir(dir.path());
    crate::support::without_settings_env(&mut command);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn each_refusal_exits_2_and_names_the_file_and_key() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("[server]\nlistn = \"127.0.0.1:1\"\n", &[], "server.listn"),
        (
            "[plans.trial]\nprice_cents = 0\nlimits = { prompts = \"unlimited\" }\nfeatures = {}\n",
            &[],
            "plans.trial.limits.e2e_runs",
        ),
        ("[usage]\ndefault_plan = \"gold\"\n", &[], "usage.default_plan"),
        (
            "[metrics]\nm = { unit = \"u\" }\n[usage]\ndefault_plan = \"a\"\n[plans.a]\nprice_cents = 0\nlimits = { m = { limit = -5, enforcement = \"hard\" } }\nfeatures = {}\n",
            &[],
            "plans.a.limits.m.limit",
        ),
        (
            "[auth]\nservice_keys = [\"same-key-in-both\"]\nadmin_keys = [\"same-key-in-both\"]\n",
            &[],
            "auth.admin_keys",
        ),
        ("[auth]\nservice_keys = [\"\"]\n", &[], "auth.service_keys[0]"),
        ("[auth]\nadmin_keys = [\"long-enough-admin-key\", \"tiny-key\"]\n", &[], "auth.admin_keys[1]"),
        ("[server]\nlisten = \"0.0.0.0:8080\"\n", &[], "server.listen"),
        ("", &[("USAGE_TRACKING_ENABLED", "maybe")], "USAGE_TRACKING_ENABLED"),
        ("", &[("ADMIN_USER_IDS", "ok,not ok")], "ADMIN_USER_IDS"),
        ("[usage]\nalert_thresholds = [0.8, 80]\n", &[], "usage.alert_thresholds[1]"),
        ("", &[("TALLY_LISTEN", "0.0.0.0:8080")], "TALLY_LISTEN"),
        ("", &[("TALLY_DATABASE", "a.db"), ("TALLY_DATABASE_URL", "postgres://h/d")], "TALLY_DATABASE_URL"),
    ];
    for (text, env, key) in cases {
        let (code, stderr) = check_config(text, env);
        assert_eq!(code, 2, "{key}: {stderr}");
        assert!(stderr.contains(&format!("`{key}`")), "stderr should name {key}: {stderr}");
        assert!(stderr.contains("fix:"), "stderr should say how to fix it: {stderr}");
        assert!(!stderr.contains("tiny-key"), "a refused key is named by position, never by value: {stderr}");
        if env.is_empty() {
            assert!(stderr.contains("tally.toml"), "stderr should name the file: {stderr}");
        }
    }
}

#[test]
fn check_config_accepts_the_example_and_version_prints() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let (status, stdout, stderr) = run_tally(&["check-config", "--config", example], dir.path());
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("trial < solo < teams"), "{stdout}");
    let (status, stdout, _) = run_tally(&["check-config"], dir.path());
    assert!(status.success());
    assert!(stdout.contains("built-in default"), "{stdout}");
    let (status, stdout, _) = run_tally(&["--version"], dir.path());
    assert!(status.success());
    assert_eq!(stdout.trim(), format!("tally {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_missing_config_file_is_a_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run_tally(&["check-config", "--config", "nope.toml"], dir.path());
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("nope.toml"), "{stderr}");
}

#[test]
fn check_config_reports_every_refusal_of_a_file() {
    let text = "[server]\nmax_connections = 0\n[auth]\nadmin_keys = [\"tiny-key\"]\n\
                [usage]\nalert_thresholds = [0.8, 80]\ndefault_plan = \"gold\"\n";
    let (code, stderr) = check_config(text, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("4 problems"), "{stderr}");
    for key in ["server.max_connections", "auth.admin_keys[0]", "usage.alert_thresholds[1]", "usage.default_plan"] {
        assert!(stderr.contains(&format!("`{key}`")), "stderr should name {key}: {stderr}");
    }
    assert_eq!(stderr.matches("fix:").count(), 4, "each refusal says how to fix it: {stderr}");
}

/// Starts `tally [ARGS] serve --config FILE` on a SQLite file named `tally.db` by the file.
fn serve_with(args: &[&str], setup: Setup, dir: &Arc<tempfile::TempDir>) -> Tally {
    let mut command = Command::new(BIN);
    command.args(args);
    Tally::start_with_command(setup.sqlite(), Arc::clone(dir), command)
}

#[test]
fn listen_and_database_come_from_the_flag_over_the_environment_over_the_file() {
    // The file says 127.0.0.1:0 and tally.db; every address in 127/8 is loopback, so the
    // address on the first line shows which setting won.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let file_db = dir.path().join("tally.db");
    let env_db = dir.path().join("env.db");
    let flag_db = dir.path().join("flag.db");
    let env = || Setup::new().env("TALLY_LISTEN", "127.0.0.3:0").env("TALLY_DATABASE", env_db.to_str().unwrap());

    let mut from_env = serve_with(&[], env(), &dir);
    assert_eq!(from_env.addr.ip().to_string(), "127.0.0.3");
    assert_eq!(from_env.client().get("/readyz").status, 200);
    assert!(env_db.is_file() && !file_db.exists(), "TALLY_DATABASE replaces the file's path");
    assert!(from_env.signal_and_wait("TERM").success());

    let flags = ["--listen", "127.0.0.2:0", "--database", flag_db.to_str().unwrap()];
    let mut from_flags = serve_with(&flags, env(), &dir);
    assert_eq!(from_flags.addr.ip().to_string(), "127.0.0.2", "--listen beats TALLY_LISTEN");
    assert_eq!(from_flags.client().get("/readyz").status, 200);
    assert!(flag_db.is_file(), "--database beats TALLY_DATABASE");
    assert!(from_flags.signal_and_wait("TERM").success());
    assert!(!file_db.exists());

    // The subcommands that open the database take the flag too.
    let (status, stdout, stderr) = run_tally(&["migrate", "--database", "other.db"], dir.path());
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("other.db"), "{stdout}");
    assert!(dir.path().join("other.db").is_file());
}

#[test]
fn a_bad_listen_flag_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run_tally(&["check-config", "--listen", "localhost"], dir.path());
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("command line: `--listen`"), "{stderr}");
}

#[test]
fn backup_to_an_existing_file_names_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run_tally(&["migrate", "--database", "live.db"], dir.path());
    assert!(status.success(), "{stderr}");
    let existing = dir.path().join("bk.db");
    std::fs::write(&existing, b"").unwrap();
    let (status, _, stderr) = run_tally(&["backup", "--database", "live.db", existing.to_str().unwrap()], dir.path());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot back up to {}", existing.display())), "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(!stderr.contains("cannot open the database"), "the live database is fine: {stderr}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"", "the existing file is untouched");

    let (status, stdout, stderr) = run_tally(&["backup", "--database", "live.db", "new.db"], dir.path());
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("integrity ok"), "{stdout}");
}
