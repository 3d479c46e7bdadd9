//! Charts as inline SVG drawn on the server: the plan distribution (horizontal bars) and a
//! metric over months (columns). Every mark carries its value as text and a `<title>`
//! tooltip, so a chart reads without color and without a mouse.

use super::format::{Unit, money, percent, thousands};
use crate::domain::admin::PlanShare;
use crate::domain::period::Period;
use maud::{Markup, html};

/// What a plan bar measures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PlanMeasure {
    Users,
    Revenue,
}

/// One plan's bar: the value, its share as text, a note, and the share from 0 to 1.
struct PlanRow {
    value: String,
    share_text: String,
    note: String,
    share: f64,
}

/// One labelled bar per plan: its users, or its revenue estimate, as a share of all. Percent
/// positions keep the text at its size on any width.
/// Amounts are in `currency`.
pub fn plan_bars(plans: &[PlanShare], measure: PlanMeasure, currency: &str) -> Markup {
    const ROW: usize = 46;
    let users_total: u64 = plans.iter().map(|plan| plan.users).sum();
    let revenue_total: u64 = plans.iter().map(|plan| plan.revenue_cents).fold(0, u64::saturating_add);
    let rows: Vec<PlanRow> = plans
        .iter()
        .map(|plan| {
            let users = format!("{} {}", thousands(plan.users), if plan.users == 1 { "user" } else { "users" });
            match measure {
                PlanMeasure::Users => PlanRow {
                    value: users,
                    share_text: percent(plan.share),
                    note: format!("{} a month each", money(plan.price_cents, currency)),
                    share: plan.share,
                },
                PlanMeasure::Revenue => {
                    let share = if revenue_total == 0 { 0.0 } else { plan.revenue_cents as f64 / revenue_total as f64 };
                    PlanRow {
                        value: money(plan.revenue_cents, currency),
                        share_text: percent(share),
                        note: format!("{users} x {}", money(plan.price_cents, currency)),
                        share,
                    }
                }
            }
        })
        .collect();
    let (what, class) = match measure {
        PlanMeasure::Users => (format!("Users per plan, {} in all", thousands(users_total)), "bar now"),
        PlanMeasure::Revenue => {
            (format!("Revenue estimate per plan, {} a month in all", money(revenue_total, currency)), "bar rev")
        }
    };
    let described: Vec<String> = plans
        .iter()
        .zip(&rows)
        .map(|(plan, row)| format!("{}: {} ({}), {}", plan.plan, row.value, row.share_text, row.note))
        .collect();
    let label = format!("{what}. {}", described.join("; "));
    html! {
        svg.chart.plans width="100%" height=(plans.len() * ROW) role="img" aria-label=(label) {
            @for (index, (plan, row)) in plans.iter().zip(&rows).enumerate() {
                @let top = index * ROW;
                @let width = if row.share > 0.0 { (row.share * 100.0).max(0.8) } else { 0.0 };
                g data-plan=(plan.plan) {
                    text x="0" y=(top + 17) font-size="14" {
                        tspan.v { (plan.plan) }
                        tspan dx="8" font-size="12" { (row.note) }
                    }
                    text x="100%" y=(top + 17) text-anchor="end" font-size="13" {
                        tspan.v { (row.value) } " · " (row.share_text)
                    }
                    rect.track x="0" y=(top + 25) width="100%" height="10" rx="5" {}
                    rect class=(class) x="0" y=(top + 25) width={ (fixed(width, 2)) "%" } height="10" rx="5" {
                        title { (plan.plan) ": " (row.value) " (" (row.share_text) "), " (row.note) }
                    }
                }
            }
        }
    }
}

