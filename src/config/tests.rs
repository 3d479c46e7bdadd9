//! Config validation: each refusal names its key; the defaults load as documented.

use super::*;
use crate::domain::plan::{Enforcement, Limit};

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml("test.toml", text, &no_env)
}

/// The first (here: the only) refusal of `text`.
fn refusal(text: &str) -> ConfigError {
    let mut refused = load(text).expect_err("the config should be refused").errors;
    assert_eq!(refused.len(), 1, "{refused:?}");
    refused.remove(0)
}

#[test]
fn built_in_default_has_the_three_ranked_plans() {
    let config = load("").unwrap();
    let names: Vec<_> = config.rules.catalog.plans().iter().map(|plan| plan.name.as_str()).collect();
    assert_eq!(names, ["trial", "solo", "teams"]);
    let trial = config.rules.catalog.default_plan();
    assert_eq!(trial.name, "trial");
    assert_eq!(trial.limit("prompts"), Limit::Hard(30));
    assert_eq!(config.rules.catalog.find_plan("solo").unwrap().limit("prompts").enforcement(), Enforcement::Soft);
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    let DatabaseBackend::Sqlite(sqlite) = &config.database.backend else { panic!("the default is SQLite") };
    assert_eq!(sqlite.synchronous, Synchronous::Full);
    assert_eq!(config.rules.catalog.features(), ["git_export", "multi_user", "active_project_snapshots"]);
}

