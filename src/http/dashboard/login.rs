//! Signing in: the login page and its POST, which trades an admin key for a session cookie.
//! The form is CSRF-protected by a double-submit cookie (there is no session yet); a wrong
//! key re-renders the page with 401 and sets no cookie.

use super::html::{self, Chrome, Tab};
use super::session::{self, LOGIN_COOKIE, LOGIN_FORM_SECONDS, SESSION_COOKIE, SESSION_SECONDS, same_token};
use super::{Handled, add_cookie, error_page, find_visitor, html_response, over_https, redirect};
use crate::http::Ctx;
use crate::http::auth::admin_key;
use crate::http::error::ApiError;
use crate::http::now_ms;
use ::http::StatusCode;
use maud::html;

/// The login form's token: the one the browser already holds, or a new one.
fn form_token(ctx: &Ctx<'_>) -> (String, bool) {
    match session::cookie(ctx.request, LOGIN_COOKIE) {
        Some(token) if token.len() == 64 && token.bytes().all(|byte| byte.is_ascii_hexdigit()) => {
            (token.to_owned(), false)
        }
        _ => (session::random_token(), true),
    }
}

fn render(ctx: &Ctx<'_>, status: StatusCode, message: Option<(bool, &str)>) -> Handled {
    let (token, fresh) = form_token(ctx);
    let content = html! {
        div.login.panel {
            h1 { "Sign in" }
            @match message {
                Some((true, text)) => p.flash.ok role="status" { (text) },
                Some((false, text)) => p.flash.error role="alert" { (text) },
                None => {},
            }
            form method="post" action="/admin/login" {
                input type="hidden" name="csrf" value=(token);
                div.field {
                    label for="key" { "Admin key" }
                    input #key name="key" type="password" autocomplete="current-password" required autofocus;
                }
                button.primary type="submit" { "Sign in" }
            }
            p.hint {
                "Use one of the " code { "admin_keys" } " from Tally's config. You stay signed in for "
                (SESSION_SECONDS / 3600) " hours on this browser."
            }
        }
    };
    let chrome = Chrome { visitor: None, flash: None, tab: Tab::None };
    let mut response = html_response(status, html::document("Sign in", &chrome, content).into_string());
    if fresh {
        let cookie = session::set_cookie(LOGIN_COOKIE, &token, "/admin/login", LOGIN_FORM_SECONDS, over_https(ctx));
        add_cookie(&mut response, &cookie);
    }
    Ok(response)
}

/// `GET /admin/login`; the signed in (and everyone under open access) go to the overview.
pub fn page(ctx: &mut Ctx<'_>) -> Handled {
    if find_visitor(ctx).is_some() {
        return Ok(redirect("/admin"));
    }
    let signed_out = ctx.query.get("signed_out").is_some_and(|value| value == "1");
    render(ctx, StatusCode::OK, signed_out.then_some((true, "You are signed out.")))
}

/// `POST /admin/login`: an admin key in, a session cookie out.
pub fn login(ctx: &mut Ctx<'_>) -> Handled {
    if ctx.app.config.auth.is_open() {
        return Ok(redirect("/admin"));
    }
    let form = ctx.form_body();
    let expected = session::cookie(ctx.request, LOGIN_COOKIE);
    let given = form.get("csrf").map(String::as_str);
    if !matches!((given, expected), (Some(given), Some(expected)) if same_token(given, expected)) {
        let message = "The sign-in form had expired, so nothing was sent. Please try again.";
        return render(ctx, StatusCode::FORBIDDEN, Some((false, message)));
    }
    let key = form.get("key").map(String::as_str).unwrap_or_default();
    let Some(admin) = admin_key(&ctx.app.config.auth, key) else {
        log::warn!("dashboard: a sign-in with a key that is not an admin key was refused");
        let refusal = ctx.app.auth_failed(ctx.peer, ApiError::unauthorized());
        if refusal.status() == StatusCode::TOO_MANY_REQUESTS {
            return error_page(refusal, None);
        }
        return render(ctx, StatusCode::UNAUTHORIZED, Some((false, "That is not an admin key.")));
    };
    // A new token at every sign-in: a token planted before it is worth nothing after.
    if let Some(old) = session::cookie(ctx.request, SESSION_COOKIE) {
        ctx.app.sessions.remove(old)?;
    }
    let token = ctx.app.sessions.create(admin, now_ms())?;
    log::info!("dashboard: {} signed in", admin.name);
    let mut response = redirect("/admin");
    let secure = over_https(ctx);
    add_cookie(&mut response, &session::set_cookie(SESSION_COOKIE, &token, "/admin", SESSION_SECONDS, secure));
    add_cookie(&mut response, &session::set_cookie(LOGIN_COOKIE, "", "/admin/login", 0, secure));
    Ok(response)
}
