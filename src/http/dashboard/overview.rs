//! The overview page (`GET /admin?period=YYYY-MM&metric=NAME`): a card per metric total and
//! for active users and revenue, the plan distribution chart, the top users, and every
//! metric over the last 12 months. Numbers come from `app::admin::summary`, as the API's do.

use super::Page;
use super::chart::{self, PlanMeasure};
use super::format::utc_minute;
use super::format::{Unit, metric_label, money, thousands};
use super::html::{Tab, account_path, query_value, user_path};
use super::session::Visitor;
use crate::app::admin as ops;
use crate::app::forecasts;
use crate::domain::admin::{MetricValues, Summary};
use crate::domain::period::Period;
use crate::domain::plan::Metric;
use crate::domain::ports::{CounterOwner, ForecastRecord};
use crate::http::Ctx;
use crate::http::error::ApiError;
use crate::http::now_ms;
use maud::{Markup, html};

const TOP_USERS: u32 = 10;
const MONTHS: u32 = 12;

/// Everything the overview shows, read before any HTML is written.
pub struct Overview {
    pub period: Period,
    pub current: Period,
    pub metrics: Vec<Metric>,
    pub summary: Summary,
    /// Totals of every metric per month, oldest first, ending with `period`.
    pub months: Vec<(Period, MetricValues)>,
    /// Of every amount shown.
    pub currency: String,
    /// The forecast job's projections of `period` (none for a past month, or before its
    /// first run).
    pub forecasts: Vec<ForecastRecord>,
}

pub fn page(ctx: &mut Ctx<'_>, _visitor: &Visitor) -> Result<Page, ApiError> {
    let params = &ctx.query;
    let now_ms = now_ms();
    let current = Period::of_unix_ms(now_ms);
    // The month picker sends an empty period for "this month".
    let period = crate::http::params::parse_period(
        params.get("period").map(String::as_str).filter(|text| !text.is_empty()),
        now_ms,
    )?;
    let catalog = &ctx.app.rules.catalog;
    let metric = crate::http::params::metric_param(&ctx.app.rules, params)?;
    let read = ops::overview(&ctx.app.store, &ctx.app.rules, period, &metric, TOP_USERS, MONTHS)?;
    let (summary, months) = (read.summary, read.months);
    let metrics = catalog.metrics().cloned().collect();
    let currency = ctx.app.rules.currency.clone();
    let forecasts = if period == current { forecasts::stored(&ctx.app.store, period, None)? } else { Vec::new() };
    let overview = Overview { period, current, metrics, summary, months, currency, forecasts };
    Ok(Page { title: format!("Overview {period}"), tab: Tab::Overview, content: render(&overview) })
}

/// The month after `period`, if it is a valid one.
fn next_period(period: Period) -> Option<Period> {
    let text = period.to_string();
    let year: i32 = text.get(..4)?.parse().ok()?;
    let month: u32 = text.get(5..)?.parse().ok()?;
    if month == 12 { Period::new(year + 1, 1) } else { Period::new(year, month + 1) }
}

fn link(period: Period, metric: &str, first_metric: &str) -> String {
    if metric == first_metric {
        format!("/admin?period={period}")
    } else {
        format!("/admin?period={period}&metric={}", query_value(metric))
    }
}

fn card(key: &str, label: &str, raw: u64, shown: &str, note: &str) -> Markup {
    html! {
        div.card data-metric=(key) {
            span.label { (label) }
            span.value data-raw=(raw) { (shown) }
            span.unit { (note) }
        }
    }
}

