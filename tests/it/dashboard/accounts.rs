//! Accounts, overrides and grants on the dashboard: the account page and list show what the
//! API says, every form changes what it should under the signed-in key's name, and a form
//! without the session's CSRF token or with bad input changes nothing.

use super::{ADMIN_KEY, SERVICE_KEY, Visitor, audit, body, sign_in};
use crate::support::{Client, Setup, Tally, track};
use serde_json::json;

/// trial: 30 prompts (hard), runs unlimited; pool: 100 prompts (hard) shared by up to 5.
const PLANS: &str = "[metrics]\nprompts = { unit = \"prompts\" }\nruns = { unit = \"runs\" }\n\
    [plans.trial]\nprice_cents = 0\nlimits = { prompts = { limit = 30, enforcement = \"hard\" }, runs = \"unlimited\" }\n\
    features = { export = false, snap = { per_minute = 1 } }\n\
    [plans.pool]\nprice_cents = 4900\nmax_members = 5\n\
    limits = { prompts = { limit = 100, enforcement = \"hard\" }, runs = \"unlimited\" }\n\
    features = { export = true, snap = { per_minute = 5 } }\n";

fn start() -> Tally {
    Setup::new()
        .config(&format!(
            "[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n{PLANS}"
        ))
        .start()
}

fn api(tally: &Tally) -> Client {
    tally.client().with_key(ADMIN_KEY)
}

/// Account "acme" on pool with members ann (30 prompts) and bob (10).
fn acme(client: &mut Client) {
    assert_eq!(client.put("/v1/accounts/acme", &json!({ "plan": "pool" })).status, 200);
    for user in ["ann", "bob"] {
        assert_eq!(client.put(&format!("/v1/users/{user}"), &json!({ "account_id": "acme" })).status, 200);
    }
    track(client, "ann", "prompts", 30);
    track(client, "bob", "prompts", 10);
}

/// The `data-` attribute `name` of the usage meter of `metric` (its first occurrence).
fn meter(html: &str, metric: &str, name: &str) -> String {
    let start = html.find(&format!("class=\"metric\" data-metric=\"{metric}\"")).expect("a meter");
    let rest = &html[start..];
    let rest = &rest[rest.find(&format!("{name}=\"")).expect(name) + name.len() + 2..];
    rest.split('"').next().unwrap().to_owned()
}

/// The flash the next page shows, if any.
fn flash(visitor: &mut Visitor, page: &str) -> String {
    let html = body(&visitor.get(page));
    html.split("<p class=\"flash").nth(1).map(|rest| rest.split("</p>").next().unwrap().to_owned()).unwrap_or_default()
}

