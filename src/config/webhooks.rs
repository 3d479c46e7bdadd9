//! Validation of the telemetry keys: `usage.alert_thresholds`, `[[webhooks]]` and
//! `[webhook_delivery]`.

use super::raw::RawConfig;
use super::{ConfigError, DeliveryConfig, Validator, WebhookConfig, WebhookSecret};
use crate::domain::events::{EventFilter, EventType, WebhookRoute};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::time::Duration;

fn is_http_url(url: &str) -> bool {
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|scheme| url.get(..scheme.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme)));
    scheme_ok && url.parse::<::http::Uri>().is_ok_and(|uri| uri.host().is_some_and(|host| !host.is_empty()))
}

impl Validator<'_> {
    pub(super) fn thresholds(&self, raw: &[f64]) -> Result<Vec<f64>, ConfigError> {
        // A fraction, not a percentage: 80 would be "at 80 times the limit", which no hard
        // limit ever reaches, so a threshold written as a percentage would silently never fire.
        for (index, threshold) in raw.iter().enumerate() {
            if !(threshold.is_finite() && *threshold > 0.0 && *threshold <= 1.0) {
                self.refuse(self.error(
                    format!("usage.alert_thresholds[{index}]"),
                    format!("{threshold} is not a fraction of a limit"),
                    "use fractions above 0 and at most 1, such as 0.8 (80%) or 1.0 (the limit itself)",
                ));
            }
        }
        let mut thresholds = raw.to_vec();
        thresholds.sort_by(f64::total_cmp);
        thresholds.dedup();
        Ok(thresholds)
    }

    /// The receivers with their secrets (for the sender), and their routes (for the domain).
    pub(super) fn webhooks(&self, raw: &RawConfig) -> Result<(Vec<WebhookConfig>, Vec<WebhookRoute>), ConfigError> {
        let mut webhooks: Vec<WebhookConfig> = Vec::new();
        for (index, hook) in raw.webhooks.iter().enumerate() {
            let key = format!("webhooks[{index}]");
            if !is_http_url(&hook.url) {
                return Err(self.error(
                    format!("{key}.url"),
                    format!("{:?} is not an http or https URL", hook.url),
                    "write the receiver's full URL, e.g. \"https://example.com/hooks/tally\"",
                ));
            }
            if webhooks.iter().any(|other| other.url == hook.url) {
                return Err(self.error(format!("{key}.url"), "is listed twice", "list each receiver once"));
            }
            let secrets = self.secrets(&key, hook.secret.as_deref(), hook.secrets.as_deref())?;
            let filter = if hook.events.iter().any(|kind| kind == "*") {
                EventFilter::All
            } else if hook.events.is_empty() {
                return Err(self.error(format!("{key}.events"), "is empty", "list event types, or [\"*\"] for all"));
            } else {
                EventFilter::Only(self.event_kinds(&key, &hook.events, "use a listed type, or \"*\"")?)
            };
            webhooks.push(WebhookConfig { url: hook.url.clone(), secrets, filter });
        }
        let routes =
            webhooks.iter().map(|hook| WebhookRoute { url: hook.url.clone(), filter: hook.filter.clone() }).collect();
        Ok((webhooks, routes))
    }

    /// The event types of `events` (at `key`.events), each refused with `fix` when unknown.
    pub(super) fn event_kinds(&self, key: &str, events: &[String], fix: &str) -> Result<Vec<EventType>, ConfigError> {
        events
            .iter()
            .enumerate()
            .map(|(position, kind)| {
                kind.parse::<EventType>()
                    .map_err(|problem| self.error(format!("{key}.events[{position}]"), problem, fix))
            })
            .collect()
    }

    /// `secret = "..."` or `secrets = ["new", "old"]` (rotation: every delivery is signed
    /// with each), never both.
    fn secrets(
        &self,
        key: &str,
        one: Option<&str>,
        many: Option<&[String]>,
    ) -> Result<Vec<WebhookSecret>, ConfigError> {
        let texts: Vec<&str> = match (one, many) {
            (Some(_), Some(_)) => {
                return Err(self.error(
                    format!("{key}.secrets"),
                    "is set beside secret",
                    "use `secret` for one secret, or `secrets = [\"new\", \"old\"]` while rotating",
                ));
            }
            (Some(one), None) => vec![one],
            (None, Some(many)) if !many.is_empty() => many.iter().map(String::as_str).collect(),
            _ => {
                return Err(self.error(
                    format!("{key}.secret"),
                    "is missing",
                    "set `secret` to a long random value (e.g. `echo whsec_$(openssl rand -base64 32)`)",
                ));
            }
        };
        let mut secrets = Vec::with_capacity(texts.len());
        for (index, text) in texts.into_iter().enumerate() {
            let at = if many.is_some() { format!("{key}.secrets[{index}]") } else { format!("{key}.secret") };
            if text.trim().is_empty() {
                return Err(self.error(
                    at,
                    "is empty",
                    "set a long random secret (e.g. `echo whsec_$(openssl rand -base64 32)`); receivers check signatures with it",
                ));
            }
            let standard_key = match text.strip_prefix("whsec_") {
                Some(encoded) => BASE64.decode(encoded).map_err(|_| {
                    self.error(
                        &at,
                        "starts with whsec_ but what follows is not base64",
                        "Standard Webhooks reads whsec_<base64>: use e.g. `echo whsec_$(openssl rand -base64 32)`, \
                         or a secret without the whsec_ prefix",
                    )
                })?,
                None => text.as_bytes().to_vec(),
            };
            if standard_key.is_empty() {
                return Err(self.error(
                    at,
                    "has an empty key after whsec_",
                    "put the base64 of random bytes after whsec_",
                ));
            }
            secrets.push(WebhookSecret { text: text.to_owned(), standard_key });
        }
        Ok(secrets)
    }

    pub(super) fn delivery(&self, raw: &RawConfig) -> Result<DeliveryConfig, ConfigError> {
        let delivery = &raw.webhook_delivery;
        let millis = |key: &str, value: i64, min: i64, max: i64| {
            self.in_range(&format!("webhook_delivery.{key}"), value, min, max)
                .map(|ms| Duration::from_millis(ms as u64))
        };
        let retry_initial = millis("retry_initial_ms", delivery.retry_initial_ms, 1, 86_400_000)?;
        let retry_max = millis("retry_max_ms", delivery.retry_max_ms, 1, 86_400_000)?;
        // The values as written: an out-of-range one is already refused, not compared.
        if delivery.retry_max_ms < delivery.retry_initial_ms {
            return Err(self.error(
                "webhook_delivery.retry_max_ms",
                "is smaller than retry_initial_ms",
                "make retry_max_ms at least retry_initial_ms",
            ));
        }
        let give_up_secs =
            self.in_range("webhook_delivery.give_up_after_secs", delivery.give_up_after_secs, 1, 30 * 86_400)?;
        Ok(DeliveryConfig {
            timeout: millis("timeout_ms", delivery.timeout_ms, 10, 600_000)?,
            max_in_flight: self.in_range("webhook_delivery.max_in_flight", delivery.max_in_flight, 1, 256)? as usize,
            retry_initial,
            retry_max,
            give_up_after: Duration::from_secs(give_up_secs as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_http_url;

    #[test]
    fn only_http_and_https_urls_with_a_host_are_receivers() {
        assert!(is_http_url("https://example.com/hooks/tally"));
        assert!(is_http_url("HTTP://127.0.0.1:9000/x"));
        for bad in ["ftp://example.com", "file:///etc/passwd", "example.com", "https://", "gopher://x", ""] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }
}
