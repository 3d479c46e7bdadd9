//! Accounts on the dashboard: the list (`/admin/accounts`, paged by id like the admin API),
//! an account's page (the pool against its limits, the members and their share of it, the
//! plan, override, grants and the pool's monthly history) and the plan form. Reads and
//! changes go through `app::accounts` and `app::terms`; the override and grant panels are
//! terms.rs's.

use super::format::{Unit, metric_label, money, percent, utc_minute};
use super::html::{Tab, account_path, csrf_field, query_value, user_path};
use super::session::Visitor;
use super::terms::{self, customer_param};
use super::user::{features, history, usage};
use super::{Done, Form, Page, outcome};
use crate::app::accounts as ops;
use crate::domain::account::AccountDetails;
use crate::domain::plan::Metric;
use crate::domain::terms::Customer;
use crate::domain::user_id::UserId;
use crate::http::error::ApiError;
use crate::http::{Ctx, now_ms};
use maud::{Markup, html};

const HISTORY_MONTHS: u32 = 12;
const PAGE_SIZE: u32 = 50;

fn account_id(ctx: &Ctx<'_>) -> Result<UserId, ApiError> {
    customer_param(ctx).map(|(_, id)| id)
}

/// `GET /admin/accounts?before=&account_id=`: a page of accounts; `account_id` (the
/// search field) goes straight to that account.
pub fn list(ctx: &mut Ctx<'_>, _visitor: &Visitor) -> Result<Page, ApiError> {
    let before = match ctx.query.get("before") {
        Some(text) => Some(UserId::parse(text.as_str()).map_err(|problem| {
            ApiError::invalid(format!("before must be an account id from the previous page: {problem}"))
        })?),
        None => None,
    };
    let rows = ops::page(&ctx.app.store, PAGE_SIZE, before.as_deref())?;
    let older = if rows.len() as u32 == PAGE_SIZE { rows.last().map(|(account, _)| &account.account_id) } else { None };
    let content = html! {
        div.head { h1 { "Accounts" } }
        form.inline method="get" action="/admin/accounts" role="search" {
            div.field {
                label for="find-account" { "Account id" }
                input #find-account name="account_id" type="search" required maxlength="128" autocomplete="off" spellcheck="false";
            }
            button type="submit" { "Open" }
        }
        section.panel {
            @if rows.is_empty() {
                p.empty { @if before.is_some() { "No further accounts." } @else { "No accounts yet." } }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { "Account" } th scope="col" { "Plan" } th scope="col" class="num" { "Members" }
                        th scope="col" { "Created" }
                    } }
                    tbody {
                        @for (account, members) in &rows {
                            tr data-account=(account.account_id) {
                                th scope="row" { a.mono href=(account_path(&account.account_id)) { (account.account_id) } }
                                td { span.badge data-plan=(account.plan) { (account.plan) } }
                                td.num data-raw=(members) { (members) }
                                td { (utc_minute(account.created_at_ms)) }
                            }
                        }
                    }
                } }
            }
            p {
                @if before.is_some() { a href="/admin/accounts" { "← First" } " " }
                @if let Some(last) = older { a href={ "/admin/accounts?before=" (query_value(last)) } { "More →" } }
            }
        }
    };
    Ok(Page { title: "Accounts".to_owned(), tab: Tab::Accounts, content })
}

/// `GET /admin/accounts?account_id=`: to the account's page (it says if there is none).
pub fn find(ctx: &mut Ctx<'_>) -> Result<String, ApiError> {
    let wanted = ctx.query.get("account_id").map(|text| text.trim()).unwrap_or_default();
    if wanted.is_empty() {
        return Ok("/admin/accounts".to_owned());
    }
    let id = UserId::parse(wanted).map_err(|problem| ApiError::invalid(problem.replace("user id", "account id")))?;
    Ok(account_path(&id))
}

/// Whether an account with this id exists (for the search box).
pub fn exists(ctx: &Ctx<'_>, id: &UserId) -> Result<bool, ApiError> {
    Ok(ops::find(&ctx.app.store, id)?.is_some())
}

