//! A user's page (`/admin/users/{user_id}`): plan, this period's usage against the limits,
//! features, monthly history, and the actions (change plan, reset the period, export,
//! erase after a typed confirmation). Reads and actions go through `app::admin`.

use super::html::{Tab, csrf_field, escape, metric_label, metric_value, money, thousands, user_path, utc_minute};
use super::session::{Flash, Visitor};
use super::{Done, Form, Page, outcome, user_id};
use crate::app::admin::{self as ops, UserDetails};
use crate::domain::feature::FeatureKind;
use crate::domain::plan::{Enforcement, Metric};
use crate::http::Ctx;
use crate::http::error::ApiError;
use crate::http::users::user_not_found;
use std::fmt::Write;

const HISTORY_MONTHS: u32 = 12;

pub fn page(ctx: &mut Ctx<'_>, visitor: &Visitor) -> Result<Page, ApiError> {
    let user_id = user_id(ctx)?;
    let details = ops::user_details(&ctx.app.store, &ctx.app.rules, &user_id, HISTORY_MONTHS)?
        .ok_or_else(|| user_not_found(&user_id))?;
    let metrics: Vec<Metric> = ctx.app.rules.catalog.metrics().cloned().collect();
    let plans: Vec<(String, u64)> =
        ctx.app.rules.catalog.plans().iter().map(|plan| (plan.name.clone(), plan.price_cents)).collect();
    Ok(Page { title: user_id.to_string(), tab: Tab::Users, content: render(&details, &metrics, &plans, visitor) })
}

fn unit_of<'m>(metrics: &'m [Metric], name: &str) -> &'m str {
    metrics.iter().find(|metric| metric.name == name).map_or("", |metric| metric.unit.as_str())
}

