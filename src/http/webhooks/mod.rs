//! The webhook sender: delivers queued events from the outbox table, apart from the request
//! path. Each configured receiver has a lane of its own (lane.rs): a dispatcher that claims
//! that receiver's due deliveries and `max_in_flight` workers that POST them, each attempt
//! bounded as a whole by `timeout_ms`; so a dead, slow or trickling receiver only delays
//! itself. Outcomes go to one recorder that writes them in batches, off the workers' path. A
//! sweeper marks failed what is past `give_up_after` or goes to a receiver no longer
//! configured. State lives in the database, so a restart resumes where it stopped: delivery
//! is at least once, and receivers deduplicate on the event id.

mod lane;
mod mail;
mod signing;

pub use signing::{standard_signature, tally_signature};

use super::{App, now_ms};
use crate::config::DeliveryConfig;
use crate::domain::ports::{AttemptOutcome, EventRecord};
use lane::{Lane, Target};
use mail::Mailer;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
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

/// The wait before attempt `attempts + 1`: doubling from `retry_initial`, capped at
/// `retry_max`, then jittered into its upper half so receivers coming back up are not hit
/// by every retry at once.
pub fn backoff(config: &DeliveryConfig, attempts: u32, random: u64) -> Duration {
    let doubling = 1u128 << attempts.saturating_sub(1).min(40);
    let full = (config.retry_initial.as_millis() * doubling).min(config.retry_max.as_millis()) as u64;
    let half = full / 2;
    Duration::from_millis(half + random % (full - half + 1))
}

/// A finished attempt on its way to the database.
type Finished = (i64, AttemptOutcome);

/// The most outcomes one recorder transaction writes.
const RECORD_BATCH: usize = 512;

/// Writes finished attempts in batches: one transaction for whatever has arrived since the
/// last one. A failed write leaves those deliveries pending under their claim, so they are
/// attempted again once it passes: at least once, never lost.
fn record(app: &App, finished: &Receiver<Finished>) {
    while let Ok(first) = finished.recv() {
        let mut batch = vec![first];
        while batch.len() < RECORD_BATCH {
            match finished.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let written = app.store.write(move |tx| {
            let now = now_ms();
            for (id, outcome) in &batch {
                tx.finish_attempt(*id, outcome, now)?;
            }
            Ok(())
        });
        if let Err(error) = written {
            log::warn!(
                "cannot record webhook attempts; they are attempted again after their claim: {error}",
                error = crate::logging::Chain(&error)
            );
        }
    }
}

/// The most deliveries one sweep marks failed; the next poll takes the rest.
const SWEEP_LIMIT: u32 = 1_000;

/// Marks failed the pending deliveries no lane will attempt any more: past `give_up_after`
/// without a success. A delivery to a receiver this node does not have configured (removed,
/// or added on another node not yet restarted here) is left to the nodes that have it, and
/// failed by this same expiry if none does.
fn sweep(app: &App) {
    let give_up = app.config.delivery.give_up_after;
    let swept = app.store.write(move |tx| {
        let now = now_ms();
        let error = gave_up_error(give_up);
        tx.expire_deliveries(now, now - give_up.as_millis() as i64, &error, SWEEP_LIMIT)
    });
    match swept {
        Ok(0) => {}
        Ok(expired) => log::warn!("webhook deliveries marked failed: {expired} past give_up_after_secs"),
        Err(error) => log::warn!("cannot sweep webhook deliveries: {error}", error = crate::logging::Chain(&error)),
    }
}

/// What a delivery given up on says (the sweeper adds its last attempt's error).
fn gave_up_error(give_up_after: Duration) -> String {
    format!("gave up: no successful attempt in {} s", give_up_after.as_secs())
}

/// How often lanes look for due deliveries when they have none, and the sweeper runs.
fn poll_period(config: &DeliveryConfig) -> Duration {
    config.retry_initial.min(Duration::from_millis(250))
}

/// Starts a lane per receiver (each webhook, each mail alert rule), the recorder and the
/// sweeper; nothing when neither is configured. They stop when the writer stops.
pub fn spawn(app: Arc<App>) -> std::io::Result<()> {
    let mut targets: Vec<Target> = app.config.webhooks.iter().cloned().map(Target::Webhook).collect();
    if let Some(email) = &app.config.email {
        for alert in &email.alerts {
            let mailer = Mailer::new(email, alert.clone(), app.config.delivery.timeout)
                .map_err(|error| std::io::Error::other(format!("cannot set up mail to {}: {error}", alert.route)))?;
            targets.push(Target::Mail(Box::new(mailer)));
        }
    }
    if targets.is_empty() {
        return Ok(());
    }
    let (finish, finished): (Sender<Finished>, Receiver<Finished>) = channel();
    let poll = poll_period(&app.config.delivery);
    for (index, target) in targets.into_iter().enumerate() {
        Lane::start(Arc::clone(&app), target, index, finish.clone(), poll)?;
    }
    drop(finish);
    let recorder = Arc::clone(&app);
    std::thread::Builder::new().name("tally-webhook-recorder".into()).spawn(move || record(&recorder, &finished))?;
    std::thread::Builder::new().name("tally-webhook-sweeper".into()).spawn(move || {
        while app.store.is_writer_running() {
            sweep(&app);
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
}
