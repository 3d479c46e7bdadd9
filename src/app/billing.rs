//! Billing use cases: a period's report, read page by page for a streamed answer, and the
//! Stripe meter events of an ended period. A past period's statement is closed first, on
//! whichever node asks first (steps serialized on the period, so nodes asking at once
//! write it once between them); the current period's report is computed live.

use super::{AppError, now_ms};
use crate::domain::Rules;
use crate::domain::billing::{self, BillingLine, Cursor, MeterEvent, Resolution};
use crate::domain::period::Period;
use crate::domain::ports::{ClosingRecord, CustomerKey, StatementLine, Store, StoreError};
use std::sync::Arc;

/// What a report is of: the period, its currency and metrics (a closed statement keeps
/// those it closed with), and when it closed (None: the current period, live).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub period: Period,
    pub currency: String,
    pub metrics: Vec<String>,
    pub closed_at_ms: Option<i64>,
}

/// Where the next page comes from.
enum Pages {
    Live {
        cursor: Cursor,
        now_ms: i64,
    },
    /// After this customer (kind, id) of the stored lines; None before the first. `done`
    /// once a short page was read.
    Closed {
        after: Option<(String, String)>,
        done: bool,
    },
}

/// A report or an export being read, a page at a time (a page may be empty before the end).
pub struct Pager {
    store: Store,
    rules: Arc<Rules>,
    pub statement: Statement,
    pages: Pages,
}

impl Pager {
    /// The next page of paying customers' lines; None at the end.
    pub fn next_lines(&mut self) -> Result<Option<Vec<BillingLine>>, AppError> {
        Ok(self
            .next_page()?
            .map(|page| page.into_iter().map(|(line, _)| line).filter(BillingLine::is_paying).collect()))
    }

    /// The next page of meter events (closed statements only); None at the end.
    pub fn next_events(&mut self) -> Result<Option<Vec<MeterEvent>>, AppError> {
        let period = self.statement.period;
        Ok(self.next_page()?.map(|page| {
            page.iter()
                .filter_map(|(line, stripe)| {
                    stripe.as_deref().map(|stripe| billing::meter_events(period, line, stripe))
                })
                .flatten()
                .collect()
        }))
    }

    /// Every line of the next page with the customer's Stripe id (closed statements only).
    fn next_page(&mut self) -> Result<Option<Vec<LineWithStripe>>, AppError> {
        let period = self.statement.period;
        match &mut self.pages {
            Pages::Live { cursor: Cursor::Done, .. } | Pages::Closed { done: true, .. } => Ok(None),
            Pages::Live { cursor, now_ms } => {
                let resolution = Resolution::Live { now_ms: *now_ms };
                let rules = &self.rules;
                let (lines, next) =
                    self.store.read_snapshot(|reader| billing::page(reader, rules, period, cursor, resolution))?;
                *cursor = next;
                Ok(Some(lines.into_iter().map(|line| (line, None)).collect()))
            }
            Pages::Closed { after, done } => {
                let stored = self.store.read(|reader| {
                    let after = after.as_ref().map(|(kind, id)| CustomerKey { kind, id });
                    reader.statement_lines(period, after, billing::PAGE)
                })?;
                *done = (stored.len() as u32) < billing::PAGE;
                *after = stored.last().map(|line| (line.customer_kind.clone(), line.customer_id.clone()));
                Ok(Some(stored.iter().map(read_line).collect::<Result<_, _>>()?))
            }
        }
    }
}

/// A line and its customer's Stripe id, if any.
type LineWithStripe = (BillingLine, Option<String>);

fn read_line(stored: &StatementLine) -> Result<LineWithStripe, StoreError> {
    let line = BillingLine::from_stored(&stored.customer_kind, &stored.customer_id, &stored.line)
        .ok_or_else(|| StoreError::backend(format!("a stored statement line of {} is not one", stored.customer_id)))?;
    Ok((line, stored.stripe_customer_id.clone()))
}

/// The report of `period`: live for the current period; for a past one, its statement,
/// closed now (audited under `actor`) if this is its first report. A period that has not
/// begun is refused.
pub fn report(store: &Store, rules: &Arc<Rules>, period: Period, actor: &str) -> Result<Pager, AppError> {
    let now_ms = now_ms();
    let current = Period::of_unix_ms(now_ms);
    if period > current {
        return Err(AppError::Invalid(format!("period {period} has not begun; ask for {current} or an earlier month")));
    }
    refuse_before_retention(rules, period, current)?;
    if period == current {
        let metrics = rules.catalog.metrics().map(|metric| metric.name.clone()).collect();
        let statement = Statement { period, currency: rules.currency.clone(), metrics, closed_at_ms: None };
        let pages = Pages::Live { cursor: Cursor::Accounts(None), now_ms };
        return Ok(Pager { store: Store::clone(store), rules: Arc::clone(rules), statement, pages });
    }
    closed(store, rules, period, actor)
}

/// The Stripe meter events of `period`, which must have ended (its statement is closed now
/// if it is not yet): use is sent once per period, after it.
pub fn stripe_events(store: &Store, rules: &Arc<Rules>, period: Period, actor: &str) -> Result<Pager, AppError> {
    let current = Period::of_unix_ms(now_ms());
    if period >= current {
        return Err(AppError::PeriodNotEnded { period: period.to_string(), current: current.to_string() });
    }
    refuse_before_retention(rules, period, current)?;
    closed(store, rules, period, actor)
}

/// A period older than `retention_months` keeps no counters: its statement would bill plan
/// prices for usage no longer known, so it is refused rather than closed.
fn refuse_before_retention(rules: &Rules, period: Period, current: Period) -> Result<(), AppError> {
    let oldest = current.oldest_kept(rules.retention_months);
    if period < oldest {
        return Err(AppError::Invalid(format!(
            "period {period} is before the oldest period kept ({oldest}, retention_months = {})",
            rules.retention_months
        )));
    }
    Ok(())
}

fn closed(store: &Store, rules: &Arc<Rules>, period: Period, actor: &str) -> Result<Pager, AppError> {
    let closing = close(store, rules, period, actor)?;
    let statement = Statement {
        period,
        metrics: closing.metrics.split(',').filter(|metric| !metric.is_empty()).map(str::to_owned).collect(),
        currency: closing.currency,
        closed_at_ms: closing.closed_at_ms,
    };
    let pages = Pages::Closed { after: None, done: false };
    Ok(Pager { store: Store::clone(store), rules: Arc::clone(rules), statement, pages })
}

/// Closes `period`'s statement if it is not closed yet: reads a page of customers, writes
/// it in a short job, until done (a step another node wrote first is read again from where
/// that node left it). Returns the closing.
fn close(store: &Store, rules: &Arc<Rules>, period: Period, actor: &str) -> Result<ClosingRecord, StoreError> {
    while let Some(step) = store.read_snapshot(|reader| billing::next_closing_step(reader, rules, period))? {
        let (rules, actor) = (Arc::clone(rules), actor.to_owned());
        store.write(move |tx| billing::apply_closing_step(tx, &rules, period, &step, &actor, now_ms()))?;
    }
    store
        .read(|reader| reader.find_closing(period))?
        .ok_or_else(|| StoreError::backend(format!("the statement of {period} closed but cannot be read")))
}
