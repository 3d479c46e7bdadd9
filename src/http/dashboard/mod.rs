//! The admin dashboard at /admin: server-rendered HTML embedded in the binary, no scripts.
//! This file holds the route handlers and what they share: the session check (anyone
//! without a login goes to /admin/login), the CSRF check on every POST, the
//! flash-and-redirect after an action, HTML error pages and the security headers. The
//! numbers and actions come from `app::admin`, `app::accounts` and `app::terms`, as for the
//! JSON API.

mod account;
mod chart;
mod format;
mod html;
mod login;
mod maintenance;
mod overview;
mod session;
mod terms;
mod user;

pub use session::Sessions;

use super::error::ApiError;
use super::now_ms;
use super::{App, Ctx, Head};
use crate::http::Body;
use ::http::{HeaderValue, Response, StatusCode, header};
use html::{Chrome, Tab};
use maud::{Markup, html};
use session::{Flash, SESSION_COOKIE, Visitor, same_token};
use std::collections::HashMap;

type Handled = Result<Response<Body>, ApiError>;

/// A form's fields by name.
pub type Form = HashMap<String, String>;

/// What a page handler produces; the shell (top bar, flash) is added around `content`.
pub struct Page {
    pub title: String,
    pub tab: Tab,
    pub content: Markup,
}

/// An action's answer: where to go next and what to say there.
pub struct Done {
    pub location: String,
    pub flash: Flash,
}

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Headers every dashboard answer carries: never cached, never framed, never sniffed.
fn secure(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
}

fn html_response(status: StatusCode, html: String) -> Response<Body> {
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure(&mut response);
    response
}

/// 303 See Other: after a POST the browser GETs `location`.
fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let location = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/admin"));
    response.headers_mut().insert(header::LOCATION, location);
    secure(&mut response);
    response
}

