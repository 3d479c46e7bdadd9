//! The dashboard's HTML toolkit: escaping, number and date formats, URL pieces, and the page
//! shell (head, top bar, flash message) with its stylesheet. Pages build on these; no data
//! is read here.

use super::session::{Flash, Visitor};
use chrono::DateTime;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::fmt::Write;

/// Text safe to place in an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Everything but unreserved characters is encoded, so a user id is one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `/admin/users/{user_id}` with the id percent-encoded (the router decodes it back).
pub fn user_path(user_id: &str) -> String {
    format!("/admin/users/{}", utf8_percent_encode(user_id, SEGMENT))
}

/// A query-string value, percent-encoded.
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// `12725` as `12,725`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

const BYTE_UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];

/// Bytes in decimal units with one decimal: `1500000000` as `1.5 GB`.
pub fn human_bytes(bytes: u64) -> String {
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 999.95 && unit < BYTE_UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", BYTE_UNITS[unit])
}

/// A metric's value as people read it: bytes in human units, counts with separators.
pub fn metric_value(unit: &str, value: u64) -> String {
    if unit == "bytes" { human_bytes(value) } else { thousands(value) }
}

/// A short label for a chart (at most 5 characters): `12.7k`, `1.5GB`.
pub fn compact(unit: &str, value: u64) -> String {
    if value == 0 {
        return "0".to_owned();
    }
    let (units, step): (&[&str], f64) =
        if unit == "bytes" { (&BYTE_UNITS, 1000.0) } else { (&["", "k", "M", "G", "T", "P", "E"], 1000.0) };
    let mut scaled = value as f64;
    let mut index = 0;
    while scaled >= 999.5 && index < units.len() - 1 {
        scaled /= step;
        index += 1;
    }
    let number = if index == 0 || scaled >= 9.95 { format!("{scaled:.0}") } else { format!("{scaled:.1}") };
    format!("{number}{}", units[index])
}

/// `e2e_runs` as `E2E runs`: underscores become spaces, a word with a digit is upper-cased,
/// and the first letter is a capital.
pub fn metric_label(name: &str) -> String {
    let words: Vec<String> = name
        .split(['_', '-'])
        .filter(|word| !word.is_empty())
        .map(|word| if word.chars().any(|c| c.is_ascii_digit()) { word.to_uppercase() } else { word.to_owned() })
        .collect();
    let joined = words.join(" ");
    let mut chars = joined.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => name.to_owned(),
    }
}

/// Cents as a plain amount: `11700` as `117.00` (the config names no currency).
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", thousands(cents / 100), cents % 100)
}

/// Unix milliseconds as `2026-11-03 14:22 UTC`.
pub fn utc_minute(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms).unwrap_or_default().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A share from 0 to 1 as a whole percent (`0.5` as `50%`), with `<1%` for small non-zero ones.
pub fn percent(share: f64) -> String {
    if share > 0.0 && share < 0.005 { "<1%".to_owned() } else { format!("{:.0}%", share * 100.0) }
}

/// The top-bar tab a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Users,
    Maintenance,
    None,
}

/// What every page around its content shows: who is signed in, the flash message.
pub struct Chrome<'a> {
    pub visitor: Option<&'a Visitor>,
    pub flash: Option<Flash>,
    pub tab: Tab,
}

/// A hidden field with the visitor's CSRF token, for every POST form.
pub fn csrf_field(visitor: &Visitor) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(&visitor.csrf))
}

fn nav_link(out: &mut String, href: &str, label: &str, current: bool) {
    let current = if current { " aria-current=\"page\"" } else { "" };
    let _ = write!(out, "<a href=\"{href}\"{current}>{label}</a>");
}

