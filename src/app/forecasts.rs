//! Forecasts: a customer's daily usage from the day rows (domain::forecast projects it), the
//! forecast of one customer on request, and the hourly job that copies counters into day
//! rows, projects every customer with usage this month, stores the projections for the admin
//! views and emits `forecast_exceeds_limit` once per customer, metric and month. Nothing here
//! runs on a track's path.

use super::AppError;
use crate::domain::Rules;
use crate::domain::events::{self, EventType};
use crate::domain::forecast::{self, History};
use crate::domain::period::Period;
use crate::domain::plan::Enforcement;
use crate::domain::ports::{
    AccountRecord, CounterOwner, DayRecord, ForecastRecord, ReadTx, Store, StoreError, UserRecord,
};
use crate::domain::usage::{self, Standing};
use chrono::{DateTime, Datelike};
use serde_json::json;
use std::sync::Arc;

const DAY_MS: i64 = 86_400_000;

/// Months of history a forecast learns from, before the current one.
const HISTORY_MONTHS: u32 = 6;

/// The alert mark (and lease) name of the job.
const FORECAST_ALERT: &str = "forecast_exceeds_limit";
const SNAPSHOT_MARK: &str = "usage_days";
const JOB_LEASE: &str = "forecast";
const JOB_LEASE_MS: i64 = 10 * 60 * 1000;

/// Customers projected per read and per write job.
const PAGE: u32 = 200;
/// Owner pks copied into day rows per write job.
const SNAPSHOT_CHUNK: i64 = 5_000;

/// One metric's projection for one customer.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricForecast {
    pub metric: String,
    pub used: u64,
    pub limit: Option<u64>,
    pub enforcement: &'static str,
    pub projected: u64,
    pub low: u64,
    pub high: u64,
    pub exhausted_at_ms: Option<i64>,
    pub method: &'static str,
}

/// A customer's forecast: the period it is of, and each metric's.
pub struct CustomerForecast {
    pub period: Period,
    pub as_of_ms: i64,
    /// The account whose pool it is (a member's forecast is their account's).
    pub account_id: Option<String>,
    pub plan: String,
    pub metrics: Vec<MetricForecast>,
}

/// RFC 3339 in UTC with milliseconds, as every answer writes an instant.
pub fn rfc3339(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// 'YYYY-MM-DD' of a unix ms.
fn day_of(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms).unwrap_or_default().format("%Y-%m-%d").to_string()
}

/// The 1-based day of the month of a 'YYYY-MM-DD'.
fn day_number(day: &str) -> usize {
    day.get(8..10).and_then(|text| text.parse().ok()).unwrap_or(1)
}

fn days_in(period: Period) -> usize {
    ((period.end_unix_ms() - period.start_unix_ms()) / DAY_MS) as usize
}

/// Daily usage per period from day rows (each the counter at the end of a day it changed):
/// a day's usage is its counter minus the previous row's of the same period (a counter that
/// went down was reset: it counts from 0 again).
fn daily_by_period(rows: &[DayRecord], periods: &[Period]) -> Vec<Vec<u64>> {
    periods
        .iter()
        .map(|&period| {
            let mut daily = vec![0u64; days_in(period)];
            let mut previous = 0u64;
            for row in rows.iter().filter(|row| row.period == period) {
                let used = if row.cumulative >= previous { row.cumulative - previous } else { row.cumulative };
                if let Some(slot) = daily.get_mut(day_number(&row.day) - 1) {
                    *slot += used;
                }
                previous = row.cumulative;
            }
            daily
        })
        .collect()
}