#[test]
fn the_account_page_shows_the_pool_its_members_and_grants_as_the_api_does() {
    let tally = start();
    let mut client = api(&tally);
    acme(&mut client);
    let grant = client.post("/v1/admin/accounts/acme/grants", &json!({ "metric": "prompts", "amount": 100 }));
    assert_eq!(grant.status, 201, "{}", body(&grant));
    let view = client.get("/v1/accounts/acme").json();
    let prompts = &view["usage"]["prompts"];
    assert_eq!(
        (prompts["used"].as_u64(), prompts["limit"].as_u64(), prompts["granted"].as_u64()),
        (Some(40), Some(200), Some(100))
    );

    let mut visitor = sign_in(&tally);
    let html = body(&visitor.get("/admin/accounts/acme"));
    assert!(html.contains("<span class=\"badge\" data-plan=\"pool\">pool</span>"), "{html}");
    assert!(html.contains("data-raw=\"40\">40</span> <span class=\"sub\">of 200 prompts</span>"), "pool used of limit");
    assert_eq!(meter(&html, "prompts", "data-granted"), "100");
    assert_eq!(meter(&html, "prompts", "data-source"), "plan");
    assert!(html.contains("includes 100 prompts granted"));
    for (member, used, share) in [("ann", 30, "75%"), ("bob", 10, "25%")] {
        let row = html.split(&format!("<tr data-member=\"{member}\">")).nth(1).expect("a member row");
        assert!(row.contains(&format!("href=\"/admin/users/{member}\"")), "{row}");
        assert!(row.contains(&format!("data-raw=\"{used}\">{used} <span class=\"sub\">{share}</span>")), "{row}");
    }
    let grant_id = grant.json()["grant_id"].as_i64().unwrap();
    assert!(html.contains(&format!("<tr data-grant=\"{grant_id}\">")));
    assert!(html.contains(&format!("action=\"/admin/accounts/acme/grants/{grant_id}/revoke\"")));
    assert!(html.contains("No override: the plan applies."));

    let list = body(&visitor.get("/admin/accounts"));
    let row = list.split("<tr data-account=\"acme\">").nth(1).expect("acme in the list");
    assert!(row.contains("data-raw=\"2\">2</td>"), "two members: {row}");
    assert!(list.contains("<a href=\"/admin/accounts\" aria-current=\"page\">Accounts</a>"), "in the navigation");
    assert_eq!(visitor.get("/admin/users?user_id=acme").header("location"), Some("/admin/accounts/acme"));
    assert_eq!(visitor.get("/admin/users?user_id=ann").header("location"), Some("/admin/users/ann"));
    assert_eq!(visitor.get("/admin/accounts?account_id=+acme+").header("location"), Some("/admin/accounts/acme"));
    assert_eq!(visitor.get("/admin/accounts/nope").status, 404);

    let ann = body(&visitor.get("/admin/users/ann"));
    assert!(ann.contains("Member of account <a class=\"mono\" href=\"/admin/accounts/acme\">acme</a>"), "{ann}");
}

