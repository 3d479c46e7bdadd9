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
//!    (up to) eight whole weeks, shrunk toward 1 by the share of its spread that sampling noise
//!    explains (empirical Bayes): a customer with no weekly rhythm gets factors near 1.
//! 2. **Spikes.** A weighted line through the last 84 weekday-adjusted days; days more than two
//!    robust spreads (1.48 MAD, at least a Poisson one) above it are spikes. The rate and the
//!    trend see them cut to that bound, so last week's burst passes neither for a higher rate
//!    nor for growth; their excess comes back as an average per day over the 84 days.
//! 3. **Rate and trend.** The rate: a weighted mean of the last 28 days (weights halving every
//!    14 days back, times the weekday factor, since a quiet day says less), plus the spikes'
//!    average. The trend: the slope of the 84-day line (weights halving every 42 days), from
//!    two weeks of data on, shrunk toward zero by its standard error (`b * b² / (b² + se²)`)
//!    and extrapolated geometrically. A remaining day is expected to use the rate on that day
//!    times its weekday factor; their sum over the rest of the month is the raw projection.
//! 4. **A variance model** for the log error of a sum over `h` days: the daily noise (residual
//!    variance on the 84 days, spikes included, shrunk toward Poisson plus 5% overdispersion
//!    for the first days) over the span and over the fitted days, times how much neighbouring
//!    days err together (7 x the variance of weekly means over the daily variance); the
//!    slope's uncertainty; and a random walk of the rate ([`DRIFT_PER_DAY`]). Its 80% bounds
//!    use Student's t with the degrees of freedom a variance estimate from that many days of
//!    that kurtosis has (bursty days make the variance itself uncertain).
//! 5. **Calibration on the customer's own errors.** Steps 1 to 4 are rerun as they would have
//!    run at every other day of the customer's history (up to a year), each predicting the next
//!    `min(h, 14)` days, and each error `ln((actual + 1) / (predicted + 1))` is divided by the
//!    spread the model expected then. Their median corrects the projection's bias; the root
//!    mean square of those below and above it scale each side of the interval (a two-piece
//!    normal). Both are blended with the model's own (0 and the t bound) by how many
//!    independent spans the overlapping errors amount to, against six. A customer new this
//!    month has no errors to rerun: the variance model alone gives its interval.
//!
//! Nothing here knows what kind of customer it is looking at: steady, growing, bursty and
//! seasonal customers all go through the same steps. The constants are documented where they
//! are declared; they were chosen once for all customers, against the synthetic population of
//! `bench/src/bin/forecast_backtest.rs` (docs/FORECASTING.md says which ones a real
//! deployment should re-measure).

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
    /// Which steps had the data to run: "none" (no usage to learn from), "daily-rate" (under two
    /// weeks of data: a flat rate), "rate-trend" (a rate and its trend), "rate-trend-weekday"
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
/// Days the rate is averaged over: four whole weeks, so the weekday profile's errors cancel,
/// and short enough to follow a drifting rate.
const FIT_DAYS: usize = 28;
/// The rate's weights halve every this many days back.
const HALF_LIFE_DAYS: f64 = 14.0;
/// Days the trend, the spikes and the noise are measured on: long enough that a rate
/// wandering for a few weeks does not pass for growth, and that rare spikes are seen.
const TREND_DAYS: usize = 84;
/// The trend fit's weights halve every this many days back.
const TREND_HALF_LIFE_DAYS: f64 = 42.0;
/// Fewer days than this: no trend, a flat rate (a slope from fewer is noise).
const MIN_TREND_DAYS: usize = 14;
/// Fewer days than this: no weekday profile (each weekday needs three samples).
const MIN_WEEKDAY_DAYS: usize = 21;
/// The weekday profile looks back this many whole weeks at most.
const WEEKDAY_WEEKS: usize = 8;
/// How far back the method is rerun on the customer's history to measure its errors: all of
/// it, up to a year (rare events need every span there is).
const BACKTEST_DAYS: usize = 365;
/// The reruns start every this many days, back from the latest: neighbouring origins share
/// almost all their data and their span, so every other one halves the cost for little loss.
const ORIGIN_STEP_DAYS: usize = 2;
/// The reruns predict spans of at most this many days: shorter spans than the month's rest
/// give more independent errors, and the variance model scales them to the span.
const ERROR_SPAN_DAYS: usize = 14;
/// A rerun needs this many days of data before its origin.
const MIN_BACKTEST_DATA: usize = 7;
/// Variance per day of a random walk in the log of the rate: how fast a rate wanders beyond
/// what the trend captures (0.001 a day is about 17% standard deviation over a month). The
/// variance model's one assumption about customers in general; the customer's own errors
/// rescale it as soon as it has history.
const DRIFT_PER_DAY: f64 = 0.001;
/// Relative variance of a day's usage beyond Poisson noise assumed before the customer's own
/// days say otherwise (a daily coefficient of variation of about 22%). A population prior:
/// it matters for customers with under a few weeks of data.
const OVERDISPERSION: f64 = 0.05;
/// Fewer independent days than this say too little about the tails: taken as normal ones.
const MIN_KURTOSIS_DAYS: f64 = 14.0;
/// Weight, in days, of that assumption against the customer's own daily noise.
const NOISE_PRIOR_DAYS: f64 = 10.0;
/// Weight, in independent spans, of the variance model's bounds against the customer's own
/// standardized errors.
const PRIOR_SPANS: f64 = 6.0;
/// A day more than this many robust spreads above the long line is a spike.
const SPIKE_SPREADS: f64 = 2.0;
/// Weight, in weeks, of independent days against the customer's own clustering of errors.
const CLUSTERING_PRIOR_WEEKS: f64 = 1.0;
/// Clustering is not taken beyond this (7: a week's days all err as one).
const MAX_CLUSTERING: f64 = 7.0;
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
    let error_span = (span.ceil() as usize).min(ERROR_SPAN_DAYS);
    let errors = standardized_errors(&days, error_span);
    let (z_low, z_mid, z_high) = calibrated_quantiles(&errors, error_span as f64, student_t_90(fit.noise_df));
    let remaining = |z: f64| ((raw + CONTINUITY) * (z * spread).exp() - CONTINUITY).max(0.0);
    let (low_rest, mid_rest, high_rest) = (remaining(z_low), remaining(z_mid), remaining(z_high));
    let total = |rest: f64| used.saturating_add(rest.round() as u64);
    let projected = total(mid_rest);
    // The path to the projection, in whole units, so that it reaches `projected` exactly.
    let rest = (projected - used) as f64;
    let ahead: Vec<f64> = if raw > 0.0 {
        expected.iter().map(|amount| amount * rest / raw).collect()
    } else {
        // A rate of zero with errors that say usage comes anyway: spread it evenly.
        span_days.iter().map(|weight| weight * rest / span).collect()
    };
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
        None => history.previous.iter().rev().flatten().chain(current).map(|&day| day as f64).collect(),
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
    /// Relative variance of one day's weekday-adjusted usage around the long line, spikes
    /// included, times how much neighbouring days err together.
    daily_var: f64,
    /// How many independent days the weighted fit amounts to.
    effective_days: f64,
    /// Degrees of freedom of the noise's estimate: fewer with fewer days or heavier tails.
    noise_df: f64,
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
            noise_df: NOISE_PRIOR_DAYS,
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
    let adjusted = |position: usize| days[position] / weekday[position % 7];
    let noisy = Line::through(days.len(), &weekday, TREND_DAYS, TREND_HALF_LIFE_DAYS, adjusted);
    // Spikes: days further above the long line than SPIKE_SPREADS robust spreads (or Poisson
    // ones, for small counts). They are cut to that bound for the rate and the trend, so a
    // burst last week does not pass for a higher rate or a trend; their excess comes back as
    // an average per day over the long window, so the projection still counts on spikes as
    // often as they came.
    let trend_first = days.len().saturating_sub(TREND_DAYS);
    let mut buffer = [0.0f64; TREND_DAYS];
    let deviations = &mut buffer[..days.len() - trend_first];
    for (deviation, position) in deviations.iter_mut().zip(trend_first..) {
        *deviation = (adjusted(position) - noisy.at(position)).abs();
    }
    let middle = deviations.len() / 2;
    let median_deviation =
        if deviations.is_empty() { 0.0 } else { *deviations.select_nth_unstable_by(middle, f64::total_cmp).1 };
    let robust_spread = 1.4826 * median_deviation;
    let bound = |position: usize| noisy.at(position) + SPIKE_SPREADS * robust_spread.max(noisy.mean.max(1.0).sqrt());
    let capped = |position: usize| adjusted(position).min(bound(position));
    let decay = 0.5f64.powf(1.0 / TREND_HALF_LIFE_DAYS);
    let (mut excess, mut excess_weight, mut age_weight) = (0.0, 0.0, 1.0);
    for position in (trend_first..days.len()).rev() {
        let weight = weekday[position % 7] * age_weight;
        excess += weight * (adjusted(position) - capped(position));
        excess_weight += weight;
        age_weight *= decay;
    }
    let spike_rate = if excess_weight > 0.0 { excess / excess_weight } else { 0.0 };
    let level = Line::through(days.len(), &weekday, FIT_DAYS, HALF_LIFE_DAYS, capped);
    let trend = Line::through(days.len(), &weekday, TREND_DAYS, TREND_HALF_LIFE_DAYS, capped);
    let with_trend = trend.days >= MIN_TREND_DAYS;
    let (slope, slope_var) = if with_trend && trend.slope_var.is_finite() {
        // Shrink toward zero as a normal prior with the slope's own size would (empirical
        // Bayes): a slope within its noise is mostly dropped, a clear one mostly kept.
        let (slope, noise) = (trend.slope, trend.slope_var);
        let keep = if slope * slope + noise > 0.0 { slope * slope / (slope * slope + noise) } else { 0.0 };
        (slope * keep, noise * keep)
    } else {
        (0.0, 0.0)
    };
    let rate = (level.mean + spike_rate).max(0.0);
    let (growth, growth_var) = if trend.mean > 0.0 {
        ((slope / trend.mean).clamp(-MAX_GROWTH, MAX_GROWTH), slope_var / (trend.mean * trend.mean))
    } else {
        (0.0, 0.0)
    };
    // The noise is measured on the long window with its spikes: rare bursts are part of it.
    let observed_var = if noisy.mean > 0.0 { noisy.residual_var / (noisy.mean * noisy.mean) } else { 0.0 };
    // Before the fit has seen many days, its noise leans on Poisson plus some overdispersion.
    let prior_var = 1.0 / rate.max(1.0 / FIT_DAYS as f64) + OVERDISPERSION;
    let observed_days = (noisy.effective_days - 2.0).max(0.0);
    let daily_var = (observed_days * observed_var + NOISE_PRIOR_DAYS * prior_var) / (observed_days + NOISE_PRIOR_DAYS);
    let weeks = noisy.weeks as f64;
    let clustering = ((weeks * noisy.clustering + CLUSTERING_PRIOR_WEEKS) / (weeks + CLUSTERING_PRIOR_WEEKS))
        .clamp(1.0, MAX_CLUSTERING);
    let daily_var = daily_var * clustering;
    // A variance estimated from n days of a distribution with kurtosis K is worth 2n/(K-1)
    // degrees of freedom (2n/2 for a normal one): bursts make it uncertain, and the interval
    // then uses Student's t rather than the normal.
    let kurtosis = if observed_days >= MIN_KURTOSIS_DAYS { noisy.kurtosis } else { 3.0 };
    let noise_df = 2.0 * (observed_days + NOISE_PRIOR_DAYS) / (kurtosis - 1.0).max(2.0);
    let method = match (with_trend, days.len() >= MIN_WEEKDAY_DAYS) {
        (false, _) => "daily-rate",
        (true, false) => "rate-trend",
        (true, true) => "rate-trend-weekday",
    };
    Fit {
        rate,
        centre: level.centre,
        growth,
        growth_var,
        weekday,
        daily_var,
        effective_days: level.effective_days,
        noise_df,
        method,
    }
}

