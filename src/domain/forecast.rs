//! Usage forecasts: from one customer's daily usage of one metric, the total projected at the
//! end of the current UTC month with an 80% interval, and the day a limit would be reached.
//! Pure arithmetic on slices: the caller reads the usage, the clock and the limit, and stores
//! and serves the answer. docs/FORECASTING.md has the backtest that judges the method.
//!
//! # The method
//!
//! The customer's days, oldest month first, make one timeline; position modulo 7 is the
//! weekday, so the previous months must be contiguous (see [`History::previous`]).
//!
//! 1. **Weekday profile.** With three weeks of data or more, a factor per weekday from the last
//!    (up to) eight whole weeks, shrunk toward 1 by the share of its spread that the daily noise
//!    explains (empirical Bayes): a customer with no weekly rhythm gets factors near 1.
//! 2. **Rate and trend.** A weighted least-squares line through the last 28 weekday-adjusted
//!    days, weights halving every 14 days back and scaled by the weekday factor. Its slope is shrunk toward zero by its own
//!    standard error (`b * b² / (b² + se²)`), read as a relative daily growth and extrapolated
//!    geometrically. A remaining day is expected to use the rate on that day times its weekday
//!    factor; the sum over the rest of the month is the raw projection `P`.
//! 3. **Interval from the customer's own errors.** The same two steps are rerun as they would
//!    have run at each of the last 120 days of history, predicting the next `h` days (`h` the
//!    days left in this month; at least half of it where history is too short). Each error
//!    `ln((actual + 1) / (predicted + 1))` is divided by the spread a variance model expects
//!    for it: daily noise over the span and over the fitted days (the noise is the fit's own
//!    residual variance, shrunk toward Poisson plus 10% overdispersion over the first days),
//!    the slope's uncertainty, and a random-walk drift of the rate of [`DRIFT_PER_DAY`]. The
//!    10%, 50% and 90% quantiles of these standardized errors, blended with the normal's
//!    (-1.28, 0, 1.28) by how many independent spans they amount to, scale the model's spread
//!    now. The median corrects the projection's bias; the outer two give the 80% interval.
//!    With no history to rerun (a customer new this month) the interval is the variance
//!    model's alone, which is what it is there for.
//!
//! Nothing here knows what kind of customer it is looking at: steady, growing, bursty and
//! seasonal customers all go through the same steps. The constants are documented where they
//! are declared; they were chosen once, against the synthetic population of
//! `bench/src/bin/forecast_backtest.rs`, not per customer kind.

/// One customer's daily usage of one metric, as the forecast needs it.
#[derive(Clone, Copy, Debug)]
pub struct History<'a> {
    /// Days in the current month (28 to 31).
    pub days_in_period: u32,
    /// Daily usage of the current month so far: index 0 is day 1, the last element is today
    /// (a partial day, `today_fraction` of it elapsed). Empty only before the month starts.
    pub current: &'a [u64],
    /// How much of today has elapsed, from 0 to 1.
    pub today_fraction: f64,
    /// Earlier months' daily usage, the most recent month first; may be empty. Each month ends
    /// on that month's last day and has no gap before the next, so the weekdays line up: days
    /// without usage are zeros. The oldest month may be shorter, starting on the day the
    /// customer began. Ignored when `first_day` is set.
    pub previous: &'a [Vec<u64>],
    /// The 1-based day of the current month on which the customer began, when it began this
    /// month: the days before it are not counted as days without usage.
    pub first_day: Option<u32>,
}

