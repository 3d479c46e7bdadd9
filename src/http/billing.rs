//! `GET /v1/admin/billing` (a period's report: JSON, or CSV with `Accept: text/csv` or
//! `?format=csv`) and `GET /v1/admin/billing/stripe-meter-events` (NDJSON in Stripe's v2 meter
//! event shape). A past period's statement is closed before the first byte is sent, so a
//! refusal or a storage failure is still a whole error answer; then a thread pages through
//! the customers while the socket takes 64 KiB chunks, as the user export does, and the
//! totals come last. The shapes and columns are documented in docs/openapi.yaml.

use super::body::{Body, BodySender};
use super::error::ApiError;
use super::params::{Params, parse_period, period_param};
use super::users::rfc3339;
use super::{Ctx, admin::actor, now_ms};
use crate::app::billing::{self as ops, Pager, Statement};
use crate::domain::billing::{BillingLine, Totals};
use crate::domain::period::Period;
use ::http::{HeaderValue, Response, StatusCode, header};
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// The buffer is handed to the socket once it holds this much.
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// `?format=` when given, else CSV when `Accept` names text/csv, else JSON.
fn format(ctx: &Ctx<'_>, params: &Params) -> Result<Format, ApiError> {
    match params.get("format").map(String::as_str) {
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(ApiError::invalid(format!("format must be json or csv, got {other:?}"))),
        None if super::request::accepts(ctx.request, "text/csv") => Ok(Format::Csv),
        None => Ok(Format::Json),
    }
}

/// `GET /v1/admin/billing?period=YYYY-MM&format=json|csv`.
pub fn report(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let period = period_param(&ctx.query, now_ms())?;
    let format = format(ctx, &ctx.query)?;
    let pager = ops::report(&ctx.app.store, &ctx.app.rules, period, &actor(ctx))?;
    let content_type = match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
    };
    stream(content_type, move |out| write_report(out, pager, format))
}

/// `GET /v1/admin/billing/stripe-meter-events?period=YYYY-MM` (the previous month when
/// absent): one meter event a line per customer with a Stripe id and metric with use.
pub fn stripe_meter_events(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let now_ms = now_ms();
    let previous = Period::of_unix_ms(now_ms).months_before(1).to_string();
    let period = parse_period(Some(ctx.query.get("period").map_or(previous.as_str(), String::as_str)), now_ms)?;
    let mut pager = ops::stripe_events(&ctx.app.store, &ctx.app.rules, period, &actor(ctx))?;
    stream("application/x-ndjson", move |out| {
        while let Some(events) = pager.next_events().map_err(Stop::Failed)? {
            for event in events {
                out.value(&json!({
                    "event_name": event.event_name,
                    "identifier": event.identifier,
                    "payload": {
                        "stripe_customer_id": event.stripe_customer_id,
                        // Stripe takes the value as a string of a whole number.
                        "value": event.value.to_string(),
                    },
                    "timestamp": rfc3339_seconds(event.timestamp_ms),
                }));
                out.text("\n")?;
            }
        }
        Ok(())
    })
}