/// The smallest of 1, 2, 2.5, 5 x 10^k that is at least `value` (1 for 0).
fn nice_ceiling(value: u64) -> u64 {
    let mut magnitude: u64 = 1;
    loop {
        for step in [10, 20, 25, 50] {
            let candidate = magnitude.saturating_mul(step) / 10;
            if candidate >= value.max(1) {
                return candidate.max(1);
            }
        }
        if magnitude > u64::MAX / 10 {
            return u64::MAX;
        }
        magnitude *= 10;
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// (year, month abbreviation) of a period, from its `YYYY-MM` form.
fn month_parts(period: Period) -> (String, &'static str) {
    let text = period.to_string();
    let month: usize = text.get(5..7).and_then(|month| month.parse().ok()).unwrap_or(1);
    (text.get(..4).unwrap_or_default().to_owned(), MONTHS[month.clamp(1, 12) - 1])
}

/// A metric's totals per month, oldest first, as labelled columns; the last one stands out.
/// Sized so that three fit side by side on a laptop, and one fills a phone, at about 1:1.
/// The projection of the last month's total: (low, projected, high), its 80% interval around
/// the median.
pub type Projection = (u64, u64, u64);

pub fn monthly_columns(
    metric: &str,
    label: &str,
    unit: Unit<'_>,
    points: &[(Period, u64)],
    projection: Option<Projection>,
) -> Markup {
    const WIDTH: f64 = 340.0;
    const HEIGHT: f64 = 182.0;
    const LEFT: f64 = 40.0;
    const RIGHT: f64 = 2.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 36.0;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT - RIGHT) / points.len().max(1) as f64;
    let bar_width = (slot * 0.68).min(24.0);
    let highest = points.iter().map(|(_, value)| *value).max().unwrap_or(0);
    let max = nice_ceiling(highest.max(projection.map_or(0, |(_, _, high)| high)));
    let base = TOP + plot_height;
    let y_of = |value: u64| base - value as f64 / max as f64 * plot_height;
    let (first, last) = match (points.first(), points.last()) {
        (Some((first, _)), Some((last, _))) => (first.to_string(), last.to_string()),
        _ => (String::new(), String::new()),
    };
    let axis = [1.0, 0.5, 0.0].map(|fraction| {
        let y = TOP + plot_height * (1.0 - fraction);
        let class = if fraction == 0.0 { "axis" } else { "grid-line" };
        (class, y, unit.short((max as f64 * fraction).round() as u64))
    });
    html! {
        svg.chart.months viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" data-metric=(metric)
            aria-label={ (label) " per month, " (first) " to " (last) } {
            // Grid lines at the top and the middle, and the axis at zero, each with its value.
            @for (class, y, value) in &axis {
                line class=(class) x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fixed(*y, 1)) y2=(fixed(*y, 1)) {}
                text x=(LEFT - 5.0) y=(fixed(y + 3.0, 1)) text-anchor="end" font-size="9" { (value) }
            }
            @for (index, (period, value)) in points.iter().enumerate() {
                @let left = LEFT + slot * index as f64;
                @let center = fixed(left + slot / 2.0, 1);
                @let height = if *value == 0 { 0.0 } else { (*value as f64 / max as f64 * plot_height).max(1.5) };
                @let class = if index + 1 == points.len() { "bar now" } else { "bar" };
                @let (year, month) = month_parts(*period);
                // The year under the first month and under each January.
                @let starts_year = index == 0 || month == "Jan";
                g data-period=(period) {
                    // The last month's projection: an outline up to the projected total behind
                    // the bar, and a whisker over its 80% interval.
                    @if let (true, Some((low, projected, high))) = (index + 1 == points.len(), projection) {
                        rect class="projected" x=(fixed(center_of(left, slot, bar_width), 1)) y=(fixed(y_of(projected), 1))
                            width=(fixed(bar_width, 1)) height=(fixed(base - y_of(projected), 1)) rx="2" {
                            title { "projected " (unit.phrase(projected)) " (80%: " (unit.phrase(low)) " to " (unit.phrase(high)) ")" }
                        }
                        line class="interval" x1=(center) x2=(center) y1=(fixed(y_of(low), 1)) y2=(fixed(y_of(high), 1)) {}
                    }
                    rect class=(class) x=(fixed(center_of(left, slot, bar_width), 1)) y=(fixed(base - height, 1))
                        width=(fixed(bar_width, 1)) height=(fixed(height, 1)) rx="2" {
                        title { (period) ": " (unit.phrase(*value)) }
                    }
                    text.v x=(center) y=(fixed(base - height - 3.5, 1)) text-anchor="middle" font-size="9" {
                        (unit.bar(*value, max))
                    }
                    text x=(center) y=(fixed(base + 13.0, 1)) text-anchor="middle" font-size="9.5" { (month) }
                    @if starts_year {
                        text x=(fixed(left + (slot - bar_width) / 2.0, 1)) y=(fixed(base + 27.0, 1)) font-size="9.5"
                            font-weight="600" { (year) }
                    }
                }
            }
        }
    }
}

