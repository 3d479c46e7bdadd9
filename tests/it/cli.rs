//! The command line: `check-config` refusals exit 2 and name the key; `--version`; the
//! built-in default config.

use crate::support::run_tally;

fn check_config(text: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tally.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = std::process::Command::new(crate::support::BIN);
    command.args(["check-config", "--config"]).arg(&path).current_dir(dir.path());
    command.env_remove("ADMIN_USER_IDS").env_remove("USAGE_TRACKING_ENABLED").env_remove("TELEMETRY_ENABLED");
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