#[test]
fn account_and_user_forms_change_plan_overrides_and_grants_audited_under_the_keys_name() {
    let tally = start();
    let mut client = api(&tally);
    acme(&mut client);
    let setup_rows = audit(&mut client).len();
    let mut visitor = sign_in(&tally);
    let page = "/admin/accounts/acme";

    let changed = visitor.submit(page, "/admin/accounts/acme/plan", &[("plan", "trial")]);
    assert_eq!((changed.status, changed.header("location")), (303, Some(page)));
    assert_eq!(client.get("/v1/accounts/acme").json()["plan"], "trial");
    assert!(flash(&mut visitor, page).contains("Account acme is now on trial."));

    let granted = visitor.submit(
        page,
        "/admin/accounts/acme/grants",
        &[("metric", "prompts"), ("amount", "50"), ("note", "launch")],
    );
    assert_eq!(granted.status, 303);
    assert_eq!(client.get("/v1/accounts/acme").json()["usage"]["prompts"]["limit"], 80, "30 + 50");
    let grants = client.get("/v1/admin/accounts/acme/grants").json()["grants"].as_array().unwrap().clone();
    assert_eq!((grants.len(), grants[0]["note"].as_str()), (1, Some("launch")));
    let grant_id = grants[0]["grant_id"].as_i64().unwrap().to_string();

    let fields = [
        ("limit.prompts", "soft"),
        ("value.prompts", "500"),
        ("limit.runs", ""),
        ("value.runs", ""),
        ("feature.export", "off"),
        ("feature.snap", "7"),
        ("window.snap", "3600"),
        ("expires_at", "2099-12-31T23:59"),
        ("note", "pilot"),
    ];
    assert_eq!(visitor.submit(page, "/admin/accounts/acme/overrides", &fields).status, 303);
    let over = client.get("/v1/admin/accounts/acme/overrides").json();
    assert_eq!(
        over,
        json!({ "limits": { "prompts": { "limit": 500, "enforcement": "soft" } },
                "features": { "export": false, "snap": { "limit": 7, "window_secs": 3600 } },
                "expires_at": "2099-12-31T23:59:00.000Z", "note": "pilot" })
    );
    let shown = body(&visitor.get(page));
    assert_eq!(meter(&shown, "prompts", "data-source"), "override");
    assert!(shown.contains("<option value=\"soft\" selected>") && shown.contains("value=\"500\""), "the form shows it");

    let revoke = format!("/admin/accounts/acme/grants/{grant_id}/revoke");
    assert_eq!(visitor.submit(page, &revoke, &[]).status, 303);
    assert!(client.get("/v1/admin/accounts/acme/grants").json()["grants"].as_array().unwrap().is_empty());
    assert_eq!(visitor.submit(page, "/admin/accounts/acme/overrides/remove", &[]).status, 303);
    assert_eq!(client.get("/v1/admin/accounts/acme/overrides").code(), "override_not_found");

    // A user on their own: the same forms on the user page.
    track(&mut client, "sol", "prompts", 1);
    let user_page = "/admin/users/sol";
    let fields = [("limit.prompts", "hard"), ("value.prompts", "40")];
    assert_eq!(visitor.submit(user_page, "/admin/users/sol/overrides", &fields).status, 303);
    assert_eq!(client.get("/v1/users/sol").json()["usage"]["prompts"]["limit"], 40);
    assert_eq!(
        visitor.submit(user_page, "/admin/users/sol/grants", &[("metric", "prompts"), ("amount", "5")]).status,
        303
    );
    let sol = client.get("/v1/users/sol").json();
    assert_eq!(
        (sol["usage"]["prompts"]["limit"].as_u64(), sol["usage"]["prompts"]["granted"].as_u64()),
        (Some(45), Some(5))
    );
    let html = body(&visitor.get(user_page));
    assert!(
        html.contains("<tr data-override=\"prompts\"><th scope=\"row\">Prompts</th><td>40 (hard)</td></tr>"),
        "{html}"
    );
    let user_grant = client.get("/v1/admin/users/sol/grants").json()["grants"][0]["grant_id"].as_i64().unwrap();
    // A grant is revoked only through its own customer's page.
    let elsewhere = visitor.submit(page, &format!("/admin/accounts/acme/grants/{user_grant}/revoke"), &[]);
    assert_eq!(elsewhere.status, 303);
    assert!(flash(&mut visitor, page).contains(&format!("acme has no grant {user_grant}.")));
    assert_eq!(visitor.submit(user_page, &format!("/admin/users/sol/grants/{user_grant}/revoke"), &[]).status, 303);
    assert_eq!(visitor.submit(user_page, "/admin/users/sol/overrides/remove", &[]).status, 303);
    assert_eq!(client.get("/v1/users/sol").json()["usage"]["prompts"]["limit"], 30);

    let rows = audit(&mut client);
    let ours: Vec<(&str, &str)> = rows[..rows.len() - setup_rows]
        .iter()
        .inspect(|row| assert_eq!(row["actor"], "ops", "{row}"))
        .map(|row| (row["action"].as_str().unwrap(), row["target"].as_str().unwrap_or_default()))
        .collect();
    let actions: Vec<&str> = ours.iter().map(|(action, _)| *action).collect();
    assert_eq!(
        actions,
        [
            "override_removed",
            "grant_revoked",
            "grant_added",
            "override_set",
            "override_removed",
            "grant_revoked",
            "override_set",
            "grant_added",
            "account_plan_changed"
        ],
        "{rows:?}"
    );
    assert!(ours[0].1 == "sol" && ours[4].1.contains("acme"), "{ours:?}");
}

