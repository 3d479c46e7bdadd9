//! The webhook sender: delivers queued events from the outbox table, apart from the request
//! path. A dispatcher thread picks due deliveries; at most `max_in_flight` worker threads
//! POST them with a timeout. A 2xx marks a delivery delivered; anything else retries with
//! exponential backoff and jitter until `give_up_after`, then marks it failed. State lives in
//! the database, so a restart resumes where it stopped: delivery is at least once, and
//! receivers deduplicate on the event id.

use super::{App, now_ms};
use crate::config::{DeliveryConfig, WebhookConfig};
use crate::domain::ports::{AttemptOutcome, DeliveryRecord, EventRecord};
use crate::metrics::OutcomeLabels;
use hmac::{Hmac, KeyInit, Mac};
use oxhttp::model::{Body, Method, Request, header};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The JSON of an event, as webhooks receive it and the events API lists it.
pub fn event_json(event: &EventRecord) -> Value {
    json!({
        "id": event.id,
        "type": event.kind,
        "at": super::users::rfc3339(event.at_ms),
        "user_id": event.user_id,
        "data": serde_json::from_str::<Value>(&event.data).unwrap_or(Value::Null),
    })
}

/// `t=UNIX,v1=HEX(HMAC-SHA256(secret, "t.body"))`, the scheme Stripe uses.
pub fn signature(secret: &str, unix_secs: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let hex = crate::domain::hex(&mac.finalize().into_bytes());
    format!("t={unix_secs},v1={hex}")
}

/// The wait before attempt `attempts + 1`: doubling from `retry_initial`, capped at
/// `retry_max`, then jittered into its upper half so receivers coming back up are not hit
/// by every retry at once.
pub fn backoff(config: &DeliveryConfig, attempts: u32, random: u64) -> Duration {
    let doubling = 1u128 << attempts.saturating_sub(1).min(40);
    let full = (config.retry_initial.as_millis() * doubling).min(config.retry_max.as_millis()) as u64;
    let half = full / 2;
    Duration::from_millis(half + random % (full - half + 1))
}

struct Sender {
    app: Arc<App>,
    hooks: HashMap<String, WebhookConfig>,
    client: oxhttp::Client,
    in_flight: Mutex<HashSet<i64>>,
}

impl Sender {
    fn attempt(&self, delivery: &DeliveryRecord, event: &EventRecord) -> AttemptOutcome {
        let Some(hook) = self.hooks.get(&delivery.url) else {
            return AttemptOutcome::Failed { error: "this webhook is no longer configured".into() };
        };
        let body = event_json(event).to_string();
        let signed = signature(&hook.secret, now_ms() / 1000, &body);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&hook.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("tally-event-id", event.id.as_str())
            .header("tally-signature", signed)
            .body(Body::from(body));
        let error = match request
            .map_err(|error| error.to_string())
            .and_then(|request| self.client.request(request).map_err(|error| error.to_string()))
        {
            Ok(response) if response.status().is_success() => return AttemptOutcome::Delivered,
            Ok(response) => format!("the receiver answered HTTP {}", response.status().as_u16()),
            Err(error) => error,
        };
        let config = &self.app.config.delivery;
        let now = now_ms();
        let give_up_at = delivery.window_start_ms + config.give_up_after.as_millis() as i64;
        if now >= give_up_at {
            return AttemptOutcome::Failed { error };
        }
        let random = uuid::Uuid::new_v4().as_u64_pair().0;
        let wait = backoff(config, delivery.attempts + 1, random).as_millis() as i64;
        AttemptOutcome::Retry { next_attempt_at_ms: (now + wait).min(give_up_at), error }
    }

