//! One receiver's lane: a dispatcher thread claims that receiver's due deliveries into a
//! bounded in-memory queue, and `max_in_flight` workers send them (a POST to a webhook, or a
//! mail through the SMTP relay). Nothing here is shared with another receiver's lane, so a
//! receiver that hangs, trickles or refuses holds only its own workers.

use super::mail::Mailer;
use super::{App, Finished, backoff, event_json, now_ms, standard_signature, tally_signature};
use crate::config::WebhookConfig;
use crate::domain::ports::{AttemptOutcome, DeliveryRecord, EventRecord};
use crate::metrics::OutcomeLabels;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Claimed deliveries a lane holds per worker (queued or being attempted): enough that the
/// workers never wait for a claim while the receiver keeps up.
const CLAIMS_PER_WORKER: usize = 4;

/// How long past the last attempt it could make a claim lasts, before another node may take
/// the delivery over.
const CLAIM_MARGIN_MS: i64 = 5_000;

/// The most of a receiver's answer that is read; a longer one fails the attempt.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// A delivery this node holds until `lease_until_ms`.
struct Claim {
    delivery: DeliveryRecord,
    event: EventRecord,
    lease_until_ms: i64,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Claim>,
    /// Claims being attempted right now.
    busy: usize,
    stopped: bool,
}

/// Where a lane sends: a webhook receiver, or the mail relay for one alert rule.
pub(super) enum Target {
    Webhook(WebhookConfig),
    Mail(Box<Mailer>),
}

/// Why an attempt failed: worth retrying, or never going to work (a mail without an address,
/// a relay's permanent refusal), which fails the delivery now.
pub(super) enum Failure {
    Retry(String),
    Permanent(String),
}

impl Target {
    /// The outbox route its deliveries are queued under.
    fn route(&self) -> &str {
        match self {
            Target::Webhook(hook) => &hook.url,
            Target::Mail(mailer) => mailer.route(),
        }
    }
}

pub(super) struct Lane {
    app: Arc<App>,
    target: Target,
    agent: ureq::Agent,
    finish: Sender<Finished>,
    queue: Mutex<Queue>,
    /// Signalled when a claim is queued, a worker finishes, or the lane stops.
    changed: Condvar,
    capacity: usize,
}

impl Lane {
    /// Starts the lane's dispatcher and workers.
    pub(super) fn start(
        app: Arc<App>,
        target: Target,
        index: usize,
        finish: Sender<Finished>,
        poll: Duration,
    ) -> std::io::Result<()> {
        let config = &app.config.delivery;
        let workers = config.max_in_flight;
        // One deadline for the whole attempt: connect, send, and the complete answer.
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_idle_connections_per_host(workers)
            .user_agent(format!("tally/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let lane = Arc::new(Lane {
            target,
            agent,
            finish,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            capacity: workers * CLAIMS_PER_WORKER,
            app,
        });
        for worker in 0..workers {
            let lane = Arc::clone(&lane);
            std::thread::Builder::new().name(format!("tally-webhook-{index}-{worker}")).spawn(move || lane.work())?;
        }
        std::thread::Builder::new().name(format!("tally-webhook-{index}")).spawn(move || lane.dispatch(poll))?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn give_up_at(&self, delivery: &DeliveryRecord) -> i64 {
        delivery.window_start_ms + self.app.config.delivery.give_up_after.as_millis() as i64
    }

    fn report(&self, delivery: &DeliveryRecord, outcome: AttemptOutcome) {
        let label = match &outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry { error, .. } => {
                log::info!("delivery {} to {} will be retried: {error}", delivery.id, delivery.url);
                "retry"
            }
            AttemptOutcome::Failed { error } | AttemptOutcome::Expired { error } => {
                log::warn!("delivery {} to {} failed for good: {error}", delivery.id, delivery.url);
                "failed"
            }
        };
        self.app.metrics.webhook_deliveries.get_or_create(&OutcomeLabels { outcome: label }).inc();
        // The recorder outlives the lanes; if it is gone the process is stopping, and the
        // delivery is attempted again after its claim.
        let _ = self.finish.send((delivery.id, outcome));
    }

