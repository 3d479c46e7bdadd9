//! The records storage hands to the domain and the application: plain values, no database
//! types. Every backend fills them the same way.

use crate::domain::period::Period;

/// Whose counters: a user's own, or an account's pool (a hold is on one; a forecast is of
/// one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterOwner {
    User(i64),
    Account(i64),
}

impl CounterOwner {
    /// "user" or "account", as stored.
    pub fn kind(self) -> &'static str {
        match self {
            CounterOwner::User(_) => "user",
            CounterOwner::Account(_) => "account",
        }
    }

    pub fn pk(self) -> i64 {
        match self {
            CounterOwner::User(pk) | CounterOwner::Account(pk) => pk,
        }
    }
}

/// A stored user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub pk: i64,
    pub uuid: String,
    pub user_id: String,
    pub plan: String,
    pub created_at_ms: i64,
    /// The account the user is a member of, if any.
    pub account_pk: Option<i64>,
}

/// Who an override or a grant is for: a user's or an account's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustomerKey<'a> {
    /// "user" or "account".
    pub kind: &'a str,
    pub id: &'a str,
}

/// A stored override: its body as the domain wrote it (JSON text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverrideRecord {
    pub body: String,
    pub expires_at_ms: Option<i64>,
    pub note: Option<String>,
    pub updated_at_ms: i64,
}

/// A stored grant of extra allowance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: i64,
    pub customer_kind: String,
    pub customer_id: String,
    pub metric: String,
    pub amount: u64,
    pub period: String,
    pub expires_at_ms: Option<i64>,
    pub note: Option<String>,
    pub created_at_ms: i64,
}

/// What a customer carries for billing and mail; each may be unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerFields {
    pub stripe_customer_id: Option<String>,
    pub email: Option<String>,
}

/// A customer (a user or an account) with their counters of one period, by metric.
pub type CustomerCounters<C> = (C, Vec<(String, u64)>);

/// A period's statement being closed (written once, in steps) or closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosingRecord {
    pub period: String,
    /// The currency its amounts are in, as configured when it closed.
    pub currency: String,
    /// Its metrics, comma-separated, in the order configured when it closed.
    pub metrics: String,
    /// Where the next step goes on: "account" or "user" (accounts are written first).
    pub cursor_kind: String,
    /// The last customer of that kind written; None before the first.
    pub cursor_id: Option<String>,
    pub started_at_ms: i64,
    /// None while steps remain.
    pub closed_at_ms: Option<i64>,
}

/// One stored line of a closed statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementLine {
    pub customer_kind: String,
    pub customer_id: String,
    /// JSON, as the domain wrote it.
    pub line: String,
    /// The customer's Stripe id now (None: not set, or the customer is gone).
    pub stripe_customer_id: Option<String>,
}

/// (plan, how many) rows.
pub type PlanCounts = Vec<(String, u64)>;

/// A stored account: users sharing one plan and pooled counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    pub pk: i64,
    pub account_id: String,
    pub plan: String,
    pub created_at_ms: i64,
}

/// The first answer given under an idempotency key, replayed for repeats: its status, the
/// headers that belong to it (a 429's `Retry-After`) and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnswer {
    pub fingerprint: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl StoredAnswer {
    /// The headers as stored: one `name: value` per line (names and values never hold a
    /// line break).
    pub fn headers_text(&self) -> String {
        self.headers.iter().map(|(name, value)| format!("{name}: {value}\n")).collect()
    }

    /// The headers from `headers_text`'s form.
    pub fn parse_headers(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }
}

/// One row of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// A JSON object.
    pub details: String,
}

/// A counter row as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterRecord {
    pub period: String,
    pub metric: String,
    pub value: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Everything held about one user but their events (which an export pages through).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserExport {
    pub updated_at_ms: i64,
    pub counters: Vec<CounterRecord>,
    /// (feature, used_at_ms)
    pub feature_uses: Vec<(String, i64)>,
    /// (key, status, created_at_ms)
    pub idempotency_keys: Vec<(String, u16, i64)>,
    pub audit: Vec<AuditRecord>,
    /// (period, metric, alert): the once-only usage alerts already sent.
    pub alerts: Vec<(String, String, String)>,
    pub refusals: Vec<RefusalCount>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub seq: i64,
    pub id: String,
    pub kind: String,
    pub at_ms: i64,
    pub user_id: Option<String>,
    /// A JSON object.
    pub data: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub window_start_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Which events a page holds.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub since_ms: Option<i64>,
    /// Only events after the one with this sequence number.
    pub after_seq: Option<i64>,
    pub limit: u32,
}

/// What became of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    Retry {
        next_attempt_at_ms: i64,
        error: String,
    },
    Failed {
        error: String,
    },
    /// Given up on without another attempt (its retry window closed while it waited).
    Expired {
        error: String,
    },
}

impl AttemptOutcome {
    /// (status, next attempt, error, whether an attempt was made) as stored.
    pub fn stored(&self) -> (&'static str, Option<i64>, Option<&str>, bool) {
        match self {
            AttemptOutcome::Delivered => ("delivered", None, None, true),
            AttemptOutcome::Retry { next_attempt_at_ms, error } => {
                ("pending", Some(*next_attempt_at_ms), Some(error), true)
            }
            AttemptOutcome::Failed { error } => ("failed", None, Some(error), true),
            AttemptOutcome::Expired { error } => ("failed", None, Some(error), false),
        }
    }
}

/// One failed attempt of a delivery, kept after the delivery succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptError {
    pub attempt: u32,
    pub at_ms: i64,
    pub error: String,
}

/// Names one refusal counter: a user's refusals of one kind (`limit_exceeded`,
/// `rate_limited`, `feature_denied`) for one metric or feature in one period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusalKey<'a> {
    pub user_id: &'a str,
    pub period: Period,
    pub kind: &'a str,
    pub subject: &'a str,
}

/// A refusal counter right after counting one more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusalTally {
    /// Refusals in the period, this one included.
    pub count: u64,
    /// Refusals since the last event, this one included.
    pub unreported: u64,
    /// When the last event for this counter was written; None if never.
    pub reported_at_ms: Option<i64>,
}

/// A refusal counter as the views show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalCount {
    pub period: String,
    pub kind: String,
    pub subject: String,
    pub count: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    Requeued,
    NotFailed,
    NotFound,
}

/// A dashboard login as stored (the token itself is never stored, only its digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub key_name: String,
    /// Hex SHA-256 of the admin key signed in with: when that key leaves the config, its
    /// sessions end (on every node, at once).
    pub key_digest: String,
    pub csrf: String,
    pub expires_at_ms: i64,
    /// A one-shot message for the next page: (ok, text).
    pub flash: Option<(bool, String)>,
}

/// An erasure begun and not yet finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureRecord {
    pub user_id: String,
    /// `sha256:HEX`, what the user is called afterwards.
    pub hash: String,
    pub actor: String,
    pub started_at_ms: i64,
}

/// u64 values stored as signed 64-bit integers stop at i64::MAX rather than wrap.
pub fn as_stored_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored count read back: never negative.
pub fn from_stored_integer(value: i64) -> u64 {
    value.max(0) as u64
}
