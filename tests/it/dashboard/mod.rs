//! The dashboard at /admin over HTTP, as a browser would use it (cookies, forms, redirects):
//! sign-in and the session cookie, CSRF refusals that change nothing, actions audited under
//! the key's name, the numbers the JSON API gives, escaping and empty states. browser.rs does
//! the same through real headless Chromium. accounts.rs: accounts, overrides and grants.

mod accounts;

use crate::support::{
    ADMIN_KEY, Client, Reply, SERVICE_KEY, Setup, Tally, seed_six_users, start_with_keys, track, usage,
};
use chrono::{Datelike, Duration, Utc};
use serde_json::{Value, json};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn api(tally: &Tally) -> Client {
    tally.client().with_key(ADMIN_KEY)
}

fn body(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

fn set_cookies(reply: &Reply) -> Vec<&str> {
    reply.headers.iter().filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect()
}

/// The `name=value` pair of the Set-Cookie for `name`.
fn cookie_pair(reply: &Reply, name: &str) -> Option<String> {
    set_cookies(reply)
        .into_iter()
        .find(|cookie| cookie.starts_with(&format!("{name}=")))
        .map(|cookie| cookie.split(';').next().unwrap_or_default().to_owned())
}

/// The value of the first `name="csrf"` hidden field in a page.
fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("the page has a csrf field") + 19;
    html[start..].split('"').next().unwrap_or_default().to_owned()
}

fn encode(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

/// A browser-like visitor: one cookie jar entry for the session.
struct Visitor {
    client: Client,
    cookie: String,
}

impl Visitor {
    fn get(&mut self, path: &str) -> Reply {
        let cookie = self.cookie.clone();
        self.client.request("GET", path, &[("Cookie", &cookie)], None)
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let cookie = self.cookie.clone();
        self.client.request("POST", path, &[("Cookie", &cookie), FORM], Some(encode(fields).as_bytes()))
    }

    /// Posts the form with this session's CSRF token (read from `page`).
    fn submit(&mut self, page: &str, path: &str, fields: &[(&str, &str)]) -> Reply {
        let html = body(&self.get(page));
        let csrf = csrf_of(&html);
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all)
    }
}

/// Opens the login page and signs in with `key`; returns the reply to the POST.
fn sign_in_reply(tally: &Tally, key: &str) -> Reply {
    let mut client = tally.client();
    let page = client.get("/admin/login");
    assert_eq!(page.status, 200);
    let login_cookie = cookie_pair(&page, "tally_login").expect("the login form sets its CSRF cookie");
    let csrf = csrf_of(&body(&page));
    let form = encode(&[("csrf", &csrf), ("key", key)]);
    client.request("POST", "/admin/login", &[("Cookie", &login_cookie), FORM], Some(form.as_bytes()))
}

fn sign_in(tally: &Tally) -> Visitor {
    let reply = sign_in_reply(tally, ADMIN_KEY);
    assert_eq!((reply.status, reply.header("location")), (303, Some("/admin")), "{}", body(&reply));
    let cookie = cookie_pair(&reply, "tally_session").expect("a session cookie");
    Visitor { client: tally.client(), cookie }
}

/// The exact number a card shows (its `data-raw`).
fn card(html: &str, metric: &str) -> u64 {
    let start =
        html.find(&format!("class=\"card\" data-metric=\"{metric}\"")).unwrap_or_else(|| panic!("{metric} card"));
    let raw = &html[start..];
    let raw = &raw[raw.find("data-raw=\"").expect("data-raw") + 10..];
    raw.split('"').next().unwrap().parse().unwrap()
}

/// The audit log, less the cleanup Tally runs by itself at startup.
fn audit(client: &mut Client) -> Vec<Value> {
    let entries = client.get("/v1/admin/audit?limit=500").json()["entries"].as_array().unwrap().clone();
    entries.into_iter().filter(|row| row["actor"] != "scheduled-cleanup").collect()
}