#[test]
fn merges_a_partial_file_over_the_defaults() {
    let config = load("[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    assert_eq!(config.server.listen.port(), 0);
    assert_eq!(config.server.max_connections, 4096);
}

#[test]
fn unknown_key_is_named_with_its_section() {
    let error = refusal("[server]\nlistn = \"127.0.0.1:1\"\n");
    assert_eq!(error.key, "server.listn");
    assert!(error.problem.contains("unknown field"), "{error}");
    let error = refusal("[serverr]\n");
    assert_eq!(error.key, "serverr");
}

#[test]
fn plan_missing_a_metric_is_refused() {
    let error = refusal(
        "[plans.trial]\nprice_cents = 0\nlimits = { prompts = \"unlimited\", e2e_runs = \"unlimited\" }\nfeatures = {}\n",
    );
    assert_eq!(error.key, "plans.trial.limits.bytes_out");
    assert!(error.fix.contains("bytes_out"), "{error}");
}

#[test]
fn plan_missing_a_feature_is_refused() {
    let error = refusal(
        "[usage]\ndefault_plan = \"a\"\n[metrics]\nm = { unit = \"u\" }\n\
         [plans.a]\nprice_cents = 0\nlimits = { m = \"unlimited\" }\nfeatures = { x = true }\n\
         [plans.b]\nprice_cents = 1\nlimits = { m = \"unlimited\" }\nfeatures = {}\n",
    );
    assert_eq!(error.key, "plans.b.features.x");
}

#[test]
fn a_feature_may_not_be_named_plan_the_ofrep_flag_of_the_plan() {
    let error = refusal(
        "[usage]\ndefault_plan = \"a\"\n[metrics]\nm = { unit = \"u\" }\n\
         [plans.a]\nprice_cents = 0\nlimits = { m = \"unlimited\" }\nfeatures = { plan = true }\n",
    );
    assert_eq!(error.key, "plans.a.features.plan");
}

#[test]
fn feature_kinds_must_agree_across_plans() {
    let error = refusal(
        "[usage]\ndefault_plan = \"a\"\n[metrics]\nm = { unit = \"u\" }\n\
         [plans.a]\nprice_cents = 0\nlimits = { m = \"unlimited\" }\nfeatures = { x = true }\n\
         [plans.b]\nprice_cents = 1\nlimits = { m = \"unlimited\" }\nfeatures = { x = { per_minute = 2 } }\n",
    );
    assert_eq!(error.key, "plans.b.features.x");
    assert!(error.problem.contains("boolean"), "{error}");
}

#[test]
fn unknown_default_plan_is_refused() {
    let error = refusal("[usage]\ndefault_plan = \"gold\"\n");
    assert_eq!(error.key, "usage.default_plan");
    assert!(error.fix.contains("trial"), "{error}");
}

#[test]
fn negative_limit_is_refused() {
    let error = refusal(
        "[metrics]\nm = { unit = \"u\" }\n[usage]\ndefault_plan = \"a\"\n\
         [plans.a]\nprice_cents = 0\nlimits = { m = { limit = -1, enforcement = \"hard\" } }\nfeatures = {}\n",
    );
    assert_eq!(error.key, "plans.a.limits.m.limit");
}

#[test]
fn malformed_limit_names_the_accepted_shapes() {
    let error = refusal(
        "[metrics]\nm = { unit = \"u\" }\n[usage]\ndefault_plan = \"a\"\n\
         [plans.a]\nprice_cents = 0\nlimits = { m = 5 }\nfeatures = {}\n",
    );
    assert_eq!(error.key, "plans.a.limits.m");
    assert!(error.fix.contains("unlimited"), "{error}");
}

#[test]
fn a_value_of_the_wrong_type_is_described_in_the_files_words() {
    let cases = [
        ("server = 5\n", "server", "must be a table of settings, not the number 5", "[server]"),
        (
            "[plans]\ntrial = 3\n",
            "plans.trial",
            "must be a table of price_cents, limits and features, not the number 3",
            "[plans.trial]",
        ),
        (
            "[server]\nmax_connections = \"many\"\n",
            "server.max_connections",
            "must be a whole number, not the string \"many\"",
            "a whole number",
        ),
        (
            "[server]\nlisten = 8080\n",
            "server.listen",
            "must be a string in double quotes, not the number 8080",
            "double quotes",
        ),
        (
            "[usage]\nalert_thresholds = 0.8\n",
            "usage.alert_thresholds",
            "must be a list in square brackets, not the number 0.8",
            "square brackets",
        ),
        (
            "[usage]\ntracking_enabled = \"yes\"\n",
            "usage.tracking_enabled",
            "must be true or false, not the string \"yes\"",
            "true or false",
        ),
    ];
    for (text, key, problem, fix) in cases {
        let error = refusal(text);
        assert_eq!((error.key.as_str(), error.problem.as_str()), (key, problem), "{text}");
        assert!(error.fix.contains(fix), "{text}: {error}");
        let shown = error.to_string();
        assert!(!shown.contains("Raw") && !shown.contains("i64") && !shown.contains("invalid type"), "{shown}");
    }
}

#[test]
fn key_in_both_lists_is_refused() {
    let error = refusal("[auth]\nservice_keys = [\"key-one-of-sixteen\"]\nadmin_keys = [\"key-one-of-sixteen\"]\n");
    assert_eq!(error.key, "auth.admin_keys");
}

#[test]
fn short_plain_key_is_refused_by_position_without_its_value() {
    let error = refusal("[auth]\nservice_keys = [\"long-enough-key-0001\", \"a\"]\n");
    assert_eq!(error.key, "auth.service_keys[1]");
    assert!(error.problem.contains("16"), "{error}");
    let error = refusal("[auth]\nadmin_keys = [{ name = \"ops\", key = \"fifteen-chars-k\" }]\n");
    assert_eq!(error.key, "auth.admin_keys[0]");
    assert!(!error.to_string().contains("fifteen-chars-k"), "the key leaked into the message: {error}");
    // Sixteen characters pass, and so does a digest whatever the key behind it.
    assert!(load("[auth]\nadmin_keys = [\"sixteen-chars-ok\"]\n").is_ok());
    assert!(
        load("[auth]\nadmin_keys = [\"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\"]\n")
            .is_ok()
    );
}

#[test]
fn timeouts_and_failure_limit_have_defaults_and_ranges() {
    let config = load("").unwrap();
    assert_eq!(config.server.header_timeout, Duration::from_secs(10));
    assert_eq!(config.auth.max_failures_per_minute, 30);
    assert_eq!(refusal("[server]\nheader_timeout_ms = 0\n").key, "server.header_timeout_ms");
    assert_eq!(refusal("[auth]\nmax_failures_per_minute = 0\n").key, "auth.max_failures_per_minute");
}

#[test]
fn empty_key_is_refused() {
    assert_eq!(refusal("[auth]\nservice_keys = [\"  \"]\n").key, "auth.service_keys[0]");
    assert_eq!(refusal("[auth]\nadmin_keys = [{ name = \"ops\", key = \"\" }]\n").key, "auth.admin_keys[0]");
}

#[test]
fn open_auth_off_loopback_is_refused() {
    let error = refusal("[server]\nlisten = \"0.0.0.0:8080\"\n");
    assert_eq!(error.key, "server.listen");
    let config =
        load("[server]\nlisten = \"0.0.0.0:8080\"\n[auth]\nadmin_keys = [\"secret-key-0123456789\"]\n").unwrap();
    assert!(!config.auth.is_open());
}

#[test]
fn keys_are_held_as_digests_with_names() {
    let config = load(
        "[auth]\nservice_keys = [\"plain-key-0123456789\", { name = \"ops\", key = \"second-key-0123456789\" }]\n\
         admin_keys = [\"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\"]\n",
    )
    .unwrap();
    let plain: [u8; 32] = Sha256::digest(b"plain-key-0123456789").into();
    assert_eq!(config.auth.service_keys[0].digest, plain);
    assert_eq!(config.auth.service_keys[0].name, key_fingerprint(&plain));
    assert_eq!(config.auth.service_keys[1].name, "ops");
    let foo: [u8; 32] = Sha256::digest(b"foo").into();
    assert_eq!(config.auth.admin_keys[0].digest, foo);
    assert!(!format!("{config:?}").contains("plain-key"), "keys must not reach Debug output");
}

#[test]
fn env_overrides_switches_and_adds_admin_users() {
    let env = |name: &str| match name {
        "USAGE_TRACKING_ENABLED" => Some("false".to_owned()),
        "ADMIN_USER_IDS" => Some("alice, bob".to_owned()),
        _ => None,
    };
    let config = Config::from_toml("t", "[usage]\nadmin_user_ids = [\"carol\"]\n", &env).unwrap();
    assert!(!config.rules.tracking_enabled);
    assert!(config.rules.telemetry_enabled);
    for user in ["alice", "bob", "carol"] {
        assert!(config.rules.is_bypass(user), "{user}");
    }
}

#[test]
fn unparsable_env_override_is_refused() {
    let env = |name: &str| (name == "TELEMETRY_ENABLED").then(|| "yes".to_owned());
    let error = Config::from_toml("t", "", &env).unwrap_err().errors.remove(0);
    assert_eq!(error.key, "TELEMETRY_ENABLED");
    assert!(error.source.contains("environment"), "{error}");
}

#[test]
fn rate_feature_window_is_bounded() {
    let error = refusal(
        "[metrics]\nm = { unit = \"u\" }\n[usage]\ndefault_plan = \"a\"\n\
         [plans.a]\nprice_cents = 0\nlimits = { m = \"unlimited\" }\nfeatures = { s = { limit = 1, window_secs = 0 } }\n",
    );
    assert_eq!(error.key, "plans.a.features.s.window_secs");
}

#[test]
fn syntax_error_names_the_line() {
    let error = refusal("[server\n");
    assert!(error.problem.contains("line 1"), "{error}");
}

#[test]
fn unknown_key_inside_a_limit_or_feature_is_refused() {
    let error = refusal(
        "[metrics]\nm = { unit = \"u\" }\n[usage]\ndefault_plan = \"a\"\n\
         [plans.a]\nprice_cents = 0\nlimits = { m = { limit = 1, enforcement = \"hard\", bogus = 2 } }\nfeatures = {}\n",
    );
    assert_eq!(error.key, "plans.a.limits.m");
    let error = refusal(
        "[metrics]\nm = { unit = \"u\" }\n[usage]\ndefault_plan = \"a\"\n\
         [plans.a]\nprice_cents = 0\nlimits = { m = \"unlimited\" }\nfeatures = { s = { per_minute = 1, burst = 2 } }\n",
    );
    assert_eq!(error.key, "plans.a.features.s");
}

#[test]
fn webhooks_need_an_http_url_a_secret_and_known_events() {
    let hook = |url: &str, secret: &str, events: &str| {
        format!("[[webhooks]]\nurl = \"{url}\"\nsecret = \"{secret}\"\nevents = {events}\n")
    };
    assert_eq!(refusal(&hook("ftp://example.com/x", "s", "[\"*\"]")).key, "webhooks[0].url");
    assert_eq!(refusal(&hook("https://example.com/x", " ", "[\"*\"]")).key, "webhooks[0].secret");
    assert_eq!(refusal(&hook("https://example.com/x", "s", "[\"limit_exceded\"]")).key, "webhooks[0].events[0]");
    assert_eq!(refusal(&hook("https://example.com/x", "s", "[]")).key, "webhooks[0].events");
    let config = load(&hook("https://example.com/x", "whsec_ZGlzdGluY3RfdmFsdWU=", "[\"limit_exceeded\"]")).unwrap();
    assert_eq!(config.webhooks.len(), 1);
    assert_eq!(config.rules.webhooks[0].url, "https://example.com/x");
    assert!(!format!("{config:?}").contains("whsec_ZGlzdGluY3RfdmFsdWU="), "the secret stays out of Debug output");
    assert_eq!(config.webhooks[0].secrets[0].standard_key, b"distinct_value", "whsec_ is base64-decoded");
}

#[test]
fn webhook_secrets_rotate_and_whsec_must_be_base64() {
    let base = "[[webhooks]]\nurl = \"https://example.com/x\"\nevents = [\"*\"]\n";
    let refused = refusal(&format!("{base}secret = \"whsec_not base64!\"\n"));
    assert_eq!(refused.key, "webhooks[0].secret");
    assert!(refused.problem.contains("base64"), "{}", refused.problem);
    assert_eq!(refusal(&format!("{base}secret = \"a\"\nsecrets = [\"b\"]\n")).key, "webhooks[0].secrets");
    assert_eq!(refusal(&format!("{base}secrets = []\n")).key, "webhooks[0].secret");
    assert_eq!(refusal(&format!("{base}secrets = [\"new\", \"\"]\n")).key, "webhooks[0].secrets[1]");
    let config = load(&format!("{base}secrets = [\"whsec_bmV3\", \"plain-old\"]\n")).unwrap();
    let keys: Vec<&[u8]> = config.webhooks[0].secrets.iter().map(|secret| secret.standard_key.as_slice()).collect();
    assert_eq!(keys, [b"new".as_slice(), b"plain-old".as_slice()]);
}

#[test]
fn telemetry_settings_are_checked() {
    assert_eq!(refusal("[usage]\nalert_thresholds = [0.8, 0]\n").key, "usage.alert_thresholds[1]");
    assert_eq!(refusal("[server]\nlog_format = \"xml\"\n").key, "server.log_format");
    assert_eq!(
        refusal("[webhook_delivery]\nretry_initial_ms = 500\nretry_max_ms = 100\n").key,
        "webhook_delivery.retry_max_ms"
    );
    let config = load("[usage]\nalert_thresholds = [1.0, 0.5, 0.5]\n").unwrap();
    assert_eq!(config.rules.alert_thresholds, [0.5, 1.0]);
    assert_eq!(config.delivery.give_up_after.as_secs(), 86_400);
}

#[test]
fn a_database_url_never_shows_its_password() {
    for (url, shown) in [
        ("postgres://tally:s3cret@db:5432/tally", "postgres://tally:***@db:5432/tally"),
        ("postgres://tally:ab/cd@db/tally", "postgres://tally:***@db/tally"),
        ("postgres://tally:a@b:c@db/tally", "postgres://tally:***@db/tally"),
        ("postgres://tally@db/tally?password=s3cret", "postgres://tally@db/tally"),
        ("postgres://db/tally", "postgres://db/tally"),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
    }
    let config = load("[database]\nurl = \"postgres://tally:ab/cd@db/tally\"\n").unwrap();
    assert!(!format!("{:?} {}", config.database, config.database.describe()).contains("ab/cd"));
}

#[test]
fn alert_thresholds_are_fractions_not_percentages() {
    let error = refusal("[usage]\nalert_thresholds = [0.8, 80]\n");
    assert_eq!(error.key, "usage.alert_thresholds[1]");
    assert!(error.fix.contains("at most 1"), "{error}");
    assert_eq!(refusal("[usage]\nalert_thresholds = [0]\n").key, "usage.alert_thresholds[0]");
    let config = load("[usage]\nalert_thresholds = [1.0, 0.5]\n").unwrap();
    assert_eq!(config.rules.alert_thresholds, [0.5, 1.0]);
}

#[test]
fn reports_every_refusal_of_a_file_not_only_the_first() {
    let text = "[server]\nmax_connections = 0\nheader_timeout_ms = 1\n\
                [auth]\nservice_keys = [\"short\", \"also-short\"]\n\
                [usage]\nalert_thresholds = [0.8, 80]\ndefault_plan = \"gold\"\n\
                [webhook_delivery]\nmax_in_flight = 0\n";
    let errors = load(text).unwrap_err().errors;
    let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.max_connections",
            "server.header_timeout_ms",
            "auth.service_keys[0]",
            "auth.service_keys[1]",
            "usage.alert_thresholds[1]",
            "usage.default_plan",
            "webhook_delivery.max_in_flight",
        ]
    );
    let shown = ConfigErrors { errors }.to_string();
    assert!(shown.starts_with("7 problems\n"), "{shown}");
}