/// The projection of one month's total. Always `used <= low <= projected <= high`.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    /// Usage so far this month, today's partial day included.
    pub used: u64,
    /// The projected total at the month's end (the median of the forecast's distribution).
    pub projected: u64,
    /// The 80% interval of the month's total: 10% and 90% quantiles.
    pub low: u64,
    pub high: u64,
    /// Which steps had the data to run: "none" (no usage to learn from), "daily-rate" (under a
    /// week of data: a flat rate), "rate-trend" (a rate and its trend), "rate-trend-weekday"
    /// (three weeks or more: with the weekday profile).
    pub method: &'static str,
    /// Days elapsed in the month when forecast (today's fraction included).
    elapsed: f64,
    /// The projected usage of the rest of today, then of each later day of the month, adding
    /// up to `projected - used`.
    ahead: Vec<f64>,
}

impl Forecast {
    /// When the projected usage reaches `limit`: days since the month's first instant
    /// (fractional, usage spread evenly over each day), so the caller adds it to the period's
    /// start to get an instant. The elapsed days when `used` already reaches it; None when the
    /// projection stays below it until the month ends.
    pub fn exhausted_at(&self, limit: u64) -> Option<f64> {
        if self.used >= limit {
            return Some(self.elapsed);
        }
        let mut total = self.used as f64;
        let mut day_start = self.elapsed;
        for (index, &amount) in self.ahead.iter().enumerate() {
            // The first slot is the rest of today, from `elapsed` to the end of today.
            let day_end = if index == 0 { self.elapsed.floor() + 1.0 } else { day_start + 1.0 };
            let needed = limit as f64 - total;
            if amount > 0.0 && amount >= needed {
                return Some(day_start + (day_end - day_start) * needed / amount);
            }
            total += amount;
            day_start = day_end;
        }
        None
    }
}

/// The standard normal's 90% quantile: an 80% central interval is ±`Z_80` standard deviations.
const Z_80: f64 = 1.281_551_565_545;
/// Days the rate and trend are fitted on: four whole weeks, so the weekday profile's errors
/// cancel, and short enough to follow a drifting rate.
const FIT_DAYS: usize = 28;
/// The fit's weights halve every this many days back.
const HALF_LIFE_DAYS: f64 = 14.0;
/// Fewer days than this: no trend, a flat rate.
const MIN_TREND_DAYS: usize = 7;
/// Fewer days than this: no weekday profile (each weekday needs three samples).
const MIN_WEEKDAY_DAYS: usize = 21;
/// The weekday profile looks back this many whole weeks at most.
const WEEKDAY_WEEKS: usize = 8;
/// How far back the method is rerun on the customer's history to measure its errors.
const BACKTEST_DAYS: usize = 120;
/// A rerun needs this many days of data before its origin.
const MIN_BACKTEST_DATA: usize = 7;
/// Variance per day of a random walk in the log of the rate: how fast a rate wanders beyond
/// what the trend captures (0.001 a day is about 17% standard deviation over a month). The
/// variance model's one assumption about customers in general; the customer's own errors
/// rescale it as soon as it has history.
const DRIFT_PER_DAY: f64 = 0.001;
/// Relative variance of a day's usage beyond Poisson noise assumed before the customer's own
/// days say otherwise (a daily coefficient of variation of about 32%).
const OVERDISPERSION: f64 = 0.1;
/// Weight, in days, of that assumption against the customer's own daily noise.
const NOISE_PRIOR_DAYS: f64 = 4.0;
/// Weight, in independent spans, of the normal's quantiles against the customer's own
/// standardized errors.
const PRIOR_SPANS: f64 = 3.0;
/// Growth or decay beyond 5% a day (4.4 times a month) is not extrapolated.
const MAX_GROWTH: f64 = 0.05;
/// Added to both sides of an error's ratio so that zero days have a finite logarithm.
const CONTINUITY: f64 = 1.0;