/// A weighted least-squares line through the weekday-adjusted usage of the last `window` days,
/// weights halving every `half_life` days back.
struct Line {
    /// Days it went through.
    days: usize,
    /// Weighted centre (a timeline position) and the weighted mean there.
    centre: f64,
    mean: f64,
    slope: f64,
    /// The slope's sampling variance (infinite with fewer than three days).
    slope_var: f64,
    /// Variance of a weekday-adjusted day around the line.
    residual_var: f64,
    /// How many independent days the weighted days amount to.
    effective_days: f64,
    /// How much more a week's residuals vary than seven independent days' would (7 times
    /// the variance of weekly means over the variance of days), and over how many whole weeks.
    clustering: f64,
    weeks: usize,
    /// The residuals' kurtosis (3 for normal ones).
    kurtosis: f64,
}

impl Line {
    /// The line's value at a timeline position.
    fn at(&self, position: usize) -> f64 {
        self.mean + self.slope * (position as f64 - self.centre)
    }

    /// The line through `value(position)` (weekday-adjusted usage) of the `window` positions
    /// before `end`.
    fn through(end: usize, weekday: &[f64; 7], window: usize, half_life: f64, value: impl Fn(usize) -> f64) -> Line {
        let first = end.saturating_sub(window);
        let decay = 0.5f64.powf(1.0 / half_life);
        // Each day is also weighted by its weekday factor: a day's variance grows with its
        // expected usage, so a quiet weekday says little about the rate (an idle one nothing).
        // On the stack: this runs for every day of history at every forecast.
        let mut buffer = [(0.0, 0.0, 0.0); TREND_DAYS];
        let points = &mut buffer[..(end - first).min(TREND_DAYS)];
        let mut age_weight = 1.0;
        for (point, position) in points.iter_mut().zip((first..end).rev()) {
            *point = (position as f64, value(position), weekday[position % 7] * age_weight);
            age_weight *= decay;
        }
        let points = &*points;
        let weight_sum: f64 = points.iter().map(|&(_, _, weight)| weight).sum();
        let weight_sq_sum: f64 = points.iter().map(|&(_, _, weight)| weight * weight).sum();
        let effective_days = weight_sum * weight_sum / weight_sq_sum;
        let centre = points.iter().map(|&(t, _, weight)| weight * t).sum::<f64>() / weight_sum;
        let mean = points.iter().map(|&(_, x, weight)| weight * x).sum::<f64>() / weight_sum;
        let sxx: f64 = points.iter().map(|&(t, _, weight)| weight * (t - centre).powi(2)).sum();
        let sxy: f64 = points.iter().map(|&(t, x, weight)| weight * (t - centre) * (x - mean)).sum();
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let residual_sq: f64 =
            points.iter().map(|&(t, x, weight)| weight * (x - mean - slope * (t - centre)).powi(2)).sum::<f64>()
                / weight_sum;
        let residual_var = residual_sq * effective_days / (effective_days - 2.0).max(1.0);
        let slope_var = if points.len() >= 3 && sxx > 0.0 {
            let sandwich: f64 = points.iter().map(|&(t, _, weight)| (weight * (t - centre)).powi(2)).sum();
            residual_var * sandwich / (sxx * sxx)
        } else {
            f64::INFINITY
        };
        // Bursts that last days, or a rate that wanders, make neighbouring days err together:
        // compare the spread of whole weeks (the first points are the latest days) with days'.
        let weeks = points.len() / 7;
        let residual = |&(t, x, _): &(f64, f64, f64)| x - mean - slope * (t - centre);
        let factor_of = |&(t, _, _): &(f64, f64, f64)| weekday[t as usize % 7];
        let mut day_var = 0.0;
        let mut week_var = 0.0;
        for week in points[..weeks * 7].chunks(7) {
            let factor_sum: f64 = week.iter().map(factor_of).sum();
            day_var += week.iter().map(|point| factor_of(point) * residual(point).powi(2)).sum::<f64>() / factor_sum;
            week_var += (week.iter().map(|point| factor_of(point) * residual(point)).sum::<f64>() / factor_sum).powi(2);
        }
        let clustering = if weeks > 0 && day_var > 0.0 { 7.0 * week_var / day_var } else { 1.0 };
        let fourth: f64 = points.iter().map(|point| point.2 * residual(point).powi(4)).sum::<f64>() / weight_sum;
        let kurtosis = if residual_sq > 0.0 { fourth / (residual_sq * residual_sq) } else { 3.0 };
        Line {
            days: points.len(),
            centre,
            mean,
            slope,
            slope_var,
            residual_var,
            effective_days,
            clustering,
            weeks,
            kurtosis,
        }
    }
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
        let values = || days[first..].iter().step_by(7).map(|&day| day / mean);
        let count = values().count() as f64;
        let slot_mean = values().sum::<f64>() / count;
        let sample_var = values().map(|value| (value - slot_mean).powi(2)).sum::<f64>() / (count - 1.0);
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

/// The method's own errors on the customer's history: for every `ORIGIN_STEP_DAYS`th origin in
/// the last `BACKTEST_DAYS` days, the fit on the days before it predicts the next `span` days (or at
/// least half of that where the history ends sooner), and the log error is divided by the
/// spread the variance model expected.
fn standardized_errors(days: &[f64], span: usize) -> Vec<f64> {
    let span = span.max(1);
    let shortest = span.div_ceil(2);
    let first = MIN_BACKTEST_DATA.max(days.len().saturating_sub(BACKTEST_DAYS));
    let last = days.len().saturating_sub(shortest);
    let mut errors = Vec::new();
    for origin in (first..=last).rev().step_by(ORIGIN_STEP_DAYS) {
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

/// The interval's standardized bounds and centre from the customer's standardized errors: a
/// two-piece normal around their median, each side's scale the root mean square of the errors
/// on that side (a few large errors widen it more than they would move a 10% or 90%
/// quantile, which a handful of overlapping spans estimates too narrow). Each scale and the
/// median are blended with the standard normal's (1 and 0) by how many independent spans of
/// `span` days the overlapping errors amount to.
fn calibrated_quantiles(errors: &[f64], span: f64, prior_z: f64) -> (f64, f64, f64) {
    if errors.is_empty() {
        return (-prior_z, 0.0, prior_z);
    }
    let mut sorted = errors.to_vec();
    sorted.sort_by(f64::total_cmp);
    let spans = (sorted.len() * ORIGIN_STEP_DAYS) as f64 / span.max(1.0);
    let own = spans / (spans + PRIOR_SPANS);
    let median = empirical_quantile(&sorted, 0.5);
    let side_scale = |side: &[f64]| {
        if side.is_empty() {
            return prior_z;
        }
        let mean_square = side.iter().map(|error| (error - median).powi(2)).sum::<f64>() / side.len() as f64;
        own * mean_square.sqrt() * Z_80 + (1.0 - own) * prior_z
    };
    let split = sorted.partition_point(|&error| error < median);
    let (below, above) = sorted.split_at(split);
    let centre = own * median;
    (centre - side_scale(below), centre, centre + side_scale(above))
}

/// The 90% quantile of Student's t with `df` degrees of freedom (Cornish-Fisher expansion
/// around the normal's; within 3% of the exact value from one degree of freedom up).
fn student_t_90(df: f64) -> f64 {
    let df = df.max(1.0);
    let z = Z_80;
    let (z3, z5, z7, z9) = (z.powi(3), z.powi(5), z.powi(7), z.powi(9));
    let terms = [
        (z3 + z) / 4.0,
        (5.0 * z5 + 16.0 * z3 + 3.0 * z) / 96.0,
        (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / 384.0,
        (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / 92_160.0,
    ];
    z + terms.iter().enumerate().map(|(power, term)| term / df.powi(power as i32 + 1)).sum::<f64>()
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
        let history = History {
            days_in_period: 30,
            current: &current,
            today_fraction: 0.0,
            previous: &previous,
            first_day: None,
        };
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
        let previous: Vec<Vec<u64>> =
            (0..3).map(|month| (0..30).map(|day| noisy(month * 30 + day)).collect()).collect();
        let month: Vec<u64> = (0..31).map(|day| noisy(90 + day)).collect();
        let current = at_start_of(10, &month);
        let history = History {
            days_in_period: 31,
            current: &current,
            today_fraction: 0.0,
            previous: &previous,
            first_day: None,
        };
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
        let history = History {
            days_in_period: 30,
            current: &current,
            today_fraction: 0.5,
            previous: &previous,
            first_day: None,
        };
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
        let history = History {
            days_in_period: 30,
            current: &current,
            today_fraction: 0.0,
            previous: &previous,
            first_day: None,
        };
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
        let history = History {
            days_in_period: 30,
            current: &current,
            today_fraction: 0.0,
            previous: &previous,
            first_day: None,
        };
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
        let history = History {
            days_in_period: 30,
            current: &current,
            today_fraction: 0.5,
            previous: &previous,
            first_day: None,
        };
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