#[test]
fn signing_in_sets_a_strict_http_only_session_cookie_and_a_wrong_key_sets_none() {
    let tally = start_with_keys();
    let anonymous = tally.client().get("/admin");
    assert_eq!((anonymous.status, anonymous.header("location")), (303, Some("/admin/login")));

    let wrong = sign_in_reply(&tally, "not-the-key");
    assert_eq!(wrong.status, 401);
    assert!(set_cookies(&wrong).is_empty(), "{:?}", wrong.headers);
    assert!(body(&wrong).contains("That is not an admin key."));
    let service = sign_in_reply(&tally, SERVICE_KEY);
    assert_eq!((service.status, cookie_pair(&service, "tally_session")), (401, None), "a service key cannot sign in");

    // Without the login form's cookie (a form posted from elsewhere) nothing happens.
    let forged = tally.client().request(
        "POST",
        "/admin/login",
        &[FORM],
        Some(encode(&[("csrf", &"0".repeat(64)), ("key", ADMIN_KEY)]).as_bytes()),
    );
    assert_eq!((forged.status, cookie_pair(&forged, "tally_session")), (403, None));

    let reply = sign_in_reply(&tally, ADMIN_KEY);
    assert_eq!((reply.status, reply.header("location")), (303, Some("/admin")));
    let session = set_cookies(&reply).into_iter().find(|c| c.starts_with("tally_session=")).expect("session cookie");
    let token = session.split(';').next().unwrap().trim_start_matches("tally_session=");
    assert_eq!(token.len(), 64, "{session}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=28800"] {
        assert!(session.split("; ").any(|part| part == attribute), "{attribute} missing from {session}");
    }

    let mut visitor = Visitor { client: tally.client(), cookie: format!("tally_session={token}") };
    let page = visitor.get("/admin");
    assert_eq!(page.status, 200, "{}", body(&page));
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(body(&page).contains("<span class=\"actor\" title=\"Signed in with this admin key\">ops</span>"));
    assert_eq!(visitor.get("/admin/login").header("location"), Some("/admin"), "signed in already");

    let made_up =
        tally.client().request("GET", "/admin", &[("Cookie", &format!("tally_session={}", "a".repeat(64)))], None);
    assert_eq!(made_up.status, 303);
}