/// The forecast of one counter: its day rows, its value now (`used`), and when its owner
/// began (`created_at_ms`), at `now_ms`.
fn project(rows: &[DayRecord], used: u64, created_at_ms: i64, now_ms: i64) -> forecast::Forecast {
    let current = Period::of_unix_ms(now_ms);
    let first_period = Period::of_unix_ms(created_at_ms).max(current.months_before(HISTORY_MONTHS));
    let mut periods = Vec::new();
    let mut period = first_period;
    while period < current {
        periods.push(period);
        period = Period::of_unix_ms(period.end_unix_ms());
    }
    let mut previous = daily_by_period(rows, &periods);
    // The customer's first month starts the day they began.
    if let (Some(first), Some(oldest)) = (periods.first(), previous.first_mut())
        && Period::of_unix_ms(created_at_ms) == *first
    {
        let began = ((created_at_ms - first.start_unix_ms()) / DAY_MS) as usize;
        oldest.drain(..began.min(oldest.len()));
    }
    previous.reverse();
    // This month up to yesterday from the rows; today is what the counter says beyond them.
    let elapsed_ms = now_ms - current.start_unix_ms();
    let today = (elapsed_ms / DAY_MS) as usize;
    let today_name = day_of(now_ms);
    let before_today: Vec<DayRecord> =
        rows.iter().filter(|row| row.period == current && row.day < today_name).cloned().collect();
    let mut this_month = daily_by_period(&before_today, &[current]).remove(0);
    this_month.truncate(today + 1);
    let counted: u64 = before_today.last().map_or(0, |row| row.cumulative);
    this_month[today] = used.saturating_sub(counted);
    // Rows missing before the first snapshot (or after a reset) leave usage unplaced: it
    // counts as today's rather than not at all.
    let placed: u64 = this_month.iter().sum();
    this_month[today] += used.saturating_sub(placed);
    let first_day = (Period::of_unix_ms(created_at_ms) == current)
        .then(|| DateTime::from_timestamp_millis(created_at_ms).map_or(1, |at| at.day()));
    let history = History {
        days_in_period: days_in(current) as u32,
        current: &this_month,
        today_fraction: (elapsed_ms % DAY_MS) as f64 / DAY_MS as f64,
        previous: &previous,
        first_day,
    };
    forecast::forecast(&history)
}

fn enforcement_name(standing: &Standing) -> &'static str {
    match standing.enforcement {
        Enforcement::Hard => "hard",
        Enforcement::Soft => "soft",
        Enforcement::Unlimited => "unlimited",
    }
}

/// The forecasts of a counter owner's metrics (`only`: one of them).
fn metric_forecasts(
    reader: &dyn ReadTx,
    owner: CounterOwner,
    created_at_ms: i64,
    standings: &[(String, Standing)],
    only: Option<&str>,
    now_ms: i64,
) -> Result<Vec<MetricForecast>, StoreError> {
    let current = Period::of_unix_ms(now_ms);
    let oldest = current.months_before(HISTORY_MONTHS);
    standings
        .iter()
        .filter(|(metric, _)| only.is_none_or(|only| only == metric))
        .map(|(metric, standing)| {
            let rows = reader.usage_days(owner, metric, oldest)?;
            let projection = project(&rows, standing.used, created_at_ms, now_ms);
            let exhausted_at_ms = standing
                .limit
                .and_then(|limit| projection.exhausted_at(limit))
                .map(|days| (current.start_unix_ms() + (days * DAY_MS as f64) as i64).min(current.end_unix_ms() - 1));
            Ok(MetricForecast {
                metric: metric.clone(),
                used: standing.used,
                limit: standing.limit,
                enforcement: enforcement_name(standing),
                projected: projection.projected.max(standing.used),
                low: projection.low.max(standing.used),
                high: projection.high.max(standing.used),
                exhausted_at_ms,
                method: projection.method,
            })
        })
        .collect()
}

