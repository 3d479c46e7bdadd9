//! Overage billing: what a customer (a user on their own, or an account) owes for a period.
//! A line holds the plan and its price and, per metric, the included amount (the limit
//! resolved with grants and rollover by terms.rs, the one resolver), the use, the overage
//! units (use past the included amount, rounded up to the price's `per_units`) and their
//! amount. A customer pays when the plan's price or an overage amount is above zero.
//!
//! A past period's report must not move when plans, overrides, grants or prices change
//! later, and none of them keeps a history: so a past period's statement is *closed* once,
//! at its first report, in bounded steps (`next_closing_step` reads a page of customers,
//! `apply_closing_step` writes it), and read back from storage ever after. Closing resolves
//! each customer's terms as they stood at the period's last instant as far as storage still
//! tells (grants valid then, the override set before then), with the plan and membership they
//! have at closing. The current period's report is computed live and never stored.

use super::Rules;
use super::admin::Actor;
use super::period::Period;
use super::plan::{Overage, Plan};
use super::ports::{
    AdminWrite, BillingRead, BillingWrite, ClosingRecord, CustomerKey, StoreError, UsageRead, UsageWrite,
};
use super::terms::{self, Counter, Customer, Terms};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The `serialize_on` scope of a period's closing (its key: the period).
pub const BILLING_SCOPE: &str = "billing";

/// Customers read per page, for a report and for a closing step.
pub const PAGE: u32 = 200;

/// One metric of a line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricCharge {
    pub metric: String,
    /// The limit with grants and rollover; None: unlimited.
    pub included: Option<u64>,
    pub used: u64,
    pub overage_units: u64,
    pub overage_cents: u64,
}

/// What one customer owes for a period. Stored as JSON without the customer, whose kind and
/// id are columns of their own (so erasure can rename a user without reading lines).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingLine {
    #[serde(skip)]
    pub customer_kind: String,
    #[serde(skip)]
    pub customer_id: String,
    pub plan: String,
    pub plan_price_cents: u64,
    pub metrics: Vec<MetricCharge>,
}

impl BillingLine {
    pub fn overage_cents(&self) -> u64 {
        self.metrics.iter().map(|charge| charge.overage_cents).fold(0, u64::saturating_add)
    }

    pub fn total_cents(&self) -> u64 {
        self.plan_price_cents.saturating_add(self.overage_cents())
    }

    /// The report's definition of a paying customer.
    pub fn is_paying(&self) -> bool {
        self.total_cents() > 0
    }

    /// The stored form.
    pub fn stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored line; None when the text is not one (never, unless edited by hand).
    pub fn from_stored(customer_kind: &str, customer_id: &str, text: &str) -> Option<BillingLine> {
        let mut line: BillingLine = serde_json::from_str(text).ok()?;
        line.customer_kind = customer_kind.to_owned();
        line.customer_id = customer_id.to_owned();
        Some(line)
    }
}

/// (overage units, overage cents) of `used` against `included` (None: unlimited, never
/// passed). With a price the units are rounded up to a multiple of `per_units`, each started
/// block costing `price_cents`; without one they are the plain excess, billed nothing.
pub fn overage(included: Option<u64>, used: u64, price: Option<Overage>) -> (u64, u64) {
    let Some(included) = included else {
        return (0, 0);
    };
    let excess = used.saturating_sub(included);
    match price {
        None => (excess, 0),
        Some(price) => {
            let blocks = excess.div_ceil(price.per_units.max(1));
            (blocks.saturating_mul(price.per_units), blocks.saturating_mul(price.price_cents))
        }
    }
}

/// Sums over a report's lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub customers: u64,
    pub plan_price_cents: u64,
    pub overage_cents: u64,
    pub total_cents: u64,
    /// (used, overage units, overage cents) per metric, in the statement's metric order.
    pub metrics: IndexMap<String, (u64, u64, u64)>,
}

impl Totals {
    pub fn new(metrics: &[String]) -> Totals {
        Totals { metrics: metrics.iter().map(|metric| (metric.clone(), (0, 0, 0))).collect(), ..Totals::default() }
    }

    pub fn add(&mut self, line: &BillingLine) {
        self.customers += 1;
        self.plan_price_cents = self.plan_price_cents.saturating_add(line.plan_price_cents);
        self.overage_cents = self.overage_cents.saturating_add(line.overage_cents());
        self.total_cents = self.total_cents.saturating_add(line.total_cents());
        for charge in &line.metrics {
            let sums = self.metrics.entry(charge.metric.clone()).or_default();
            sums.0 = sums.0.saturating_add(charge.used);
            sums.1 = sums.1.saturating_add(charge.overage_units);
            sums.2 = sums.2.saturating_add(charge.overage_cents);
        }
    }
}

