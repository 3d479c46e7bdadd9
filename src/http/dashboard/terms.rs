//! A customer's terms beyond the plan on the dashboard, for a user's page and an account's
//! alike: the override (what it names, a form to set it, a button to remove it) and the
//! grants (a list with revoke buttons, a form to add one). Forms are parsed here and refused
//! with a flash that says what to fix; the changes go through `app::terms`, as for the JSON
//! API, audited under the signed-in key.

use super::format::{metric_label, thousands, utc_minute};
use super::html::{account_path, csrf_field, user_path};
use super::session::{Flash, Visitor};
use super::{Done, Form, outcome};
use crate::app::AppError;
use crate::app::terms as ops;
use crate::domain::Rules;
use crate::domain::period::Period;
use crate::domain::plan::{FeatureGrant, Limit};
use crate::domain::ports::{GrantRecord, Store};
use crate::domain::terms::{Customer, Override};
use crate::domain::usage::AMOUNT_MAX;
use crate::domain::user_id::UserId;
use crate::http::error::ApiError;
use crate::http::{Ctx, now_ms};
use chrono::{DateTime, NaiveDateTime};
use maud::{Markup, html};

/// The windows a rate override may count over on the form.
const WINDOWS: [(u32, &str); 3] = [(60, "minute"), (3600, "hour"), (86_400, "day")];

/// Whose terms a dashboard route is about, from its path: `(is_account, id)`.
pub fn customer_param(ctx: &Ctx<'_>) -> Result<(bool, UserId), ApiError> {
    let account = ctx.request.uri().path().starts_with("/admin/accounts/");
    let id = UserId::parse(ctx.params.first().cloned().unwrap_or_default()).map_err(|problem| {
        if account { ApiError::invalid(problem.replace("user id", "account id")) } else { ApiError::invalid(problem) }
    })?;
    Ok((account, id))
}

pub fn customer((account, id): &(bool, UserId)) -> Customer<'_> {
    if *account { Customer::Account(id) } else { Customer::User(id) }
}

/// The page a customer's forms return to.
fn page_path(customer: Customer<'_>) -> String {
    match customer {
        Customer::User(id) => user_path(id),
        Customer::Account(id) => account_path(id),
    }
}

