//! The overview page (`GET /admin?period=YYYY-MM&metric=NAME`): a card per metric total and
//! for active users and revenue, the plan distribution chart, the top users, and every
//! metric over the last 12 months. Numbers come from `app::admin::summary`, as the API's do.

use super::Page;
use super::chart::{self, PlanMeasure};
use super::html::{Tab, escape, metric_label, metric_value, money, query_value, thousands, user_path};
use super::session::Visitor;
use crate::app::admin as ops;
use crate::domain::admin::{MetricValues, Summary};
use crate::domain::period::Period;
use crate::domain::plan::Metric;
use crate::http::Ctx;
use crate::http::error::ApiError;
use crate::http::now_ms;
use std::fmt::Write;

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
}

pub fn page(ctx: &mut Ctx<'_>, _visitor: &Visitor) -> Result<Page, ApiError> {
    let params = &ctx.query;
    let current = Period::of_unix_ms(now_ms());
    let period = match params.get("period").filter(|text| !text.is_empty()) {
        Some(text) => text.parse().map_err(|error: crate::domain::period::ParsePeriodError| {
            ApiError::invalid(format!("{error}. Pick a month such as {current}."))
        })?,
        None => current,
    };
    let catalog = &ctx.app.rules.catalog;
    let metric = match params.get("metric") {
        Some(metric) if catalog.has_metric(metric) => metric.clone(),
        Some(metric) => return Err(crate::app::AppError::UnknownMetric { metric: metric.clone() }.into()),
        None => catalog.metrics().next().map(|metric| metric.name.clone()).unwrap_or_default(),
    };
    let summary = ops::summary(&ctx.app.store, &ctx.app.rules, period, &metric, TOP_USERS)?;
    let mut months = Vec::with_capacity(MONTHS as usize);
    for back in (0..MONTHS).rev() {
        let month = period.months_before(back);
        if months.last().is_some_and(|(last, _)| *last == month) {
            continue; // months_before stops at 1970-01
        }
        let totals = if month == period {
            summary.totals.clone()
        } else {
            ops::summary(&ctx.app.store, &ctx.app.rules, month, &metric, 0)?.totals
        };
        months.push((month, totals));
    }
    let metrics = catalog.metrics().cloned().collect();
    let overview = Overview { period, current, metrics, summary, months };
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
        format!("/admin?period={period}&amp;metric={}", query_value(metric))
    }
}

fn unit_of<'m>(metrics: &'m [Metric], name: &str) -> &'m str {
    metrics.iter().find(|metric| metric.name == name).map_or("", |metric| metric.unit.as_str())
}

fn card(out: &mut String, key: &str, label: &str, raw: u64, shown: &str, note: &str) {
    let _ = write!(
        out,
        "<div class=\"card\" data-metric=\"{}\"><span class=\"label\">{}</span>\
         <span class=\"value\" data-raw=\"{raw}\">{}</span><span class=\"unit\">{}</span></div>",
        escape(key),
        escape(label),
        escape(shown),
        escape(note)
    );
}