/// Where the next page of customers starts: accounts by id, then users on their own by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    Accounts(Option<String>),
    Users(Option<String>),
    Done,
}

/// How a page resolves customers' terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The current period, as the views show it now; only paying customers' lines.
    Live { now_ms: i64 },
    /// A past period being closed, as of its last instant; the line of every customer who
    /// pays or used anything (the Stripe export sends use, paid or not).
    Closing,
}

/// The lines of the page of customers at `cursor`, and the cursor after it.
/// Whether a customer created at `created_at_ms` with `counters` in `period` is billed for
/// it: one created after the period ended was not a customer of it, unless usage was
/// recorded in it (a track with a past timestamp).
fn of_period(period: Period, created_at_ms: i64, counters: &[(String, u64)]) -> bool {
    created_at_ms < period.end_unix_ms() || !counters.is_empty()
}

pub fn page(
    store: &(impl UsageRead + BillingRead + ?Sized),
    rules: &Rules,
    period: Period,
    cursor: &Cursor,
    resolution: Resolution,
) -> Result<(Vec<BillingLine>, Cursor), StoreError> {
    let mut lines = Vec::new();
    let next = match cursor {
        Cursor::Done => return Ok((lines, Cursor::Done)),
        Cursor::Accounts(after) => {
            let page = store.billing_accounts(period, after.as_deref(), PAGE)?;
            for (account, counters) in
                page.iter().filter(|(account, counters)| of_period(period, account.created_at_ms, counters))
            {
                let plan = rules.catalog.plan_or_default(&account.plan);
                let whose = (
                    Customer::Account(&account.account_id),
                    Counter::Account { pk: account.pk, created_at_ms: account.created_at_ms },
                );
                lines.extend(line(store, rules, plan, whose, counters, period, resolution)?);
            }
            match page.last() {
                Some((account, _)) if page.len() as u32 == PAGE => Cursor::Accounts(Some(account.account_id.clone())),
                _ => Cursor::Users(None),
            }
        }
        Cursor::Users(after) => {
            let page = store.billing_users(period, after.as_deref(), PAGE)?;
            for (user, counters) in
                page.iter().filter(|(user, counters)| of_period(period, user.created_at_ms, counters))
            {
                let plan = rules.catalog.plan_or_default(&user.plan);
                let whose =
                    (Customer::User(&user.user_id), Counter::User { pk: user.pk, created_at_ms: user.created_at_ms });
                lines.extend(line(store, rules, plan, whose, counters, period, resolution)?);
            }
            match page.last() {
                Some((user, _)) if page.len() as u32 == PAGE => Cursor::Users(Some(user.user_id.clone())),
                _ => Cursor::Done,
            }
        }
    };
    Ok((lines, next))
}