/// Projects the current month's total from `history`. Never fails: with nothing to learn from
/// it projects `used`.
pub fn forecast(history: &History) -> Forecast {
    let days_in_period = history.days_in_period.max(1) as usize;
    let current = &history.current[..history.current.len().min(days_in_period)];
    let used = current.iter().fold(0u64, |sum, &day| sum.saturating_add(day));
    let today_fraction = if history.today_fraction.is_finite() { history.today_fraction.clamp(0.0, 1.0) } else { 0.0 };
    let complete_days = current.len().saturating_sub(1);
    let elapsed = complete_days as f64 + if current.is_empty() { 0.0 } else { today_fraction };
    let days = timeline(history, complete_days);
    // The days still to come: the rest of today, then each later day of the month.
    let mut span_days = vec![1.0; days_in_period - complete_days];
    if !current.is_empty() {
        span_days[0] = 1.0 - today_fraction;
    }
    let span: f64 = span_days.iter().sum();
    let today = current.last().copied().unwrap_or(0);
    let unchanged = |method| Forecast {
        used,
        projected: used,
        low: used,
        high: used,
        method,
        elapsed,
        ahead: vec![0.0; span_days.len()],
    };
    if span <= 0.0 {
        return unchanged("none");
    }
    let fit = if days.iter().any(|&day| day > 0.0) {
        fit(&days)
    } else if days.is_empty() && today > 0 && today_fraction > 0.0 {
        // Nothing but part of today: its rate, with the noise and drift the variance model
        // assumes for one short sample.
        Fit::from_today(today as f64 / today_fraction, today_fraction)
    } else {
        return unchanged("none");
    };
    let origin = days.len();
    let expected: Vec<f64> =
        span_days.iter().enumerate().map(|(offset, &weight)| weight * fit.expected(origin + offset)).collect();
    let raw: f64 = expected.iter().sum();
    let spread = fit.log_sd(origin as f64 + (1.0 - span_days[0]), span);
    let errors = standardized_errors(&days, span.ceil() as usize);
    let (z_low, z_mid, z_high) = calibrated_quantiles(&errors, span.ceil());
    let remaining = |z: f64| ((raw + CONTINUITY) * (z * spread).exp() - CONTINUITY).max(0.0);
    let (low_rest, mid_rest, high_rest) = (remaining(z_low), remaining(z_mid), remaining(z_high));
    let scale = if raw > 0.0 { mid_rest / raw } else { 0.0 };
    let mut ahead: Vec<f64> = expected.iter().map(|amount| amount * scale).collect();
    if raw <= 0.0 && mid_rest > 0.0 {
        // A rate of zero with errors that say usage comes anyway: spread it evenly.
        ahead = span_days.iter().map(|weight| weight * mid_rest / span).collect();
    }
    let total = |rest: f64| used.saturating_add(rest.round() as u64);
    let projected = total(mid_rest);
    Forecast {
        used,
        projected,
        low: total(low_rest).min(projected),
        high: total(high_rest).max(projected),
        method: fit.method,
        elapsed,
        ahead,
    }
}

/// The complete days the forecast learns from, oldest first: the previous months (or none if
/// the customer began this month), then this month's days before today.
fn timeline(history: &History, complete_days: usize) -> Vec<f64> {
    let current = &history.current[..complete_days];
    match history.first_day {
        Some(first_day) => {
            let start = (first_day.max(1) as usize - 1).min(complete_days);
            current[start..].iter().map(|&day| day as f64).collect()
        }
        None => {
            history.previous.iter().rev().flatten().chain(current).map(|&day| day as f64).collect()
        }
    }
}

/// The rate, trend, weekday profile and noise fitted on the days before an origin.
#[derive(Debug)]
struct Fit {
    /// Weekday-adjusted daily usage at `centre`.
    rate: f64,
    /// The weighted centre of the fitted days, as a timeline position.
    centre: f64,
    /// Relative growth per day (negative: decay), after shrinkage.
    growth: f64,
    /// The variance left in that growth after shrinkage.
    growth_var: f64,
    /// Factor per weekday (timeline position modulo 7), averaging 1.
    weekday: [f64; 7],
    /// Relative variance of one day's weekday-adjusted usage around the fitted line.
    daily_var: f64,
    /// How many independent days the weighted fit amounts to.
    effective_days: f64,
    method: &'static str,
}