pub fn render(details: &UserDetails, metrics: &[Metric], plans: &[(String, u64)], visitor: &Visitor) -> String {
    let user_id = &details.user.user_id;
    let path = escape(&user_path(user_id));
    let period = details.period;
    let mut out = String::new();
    let _ = write!(
        out,
        "<div class=\"head\"><h1><span class=\"mono\">{}</span> <span class=\"badge\" data-plan=\"{}\">{}</span>{}</h1>\
         <a class=\"button\" href=\"{path}/export\" download>Export JSON</a></div>\
         <p class=\"muted\">First seen {}. Limits are counted per UTC month; this one is {period}.</p>",
        escape(user_id),
        escape(&details.plan),
        escape(&details.plan),
        if details.bypass {
            " <span class=\"badge warn\" title=\"In admin_user_ids\">limits bypassed</span>"
        } else {
            ""
        },
        utc_minute(details.user.created_at_ms)
    );

    // Usage against the limits.
    let _ = write!(out, "<section class=\"panel\"><h2>Usage in {period}</h2><div class=\"usage\">");
    for (name, standing) in &details.usage {
        let unit = unit_of(metrics, name);
        let used = metric_value(unit, standing.used);
        let _ = write!(
            out,
            "<div class=\"metric\" data-metric=\"{}\"><h3>{}</h3><div><span class=\"used\" data-raw=\"{}\">{}</span>",
            escape(name),
            escape(&metric_label(name)),
            standing.used,
            escape(&used)
        );
        match standing.limit {
            Some(limit) => {
                let percent = if limit == 0 { 100.0 } else { standing.used as f64 * 100.0 / limit as f64 };
                let class = match (standing.enforcement, percent >= 100.0) {
                    (Enforcement::Hard, true) => "meter full",
                    (Enforcement::Soft, true) => "meter soft",
                    _ => "meter",
                };
                let kind = if standing.enforcement == Enforcement::Hard { "hard limit" } else { "soft limit" };
                let _ = write!(
                    out,
                    " <span class=\"sub\">of {} {}</span></div>\
                     <div class=\"{class}\" aria-hidden=\"true\"><span style=\"width:{:.1}%\"></span></div>\
                     <div class=\"muted\">{:.0}% of the {kind}",
                    escape(&metric_value(unit, limit)),
                    escape(if unit == "bytes" { "" } else { unit }),
                    percent.min(100.0),
                    percent,
                );
                if standing.over_soft_limit {
                    out.push_str(" <span class=\"badge warn\">over the soft limit</span>");
                } else if let Some(remaining) = standing.remaining {
                    let _ = write!(out, "; {} left", escape(&metric_value(unit, remaining)));
                }
                out.push_str("</div></div>");
            }
            None => {
                let _ = write!(
                    out,
                    " <span class=\"sub\">{}</span></div><div class=\"muted\">No limit on {}</div></div>",
                    escape(if unit == "bytes" { "" } else { unit }),
                    escape(&details.plan)
                );
            }
        }
    }
    out.push_str("</div></section>");

    out.push_str("<div class=\"grid two\">");
    // Features.
    out.push_str("<section class=\"panel\"><h2>Features</h2>");
    if details.features.is_empty() {
        out.push_str("<p class=\"empty\">No features are configured.</p>");
    } else {
        out.push_str(
            "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Feature</th><th scope=\"col\">Access</th>\
             <th scope=\"col\" class=\"num\">Left now</th></tr></thead><tbody>",
        );
        for verdict in &details.features {
            let access = match (verdict.allowed, verdict.kind, verdict.limit, verdict.window_secs) {
                (false, _, _, _) => match &verdict.plan_required {
                    Some(plan) => format!("<span class=\"badge plain\">needs {}</span>", escape(plan)),
                    None => "<span class=\"badge plain\">not granted</span>".to_owned(),
                },
                (true, FeatureKind::Rate, Some(limit), Some(window)) => {
                    format!("<span class=\"badge ok\">{limit} per {}</span>", window_words(window))
                }
                (true, _, _, _) => "<span class=\"badge ok\">granted</span>".to_owned(),
            };
            let left = verdict.remaining_in_window.map_or_else(|| "&mdash;".to_owned(), |left| thousands(left.into()));
            let _ = write!(
                out,
                "<tr><th scope=\"row\">{}</th><td>{access}</td><td class=\"num\">{left}</td></tr>",
                escape(&verdict.feature)
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</section>");

    // Actions.
    let csrf = csrf_field(visitor);
    let _ = write!(
        out,
        "<section class=\"panel\"><h2>Actions</h2><div class=\"actions\">\
         <section><h3>Change plan</h3><form method=\"post\" action=\"{path}/plan\">{csrf}\
         <div class=\"inline\"><div class=\"field\"><label for=\"plan\">Plan</label><select id=\"plan\" name=\"plan\">"
    );
    for (plan, price_cents) in plans {
        let selected = if *plan == details.plan { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{}\"{selected}>{} ({} a month)</option>",
            escape(plan),
            escape(plan),
            money(*price_cents)
        );
    }
    let _ = write!(
        out,
        "</select></div><button class=\"primary\" type=\"submit\">Change plan</button></div></form></section>\
         <section><h3>Reset {period}</h3><form method=\"post\" action=\"{path}/reset\">{csrf}\
         <div class=\"inline\"><div class=\"field\"><label for=\"reset-metric\">Metric</label>\
         <select id=\"reset-metric\" name=\"metric\"><option value=\"\">All metrics</option>"
    );
    for metric in metrics {
        let _ =
            write!(out, "<option value=\"{}\">{}</option>", escape(&metric.name), escape(&metric_label(&metric.name)));
    }
    let _ = write!(
        out,
        "</select></div><button type=\"submit\">Reset</button></div></form>\
         <p class=\"hint\">Sets this month's counters to zero. The audit log keeps what they were.</p></section>\
         <section><h3>Erase</h3><p class=\"hint\">Deletes the user and everything held about them.</p>\
         <a class=\"button danger\" href=\"{path}/erase\">Erase user&hellip;</a></section></div></section>"
    );
    out.push_str("</div>");

    // History.
    let _ = write!(
        out,
        "<section class=\"panel\"><h2>History <span class=\"sub\">the last {} months</span></h2>\
         <div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Month</th>",
        details.history.len()
    );
    for metric in metrics {
        let _ = write!(out, "<th scope=\"col\" class=\"num\">{}</th>", escape(&metric_label(&metric.name)));
    }
    out.push_str("</tr></thead><tbody>");
    for (month, values) in &details.history {
        let _ = write!(out, "<tr data-period=\"{month}\"><th scope=\"row\">{month}</th>");
        for (name, value) in values {
            let class = if *value == 0 { "num muted" } else { "num" };
            let _ = write!(
                out,
                "<td class=\"{class}\" data-raw=\"{value}\">{}</td>",
                escape(&metric_value(unit_of(metrics, name), *value))
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>");
    out
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
            .map(|(name, value)| format!("{} {}", metric_label(name), metric_value(unit_of(&units, name), *value)))
            .collect();
        format!("Reset {user_id}'s usage in {}; it was {}.", report.period, before.join(", "))
    })?;
    Ok(Done { location: user_path(&user_id), flash })
}

/// `GET /admin/users/{user_id}/erase`: says what erasing does and asks for the id.
pub fn erase_page(ctx: &mut Ctx<'_>, visitor: &Visitor) -> Result<Page, ApiError> {
    let user_id = user_id(ctx)?;
    ops::user_details(&ctx.app.store, &ctx.app.rules, &user_id, 1)?.ok_or_else(|| user_not_found(&user_id))?;
    let path = escape(&user_path(&user_id));
    let shown = escape(&user_id);
    let content = format!(
        "<div class=\"panel login\" style=\"max-width:34rem\"><h1>Erase <span class=\"mono\">{shown}</span>?</h1>\
         <p>This deletes <strong class=\"mono\">{shown}</strong> with their counters, feature uses and saved \
         answers. Audit rows that name them will name a hash instead. It cannot be undone.</p>\
         <p>Need a copy first? <a href=\"{path}/export\" download>Export their data</a>.</p>\
         <form method=\"post\" action=\"{path}/erase\">{}\
         <div class=\"field\"><label for=\"confirm\">Type <code>{shown}</code> to confirm</label>\
         <input id=\"confirm\" name=\"confirm\" required autocomplete=\"off\" spellcheck=\"false\" \
         autocapitalize=\"off\"></div>\
         <div class=\"inline\"><button class=\"danger\" type=\"submit\">Erase user</button>\
         <a class=\"button\" href=\"{path}\">Cancel</a></div></form></div>",
        csrf_field(visitor)
    );
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
        Err(error) if error.status.is_client_error() => {
            Ok(Done { location: user_path(&user_id), flash: Flash::error(error.message.clone()) })
        }
        Err(error) => Err(error),
    }
}
