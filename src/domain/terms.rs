//! A customer's terms beyond the plan (overrides and grants, rollover of unused allowance),
//! and the one place a metric's limit is resolved:
//!
//!   plan -> override (replaces what it names, until it expires) -> grants (added, for the
//!   period, while valid) -> rollover (what the previous period left, up to `rollover_max`)
//!
//! For a member of an account the pool's limit is the account's resolution; a user override
//! of the metric then caps the member's own counter too (both must pass).

use super::Rules;
use super::period::Period;
use super::plan::{FeatureGrant, Limit, Plan};
use super::ports::{AdminWrite, CustomerKey, GrantRecord, OverrideRecord, StoreError, UsageRead, UsageWrite};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Whom terms are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Customer<'a> {
    User(&'a str),
    Account(&'a str),
}

impl<'a> Customer<'a> {
    pub fn key(self) -> CustomerKey<'a> {
        match self {
            Customer::User(id) => CustomerKey { kind: "user", id },
            Customer::Account(id) => CustomerKey { kind: "account", id },
        }
    }
}

/// Where a limit or a feature's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Plan,
    Override,
}

/// A custom plan for one customer: the limits and features it names replace the plan's,
/// until `expires_at_ms`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Override {
    pub limits: IndexMap<String, Limit>,
    pub features: IndexMap<String, FeatureGrant>,
    pub expires_at_ms: Option<i64>,
    pub note: Option<String>,
    /// When it was stored (None before it is): an override set during a period did not
    /// decide the period before it, which rollover reads.
    pub set_at_ms: Option<i64>,
}

impl Override {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_none_or(|expires| now_ms < expires)
    }

    /// The stored form: `{"limits": {metric: {"limit", "enforcement"} | "unlimited"},
    /// "features": {feature: bool | {"limit", "window_secs"}}}` (the expiry and note are
    /// columns of their own).
    pub fn record(&self, now_ms: i64) -> OverrideRecord {
        let limits: Map<String, Value> =
            self.limits.iter().map(|(metric, limit)| (metric.clone(), limit_json(*limit))).collect();
        let features: Map<String, Value> =
            self.features.iter().map(|(name, grant)| (name.clone(), feature_json(*grant))).collect();
        OverrideRecord {
            body: json!({ "limits": limits, "features": features }).to_string(),
            expires_at_ms: self.expires_at_ms,
            note: self.note.clone(),
            updated_at_ms: now_ms,
        }
    }

    /// Reads a stored override; None when the body is not one (it never is, unless edited by
    /// hand: then it is ignored rather than served wrongly).
    pub fn from_record(record: &OverrideRecord) -> Option<Override> {
        let body: Value = serde_json::from_str(&record.body).ok()?;
        let mut limits = IndexMap::new();
        for (metric, value) in body.get("limits")?.as_object()? {
            limits.insert(metric.clone(), limit_from_json(value)?);
        }
        let mut features = IndexMap::new();
        for (name, value) in body.get("features")?.as_object()? {
            features.insert(name.clone(), feature_from_json(value)?);
        }
        Some(Override {
            limits,
            features,
            expires_at_ms: record.expires_at_ms,
            note: record.note.clone(),
            set_at_ms: Some(record.updated_at_ms),
        })
    }
}

pub fn limit_json(limit: Limit) -> Value {
    match limit {
        Limit::Unlimited => json!("unlimited"),
        Limit::Hard(value) => json!({ "limit": value, "enforcement": "hard" }),
        Limit::Soft(value) => json!({ "limit": value, "enforcement": "soft" }),
    }
}

fn limit_from_json(value: &Value) -> Option<Limit> {
    if value.as_str() == Some("unlimited") {
        return Some(Limit::Unlimited);
    }
    let limit = value.get("limit")?.as_u64()?;
    match value.get("enforcement")?.as_str()? {
        "hard" => Some(Limit::Hard(limit)),
        "soft" => Some(Limit::Soft(limit)),
        _ => None,
    }
}

