//! A user's page (`/admin/users/{user_id}`): plan, this period's usage against the limits,
//! features, monthly history, and the actions (change plan, reset the period, export,
//! erase after a typed confirmation). Reads and actions go through `app::admin`.

use super::format::{Unit, metric_label, money, percent, thousands, utc_minute, wait};
use super::html::{Tab, account_path, csrf_field, user_path};
use super::session::{Flash, Visitor};
use super::terms;
use super::{Done, Form, Page, outcome, user_id};
use crate::app::admin::{self as ops, UserDetails};
use crate::app::forecasts::{self, MetricForecast};
use crate::domain::admin::MetricValues;
use crate::domain::feature::{FeatureKind, FeatureVerdict};
use crate::domain::period::Period;
use crate::domain::plan::{Enforcement, Metric};
use crate::domain::terms::{Customer, Source};
use crate::domain::usage::Standing;
use crate::http::error::ApiError;
use crate::http::users::user_not_found;
use crate::http::{Ctx, now_ms};
use maud::{Markup, html};

const HISTORY_MONTHS: u32 = 12;

pub fn page(ctx: &mut Ctx<'_>, visitor: &Visitor) -> Result<Page, ApiError> {
    let user_id = user_id(ctx)?;
    let details = ops::user_details(&ctx.app.store, &ctx.app.rules, &user_id, HISTORY_MONTHS)?
        .ok_or_else(|| user_not_found(&user_id))?;
    let metrics: Vec<Metric> = ctx.app.rules.catalog.metrics().cloned().collect();
    let currency = &ctx.app.rules.currency;
    let plans: Vec<(String, String)> = ctx
        .app
        .rules
        .catalog
        .plans()
        .iter()
        .map(|plan| (plan.name.clone(), money(plan.price_cents, currency)))
        .collect();
    let customer = Customer::User(&user_id);
    let over = terms::find_override(&ctx.app.store, customer)?;
    let grants = terms::grants(&ctx.app.store, customer)?;
    let terms = html! {
        div.grid.two {
            (terms::override_panel(&ctx.app.rules, customer, over.as_ref(), visitor, now_ms()))
            (terms::grants_panel(&ctx.app.rules, customer, &grants, details.standing.period, visitor))
        }
    };
    // The forecast is a help, not the page: a failure to project leaves the line out.
    let forecast = forecasts::user_forecast(&ctx.app.store, &ctx.app.rules, &user_id, None, now_ms())
        .map(|forecast| forecast.metrics)
        .unwrap_or_default();
    let content = render(&details, &metrics, &plans, visitor, terms, &forecast);
    Ok(Page { title: user_id.to_string(), tab: Tab::Users, content })
}

pub fn render(
    details: &UserDetails,
    metrics: &[Metric],
    plans: &[(String, String)],
    visitor: &Visitor,
    terms: Markup,
    forecast: &[MetricForecast],
) -> Markup {
    let user_id = &details.standing.user.user_id;
    let path = user_path(user_id);
    let period = details.standing.period;
    html! {
        div.head {
            h1 {
                span.mono { (user_id) } " " span.badge data-plan=(details.standing.plan) { (details.standing.plan) }
                @if details.standing.bypass { " " span.badge.warn title="In admin_user_ids" { "limits bypassed" } }
            }
            a.button href={ (path) "/export" } download { "Export JSON" }
        }
        p.muted {
            "First seen " (utc_minute(details.standing.user.created_at_ms)) ". Limits are counted per UTC month; this one is "
            (period) "."
        }
        @if let Some(account_id) = &details.standing.account_id {
            p.member {
                "Member of account " a.mono href=(account_path(account_id)) { (account_id) }
                ": the account's plan and pooled counters apply; the usage below is the pool's, and an override \
                 of this user's limits caps their own use inside it."
            }
        }
        section.panel {
            h2 { "Usage in " (period) }
            div.usage {
                @for (name, standing) in &details.standing.usage {
                    @let projected = forecast.iter().find(|metric| metric.metric == *name);
                    (usage(name, standing, metrics, &details.standing.plan, projected))
                }
            }
        }
        div.grid.two {
            (features(&details.standing.features))
            (actions(details, metrics, plans, visitor, &path))
        }
        (terms)
        (history(&details.history, metrics))
    }
}