impl Fit {
    fn from_today(rate: f64, fraction: f64) -> Fit {
        Fit {
            rate,
            centre: -0.5,
            growth: 0.0,
            growth_var: 0.0,
            weekday: [1.0; 7],
            daily_var: 1.0 / rate.max(f64::MIN_POSITIVE) + OVERDISPERSION,
            effective_days: fraction,
            method: "daily-rate",
        }
    }

    /// Expected usage on the day at timeline position `day`.
    fn expected(&self, day: usize) -> f64 {
        self.rate * (self.growth * (day as f64 - self.centre)).exp() * self.weekday[day % 7]
    }

    /// The standard deviation the variance model expects for the log error of a sum over
    /// `span` days starting at timeline position `start`.
    fn log_sd(&self, start: f64, span: f64) -> f64 {
        let lag = (start - self.centre).max(0.0);
        let middle = lag + span / 2.0;
        let noise = self.daily_var * (1.0 / span.max(1.0) + 1.0 / self.effective_days.max(f64::MIN_POSITIVE));
        let drift = DRIFT_PER_DAY * (lag + span / 3.0);
        let trend = self.growth_var * middle * middle;
        (noise + drift + trend).sqrt()
    }
}

/// Fits the days before the origin (`days.len()`); `days` holds at least one day.
fn fit(days: &[f64]) -> Fit {
    let weekday = weekday_profile(days);
    let end = days.len();
    let start = end.saturating_sub(FIT_DAYS);
    let points: Vec<(f64, f64, f64)> = (start..end)
        .map(|position| {
            // Weighted least squares of the weekday-adjusted usage, each day weighted by its
            // weekday factor too: a day's variance grows with its expected usage, so a quiet
            // weekday says little about the rate (and an idle one nothing).
            let age = (end - 1 - position) as f64;
            let factor = weekday[position % 7];
            (position as f64, days[position] / factor, factor * 0.5f64.powf(age / HALF_LIFE_DAYS))
        })
        .collect();
    let weight_sum: f64 = points.iter().map(|&(_, _, weight)| weight).sum();
    let weight_sq_sum: f64 = points.iter().map(|&(_, _, weight)| weight * weight).sum();
    let effective_days = weight_sum * weight_sum / weight_sq_sum;
    let centre = points.iter().map(|&(t, _, weight)| weight * t).sum::<f64>() / weight_sum;
    let mean = points.iter().map(|&(_, x, weight)| weight * x).sum::<f64>() / weight_sum;
    let sxx: f64 = points.iter().map(|&(t, _, weight)| weight * (t - centre).powi(2)).sum();
    let sxy: f64 = points.iter().map(|&(t, x, weight)| weight * (t - centre) * (x - mean)).sum();
    let with_trend = points.len() >= MIN_TREND_DAYS && sxx > 0.0;
    let slope = if with_trend { sxy / sxx } else { 0.0 };
    let residual_sq: f64 =
        points.iter().map(|&(t, x, weight)| weight * (x - mean - slope * (t - centre)).powi(2)).sum::<f64>()
            / weight_sum;
    let parameters = if with_trend { 2.0 } else { 1.0 };
    let residual_var = residual_sq * effective_days / (effective_days - parameters).max(1.0);
    let (slope, slope_var) = if with_trend {
        let sandwich: f64 = points.iter().map(|&(t, _, weight)| (weight * (t - centre)).powi(2)).sum();
        let slope_var = residual_var * sandwich / (sxx * sxx);
        // Shrink toward zero as a normal prior with the slope's own size would (empirical Bayes).
        let keep = if slope * slope + slope_var > 0.0 { slope * slope / (slope * slope + slope_var) } else { 0.0 };
        (slope * keep, slope_var * keep)
    } else {
        (0.0, 0.0)
    };
    let rate = mean.max(0.0);
    let (growth, growth_var, observed_var) = if rate > 0.0 {
        ((slope / rate).clamp(-MAX_GROWTH, MAX_GROWTH), slope_var / (rate * rate), residual_var / (rate * rate))
    } else {
        (0.0, 0.0, 0.0)
    };
    // Before the fit has seen many days, its noise leans on Poisson plus some overdispersion.
    let prior_var = 1.0 / rate.max(1.0 / FIT_DAYS as f64) + OVERDISPERSION;
    let observed_days = (effective_days - parameters).max(0.0);
    let daily_var = (observed_days * observed_var + NOISE_PRIOR_DAYS * prior_var) / (observed_days + NOISE_PRIOR_DAYS);
    let method = match (with_trend, days.len() >= MIN_WEEKDAY_DAYS) {
        (false, _) => "daily-rate",
        (true, false) => "rate-trend",
        (true, true) => "rate-trend-weekday",
    };
    Fit { rate, centre, growth, growth_var, weekday, daily_var, effective_days, method }
}