pub fn render(view: &Overview) -> Markup {
    let Overview { period, current, metrics, summary, months, currency, forecasts } = view;
    let first_metric = metrics.first().map_or("", |metric| metric.name.as_str());
    let users_total = summary.distribution.users_total;
    let revenue = summary.distribution.revenue_cents_total;
    let active_note =
        format!("with usage, of {} {}", thousands(users_total), if users_total == 1 { "user" } else { "users" });
    html! {
        // Heading and the period picker (a plain GET form; the arrows are links).
        div.head {
            h1 { "Overview " span.sub { (period) } }
            form.period method="get" action="/admin" {
                a.button href=(link(period.months_before(1), &summary.metric, first_metric)) title="Previous month"
                    aria-label="Previous month" { "←" }
                label.sr-only for="period" { "Period" }
                input #period name="period" type="month" value=(period) pattern="[0-9]{4}-[0-9]{2}"
                    placeholder="YYYY-MM" required;
                @if summary.metric != first_metric {
                    input type="hidden" name="metric" value=(summary.metric);
                }
                button type="submit" { "Show" }
                @match next_period(*period).filter(|next| next <= current) {
                    Some(next) => a.button href=(link(next, &summary.metric, first_metric)) title="Next month"
                        aria-label="Next month" { "→" },
                    None => a.button aria-disabled="true" title="No later month yet" { "→" },
                }
            }
        }

        section.grid.cards aria-label={ "Totals in " (period) } {
            @for (name, value) in &summary.totals {
                @let unit = Unit::of_metric(metrics, name);
                @let note = match unit {
                    Unit::Bytes => format!("{} bytes", thousands(*value)),
                    Unit::Count(word) => format!("{word} in {period}"),
                };
                (card(name, &metric_label(name), *value, &unit.value(*value), &note))
            }
            (card("active_users", "Active users", summary.active_users, &thousands(summary.active_users), &active_note))
            (card("revenue_cents", "Revenue estimate", revenue, &money(revenue, currency), "a month at current prices"))
        }

        div.grid.two {
            section.panel aria-labelledby="plans-heading" {
                h2 #plans-heading { "Plans " span.sub { "all users, now" } }
                @if users_total == 0 {
                    p.empty { "No users yet. Users appear once Tally sees them." }
                } @else {
                    h3 { "Users " span.sub { (thousands(users_total)) " in all" } }
                    (chart::plan_bars(&summary.distribution.plans, PlanMeasure::Users, currency))
                    h3.spaced { "Revenue estimate " span.sub { (money(revenue, currency)) " a month at current prices" } }
                    (chart::plan_bars(&summary.distribution.plans, PlanMeasure::Revenue, currency))
                }
            }
            (top_users(view, first_metric))
        }

        (running_out(forecasts, metrics))
        (by_month(*period, metrics, months, forecasts))
    }
}