/// The customer's override, if one is stored (expired ones too: the page says so).
pub fn find_override(store: &Store, customer: Customer<'_>) -> Result<Option<Override>, ApiError> {
    match ops::get_override(store, customer) {
        Ok(over) => Ok(Some(over)),
        Err(AppError::OverrideNotFound(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

pub fn grants(store: &Store, customer: Customer<'_>) -> Result<Vec<GrantRecord>, ApiError> {
    Ok(ops::grants(store, customer)?)
}

fn limit_words(limit: Limit) -> String {
    match limit {
        Limit::Unlimited => "unlimited".to_owned(),
        Limit::Hard(value) => format!("{} (hard)", thousands(value)),
        Limit::Soft(value) => format!("{} (soft)", thousands(value)),
    }
}

fn feature_words(grant: FeatureGrant) -> String {
    match grant {
        FeatureGrant::Boolean(true) => "on".to_owned(),
        FeatureGrant::Boolean(false) => "off".to_owned(),
        FeatureGrant::Rate { limit, window_secs } => {
            let window = WINDOWS.iter().find(|(secs, _)| *secs == window_secs).map(|(_, word)| (*word).to_owned());
            format!("{} per {}", thousands(limit.into()), window.unwrap_or_else(|| format!("{window_secs} s")))
        }
    }
}

/// `2026-12-31T23:59`, as a `datetime-local` field shows it (UTC).
fn field_time(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms).unwrap_or_default().format("%Y-%m-%dT%H:%M").to_string()
}

/// The override panel: what it names now, the form that replaces it, the remove button.
pub fn override_panel(
    rules: &Rules,
    customer: Customer<'_>,
    over: Option<&Override>,
    visitor: &Visitor,
    now_ms: i64,
) -> Markup {
    let path = page_path(customer);
    html! {
        section.panel #override {
            h2 { "Override" }
            @match over {
                None => p.empty { "No override: the plan applies." },
                Some(over) => {
                    p {
                        @if over.is_active(now_ms) { span.badge.ok { "active" } } @else { span.badge.warn { "expired" } }
                        @match over.expires_at_ms {
                            Some(at) => { " until " (utc_minute(at)) }
                            None => { " with no expiry" }
                        }
                        @if let Some(note) = &over.note { " · " em { (note) } }
                    }
                    div.table-wrap { table {
                        thead { tr { th scope="col" { "Limit or feature" } th scope="col" { "Override" } } }
                        tbody {
                            @for (metric, limit) in &over.limits {
                                tr data-override=(metric) { th scope="row" { (metric_label(metric)) } td { (limit_words(*limit)) } }
                            }
                            @for (feature, grant) in &over.features {
                                tr data-override=(feature) { th scope="row" { (feature) } td { (feature_words(*grant)) } }
                            }
                        }
                    } }
                    form method="post" action={ (path) "/overrides/remove" } {
                        (csrf_field(visitor))
                        button.danger type="submit" { "Remove override" }
                    }
                }
            }
            details {
                summary { @if over.is_some() { "Replace the override" } @else { "Set an override" } }
                (override_form(rules, over, visitor, &path))
            }
        }
    }
}

fn override_form(rules: &Rules, over: Option<&Override>, visitor: &Visitor, path: &str) -> Markup {
    let default_plan = rules.catalog.default_plan();
    html! {
        form method="post" action={ (path) "/overrides" } {
            (csrf_field(visitor))
            p.hint { "Leave a row on “plan” to keep the plan's value. The override replaces the whole set." }
            @for metric in rules.catalog.metrics() {
                @let current = over.and_then(|over| over.limits.get(&metric.name)).copied();
                @let (kind, value) = match current {
                    None => ("", None),
                    Some(Limit::Unlimited) => ("unlimited", None),
                    Some(Limit::Hard(value)) => ("hard", Some(value)),
                    Some(Limit::Soft(value)) => ("soft", Some(value)),
                };
                div.inline {
                    div.field {
                        label for={ "limit-" (metric.name) } { (metric_label(&metric.name)) }
                        select id={ "limit-" (metric.name) } name={ "limit." (metric.name) } {
                            @for (option, words) in [("", "plan"), ("hard", "hard limit"), ("soft", "soft limit"), ("unlimited", "unlimited")] {
                                option value=(option) selected[option == kind] { (words) }
                            }
                        }
                    }
                    div.field {
                        label for={ "value-" (metric.name) } { "Limit" }
                        input id={ "value-" (metric.name) } name={ "value." (metric.name) } inputmode="numeric"
                            value=[value] autocomplete="off";
                    }
                }
            }
            @for feature in rules.catalog.features() {
                @let current = over.and_then(|over| over.features.get(feature)).copied();
                div.inline {
                    @match default_plan.feature(feature) {
                        FeatureGrant::Boolean(_) => {
                            @let kind = match current { Some(FeatureGrant::Boolean(true)) => "on", Some(FeatureGrant::Boolean(false)) => "off", _ => "" };
                            div.field {
                                label for={ "feature-" (feature) } { (feature) }
                                select id={ "feature-" (feature) } name={ "feature." (feature) } {
                                    @for (option, words) in [("", "plan"), ("on", "on"), ("off", "off")] {
                                        option value=(option) selected[option == kind] { (words) }
                                    }
                                }
                            }
                        }
                        FeatureGrant::Rate { window_secs, .. } => {
                            @let (limit, window) = match current { Some(FeatureGrant::Rate { limit, window_secs }) => (Some(limit), window_secs), _ => (None, window_secs) };
                            div.field {
                                label for={ "feature-" (feature) } { (feature) " (uses, empty for the plan's)" }
                                input id={ "feature-" (feature) } name={ "feature." (feature) } inputmode="numeric"
                                    value=[limit] autocomplete="off";
                            }
                            div.field {
                                label for={ "window-" (feature) } { "per" }
                                select id={ "window-" (feature) } name={ "window." (feature) } {
                                    @for (secs, word) in WINDOWS { option value=(secs) selected[secs == window] { (word) } }
                                }
                            }
                        }
                    }
                }
            }
            div.inline {
                div.field {
                    label for="override-expires" { "Expires (UTC, optional)" }
                    input #override-expires name="expires_at" type="datetime-local"
                        value=[over.and_then(|over| over.expires_at_ms).map(field_time)];
                }
                div.field {
                    label for="override-note" { "Note (optional)" }
                    input #override-note name="note" maxlength="500" value=[over.and_then(|over| over.note.as_deref())];
                }
                button.primary type="submit" { "Save override" }
            }
        }
    }
}

/// The grants panel: each grant with a revoke button, and the form to add one.
pub fn grants_panel(
    rules: &Rules,
    customer: Customer<'_>,
    grants: &[GrantRecord],
    period: Period,
    visitor: &Visitor,
) -> Markup {
    let path = page_path(customer);
    html! {
        section.panel #grants {
            h2 { "Grants" }
            @if grants.is_empty() {
                p.empty { "No grants." }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { "Metric" } th scope="col" class="num" { "Amount" } th scope="col" { "Period" }
                        th scope="col" { "Expires" } th scope="col" { "Note" } th scope="col" { "Added" } th scope="col" {}
                    } }
                    tbody {
                        @for grant in grants {
                            tr data-grant=(grant.id) {
                                th scope="row" { (metric_label(&grant.metric)) }
                                td.num data-raw=(grant.amount) { (thousands(grant.amount)) }
                                td { (grant.period) }
                                td { @match grant.expires_at_ms { Some(at) => (utc_minute(at)), None => "—" } }
                                td { (grant.note.as_deref().unwrap_or("")) }
                                td { (utc_minute(grant.created_at_ms)) }
                                td {
                                    form method="post" action={ (path) "/grants/" (grant.id) "/revoke" } {
                                        (csrf_field(visitor))
                                        button.link type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            details {
                summary { "Add a grant" }
                form method="post" action={ (path) "/grants" } {
                    (csrf_field(visitor))
                    div.inline {
                        div.field {
                            label for="grant-metric" { "Metric" }
                            select #grant-metric name="metric" {
                                @for metric in rules.catalog.metrics() { option value=(metric.name) { (metric_label(&metric.name)) } }
                            }
                        }
                        div.field {
                            label for="grant-amount" { "Amount" }
                            input #grant-amount name="amount" inputmode="numeric" required autocomplete="off";
                        }
                        div.field {
                            label for="grant-period" { "Month" }
                            input #grant-period name="period" placeholder=(period) pattern="[0-9]{4}-[0-9]{2}" autocomplete="off";
                        }
                    }
                    div.inline {
                        div.field {
                            label for="grant-expires" { "Expires (UTC, optional)" }
                            input #grant-expires name="expires_at" type="datetime-local";
                        }
                        div.field {
                            label for="grant-note" { "Note (optional)" }
                            input #grant-note name="note" maxlength="500";
                        }
                        button.primary type="submit" { "Add grant" }
                    }
                    p.hint { "Adds to the limit of that month while valid; the current month if left empty." }
                }
            }
        }
    }
}

/// A form field, trimmed; `None` when absent or empty.
fn field<'f>(form: &'f Form, name: &str) -> Option<&'f str> {
    form.get(name).map(|text| text.trim()).filter(|text| !text.is_empty())
}

fn whole(name: &str, text: &str, max: u64) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .ok()
        .filter(|value| *value <= max)
        .ok_or_else(|| ApiError::invalid(format!("{name} must be a whole number from 0 to {max}, got {text:?}")))
}

/// An expiry from the form: `2026-12-31T23:59` (a `datetime-local` field, read as UTC), with
/// seconds, or RFC 3339.
fn expiry(text: &str) -> Result<i64, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|at| at.and_utc().timestamp_millis())
        .ok_or_else(|| {
            ApiError::invalid(format!("the expiry {text:?} is not a date and time such as 2026-12-31T23:59"))
        })
}