/// A factor per weekday (timeline position modulo 7) from the last whole weeks, each shrunk
/// toward 1 by how much of the factors' spread their sampling noise explains.
fn weekday_profile(days: &[f64]) -> [f64; 7] {
    if days.len() < MIN_WEEKDAY_DAYS {
        return [1.0; 7];
    }
    let weeks = (days.len() / 7).min(WEEKDAY_WEEKS);
    let start = days.len() - weeks * 7;
    let mean = days[start..].iter().sum::<f64>() / (weeks * 7) as f64;
    if mean <= 0.0 {
        return [1.0; 7];
    }
    let mut raw = [0.0; 7];
    let mut noise = [0.0; 7];
    for (slot, (raw, noise)) in raw.iter_mut().zip(noise.iter_mut()).enumerate() {
        let first = start + (slot + 7 - start % 7) % 7;
        let values: Vec<f64> = days[first..].iter().step_by(7).map(|&day| day / mean).collect();
        let count = values.len() as f64;
        let slot_mean = values.iter().sum::<f64>() / count;
        let sample_var = values.iter().map(|value| (value - slot_mean).powi(2)).sum::<f64>() / (count - 1.0);
        *raw = slot_mean;
        *noise = sample_var / count;
    }
    let spread = raw.iter().map(|factor| (factor - 1.0).powi(2)).sum::<f64>() / 7.0;
    let between = (spread - noise.iter().sum::<f64>() / 7.0).max(0.0);
    let mut profile = [1.0; 7];
    for slot in 0..7 {
        let keep = if between + noise[slot] > 0.0 { between / (between + noise[slot]) } else { 1.0 };
        profile[slot] = (1.0 + keep * (raw[slot] - 1.0)).max(0.02);
    }
    let total: f64 = profile.iter().sum();
    profile.map(|factor| factor * 7.0 / total)
}

/// The method's own errors on the customer's history: for each origin in the last
/// `BACKTEST_DAYS` days, the fit on the days before it predicts the next `span` days (or at
/// least half of that where the history ends sooner), and the log error is divided by the
/// spread the variance model expected.
fn standardized_errors(days: &[f64], span: usize) -> Vec<f64> {
    let span = span.max(1);
    let shortest = span.div_ceil(2);
    let first = MIN_BACKTEST_DATA.max(days.len().saturating_sub(BACKTEST_DAYS));
    let last = days.len().saturating_sub(shortest);
    let mut errors = Vec::new();
    for origin in first..=last {
        if origin >= days.len() || !days[..origin].iter().any(|&day| day > 0.0) {
            continue;
        }
        let fit = fit(&days[..origin]);
        let length = span.min(days.len() - origin);
        let predicted: f64 = (origin..origin + length).map(|day| fit.expected(day)).sum();
        let actual: f64 = days[origin..origin + length].iter().sum();
        let spread = fit.log_sd(origin as f64, length as f64);
        if spread > 0.0 {
            errors.push(((actual + CONTINUITY) / (predicted + CONTINUITY)).ln() / spread);
        }
    }
    errors
}