fn rfc3339_seconds(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn write_report(out: &mut Out, mut pager: Pager, format: Format) -> Result<(), Stop> {
    let statement = pager.statement.clone();
    let mut totals = Totals::new(&statement.metrics);
    match format {
        Format::Json => {
            let head = json!({
                "period": statement.period,
                "currency": statement.currency,
                "closed": statement.closed_at_ms.is_some(),
                "closed_at": statement.closed_at_ms.map(rfc3339),
            });
            // The object's fields without its closing brace: the customers follow.
            out.text(head.to_string().strip_suffix('}').unwrap_or("{"))?;
            out.text(",\"customers\":[")?;
            let mut first = true;
            while let Some(lines) = pager.next_lines().map_err(Stop::Failed)? {
                for line in &lines {
                    out.text(if first { "\n" } else { ",\n" })?;
                    first = false;
                    out.value(&line_json(line));
                    totals.add(line);
                }
            }
            out.text("],\"totals\":")?;
            out.value(&totals_json(&totals));
            out.text("}\n")
        }
        Format::Csv => {
            out.text(&csv_header(&statement.metrics))?;
            while let Some(lines) = pager.next_lines().map_err(Stop::Failed)? {
                for line in &lines {
                    out.text(&csv_line(&statement, line))?;
                    totals.add(line);
                }
            }
            out.text(&csv_totals(&statement, &totals))
        }
    }
}

fn line_json(line: &BillingLine) -> Value {
    let metrics: Map<String, Value> = line
        .metrics
        .iter()
        .map(|charge| {
            let value = json!({
                "included": charge.included,
                "used": charge.used,
                "overage_units": charge.overage_units,
                "overage_cents": charge.overage_cents,
            });
            (charge.metric.clone(), value)
        })
        .collect();
    json!({
        "customer_kind": line.customer_kind,
        "customer_id": line.customer_id,
        "plan": line.plan,
        "plan_price_cents": line.plan_price_cents,
        "metrics": metrics,
        "overage_cents": line.overage_cents(),
        "total_cents": line.total_cents(),
    })
}

fn totals_json(totals: &Totals) -> Value {
    let metrics: Map<String, Value> = totals
        .metrics
        .iter()
        .map(|(metric, (used, units, cents))| {
            (metric.clone(), json!({ "used": used, "overage_units": units, "overage_cents": cents }))
        })
        .collect();
    json!({
        "customers": totals.customers,
        "plan_price_cents": totals.plan_price_cents,
        "metrics": metrics,
        "overage_cents": totals.overage_cents,
        "total_cents": totals.total_cents,
    })
}

/// The columns: `period, customer_kind, customer_id, plan, plan_price_cents, currency`, then
/// for each metric of the statement, in order, `<metric>_included, <metric>_used,
/// <metric>_overage_units, <metric>_overage_cents`, then `overage_cents, total_cents`.
fn csv_header(metrics: &[String]) -> String {
    let mut columns: Vec<String> =
        ["period", "customer_kind", "customer_id", "plan", "plan_price_cents", "currency"].map(String::from).into();
    for metric in metrics {
        for suffix in ["included", "used", "overage_units", "overage_cents"] {
            columns.push(format!("{metric}_{suffix}"));
        }
    }
    columns.extend(["overage_cents".to_owned(), "total_cents".to_owned()]);
    columns.join(",") + "\r\n"
}

/// One customer's row. An included amount that is unlimited is an empty cell; a metric the
/// line lacks is all empty cells.
fn csv_line(statement: &Statement, line: &BillingLine) -> String {
    let mut cells = vec![
        statement.period.to_string(),
        line.customer_kind.clone(),
        text_cell(&line.customer_id),
        text_cell(&line.plan),
        line.plan_price_cents.to_string(),
        statement.currency.clone(),
    ];
    for metric in &statement.metrics {
        match line.metrics.iter().find(|charge| charge.metric == *metric) {
            Some(charge) => cells.extend([
                charge.included.map(|included| included.to_string()).unwrap_or_default(),
                charge.used.to_string(),
                charge.overage_units.to_string(),
                charge.overage_cents.to_string(),
            ]),
            None => cells.extend(std::iter::repeat_n(String::new(), 4)),
        }
    }
    cells.extend([line.overage_cents().to_string(), line.total_cents().to_string()]);
    cells.join(",") + "\r\n"
}

/// The last row: customer_kind `total`, every numeric column summed but the included
/// amounts (empty), the number of customers in customer_id.
fn csv_totals(statement: &Statement, totals: &Totals) -> String {
    let mut cells = vec![
        statement.period.to_string(),
        "total".to_owned(),
        totals.customers.to_string(),
        String::new(),
        totals.plan_price_cents.to_string(),
        statement.currency.clone(),
    ];
    for metric in &statement.metrics {
        let (used, units, cents) = totals.metrics.get(metric).copied().unwrap_or_default();
        cells.extend([String::new(), used.to_string(), units.to_string(), cents.to_string()]);
    }
    cells.extend([totals.overage_cents.to_string(), totals.total_cents.to_string()]);
    cells.join(",") + "\r\n"
}

/// A text cell: quoted when it holds a comma, quote or line break (RFC 4180), and led by
/// `'` when it starts with `=`, `+`, `-` or `@`, which a spreadsheet would run as a formula
/// (ids may start with `+`, `-` or `@`).
fn text_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// Why writing stopped early.
enum Stop {
    /// The client went away: nothing more to do.
    Gone,
    /// Reading failed: the answer must end visibly incomplete.
    Failed(crate::app::AppError),
}

/// The answer being written: buffered, handed to the socket a chunk at a time.
struct Out {
    sender: BodySender,
    buffer: Vec<u8>,
}

impl Out {
    fn text(&mut self, text: &str) -> Result<(), Stop> {
        self.buffer.extend_from_slice(text.as_bytes());
        if self.buffer.len() >= CHUNK_BYTES { self.flush() } else { Ok(()) }
    }

    fn value(&mut self, value: &Value) {
        serde_json::to_writer(&mut self.buffer, value).expect("a JSON value serializes into memory");
    }

    fn flush(&mut self) -> Result<(), Stop> {
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES * 2)));
        self.sender.send(chunk).map_err(|_| Stop::Gone)
    }
}