    /// Claims due deliveries while the queue has room; waits a poll period when none are
    /// due, or until the queue drains to half when a full batch came back (more may be due).
    fn dispatch(&self, poll: Duration) {
        let timeout_ms = self.app.config.delivery.timeout.as_millis() as i64;
        let workers = self.app.config.delivery.max_in_flight;
        // A claim lasts long enough for every claim ahead of it to time out first.
        let lease_ms = timeout_ms * (self.capacity / workers + 1) as i64 + CLAIM_MARGIN_MS;
        loop {
            if !self.app.store.is_writer_running() {
                self.lock().stopped = true;
                self.changed.notify_all();
                return;
            }
            let room = {
                let mut queue = self.lock();
                self.fail_expired(&mut queue);
                self.capacity.saturating_sub(queue.waiting.len() + queue.busy)
            };
            let mut filled = false;
            if room > 0 {
                let url = self.target.route().to_owned();
                let claimed = self.app.store.write(move |tx| {
                    let now = now_ms();
                    tx.claim_deliveries(&url, now, now + lease_ms, room as u32)
                });
                match claimed {
                    Ok(claimed) => {
                        filled = claimed.len() == room;
                        let lease_until_ms = now_ms() + lease_ms;
                        let mut queue = self.lock();
                        for (delivery, event) in claimed {
                            queue.waiting.push_back(Claim { delivery, event, lease_until_ms });
                        }
                        drop(queue);
                        self.changed.notify_all();
                    }
                    Err(error) => log::warn!(
                        "cannot claim due deliveries for {}: {error}",
                        self.target.route(),
                        error = crate::logging::Chain(&error)
                    ),
                }
            }
            let deadline = Instant::now() + poll;
            let mut queue = self.lock();
            loop {
                let held = queue.waiting.len() + queue.busy;
                if filled && held <= self.capacity / 2 {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                queue = self.changed.wait_timeout(queue, left).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
            }
        }
    }

    /// Fails the queued claims past their give-up time without attempting them, so a hanging
    /// receiver's backlog is marked failed within a poll period.
    fn fail_expired(&self, queue: &mut Queue) {
        let now = now_ms();
        let (expired, kept): (Vec<Claim>, Vec<Claim>) =
            queue.waiting.drain(..).partition(|claim| now >= self.give_up_at(&claim.delivery));
        queue.waiting.extend(kept);
        for claim in expired {
            self.report(&claim.delivery, self.gave_up(&claim.delivery));
        }
    }

    /// The sweeper's words (mod.rs), for a delivery a lane gives up on itself.
    fn gave_up(&self, delivery: &DeliveryRecord) -> AttemptOutcome {
        let mut error = super::gave_up_error(self.app.config.delivery.give_up_after);
        if let Some(last) = &delivery.last_error {
            error.push_str("; last error: ");
            error.push_str(last);
        }
        AttemptOutcome::Expired { error }
    }

    fn work(&self) {
        loop {
            let claim = {
                let mut queue = self.lock();
                loop {
                    if let Some(claim) = queue.waiting.pop_front() {
                        queue.busy += 1;
                        break claim;
                    }
                    if queue.stopped {
                        return;
                    }
                    queue = self.changed.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            };
            self.settle(&claim);
            self.lock().busy -= 1;
            self.changed.notify_all();
        }
    }

    /// Attempts one claimed delivery, unless it is past giving up (failed unattempted) or its
    /// claim could run out mid-attempt (left for the next claim, so two nodes never attempt
    /// it at once).
    fn settle(&self, claim: &Claim) {
        let now = now_ms();
        let delivery = &claim.delivery;
        let give_up_at = self.give_up_at(delivery);
        if now >= give_up_at {
            return self.report(delivery, self.gave_up(delivery));
        }
        let config = &self.app.config.delivery;
        if now + config.timeout.as_millis() as i64 > claim.lease_until_ms {
            return;
        }
        let attempted = match &self.target {
            Target::Webhook(hook) => self.post(hook, &claim.event).map_err(Failure::Retry),
            Target::Mail(mailer) => mailer.send(&self.app, &claim.event),
        };
        let error = match attempted {
            Ok(()) => return self.report(delivery, AttemptOutcome::Delivered),
            Err(Failure::Permanent(error)) => return self.report(delivery, AttemptOutcome::Failed { error }),
            Err(Failure::Retry(error)) => error,
        };
        let now = now_ms();
        let outcome = if now >= give_up_at {
            AttemptOutcome::Failed { error }
        } else {
            let random = uuid::Uuid::new_v4().as_u64_pair().0;
            let wait = backoff(config, delivery.attempts + 1, random).as_millis() as i64;
            AttemptOutcome::Retry { next_attempt_at_ms: (now + wait).min(give_up_at), error }
        };
        self.report(delivery, outcome);
    }

    /// One POST, its answer read to the end, all within `timeout_ms`; Ok on a 2xx.
    fn post(&self, hook: &WebhookConfig, event: &EventRecord) -> Result<(), String> {
        let body = event_json(event).to_string();
        let unix_secs = now_ms() / 1000;
        let secrets = &hook.secrets;
        let sent = self
            .agent
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("tally-event-id", &event.id)
            .header("tally-signature", tally_signature(secrets, unix_secs, &body))
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", unix_secs.to_string())
            .header("webhook-signature", standard_signature(secrets, &event.id, unix_secs, &body))
            .send(body.as_bytes());
        let mut answer = sent.map_err(|error| error.to_string())?;
        let status = answer.status();
        let mut reader = answer.body_mut().as_reader().take(MAX_ANSWER_BYTES + 1);
        let read = std::io::copy(&mut reader, &mut std::io::sink()).map_err(|error| {
            format!("the receiver answered HTTP {}, then reading the answer failed: {error}", status.as_u16())
        })?;
        if read > MAX_ANSWER_BYTES {
            return Err(format!("the receiver's answer is longer than {MAX_ANSWER_BYTES} bytes"));
        }
        if status.is_success() { Ok(()) } else { Err(format!("the receiver answered HTTP {}", status.as_u16())) }
    }
}