/// The forecast of a user's metrics this month (`only`: one metric); a member's is their
/// account's pool. `UserNotFound` for a user never seen.
pub fn user_forecast(
    store: &Store,
    rules: &Rules,
    user_id: &str,
    only: Option<&str>,
    now_ms: i64,
) -> Result<CustomerForecast, AppError> {
    let period = Period::of_unix_ms(now_ms);
    store.read_snapshot(|reader| {
        let Some(user) = reader.find_user(user_id)? else {
            return Ok(Err(AppError::UserNotFound(user_id.to_owned())));
        };
        if let Some(account_pk) = user.account_pk {
            let account = reader.get_account(account_pk)?;
            return account_forecast_in(reader, rules, &account, only, now_ms).map(Ok);
        }
        let standings = usage::standings(reader, rules, &user, period, now_ms)?;
        let metrics =
            metric_forecasts(reader, CounterOwner::User(user.pk), user.created_at_ms, &standings, only, now_ms)?;
        let plan = rules.catalog.plan_or_default(&user.plan).name.clone();
        Ok(Ok(CustomerForecast { period, as_of_ms: now_ms, account_id: None, plan, metrics }))
    })?
}

fn account_forecast_in(
    reader: &dyn ReadTx,
    rules: &Rules,
    account: &AccountRecord,
    only: Option<&str>,
    now_ms: i64,
) -> Result<CustomerForecast, StoreError> {
    let period = Period::of_unix_ms(now_ms);
    let standings = usage::account_standings(reader, rules, account, period, now_ms)?;
    let owner = CounterOwner::Account(account.pk);
    let metrics = metric_forecasts(reader, owner, account.created_at_ms, &standings, only, now_ms)?;
    let plan = rules.catalog.plan_or_default(&account.plan).name.clone();
    Ok(CustomerForecast { period, as_of_ms: now_ms, account_id: Some(account.account_id.clone()), plan, metrics })
}

/// The forecast of an account's pool this month. `AccountNotFound` for an unknown account.
pub fn account_forecast(
    store: &Store,
    rules: &Rules,
    account_id: &str,
    only: Option<&str>,
    now_ms: i64,
) -> Result<CustomerForecast, AppError> {
    store.read_snapshot(|reader| {
        let Some(account) = reader.find_account(account_id)? else {
            return Ok(Err(AppError::AccountNotFound(account_id.to_owned())));
        };
        account_forecast_in(reader, rules, &account, only, now_ms).map(Ok)
    })?
}

/// Copies the counters changed since the last copy into day rows: the current month's as
/// today, an earlier month's (late usage, or the hours before midnight) as its last day.
fn snapshot(store: &Store, now_ms: i64) -> Result<u64, StoreError> {
    let since_ms = store.read(|reader| reader.job_mark(SNAPSHOT_MARK))?.unwrap_or(0);
    let current = Period::of_unix_ms(now_ms);
    let mut periods = vec![(current, day_of(now_ms))];
    let previous = current.months_before(1);
    if since_ms < current.start_unix_ms() && previous < current {
        periods.push((previous, day_of(previous.end_unix_ms() - 1)));
    }
    let mut copied = 0;
    for kind in ["user", "account"] {
        let last_pk = store.read(|reader| reader.max_owner_pk(kind))?;
        for (period, day) in &periods {
            let mut first = 1;
            while first <= last_pk {
                let (period, day, last) = (*period, day.clone(), first + SNAPSHOT_CHUNK - 1);
                copied += store.write(move |tx| tx.snapshot_days(kind, period, &day, since_ms, (first, last)))?;
                first = last + 1;
            }
        }
    }
    store.write(move |tx| tx.set_job_mark(SNAPSHOT_MARK, now_ms))?;
    Ok(copied)
}

/// A customer the job projects, with what its records say.
struct Projected {
    owner: CounterOwner,
    customer_id: String,
    /// The user the event names (None for an account).
    user_id: Option<String>,
    plan: String,
    metrics: Vec<MetricForecast>,
}

