//! Events: what happened to whom, written in the same transaction as the change that caused
//! it (so never for a change that rolled back, never lost for one that committed), and
//! queued for every webhook that wants it in that same transaction (the outbox).

use super::Rules;
use super::period::Period;
use super::plan::Limit;
use super::ports::{EventWrite, RefusalKey, RefusalTally, StoreError, UsageWrite};
use serde_json::{Value, json};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    LimitExceeded,
    ThresholdCrossed,
    SoftLimitExceeded,
    RateLimited,
    FeatureDenied,
    PlanChanged,
    UsageReset,
    Cleanup,
    UserErased,
    ForecastExceedsLimit,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::LimitExceeded,
        EventType::ThresholdCrossed,
        EventType::SoftLimitExceeded,
        EventType::RateLimited,
        EventType::FeatureDenied,
        EventType::PlanChanged,
        EventType::UsageReset,
        EventType::Cleanup,
        EventType::UserErased,
        EventType::ForecastExceedsLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::LimitExceeded => "limit_exceeded",
            EventType::ThresholdCrossed => "threshold_crossed",
            EventType::SoftLimitExceeded => "soft_limit_exceeded",
            EventType::RateLimited => "rate_limited",
            EventType::FeatureDenied => "feature_denied",
            EventType::PlanChanged => "plan_changed",
            EventType::UsageReset => "usage_reset",
            EventType::Cleanup => "cleanup",
            EventType::UserErased => "user_erased",
            EventType::ForecastExceedsLimit => "forecast_exceeds_limit",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;

    fn from_str(text: &str) -> Result<EventType, String> {
        EventType::ALL.into_iter().find(|kind| kind.as_str() == text).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
            format!("{text:?} is not an event type; known: {}", known.join(", "))
        })
    }
}

/// Which event types a webhook receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(Vec<EventType>),
}

impl EventFilter {
    pub fn wants(&self, kind: EventType) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Only(kinds) => kinds.contains(&kind),
        }
    }
}

/// A webhook as the domain sees it: where events go, and which. The secret stays with the
/// sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRoute {
    pub url: String,
    pub filter: EventFilter,
}

/// Records an event and queues it for every webhook that wants it; nothing when telemetry
/// is off. Runs inside the caller's transaction.
pub fn emit(
    store: &(impl EventWrite + ?Sized),
    rules: &Rules,
    kind: EventType,
    user_id: Option<&str>,
    data: Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    if !rules.telemetry_enabled {
        return Ok(());
    }
    let event_id = store.record_event(kind.as_str(), user_id, &data.to_string(), now_ms)?;
    for hook in rules.webhooks.iter().filter(|hook| hook.filter.wants(kind)) {
        store.queue_delivery(&event_id, &hook.url, now_ms)?;
    }
    Ok(())
}

/// Whether a refusal counter that just counted one more writes an event now: the first
/// refusal does, then at most one per `interval_ms`.
pub fn refusal_event_due(tally: &RefusalTally, interval_ms: i64, now_ms: i64) -> bool {
    tally.reported_at_ms.is_none_or(|reported_at| now_ms.saturating_sub(reported_at) >= interval_ms)
}

/// Counts a refusal (`limit_exceeded` of a metric, `rate_limited` or `feature_denied` of a
/// feature) in the user's counter for the period, and writes its event only when
/// `refusal_event_due`, with `refusals`: how many refusals the event stands for (this one and
/// those since the previous event). A client retrying in a loop adds to one row. Runs inside
/// the caller's transaction, serialized on the user.
pub fn refusal(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    kind: EventType,
    key: &RefusalKey<'_>,
    mut data: Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    debug_assert_eq!(key.kind, kind.as_str());
    let tally = store.count_refusal(key)?;
    if !rules.telemetry_enabled || !refusal_event_due(&tally, rules.refusal_event_interval_ms, now_ms) {
        return Ok(());
    }
    store.mark_refusals_reported(key, now_ms)?;
    if let Value::Object(fields) = &mut data {
        fields.insert("refusals".into(), tally.unreported.into());
    }
    emit(store, rules, kind, Some(key.user_id), data, now_ms)
}

/// The usage that makes `threshold` (a fraction) of `limit` reached.
fn threshold_level(threshold: f64, limit: u64) -> u64 {
    (threshold * limit as f64).ceil().max(0.0) as u64
}

/// Whose once-only alerts a crossing marks: a user's, or an account pool's (named in the
/// event's data as `account_id`).
pub enum AlertOwner<'a> {
    User(i64),
    Account { pk: i64, account_id: &'a str },
}

/// Whether a track that took usage from `used_before` to `used_after` reached `level` itself:
/// only that track acts on the level, so tracks past it cost no statement.
fn crossed(level: u64, used_before: u64, used_after: u64) -> bool {
    used_before < level && level <= used_after
}