#[test]
fn the_new_forms_refuse_a_post_without_the_sessions_csrf_token() {
    let tally = start();
    let mut client = api(&tally);
    acme(&mut client);
    let grant = client.post("/v1/admin/accounts/acme/grants", &json!({ "metric": "prompts", "amount": 5 })).json();
    let revoke = format!("/admin/accounts/acme/grants/{}/revoke", grant["grant_id"]);
    let before = audit(&mut client).len();
    let mut visitor = sign_in(&tally);
    let attempts: [(&str, &[(&str, &str)]); 6] = [
        ("/admin/accounts/acme/plan", &[("plan", "trial")]),
        ("/admin/accounts/acme/overrides", &[("limit.prompts", "unlimited")]),
        ("/admin/accounts/acme/overrides/remove", &[]),
        ("/admin/accounts/acme/grants", &[("metric", "prompts"), ("amount", "9")]),
        (&revoke, &[]),
        ("/admin/users/ann/overrides", &[("limit.prompts", "unlimited")]),
    ];
    for (path, fields) in attempts {
        for csrf in [None, Some("wrong")] {
            let mut all: Vec<(&str, &str)> = fields.to_vec();
            if let Some(csrf) = csrf {
                all.push(("csrf", csrf));
            }
            let reply = visitor.post(path, &all);
            assert_eq!(reply.status, 403, "{path} with csrf {csrf:?}");
            assert!(body(&reply).contains("nothing was changed"));
        }
    }
    let view = client.get("/v1/accounts/acme").json();
    assert_eq!((view["plan"].as_str(), view["usage"]["prompts"]["limit"].as_u64()), (Some("pool"), Some(105)));
    assert_eq!(audit(&mut client).len(), before, "no action ran");
}

#[test]
fn bad_override_and_grant_input_is_refused_with_a_message_and_changes_nothing() {
    let tally = start();
    let mut client = api(&tally);
    acme(&mut client);
    let before = audit(&mut client).len();
    let mut visitor = sign_in(&tally);
    let page = "/admin/accounts/acme";
    let overrides: [(&[(&str, &str)], &str); 6] = [
        (&[("limit.prompts", "hard")], "Prompts: a hard or soft limit needs a number"),
        (&[("limit.prompts", "hard"), ("value.prompts", "lots")], "the limit of Prompts must be a whole number"),
        (&[("value.prompts", "5")], "Prompts: choose hard or soft for the limit 5"),
        (&[("limit.tokens", "unlimited")], "the form has a field &quot;limit.tokens&quot;"),
        (
            &[("limit.prompts", "unlimited"), ("expires_at", "tomorrow")],
            "the expiry &quot;tomorrow&quot; is not a date",
        ),
        (&[("limit.prompts", "")], "The override names no limit or feature"),
    ];
    for (fields, message) in overrides {
        let reply = visitor.submit(page, "/admin/accounts/acme/overrides", fields);
        assert_eq!((reply.status, reply.header("location")), (303, Some(page)));
        let shown = flash(&mut visitor, page);
        assert!(shown.starts_with(" error\"") && shown.contains(message), "{fields:?}: {shown}");
    }
    let grants: [(&[(&str, &str)], &str); 5] = [
        (&[("metric", "prompts"), ("amount", "0")], "the amount must be at least 1"),
        (&[("metric", "prompts"), ("amount", "-3")], "the amount must be a whole number"),
        (&[("metric", "tokens"), ("amount", "3")], "metric &quot;tokens&quot; is not configured"),
        (&[("metric", "prompts"), ("amount", "3"), ("period", "2026-13")], "2026-13"),
        (&[("metric", "runs"), ("amount", "3")], "runs is unlimited for this customer"),
    ];
    for (fields, message) in grants {
        assert_eq!(visitor.submit(page, "/admin/accounts/acme/grants", fields).status, 303);
        let shown = flash(&mut visitor, page);
        assert!(shown.starts_with(" error\"") && shown.contains(message), "{fields:?}: {shown}");
    }
    // A member without a cap of their own: a grant to them could change nothing.
    assert_eq!(
        visitor.submit("/admin/users/ann", "/admin/users/ann/grants", &[("metric", "prompts"), ("amount", "3")]).status,
        303
    );
    assert!(flash(&mut visitor, "/admin/users/ann").contains("grant to the account instead"));

    assert_eq!(client.get("/v1/admin/accounts/acme/overrides").code(), "override_not_found");
    assert!(client.get("/v1/admin/accounts/acme/grants").json()["grants"].as_array().unwrap().is_empty());
    assert_eq!(client.get("/v1/accounts/acme").json()["usage"]["prompts"]["limit"], 100);
    assert_eq!(audit(&mut client).len(), before, "nothing was audited");
}