impl Projected {
    fn of_user(reader: &dyn ReadTx, rules: &Rules, user: &UserRecord, now_ms: i64) -> Result<Projected, StoreError> {
        let period = Period::of_unix_ms(now_ms);
        let standings = usage::standings(reader, rules, user, period, now_ms)?;
        let owner = CounterOwner::User(user.pk);
        Ok(Projected {
            owner,
            customer_id: user.user_id.clone(),
            user_id: Some(user.user_id.clone()),
            plan: rules.catalog.plan_or_default(&user.plan).name.clone(),
            metrics: metric_forecasts(reader, owner, user.created_at_ms, &standings, None, now_ms)?,
        })
    }

    fn of_account(
        reader: &dyn ReadTx,
        rules: &Rules,
        account: &AccountRecord,
        now_ms: i64,
    ) -> Result<Projected, StoreError> {
        let forecast = account_forecast_in(reader, rules, account, None, now_ms)?;
        Ok(Projected {
            owner: CounterOwner::Account(account.pk),
            customer_id: account.account_id.clone(),
            user_id: None,
            plan: forecast.plan,
            metrics: forecast.metrics,
        })
    }
}

/// Stores a page's projections and emits `forecast_exceeds_limit` for each that first passes
/// its limit this month (once: the alert mark).
fn save_page(store: &Store, rules: &Arc<Rules>, page: Vec<Projected>, now_ms: i64) -> Result<(), StoreError> {
    let rules = Arc::clone(rules);
    store.write(move |tx| {
        let period = Period::of_unix_ms(now_ms);
        for customer in &page {
            for metric in &customer.metrics {
                tx.save_forecast(&ForecastRecord {
                    owner: customer.owner,
                    customer_id: customer.customer_id.clone(),
                    plan: customer.plan.clone(),
                    metric: metric.metric.clone(),
                    period,
                    used: metric.used,
                    limit: metric.limit,
                    enforcement: metric.enforcement.to_owned(),
                    projected: metric.projected,
                    low: metric.low,
                    high: metric.high,
                    exhausted_at_ms: metric.exhausted_at_ms,
                    method: metric.method.to_owned(),
                    computed_at_ms: now_ms,
                })?;
                let Some(limit) = metric.limit.filter(|&limit| metric.projected > limit) else {
                    continue;
                };
                let first = match customer.owner {
                    CounterOwner::User(pk) => tx.mark_alert(pk, &period.to_string(), &metric.metric, FORECAST_ALERT)?,
                    CounterOwner::Account(pk) => {
                        tx.mark_account_alert(pk, &period.to_string(), &metric.metric, FORECAST_ALERT)?
                    }
                };
                if !first {
                    continue;
                }
                let mut data = json!({
                    "metric": metric.metric,
                    "period": period.to_string(),
                    "plan": customer.plan,
                    "used": metric.used,
                    "limit": limit,
                    "enforcement": metric.enforcement,
                    "projected": metric.projected,
                    "projected_low": metric.low,
                    "projected_high": metric.high,
                    "exhausted_at": metric.exhausted_at_ms.map(rfc3339),
                });
                if let CounterOwner::Account(_) = customer.owner {
                    data["account_id"] = customer.customer_id.clone().into();
                }
                events::emit(tx, &rules, EventType::ForecastExceedsLimit, customer.user_id.as_deref(), data, now_ms)?;
            }
        }
        Ok(())
    })
}

/// What one run of the job did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JobReport {
    pub days_copied: u64,
    pub customers: u64,
}

/// One run: copy counters into day rows, project every customer with usage this month, store
/// the projections, alert. `None` when another node holds the job's lease.
pub fn run(store: &Store, rules: &Arc<Rules>, now_ms: i64) -> Result<Option<JobReport>, StoreError> {
    let holder = format!("{}:{}", super::node_id(), uuid::Uuid::new_v4().simple());
    let claim_holder = holder.clone();
    if !store.write(move |tx| tx.claim_lease(JOB_LEASE, &claim_holder, now_ms, now_ms + JOB_LEASE_MS))? {
        return Ok(None);
    }
    let result = run_claimed(store, rules, now_ms);
    let release = store.write(move |tx| tx.release_lease(JOB_LEASE, &holder));
    let report = result?;
    release?;
    Ok(Some(report))
}