#[test]
fn signing_out_ends_the_session_and_clears_the_cookie() {
    let tally = start_with_keys();
    let mut visitor = sign_in(&tally);
    let refused = visitor.post("/admin/logout", &[]);
    assert_eq!(refused.status, 403, "signing out is a form too");
    assert_eq!(visitor.get("/admin").status, 200, "a refused logout changed nothing");

    let out = visitor.submit("/admin", "/admin/logout", &[]);
    assert_eq!((out.status, out.header("location")), (303, Some("/admin/login?signed_out=1")));
    let cleared = set_cookies(&out).into_iter().find(|c| c.starts_with("tally_session=")).expect("cleared cookie");
    assert!(cleared.starts_with("tally_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let after = visitor.get("/admin");
    assert_eq!((after.status, after.header("location")), (303, Some("/admin/login")), "the old cookie is worthless");
    assert!(body(&tally.client().get("/admin/login?signed_out=1")).contains("You are signed out."));
}

#[test]
fn the_overview_shows_the_numbers_the_api_gives() {
    let tally = start_with_keys();
    let mut client = api(&tally);
    seed_six_users(&mut client);
    let last_month = Utc::now().with_day(1).unwrap() - Duration::days(1);
    let old = usage("old", "prompts", json!({ "amount": 9, "timestamp": last_month.to_rfc3339() }));
    assert_eq!(client.post("/v1/track", &old).status, 200);
    let api_summary = client.get("/v1/admin/usage").json();

    let mut visitor = sign_in(&tally);
    let html = body(&visitor.get("/admin"));
    for metric in ["prompts", "e2e_runs", "bytes_out"] {
        assert_eq!(card(&html, metric), api_summary["totals"][metric].as_u64().unwrap(), "{metric}");
    }
    assert_eq!(card(&html, "prompts"), 12_725);
    assert_eq!(card(&html, "active_users"), api_summary["active_users"].as_u64().unwrap());
    assert_eq!(card(&html, "revenue_cents"), api_summary["revenue_cents_total"].as_u64().unwrap());
    assert!(html.contains("data-raw=\"1500000000\">1.5 GB</span>"), "bytes in human units");
    assert!(html.contains("2 users</tspan> · 33%"), "teams in the plan chart");
    assert!(html.contains("98.00 USD</tspan> · 84%"), "teams' revenue estimate: 98.00 of 117.00, in the currency");
    let order: Vec<usize> = ["/admin/users/sol", "/admin/users/tim", "/admin/users/ann", "/admin/users/bob"]
        .iter()
        .map(|path| html.find(&format!("href=\"{path}\"")).unwrap_or_else(|| panic!("{path} in the top users")))
        .collect();
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "top users by prompts: {order:?}");
    assert!(!html.contains("href=\"/admin/users/old\""), "last month's user is not in this month's top");

    let by_bytes = body(&visitor.get("/admin?metric=bytes_out"));
    let first_row = by_bytes.split("<tbody><tr>").nth(1).expect("a top users table");
    assert!(first_row.starts_with("<th scope=\"row\"><a class=\"mono\" href=\"/admin/users/tim\">"), "{first_row}");
    assert!(!by_bytes.contains("href=\"/admin/users/sol\""), "sol sent no bytes");
    let period = last_month.format("%Y-%m").to_string();
    let old_page = body(&visitor.get(&format!("/admin?period={period}")));
    assert_eq!((card(&old_page, "prompts"), card(&old_page, "active_users")), (9, 1));
    assert!(old_page.contains(&format!("<g data-period=\"{period}\"><rect class=\"bar now\"")), "chart ends there");
}

#[test]
fn a_fresh_database_shows_empty_states() {
    let tally = start_with_keys();
    let mut visitor = sign_in(&tally);
    let period = Utc::now().format("%Y-%m").to_string();
    let html = body(&visitor.get("/admin"));
    assert!(html.contains(&format!("No usage recorded in {period} yet.")), "{html}");
    assert!(html.contains("No users yet."));
    assert_eq!((card(&html, "prompts"), card(&html, "active_users")), (0, 0));
    // The startup cleanup runs on its own thread; wait (bounded) for its audit row.
    let shows_cleanup = (0..500).any(|_| {
        let found = body(&visitor.get("/admin/maintenance")).contains("<td>scheduled-cleanup</td>");
        if !found {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        found
    });
    assert!(shows_cleanup, "the startup cleanup is in the log");
    assert!(body(&visitor.get("/admin/maintenance?before=1")).contains("No older entries."));
    let unknown = visitor.get("/admin/users/nobody");
    assert_eq!(unknown.status, 404);
    assert!(body(&unknown).contains("no user &quot;nobody&quot; has been seen"), "{}", body(&unknown));
}

#[test]
fn the_user_page_shows_plan_usage_against_limits_and_history() {
    let tally = start_with_keys();
    let mut client = api(&tally);
    client.put("/v1/users/sol", &json!({ "plan": "solo" }));
    track(&mut client, "sol", "prompts", 12_000);
    track(&mut client, "sol", "bytes_out", 2_500_000);
    let mut visitor = sign_in(&tally);
    let found = visitor.get("/admin/users?user_id=+sol+");
    assert_eq!(found.header("location"), Some("/admin/users/sol"), "the search box goes to the user");
    let html = body(&visitor.get("/admin/users/sol"));
    assert!(html.contains("<span class=\"badge\" data-plan=\"solo\">solo</span>"), "{html}");
    assert!(html.contains("data-raw=\"12000\">12,000</span> <span class=\"sub\">of 10,000 prompts</span>"));
    assert!(html.contains("120% of the soft limit") && html.contains("over the soft limit"));
    assert!(html.contains("data-raw=\"2500000\">2.5 MB</span>"));
    assert!(html.contains("<option value=\"solo\" selected>"), "the plan form starts at the current plan");
    let period = Utc::now().format("%Y-%m").to_string();
    assert!(html.contains(&format!(
        "<tr data-period=\"{period}\"><th scope=\"row\">{period}</th><td class=\"num\" data-raw=\"12000\">"
    )));
    assert_eq!(html.matches("<tr data-period=").count(), 12, "a year of history");

    client.put("/v1/users/sam", &json!({ "plan": "solo" }));
    track(&mut client, "sam", "prompts", 30);
    let small = body(&visitor.get("/admin/users/sam"));
    assert!(small.contains("0.3% of the soft limit"), "30 of 10,000 is not 0%: {small}");
    assert!(small.contains("<span style=\"width:2.0%\"></span>"), "a small share stays visible");
}

#[test]
fn a_rate_grant_used_up_for_now_shows_the_grant_and_when_it_frees() {
    let tally = start_with_keys();
    let mut client = api(&tally);
    client.put("/v1/users/sol", &json!({ "plan": "solo" }));
    client.put("/v1/users/tia", &json!({ "plan": "trial" }));
    let snapshot = json!({ "user_id": "sol", "feature": "active_project_snapshots" });
    assert_eq!(client.post("/v1/features/use", &snapshot).status, 200, "solo grants one a minute");
    let mut visitor = sign_in(&tally);
    let html = body(&visitor.get("/admin/users/sol"));
    let row = html.split("<th scope=\"row\">active_project_snapshots</th>").nth(1).expect("the feature's row");
    let row = row.split("</tr>").next().unwrap();
    assert!(row.starts_with("<td><span class=\"badge warn\">1 per minute</span></td>"), "{row}");
    let seconds: u64 = row
        .strip_prefix("<td><span class=\"badge warn\">1 per minute</span></td><td class=\"num\">0 left for ")
        .and_then(|rest| rest.strip_suffix(" s</td>"))
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("0 left for some seconds: {row}"));
    assert!((1..=60).contains(&seconds), "the use frees its slot within the minute: {seconds}");
    assert!(!html.contains("not granted"), "{html}");
    assert!(html.contains("<th scope=\"row\">git_export</th><td><span class=\"badge ok\">granted</span>"));

    let trial = body(&visitor.get("/admin/users/tia"));
    let row = trial.split("<th scope=\"row\">active_project_snapshots</th>").nth(1).expect("the feature's row");
    assert!(row.starts_with("<td><span class=\"badge plain\">needs solo</span></td><td class=\"num\">0</td>"), "{row}");
}

#[test]
fn forms_without_the_sessions_csrf_token_are_refused_and_change_nothing() {
    let tally = start_with_keys();
    let mut client = api(&tally);
    track(&mut client, "ann", "prompts", 4);
    let mut visitor = sign_in(&tally);
    let other_session = csrf_of(&body(&sign_in(&tally).get("/admin")));
    let attempts: [(&str, &[(&str, &str)]); 5] = [
        ("/admin/users/ann/plan", &[("plan", "teams")]),
        ("/admin/users/ann/reset", &[("metric", "")]),
        ("/admin/users/ann/erase", &[("confirm", "ann")]),
        ("/admin/maintenance/cleanup", &[("retention_months", "1")]),
        ("/admin/logout", &[]),
    ];
    for (path, fields) in attempts {
        for csrf in [None, Some("wrong"), Some(other_session.as_str())] {
            let mut all: Vec<(&str, &str)> = fields.to_vec();
            if let Some(csrf) = csrf {
                all.push(("csrf", csrf));
            }
            let reply = visitor.post(path, &all);
            assert_eq!(reply.status, 403, "{path} with csrf {csrf:?}");
            assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"));
            assert!(body(&reply).contains("nothing was changed"));
        }
    }
    let ann = client.get("/v1/users/ann").json();
    assert_eq!((ann["plan"].as_str(), ann["usage"]["prompts"]["used"].as_u64()), (Some("trial"), Some(4)));
    assert!(audit(&mut client).is_empty(), "no action ran");
    assert_eq!(visitor.get("/admin").status, 200, "still signed in");
}

#[test]
fn actions_through_the_forms_are_audited_under_the_keys_name() {
    let tally = start_with_keys();
    let mut client = api(&tally);
    track(&mut client, "ann", "prompts", 4);
    let mut visitor = sign_in(&tally);

    let changed = visitor.submit("/admin/users/ann", "/admin/users/ann/plan", &[("plan", "teams")]);
    assert_eq!((changed.status, changed.header("location")), (303, Some("/admin/users/ann")));
    assert_eq!(client.get("/v1/users/ann").json()["plan"], "teams");
    let shown = body(&visitor.get("/admin/users/ann"));
    assert!(shown.contains("<p class=\"flash ok\" role=\"status\">ann is now on teams.</p>"), "{shown}");
    assert!(!body(&visitor.get("/admin/users/ann")).contains("class=\"flash"), "a flash shows once");

    let reset = visitor.submit("/admin/users/ann", "/admin/users/ann/reset", &[("metric", "")]);
    assert_eq!(reset.status, 303);
    assert_eq!(client.get("/v1/users/ann").json()["usage"]["prompts"]["used"], 0);
    assert!(body(&visitor.get("/admin/users/ann")).contains("it was Prompts 4, E2E runs 0, Bytes out 0 B."));

    let cleanup = visitor.submit("/admin/maintenance", "/admin/maintenance/cleanup", &[("retention_months", "6")]);
    assert_eq!((cleanup.status, cleanup.header("location")), (303, Some("/admin/maintenance")));
    assert!(body(&visitor.get("/admin/maintenance")).contains("Cleanup done: deleted 0 counters"));
    let bad = visitor.submit("/admin/maintenance", "/admin/maintenance/cleanup", &[("retention_months", "0")]);
    assert_eq!(bad.status, 303);
    assert!(
        body(&visitor.get("/admin/maintenance")).contains("retention_months must be a whole number from 1 to 1200")
    );

    let confirm_page = visitor.get("/admin/users/ann/erase");
    assert!(body(&confirm_page).contains("Type <code>ann</code> to confirm"));
    let mistyped = visitor.submit("/admin/users/ann/erase", "/admin/users/ann/erase", &[("confirm", "anne")]);
    assert_eq!(mistyped.header("location"), Some("/admin/users/ann/erase"));
    assert_eq!(client.get("/v1/users/ann").status, 200, "a mistyped confirmation erases nothing");
    let erased = visitor.submit("/admin/users/ann/erase", "/admin/users/ann/erase", &[("confirm", "ann")]);
    assert_eq!((erased.status, erased.header("location")), (303, Some("/admin")));
    assert_eq!(client.get("/v1/users/ann").status, 404);

    let rows = audit(&mut client);
    let actions: Vec<(&str, &str)> =
        rows.iter().map(|row| (row["action"].as_str().unwrap(), row["actor"].as_str().unwrap())).collect();
    assert_eq!(
        actions,
        [("user_erased", "ops"), ("cleanup", "ops"), ("usage_reset", "ops"), ("plan_changed", "ops")],
        "the refused cleanup and the mistyped erase are not there"
    );
    let log = body(&visitor.get("/admin/maintenance"));
    assert!(log.contains("trial → teams") && log.contains("kept 6 months"), "{log}");

    // Neither the key that signed in nor the session cookie reached the server's log or the
    // audit log.
    let token = visitor.cookie.trim_start_matches("tally_session=").to_owned();
    let server_log = std::fs::read_to_string(tally.dir.path().join("stderr.log")).unwrap();
    let audit_text = serde_json::to_string(&rows).unwrap();
    for secret in [ADMIN_KEY, token.as_str()] {
        assert!(!server_log.contains(secret) && !audit_text.contains(secret), "a secret leaked: {secret}");
    }
}

#[test]
fn export_downloads_the_users_json() {
    let tally = start_with_keys();
    let mut client = api(&tally);
    track(&mut client, "ann", "prompts", 4);
    let mut visitor = sign_in(&tally);
    let reply = visitor.get("/admin/users/ann/export");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("content-disposition"), Some("attachment; filename=\"tally-user-ann.json\""));
    let mut exported = reply.json();
    let mut from_api = client.get("/v1/admin/users/ann/export").json();
    exported["exported_at"] = Value::Null;
    from_api["exported_at"] = Value::Null;
    assert_eq!(exported, from_api);
    assert_eq!(visitor.get("/admin/users/ghost/export").status, 404);
}