#[test]
fn every_refused_plan_is_reported() {
    let text = "[metrics]\nm = { unit = \"u\" }\n[plans.a]\nprice_cents = 0\nlimits = { m = { limit = -1, enforcement = \"hard\" } }\nfeatures = {}\n\
                [plans.b]\nprice_cents = 1\nlimits = { m = { limit = -2, enforcement = \"hard\" } }\nfeatures = {}\n\
                [usage]\ndefault_plan = \"a\"\n";
    let keys: Vec<String> = load(text).unwrap_err().errors.into_iter().map(|error| error.key).collect();
    assert_eq!(keys, ["plans.a.limits.m.limit", "plans.b.limits.m.limit"]);
}

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
}

#[test]
fn listen_flag_beats_env_beats_file() {
    let file = "[server]\nlisten = \"127.0.0.1:1111\"\n";
    let env = env_of(&[("TALLY_LISTEN", "127.0.0.1:2222")]);
    let flag = Overrides { listen: Some("127.0.0.1:3333".into()), database: None };
    let none = Overrides::default();
    assert_eq!(Config::from_toml_with("t", file, &none, &no_env).unwrap().server.listen.port(), 1111);
    assert_eq!(Config::from_toml_with("t", file, &none, &env).unwrap().server.listen.port(), 2222);
    assert_eq!(Config::from_toml_with("t", file, &flag, &env).unwrap().server.listen.port(), 3333);

    let bad = Overrides { listen: Some("localhost".into()), database: None };
    let error = Config::from_toml_with("t", file, &bad, &env).unwrap_err().errors.remove(0);
    assert_eq!((error.key.as_str(), error.source.as_str()), ("--listen", "command line"));
    let open = env_of(&[("TALLY_LISTEN", "0.0.0.0:8080")]);
    let error = Config::from_toml_with("t", "", &none, &open).unwrap_err().errors.remove(0);
    assert_eq!(error.key, "TALLY_LISTEN", "an open server off loopback names the variable that moved it: {error}");
}

