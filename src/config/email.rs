//! Validation of `[email]`: the SMTP relay, the sender, and which events are mailed to whom.
//! Each `[[email.alerts]]` rule becomes an outbox route named `mailto:<to>`, so mails are
//! queued, retried and listed exactly as webhook deliveries are.

use super::raw::RawConfig;
use super::{ConfigError, Validator};
use crate::domain::events::{EventFilter, WebhookRoute};
use std::fmt;

/// Who an alert rule mails: the customer the event is about (the account's address for a
/// pool's event, else the user's), or one fixed address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    Customer,
    Address(String),
}

/// One `[[email.alerts]]` rule: its outbox route name (`mailto:customer` or
/// `mailto:<address>`), its recipient and the events it wants.
#[derive(Clone, Debug)]
pub struct EmailAlert {
    pub route: String,
    pub to: Recipient,
    pub filter: EventFilter,
}

#[derive(Clone)]
pub struct EmailConfig {
    /// `smtp://` or `smtps://`, credentials included: for the transport, never for a message.
    pub smtp_url: String,
    /// `Name <address>` or an address, as the From header.
    pub from: String,
    pub alerts: Vec<EmailAlert>,
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailConfig({}, {}, {:?})", super::redact_url(&self.smtp_url), self.from, self.alerts)
    }
}

impl Validator<'_> {
    /// `[email]` and its routes (none when there is no `[email]`).
    pub(super) fn email(&self, raw: &RawConfig) -> Result<(Option<EmailConfig>, Vec<WebhookRoute>), ConfigError> {
        let Some(email) = &raw.email else {
            return Ok((None, Vec::new()));
        };
        let scheme_ok = ["smtp://", "smtps://"].iter().any(|scheme| email.smtp_url.starts_with(scheme));
        if !scheme_ok || lettre::SmtpTransport::from_url(&email.smtp_url).is_err() {
            return Err(self.error(
                "email.smtp_url",
                format!("{:?} is not an SMTP URL", super::redact_url(&email.smtp_url)),
                "write smtps://user:password@smtp.example.com:465 (TLS), or \
                 smtp://user:password@smtp.example.com:587?tls=required (STARTTLS)",
            ));
        }
        if email.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(self.error(
                "email.from",
                format!("{:?} is not a mailbox", email.from),
                "write an address, or a name and an address: \"Tally <alerts@example.com>\"",
            ));
        }
        let mut alerts: Vec<EmailAlert> = Vec::new();
        for (index, alert) in email.alerts.iter().enumerate() {
            let key = format!("email.alerts[{index}]");
            let to = match alert.to.as_str() {
                "customer" => Recipient::Customer,
                address if address.parse::<lettre::Address>().is_ok() => Recipient::Address(address.to_owned()),
                other => {
                    return Err(self.error(
                        format!("{key}.to"),
                        format!("{other:?} is neither \"customer\" nor an email address"),
                        "write \"customer\" (the address stored on the user or account) or an address",
                    ));
                }
            };
            let route = format!("mailto:{}", alert.to);
            if alerts.iter().any(|other| other.route == route) {
                return Err(self.error(
                    format!("{key}.to"),
                    format!("{:?} has a rule already", alert.to),
                    "list every event for one recipient in one rule",
                ));
            }
            if alert.events.is_empty() {
                return Err(self.error(format!("{key}.events"), "is empty", "list event types to mail"));
            }
            let kinds = self.event_kinds(&key, &alert.events, "use a listed event type")?;
            alerts.push(EmailAlert { route, to, filter: EventFilter::Only(kinds) });
        }
        let routes = alerts
            .iter()
            .map(|alert| WebhookRoute { url: alert.route.clone(), filter: alert.filter.clone() })
            .collect();
        Ok((Some(EmailConfig { smtp_url: email.smtp_url.clone(), from: email.from.clone(), alerts }), routes))
    }
}
