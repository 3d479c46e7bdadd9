//! The ports: what the domain and the use cases need from storage, as traits, with the
//! atomicity each method requires. Backends (store/sqlite, store/postgres) implement them;
//! nothing here names a database.
//!
//! The concurrency contract, for every backend:
//! - A write job runs inside one transaction (a savepoint of its group), and its result is
//!   delivered only after the COMMIT that holds it. A job that returns `Err` changes nothing.
//! - A job may be run more than once before it is answered (a backend retries a group after a
//!   deadlock or a lost lock race): jobs are `FnMut` and must have no effect outside the
//!   transaction they are given.
//! - A read-modify-write on a user (find then create, count a window then record a use, mark
//!   an alert once, look up then save an idempotent answer) first calls
//!   `UsageWrite::serialize_on` for what it reads; from then until the transaction ends, no
//!   other transaction on any node passes `serialize_on` with the same scope and key. On one
//!   SQLite writer that is already true; PostgreSQL takes a transaction-scoped advisory lock.
//! - A counter never passes its ceiling: `increment_within` is one conditional upsert, exact
//!   under concurrency on its own.
//! - A read job (`Store::read`) sees each statement's own moment; `Store::read_snapshot` runs
//!   it in one read transaction, so a view that adds up several reads sees one moment.
//! - A backend may keep recently recorded increments apart from the stored counters (SQLite
//!   appends them to a delta log and folds it in bulk). `UsageRead`'s counter methods always
//!   add them; any other read of counters or rollups goes through `Store::read` /
//!   `read_snapshot` (settled first) and any other write job is `WriteKind::Settled` (folded
//!   first). Only hot-path jobs that keep to `UsageRead`/`UsageWrite` for counters use
//!   `Store::read_live` or `Store::submit_usage`.

mod forecasts;
mod records;
mod reservations;
mod store;

pub use forecasts::*;
pub use records::*;
pub use reservations::*;
pub use store::{Backend, JobResult, Pending, ReadJob, ReadScope, Reply, Store, WriteJob, WriteKind};
// A backend's own jobs (SQLite's folds) and the writer's tests answer jobs by hand.
pub(crate) use store::reply_channel;

use super::period::Period;
use std::sync::Arc;

/// The error a backend failed with, kept as the source of `StoreError::Backend`. Shared
/// rather than boxed: a write group's failure is handed to each of its jobs.
pub type BackendError = Arc<dyn std::error::Error + Send + Sync>;

/// Why storage could not do what was asked. `is_unavailable` errors are conditions of the
/// database or the machine (busy, full, read-only, unreachable) that a retry may clear:
/// HTTP answers 503 with `Retry-After`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is locked by another connection (busy timeout expired)")]
    Busy,
    #[error("the database or its disk is full")]
    Full,
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    #[error("the write thread has stopped")]
    WriterStopped,
    #[error("the write queue is full; retry shortly")]
    QueueFull,
    #[error("no database connection became available in time: {0}")]
    NoConnection(String),
    #[error("the database cannot be reached: {0}")]
    Unreachable(String),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("the database schema is not one this build can use: {0}")]
    Schema(String),
    #[error("a write job panicked: {0}")]
    JobPanicked(String),
    /// `serialize_on` found the key held by another transaction; the backend resolves it (the
    /// job never sees this error unless it calls `serialize_on` itself outside a backend).
    #[error("another transaction holds {0}; the job is run again once it is free")]
    Contended(String),
    /// A failure no other variant names: the driver's error, or what the backend found wrong
    /// (a row missing that the statement must return), as the source.
    #[error("database error")]
    Backend(#[source] BackendError),
}