fn note(form: &Form) -> Result<Option<String>, ApiError> {
    match field(form, "note") {
        Some(text) if text.chars().count() > 500 => Err(ApiError::invalid("the note is longer than 500 characters")),
        text => Ok(text.map(str::to_owned)),
    }
}

/// Reads the override form; every field it does not know, or cannot read, refuses it.
pub fn parse_override(rules: &Rules, form: &Form) -> Result<Override, ApiError> {
    for name in form.keys() {
        let known = match name.split_once('.') {
            Some(("limit" | "value", metric)) => rules.catalog.has_metric(metric),
            Some(("feature" | "window", feature)) => rules.catalog.has_feature(feature),
            _ => matches!(name.as_str(), "csrf" | "expires_at" | "note"),
        };
        if !known {
            return Err(ApiError::invalid(format!(
                "the form has a field {name:?} that names no configured metric or feature"
            )));
        }
    }
    let mut over = Override::default();
    for metric in rules.catalog.metrics() {
        let name = &metric.name;
        let value = field(form, &format!("value.{name}"));
        let limit = match (field(form, &format!("limit.{name}")), value) {
            (None, None) => continue,
            (None, Some(_)) => {
                return Err(ApiError::invalid(format!(
                    "{}: choose hard or soft for the limit {}, or clear it",
                    metric_label(name),
                    value.unwrap_or_default()
                )));
            }
            (Some("unlimited"), _) => Limit::Unlimited,
            (Some(kind @ ("hard" | "soft")), Some(value)) => {
                let value = whole(&format!("the limit of {}", metric_label(name)), value, AMOUNT_MAX)?;
                if kind == "hard" { Limit::Hard(value) } else { Limit::Soft(value) }
            }
            (Some("hard" | "soft"), None) => {
                return Err(ApiError::invalid(format!("{}: a hard or soft limit needs a number", metric_label(name))));
            }
            (Some(other), _) => {
                return Err(ApiError::invalid(format!(
                    "{}: {other:?} is not hard, soft or unlimited",
                    metric_label(name)
                )));
            }
        };
        over.limits.insert(name.clone(), limit);
    }
    for feature in rules.catalog.features() {
        let Some(value) = field(form, &format!("feature.{feature}")) else {
            continue;
        };
        let grant = match rules.catalog.default_plan().feature(feature) {
            FeatureGrant::Boolean(_) => match value {
                "on" => FeatureGrant::Boolean(true),
                "off" => FeatureGrant::Boolean(false),
                other => return Err(ApiError::invalid(format!("{feature}: {other:?} is not on or off"))),
            },
            FeatureGrant::Rate { .. } => {
                let limit = whole(&format!("the uses of {feature}"), value, u32::MAX.into())? as u32;
                let window = field(form, &format!("window.{feature}")).unwrap_or("60");
                let window_secs =
                    WINDOWS.iter().map(|(secs, _)| *secs).find(|secs| secs.to_string() == window).ok_or_else(|| {
                        ApiError::invalid(format!("{feature}: {window:?} is not a minute, an hour or a day"))
                    })?;
                FeatureGrant::Rate { limit, window_secs }
            }
        };
        over.features.insert(feature.clone(), grant);
    }
    if over.limits.is_empty() && over.features.is_empty() {
        return Err(ApiError::invalid("The override names no limit or feature: set one, or remove the override."));
    }
    over.expires_at_ms = field(form, "expires_at").map(expiry).transpose()?;
    over.note = note(form)?;
    Ok(over)
}