#[test]
fn database_flag_beats_env_beats_file_and_a_url_selects_postgres() {
    let file = "[database]\npath = \"file.db\"\n";
    let none = Overrides::default();
    let sqlite_path = |config: Config| match config.database.backend {
        DatabaseBackend::Sqlite(sqlite) => sqlite.path.display().to_string(),
        DatabaseBackend::Postgres(postgres) => postgres.url.redacted(),
    };
    let url = "postgres://tally:secret@127.0.0.1:5432/tally";
    assert_eq!(sqlite_path(Config::from_toml_with("t", file, &none, &no_env).unwrap()), "file.db");
    let env = env_of(&[("TALLY_DATABASE", "env.db")]);
    assert_eq!(sqlite_path(Config::from_toml_with("t", file, &none, &env).unwrap()), "env.db");
    let env_url = env_of(&[("TALLY_DATABASE_URL", "postgres://tally:secret@127.0.0.1:5432/tally")]);
    assert_eq!(
        sqlite_path(Config::from_toml_with("t", file, &none, &env_url).unwrap()),
        "postgres://tally:***@127.0.0.1:5432/tally",
        "the environment overrides the file's path"
    );
    let flag = Overrides { listen: None, database: Some("flag.db".into()) };
    assert_eq!(sqlite_path(Config::from_toml_with("t", file, &flag, &env_url).unwrap()), "flag.db");
    let flag_url = Overrides { listen: None, database: Some(url.into()) };
    assert_eq!(
        sqlite_path(Config::from_toml_with("t", file, &flag_url, &env).unwrap()),
        "postgres://tally:***@127.0.0.1:5432/tally"
    );

    let both = env_of(&[("TALLY_DATABASE", "env.db"), ("TALLY_DATABASE_URL", "postgres://h/d")]);
    let error = Config::from_toml_with("t", "", &none, &both).unwrap_err().errors.remove(0);
    assert_eq!(error.key, "TALLY_DATABASE_URL");
    let not_url = env_of(&[("TALLY_DATABASE_URL", "tally.db")]);
    let error = Config::from_toml_with("t", "", &none, &not_url).unwrap_err().errors.remove(0);
    assert!(error.fix.contains("TALLY_DATABASE"), "{error}");
}

