//! The forecast's backtest: a synthetic population of customers with known generating
//! processes over six calendar months (January to June 2025), each month's total forecast by
//! `tally::domain::forecast::forecast` (the code the server runs) from the start of days 5, 10
//! and 20, and scored against the month's real total. Prints markdown tables (median absolute
//! percentage error, the share of totals inside the 80% interval, the interval's median
//! width) and exits non-zero when a target of docs/FORECASTING.md is missed. Deterministic for
//! a seed. Not here: anything about storage or HTTP; the noise model and the processes are
//! documented in docs/FORECASTING.md.
//!
//! `cargo run --release -p tally-bench --bin forecast_backtest [-- --customers N --seed S]`

use anyhow::{Result, bail};
use clap::Parser;
use std::collections::BTreeMap;
use std::time::Instant;
use tally::domain::forecast::{History, forecast};

#[derive(Parser, Debug)]
struct Args {
    /// Customers in the population, shared equally among the six processes.
    #[arg(long, default_value_t = 12_000)]
    customers: usize,
    /// Seed of the population: the same seed gives the same tables.
    #[arg(long, default_value_t = 16)]
    seed: u64,
}

/// January to June 2025; the 1st of January 2025 was a Wednesday.
const MONTH_DAYS: [usize; 6] = [31, 28, 31, 30, 31, 30];
const FIRST_WEEKDAY: usize = 2; // Monday = 0
const FORECAST_DAYS: [usize; 3] = [5, 10, 20];
/// From this forecast day on, coverage must lie in COVERAGE_TARGET for every process (and the
/// error target holds); day 5 is reported, not judged.
const TARGET_FROM_DAY: usize = 10;
const COVERAGE_TARGET: (f64, f64) = (0.75, 0.85);
/// Median absolute percentage error below this for steady and weekly seasonal customers.
const ERROR_TARGET: f64 = 0.10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Process {
    Steady,
    Growing,
    Decaying,
    Bursty,
    WeeklySeasonal,
    NewMidMonth,
}

const PROCESSES: [Process; 6] = [
    Process::Steady,
    Process::Growing,
    Process::Decaying,
    Process::Bursty,
    Process::WeeklySeasonal,
    Process::NewMidMonth,
];

/// A row of the table: a process, with new customers split into the month they began (no
/// history, `first_day` set) and the months after (history shorter than the others').
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    Established(Process),
    NewFirstMonth,
    NewLaterMonths,
}

impl Row {
    fn label(self) -> &'static str {
        match self {
            Row::Established(Process::Steady) => "steady",
            Row::Established(Process::Growing) => "growing",
            Row::Established(Process::Decaying) => "decaying",
            Row::Established(Process::Bursty) => "bursty",
            Row::Established(Process::WeeklySeasonal) => "weekly seasonal",
            Row::Established(Process::NewMidMonth) | Row::NewFirstMonth => "new mid-month: first month",
            Row::NewLaterMonths => "new mid-month: later months",
        }
    }
}

/// SplitMix64: small, fast, and good enough for a simulation; one stream per customer so the
/// population does not depend on the order customers are drawn in.
struct Rng(u64);