/// A number with a fixed count of decimals, for SVG coordinates.
fn fixed(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

/// Where a bar of `bar_width` starts to stand centred in its slot.
fn center_of(left: f64, slot: f64, bar_width: f64) -> f64 {
    left + slot / 2.0 - bar_width / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings_round_up_to_readable_steps() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(12_725), 20_000);
        assert_eq!(nice_ceiling(21_000), 25_000);
        assert_eq!(nice_ceiling(1_500_000_000), 2_000_000_000);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }

    #[test]
    fn columns_carry_every_value_as_text_and_tooltip() {
        let now: Period = "2026-02".parse().unwrap();
        let points: Vec<(Period, u64)> =
            (0..3).rev().map(|back| (now.months_before(back), back as u64 * 1000)).collect();
        let svg = monthly_columns("prompts", "Prompts", Unit::of("prompts"), &points, None).into_string();
        assert!(svg.contains("<title>2025-12: 2,000 prompts</title>"), "{svg}");
        assert!(svg.contains(">2k</text>") && svg.contains(">Dec</text>") && svg.contains(">2026</text>"));
        assert!(svg.contains(">2025</text>"), "the first bar names its year, even a lone December");
        assert_eq!(svg.matches("class=\"bar now\"").count(), 1);
    }

    #[test]
    fn a_bytes_chart_names_its_unit_once_per_label() {
        let now: Period = "2026-02".parse().unwrap();
        let points = [(now.months_before(1), 92_800_000), (now, 3_712_800_000)];
        let svg = monthly_columns("bytes_out", "Bytes out", Unit::Bytes, &points, None).into_string();
        assert!(svg.contains("<title>2026-02: 3.7 GB</title>"), "{svg}");
        assert!(svg.contains("<title>2026-01: 92.8 MB</title>"), "no \"bytes\" after a byte unit");
        assert!(svg.contains(">5 GB</text>") && svg.contains(">2.5 GB</text>"), "the axis in the card's units");
        assert!(svg.contains(">3.7</text>") && svg.contains(">0.1</text>"), "bars as numbers in the axis's GB");
        assert!(!svg.contains(" bytes"), "{svg}");
        assert!((0..10).all(|digit| !svg.contains(&format!("{digit}GB"))), "a space before the unit: {svg}");
    }
    #[test]
    fn plan_bars_name_users_share_and_revenue() {
        let plans = [
            PlanShare {
                plan: "trial".into(),
                users: 2,
                share: 0.5,
                accounts: 0,
                members: 0,
                price_cents: 0,
                revenue_cents: 0,
            },
            PlanShare {
                plan: "teams".into(),
                users: 2,
                share: 0.5,
                accounts: 0,
                members: 0,
                price_cents: 4900,
                revenue_cents: 9800,
            },
        ];
        let svg = plan_bars(&plans, PlanMeasure::Users, "USD").into_string();
        assert!(svg.contains("2 users</tspan> · 50%"), "{svg}");
        assert!(svg.contains("<title>teams: 2 users (50%), 49.00 USD a month each</title>"));
        let svg = plan_bars(&plans, PlanMeasure::Revenue, "EUR").into_string();
        assert!(svg.contains("98.00 EUR</tspan> · 100%"), "{svg}");
        assert!(svg.contains("<title>teams: 98.00 EUR (100%), 2 users x 49.00 EUR</title>"));
        assert!(svg.contains("<title>trial: 0.00 EUR (0%), 2 users x 0.00 EUR</title>"));
    }
}