fn top_users(view: &Overview, first_metric: &str) -> Markup {
    let Overview { period, current, metrics, summary, .. } = view;
    html! {
        section.panel aria-labelledby="top-heading" {
            h2 #top-heading {
                "Top users " span.sub { "by " (metric_label(&summary.metric).to_lowercase()) " in " (period) }
            }
            @if summary.top_users.is_empty() {
                p.empty { "No usage recorded in " (period) @if period >= current { " yet" } "." }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { "User" }
                        th scope="col" { "Plan" }
                        @for metric in metrics {
                            @let sorted = metric.name == summary.metric;
                            th scope="col" class={ "num" @if sorted { " sorted" } }
                                aria-sort=[sorted.then_some("descending")] {
                                a href=(link(*period, &metric.name, first_metric))
                                    title={ "Sort by " (metric_label(&metric.name).to_lowercase()) } {
                                    (metric_label(&metric.name))
                                }
                            }
                        }
                    } }
                    tbody {
                        @for user in &summary.top_users {
                            tr {
                                th scope="row" { a.mono href=(user_path(&user.user_id)) { (user.user_id) } }
                                td { span.badge.plain { (user.plan) } }
                                @for (name, value) in &user.usage {
                                    td.num data-raw=(value) { (Unit::of_metric(metrics, name).value(*value)) }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// The last 12 months, one small chart per metric.
/// How many customers "Will run out soon" lists.
const RUNNING_OUT: usize = 10;

/// The customers projected past a hard or soft limit this month, soonest first.
fn running_out(forecasts: &[ForecastRecord], metrics: &[Metric]) -> Markup {
    let at_risk: Vec<&ForecastRecord> =
        forecasts.iter().filter(|record| record.limit.is_some_and(|limit| record.projected > limit)).collect();
    html! {
        section.panel aria-labelledby="running-out-heading" {
            h2 #running-out-heading { "Will run out soon " span.sub { "projected past a limit this month" } }
            @if forecasts.is_empty() {
                p.empty { "No forecast yet: the forecast job projects this month every forecast_interval_secs." }
            } @else if at_risk.is_empty() {
                p.empty { "No customer is projected past a limit this month." }
            } @else {
                table.running-out {
                    thead { tr { th { "Customer" } th { "Metric" } th.num { "Used" } th.num { "Limit" } th.num { "Projected" } th { "Runs out" } } }
                    tbody {
                        @for record in at_risk.iter().take(RUNNING_OUT) {
                            @let unit = Unit::of_metric(metrics, &record.metric);
                            @let path = match record.owner {
                                CounterOwner::User(_) => user_path(&record.customer_id),
                                CounterOwner::Account(_) => account_path(&record.customer_id),
                            };
                            tr data-customer=(record.customer_id) {
                                td { a.mono href=(path) { (record.customer_id) } }
                                td { (metric_label(&record.metric)) }
                                td.num { (unit.value(record.used)) }
                                td.num { (unit.value(record.limit.unwrap_or(0))) }
                                td.num { (unit.value(record.projected)) }
                                td { @match record.exhausted_at_ms { Some(at) => (utc_minute(at)), None => "-" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn by_month(
    period: Period,
    metrics: &[Metric],
    months: &[(Period, MetricValues)],
    forecasts: &[ForecastRecord],
) -> Markup {
    let (from, to) = (months.first().map_or(period, |(month, _)| *month), period);
    let any = months.iter().any(|(_, totals)| totals.iter().any(|(_, value)| *value > 0));
    html! {
        section.panel aria-labelledby="months-heading" {
            h2 #months-heading { "Usage by month " span.sub { (from) " to " (to) } }
            @if !any {
                p.empty { "No usage recorded from " (from) " to " (to) "." }
            } @else {
                div.grid.three {
                    @for metric in metrics {
                        @let points: Vec<(Period, u64)> = months
                            .iter()
                            .map(|(month, totals)| {
                                let value =
                                    totals.iter().find(|(name, _)| *name == metric.name).map_or(0, |(_, value)| *value);
                                (*month, value)
                            })
                            .collect();
                        @let label = metric_label(&metric.name);
                        @let projection = projection(forecasts, &metric.name);
                        figure.panel-plain {
                            figcaption { h3 { (label) } }
                            (chart::monthly_columns(&metric.name, &label, Unit::of(&metric.unit), &points, projection))
                        }
                    }
                }
            }
        }
    }
}

/// Every customer's projection of `metric` added up, if the job has projected any.
fn projection(forecasts: &[ForecastRecord], metric: &str) -> Option<chart::Projection> {
    let of_metric: Vec<&ForecastRecord> = forecasts.iter().filter(|record| record.metric == metric).collect();
    if of_metric.is_empty() {
        return None;
    }
    let sum = |value: fn(&ForecastRecord) -> u64| {
        of_metric.iter().map(|record| value(record)).fold(0u64, u64::saturating_add)
    };
    Some((sum(|record| record.low), sum(|record| record.projected), sum(|record| record.high)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::admin::{Distribution, TopUser};

    fn view(totals: MetricValues, top_users: Vec<TopUser>) -> Overview {
        let period: Period = "2026-11".parse().unwrap();
        let metrics = vec![
            Metric { name: "prompts".into(), unit: "prompts".into() },
            Metric { name: "bytes_out".into(), unit: "bytes".into() },
        ];
        let months = (0..12).rev().map(|back| (period.months_before(back), totals.clone())).collect();
        let summary = Summary {
            period,
            metric: "prompts".into(),
            active_users: top_users.len() as u64,
            distribution: Distribution { plans: vec![], users_total: 0, revenue_cents_total: 0 },
            totals,
            top_users,
        };
        Overview { period, current: period, metrics, summary, months, currency: "EUR".into(), forecasts: vec![] }
    }

    #[test]
    fn shows_empty_states_for_a_fresh_database() {
        let html = render(&view(vec![("prompts".into(), 0), ("bytes_out".into(), 0)], vec![])).into_string();
        assert!(html.contains("No usage recorded in 2026-11 yet."), "{html}");
        assert!(html.contains("No users yet."));
        assert!(html.contains("No usage recorded from 2025-12 to 2026-11."));
        assert!(html.contains("<span class=\"value\" data-raw=\"0\">0 B</span>"));
        assert!(html.contains("data-raw=\"0\">0.00 EUR</span>"), "the revenue card names the currency");
    }

    #[test]
    fn shows_bytes_in_human_units_with_the_exact_value_alongside() {
        let user = TopUser {
            user_id: "tim".into(),
            plan: "teams".into(),
            usage: vec![("prompts".into(), 700), ("bytes_out".into(), 1_500_000_000)],
        };
        let html = render(&view(vec![("prompts".into(), 12_725), ("bytes_out".into(), 1_500_000_000)], vec![user]))
            .into_string();
        assert!(html.contains("data-raw=\"1500000000\">1.5 GB</span>"), "{html}");
        assert!(html.contains("1,500,000,000 bytes"));
        assert!(html.contains("data-raw=\"12725\">12,725</span>"));
        assert!(html.contains("<td class=\"num\" data-raw=\"1500000000\">1.5 GB</td>"));
        assert!(html.contains("No later month yet"), "the current month has no next link");
    }

    #[test]
    fn next_period_rolls_over_the_year() {
        assert_eq!(next_period("2026-12".parse().unwrap()), "2027-01".parse().ok());
        assert_eq!(next_period("2026-03".parse().unwrap()), "2026-04".parse().ok());
        assert_eq!(next_period("9999-12".parse().unwrap()), None);
    }
}