/// One metric this period: used, against the limit if there is one, and where the limit
/// comes from (plan or override, plus grants and rollover).
pub(super) fn usage(
    name: &str,
    standing: &Standing,
    metrics: &[Metric],
    plan: &str,
    forecast: Option<&MetricForecast>,
) -> Markup {
    let unit = Unit::of_metric(metrics, name);
    html! {
        div.metric data-metric=(name) data-source=(source_word(standing.source)) data-granted=(standing.granted)
            data-rollover=(standing.rollover) {
            h3 { (metric_label(name)) }
            @match standing.limit {
                Some(limit) => {
                    @let share = if limit == 0 { 1.0 } else { standing.used as f64 / limit as f64 };
                    @let class = match (standing.enforcement, share >= 1.0) {
                        (Enforcement::Hard, true) => "meter full",
                        (Enforcement::Soft, true) => "meter soft",
                        _ => "meter",
                    };
                    @let kind = if standing.enforcement == Enforcement::Hard { "hard limit" } else { "soft limit" };
                    div {
                        span.used data-raw=(standing.used) { (unit.value(standing.used)) }
                        " " span.sub { "of " (unit.phrase(limit)) }
                    }
                    div class=(class) aria-hidden="true" { span style=(meter_width(standing.used, share)) {} }
                    div.muted {
                        (percent(share)) " of the " (kind)
                        @if standing.over_soft_limit {
                            " " span.badge.warn { "over the soft limit" }
                        } @else if let Some(remaining) = standing.remaining {
                            "; " (unit.value(remaining)) " left"
                        }
                    }
                    (terms_line(standing, unit))
                }
                None => {
                    div {
                        span.used data-raw=(standing.used) { (unit.value(standing.used)) }
                        @if !unit.word().is_empty() { " " span.sub { (unit.word()) } }
                    }
                    div.muted {
                        @if standing.source == Source::Override { "No limit (override)" } @else { "No limit on " (plan) }
                    }
                }
            }
            @if let Some(forecast) = forecast {
                (forecast_line(forecast, unit))
            }
        }
    }
}

/// Where the month is heading: the projected total with its 80% interval, and when the limit
/// runs out if it will.
pub(super) fn forecast_line(forecast: &MetricForecast, unit: Unit<'_>) -> Markup {
    html! {
        div.muted.forecast data-projected=(forecast.projected) data-low=(forecast.low) data-high=(forecast.high) {
            "Projected by the month's end: " (unit.value(forecast.projected))
            " (80%: " (unit.value(forecast.low)) " to " (unit.value(forecast.high)) ")"
            @if let Some(at) = forecast.exhausted_at_ms {
                "; " span.badge.warn { "runs out " (utc_minute(at)) }
            }
        }
    }
}

fn source_word(source: Source) -> &'static str {
    match source {
        Source::Plan => "plan",
        Source::Override => "override",
    }
}

/// What the limit is made of, when it is more than the plan's value.
fn terms_line(standing: &Standing, unit: Unit<'_>) -> Markup {
    html! {
        @if standing.source == Source::Override || standing.granted > 0 || standing.rollover > 0 {
            div.muted.terms {
                @if standing.source == Source::Override { span.badge.plain { "override" } " " }
                @if standing.granted > 0 { "includes " (unit.phrase(standing.granted)) " granted" }
                @if standing.granted > 0 && standing.rollover > 0 { ", " }
                @if standing.rollover > 0 { (unit.phrase(standing.rollover)) " rolled over" }
            }
        }
    }
}

/// A meter's fill: its share of the limit, and never thinner than a sliver once something
/// is used (30 of 10,000 is 0.3%, under a pixel).
fn meter_width(used: u64, share: f64) -> String {
    const SLIVER_PERCENT: f64 = 2.0;
    let percent = if used == 0 { 0.0 } else { (share * 100.0).clamp(SLIVER_PERCENT, 100.0) };
    format!("width:{percent:.1}%")
}