pub fn feature_json(grant: FeatureGrant) -> Value {
    match grant {
        FeatureGrant::Boolean(granted) => json!(granted),
        FeatureGrant::Rate { limit, window_secs } => json!({ "limit": limit, "window_secs": window_secs }),
    }
}

fn feature_from_json(value: &Value) -> Option<FeatureGrant> {
    if let Some(granted) = value.as_bool() {
        return Some(FeatureGrant::Boolean(granted));
    }
    let limit = u32::try_from(value.get("limit")?.as_u64()?).ok()?;
    let window_secs = u32::try_from(value.get("window_secs")?.as_u64()?).ok()?;
    Some(FeatureGrant::Rate { limit, window_secs })
}

/// A customer's plan with their active override, if any.
#[derive(Clone, Debug)]
pub struct Terms<'p> {
    pub plan: &'p Plan,
    pub over: Option<Override>,
}

impl<'p> Terms<'p> {
    /// `plan` with the customer's override if it is active at `now_ms`.
    pub fn load(
        store: &(impl UsageRead + ?Sized),
        plan: &'p Plan,
        customer: Customer<'_>,
        now_ms: i64,
    ) -> Result<Terms<'p>, StoreError> {
        let over = store
            .find_override(customer.key())?
            .as_ref()
            .and_then(Override::from_record)
            .filter(|over| over.is_active(now_ms));
        Ok(Terms { plan, over })
    }

    /// `plan` with the override that decided the end of `period`, as far as it is known now:
    /// the stored one if it was set before the period ended and was active at its last
    /// instant (an override set later replaced whatever there was: the plan's limits
    /// apply, as for rollover). For a closed period's statement.
    pub fn at_end_of(
        store: &(impl UsageRead + ?Sized),
        plan: &'p Plan,
        customer: Customer<'_>,
        period: Period,
    ) -> Result<Terms<'p>, StoreError> {
        let last_instant = period.end_unix_ms() - 1;
        let over = store
            .find_override(customer.key())?
            .as_ref()
            .and_then(Override::from_record)
            .filter(|over| over.is_active(last_instant) && over.set_at_ms.is_none_or(|at| at <= last_instant));
        Ok(Terms { plan, over })
    }

    /// The metric's limit before grants and rollover, and where it comes from.
    pub fn base_limit(&self, metric: &str) -> (Limit, Source) {
        match self.over.as_ref().and_then(|over| over.limits.get(metric)) {
            Some(limit) => (*limit, Source::Override),
            None => (self.plan.limit(metric), Source::Plan),
        }
    }

    /// Whether the override names the metric (a member's user cap).
    pub fn overrides_limit(&self, metric: &str) -> bool {
        self.over.as_ref().is_some_and(|over| over.limits.contains_key(metric))
    }

    /// What the customer has of `feature`, and where it comes from.
    pub fn feature(&self, feature: &str) -> (FeatureGrant, Source) {
        match self.over.as_ref().and_then(|over| over.features.get(feature)) {
            Some(grant) => (*grant, Source::Override),
            None => (self.plan.feature(feature), Source::Plan),
        }
    }
}

/// A metric's limit as it applies: `limit` includes `granted` and `rollover`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedLimit {
    pub limit: Limit,
    pub source: Source,
    pub granted: u64,
    pub rollover: u64,
}

impl ResolvedLimit {
    /// A plan's limit with nothing added.
    #[cfg(test)]
    pub fn of_plan(limit: Limit) -> ResolvedLimit {
        ResolvedLimit { limit, source: Source::Plan, granted: 0, rollover: 0 }
    }
}

/// Adds `extra` to a capped limit; unlimited stays unlimited.
fn raised(limit: Limit, extra: u64) -> Limit {
    match limit {
        Limit::Unlimited => Limit::Unlimited,
        Limit::Hard(value) => Limit::Hard(value.saturating_add(extra)),
        Limit::Soft(value) => Limit::Soft(value.saturating_add(extra)),
    }
}

/// The customer's counter of a metric in a period (for rollover): a user's own, an account's
/// pool, or none (not created yet), and since when the customer exists.
#[derive(Clone, Copy, Debug)]
pub enum Counter {
    None,
    User { pk: i64, created_at_ms: i64 },
    Account { pk: i64, created_at_ms: i64 },
}