/// One customer's line; None when it is not wanted (see `Resolution`). A plan that is free
/// and prices no overage cannot pay, whatever the use.
fn line(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    plan: &Plan,
    (customer, counter): (Customer<'_>, Counter),
    counters: &[(String, u64)],
    period: Period,
    resolution: Resolution,
) -> Result<Option<BillingLine>, StoreError> {
    let can_pay = plan.price_cents > 0 || !plan.overage.is_empty();
    let used_any = counters.iter().any(|(_, used)| *used > 0);
    let (terms, as_of_ms) = match resolution {
        Resolution::Live { .. } if !can_pay => return Ok(None),
        Resolution::Closing if !can_pay && !used_any => return Ok(None),
        Resolution::Live { now_ms } => (Terms::load(store, plan, customer, now_ms)?, now_ms),
        Resolution::Closing => (Terms::at_end_of(store, plan, customer, period)?, period.end_unix_ms() - 1),
    };
    let mut metrics = Vec::new();
    for metric in rules.catalog.metrics() {
        let used = counters.iter().find(|(name, _)| *name == metric.name).map_or(0, |(_, used)| *used);
        let resolved = terms::resolve(store, &terms, (customer, counter), &metric.name, period, as_of_ms)?;
        let included = resolved.limit.value();
        let (overage_units, overage_cents) = overage(included, used, plan.overage.get(&metric.name).copied());
        metrics.push(MetricCharge { metric: metric.name.clone(), included, used, overage_units, overage_cents });
    }
    let key = customer.key();
    let line = BillingLine {
        customer_kind: key.kind.to_owned(),
        customer_id: key.id.to_owned(),
        plan: plan.name.clone(),
        plan_price_cents: plan.price_cents,
        metrics,
    };
    let wanted = match resolution {
        Resolution::Live { .. } => line.is_paying(),
        Resolution::Closing => line.is_paying() || used_any,
    };
    Ok(wanted.then_some(line))
}

/// The cursor a closing stands at.
fn cursor_of(closing: &ClosingRecord) -> Cursor {
    match (closing.closed_at_ms, closing.cursor_kind.as_str()) {
        (Some(_), _) => Cursor::Done,
        (None, "user") => Cursor::Users(closing.cursor_id.clone()),
        (None, _) => Cursor::Accounts(closing.cursor_id.clone()),
    }
}

/// A closing step read and not yet written: the lines of the customers from `from` up to
/// `to`.
#[derive(Clone, Debug)]
pub struct ClosingStep {
    pub from: Cursor,
    pub to: Cursor,
    pub lines: Vec<BillingLine>,
}

/// Reads the next step of closing `period` (a period that has ended); None once it is closed.
pub fn next_closing_step(
    store: &(impl UsageRead + BillingRead + ?Sized),
    rules: &Rules,
    period: Period,
) -> Result<Option<ClosingStep>, StoreError> {
    let from = match store.find_closing(period)? {
        Some(closing) if closing.closed_at_ms.is_some() => return Ok(None),
        Some(closing) => cursor_of(&closing),
        None => Cursor::Accounts(None),
    };
    let (lines, to) = page(store, rules, period, &from, Resolution::Closing)?;
    Ok(Some(ClosingStep { from, to, lines }))
}

/// Writes a step `next_closing_step` read, unless the closing has moved since (another node
/// wrote it): then false, and the caller reads the next step again. Serialized on the
/// period. The last step closes the statement, with the currency and metrics configured now,
/// and audits it.
pub fn apply_closing_step(
    tx: &(impl UsageWrite + AdminWrite + BillingWrite + ?Sized),
    rules: &Rules,
    period: Period,
    step: &ClosingStep,
    actor: Actor<'_>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    tx.serialize_on(BILLING_SCOPE, &period.to_string())?;
    let found = tx.find_closing(period)?;
    let at = found.as_ref().map_or(Cursor::Accounts(None), cursor_of);
    if at != step.from {
        return Ok(false);
    }
    for line in &step.lines {
        let customer = CustomerKey { kind: &line.customer_kind, id: &line.customer_id };
        tx.add_statement_line(period, customer, &line.stored())?;
    }
    let metrics: Vec<&str> = rules.catalog.metrics().map(|metric| metric.name.as_str()).collect();
    let mut closing = found.unwrap_or_else(|| ClosingRecord {
        period: period.to_string(),
        currency: rules.currency.clone(),
        metrics: metrics.join(","),
        cursor_kind: "account".into(),
        cursor_id: None,
        started_at_ms: now_ms,
        closed_at_ms: None,
    });
    match &step.to {
        Cursor::Accounts(after) => (closing.cursor_kind, closing.cursor_id) = ("account".into(), after.clone()),
        Cursor::Users(after) => (closing.cursor_kind, closing.cursor_id) = ("user".into(), after.clone()),
        Cursor::Done => closing.closed_at_ms = Some(now_ms),
    }
    tx.save_closing(&closing)?;
    if step.to == Cursor::Done {
        let details = json!({ "period": period.to_string(), "currency": closing.currency });
        tx.append_audit(now_ms, actor, "statement_closed", None, &details.to_string())?;
    }
    Ok(true)
}

/// One Stripe meter event (v2 shape): a customer's use of a metric in a closed period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterEvent {
    /// `tally_<metric>`: the event name the Stripe meter is created with.
    pub event_name: String,
    /// `tally_<period>_<32 hex>`: the same for a period, customer and metric on every export,
    /// so a resend is deduplicated by Stripe.
    pub identifier: String,
    pub stripe_customer_id: String,
    pub value: u64,
    /// The period's last second (unix ms): Stripe bills the use in the period it belongs to.
    pub timestamp_ms: i64,
}