/// A user's (for a member, the pool's) use of a metric before and after a recorded track.
pub struct Crossing<'a> {
    pub owner: AlertOwner<'a>,
    pub user_id: &'a str,
    pub plan: &'a str,
    pub metric: &'a str,
    pub period: Period,
    pub limit: Limit,
    pub used_before: u64,
    pub used: u64,
}

impl Crossing<'_> {
    /// Marks the alert as sent for this crossing's owner; false if it already was.
    fn mark(&self, store: &(impl EventWrite + ?Sized), period: &str, alert: &str) -> Result<bool, StoreError> {
        match self.owner {
            AlertOwner::User(user_pk) => store.mark_alert(user_pk, period, self.metric, alert),
            AlertOwner::Account { pk, .. } => store.mark_account_alert(pk, period, self.metric, alert),
        }
    }

    /// Adds `account_id` to an event's data when the crossing is an account pool's.
    fn name_account(&self, data: &mut Value) {
        if let AlertOwner::Account { account_id, .. } = self.owner {
            data["account_id"] = account_id.into();
        }
    }
}

/// Emits `threshold_crossed` for each configured fraction of the limit that this track
/// reached and `soft_limit_exceeded` when this track went past a soft limit. The mark keeps
/// each at most once per owner (user or account), metric, period and threshold (a reset lets
/// usage cross again; the mark and the event share the writer's transaction); tracks that
/// cross nothing write nothing.
pub fn usage_alerts(
    store: &(impl EventWrite + ?Sized),
    rules: &Rules,
    crossing: &Crossing<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    if !rules.telemetry_enabled {
        return Ok(());
    }
    let Some(limit) = crossing.limit.value() else {
        return Ok(());
    };
    let period = crossing.period.to_string();
    for &threshold in &rules.alert_thresholds {
        let level = threshold_level(threshold, limit);
        if level > 0
            && crossed(level, crossing.used_before, crossing.used)
            && crossing.mark(store, &period, &format!("threshold:{threshold}"))?
        {
            let mut data = json!({
                "metric": crossing.metric,
                "period": period,
                "plan": crossing.plan,
                "threshold": threshold,
                "used": crossing.used,
                "limit": limit,
                "enforcement": crossing.limit.enforcement(),
            });
            crossing.name_account(&mut data);
            emit(store, rules, EventType::ThresholdCrossed, Some(crossing.user_id), data, now_ms)?;
        }
    }
    if let Limit::Soft(limit) = crossing.limit
        && crossed(limit.saturating_add(1), crossing.used_before, crossing.used)
        && crossing.mark(store, &period, "soft_limit")?
    {
        let mut data = json!({
            "metric": crossing.metric,
            "period": period,
            "plan": crossing.plan,
            "used": crossing.used,
            "limit": limit,
        });
        crossing.name_account(&mut data);
        emit(store, rules, EventType::SoftLimitExceeded, Some(crossing.user_id), data, now_ms)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_through_their_names() {
        for kind in EventType::ALL {
            assert_eq!(kind.as_str().parse::<EventType>(), Ok(kind));
        }
        assert!("nope".parse::<EventType>().unwrap_err().contains("limit_exceeded"));
    }

    #[test]
    fn threshold_levels_round_up() {
        assert_eq!(threshold_level(0.8, 30), 24);
        assert_eq!(threshold_level(0.8, 31), 25);
        assert_eq!(threshold_level(1.0, 30), 30);
        assert_eq!(threshold_level(0.5, 0), 0);
    }

    #[test]
    fn only_the_track_that_reaches_a_level_crosses_it() {
        assert!(crossed(80, 79, 80), "reaching the level exactly crosses it");
        assert!(crossed(80, 0, 100), "one large track crosses it too");
        assert!(!crossed(80, 80, 81), "a track past the level does not");
        assert!(!crossed(80, 90, 90), "nor does an amount of 0 above it");
        assert!(!crossed(80, 10, 79), "nor one that stays below");
        // A soft limit of 100 is passed by the track that goes to 101.
        assert!(crossed(101, 100, 101));
        assert!(!crossed(101, 101, 150));
    }

    #[test]
    fn the_first_refusal_reports_then_one_per_interval() {
        let never = RefusalTally { count: 1, unreported: 1, reported_at_ms: None };
        assert!(refusal_event_due(&never, 3_600_000, 0));
        let recent = RefusalTally { count: 9, unreported: 8, reported_at_ms: Some(1_000) };
        assert!(!refusal_event_due(&recent, 3_600_000, 3_600_999));
        assert!(refusal_event_due(&recent, 3_600_000, 3_601_000));
        assert!(refusal_event_due(&recent, 0, 1_000), "an interval of 0 reports every refusal");
    }

    #[test]
    fn filters_match_their_types() {
        assert!(EventFilter::All.wants(EventType::Cleanup));
        let only = EventFilter::Only(vec![EventType::LimitExceeded]);
        assert!(only.wants(EventType::LimitExceeded));
        assert!(!only.wants(EventType::Cleanup));
    }
}
