//! The dashboard's page shell (head, top bar, flash message) and URL pieces, in maud
//! templates: every value is escaped unless a template says `PreEscaped`, and only the
//! stylesheet (dashboard.css, embedded at build time) does. Pages build on these; no data is
//! read here, and numbers are formatted in format.rs.

use super::session::{Flash, Visitor};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but unreserved characters is encoded, so a user id is one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `/admin/users/{user_id}` with the id percent-encoded (the router decodes it back).
pub fn user_path(user_id: &str) -> String {
    format!("/admin/users/{}", utf8_percent_encode(user_id, SEGMENT))
}

/// `/admin/accounts/{account_id}` with the id percent-encoded.
pub fn account_path(account_id: &str) -> String {
    format!("/admin/accounts/{}", utf8_percent_encode(account_id, SEGMENT))
}

/// A query-string value, percent-encoded.
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// The top-bar tab a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Users,
    Accounts,
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
pub fn csrf_field(visitor: &Visitor) -> Markup {
    html! { input type="hidden" name="csrf" value=(visitor.csrf); }
}

fn nav_link(href: &str, label: &str, current: bool) -> Markup {
    html! { a href=(href) aria-current=[current.then_some("page")] { (label) } }
}

/// The page stylesheet, trusted: it is part of the binary, never built from a value.
const CSS: &str = include_str!("dashboard.css");

/// A whole HTML document: `title` (plain text) and `content` inside the shell.
pub fn document(title: &str, chrome: &Chrome<'_>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Tally" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header.top { div.bar {
                    a.brand href="/admin" { "Tally" }
                    @if let Some(visitor) = chrome.visitor {
                        nav aria-label="Dashboard" {
                            (nav_link("/admin", "Overview", chrome.tab == Tab::Overview))
                            (nav_link("/admin/accounts", "Accounts", chrome.tab == Tab::Accounts))
                            (nav_link("/admin/maintenance", "Maintenance", chrome.tab == Tab::Maintenance))
                        }
                        form.search method="get" action="/admin/users" role="search" {
                            label.sr-only for="find-user" { "User or account id" }
                            input #find-user name="user_id" type="search" placeholder="Find a user or account id"
                                autocomplete="off" spellcheck="false" required maxlength="128";
                            button type="submit" { "Find" }
                        }
                        div.who {
                            @if visitor.is_open_access() {
                                span.badge.warn title="No keys are configured" { "open access" }
                            } @else {
                                span.actor title="Signed in with this admin key" { (visitor.actor) }
                                form method="post" action="/admin/logout" {
                                    (csrf_field(visitor))
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                } }
                main {
                    @if let Some(flash) = &chrome.flash {
                        @if flash.ok {
                            p.flash.ok role="status" { (flash.text) }
                        } @else {
                            p.flash.error role="alert" { (flash.text) }
                        }
                    }
                    (content)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_paths_are_one_encoded_segment() {
        assert_eq!(user_path("auth0|42"), "/admin/users/auth0%7C42");
        assert_eq!(user_path("a+b@x.y:z"), "/admin/users/a%2Bb%40x.y%3Az");
    }

    #[test]
    fn the_shell_escapes_every_value_and_embeds_the_stylesheet() {
        let visitor = Visitor { actor: "<b>ops</b>".into(), csrf: "\"><script>".into(), token: Some("t".into()) };
        let chrome = Chrome { visitor: Some(&visitor), flash: Some(Flash::error("a <i>b</i>")), tab: Tab::Overview };
        let page = document("x<y", &chrome, html! { p { "&" } }).into_string();
        assert!(page.contains("<title>x&lt;y · Tally</title>"), "{page}");
        assert!(page.contains(">&lt;b&gt;ops&lt;/b&gt;</span>"));
        assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;\""));
        assert!(page.contains("<p class=\"flash error\" role=\"alert\">a &lt;i&gt;b&lt;/i&gt;</p>"));
        assert!(page.contains("<p>&amp;</p>"));
        assert!(page.contains("<a href=\"/admin\" aria-current=\"page\">Overview</a>"));
        assert!(page.contains(".card .value{") && page.contains("font-family:ui-monospace,\"SFMono-Regular\""));
    }
}