impl Counter {
    fn used(self, store: &(impl UsageRead + ?Sized), period: Period, metric: &str) -> Result<u64, StoreError> {
        match self {
            Counter::None => Ok(0),
            Counter::User { pk, .. } => store.counter(pk, period, metric),
            Counter::Account { pk, .. } => store.account_counter(pk, period, metric),
        }
    }

    fn existed_before(self, instant_ms: i64) -> bool {
        match self {
            Counter::None => false,
            Counter::User { created_at_ms, .. } | Counter::Account { created_at_ms, .. } => created_at_ms < instant_ms,
        }
    }
}

/// Resolves `metric`'s limit for `customer` in `period` at `now_ms`: the terms' base, plus
/// the grants of the period still valid now, plus the rollover from the period before (for
/// a customer that existed then, when the plan's limit sets `rollover_max`): at most
/// `rollover_max`, and what that period's limit without its own rollover (base + its grants)
/// left unused.
pub fn resolve(
    store: &(impl UsageRead + ?Sized),
    terms: &Terms<'_>,
    (customer, counter): (Customer<'_>, Counter),
    metric: &str,
    period: Period,
    now_ms: i64,
) -> Result<ResolvedLimit, StoreError> {
    let (base, source) = terms.base_limit(metric);
    let Some(base_value) = base.value() else {
        return Ok(ResolvedLimit { limit: Limit::Unlimited, source, granted: 0, rollover: 0 });
    };
    let granted = store.sum_grants(customer.key(), metric, period, now_ms)?;
    let rollover = match terms.plan.rollover_max.get(metric) {
        Some(&max) if counter.existed_before(period.start_unix_ms()) => {
            let previous = period.months_before(1);
            // Grants of the previous period as they stood at its end.
            let previous_grants = store.sum_grants(customer.key(), metric, previous, period.start_unix_ms() - 1)?;
            // The previous period's base: the override's only if it was already set then.
            let override_then =
                terms.over.as_ref().and_then(|over| over.set_at_ms).is_some_and(|at| at < period.start_unix_ms());
            let previous_base = match source {
                Source::Override if !override_then => terms.plan.limit(metric).value().unwrap_or(base_value),
                _ => base_value,
            };
            let previous_limit = previous_base.saturating_add(previous_grants);
            let previous_used = counter.used(store, previous, metric)?;
            max.min(previous_limit.saturating_sub(previous_used))
        }
        _ => 0,
    };
    Ok(ResolvedLimit { limit: raised(base, granted.saturating_add(rollover)), source, granted, rollover })
}

/// A member's own cap on a metric: their override's limit plus their grants, when their
/// override names the metric; None otherwise (the pool alone decides).
pub fn member_cap(
    store: &(impl UsageRead + ?Sized),
    rules: &Rules,
    user_id: &str,
    user_plan: &str,
    metric: &str,
    period: Period,
    now_ms: i64,
) -> Result<Option<ResolvedLimit>, StoreError> {
    let plan = rules.catalog.plan_or_default(user_plan);
    let terms = Terms::load(store, plan, Customer::User(user_id), now_ms)?;
    if !terms.overrides_limit(metric) {
        return Ok(None);
    }
    // No rollover for a cap: `Counter::None` never existed before the period.
    resolve(store, &terms, (Customer::User(user_id), Counter::None), metric, period, now_ms).map(Some)
}

/// How the audit log names a customer (an account as `account:<id>`, so erasing a user of the
/// same id leaves the account's rows alone).
pub fn audit_target(customer: Customer<'_>) -> String {
    match customer {
        Customer::User(id) => id.to_owned(),
        Customer::Account(id) => super::account::audit_target(id),
    }
}

/// Replaces the customer's override; audited.
pub fn set_override(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    customer: Customer<'_>,
    over: &Override,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let record = over.record(now_ms);
    tx.put_override(customer.key(), &record)?;
    let details = json!({
        "override": serde_json::from_str::<Value>(&record.body).unwrap_or(Value::Null),
        "expires_at_ms": over.expires_at_ms,
        "note": over.note,
    });
    tx.append_audit(now_ms, actor, "override_set", Some(&audit_target(customer)), &details.to_string())?;
    Ok(())
}

/// Removes the customer's override; audited. False when there was none.
pub fn remove_override(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    customer: Customer<'_>,
    actor: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if !tx.delete_override(customer.key())? {
        return Ok(false);
    }
    tx.append_audit(now_ms, actor, "override_removed", Some(&audit_target(customer)), "{}")?;
    Ok(true)
}

/// Why a grant was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantRefusal {
    /// It could raise no enforced limit: the metric is unlimited for the customer, or the
    /// customer is a member without a cap of their own (the pool decides).
    NoEffect(String),
}