/// The 10%, 50% and 90% quantiles of the standardized errors, blended with the standard
/// normal's by how many independent spans of `span` days the (overlapping) errors amount to.
fn calibrated_quantiles(errors: &[f64], span: f64) -> (f64, f64, f64) {
    if errors.is_empty() {
        return (-Z_80, 0.0, Z_80);
    }
    let mut sorted = errors.to_vec();
    sorted.sort_by(f64::total_cmp);
    let spans = sorted.len() as f64 / span.max(1.0);
    let own = spans / (spans + PRIOR_SPANS);
    let blend = |quantile: f64, normal: f64| own * empirical_quantile(&sorted, quantile) + (1.0 - own) * normal;
    (blend(0.1, -Z_80), blend(0.5, 0.0), blend(0.9, Z_80))
}

/// The `quantile` of `sorted` (ascending, not empty), interpolating between neighbours.
fn empirical_quantile(sorted: &[f64], quantile: f64) -> f64 {
    let position = quantile * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A month of `days` days observed up to the start of day `today` (today's usage 0).
    fn at_start_of(today: usize, month: &[u64]) -> Vec<u64> {
        let mut current = month[..today - 1].to_vec();
        current.push(0);
        current
    }

    #[test]
    fn a_steady_series_projects_its_rate_times_the_days() {
        let previous = vec![vec![100; 31], vec![100; 30]];
        let current = at_start_of(11, &[100; 30]);
        let history =
            History { days_in_period: 30, current: &current, today_fraction: 0.0, previous: &previous, first_day: None };
        let forecast = forecast(&history);
        assert_eq!(forecast.used, 1_000);
        assert!((2_990..=3_010).contains(&forecast.projected), "{forecast:?}");
        assert!(forecast.low <= forecast.projected && forecast.projected <= forecast.high);
        assert_eq!(forecast.method, "rate-trend-weekday");
    }

    #[test]
    fn a_noisy_series_gets_an_interval_around_its_projection() {
        // A rate near 50 with a fixed pattern of noise, and no weekly rhythm.
        let noisy = |day: usize| 50 + (day * 37 % 23) as u64 - 11;
        let previous: Vec<Vec<u64>> = (0..3).map(|month| (0..30).map(|day| noisy(month * 30 + day)).collect()).collect();
        let month: Vec<u64> = (0..31).map(|day| noisy(90 + day)).collect();
        let current = at_start_of(10, &month);
        let history =
            History { days_in_period: 31, current: &current, today_fraction: 0.0, previous: &previous, first_day: None };
        let forecast = forecast(&history);
        let used: u64 = current.iter().sum();
        assert_eq!(forecast.used, used);
        assert!(forecast.used < forecast.low, "{forecast:?}");
        assert!(forecast.low < forecast.projected && forecast.projected < forecast.high, "{forecast:?}");
        let rate_times_days = 50.0 * 31.0;
        assert!((forecast.projected as f64 / rate_times_days - 1.0).abs() < 0.05, "{forecast:?}");
    }

    #[test]
    fn a_zero_series_projects_what_was_used() {
        let previous = vec![vec![0; 31]];
        let current = vec![0, 0, 0, 0, 0];
        let history =
            History { days_in_period: 30, current: &current, today_fraction: 0.5, previous: &previous, first_day: None };
        let forecast = forecast(&history);
        assert_eq!((forecast.used, forecast.low, forecast.projected, forecast.high), (0, 0, 0, 0));
        assert_eq!(forecast.method, "none");
        assert_eq!(forecast.exhausted_at(1), None);
    }

    #[test]
    fn the_low_end_never_falls_below_what_was_used() {
        // A customer who stopped: a busy past, then nothing for the last ten days.
        let previous = vec![vec![1_000; 31]];
        let mut month = vec![1_000; 5];
        month.extend([0; 10]);
        let current = at_start_of(16, &month);
        let history =
            History { days_in_period: 30, current: &current, today_fraction: 0.0, previous: &previous, first_day: None };
        let forecast = forecast(&history);
        assert_eq!(forecast.used, 5_000);
        assert!(forecast.low >= forecast.used && forecast.low <= forecast.projected, "{forecast:?}");
        assert!(forecast.projected <= forecast.high);
    }

    #[test]
    fn weekday_rhythm_is_projected_onto_the_remaining_weekdays() {
        // Five busy days and two idle ones, every week; the month ends on two idle days.
        let week = [200, 200, 200, 200, 200, 0, 0];
        let days: Vec<u64> = (0..91).map(|day| week[day % 7]).collect();
        let previous = vec![days[31..61].to_vec(), days[..31].to_vec()];
        let current = at_start_of(24, &days[61..91]);
        let history =
            History { days_in_period: 30, current: &current, today_fraction: 0.0, previous: &previous, first_day: None };
        let forecast = forecast(&history);
        let truth: u64 = days[61..91].iter().sum();
        let error = (forecast.projected as f64 - truth as f64).abs() / truth as f64;
        assert!(error < 0.02, "truth {truth}, {forecast:?}");
    }

    #[test]
    fn a_customer_new_this_month_ignores_the_days_before_it_began() {
        let mut month = vec![0; 12];
        month.extend([30; 8]);
        let current = at_start_of(21, &month);
        let history =
            History { days_in_period: 31, current: &current, today_fraction: 0.0, previous: &[], first_day: Some(13) };
        let forecast = forecast(&history);
        // 8 days at 30, then 11 more: about 570, not the 390 that counting days 1-12 as idle gives.
        assert!((540..=600).contains(&forecast.projected), "{forecast:?}");
        assert!(forecast.low < forecast.projected && forecast.projected < forecast.high);
    }

    #[test]
    fn part_of_a_first_day_is_enough_for_a_wide_projection() {
        let current = vec![0, 0, 40];
        let history =
            History { days_in_period: 30, current: &current, today_fraction: 0.5, previous: &[], first_day: Some(3) };
        let forecast = forecast(&history);
        assert_eq!(forecast.method, "daily-rate");
        assert!(forecast.low >= 40 && forecast.high > 2 * forecast.low, "{forecast:?}");
    }

    #[test]
    fn exhaustion_is_the_fractional_day_the_projection_reaches_the_limit() {
        let previous = vec![vec![100; 31], vec![100; 30]];
        let current = vec![100, 100, 100, 100, 100, 50];
        let history =
            History { days_in_period: 30, current: &current, today_fraction: 0.5, previous: &previous, first_day: None };
        let forecast = forecast(&history);
        assert_eq!(forecast.used, 550);
        // 100 a day: today ends at 600, day 7 at 700, the 650th unit is mid-day 7 (6.5 days in).
        let day = forecast.exhausted_at(650).unwrap();
        assert!((day - 6.5).abs() < 0.01, "{day}");
        let day = forecast.exhausted_at(575).unwrap();
        assert!((day - 5.75).abs() < 0.01, "{day}");
        assert_eq!(forecast.exhausted_at(550), Some(5.5));
        assert_eq!(forecast.exhausted_at(100), Some(5.5));
        assert_eq!(forecast.exhausted_at(forecast.projected + 1), None);
        let end = forecast.exhausted_at(forecast.projected).unwrap();
        assert!((end - 30.0).abs() < 0.02, "{end}");
    }

    #[test]
    fn a_month_with_no_days_left_projects_what_was_used() {
        let current = vec![10; 30];
        let history =
            History { days_in_period: 30, current: &current, today_fraction: 1.0, previous: &[], first_day: None };
        let forecast = forecast(&history);
        assert_eq!((forecast.used, forecast.low, forecast.projected, forecast.high), (300, 300, 300, 300));
    }
}
