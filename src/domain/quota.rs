//! Quotas as a client throttles on them: for one limited metric or rate-limited feature, the
//! limit, the window (none for a calendar month), what remains and when it resets. The
//! numbers behind the RateLimit headers; their syntax is http/'s.

use super::feature::{FeatureKind, FeatureVerdict};
use super::usage::Verdict;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// The metric or feature.
    pub name: String,
    pub limit: u64,
    /// A rolling window's length; `None` for a monthly limit.
    pub window_secs: Option<u32>,
    pub remaining: u64,
    /// Seconds until the quota resets: the period's end for a monthly limit, until the
    /// oldest counted use leaves the window for a rate-limited feature. Rounded up.
    pub resets_in_secs: u64,
}

fn secs_rounded_up(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000)
}

impl Quota {
    /// The monthly quota behind a check or track verdict at `now_ms`; `None` for an
    /// unlimited metric. `remaining` is what the verdict says (after the use for a recorded
    /// track). A soft limit is a quota too: `remaining` stops at 0, though uses go on.
    pub fn of_metric(verdict: &Verdict, now_ms: i64) -> Option<Quota> {
        let limit = verdict.standing.limit?;
        Some(Quota {
            name: verdict.metric.clone(),
            limit,
            window_secs: None,
            remaining: verdict.standing.remaining.unwrap_or(0),
            resets_in_secs: secs_rounded_up(verdict.period.end_unix_ms() - now_ms),
        })
    }

    /// The window of a rate-limited feature; `None` for a boolean feature or one the plan
    /// does not grant.
    pub fn of_feature(verdict: &FeatureVerdict) -> Option<Quota> {
        if verdict.kind != FeatureKind::Rate {
            return None;
        }
        let (limit, window_secs) = (verdict.limit?, verdict.window_secs?);
        if limit == 0 {
            return None;
        }
        let resets_in_ms = verdict.full_window_frees_in_ms.or(verdict.oldest_use_leaves_in_ms).unwrap_or(0);
        Some(Quota {
            name: verdict.feature.clone(),
            limit: u64::from(limit),
            window_secs: Some(window_secs),
            remaining: u64::from(verdict.remaining_in_window.unwrap_or(0)),
            resets_in_secs: resets_in_ms.div_ceil(1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::Period;
    use crate::domain::plan::Limit;
    use crate::domain::usage::Standing;
    use crate::domain::user_id::UserId;

    fn verdict(limit: Limit, used: u64) -> Verdict {
        Verdict {
            allowed: true,
            user_id: UserId::parse("ann").unwrap(),
            plan: "trial".into(),
            metric: "prompts".into(),
            period: Period::new(2026, 11).unwrap(),
            amount: 1,
            bypass: false,
            standing: Standing::new(limit, used),
            account_id: None,
            user_used: used,
        }
    }

    #[test]
    fn a_monthly_limit_resets_at_the_end_of_its_utc_month() {
        let last_second = Period::new(2026, 12).unwrap().start_unix_ms() - 1_000;
        let quota = Quota::of_metric(&verdict(Limit::Hard(30), 12), last_second).unwrap();
        assert_eq!(
            quota,
            Quota { name: "prompts".into(), limit: 30, window_secs: None, remaining: 18, resets_in_secs: 1 }
        );
        let half_second_left = last_second + 500;
        assert_eq!(Quota::of_metric(&verdict(Limit::Hard(30), 12), half_second_left).unwrap().resets_in_secs, 1);
    }

    #[test]
    fn an_unlimited_metric_has_no_quota_and_a_soft_one_stops_at_zero() {
        assert_eq!(Quota::of_metric(&verdict(Limit::Unlimited, 12), 0), None);
        assert_eq!(Quota::of_metric(&verdict(Limit::Soft(10), 12), 0).unwrap().remaining, 0);
    }
}
