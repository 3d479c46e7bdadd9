//! Plans, periods and decisions: plain types and pure functions, and the ports (traits) they
//! need from storage. No SQL, no HTTP, no config, no clock: storage comes in through
//! `ports`, time as a parameter.

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod events;
pub(crate) mod feature;
pub mod forecast;
pub(crate) mod gateway;
pub mod period;
pub(crate) mod plan;
pub(crate) mod ports;
pub(crate) mod quota;
pub(crate) mod terms;
pub(crate) mod usage;
pub(crate) mod user_id;

use plan::{Catalog, Plan};
use ports::UserRecord;
use std::collections::HashSet;

/// Everything a decision depends on besides stored state: the validated, immutable part of
/// the config that the domain reads.
#[derive(Clone, Debug)]
pub struct Rules {
    pub catalog: Catalog,
    /// Users for whom every limit is open; their usage is still counted.
    pub admin_user_ids: HashSet<String>,
    pub tracking_enabled: bool,
    pub telemetry_enabled: bool,
    pub retention_months: u32,
    pub idempotency_hours: u32,
    /// Fractions of a limit whose crossing emits `threshold_crossed`.
    pub alert_thresholds: Vec<f64>,
    /// A refusal counter writes at most one event per this many milliseconds (0: one per
    /// refusal).
    pub refusal_event_interval_ms: i64,
    /// Where events are queued for delivery.
    pub webhooks: Vec<events::WebhookRoute>,
}

impl Rules {
    pub fn is_bypass(&self, user_id: &str) -> bool {
        self.admin_user_ids.contains(user_id)
    }

    /// The plan `user` is served on; a user never seen (None) is on the default plan.
    pub fn plan_of(&self, user: Option<&UserRecord>) -> &Plan {
        match user {
            Some(user) => self.catalog.plan_or_default(&user.plan),
            None => self.catalog.default_plan(),
        }
    }
}

/// Lowercase hex of `bytes`: the one encoder behind key digests, session digests, erased
/// names and webhook signatures.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}
