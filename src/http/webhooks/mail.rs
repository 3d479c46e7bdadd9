//! Email alerts: one `[[email.alerts]]` rule's sender. A lane (lane.rs) claims the rule's
//! deliveries from the outbox like a webhook's; each attempt composes the mail (a plain-text
//! and an HTML part with the numbers that matter) and hands it to the SMTP relay. The
//! Message-ID is the event's and the rule's, so a mail sent twice (at least once) can be
//! recognized as one.

use super::lane::Failure;
use super::{App, event_json};
use crate::config::{EmailAlert, EmailConfig, Recipient};
use crate::domain::plan::Limit;
use crate::domain::ports::{CustomerKey, EventRecord};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Message, SmtpTransport, Transport};
use maud::html;
use serde_json::Value;
use std::time::Duration;

pub(in crate::http) struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
    alert: EmailAlert,
}

impl Mailer {
    /// The relay of `config` for `alert`'s mails; each attempt is bounded by `timeout`.
    pub(super) fn new(config: &EmailConfig, alert: EmailAlert, timeout: Duration) -> Result<Mailer, String> {
        let transport = SmtpTransport::from_url(&config.smtp_url)
            .map_err(|error| error.to_string())?
            .timeout(Some(timeout))
            .build();
        let from = config.from.parse().map_err(|error: lettre::address::AddressError| error.to_string())?;
        Ok(Mailer { transport, from, alert })
    }

    pub(super) fn route(&self) -> &str {
        &self.alert.route
    }

    /// Mails `event` to the rule's recipient.
    pub(super) fn send(&self, app: &App, event: &EventRecord) -> Result<(), Failure> {
        let address = match &self.alert.to {
            Recipient::Address(address) => address.clone(),
            Recipient::Customer => customer_address(app, event)?,
        };
        let to: Mailbox =
            address.parse().map_err(|error| Failure::Permanent(format!("cannot mail {address:?}: {error}")))?;
        let mail = compose(app, event);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .message_id(Some(format!("<{}.{}@tally>", event.id, self.route_token())))
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|error| Failure::Permanent(format!("cannot compose the mail: {error}")))?;
        self.transport.send(&message).map(|_| ()).map_err(|error| {
            let text = format!("the mail relay refused or failed: {error}");
            if error.is_permanent() { Failure::Permanent(text) } else { Failure::Retry(text) }
        })
    }

    /// The rule's route as a Message-ID part: letters and digits only.
    fn route_token(&self) -> String {
        self.alert
            .route
            .chars()
            .map(|character| if character.is_ascii_alphanumeric() { character } else { '-' })
            .collect()
    }
}

/// The address stored on the customer the event is about: the account's for a pool's event
/// (its data names `account_id`), else the user's.
fn customer_address(app: &App, event: &EventRecord) -> Result<String, Failure> {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    let customer = match (data["account_id"].as_str(), event.user_id.as_deref()) {
        (Some(account_id), _) => CustomerKey { kind: "account", id: account_id },
        (None, Some(user_id)) => CustomerKey { kind: "user", id: user_id },
        (None, None) => return Err(Failure::Permanent("the event names no customer to mail".into())),
    };
    let email = crate::http::may_block(|| app.store.read(|reader| reader.customer_fields(customer)))
        .map_err(|error| Failure::Retry(format!("cannot read the customer's address: {error}")))?
        .email;
    email.ok_or_else(|| Failure::Permanent(format!("{} {} has no email address on file", customer.kind, customer.id)))
}

/// A mail's subject and its two parts.
struct Mail {
    subject: String,
    text: String,
    html: String,
}

/// The numbers of a usage event, read from its data.
struct Numbers<'e> {
    who: String,
    metric: &'e str,
    plan: &'e str,
    period: &'e str,
    used: Option<u64>,
    limit: Option<u64>,
    projected: Option<u64>,
    exhausted_at: Option<&'e str>,
    upgrade_to: Option<String>,
}