#[test]
fn rollover_needs_a_capped_limit_and_max_members_a_positive_count() {
    let plan = |limit: &str, extra: &str| {
        format!(
            "[metrics]\nprompts = {{ unit = \"prompts\" }}\n[plans.p]\nprice_cents = 0\n{extra}\
             limits = {{ prompts = {limit} }}\nfeatures = {{}}\n[usage]\ndefault_plan = \"p\"\n"
        )
    };
    let unlimited = plan("{ limit = 0, enforcement = \"unlimited\", rollover_max = 5 }", "");
    assert_eq!(refusal(&unlimited).key, "plans.p.limits.prompts.rollover_max");
    let config =
        load(&plan("{ limit = 100, enforcement = \"soft\", rollover_max = 50 }", "max_members = 3\n")).unwrap();
    let plan_p = config.rules.catalog.find_plan("p").unwrap();
    assert_eq!((plan_p.rollover_max.get("prompts"), plan_p.max_members), (Some(&50), Some(3)));
    assert_eq!(refusal(&plan("\"unlimited\"", "max_members = 0\n")).key, "plans.p.max_members");
    let short = plan("{ limit = 100, enforcement = \"soft\", rollover_max = 50 }", "")
        .replace("[usage]\n", "[usage]\nretention_months = 1\n");
    assert_eq!(refusal(&short).key, "usage.retention_months", "rollover needs the previous month kept");
}