/// A whole HTML document: `title` (plain text) and `content` (HTML) inside the shell.
pub fn document(title: &str, chrome: &Chrome<'_>, content: &str) -> String {
    let mut out = String::with_capacity(content.len() + CSS.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{} · Tally</title><style>{CSS}</style></head><body>",
        escape(title)
    );
    out.push_str("<header class=\"top\"><div class=\"bar\"><a class=\"brand\" href=\"/admin\">Tally</a>");
    if let Some(visitor) = chrome.visitor {
        out.push_str("<nav aria-label=\"Dashboard\">");
        nav_link(&mut out, "/admin", "Overview", chrome.tab == Tab::Overview);
        nav_link(&mut out, "/admin/maintenance", "Maintenance", chrome.tab == Tab::Maintenance);
        out.push_str("</nav>");
        out.push_str(
            "<form class=\"search\" method=\"get\" action=\"/admin/users\" role=\"search\">\
             <label class=\"sr-only\" for=\"find-user\">User id</label>\
             <input id=\"find-user\" name=\"user_id\" type=\"search\" placeholder=\"Find a user id\" \
             autocomplete=\"off\" spellcheck=\"false\" required maxlength=\"128\">\
             <button type=\"submit\">Find</button></form>",
        );
        out.push_str("<div class=\"who\">");
        if visitor.is_open_access() {
            out.push_str("<span class=\"badge warn\" title=\"No keys are configured\">open access</span>");
        } else {
            let _ = write!(
                out,
                "<span class=\"actor\" title=\"Signed in with this admin key\">{}</span>\
                 <form method=\"post\" action=\"/admin/logout\">{}<button class=\"link\" type=\"submit\">Sign out</button></form>",
                escape(&visitor.actor),
                csrf_field(visitor)
            );
        }
        out.push_str("</div>");
    }
    out.push_str("</div></header><main>");
    if let Some(flash) = &chrome.flash {
        let (class, role) = if flash.ok { ("flash ok", "status") } else { ("flash error", "alert") };
        let _ = write!(out, "<p class=\"{class}\" role=\"{role}\">{}</p>", escape(&flash.text));
    }
    out.push_str(content);
    out.push_str("</main></body></html>\n");
    out
}