/// Reads the grant form into a grant for `customer`.
fn parse_grant(rules: &Rules, customer: Customer<'_>, form: &Form, now_ms: i64) -> Result<GrantRecord, ApiError> {
    let metric = field(form, "metric").unwrap_or_default();
    if !rules.catalog.has_metric(metric) {
        return Err(ApiError::invalid(format!("metric {metric:?} is not configured")));
    }
    let amount = whole("the amount", field(form, "amount").unwrap_or_default(), AMOUNT_MAX)?;
    if amount == 0 {
        return Err(ApiError::invalid("the amount must be at least 1"));
    }
    let period = match field(form, "period") {
        Some(text) => text.parse::<Period>().map_err(|error| ApiError::invalid(error.to_string()))?,
        None => Period::of_unix_ms(now_ms),
    };
    let (kind, id) = match customer {
        Customer::User(id) => ("user", id),
        Customer::Account(id) => ("account", id),
    };
    Ok(GrantRecord {
        id: 0,
        customer_kind: kind.to_owned(),
        customer_id: id.to_owned(),
        metric: metric.to_owned(),
        amount,
        period: period.to_string(),
        expires_at_ms: field(form, "expires_at").map(expiry).transpose()?,
        note: note(form)?,
        created_at_ms: now_ms,
    })
}

