//! The maintenance page (`GET /admin/maintenance?before=ID`): the cleanup form with a
//! retention value, and the audit log, newest first, paged by row id.

use super::format::{Unit, metric_label, thousands, utc_minute};
use super::html::{Tab, csrf_field, user_path};
use super::session::Visitor;
use super::{Done, Form, Page, outcome};
use crate::app::admin as ops;
use crate::domain::plan::Metric;
use crate::domain::ports::AuditRecord;
use crate::domain::user_id::validate_user_id;
use crate::http::Ctx;
use crate::http::error::ApiError;
use maud::{Markup, html};
use serde_json::Value;

const PAGE_SIZE: u32 = 50;

pub fn page(ctx: &mut Ctx<'_>, visitor: &Visitor) -> Result<Page, ApiError> {
    let params = &ctx.query;
    let before = crate::http::params::before_param(params, "an audit row id")?;
    let rows = ops::audit_page(&ctx.app.store, PAGE_SIZE, before)?;
    let older = if rows.len() as u32 == PAGE_SIZE { rows.last().map(|row| row.id) } else { None };
    let rules = &ctx.app.rules;
    let metrics: Vec<Metric> = rules.catalog.metrics().cloned().collect();
    let settings = (rules.retention_months, rules.idempotency_hours);
    let content = render(&rows, before.is_some(), older, settings, &metrics, visitor);
    Ok(Page { title: "Maintenance".to_owned(), tab: Tab::Maintenance, content })
}

pub fn render(
    rows: &[AuditRecord],
    paged: bool,
    older: Option<i64>,
    (retention_months, idempotency_hours): (u32, u32),
    metrics: &[Metric],
    visitor: &Visitor,
) -> Markup {
    html! {
        div.head { h1 { "Maintenance" } }
        section.panel {
            h2 { "Cleanup" }
            p.hint {
                "Deletes usage counters and events of months older than the retention (an event still waiting \
                 for its webhook stays), and idempotency answers older than " (idempotency_hours) " hours. Tally \
                 runs it with the configured retention (" (retention_months) " months) at startup and every 24 \
                 hours; run it here to apply a shorter one now."
            }
            form method="post" action="/admin/maintenance/cleanup" {
                (csrf_field(visitor))
                div.inline {
                    div.field {
                        label for="retention" { "Months to keep" }
                        input #retention name="retention_months" type="number" min="1" max="1200" step="1"
                            value=(retention_months) required inputmode="numeric";
                    }
                    button.primary type="submit" { "Run cleanup" }
                }
            }
        }
        section.panel {
            h2 { "Audit log " span.sub { "newest first" } }
            @if rows.is_empty() {
                p.empty {
                    @if paged { "No older entries." } @else { "The audit log is empty: no admin action has run yet." }
                }
            } @else {
                div.table-wrap { table.audit {
                    thead { tr {
                        th scope="col" class="num" { "#" }
                        th scope="col" { "When" }
                        th scope="col" { "Actor" }
                        th scope="col" { "Action" }
                        th scope="col" { "Target" }
                        th scope="col" { "Details" }
                    } }
                    tbody {
                        @for row in rows {
                            tr data-id=(row.id) {
                                td.num.muted { (row.id) }
                                td.nowrap { (utc_minute(row.at_ms)) }
                                td { (row.actor) }
                                td { span.badge.plain { (row.action) } }
                                td { (target(row.target.as_deref())) }
                                td.details { (describe(&row.action, &row.details, metrics)) }
                            }
                        }
                    }
                } }
            }
            nav.pager aria-label="Audit log pages" {
                span { @if paged { a href="/admin/maintenance" { "← Newest" } } }
                span { @if let Some(older) = older { a href={ "/admin/maintenance?before=" (older) } { "Older →" } } }
            }
        }
    }
}

/// An audit row's target: a link to the user, a hash shortened (the full value in its
/// title), or a dash.
fn target(target: Option<&str>) -> Markup {
    html! {
        @match target {
            Some(target) if validate_user_id(target).is_ok() && !target.starts_with("sha256:") => {
                a.mono href=(user_path(target)) { (target) }
            }
            Some(target) => span.mono title=(target) { (short(target)) },
            None => span.muted { "—" },
        }
    }
}

/// A long hash shortened for the table.
fn short(target: &str) -> String {
    if target.len() > 24 { format!("{}…", target.chars().take(20).collect::<String>()) } else { target.to_owned() }
}