/// A 200 whose body `produce` writes on a thread of its own.
fn stream(
    content_type: &'static str,
    produce: impl FnOnce(&mut Out) -> Result<(), Stop> + Send + 'static,
) -> Result<Response<Body>, ApiError> {
    let (sender, body) = Body::channel();
    std::thread::Builder::new()
        .name("tally-billing".into())
        .spawn(move || {
            let mut out = Out { sender, buffer: Vec::with_capacity(CHUNK_BYTES * 2) };
            match produce(&mut out).and_then(|()| out.flush()) {
                Ok(()) | Err(Stop::Gone) => {}
                Err(Stop::Failed(error)) => {
                    log::error!("a billing answer stopped midway: {error}", error = crate::logging::Chain(&error));
                    out.sender.fail(error);
                }
            }
        })
        .map_err(|error| {
            log::error!("cannot start the billing thread: {error}");
            ApiError::internal()
        })?;
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::MetricCharge;

    fn statement() -> Statement {
        Statement {
            period: "2026-11".parse().unwrap(),
            currency: "EUR".into(),
            metrics: vec!["prompts".into(), "runs".into()],
            closed_at_ms: Some(0),
        }
    }

    #[test]
    fn csv_rows_follow_the_documented_columns() {
        let header = csv_header(&statement().metrics);
        assert_eq!(
            header,
            "period,customer_kind,customer_id,plan,plan_price_cents,currency,prompts_included,prompts_used,\
             prompts_overage_units,prompts_overage_cents,runs_included,runs_used,runs_overage_units,\
             runs_overage_cents,overage_cents,total_cents\r\n"
        );
        let line = BillingLine {
            customer_kind: "user".into(),
            customer_id: "=cmd,\"x\"".into(),
            plan: "solo".into(),
            plan_price_cents: 1900,
            metrics: vec![MetricCharge {
                metric: "prompts".into(),
                included: None,
                used: 5,
                overage_units: 0,
                overage_cents: 0,
            }],
        };
        let row = csv_line(&statement(), &line);
        assert_eq!(row, "2026-11,user,\"'=cmd,\"\"x\"\"\",solo,1900,EUR,,5,0,0,,,,,0,1900\r\n");
        assert_eq!(row.matches(',').count() - 1, header.matches(',').count(), "one comma is inside the id's quotes");
        let mut totals = Totals::new(&statement().metrics);
        totals.add(&line);
        assert_eq!(csv_totals(&statement(), &totals), "2026-11,total,1,,1900,EUR,,5,0,0,,0,0,0,0,1900\r\n");
    }
}