impl StoreError {
    /// `Backend` with `source`: a driver's error, or a message saying what went wrong.
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Backend(Arc::from(source.into()))
    }

    /// True when the failure is the storage's state, not a bug: callers should retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Busy
                | StoreError::Full
                | StoreError::ReadOnly(_)
                | StoreError::WriterStopped
                | StoreError::QueueFull
                | StoreError::NoConnection(_)
                | StoreError::Unreachable(_)
                | StoreError::Contended(_)
        )
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// What reading usage needs.
pub trait UsageRead: ReservationRead {
    fn find_user(&self, user_id: &str) -> Result<Option<UserRecord>>;
    fn counter(&self, user_pk: i64, period: Period, metric: &str) -> Result<u64>;
    /// Every counter of the user in the period, by metric.
    fn counters(&self, user_pk: i64, period: Period) -> Result<Vec<(String, u64)>>;
    /// Uses of a rate-limited feature strictly after `since_ms`.
    fn count_feature_uses(&self, user_pk: i64, feature: &str, since_ms: i64) -> Result<u32>;
    /// The time of the use after `skip` older ones, among uses strictly after `since_ms`.
    fn nth_oldest_feature_use(&self, user_pk: i64, feature: &str, since_ms: i64, skip: u32) -> Result<Option<i64>>;
    /// Every refusal counter of the user id in the period.
    fn refusals(&self, user_id: &str, period: Period) -> Result<Vec<RefusalCount>>;
    fn find_account(&self, account_id: &str) -> Result<Option<AccountRecord>>;
    /// The account a member's `account_pk` names (it exists: membership is a foreign key).
    fn get_account(&self, account_pk: i64) -> Result<AccountRecord>;
    /// The account's pooled counter.
    fn account_counter(&self, account_pk: i64, period: Period, metric: &str) -> Result<u64>;
    fn account_counters(&self, account_pk: i64, period: Period) -> Result<Vec<(String, u64)>>;
    /// Uses of a rate-limited feature by the account's members strictly after `since_ms`.
    fn count_account_feature_uses(&self, account_pk: i64, feature: &str, since_ms: i64) -> Result<u32>;
    fn nth_oldest_account_feature_use(
        &self,
        account_pk: i64,
        feature: &str,
        since_ms: i64,
        skip: u32,
    ) -> Result<Option<i64>>;
    /// The account's members, by user id.
    fn members(&self, account_pk: i64) -> Result<Vec<UserRecord>>;
    fn find_override(&self, customer: CustomerKey<'_>) -> Result<Option<OverrideRecord>>;
    /// The sum of the customer's grants for `metric` in `period` still valid at `valid_at_ms`
    /// (no expiry, or expiring after it).
    fn sum_grants(&self, customer: CustomerKey<'_>, metric: &str, period: Period, valid_at_ms: i64) -> Result<u64>;
    /// The customer's grants, newest first.
    fn grants(&self, customer: CustomerKey<'_>) -> Result<Vec<GrantRecord>>;
}

/// What recording usage needs (events included); only a write transaction implements it.
pub trait UsageWrite: UsageRead + ReservationWrite + EventWrite {
    /// Serializes this transaction with every other one (on any node) that calls it with the
    /// same `scope` and `key`, until this transaction ends. Call it before reading what the
    /// job will decide on: the user before `find_user`, an idempotency key before
    /// `find_answer`.
    fn serialize_on(&self, scope: &str, key: &str) -> Result<()>;
    /// Creates the user; the caller has serialized on the user id and found none.
    fn create_user(&self, user_id: &str, plan: &str, now_ms: i64) -> Result<UserRecord>;
    fn set_plan(&self, user_pk: i64, plan: &str, now_ms: i64) -> Result<()>;
    /// Adds `amount` to the counter unless the result would pass `ceiling`; returns the new
    /// value, or `None` (and changes nothing) when it would. One atomic step: exact under
    /// concurrency without any other lock.
    fn increment_within(
        &self,
        user_pk: i64,
        period: Period,
        metric: &str,
        amount: u64,
        ceiling: u64,
        now_ms: i64,
    ) -> Result<Option<u64>>;
    fn record_feature_use(&self, user_pk: i64, feature: &str, now_ms: i64) -> Result<()>;
    /// Forgets uses at or before `until_ms`: they can no longer count in any window.
    fn prune_feature_uses(&self, user_pk: i64, feature: &str, until_ms: i64) -> Result<()>;
    /// The answer stored under `key` if it was stored at or after `not_before_ms`.
    fn find_answer(&self, key: &str, not_before_ms: i64) -> Result<Option<StoredAnswer>>;
    fn save_answer(&self, key: &str, user_id: &str, answer: &StoredAnswer, now_ms: i64) -> Result<()>;
    /// Creates the account; the caller has serialized on the account id and found none.
    fn create_account(&self, account_id: &str, plan: &str, now_ms: i64) -> Result<AccountRecord>;
    fn set_account_plan(&self, account_pk: i64, plan: &str, now_ms: i64) -> Result<()>;
    /// Makes the user a member of `account_pk`, or of none.
    fn set_membership(&self, user_pk: i64, account_pk: Option<i64>, now_ms: i64) -> Result<()>;
    /// As `increment_within`, on the account's pooled counter.
    fn increment_account_within(
        &self,
        account_pk: i64,
        period: Period,
        metric: &str,
        amount: u64,
        ceiling: u64,
        now_ms: i64,
    ) -> Result<Option<u64>>;
    fn record_account_feature_use(&self, account_pk: i64, feature: &str, now_ms: i64) -> Result<()>;
    fn prune_account_feature_uses(&self, account_pk: i64, feature: &str, until_ms: i64) -> Result<()>;
    /// Counts one more refusal; returns the counter after it. The caller has serialized on
    /// the user.
    fn count_refusal(&self, key: &RefusalKey<'_>) -> Result<RefusalTally>;
    /// Notes that an event now reports the counter's unreported refusals.
    fn mark_refusals_reported(&self, key: &RefusalKey<'_>, now_ms: i64) -> Result<()>;
}

/// Reads behind the admin views.
pub trait AdminRead {
    /// (metric, total) for every metric with usage in the period.
    fn period_totals(&self, period: Period) -> Result<Vec<(String, u64)>>;
    /// (period, metric, total) for every month from `oldest` to `newest`, both included, and
    /// every metric with usage in it: the months of an overview in one statement.
    fn totals_by_month(&self, oldest: Period, newest: Period) -> Result<Vec<(String, String, u64)>>;
    fn active_users(&self, period: Period) -> Result<u64>;
    /// (stored plan name, users).
    fn plan_users(&self) -> Result<Vec<(String, u64)>>;
    /// The users with the largest counters for the metric in the period, largest first.
    fn top_users(&self, period: Period, metric: &str, limit: u32) -> Result<Vec<(UserRecord, u64)>>;
    /// (period, metric, value) of every counter of the user from `oldest` on, newest first.
    fn counters_since(&self, user_pk: i64, oldest: Period) -> Result<Vec<(String, String, u64)>>;
    /// Newest first; only rows with an id below `before` when given.
    fn audit_page(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>>;
    /// Accounts by account id, descending; only ids below `before` when given; with their
    /// member counts.
    fn accounts_page(&self, limit: u32, before: Option<&str>) -> Result<Vec<(AccountRecord, u64)>>;
    /// (plan, accounts on it), and (plan, members on it as users): an account pays its plan
    /// once and its members do not pay theirs.
    fn account_plans(&self) -> Result<(PlanCounts, PlanCounts)>;
    /// (period, metric, value) of the account's pooled counters from `oldest` on.
    fn account_counters_since(&self, account_pk: i64, oldest: Period) -> Result<Vec<(String, String, u64)>>;
    fn export_user(&self, user: &UserRecord) -> Result<UserExport>;
    /// Erasures begun and not finished, oldest first.
    fn pending_erasures(&self) -> Result<Vec<ErasureRecord>>;
}

/// Admin actions; only a write transaction implements it. Maintenance works in chunks of at
/// most `limit` rows, so no single job holds the writer for long.
pub trait AdminWrite: AdminRead {
    /// Zeroes the user's counters of the period (one metric, or all) by deleting them, so a
    /// reset user counts as new in the period again; returns the (metric, value) pairs as
    /// they were. The caller has serialized on the user.
    fn reset_counters(&self, user_pk: i64, period: Period, metric: Option<&str>) -> Result<Vec<(String, u64)>>;
    /// Deletes up to `limit` counters of periods before `oldest_kept` (keeping the rollups in
    /// step); returns how many. Call again until it returns 0.
    fn delete_counters_before(&self, oldest_kept: Period, limit: u32) -> Result<u64>;
    /// Deletes the rollup rows of periods before `oldest_kept` (once no counter is left there).
    fn delete_rollups_before(&self, oldest_kept: Period) -> Result<()>;
    /// Deletes the account's pooled counters of the period (of one metric, or all); returns
    /// the values deleted.
    fn reset_account_counters(
        &self,
        account_pk: i64,
        period: Period,
        metric: Option<&str>,
    ) -> Result<Vec<(String, u64)>>;
    /// Replaces the customer's override.
    fn put_override(&self, customer: CustomerKey<'_>, record: &OverrideRecord) -> Result<()>;
    /// Removes it; false if there was none.
    fn delete_override(&self, customer: CustomerKey<'_>) -> Result<bool>;
    /// Stores a grant; returns its id.
    fn add_grant(&self, grant: &GrantRecord) -> Result<i64>;
    /// Deletes a grant; returns it, or None if there was none.
    fn delete_grant(&self, grant_id: i64) -> Result<Option<GrantRecord>>;
    /// Deletes the customer's override and grants (for erasure); returns how many rows.
    fn delete_terms_of(&self, customer: CustomerKey<'_>) -> Result<u64>;
    /// Deletes the account; its members leave it and keep their own data.
    fn delete_account(&self, account_pk: i64) -> Result<()>;
    /// Deletes up to `limit` pooled counters and alert marks of periods before
    /// `oldest_kept`; returns how many.
    fn delete_account_counters_before(&self, oldest_kept: Period, limit: u32) -> Result<u64>;
    /// Deletes up to `limit` idempotency answers stored before `before_ms`; returns how many.
    fn prune_answers(&self, before_ms: i64, limit: u32) -> Result<u64>;
    /// Deletes the user with their counters, feature uses and alert marks, keeping the
    /// rollups in step. The caller has serialized on the user.
    fn delete_user(&self, user: &UserRecord) -> Result<()>;
    /// Deletes up to `limit` idempotency answers stored for a user id; returns how many.
    fn delete_answers_of(&self, user_id: &str, limit: u32) -> Result<u64>;
    /// Deletes the refusal counters of a user id (known or not); returns how many.
    fn delete_refusals_of(&self, user_id: &str) -> Result<u64>;
    /// Deletes up to `limit` refusal counters of periods before `oldest_kept`; returns how many.
    fn prune_refusals(&self, oldest_kept: Period, limit: u32) -> Result<u64>;
    fn append_audit(&self, at_ms: i64, actor: &str, action: &str, target: Option<&str>, details: &str) -> Result<i64>;
    /// Replaces `target` in every audit row that names it (for erasure).
    fn redact_audit_target(&self, target: &str, replacement: &str) -> Result<()>;
    /// Records that erasing `user_id` has begun (it is finished by later jobs, or at the next
    /// start after a crash).
    fn start_erasure(&self, erasure: &ErasureRecord) -> Result<()>;
    /// Forgets a finished erasure; false if it was already forgotten (another node finished
    /// it).
    fn finish_erasure(&self, user_id: &str) -> Result<bool>;
    /// Takes (or renews) the lease `name` for `holder` until `until_ms`, unless another
    /// holder's lease is still running at `now_ms`; true when `holder` holds it now. One
    /// atomic statement: two nodes claiming at once cannot both win.
    fn claim_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool>;
    /// Gives the lease up, if `holder` holds it.
    fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

pub trait EventRead {
    fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>>;
    fn event_seq(&self, event_id: &str) -> Result<Option<i64>>;
    /// Pending deliveries due at `now_ms`, oldest first, with their events.
    fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<(DeliveryRecord, EventRecord)>>;
    /// Newest first; only ids below `before` when given.
    fn deliveries(&self, status: Option<&str>, limit: u32, before: Option<i64>) -> Result<Vec<DeliveryRecord>>;
    fn find_delivery(&self, delivery_id: i64) -> Result<Option<DeliveryRecord>>;
    /// The failed attempts of a delivery, oldest first.
    fn attempt_errors(&self, delivery_id: i64) -> Result<Vec<AttemptError>>;
}

pub trait EventWrite: EventRead {
    /// Returns the new event's id (a uuid).
    fn record_event(&self, kind: &str, user_id: Option<&str>, data: &str, now_ms: i64) -> Result<String>;
    fn queue_delivery(&self, event_id: &str, url: &str, now_ms: i64) -> Result<()>;
    /// Marks an alert as sent; false if it already was. The caller has serialized on the user.
    fn mark_alert(&self, user_pk: i64, period: &str, metric: &str, alert: &str) -> Result<bool>;
    /// As `mark_alert`, for an account's pool. The caller has serialized on the account.
    fn mark_account_alert(&self, account_pk: i64, period: &str, metric: &str, alert: &str) -> Result<bool>;
    /// Claims up to `limit` due pending deliveries to `url` for this node until
    /// `lease_until_ms` (pushing their next attempt there), oldest first, skipping rows
    /// another transaction holds: each attempt is made by one node. Returns them with their
    /// events.
    fn claim_deliveries(
        &self,
        url: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<(DeliveryRecord, EventRecord)>>;
    /// Records an attempt of a pending delivery (nothing if it is no longer pending): a
    /// success clears `last_error`; a failure sets it and is added to the attempt history.
    fn finish_attempt(&self, delivery_id: i64, outcome: &AttemptOutcome, now_ms: i64) -> Result<()>;
    /// Marks failed, with `error`, up to `limit` pending deliveries that no node holds (due
    /// at `now_ms`) and whose retry window started at or before `window_started_by_ms`;
    /// returns how many.
    fn expire_deliveries(&self, now_ms: i64, window_started_by_ms: i64, error: &str, limit: u32) -> Result<u64>;
    /// Puts a failed delivery back in the queue with a fresh retry window.
    fn requeue_delivery(&self, delivery_id: i64, now_ms: i64) -> Result<Requeue>;
    /// Deletes up to `limit` events (and their deliveries) older than `before_ms` that wait
    /// for no delivery; returns how many.
    fn prune_events(&self, before_ms: i64, limit: u32) -> Result<u64>;
    /// Deletes up to `limit` alert marks of periods before `oldest_kept`; returns how many.
    fn prune_alerts(&self, oldest_kept: &str, limit: u32) -> Result<u64>;
    /// Replaces a user id in up to `limit` events that name it (for erasure); returns how many.
    fn redact_event_user(&self, user_id: &str, replacement: &str, limit: u32) -> Result<u64>;
}

/// Reads behind billing: a customer's billing fields, the customers a statement lists (in
/// pages, with their counters of the period), and closed statements.
pub trait BillingRead {
    /// The customer's Stripe id and email; both None when none is set or there is no such
    /// customer.
    fn customer_fields(&self, customer: CustomerKey<'_>) -> Result<CustomerFields>;
    /// Up to `limit` accounts by account id, ascending, after `after` when given, each with
    /// its pooled counters of `period`.
    fn billing_accounts(
        &self,
        period: Period,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CustomerCounters<AccountRecord>>>;
    /// Up to `limit` users who are members of no account, by user id, ascending, after
    /// `after` when given, each with their counters of `period`.
    fn billing_users(
        &self,
        period: Period,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CustomerCounters<UserRecord>>>;
    fn find_closing(&self, period: Period) -> Result<Option<ClosingRecord>>;
    /// Up to `limit` stored lines of the period's statement by (customer kind, customer id),
    /// after `after` when given, with each customer's Stripe id as it is now.
    fn statement_lines(&self, period: Period, after: Option<CustomerKey<'_>>, limit: u32)
    -> Result<Vec<StatementLine>>;
}

/// Billing's changes; only a write transaction implements it.
pub trait BillingWrite: BillingRead {
    /// Replaces the customer's Stripe id and email (None clears); false, and nothing changed,
    /// when there is no such customer.
    fn set_customer_fields(&self, customer: CustomerKey<'_>, fields: &CustomerFields, now_ms: i64) -> Result<bool>;
    /// Creates or replaces the period's closing.
    fn save_closing(&self, closing: &ClosingRecord) -> Result<()>;
    /// Stores a customer's line of a period's statement; a line already stored is kept.
    fn add_statement_line(&self, period: Period, customer: CustomerKey<'_>, line: &str) -> Result<()>;
    /// Renames a user in every stored statement (for erasure); returns how many lines.
    fn redact_statement_user(&self, user_id: &str, replacement: &str) -> Result<u64>;
}

/// Dashboard logins, shared by every node on one database.
pub trait SessionRead {
    fn find_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<SessionRecord>>;
}

pub trait SessionWrite: SessionRead {
    fn save_session(&self, token_hash: &str, session: &SessionRecord) -> Result<()>;
    /// Sets (or clears) a live session's flash; false, and nothing changed, when the session
    /// is gone (signed out on another node meanwhile): it is never brought back.
    fn set_session_flash(&self, token_hash: &str, flash: Option<(bool, &str)>) -> Result<bool>;
    fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Deletes expired sessions; returns how many.
    fn prune_sessions(&self, now_ms: i64) -> Result<u64>;
}

/// Everything a read connection offers.
pub trait ReadTx: UsageRead + AdminRead + EventRead + SessionRead + BillingRead + ForecastRead {}

/// Everything a write transaction offers.
pub trait WriteTx: ReadTx + UsageWrite + AdminWrite + EventWrite + SessionWrite + BillingWrite + ForecastWrite {}