/// An audit row's details in words, for the actions Tally writes; raw JSON for others.
fn describe(action: &str, details: &str, metrics: &[Metric]) -> String {
    let Ok(value) = serde_json::from_str::<Value>(details) else {
        return details.to_owned();
    };
    let text = |key: &str| value.get(key).map(|field| field.as_str().map_or_else(|| field.to_string(), str::to_owned));
    let described = match action {
        "plan_changed" => match (text("from"), text("to")) {
            (Some(from), Some(to)) if from != "null" => Some(format!("{from} → {to}")),
            (_, Some(to)) => Some(format!("new user on {to}")),
            _ => None,
        },
        "usage_reset" => value.get("before").and_then(Value::as_object).map(|before| {
            let values: Vec<String> = before
                .iter()
                .map(|(name, value)| {
                    let value =
                        value.as_u64().map_or(String::new(), |value| Unit::of_metric(metrics, name).value(value));
                    format!("{} {value}", metric_label(name))
                })
                .collect();
            let period = text("period").unwrap_or_default();
            if values.is_empty() {
                format!("{period}: nothing to reset")
            } else {
                format!("{period}: {}", values.join(", "))
            }
        }),
        "cleanup" => match (text("retention_months"), value["deleted_counters"].as_u64(), text("oldest_period_kept")) {
            (Some(months), Some(deleted), Some(kept)) => Some(format!(
                "kept {months} months (from {kept}); deleted {} counters, {} idempotency answers",
                thousands(deleted),
                thousands(value["pruned_idempotency_keys"].as_u64().unwrap_or(0))
            )),
            _ => None,
        },
        "user_erased" if value.as_object().is_some_and(|fields| fields.is_empty()) => Some(String::new()),
        _ => None,
    };
    described.unwrap_or_else(|| details.to_owned())
}

/// `POST /admin/maintenance/cleanup` with `retention_months`.
pub fn cleanup(ctx: &mut Ctx<'_>, visitor: &Visitor, form: &Form) -> Result<Done, ApiError> {
    let location = "/admin/maintenance".to_owned();
    let text = form.get("retention_months").map(|text| text.trim()).unwrap_or_default();
    let Ok(retention_months) = text.parse::<u32>() else {
        let flash =
            super::session::Flash::error("Nothing was deleted: months to keep must be a whole number from 1 to 1200.");
        return Ok(Done { location, flash });
    };
    let flash =
        outcome(ops::cleanup(&ctx.app.store, &ctx.app.rules, u64::from(retention_months), &visitor.actor), |report| {
            format!(
                "Cleanup done: deleted {} counters from before {} and {} expired idempotency answers.",
                thousands(report.deleted_counters),
                report.oldest_period_kept,
                thousands(report.pruned_idempotency_keys)
            )
        })?;
    Ok(Done { location, flash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_log_says_so() {
        let visitor = Visitor { actor: "ops".into(), csrf: "t".into(), token: None };
        let html = render(&[], false, None, (12, 24), &[], &visitor).into_string();
        assert!(html.contains("The audit log is empty"), "{html}");
        assert!(html.contains("value=\"12\"") && !html.contains("Older"));
    }

    #[test]
    fn describes_the_actions_tally_audits() {
        assert_eq!(describe("plan_changed", r#"{"from":"trial","to":"teams"}"#, &[]), "trial → teams");
        assert_eq!(describe("plan_changed", r#"{"from":null,"to":"solo"}"#, &[]), "new user on solo");
        assert_eq!(
            describe(
                "usage_reset",
                r#"{"period":"2026-11","metric":null,"before":{"prompts":1200,"e2e_runs":0,"bytes_out":2500000}}"#,
                &[Metric { name: "bytes_out".into(), unit: "bytes".into() }]
            ),
            "2026-11: Prompts 1,200, E2E runs 0, Bytes out 2.5 MB"
        );
        assert_eq!(
            describe(
                "cleanup",
                r#"{"retention_months":6,"deleted_counters":3,"oldest_period_kept":"2026-06","pruned_idempotency_keys":1}"#,
                &[]
            ),
            "kept 6 months (from 2026-06); deleted 3 counters, 1 idempotency answers"
        );
        assert_eq!(describe("something_new", r#"{"a":1}"#, &[]), r#"{"a":1}"#);
        assert_eq!(describe("user_erased", "{}", &[]), "");
    }
}