pub(super) fn features(verdicts: &[FeatureVerdict]) -> Markup {
    html! {
        section.panel {
            h2 { "Features" }
            @if verdicts.is_empty() {
                p.empty { "No features are configured." }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { "Feature" }
                        th scope="col" { "Access" }
                        th scope="col" class="num" { "Left now" }
                    } }
                    tbody {
                        @for verdict in verdicts {
                            tr {
                                th scope="row" {
                                    (verdict.feature)
                                    @if verdict.source == Source::Override { " " span.badge.plain { "override" } }
                                }
                                td { (access(verdict)) }
                                td.num { (left_now(verdict)) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// What the plan grants: a rate shows even when this window is used up.
fn access(verdict: &FeatureVerdict) -> Markup {
    let granted = verdict.bypass || verdict.plan_required.is_none() && verdict.limit != Some(0);
    html! {
        @match (granted, verdict.kind, verdict.limit, verdict.window_secs) {
            (true, FeatureKind::Rate, Some(limit), Some(window)) => {
                span class=(if verdict.allowed { "badge ok" } else { "badge warn" }) {
                    (thousands(limit.into())) " per " (window_words(window))
                }
            }
            (true, _, _, _) if verdict.allowed => span.badge.ok { "granted" },
            _ => @match &verdict.plan_required {
                Some(plan) => span.badge.plain { "needs " (plan) },
                None => span.badge.plain { "not granted" },
            },
        }
    }
}

/// Uses left in the window now, and how long a used-up window stays so.
fn left_now(verdict: &FeatureVerdict) -> Markup {
    html! {
        @match (verdict.remaining_in_window, verdict.full_window_frees_in_ms) {
            (Some(left), Some(frees_in_ms)) if !verdict.allowed => {
                (thousands(left.into())) " left for " (wait(frees_in_ms))
            }
            (Some(left), _) => (thousands(left.into())),
            (None, _) => "—",
        }
    }
}

fn actions(
    details: &UserDetails,
    metrics: &[Metric],
    plans: &[(String, String)],
    visitor: &Visitor,
    path: &str,
) -> Markup {
    html! {
        section.panel {
            h2 { "Actions" }
            div.actions {
                section {
                    h3 { "Change plan" }
                    form method="post" action={ (path) "/plan" } {
                        (csrf_field(visitor))
                        div.inline {
                            div.field {
                                label for="plan" { "Plan" }
                                select #plan name="plan" {
                                    @for (plan, price) in plans {
                                        option value=(plan) selected[*plan == details.standing.plan] {
                                            (plan) " (" (price) " a month)"
                                        }
                                    }
                                }
                            }
                            button.primary type="submit" { "Change plan" }
                        }
                    }
                }
                section {
                    h3 { "Reset " (details.standing.period) }
                    form method="post" action={ (path) "/reset" } {
                        (csrf_field(visitor))
                        div.inline {
                            div.field {
                                label for="reset-metric" { "Metric" }
                                select #reset-metric name="metric" {
                                    option value="" { "All metrics" }
                                    @for metric in metrics {
                                        option value=(metric.name) { (metric_label(&metric.name)) }
                                    }
                                }
                            }
                            button type="submit" { "Reset" }
                        }
                    }
                    p.hint { "Sets this month's counters to zero. The audit log keeps what they were." }
                }
                section {
                    h3 { "Erase" }
                    p.hint { "Deletes the user and everything held about them." }
                    a.button.danger href={ (path) "/erase" } { "Erase user…" }
                }
            }
        }
    }
}

pub(super) fn history(months: &[(Period, MetricValues)], metrics: &[Metric]) -> Markup {
    html! {
        section.panel {
            h2 { "History " span.sub { "the last " (months.len()) " months" } }
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Month" }
                    @for metric in metrics { th scope="col" class="num" { (metric_label(&metric.name)) } }
                } }
                tbody {
                    @for (month, values) in months {
                        tr data-period=(month) {
                            th scope="row" { (month) }
                            @for (name, value) in values {
                                td class=(if *value == 0 { "num muted" } else { "num" }) data-raw=(value) {
                                    (Unit::of_metric(metrics, name).value(*value))
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn window_words(window_secs: u32) -> String {
    match window_secs {
        60 => "minute".to_owned(),
        3600 => "hour".to_owned(),
        86_400 => "day".to_owned(),
        seconds => format!("{} s", thousands(seconds.into())),
    }
}

/// `POST /admin/users/{user_id}/plan`.
pub fn change_plan(ctx: &mut Ctx<'_>, visitor: &Visitor, form: &Form) -> Result<Done, ApiError> {
    let user_id = user_id(ctx)?;
    let plan = form.get("plan").map(String::as_str).unwrap_or_default();
    let changed =
        ops::change_plan(&ctx.app.store, &ctx.app.rules, &user_id, plan, Some(&visitor.actor), |_, _, user, _| {
            Ok(user.plan.clone())
        });
    let flash = outcome(changed, |plan| format!("{user_id} is now on {plan}."))?;
    Ok(Done { location: user_path(&user_id), flash })
}

/// `POST /admin/users/{user_id}/reset`: one metric, or all when `metric` is empty.
pub fn reset(ctx: &mut Ctx<'_>, visitor: &Visitor, form: &Form) -> Result<Done, ApiError> {
    let user_id = user_id(ctx)?;
    let metric = form.get("metric").map(String::as_str).filter(|metric| !metric.is_empty());
    let units: Vec<Metric> = ctx.app.rules.catalog.metrics().cloned().collect();
    let flash = outcome(ops::reset(&ctx.app.store, &ctx.app.rules, &user_id, metric, &visitor.actor), |report| {
        let before: Vec<String> = report
            .before
            .iter()
            .map(|(name, value)| format!("{} {}", metric_label(name), Unit::of_metric(&units, name).value(*value)))
            .collect();
        format!("Reset {user_id}'s usage in {}; it was {}.", report.period, before.join(", "))
    })?;
    Ok(Done { location: user_path(&user_id), flash })
}

/// `GET /admin/users/{user_id}/erase`: says what erasing does and asks for the id.
pub fn erase_page(ctx: &mut Ctx<'_>, visitor: &Visitor) -> Result<Page, ApiError> {
    let user_id = user_id(ctx)?;
    ops::user_details(&ctx.app.store, &ctx.app.rules, &user_id, 1)?.ok_or_else(|| user_not_found(&user_id))?;
    let path = user_path(&user_id);
    let content = html! {
        div.panel.login style="max-width:34rem" {
            h1 { "Erase " span.mono { (user_id) } "?" }
            p {
                "This deletes " strong.mono { (user_id) } " with their counters, feature uses and saved answers. \
                 Audit rows that name them will name a hash instead. It cannot be undone."
            }
            p { "Need a copy first? " a href={ (path) "/export" } download { "Export their data" } "." }
            form method="post" action={ (path) "/erase" } {
                (csrf_field(visitor))
                div.field {
                    label for="confirm" { "Type " code { (user_id) } " to confirm" }
                    input #confirm name="confirm" required autocomplete="off" spellcheck="false" autocapitalize="off";
                }
                div.inline {
                    button.danger type="submit" { "Erase user" }
                    a.button href=(path) { "Cancel" }
                }
            }
        }
    };
    Ok(Page { title: format!("Erase {user_id}"), tab: Tab::Users, content })
}

/// `POST /admin/users/{user_id}/erase`: only when `confirm` is the user id.
pub fn erase(ctx: &mut Ctx<'_>, visitor: &Visitor, form: &Form) -> Result<Done, ApiError> {
    let user_id = user_id(ctx)?;
    if form.get("confirm").map(|text| text.trim()) != Some(user_id.as_str()) {
        let flash = Flash::error(format!("Nothing was erased: type {user_id} exactly to confirm."));
        return Ok(Done { location: format!("{}/erase", user_path(&user_id)), flash });
    }
    match ops::erase(&ctx.app.store, &ctx.app.rules, &user_id, &visitor.actor).map_err(ApiError::from) {
        Ok(hash) => Ok(Done {
            location: "/admin".to_owned(),
            flash: Flash::ok(format!("Erased {user_id}. The audit log now names them {hash}.")),
        }),
        Err(error) if error.status().is_client_error() => {
            Ok(Done { location: user_path(&user_id), flash: Flash::error(error.message().to_owned()) })
        }
        Err(error) => Err(error),
    }
}