impl Rng {
    fn for_customer(seed: u64, customer: usize) -> Rng {
        let mut rng = Rng(seed ^ (customer as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform integer in low..=high.
    fn integer(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let radius = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
        radius * (2.0 * std::f64::consts::PI * self.unit()).cos()
    }

    /// Gamma with shape >= 1 and scale 1 (Marsaglia and Tsang, 2000).
    fn gamma(&mut self, shape: f64) -> f64 {
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.unit();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Poisson: exact (Knuth's product of uniforms) below a mean of 50, the normal
    /// approximation above, where it is within a fraction of a percent of the real spread.
    fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 50.0 {
            let threshold = (-mean).exp();
            let mut count = 0;
            let mut product = self.unit();
            while product > threshold {
                count += 1;
                product *= self.unit();
            }
            return count;
        }
        (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64
    }
}

/// One customer's six months of daily usage, and the day it began (global day index).
struct Customer {
    process: Process,
    days: Vec<u64>,
    first_day: usize,
}

/// Draws a customer of `process`. Every process shares the base: a rate log-uniform between 2
/// and 20,000 a day that wanders (an AR(1) in its log: 0.97 day to day, 0.03 innovations, so
/// about 12% spread around its base) and negative binomial days (Poisson of a gamma with shape
/// 4 to 40: a daily coefficient of variation of 16% to 50% on top of Poisson noise).
fn draw(process: Process, rng: &mut Rng) -> Customer {
    let total_days: usize = MONTH_DAYS.iter().sum();
    let base = rng.uniform(2f64.ln(), 20_000f64.ln()).exp();
    let shape = rng.uniform(4.0, 40.0);
    let mut log_level = rng.normal() * 0.03 / (1.0 - 0.97f64 * 0.97).sqrt();
    // Per process: growth per day, burst odds, weekday factors, start day.
    let days_per_month = 30.44;
    let growth = match process {
        Process::Growing => (1.0 + rng.uniform(0.05, 0.30)).ln() / days_per_month,
        Process::Decaying => (1.0 - rng.uniform(0.05, 0.30)).ln() / days_per_month,
        _ => 0.0,
    };
    let burst_odds = if process == Process::Bursty { rng.uniform(0.02, 0.06) } else { 0.0 };
    let mut weekday = [1.0; 7];
    if process == Process::WeeklySeasonal {
        let weekend = rng.uniform(0.1, 0.6);
        for (index, factor) in weekday.iter_mut().enumerate() {
            *factor = if index >= 5 { weekend } else { rng.uniform(0.9, 1.2) };
        }
        let mean = weekday.iter().sum::<f64>() / 7.0;
        weekday = weekday.map(|factor| factor / mean);
    }
    let first_day = if process == Process::NewMidMonth {
        let month = rng.integer(0, MONTH_DAYS.len() - 1);
        MONTH_DAYS[..month].iter().sum::<usize>() + rng.integer(2, 28) - 1
    } else {
        0
    };
    let (mut burst_days, mut burst_size) = (0, 1.0);
    let mut days = Vec::with_capacity(total_days);
    for day in 0..total_days {
        log_level = 0.97 * log_level + 0.03 * rng.normal();
        if burst_days == 0 && rng.unit() < burst_odds {
            burst_days = rng.integer(1, 4);
            burst_size = rng.uniform(2.0, 8.0);
        }
        let burst = if burst_days > 0 {
            burst_days -= 1;
            burst_size
        } else {
            1.0
        };
        let mean = base * (log_level + growth * day as f64).exp() * burst * weekday[(FIRST_WEEKDAY + day) % 7];
        let noisy = mean * rng.gamma(shape) / shape;
        days.push(if day < first_day { 0 } else { rng.poisson(noisy) });
    }
    Customer { process, days, first_day }
}

#[derive(Default)]
struct Scores {
    errors: Vec<f64>,
    widths: Vec<f64>,
    inside: usize,
    below: usize,
    forecasts: usize,
    zero_totals: usize,
}

impl Scores {
    fn add(&mut self, truth: u64, low: u64, projected: u64, high: u64) {
        self.forecasts += 1;
        if (low..=high).contains(&truth) {
            self.inside += 1;
        } else if truth < low {
            self.below += 1;
        }
        if truth == 0 {
            self.zero_totals += 1;
        } else {
            self.errors.push((projected as f64 - truth as f64).abs() / truth as f64);
            self.widths.push((high - low) as f64 / truth as f64);
        }
    }

    fn coverage(&self) -> f64 {
        self.inside as f64 / self.forecasts.max(1) as f64
    }

    /// The shares of totals below the interval and above it.
    fn misses(&self) -> (f64, f64) {
        let forecasts = self.forecasts.max(1) as f64;
        let above = self.forecasts - self.inside - self.below;
        (self.below as f64 / forecasts, above as f64 / forecasts)
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let month_starts: Vec<usize> =
        MONTH_DAYS.iter().scan(0, |start, &days| Some(std::mem::replace(start, *start + days))).collect();
    let mut by_row: BTreeMap<(Row, usize), Scores> = BTreeMap::new();
    let mut by_history: BTreeMap<(usize, usize), Scores> = BTreeMap::new();
    let mut skipped_not_begun = 0;
    for index in 0..args.customers {
        let mut rng = Rng::for_customer(args.seed, index);
        let customer = draw(PROCESSES[index % PROCESSES.len()], &mut rng);
        for (month, &days_in_month) in MONTH_DAYS.iter().enumerate() {
            let start = month_starts[month];
            let end = start + days_in_month;
            let (row, history_months) = if customer.process == Process::NewMidMonth {
                if customer.first_day >= end {
                    continue;
                }
                if customer.first_day >= start {
                    (Row::NewFirstMonth, 0)
                } else {
                    (
                        Row::NewLaterMonths,
                        month - month_starts.iter().rposition(|&s| s <= customer.first_day).unwrap_or(0),
                    )
                }
            } else if month == 0 {
                // Established customers are scored once they have a month of history.
                continue;
            } else {
                (Row::Established(customer.process), month)
            };
            // Previous months, most recent first; the oldest starts on the day the customer began.
            let previous: Vec<Vec<u64>> = (month - history_months..month)
                .rev()
                .map(|earlier| {
                    let from = month_starts[earlier].max(customer.first_day);
                    customer.days[from..month_starts[earlier] + MONTH_DAYS[earlier]].to_vec()
                })
                .collect();
            let first_day = (row == Row::NewFirstMonth).then(|| (customer.first_day - start + 1) as u32);
            let truth: u64 = customer.days[start..end].iter().sum();
            for &day in &FORECAST_DAYS {
                if let Some(first_day) = first_day
                    && first_day as usize >= day
                {
                    // Begun today or later: not a single complete day to forecast from.
                    skipped_not_begun += 1;
                    continue;
                }
                // At the very start of `day`: the days before it, and today with nothing yet.
                let mut current = customer.days[start..start + day - 1].to_vec();
                current.push(0);
                let history = History {
                    days_in_period: days_in_month as u32,
                    current: &current,
                    today_fraction: 0.0,
                    previous: &previous,
                    first_day,
                };
                let forecast = forecast(&history);
                by_row.entry((row, day)).or_default().add(truth, forecast.low, forecast.projected, forecast.high);
                if matches!(row, Row::Established(_)) {
                    by_history.entry((history_months, day)).or_default().add(
                        truth,
                        forecast.low,
                        forecast.projected,
                        forecast.high,
                    );
                }
            }
        }
    }
    let elapsed = started.elapsed();

    println!(
        "Backtest of `tally::domain::forecast`: {} customers, seed {}, {:.1} s",
        args.customers,
        args.seed,
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "| process | day | forecasts | median abs. % error | inside 80% interval | below / above it | median interval width |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut missed = Vec::new();
    for ((row, day), scores) in &mut by_row {
        let error = median(&mut scores.errors);
        let width = median(&mut scores.widths);
        let coverage = scores.coverage();
        let (below, above) = scores.misses();
        println!(
            "| {} | {} | {} | {:.1}% | {:.1}% | {:.1}% / {:.1}% | {:.1}% |",
            row.label(),
            day,
            scores.forecasts,
            error * 100.0,
            coverage * 100.0,
            below * 100.0,
            above * 100.0,
            width * 100.0
        );
        if *day >= TARGET_FROM_DAY && !(COVERAGE_TARGET.0..=COVERAGE_TARGET.1).contains(&coverage) {
            missed.push(format!("{} from day {day}: coverage {:.1}%", row.label(), coverage * 100.0));
        }
        let error_targeted =
            *day >= TARGET_FROM_DAY && matches!(row, Row::Established(Process::Steady | Process::WeeklySeasonal));
        if error_targeted && (error.is_nan() || error >= ERROR_TARGET) {
            missed.push(format!("{} from day {day}: median error {:.1}%", row.label(), error * 100.0));
        }
    }
    println!();
    println!("Established customers (all processes but new) by months of history:");
    println!();
    println!("| months of history | day | forecasts | median abs. % error | inside 80% interval |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for ((months, day), scores) in &mut by_history {
        let error = median(&mut scores.errors);
        println!(
            "| {months} | {day} | {} | {:.1}% | {:.1}% |",
            scores.forecasts,
            error * 100.0,
            scores.coverage() * 100.0
        );
    }
    let zero_totals: usize = by_row.values().map(|scores| scores.zero_totals).sum();
    println!();
    println!(
        "Not forecast: {skipped_not_begun} (new customer, month and day) triples where the customer begins on the \
         forecast day or later. Months with a total of 0 (left out of the error, kept in coverage): {zero_totals}."
    );
    if !missed.is_empty() {
        bail!("targets missed:\n{}", missed.join("\n"));
    }
    println!(
        "Targets met from day {TARGET_FROM_DAY} on: coverage in [75%, 85%] for every process, median error under 10% \
         for steady and weekly seasonal."
    );
    Ok(())
}