fn numbers<'e>(app: &App, event: &'e EventRecord, data: &'e Value) -> Numbers<'e> {
    let who = match (data["account_id"].as_str(), event.user_id.as_deref()) {
        (Some(account_id), _) => format!("Account {account_id}"),
        (None, Some(user_id)) => format!("User {user_id}"),
        (None, None) => "Tally".to_owned(),
    };
    let (metric, plan) = (data["metric"].as_str().unwrap_or_default(), data["plan"].as_str().unwrap_or_default());
    let limit = data["limit"].as_u64();
    // The cheapest plan whose limit for the metric is higher than this one's.
    let upgrade_to = limit.and_then(|limit| {
        let more = |other: &crate::domain::plan::Plan| match other.limit(metric) {
            Limit::Unlimited => true,
            Limit::Hard(other) | Limit::Soft(other) => other > limit,
        };
        app.rules.catalog.cheapest_plan_where(plan, more).map(|plan| plan.name.clone())
    });
    Numbers {
        who,
        metric,
        plan,
        period: data["period"].as_str().unwrap_or_default(),
        used: data["used"].as_u64(),
        limit,
        projected: data["projected"].as_u64(),
        exhausted_at: data["exhausted_at"].as_str(),
        upgrade_to,
    }
}

fn subject(kind: &str, numbers: &Numbers<'_>, data: &Value) -> String {
    let Numbers { who, metric, used, limit, .. } = numbers;
    let of = match (used, limit) {
        (Some(used), Some(limit)) => format!(" ({used} of {limit})"),
        _ => String::new(),
    };
    match kind {
        "threshold_crossed" => {
            let percent = data["threshold"].as_f64().map_or(0.0, |threshold| threshold * 100.0);
            format!("{who} has used {percent:.0}% of this month's {metric}{of}")
        }
        "limit_exceeded" => format!("{who} reached the {metric} limit{of}"),
        "soft_limit_exceeded" => format!("{who} passed the soft {metric} limit{of}"),
        "forecast_exceeds_limit" => format!("{who} is projected to run out of {metric} this month{of}"),
        other => format!("Tally: {other} for {who}"),
    }
}

/// The mail of `event`: what happened, and the numbers (used, limit, the projection and when
/// it runs out when known, a plan that would allow more).
fn compose(app: &App, event: &EventRecord) -> Mail {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    let numbers = numbers(app, event, &data);
    let subject = subject(&event.kind, &numbers, &data);
    let mut rows: Vec<(&str, String)> = Vec::new();
    if !numbers.metric.is_empty() {
        rows.push(("Metric", numbers.metric.to_owned()));
        rows.push(("Period", numbers.period.to_owned()));
        rows.push(("Plan", numbers.plan.to_owned()));
    }
    if let Some(used) = numbers.used {
        rows.push(("Used", used.to_string()));
    }
    if let Some(limit) = numbers.limit {
        rows.push(("Limit", limit.to_string()));
    }
    if let Some(projected) = numbers.projected {
        rows.push(("Projected by the month's end", projected.to_string()));
    }
    if let Some(exhausted_at) = numbers.exhausted_at {
        rows.push(("Runs out", exhausted_at.to_owned()));
    }
    if let Some(plan) = &numbers.upgrade_to {
        rows.push(("A plan that allows more", plan.clone()));
    }
    let mut text = format!("{subject}.\n\n");
    for (name, value) in &rows {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push_str(&format!(
        "\nEvent {} ({}) at {}.\n",
        event.id,
        event.kind,
        super::super::users::rfc3339(event.at_ms)
    ));
    if rows.is_empty() {
        text.push_str(&format!("\n{}\n", event_json(event)));
    }
    let html = html! {
        p { (subject) "." }
        @if !rows.is_empty() {
            table {
                @for (name, value) in &rows {
                    tr { th style="text-align:left;padding-right:1em" { (name) } td { (value) } }
                }
            }
        } @else {
            pre { (event_json(event).to_string()) }
        }
        p style="color:#666" { "Event " (event.id) " (" (event.kind) ")." }
    };
    Mail { subject, text, html: html.into_string() }
}