#[test]
fn gateway_rules_load_in_order_and_default_to_allow() {
    let config = load(
        "[gateway]\nuser_header = \"X-Tenant-User\"\n\
         [[gateway.rules]]\nmethod = \"POST\"\npath_prefix = \"/api/prompts\"\nmetric = \"prompts\"\namount = 2\n\
         [[gateway.rules]]\npath_prefix = \"/api/export\"\nfeature = \"git_export\"\n",
    )
    .unwrap();
    let gateway = &config.gateway;
    assert_eq!((gateway.user_header.as_str(), gateway.allow_unmatched), ("x-tenant-user", true));
    use crate::domain::gateway::GatewayAction;
    assert_eq!(gateway.rules[0].action, GatewayAction::Track { metric: "prompts".into(), amount: 2 });
    assert_eq!(gateway.rules[0].method.as_deref(), Some("POST"));
    assert_eq!(gateway.rules[1].action, GatewayAction::Feature { feature: "git_export".into() });
    assert_eq!(gateway.rules[1].method, None);
    assert!(load("").unwrap().gateway.rules.is_empty());
}

#[test]
fn every_bad_gateway_rule_is_named_with_its_fix() {
    let refused = load("[gateway]\ndefault = \"maybe\"\n").expect_err("refused").errors;
    assert_eq!(refused[0].key, "gateway.default");
    let refused = load(
        "[[gateway.rules]]\npath_prefix = \"/a\"\nmetric = \"nope\"\n\
         [[gateway.rules]]\npath_prefix = \"/b\"\nfeature = \"nope\"\n\
         [[gateway.rules]]\npath_prefix = \"/c\"\nmetric = \"prompts\"\nfeature = \"git_export\"\n\
         [[gateway.rules]]\npath_prefix = \"/d\"\n\
         [[gateway.rules]]\nmethod = \"post\"\npath_prefix = \"/e\"\nmetric = \"prompts\"\n\
         [[gateway.rules]]\npath_prefix = \"\"\nmetric = \"prompts\"\n\
         [[gateway.rules]]\npath_prefix = \"/g\"\nfeature = \"git_export\"\namount = 2\n\
         [[gateway.rules]]\npath_prefix = \"/h\"\nmetric = \"prompts\"\namount = 0\n",
    )
    .expect_err("refused")
    .errors;
    let keys: Vec<&str> = refused.iter().map(|error| error.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "gateway.rules[0].metric",
            "gateway.rules[1].feature",
            "gateway.rules[2]",
            "gateway.rules[3]",
            "gateway.rules[4].method",
            "gateway.rules[5].path_prefix",
            "gateway.rules[6].amount",
            "gateway.rules[7].amount",
        ]
    );
    assert!(refused[0].fix.contains("prompts"), "{}", refused[0]);
    assert!(refused.iter().all(|error| !error.fix.is_empty()));
}

