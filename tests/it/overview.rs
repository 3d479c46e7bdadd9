//! The dashboard's overview as one read: every month of its charts from one query, and its
//! cards from one snapshot while tracks commit beside it. Under open access, so a plain
//! client reads the page.

use crate::support::{Client, Setup, usage};
use chrono::{Datelike, TimeZone, Utc};
use serde_json::json;

fn page(client: &mut Client, path: &str) -> String {
    let reply = client.get(path);
    assert_eq!(reply.status, 200);
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The exact number a card shows (its `data-raw`).
fn card(html: &str, metric: &str) -> u64 {
    let start =
        html.find(&format!("class=\"card\" data-metric=\"{metric}\"")).unwrap_or_else(|| panic!("{metric} card"));
    let raw = &html[start..];
    let raw = &raw[raw.find("data-raw=\"").expect("data-raw") + 10..];
    raw.split('"').next().unwrap().parse().unwrap()
}

/// `YYYY-MM` of the month `back` months before this one, and noon of its first day.
fn month(back: u32) -> (String, String) {
    let first = Utc::now().with_day(1).unwrap().date_naive() - chrono::Months::new(back);
    let noon = Utc.from_utc_datetime(&first.and_hms_opt(12, 0, 0).unwrap());
    (first.format("%Y-%m").to_string(), noon.to_rfc3339())
}

#[test]
fn every_month_of_the_charts_shows_its_own_totals() {
    let tally = Setup::new().start();
    let mut client = tally.client();
    let sent = [(11, "ann", 4), (2, "ann", 5), (1, "bob", 7), (1, "ann", 1), (0, "cy", 3)];
    for (back, user, amount) in sent {
        let body = usage(user, "prompts", json!({ "amount": amount, "timestamp": month(back).1 }));
        assert_eq!(client.post("/v1/track", &body).status, 200);
    }
    let html = page(&mut client, "/admin");
    let expected = [(12, 0), (11, 4), (3, 0), (2, 5), (1, 8), (0, 3)];
    for (back, total) in expected {
        let title = format!("<title>{}: {total} prompts</title>", month(back).0);
        assert_eq!(html.contains(&title), back < 12, "{title}");
    }
    let charts = html.split("id=\"months-heading\"").nth(1).expect("the monthly charts");
    assert_eq!(charts.matches("<title>").count(), 3 * 12, "12 months in each metric's chart");

    // A month in the past: its own chart ends there, and sees nothing after it.
    let (one_back, _) = month(1);
    let past = page(&mut client, &format!("/admin?period={one_back}"));
    assert!(past.contains(&format!("<title>{one_back}: 8 prompts</title>")), "{past}");
    assert!(past.contains(&format!("<title>{}: 5 prompts</title>", month(2).0)));
    assert!(!past.contains(&format!("<title>{}:", month(0).0)), "no month after the period");
    assert_eq!(card(&past, "prompts"), 8);
}

#[test]
fn the_cards_agree_while_tracks_commit() {
    let tally = Setup::new().start();
    let mut writer = tally.client();
    let tracks = std::thread::spawn(move || {
        for index in 0..300 {
            let reply = writer.post("/v1/track", &usage(&format!("user-{index}"), "prompts", json!({ "amount": 1 })));
            assert_eq!(reply.status, 200);
        }
    });
    // Each track adds one prompt and one active user in one commit: a page read from one
    // snapshot shows as many prompts as active users, whatever commits between its reads.
    let mut reader = tally.client();
    let mut pages = 0;
    while !tracks.is_finished() || pages == 0 {
        let html = page(&mut reader, "/admin");
        assert_eq!(card(&html, "prompts"), card(&html, "active_users"), "one snapshot");
        pages += 1;
    }
    tracks.join().expect("the tracks");
    let html = page(&mut reader, "/admin");
    assert_eq!((card(&html, "prompts"), card(&html, "active_users")), (300, 300));
}