fn add_cookie(response: &mut Response<Body>, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Whether a TLS proxy says the browser came over HTTPS (then cookies get `Secure`).
fn over_https(ctx: &Ctx<'_>) -> bool {
    ctx.request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The signed-in visitor, or everyone under open access; `None` sends them to log in.
fn find_visitor(ctx: &Ctx<'_>) -> Option<Visitor> {
    visitor_of(ctx.app, ctx.request)
}

fn visitor_of(app: &App, head: &Head) -> Option<Visitor> {
    if app.config.auth.is_open() {
        return Some(app.sessions.open_access());
    }
    let token = session::cookie(head, SESSION_COOKIE)?;
    app.sessions.find(token, &app.config.auth.admin_keys, now_ms()).unwrap_or_else(|error| {
        // Storage trouble: no page can be built anyway; the login page says what it can.
        log::warn!("cannot read a dashboard session: {error}", error = crate::logging::Chain(&error));
        None
    })
}

/// Whether the request comes from a signed-in visitor (or open access): checked from the
/// head, before a form is read, for every `Access::Session` route.
pub fn has_visitor(app: &App, head: &Head) -> bool {
    visitor_of(app, head).is_some()
}

/// Where anyone without a login is sent.
pub fn to_login_page() -> Response<Body> {
    redirect("/admin/login")
}

fn to_login() -> Handled {
    Ok(to_login_page())
}

fn render(status: StatusCode, page: Page, visitor: Option<&Visitor>, flash: Option<Flash>) -> Response<Body> {
    let chrome = Chrome { visitor, flash, tab: page.tab };
    html_response(status, html::document(&page.title, &chrome, page.content).into_string())
}

/// An `ApiError` as a page that says what went wrong in plain words.
fn error_page(error: ApiError, visitor: Option<&Visitor>) -> Handled {
    let mut response = error_document(&error, visitor);
    for (name, value) in error.headers() {
        if name == header::RETRY_AFTER {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(response)
}

fn error_document(error: &ApiError, visitor: Option<&Visitor>) -> Response<Body> {
    let heading = match error.status().as_u16() {
        400 => "That request is not valid",
        401 => "Not signed in",
        403 => "Not allowed",
        404 => "Not found",
        413 => "Too large",
        415 => "Unsupported form",
        429 => "Too many attempts",
        503 => "Temporarily unavailable",
        500..=599 => "Something went wrong",
        _ => "The request was refused",
    };
    let content = html! {
        div.panel { h1 { (heading) } p { (error.message()) } p { a href="/admin" { "Back to the overview" } } }
    };
    let page = Page { title: heading.to_owned(), tab: Tab::None, content };
    render(error.status(), page, visitor, None)
}

/// A GET page: requires a session, shows the waiting flash message.
fn page(ctx: &mut Ctx<'_>, build: fn(&mut Ctx<'_>, &Visitor) -> Result<Page, ApiError>) -> Handled {
    let Some(visitor) = find_visitor(ctx) else {
        return to_login();
    };
    let built = build(ctx, &visitor);
    let flash = ctx.app.sessions.take_flash(&visitor).unwrap_or_else(|error| {
        log::warn!("cannot read a dashboard flash message: {error}", error = crate::logging::Chain(&error));
        None
    });
    match built {
        Ok(page) => Ok(render(StatusCode::OK, page, Some(&visitor), flash)),
        Err(error) => error_page(error, Some(&visitor)),
    }
}

/// The 403 a POST without the session's CSRF token gets; it changed nothing.
fn csrf_refused(visitor: Option<&Visitor>) -> Response<Body> {
    let content = html! {
        div.panel {
            h1 { "This form has expired" }
            p {
                "The form was not sent from this dashboard's current session, so nothing was changed. Go \
                 back, reload the page and try again."
            }
            p { a href="/admin" { "Back to the overview" } }
        }
    };
    let page = Page { title: "Form expired".to_owned(), tab: Tab::None, content };
    render(StatusCode::FORBIDDEN, page, visitor, None)
}

/// A POST checked: the visitor and their form, or the answer to give instead.
enum Checked {
    Passed(Visitor, Form),
    /// The login page, an error page, or 403 for a missing or wrong CSRF token.
    Answered(Handled),
}

/// Checks the session, reads the form, and checks the form's CSRF token.
fn checked_form(ctx: &mut Ctx<'_>) -> Checked {
    let Some(visitor) = find_visitor(ctx) else {
        return Checked::Answered(to_login());
    };
    let form = ctx.form_body();
    if !form.get("csrf").is_some_and(|given| same_token(given, &visitor.csrf)) {
        log::warn!("dashboard: a POST to {} without the session's CSRF token was refused", ctx.request.uri().path());
        return Checked::Answered(Ok(csrf_refused(Some(&visitor))));
    }
    Checked::Passed(visitor, form)
}

/// A POST action: requires a session and its CSRF token, then redirects with a flash.
fn action(ctx: &mut Ctx<'_>, act: fn(&mut Ctx<'_>, &Visitor, &Form) -> Result<Done, ApiError>) -> Handled {
    let (visitor, form) = match checked_form(ctx) {
        Checked::Passed(visitor, form) => (visitor, form),
        Checked::Answered(answer) => return answer,
    };
    match act(ctx, &visitor, &form) {
        Ok(done) => {
            if let Err(error) = ctx.app.sessions.set_flash(&visitor, done.flash) {
                log::warn!("cannot keep a dashboard flash message: {error}", error = crate::logging::Chain(&error));
            }
            Ok(redirect(&done.location))
        }
        Err(error) => error_page(error, Some(&visitor)),
    }
}

/// An operation's result as a flash: its success message, or the refusal's message (a
/// refusal changed nothing). Server failures stay errors.
fn outcome<T, E: Into<ApiError>>(result: Result<T, E>, message: impl FnOnce(T) -> String) -> Result<Flash, ApiError> {
    match result.map_err(Into::into) {
        Ok(value) => Ok(Flash::ok(message(value))),
        Err(error) if error.status().is_client_error() => Ok(Flash::error(error.message().to_owned())),
        Err(error) => Err(error),
    }
}

/// The `{user_id}` path parameter, validated.
fn user_id(ctx: &Ctx<'_>) -> Result<crate::domain::user_id::UserId, ApiError> {
    super::users::user_id_param(ctx)
}

pub fn overview(ctx: &mut Ctx<'_>) -> Handled {
    page(ctx, overview::page)
}

pub fn login_page(ctx: &mut Ctx<'_>) -> Handled {
    login::page(ctx)
}

pub fn login(ctx: &mut Ctx<'_>) -> Handled {
    login::login(ctx)
}

pub fn logout(ctx: &mut Ctx<'_>) -> Handled {
    let visitor = match checked_form(ctx) {
        Checked::Passed(visitor, _) => visitor,
        Checked::Answered(answer) => return answer,
    };
    let Some(token) = &visitor.token else {
        return Ok(redirect("/admin"));
    };
    ctx.app.sessions.remove(token)?;
    log::info!("dashboard: {} signed out", visitor.actor);
    let mut response = redirect("/admin/login?signed_out=1");
    add_cookie(&mut response, &session::set_cookie(SESSION_COOKIE, "", "/admin", 0, over_https(ctx)));
    Ok(response)
}

pub fn find_user(ctx: &mut Ctx<'_>) -> Handled {
    page_or_redirect(ctx, |ctx| {
        let params = &ctx.query;
        let wanted = params.get("user_id").map(|text| text.trim()).unwrap_or_default();
        if wanted.is_empty() {
            return Ok("/admin".to_owned());
        }
        crate::domain::user_id::validate_user_id(wanted).map_err(ApiError::invalid)?;
        // An exact account id goes to the account, unless a user has the same id.
        let id = crate::domain::user_id::UserId::parse(wanted).map_err(ApiError::invalid)?;
        if account::exists(ctx, &id)?
            && crate::app::admin::user_details(&ctx.app.store, &ctx.app.rules, &id, 1)?.is_none()
        {
            return Ok(html::account_path(wanted));
        }
        Ok(html::user_path(wanted))
    })
}

/// The accounts list, or with `account_id` (its search field) that account's page.
pub fn accounts(ctx: &mut Ctx<'_>) -> Handled {
    if ctx.query.contains_key("account_id") {
        return page_or_redirect(ctx, account::find);
    }
    page(ctx, account::list)
}

pub fn account_page(ctx: &mut Ctx<'_>) -> Handled {
    page(ctx, account::page)
}

pub fn change_account_plan(ctx: &mut Ctx<'_>) -> Handled {
    action(ctx, account::change_plan)
}

/// Sets a user's or an account's override (the path says whose).
pub fn set_override(ctx: &mut Ctx<'_>) -> Handled {
    action(ctx, terms::set_override)
}

pub fn remove_override(ctx: &mut Ctx<'_>) -> Handled {
    action(ctx, terms::remove_override)
}

pub fn add_grant(ctx: &mut Ctx<'_>) -> Handled {
    action(ctx, terms::add_grant)
}

pub fn revoke_grant(ctx: &mut Ctx<'_>) -> Handled {
    action(ctx, terms::revoke_grant)
}

/// A GET that answers with a redirect, or an error page.
fn page_or_redirect(ctx: &mut Ctx<'_>, decide: fn(&mut Ctx<'_>) -> Result<String, ApiError>) -> Handled {
    let Some(visitor) = find_visitor(ctx) else {
        return to_login();
    };
    match decide(ctx) {
        Ok(location) => Ok(redirect(&location)),
        Err(error) => error_page(error, Some(&visitor)),
    }
}

pub fn user_page(ctx: &mut Ctx<'_>) -> Handled {
    page(ctx, user::page)
}

pub fn change_plan(ctx: &mut Ctx<'_>) -> Handled {
    action(ctx, user::change_plan)
}

pub fn reset(ctx: &mut Ctx<'_>) -> Handled {
    action(ctx, user::reset)
}

pub fn export(ctx: &mut Ctx<'_>) -> Handled {
    let Some(visitor) = find_visitor(ctx) else {
        return to_login();
    };
    let exported = user_id(ctx).and_then(|user_id| {
        let response = super::export::response(ctx, &user_id, super::export::Format::Json)?;
        Ok((user_id, response))
    });
    let (user_id, mut response) = match exported {
        Ok(exported) => exported,
        Err(error) => return error_page(error, Some(&visitor)),
    };
    let file_name: String =
        user_id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') { c } else { '_' }).collect();
    let headers = response.headers_mut();
    let disposition = format!("attachment; filename=\"tally-user-{file_name}.json\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    secure(&mut response);
    Ok(response)
}

pub fn erase_page(ctx: &mut Ctx<'_>) -> Handled {
    page(ctx, user::erase_page)
}

pub fn erase(ctx: &mut Ctx<'_>) -> Handled {
    action(ctx, user::erase)
}

pub fn maintenance(ctx: &mut Ctx<'_>) -> Handled {
    page(ctx, maintenance::page)
}

pub fn cleanup(ctx: &mut Ctx<'_>) -> Handled {
    action(ctx, maintenance::cleanup)
}