/// The meter events of a closed line: one per metric with use.
pub fn meter_events(period: Period, line: &BillingLine, stripe_customer_id: &str) -> Vec<MeterEvent> {
    line.metrics
        .iter()
        .filter(|charge| charge.used > 0)
        .map(|charge| {
            let name = format!("{period}\n{}\n{}\n{}", line.customer_kind, line.customer_id, charge.metric);
            let digest = super::hex(&Sha256::digest(name.as_bytes()));
            MeterEvent {
                event_name: format!("tally_{}", charge.metric),
                identifier: format!("tally_{period}_{}", &digest[..32]),
                stripe_customer_id: stripe_customer_id.to_owned(),
                value: charge.used,
                timestamp_ms: period.end_unix_ms() - 1000,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(price_cents: u64, per_units: u64) -> Option<Overage> {
        Some(Overage { price_cents, per_units })
    }

    #[test]
    fn overage_is_rounded_up_to_whole_blocks() {
        assert_eq!(overage(Some(100), 100, price(1, 100)), (0, 0), "at the limit nothing is owed");
        assert_eq!(overage(Some(100), 101, price(1, 100)), (100, 1), "one unit past starts a block");
        assert_eq!(overage(Some(100), 300, price(3, 100)), (200, 6));
        assert_eq!(overage(Some(100), 301, price(3, 100)), (300, 9));
        assert_eq!(overage(Some(0), 7, price(5, 1)), (7, 35));
        assert_eq!(overage(None, 1_000_000, price(1, 1)), (0, 0), "unlimited is never passed");
        assert_eq!(overage(Some(10), 25, None), (15, 0), "no price: the excess, billed nothing");
        assert_eq!(overage(Some(0), u64::MAX, price(u64::MAX, 1)), (u64::MAX, u64::MAX), "saturates");
    }

    fn line(price_cents: u64, charges: &[(u64, u64)]) -> BillingLine {
        BillingLine {
            customer_kind: "user".into(),
            customer_id: "u".into(),
            plan: "p".into(),
            plan_price_cents: price_cents,
            metrics: charges
                .iter()
                .enumerate()
                .map(|(index, (used, cents))| MetricCharge {
                    metric: format!("m{index}"),
                    included: Some(0),
                    used: *used,
                    overage_units: *used,
                    overage_cents: *cents,
                })
                .collect(),
        }
    }

    #[test]
    fn a_customer_pays_the_plan_or_an_overage() {
        assert!(!line(0, &[(5, 0)]).is_paying());
        assert!(line(1, &[(0, 0)]).is_paying());
        assert!(line(0, &[(5, 0), (1, 2)]).is_paying());
        assert_eq!(line(900, &[(5, 3), (1, 2)]).total_cents(), 905);
    }

    #[test]
    fn totals_add_every_line_per_metric() {
        let mut totals = Totals::new(&["m0".to_owned(), "m1".to_owned(), "m2".to_owned()]);
        totals.add(&line(900, &[(5, 3), (1, 2)]));
        totals.add(&line(100, &[(10, 0), (0, 0)]));
        assert_eq!(
            (totals.customers, totals.plan_price_cents, totals.overage_cents, totals.total_cents),
            (2, 1000, 5, 1005)
        );
        assert_eq!(totals.metrics["m0"], (15, 15, 3));
        assert_eq!(totals.metrics["m2"], (0, 0, 0), "a metric no line uses is still there");
    }

    #[test]
    fn a_stored_line_reads_back_with_its_customer_from_the_columns() {
        let line = line(900, &[(5, 3)]);
        let stored = line.stored();
        assert!(!stored.contains("\"u\""), "the customer id is not in the stored text: {stored}");
        assert_eq!(BillingLine::from_stored("user", "u", &stored), Some(line));
        assert_eq!(BillingLine::from_stored("user", "u", "{"), None);
    }

    #[test]
    fn meter_events_are_stable_per_period_customer_and_metric() {
        let period: Period = "2026-11".parse().unwrap();
        let events = meter_events(period, &line(0, &[(5, 0), (0, 0), (7, 0)]), "cus_1");
        assert_eq!(events.len(), 2, "a metric without use sends nothing");
        assert_eq!((events[0].event_name.as_str(), events[0].value), ("tally_m0", 5));
        assert_eq!(events[0].identifier.len(), "tally_2026-11_".len() + 32);
        assert!(events[0].identifier.starts_with("tally_2026-11_"));
        assert_ne!(events[0].identifier, events[1].identifier);
        assert_eq!(events, meter_events(period, &line(0, &[(5, 0), (0, 0), (7, 0)]), "cus_1"));
        let next: Period = "2026-12".parse().unwrap();
        assert_ne!(meter_events(next, &line(0, &[(5, 0)]), "cus_1")[0].identifier, events[0].identifier);
        assert_eq!(events[0].timestamp_ms, next.start_unix_ms() - 1000);
    }
}