/// Whether a grant of `metric` to `customer` could raise a limit that applies.
fn grant_effect(
    tx: &(impl UsageRead + ?Sized),
    rules: &Rules,
    customer: Customer<'_>,
    metric: &str,
    now_ms: i64,
) -> Result<Result<(), GrantRefusal>, StoreError> {
    let terms = match customer {
        Customer::User(user_id) => {
            let user = tx.find_user(user_id)?;
            if let Some(user) = &user
                && user.account_pk.is_some()
            {
                let plan = rules.catalog.plan_or_default(&user.plan);
                let own = Terms::load(tx, plan, customer, now_ms)?;
                if !own.overrides_limit(metric) {
                    return Ok(Err(GrantRefusal::NoEffect(format!(
                        "{user_id} is a member of an account without a cap of their own on {metric}: the account's \
                         pool decides; grant to the account instead"
                    ))));
                }
                own
            } else {
                Terms::load(tx, rules.plan_of(user.as_ref()), customer, now_ms)?
            }
        }
        Customer::Account(account_id) => {
            let plan = match tx.find_account(account_id)? {
                Some(account) => rules.catalog.plan_or_default(&account.plan),
                None => rules.catalog.default_plan(),
            };
            Terms::load(tx, plan, customer, now_ms)?
        }
    };
    if terms.base_limit(metric).0 == Limit::Unlimited {
        return Ok(Err(GrantRefusal::NoEffect(format!("{metric} is unlimited for this customer"))));
    }
    Ok(Ok(()))
}

/// Stores a grant for `customer` unless it could have no effect; audited.
pub fn add_grant(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    rules: &Rules,
    customer: Customer<'_>,
    grant: &GrantRecord,
    actor: &str,
    now_ms: i64,
) -> Result<Result<i64, GrantRefusal>, StoreError> {
    if let Err(refusal) = grant_effect(tx, rules, customer, &grant.metric, now_ms)? {
        return Ok(Err(refusal));
    }
    let grant_id = tx.add_grant(grant)?;
    let details = json!({
        "grant_id": grant_id,
        "metric": grant.metric,
        "amount": grant.amount,
        "period": grant.period,
        "expires_at_ms": grant.expires_at_ms,
        "note": grant.note,
    });
    tx.append_audit(now_ms, actor, "grant_added", Some(&audit_target(customer)), &details.to_string())?;
    Ok(Ok(grant_id))
}

/// Revokes a grant; audited. None when there was none.
pub fn revoke_grant(
    tx: &(impl UsageWrite + AdminWrite + ?Sized),
    grant_id: i64,
    actor: &str,
    now_ms: i64,
) -> Result<Option<GrantRecord>, StoreError> {
    let Some(grant) = tx.delete_grant(grant_id)? else {
        return Ok(None);
    };
    let customer = match grant.customer_kind.as_str() {
        "account" => Customer::Account(&grant.customer_id),
        _ => Customer::User(&grant.customer_id),
    };
    let details =
        json!({ "grant_id": grant_id, "metric": grant.metric, "amount": grant.amount, "period": grant.period });
    tx.append_audit(now_ms, actor, "grant_revoked", Some(&audit_target(customer)), &details.to_string())?;
    Ok(Some(grant))
}