#[test]
fn email_needs_an_smtp_url_a_mailbox_and_rules_with_recipients_and_known_events() {
    let email =
        |url: &str, from: &str, rules: &str| format!("[email]\nsmtp_url = \"{url}\"\nfrom = \"{from}\"\n{rules}");
    let rule = |events: &str, to: &str| format!("[[email.alerts]]\nevents = {events}\nto = \"{to}\"\n");
    let ok = "smtps://alerts:s3cret@smtp.example.com:465";
    assert_eq!(refusal(&email("http://smtp.example.com", "a@example.com", "")).key, "email.smtp_url");
    assert_eq!(refusal(&email(ok, "not an address", "")).key, "email.from");
    let bad_to = rule("[\"threshold_crossed\"]", "nobody");
    assert_eq!(refusal(&email(ok, "a@example.com", &bad_to)).key, "email.alerts[0].to");
    let bad_event = rule("[\"limit_exceded\"]", "ops@example.com");
    assert_eq!(refusal(&email(ok, "a@example.com", &bad_event)).key, "email.alerts[0].events[0]");
    assert_eq!(refusal(&email(ok, "a@example.com", &rule("[]", "customer"))).key, "email.alerts[0].events");
    let twice = rule("[\"limit_exceeded\"]", "customer") + &rule("[\"threshold_crossed\"]", "customer");
    assert_eq!(refusal(&email(ok, "a@example.com", &twice)).key, "email.alerts[1].to");

    let rules = rule("[\"threshold_crossed\", \"forecast_exceeds_limit\"]", "customer")
        + &rule("[\"limit_exceeded\"]", "ops@example.com");
    let config = load(&email(ok, "Tally <alerts@example.com>", &rules)).unwrap();
    let mail = config.email.as_ref().unwrap();
    assert_eq!(mail.alerts[0].to, Recipient::Customer);
    assert_eq!(mail.alerts[1].to, Recipient::Address("ops@example.com".into()));
    let routes: Vec<&str> = config.rules.webhooks.iter().map(|route| route.url.as_str()).collect();
    assert_eq!(routes, ["mailto:customer", "mailto:ops@example.com"], "each rule is an outbox route");
    assert!(!format!("{config:?}").contains("s3cret"), "the relay's password stays out of Debug output");
}
