//! What forecasts need from storage: each customer's counters by UTC day (copied from the
//! counters by a job, never on the request path), the customers to forecast in pages, and the
//! job's latest projections.

use super::{AccountRecord, CounterOwner, StoreError, UserRecord};
use crate::domain::period::Period;

type Result<T> = std::result::Result<T, StoreError>;

/// A counter as it stood at the end of a UTC day on which it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayRecord {
    /// 'YYYY-MM-DD'.
    pub day: String,
    pub period: Period,
    pub cumulative: u64,
}

/// The job's latest projection of one customer's metric in one period.
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastRecord {
    pub owner: CounterOwner,
    /// The user's or the account's id.
    pub customer_id: String,
    pub plan: String,
    pub metric: String,
    pub period: Period,
    pub used: u64,
    /// None: unlimited.
    pub limit: Option<u64>,
    /// "hard", "soft" or "unlimited".
    pub enforcement: String,
    pub projected: u64,
    pub low: u64,
    pub high: u64,
    pub exhausted_at_ms: Option<i64>,
    pub method: String,
    pub computed_at_ms: i64,
}

pub trait ForecastRead {
    /// The owner's day rows of `metric` from `oldest` on, oldest first.
    fn usage_days(&self, owner: CounterOwner, metric: &str, oldest: Period) -> Result<Vec<DayRecord>>;
    /// Up to `limit` users on their own (members of no account) with a counter in `period`
    /// and a pk above `after_pk`, by pk.
    fn solo_users_with_usage(&self, period: Period, after_pk: i64, limit: u32) -> Result<Vec<UserRecord>>;
    /// Up to `limit` accounts with a pooled counter in `period` and a pk above `after_pk`, by pk.
    fn accounts_with_usage(&self, period: Period, after_pk: i64, limit: u32) -> Result<Vec<AccountRecord>>;
    /// The period's latest projections, of one metric or all: those with an `exhausted_at`
    /// first, soonest first, then by customer.
    fn forecasts(&self, period: Period, metric: Option<&str>) -> Result<Vec<ForecastRecord>>;
    /// When the job named `name` last ran to its end, if ever.
    fn job_mark(&self, name: &str) -> Result<Option<i64>>;
    /// The highest users.id (`"user"`) or accounts.id (`"account"`), 0 for none.
    fn max_owner_pk(&self, kind: &str) -> Result<i64>;
}

pub trait ForecastWrite: ForecastRead {
    /// Copies into the day rows, as `day` of `period`, the `kind` counters of `period` whose
    /// owner pk is in `pks` (both ends included) changed at or after `since_ms`; returns how
    /// many.
    fn snapshot_days(&self, kind: &str, period: Period, day: &str, since_ms: i64, pks: (i64, i64)) -> Result<u64>;
    fn set_job_mark(&self, name: &str, at_ms: i64) -> Result<()>;
    /// Stores (or replaces) a projection.
    fn save_forecast(&self, forecast: &ForecastRecord) -> Result<()>;
    /// Deletes up to `limit` day rows and projections of periods before `oldest_kept`;
    /// returns how many.
    fn prune_forecast_data(&self, oldest_kept: Period, limit: u32) -> Result<u64>;
    /// Deletes the owner's day rows and projections (erasure, account deletion).
    fn delete_forecast_data(&self, owner: CounterOwner) -> Result<()>;
}