    fn deliver(&self, delivery: DeliveryRecord, event: EventRecord) {
        let outcome = self.attempt(&delivery, &event);
        let label = match &outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry { error, .. } => {
                log::info!("webhook delivery {} to {} will be retried: {error}", delivery.id, delivery.url);
                "retry"
            }
            AttemptOutcome::Failed { error } => {
                log::warn!("webhook delivery {} to {} failed for good: {error}", delivery.id, delivery.url);
                "failed"
            }
        };
        self.app.metrics.webhook_deliveries.get_or_create(&OutcomeLabels { outcome: label }).inc();
        let id = delivery.id;
        if let Err(error) = self.app.store.write(move |tx| tx.finish_attempt(id, &outcome, now_ms())) {
            // The delivery stays pending and is attempted again: at least once, never lost.
            log::warn!("cannot record webhook delivery {id}: {error}");
        }
        self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
    }

    /// Claims due deliveries for this node and hands them to the workers; returns false once
    /// the writer has stopped. A claim pushes a delivery's next attempt past the attempt's
    /// deadline, in the same statement that picks it (skipping rows another node is
    /// claiming): with several nodes on one database each attempt is made by one node, and
    /// a node that dies mid-attempt leaves the delivery due again once the lease passes.
    fn dispatch(&self, jobs: &SyncSender<(DeliveryRecord, EventRecord)>) -> bool {
        if !self.app.store.is_writer_running() {
            return false;
        }
        let max = self.app.config.delivery.max_in_flight;
        let free = max.saturating_sub(self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len());
        if free == 0 {
            return true;
        }
        let lease_ms = self.app.config.delivery.timeout.as_millis() as i64 + CLAIM_MARGIN_MS;
        let claimed = self.app.store.write(move |tx| {
            let now = now_ms();
            tx.claim_deliveries(now, now + lease_ms, free as u32)
        });
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) => {
                log::warn!("cannot claim due webhook deliveries: {error}");
                return true;
            }
        };
        for (delivery, event) in claimed {
            self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(delivery.id);
            if jobs.send((delivery, event)).is_err() {
                return false;
            }
        }
        true
    }
}

/// How long past an attempt's timeout its claim lasts before another node may try.
const CLAIM_MARGIN_MS: i64 = 5_000;

fn work(sender: &Sender, jobs: &Mutex<Receiver<(DeliveryRecord, EventRecord)>>) {
    loop {
        let job = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
        match job {
            Ok((delivery, event)) => sender.deliver(delivery, event),
            Err(_) => return,
        }
    }
}

/// Starts the dispatcher and its workers; nothing when no webhook is configured.
pub fn spawn(app: Arc<App>) -> std::io::Result<()> {
    if app.config.webhooks.is_empty() {
        return Ok(());
    }
    let config = app.config.delivery.clone();
    let client = oxhttp::Client::new()
        .with_global_timeout(config.timeout)
        .with_user_agent(format!("tally/{}", env!("CARGO_PKG_VERSION")))
        .map_err(std::io::Error::other)?;
    let hooks = app.config.webhooks.iter().map(|hook| (hook.url.clone(), hook.clone())).collect();
    let sender = Arc::new(Sender { app, hooks, client, in_flight: Mutex::new(HashSet::new()) });
    let (jobs, queue) = sync_channel(config.max_in_flight);
    let queue = Arc::new(Mutex::new(queue));
    for worker in 0..config.max_in_flight {
        let (sender, queue) = (Arc::clone(&sender), Arc::clone(&queue));
        std::thread::Builder::new().name(format!("tally-webhook-{worker}")).spawn(move || work(&sender, &queue))?;
    }
    let poll = config.retry_initial.min(Duration::from_millis(250));
    std::thread::Builder::new().name("tally-webhooks".into()).spawn(move || {
        while sender.dispatch(&jobs) {
            std::thread::sleep(poll);
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(initial_ms: u64, max_ms: u64) -> DeliveryConfig {
        DeliveryConfig {
            timeout: Duration::from_secs(1),
            max_in_flight: 1,
            retry_initial: Duration::from_millis(initial_ms),
            retry_max: Duration::from_millis(max_ms),
            give_up_after: Duration::from_secs(3600),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_in_the_upper_half() {
        let config = config(1000, 8000);
        for (attempts, full) in [(1u32, 1000u64), (2, 2000), (3, 4000), (4, 8000), (5, 8000), (60, 8000)] {
            let low = backoff(&config, attempts, 0).as_millis() as u64;
            let high = backoff(&config, attempts, u64::MAX - 7).as_millis() as u64;
            assert_eq!(low, full / 2, "attempt {attempts}");
            assert!(high <= full && high >= full / 2, "attempt {attempts}: {high}");
        }
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Checked with: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, "{\"a\":1}"),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }
}
