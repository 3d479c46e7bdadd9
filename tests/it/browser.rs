//! The dashboard through real headless Chromium (driven over WebDriver, webdriver.rs): sign
//! in, read the overview's cards against the JSON API, change a plan through the form, and
//! take the screenshots (target/dashboard-*.png; docs/dashboard.png and
//! docs/dashboard-user.png with TALLY_WRITE_DASHBOARD_PNG=1). Fails, never skips, when the
//! browser is missing.

use crate::support::{ADMIN_KEY, Client, start_with_keys, usage};
use crate::webdriver::{Driver, wait_for};
use chrono::{Datelike, TimeZone, Utc};
use serde_json::json;

/// Users, plans and a year of usage that grows, through the JSON API.
fn seed_a_year(client: &mut Client) {
    let plans = [("acme-corp", "teams"), ("globex", "teams"), ("initech", "solo"), ("hooli", "solo")];
    let more = [("umbrella", "solo"), ("stark-labs", "teams"), ("wayne-ent", "solo")];
    for (user, plan) in plans.iter().chain(&more) {
        assert_eq!(client.put(&format!("/v1/users/{user}"), &json!({ "plan": plan })).status, 200);
    }
    let trials = ["dev@example.com", "sam.k", "ray|42", "lee", "kim"];
    let now = Utc::now();
    for back in (0..12u32).rev() {
        let month = now.with_day(1).unwrap().date_naive() - chrono::Months::new(back);
        let stamp = (back > 0).then(|| Utc.from_utc_datetime(&month.and_hms_opt(12, 0, 0).unwrap()).to_rfc3339());
        let growth = u64::from(12 - back);
        let mut send = |user: &str, metric: &str, amount: u64| {
            let mut extra = json!({ "amount": amount });
            if let Some(stamp) = &stamp {
                extra["timestamp"] = json!(stamp);
            }
            let reply = client.post("/v1/track", &usage(user, metric, extra));
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        };
        for (index, (user, _)) in plans.iter().chain(&more).enumerate() {
            if back > 6 && index >= plans.len() {
                continue; // the later customers joined half a year ago
            }
            let weight = (plans.len() + more.len() - index) as u64;
            send(user, "prompts", weight * (180 + 37 * growth));
            send(user, "e2e_runs", weight * (3 + growth));
            send(user, "bytes_out", weight * (21_000_000 + 9_300_000 * growth));
        }
        for (index, user) in trials.iter().enumerate().take(1 + back as usize % trials.len()) {
            send(user, "prompts", 6 + index as u64 * 5);
        }
    }
}

#[test]
fn a_browser_signs_in_reads_the_overview_and_changes_a_plan() {
    let tally = start_with_keys();
    let mut client = tally.client().with_key(ADMIN_KEY);
    seed_a_year(&mut client);
    let base = format!("http://{}", tally.addr);
    let driver = Driver::start();
    let browser = driver.browser(1280, 900);

    browser.goto(&format!("{base}/admin"));
    browser.wait_for_url("the login page", |url| url.ends_with("/admin/login"));
    let key = browser.find("#key");
    browser.send_keys(&key, ADMIN_KEY);
    browser.click(&browser.find("form[action=\"/admin/login\"] button[type=submit]"));
    browser.wait_for_url("the overview after signing in", |url| url.ends_with("/admin"));

    let summary = client.get("/v1/admin/usage").json();
    for (metric, total) in summary["totals"].as_object().unwrap() {
        let value = browser.find(&format!(".card[data-metric=\"{metric}\"] .value"));
        assert_eq!(browser.attribute(&value, "data-raw"), Some(total.to_string()), "{metric}");
        assert!(!browser.text(&value).is_empty());
    }
    let active = browser.find(".card[data-metric=\"active_users\"] .value");
    assert_eq!(browser.text(&active), summary["active_users"].to_string());
    let bytes = browser.find(".card[data-metric=\"bytes_out\"] .value");
    assert!(browser.text(&bytes).ends_with(" GB"), "{}", browser.text(&bytes));
    assert_eq!(browser.find_all("svg.chart.months").len(), 3, "a chart per metric");
    let top = browser.find("table tbody th a");
    assert_eq!(browser.text(&top), summary["top_users"][0]["user_id"].as_str().unwrap());

    let overview_png = browser.full_page_screenshot(1280);
    assert!(overview_png.starts_with(b"\x89PNG"), "a PNG");
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/target");
    std::fs::write(format!("{target}/dashboard-overview.png"), &overview_png).expect("write the screenshot");
    if std::env::var_os("TALLY_WRITE_DASHBOARD_PNG").is_some_and(|value| value == "1") {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard.png"), &overview_png).expect("docs png");
    }
    std::fs::write(format!("{target}/dashboard-overview-narrow.png"), browser.full_page_screenshot(390))
        .expect("write the narrow screenshot");

    // Change a plan through the user page's form.
    browser.set_window_size(1280, 900);
    browser.goto(&format!("{base}/admin/users/hooli"));
    browser.click(&browser.find("#plan option[value=\"teams\"]"));
    browser.click(&browser.find("form[action$=\"/plan\"] button[type=submit]"));
    let flash = browser.find(".flash.ok");
    assert_eq!(browser.text(&flash), "hooli is now on teams.");
    let plan = wait_for("the JSON API to show the new plan", || {
        Some(client.get("/v1/users/hooli").json()["plan"].clone()).filter(|plan| plan == "teams")
    });
    assert_eq!(plan, "teams");
    assert_eq!(browser.text(&browser.find("h1 .badge[data-plan]")), "teams");
    std::fs::write(format!("{target}/dashboard-user.png"), browser.full_page_screenshot(1280)).expect("user png");
    let snapshot = json!({ "user_id": "initech", "feature": "active_project_snapshots" });
    assert_eq!(client.post("/v1/features/use", &snapshot).status, 200, "solo's one snapshot this minute");
    browser.goto(&format!("{base}/admin/users/initech"));
    let meter = browser.find(".metric[data-metric=\"prompts\"] .meter span");
    assert!(browser.attribute(&meter, "style").is_some_and(|style| style.contains("width:31.2%")), "3,120 of 10,000");
    assert_eq!(browser.text(&browser.find("tbody tr:nth-child(3) th")), "active_project_snapshots");
    let left = browser.text(&browser.find("tbody tr:nth-child(3) td.num"));
    assert!(left.starts_with("0 left for ") && left.ends_with(" s"), "the snapshot used up for now: {left}");
    let user_png = browser.full_page_screenshot(1280);
    if std::env::var_os("TALLY_WRITE_DASHBOARD_PNG").is_some_and(|value| value == "1") {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard-user.png"), &user_png).expect("docs png");
    }
    browser.set_window_size(1280, 900);
    browser.goto(&format!("{base}/admin/users/initech"));
    std::fs::write(format!("{target}/dashboard-user-narrow.png"), browser.full_page_screenshot(390))
        .expect("narrow user png");
    browser.set_window_size(1280, 900);
    browser.goto(&format!("{base}/admin/maintenance"));
    let newest = browser.find("table.audit tbody tr td:nth-child(4)");
    assert_eq!(browser.text(&newest), "plan_changed", "the change is the newest audit row");
    std::fs::write(format!("{target}/dashboard-maintenance.png"), browser.full_page_screenshot(1280))
        .expect("maintenance png");
}