/// `GET /admin/accounts/{account_id}`.
pub fn page(ctx: &mut Ctx<'_>, visitor: &Visitor) -> Result<Page, ApiError> {
    let id = account_id(ctx)?;
    let (details, months) = ops::admin_details(&ctx.app.store, &ctx.app.rules, &id, HISTORY_MONTHS)?;
    let customer = Customer::Account(&id);
    let over = terms::find_override(&ctx.app.store, customer)?;
    let grants = terms::grants(&ctx.app.store, customer)?;
    let rules = &ctx.app.rules;
    let metrics: Vec<Metric> = rules.catalog.metrics().cloned().collect();
    let path = account_path(&id);
    let forecast = crate::app::forecasts::account_forecast(&ctx.app.store, rules, &id, None, now_ms())
        .map(|forecast| forecast.metrics)
        .unwrap_or_default();
    let content = html! {
        div.head {
            h1 { span.mono { (id) } " " span.badge data-plan=(details.plan) { (details.plan) } }
        }
        p.muted {
            "Account created " (utc_minute(details.account.created_at_ms)) ", " (details.members.len())
            @if details.members.len() == 1 { " member" } @else { " members" }
            ". Its plan applies to every member, and their use counts against one pool; this month is "
            (details.period) "."
        }
        section.panel {
            h2 { "Pool usage in " (details.period) }
            div.usage {
                @for (name, standing) in &details.usage {
                    @let projected = forecast.iter().find(|metric| metric.metric == *name);
                    (usage(name, standing, &metrics, &details.plan, projected))
                }
            }
        }
        (members(&details, &metrics))
        div.grid.two {
            (features(&details.features))
            (plan_form(ctx, &details, visitor, &path))
        }
        div.grid.two {
            (terms::override_panel(rules, customer, over.as_ref(), visitor, now_ms()))
            (terms::grants_panel(rules, customer, &grants, details.period, visitor))
        }
        (history(&months, &metrics))
    };
    Ok(Page { title: format!("Account {id}"), tab: Tab::Accounts, content })
}

/// Each member's own counters this month and their share of the pool's.
fn members(details: &AccountDetails, metrics: &[Metric]) -> Markup {
    let pool = |name: &str| details.usage.iter().find(|(metric, _)| metric == name).map_or(0, |(_, s)| s.used);
    html! {
        section.panel {
            h2 { "Members " span.sub { "their own use in " (details.period) " and its share of the pool" } }
            @if details.members.is_empty() {
                p.empty { "No members yet. A user joins with PUT /v1/users/{user_id} {\"account_id\": …}." }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { "Member" }
                        @for metric in metrics { th scope="col" class="num" { (metric_label(&metric.name)) } }
                    } }
                    tbody {
                        @for (member, values) in &details.members {
                            tr data-member=(member.user_id) {
                                th scope="row" { a.mono href=(user_path(&member.user_id)) { (member.user_id) } }
                                @for (name, used) in values {
                                    @let total = pool(name);
                                    td.num data-raw=(used) {
                                        (Unit::of_metric(metrics, name).value(*used))
                                        @if total > 0 { " " span.sub { (percent(*used as f64 / total as f64)) } }
                                    }
                                }
                            }
                        }
                    }
                } }
                p.hint { "A member's own counter also holds what they used this month before joining." }
            }
        }
    }
}

fn plan_form(ctx: &Ctx<'_>, details: &AccountDetails, visitor: &Visitor, path: &str) -> Markup {
    html! {
        section.panel {
            h2 { "Plan" }
            form method="post" action={ (path) "/plan" } {
                (csrf_field(visitor))
                div.inline {
                    div.field {
                        label for="account-plan" { "Plan" }
                        select #account-plan name="plan" {
                            @for plan in ctx.app.rules.catalog.plans() {
                                option value=(plan.name) selected[plan.name == details.plan] {
                                    (plan.name) " (" (money(plan.price_cents, &ctx.app.rules.currency)) " a month)"
                                }
                            }
                        }
                    }
                    button.primary type="submit" { "Change plan" }
                }
            }
            p.hint { "The account pays its plan once; its members do not pay again." }
        }
    }
}

/// `POST /admin/accounts/{account_id}/plan`.
pub fn change_plan(ctx: &mut Ctx<'_>, visitor: &Visitor, form: &Form) -> Result<Done, ApiError> {
    let id = account_id(ctx)?;
    let plan = form.get("plan").map(String::as_str).unwrap_or_default();
    let changed = ops::change_plan(&ctx.app.store, &ctx.app.rules, &id, plan, &visitor.actor);
    let flash = outcome(changed, |details| format!("Account {id} is now on {}.", details.plan))?;
    Ok(Done { location: account_path(&id), flash })
}