/// The page stylesheet: system fonts, tabular numbers, a grid that folds to one column.
const CSS: &str = "\
:root{--bg:#f5f6f8;--panel:#fff;--ink:#1c2330;--muted:#5d6778;--line:#e2e5eb;--accent:#3b5bdb;\
--accent-soft:#c5d0fa;--ok:#2b8a3e;--ok-bg:#ebfbee;--warn:#b35c00;--warn-bg:#fff4e6;--bad:#c92a2a;--bad-bg:#fff5f5;\
color-scheme:light}\
*{box-sizing:border-box}\
html{-webkit-text-size-adjust:100%}\
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,\
\"Helvetica Neue\",\"Noto Sans\",\"Liberation Sans\",Arial,sans-serif}\
a{color:var(--accent)}a:hover{text-decoration-thickness:2px}\
.top{background:#1c2330;color:#fff}\
.bar{max-width:1200px;margin:0 auto;padding:.6rem 1.25rem;display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.25rem}\
.brand{color:#fff;font-weight:700;font-size:1.1rem;text-decoration:none;letter-spacing:.02em}\
.top nav{display:flex;gap:.25rem}\
.top nav a{color:#c9d1e0;text-decoration:none;padding:.3rem .6rem;border-radius:6px}\
.top nav a:hover{color:#fff;background:#2c3547}\
.top nav a[aria-current=page]{color:#fff;background:#38425a}\
.search{display:flex;gap:.35rem;margin-left:auto}\
.search input{width:13rem;background:#2c3547;border-color:#45506a;color:#fff}\
.search input::placeholder{color:#9aa5ba}\
.search button{background:#38425a;border-color:#45506a;color:#fff}\
.who{display:flex;align-items:center;gap:.6rem;color:#c9d1e0;font-size:.9rem}\
.who form{margin:0}.who .link{color:#c9d1e0}\
main{max-width:1200px;margin:0 auto;padding:1.25rem 1.25rem 3rem}\
h1{font-size:1.5rem;margin:.25rem 0 1rem;line-height:1.25}\
h2{font-size:1.05rem;margin:0 0 .75rem}\
h3{font-size:.95rem;margin:0 0 .5rem}\
.sub{color:var(--muted);font-weight:400}\
.muted{color:var(--muted)}\
.head{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:.75rem;margin-bottom:1rem}\
.head h1{margin:0}\
.panel{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:1rem 1.1rem;min-width:0;\
margin-bottom:1rem}\
.grid>.panel{margin-bottom:0}\
.grid{display:grid;gap:1rem;margin-bottom:1rem}\
.cards{grid-template-columns:repeat(auto-fit,minmax(11rem,1fr))}\
.two{grid-template-columns:minmax(0,5fr) minmax(0,7fr)}\
.three{grid-template-columns:repeat(auto-fit,minmax(18rem,1fr))}\
.card{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:.85rem 1rem}\
.card .label{display:block;color:var(--muted);font-size:.85rem}\
.card .value{display:block;font-size:1.75rem;font-weight:650;font-variant-numeric:tabular-nums;line-height:1.2;margin:.15rem 0}\
.card .unit{display:block;color:var(--muted);font-size:.8rem}\
table{width:100%;border-collapse:collapse;font-size:.92rem}\
th,td{padding:.45rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}\
thead th{color:var(--muted);font-weight:600;font-size:.8rem;text-transform:uppercase;letter-spacing:.03em;white-space:nowrap}\
tbody tr:last-child td,tbody tr:last-child th{border-bottom:0}\
tbody th{font-weight:500;white-space:nowrap}\
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.nowrap{white-space:nowrap;font-variant-numeric:tabular-nums}\
.table-wrap{overflow-x:auto;margin:0 -.25rem}\
.sorted{color:var(--ink)}\
th a{color:inherit;text-decoration:none}th a:hover{text-decoration:underline}\
code,.mono{font-family:ui-monospace,\"SFMono-Regular\",Menlo,Consolas,\"DejaVu Sans Mono\",monospace;font-size:.85em}\
.details{color:var(--muted);max-width:28rem;overflow-wrap:anywhere}\
.empty{color:var(--muted);text-align:center;padding:1.5rem .5rem;margin:0}\
.flash{padding:.65rem .9rem;border-radius:8px;margin:0 0 1rem;border:1px solid}\
.flash.ok{background:var(--ok-bg);border-color:#b2f2bb;color:#1b5e2a}\
.flash.error{background:var(--bad-bg);border-color:#ffc9c9;color:#8f1d1d}\
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.78rem;font-weight:600;\
background:#edf2ff;color:#364fc7;border:1px solid #dbe4ff;white-space:nowrap}\
.badge.warn{background:var(--warn-bg);color:var(--warn);border-color:#ffd8a8}\
.badge.bad{background:var(--bad-bg);color:var(--bad);border-color:#ffc9c9}\
.badge.ok{background:var(--ok-bg);color:var(--ok);border-color:#b2f2bb}\
.badge.plain{background:#f1f3f5;color:var(--muted);border-color:var(--line)}\
form{margin:0}\
label{font-weight:500}\
input,select,button{font:inherit;font-size:.92rem;padding:.4rem .6rem;border:1px solid #c5cbd6;border-radius:6px;\
background:#fff;color:var(--ink)}\
input:focus-visible,select:focus-visible,button:focus-visible,a:focus-visible{outline:2px solid var(--accent);outline-offset:2px}\
button{cursor:pointer;font-weight:600}\
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}\
button.danger,a.danger{background:var(--bad);border-color:var(--bad);color:#fff}\
a.button{display:inline-block;padding:.4rem .75rem;border:1px solid #c5cbd6;border-radius:6px;text-decoration:none;\
color:var(--ink);font-weight:600;font-size:.92rem;background:#fff}\
a.button.danger{color:#fff;background:var(--bad);border-color:var(--bad)}\
button.link{background:none;border:0;padding:0;text-decoration:underline;font-weight:400}\
.field{display:flex;flex-direction:column;gap:.3rem;margin-bottom:.75rem}\
.inline{display:flex;flex-wrap:wrap;align-items:flex-end;gap:.5rem}\
.inline .field{margin:0}\
.hint{color:var(--muted);font-size:.85rem;margin:.25rem 0 .75rem}\
.actions{display:grid;gap:1rem;grid-template-columns:repeat(auto-fit,minmax(15rem,1fr))}\
.actions section{border-top:1px solid var(--line);padding-top:.75rem}\
.meter{height:.6rem;background:#edf0f4;border-radius:999px;overflow:hidden;margin:.35rem 0 .2rem}\
.meter span{display:block;height:100%;background:var(--accent);border-radius:999px}\
.meter.soft span{background:var(--warn)}.meter.full span{background:var(--bad)}\
.usage{display:grid;gap:1rem;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr))}\
.usage .used{font-size:1.25rem;font-weight:650;font-variant-numeric:tabular-nums}\
.chart{display:block;width:100%;height:auto;overflow:visible}\
.chart text{font-family:inherit;fill:var(--muted)}\
.chart .v{fill:var(--ink);font-weight:600}.months .v{font-weight:400}\
.chart .bar{fill:var(--accent-soft)}.chart .bar.now{fill:var(--accent)}.chart .bar.rev{fill:var(--ok)}\
.spaced{margin-top:1rem}\
.chart .track{fill:#edf0f4}.chart .axis{stroke:#c5cbd6}.chart .grid-line{stroke:#edf0f4}\
.period{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem}\
.button[aria-disabled=true]{opacity:.4;cursor:default}\
figure{margin:0}figcaption h3{margin-bottom:.25rem}\
.pager{display:flex;justify-content:space-between;gap:1rem;margin-top:.75rem}\
.login{max-width:24rem;margin:8vh auto}\
.login input{width:100%}\
.sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);border:0}\
@media (max-width:760px){\
body{font-size:14px}\
.bar{padding:.5rem .9rem;gap:.4rem .75rem}\
.search{margin-left:0;order:3;width:100%}.search input{flex:1;width:auto}\
.who{margin-left:auto}\
main{padding:1rem .9rem 2rem}\
.two{grid-template-columns:minmax(0,1fr)}\
.cards{grid-template-columns:repeat(2,minmax(0,1fr))}\
.card .value{font-size:1.35rem}\
th,td{padding:.4rem .45rem}\
}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape("<script>alert('x')</script>"), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        assert_eq!(escape("a \"b\" & c"), "a &quot;b&quot; &amp; c");
        assert_eq!(escape("plain user_1@x"), "plain user_1@x");
    }

    #[test]
    fn formats_numbers_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_725), "12,725");
        assert_eq!(thousands(1_500_000_000), "1,500,000,000");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(human_bytes(999_999), "1.0 MB");
        assert_eq!(metric_value("bytes", 2_000), "2.0 kB");
        assert_eq!(metric_value("prompts", 2_000), "2,000");
        assert_eq!(money(11_700), "117.00");
        assert_eq!(money(1_234_505), "12,345.05");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.001), "<1%");
    }

    #[test]
    fn compact_labels_stay_short() {
        assert_eq!(compact("prompts", 0), "0");
        assert_eq!(compact("prompts", 999), "999");
        assert_eq!(compact("prompts", 12_725), "13k");
        assert_eq!(compact("prompts", 1_260), "1.3k");
        assert_eq!(compact("bytes", 1_500_000_000), "1.5GB");
        assert_eq!(compact("bytes", 999_400_000), "999MB");
        for value in [0, 9, 99_999, 999_999_999, u64::MAX] {
            assert!(compact("runs", value).len() <= 5, "{}", compact("runs", value));
            assert!(compact("bytes", value).len() <= 5, "{}", compact("bytes", value));
        }
    }

    #[test]
    fn labels_metrics_from_their_names() {
        assert_eq!(metric_label("prompts"), "Prompts");
        assert_eq!(metric_label("e2e_runs"), "E2E runs");
        assert_eq!(metric_label("bytes_out"), "Bytes out");
    }

    #[test]
    fn user_paths_are_one_encoded_segment() {
        assert_eq!(user_path("auth0|42"), "/admin/users/auth0%7C42");
        assert_eq!(user_path("a+b@x.y:z"), "/admin/users/a%2Bb%40x.y%3Az");
    }
}