/// `POST .../overrides`: replaces the customer's override.
pub fn set_override(ctx: &mut Ctx<'_>, visitor: &Visitor, form: &Form) -> Result<Done, ApiError> {
    let who = customer_param(ctx)?;
    let customer = customer(&who);
    let changed = parse_override(&ctx.app.rules, form)
        .and_then(|over| Ok(ops::set_override(&ctx.app.store, customer, over, &visitor.actor)?));
    let flash = outcome(changed, |()| format!("Saved the override of {}.", who.1))?;
    Ok(Done { location: page_path(customer), flash })
}

/// `POST .../overrides/remove`.
pub fn remove_override(ctx: &mut Ctx<'_>, visitor: &Visitor, _form: &Form) -> Result<Done, ApiError> {
    let who = customer_param(ctx)?;
    let customer = customer(&who);
    let removed = ops::remove_override(&ctx.app.store, customer, &visitor.actor);
    let flash = outcome(removed, |()| format!("Removed the override of {}: the plan applies.", who.1))?;
    Ok(Done { location: page_path(customer), flash })
}

/// `POST .../grants`: 409 `grant_has_no_effect` and bad input come back as the flash.
pub fn add_grant(ctx: &mut Ctx<'_>, visitor: &Visitor, form: &Form) -> Result<Done, ApiError> {
    let who = customer_param(ctx)?;
    let customer = customer(&who);
    let rules = &ctx.app.rules;
    let added = parse_grant(rules, customer, form, now_ms()).and_then(|grant| {
        let words = format!("{} more {} in {}", thousands(grant.amount), metric_label(&grant.metric), grant.period);
        let grant_id = ops::add_grant(&ctx.app.store, rules, customer, grant, &visitor.actor)?;
        Ok((grant_id, words))
    });
    let flash = outcome(added, |(grant_id, words)| format!("Granted {words} (grant {grant_id})."))?;
    Ok(Done { location: page_path(customer), flash })
}

/// `POST .../grants/{grant_id}/revoke`: only a grant of this customer.
pub fn revoke_grant(ctx: &mut Ctx<'_>, visitor: &Visitor, _form: &Form) -> Result<Done, ApiError> {
    let who = customer_param(ctx)?;
    let customer = customer(&who);
    let location = page_path(customer);
    let text = ctx.params.get(1).cloned().unwrap_or_default();
    let Some(grant_id) = text.parse::<i64>().ok().filter(|id| *id > 0) else {
        return Ok(Done { location, flash: Flash::error(format!("{text:?} is not a grant id.")) });
    };
    if !grants(&ctx.app.store, customer)?.iter().any(|grant| grant.id == grant_id) {
        return Ok(Done { location, flash: Flash::error(format!("{} has no grant {grant_id}.", who.1)) });
    }
    let revoked = ops::revoke_grant(&ctx.app.store, grant_id, &visitor.actor);
    let flash = outcome(revoked, |grant| {
        format!(
            "Revoked grant {grant_id}: {} {} in {}.",
            thousands(grant.amount),
            metric_label(&grant.metric),
            grant.period
        )
    })?;
    Ok(Done { location, flash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_read_as_utc_from_a_datetime_field_or_rfc_3339() {
        assert_eq!(expiry("2026-12-31T23:59").unwrap(), 1_798_761_540_000);
        assert_eq!(expiry("2026-12-31T23:59:00Z").unwrap(), 1_798_761_540_000);
        assert_eq!(expiry("2026-12-31T23:59:00+01:00").unwrap(), 1_798_757_940_000);
        assert!(expiry("tomorrow").unwrap_err().message().contains("2026-12-31T23:59"));
        assert_eq!(field_time(1_798_761_540_000), "2026-12-31T23:59");
    }
}