fn run_claimed(store: &Store, rules: &Arc<Rules>, now_ms: i64) -> Result<JobReport, StoreError> {
    let mut report = JobReport { days_copied: snapshot(store, now_ms)?, customers: 0 };
    let period = Period::of_unix_ms(now_ms);
    let mut after = 0;
    loop {
        let page = store.read_snapshot(|reader| {
            let users = reader.solo_users_with_usage(period, after, PAGE)?;
            let last = users.last().map(|user| user.pk);
            let page: Vec<Projected> =
                users.iter().map(|user| Projected::of_user(reader, rules, user, now_ms)).collect::<Result<_, _>>()?;
            Ok((page, last))
        })?;
        let (page, last) = page;
        report.customers += page.len() as u64;
        save_page(store, rules, page, now_ms)?;
        match last {
            Some(last) => after = last,
            None => break,
        }
    }
    let mut after = 0;
    loop {
        let (page, last) = store.read_snapshot(|reader| {
            let accounts = reader.accounts_with_usage(period, after, PAGE)?;
            let last = accounts.last().map(|account| account.pk);
            let page: Vec<Projected> = accounts
                .iter()
                .map(|account| Projected::of_account(reader, rules, account, now_ms))
                .collect::<Result<_, _>>()?;
            Ok((page, last))
        })?;
        report.customers += page.len() as u64;
        save_page(store, rules, page, now_ms)?;
        match last {
            Some(last) => after = last,
            None => break,
        }
    }
    Ok(report)
}

/// The job's stored projections of a period (one metric or all), soonest to run out first.
pub fn stored(store: &Store, period: Period, metric: Option<&str>) -> Result<Vec<ForecastRecord>, AppError> {
    Ok(store.read(|reader| reader.forecasts(period, metric))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: &str, cumulative: u64) -> DayRecord {
        DayRecord { day: day.to_owned(), period: day[..7].parse().unwrap(), cumulative }
    }

    #[test]
    fn day_rows_become_daily_usage_and_a_reset_counts_from_zero() {
        let november: Period = "2026-11".parse().unwrap();
        let rows = [row("2026-11-02", 5), row("2026-11-03", 12), row("2026-11-10", 3), row("2026-11-11", 4)];
        let daily = daily_by_period(&rows, &[november]).remove(0);
        assert_eq!(daily.len(), 30);
        assert_eq!((daily[0], daily[1], daily[2], daily[9], daily[10]), (0, 5, 7, 3, 1));
        assert_eq!(daily.iter().sum::<u64>(), 16);
    }

    #[test]
    fn a_projection_counts_today_from_the_counter_and_never_falls_below_it() {
        // 2026-12-11 12:00 UTC: ten days of 10 a day, and 5 so far today.
        let now_ms = "2026-12-11T12:00:00Z".parse::<DateTime<chrono::Utc>>().unwrap().timestamp_millis();
        let rows: Vec<DayRecord> = (1..=10).map(|day| row(&format!("2026-12-{day:02}"), day * 10)).collect();
        let created = now_ms - 10 * DAY_MS - 12 * 3_600_000;
        let projection = project(&rows, 105, created, now_ms);
        assert_eq!(projection.used, 105);
        assert!(projection.low <= projection.projected && projection.projected <= projection.high);
        // About 10 a day over 31 days.
        assert!((250..=400).contains(&projection.projected), "{projection:?}");
        // Today's usage is what the counter says beyond the rows, not a row of its own.
        let today_row = [rows.clone(), vec![row("2026-12-11", 103)]].concat();
        assert_eq!(project(&today_row, 105, created, now_ms).projected, projection.projected);
    }
}