pub fn render(view: &Overview) -> String {
    let Overview { period, current, metrics, summary, months } = view;
    let first_metric = metrics.first().map_or("", |metric| metric.name.as_str());
    let mut out = String::new();

    // Heading and the period picker (a plain GET form; the arrows are links).
    let _ = write!(
        out,
        "<div class=\"head\"><h1>Overview <span class=\"sub\">{period}</span></h1>\
         <form class=\"period\" method=\"get\" action=\"/admin\">\
         <a class=\"button\" href=\"{}\" title=\"Previous month\" aria-label=\"Previous month\">&larr;</a>\
         <label class=\"sr-only\" for=\"period\">Period</label>\
         <input id=\"period\" name=\"period\" type=\"month\" value=\"{period}\" pattern=\"[0-9]{{4}}-[0-9]{{2}}\" \
         placeholder=\"YYYY-MM\" required>",
        link(period.months_before(1), &summary.metric, first_metric)
    );
    if summary.metric != first_metric {
        let _ = write!(out, "<input type=\"hidden\" name=\"metric\" value=\"{}\">", escape(&summary.metric));
    }
    out.push_str("<button type=\"submit\">Show</button>");
    match next_period(*period).filter(|next| next <= current) {
        Some(next) => {
            let _ = write!(
                out,
                "<a class=\"button\" href=\"{}\" title=\"Next month\" aria-label=\"Next month\">&rarr;</a>",
                link(next, &summary.metric, first_metric)
            );
        }
        None => out.push_str("<a class=\"button\" aria-disabled=\"true\" title=\"No later month yet\">&rarr;</a>"),
    }
    out.push_str("</form></div>");

    // Cards.
    let _ = write!(out, "<section class=\"grid cards\" aria-label=\"Totals in {period}\">");
    for (name, value) in &summary.totals {
        let unit = unit_of(metrics, name);
        let note = if unit == "bytes" { format!("{} bytes", thousands(*value)) } else { format!("{unit} in {period}") };
        card(&mut out, name, &metric_label(name), *value, &metric_value(unit, *value), &note);
    }
    let users_total = summary.distribution.users_total;
    let active_note =
        format!("with usage, of {} {}", thousands(users_total), if users_total == 1 { "user" } else { "users" });
    card(
        &mut out,
        "active_users",
        "Active users",
        summary.active_users,
        &thousands(summary.active_users),
        &active_note,
    );
    let revenue = summary.distribution.revenue_cents_total;
    card(&mut out, "revenue_cents", "Revenue estimate", revenue, &money(revenue), "a month at current prices");
    out.push_str("</section>");

    out.push_str("<div class=\"grid two\">");
    // Plans.
    out.push_str(
        "<section class=\"panel\" aria-labelledby=\"plans-heading\"><h2 id=\"plans-heading\">Plans \
         <span class=\"sub\">all users, now</span></h2>",
    );
    if users_total == 0 {
        out.push_str("<p class=\"empty\">No users yet. Users appear once Tally sees them.</p>");
    } else {
        let _ = write!(
            out,
            "<h3>Users <span class=\"sub\">{} in all</span></h3>{}\
             <h3 class=\"spaced\">Revenue estimate <span class=\"sub\">{} a month at current prices</span></h3>{}",
            thousands(users_total),
            chart::plan_bars(&summary.distribution.plans, PlanMeasure::Users),
            money(revenue),
            chart::plan_bars(&summary.distribution.plans, PlanMeasure::Revenue),
        );
    }
    out.push_str("</section>");

    // Top users.
    let _ = write!(
        out,
        "<section class=\"panel\" aria-labelledby=\"top-heading\"><h2 id=\"top-heading\">Top users \
         <span class=\"sub\">by {} in {period}</span></h2>",
        escape(&metric_label(&summary.metric).to_lowercase())
    );
    if summary.top_users.is_empty() {
        let yet = if period >= current { " yet" } else { "" };
        let _ = write!(out, "<p class=\"empty\">No usage recorded in {period}{yet}.</p>");
    } else {
        out.push_str(
            "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">User</th><th scope=\"col\">Plan</th>",
        );
        for metric in metrics {
            let sorted = metric.name == summary.metric;
            let _ = write!(
                out,
                "<th scope=\"col\" class=\"num{}\"{}><a href=\"{}\" title=\"Sort by {}\">{}</a></th>",
                if sorted { " sorted" } else { "" },
                if sorted { " aria-sort=\"descending\"" } else { "" },
                link(*period, &metric.name, first_metric),
                escape(&metric_label(&metric.name).to_lowercase()),
                escape(&metric_label(&metric.name))
            );
        }
        out.push_str("</tr></thead><tbody>");
        for user in &summary.top_users {
            let _ = write!(
                out,
                "<tr><th scope=\"row\"><a class=\"mono\" href=\"{}\">{}</a></th><td><span class=\"badge plain\">{}</span></td>",
                escape(&user_path(&user.user_id)),
                escape(&user.user_id),
                escape(&user.plan)
            );
            for (name, value) in &user.usage {
                let _ = write!(
                    out,
                    "<td class=\"num\" data-raw=\"{value}\">{}</td>",
                    escape(&metric_value(unit_of(metrics, name), *value))
                );
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</section></div>");

    // The last 12 months, one small chart per metric.
    let (from, to) = (months.first().map_or(*period, |(month, _)| *month), *period);
    let _ = write!(
        out,
        "<section class=\"panel\" aria-labelledby=\"months-heading\"><h2 id=\"months-heading\">Usage by month \
         <span class=\"sub\">{from} to {to}</span></h2>"
    );
    let any = months.iter().any(|(_, totals)| totals.iter().any(|(_, value)| *value > 0));
    if !any {
        let _ = write!(out, "<p class=\"empty\">No usage recorded from {from} to {to}.</p>");
    } else {
        out.push_str("<div class=\"grid three\">");
        for metric in metrics {
            let points: Vec<(Period, u64)> = months
                .iter()
                .map(|(month, totals)| {
                    let value = totals.iter().find(|(name, _)| *name == metric.name).map_or(0, |(_, value)| *value);
                    (*month, value)
                })
                .collect();
            let label = metric_label(&metric.name);
            let _ = write!(
                out,
                "<figure class=\"panel-plain\"><figcaption><h3>{}</h3></figcaption>{}</figure>",
                escape(&label),
                chart::monthly_columns(&metric.name, &label, &metric.unit, &points)
            );
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");
    out
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
        Overview { period, current: period, metrics, summary, months }
    }

    #[test]
    fn shows_empty_states_for_a_fresh_database() {
        let html = render(&view(vec![("prompts".into(), 0), ("bytes_out".into(), 0)], vec![]));
        assert!(html.contains("No usage recorded in 2026-11 yet."), "{html}");
        assert!(html.contains("No users yet."));
        assert!(html.contains("No usage recorded from 2025-12 to 2026-11."));
        assert!(html.contains("<span class=\"value\" data-raw=\"0\">0 B</span>"));
    }

    #[test]
    fn shows_bytes_in_human_units_with_the_exact_value_alongside() {
        let user = TopUser {
            user_id: "tim".into(),
            plan: "teams".into(),
            usage: vec![("prompts".into(), 700), ("bytes_out".into(), 1_500_000_000)],
        };
        let html = render(&view(vec![("prompts".into(), 12_725), ("bytes_out".into(), 1_500_000_000)], vec![user]));
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