#[test]
fn values_from_the_request_are_escaped() {
    let tally = start_with_keys();
    let mut visitor = sign_in(&tally);
    let reply = visitor.get("/admin?period=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert_eq!(reply.status, 400);
    let html = body(&reply);
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<script>"));

    let search = visitor.get("/admin/users?user_id=%3Cimg+src%3Dx%3E");
    assert_eq!(search.status, 400);
    assert!(body(&search).contains("user_id contains '&lt;'"), "{}", body(&search));

    // A refusal message that repeats the form's value comes back as a flash, escaped.
    api(&tally).put("/v1/users/ann", &json!({ "plan": "trial" }));
    let refused = visitor.submit("/admin/users/ann", "/admin/users/ann/plan", &[("plan", "<b onmouseover=x>gold</b>")]);
    assert_eq!(refused.status, 303);
    let page = body(&visitor.get("/admin/users/ann"));
    assert!(page.contains("plan &quot;&lt;b onmouseover=x&gt;gold&lt;/b&gt;&quot; is not configured"), "{page}");
    assert!(!page.contains("<b onmouseover"));
}

#[test]
fn the_audit_log_pages() {
    let tally = start_with_keys();
    let mut client = api(&tally);
    for plan in ["solo", "teams"].iter().cycle().take(53) {
        assert_eq!(client.post("/v1/admin/users/ann/plan", &json!({ "plan": plan })).status, 200);
    }
    let mut visitor = sign_in(&tally);
    let first = body(&visitor.get("/admin/maintenance"));
    assert_eq!(first.matches("<tr data-id=").count(), 50);
    let newest = audit(&mut client)[0]["id"].as_i64().unwrap();
    assert!(first.contains(&format!("<tr data-id=\"{newest}\">")));
    let older = first.split("href=\"/admin/maintenance?before=").nth(1).expect("an Older link");
    let before = older.split('"').next().unwrap();
    let second = body(&visitor.get(&format!("/admin/maintenance?before={before}")));
    let all = client.get("/v1/admin/audit?limit=500").json()["entries"].as_array().unwrap().len();
    assert_eq!(all, 54, "53 plan changes and the startup cleanup");
    assert_eq!(second.matches("<tr data-id=").count(), all - 50);
    assert!(second.contains("← Newest") && !second.contains("Older →"));
    assert_eq!(visitor.get("/admin/maintenance?before=x").status, 400);
}

#[test]
fn open_access_lets_everyone_in_and_still_checks_csrf() {
    let tally = Setup::new().start();
    let mut anyone = Visitor { client: tally.client(), cookie: String::new() };
    let page = anyone.get("/admin");
    assert_eq!(page.status, 200);
    assert!(body(&page).contains("open access"));
    assert_eq!(anyone.get("/admin/login").header("location"), Some("/admin"));
    anyone.client.put("/v1/users/ann", &json!({ "plan": "trial" }));
    assert_eq!(anyone.post("/admin/users/ann/plan", &[("plan", "teams")]).status, 403, "a forged form");
    let changed = anyone.submit("/admin/users/ann", "/admin/users/ann/plan", &[("plan", "teams")]);
    assert_eq!(changed.status, 303);
    let rows = audit(&mut anyone.client);
    assert_eq!((rows[0]["action"].as_str(), rows[0]["actor"].as_str()), (Some("plan_changed"), Some("open-access")));
}

#[test]
fn a_session_outlives_a_restart_and_is_valid_on_every_node() {
    let tally = start_with_keys();
    let mut visitor = sign_in(&tally);
    let tally = tally.restart();
    visitor.client = tally.client();
    assert_eq!(visitor.get("/admin").status, 200, "the login is stored, not held in the process");
    if !crate::backend::is_postgres() {
        return;
    }
    // Behind a load balancer: signed in on one node, acting on another, the flash shown by a
    // third (PostgreSQL: several nodes on one database).
    let keys = format!(
        "[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n"
    );
    let second = Setup::new().config(&keys).start_sharing(&tally);
    let third = Setup::new().config(&keys).start_sharing(&tally);
    visitor.client = second.client();
    let changed = visitor.submit("/admin/users/roamer", "/admin/users/roamer/plan", &[("plan", "solo")]);
    assert_eq!(changed.status, 303, "{}", body(&changed));
    visitor.client = third.client();
    let page = visitor.get(changed.header("location").unwrap());
    assert_eq!(page.status, 200);
    assert!(body(&page).contains("solo"), "the flash and the change reach the third node");
    assert_eq!(audit(&mut api(&third))[0]["actor"], "ops");
}
