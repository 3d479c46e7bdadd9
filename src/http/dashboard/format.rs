//! How the dashboard writes numbers, sizes, money, dates and metric names for people. Pure
//! functions over plain values; no HTML is written here (the maud templates escape what they return).

use crate::domain::plan::Metric;
use chrono::DateTime;

/// `12725` as `12,725`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

const BYTE_UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
const COUNT_SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];

/// `value` divided by 1000 until it is below 1000 (as printed with `decimals` decimals):
/// the scaled value and how many times it was divided.
fn scaled(value: u64, decimals: usize) -> (f64, usize) {
    let below = if decimals == 0 { 999.5 } else { 999.95 };
    let mut scaled = value as f64;
    let mut steps = 0;
    while scaled >= below && steps < BYTE_UNITS.len() - 1 {
        scaled /= 1000.0;
        steps += 1;
    }
    (scaled, steps)
}

/// Two significant digits where a decimal is needed: `3.7`, `17`, `250`; never `3.0`.
fn short_number(value: f64) -> String {
    let text = if value >= 9.95 { format!("{value:.0}") } else { format!("{value:.1}") };
    text.strip_suffix(".0").map_or_else(|| text.clone(), str::to_owned)
}

/// How a metric's values read. Every number of a metric on the dashboard (cards, tables,
/// chart axes, bars, tooltips, messages) goes through one of these methods, so a value
/// reads the same way everywhere: bytes in decimal units with a space (`92.8 MB`), counts
/// with separators (`12,725`) or, where space is short, with a suffix (`13k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit<'a> {
    Bytes,
    /// A count of something: the config's unit word, such as `prompts`.
    Count(&'a str),
}

impl<'a> Unit<'a> {
    /// The unit of a metric as the config names it (`bytes` is the one unit with a scale).
    pub fn of(unit: &'a str) -> Unit<'a> {
        if unit == "bytes" { Unit::Bytes } else { Unit::Count(unit) }
    }

    /// The unit of the metric `name` among `metrics` (a count of nothing if it is not one).
    pub fn of_metric(metrics: &'a [Metric], name: &str) -> Unit<'a> {
        metrics.iter().find(|metric| metric.name == name).map_or(Unit::Count(""), |metric| Unit::of(&metric.unit))
    }

    /// A value for a card or a table cell: `92.8 MB`, `12,725`.
    pub fn value(self, value: u64) -> String {
        match self {
            Unit::Bytes if value < 1000 => format!("{value} B"),
            Unit::Bytes => {
                let (scaled, steps) = scaled(value, 1);
                format!("{scaled:.1} {}", BYTE_UNITS[steps])
            }
            Unit::Count(_) => thousands(value),
        }
    }

    /// The word after a count (`prompts`); nothing for bytes, whose value names its unit.
    pub fn word(self) -> &'a str {
        match self {
            Unit::Bytes => "",
            Unit::Count(word) => word,
        }
    }

    /// A value with its unit, for tooltips and sentences: `92.8 MB`, `12,725 prompts`.
    pub fn phrase(self, value: u64) -> String {
        match self {
            Unit::Count(word) if !word.is_empty() => format!("{} {word}", thousands(value)),
            _ => self.value(value),
        }
    }

    /// A short value for a chart axis: `2.5 GB`, `500 MB`, `20k`, `0`.
    pub fn short(self, value: u64) -> String {
        let (scaled, steps) = scaled(value, 0);
        match self {
            _ if value == 0 => "0".to_owned(),
            Unit::Bytes => format!("{} {}", short_number(scaled), BYTE_UNITS[steps]),
            Unit::Count(_) if steps == 0 => value.to_string(),
            Unit::Count(_) => format!("{}{}", short_number(scaled), COUNT_SUFFIXES[steps]),
        }
    }

    /// A label over a bar of a chart whose axis ends at `axis_max`, at most 4 characters.
    /// Bytes are a bare number in the axis's unit (`3.7` under an axis of `5 GB`): a unit on
    /// every bar does not fit. Counts are as on the axis (`17k`, `420`).
    pub fn bar(self, value: u64, axis_max: u64) -> String {
        match self {
            Unit::Bytes if value == 0 => "0".to_owned(),
            Unit::Bytes => {
                let (_, steps) = scaled(axis_max, 0);
                let number = short_number(value as f64 / 1000f64.powi(steps as i32));
                if number == "0" { "<0.1".to_owned() } else { number }
            }
            Unit::Count(_) => self.short(value),
        }
    }
}

/// `e2e_runs` as `E2E runs`: underscores become spaces, a word with a digit is upper-cased,
/// and the first letter is a capital.
pub fn metric_label(name: &str) -> String {
    let words: Vec<String> = name
        .split(['_', '-'])
        .filter(|word| !word.is_empty())
        .map(|word| if word.chars().any(|c| c.is_ascii_digit()) { word.to_uppercase() } else { word.to_owned() })
        .collect();
    let joined = words.join(" ");
    let mut chars = joined.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => name.to_owned(),
    }
}

/// Cents of `currency` (`[billing] currency`) as an amount: `11700` as `117.00 USD`.
pub fn money(cents: u64, currency: &str) -> String {
    format!("{}.{:02} {currency}", thousands(cents / 100), cents % 100)
}

/// Unix milliseconds as `2026-11-03 14:22 UTC`.
pub fn utc_minute(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms).unwrap_or_default().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A share from 0 to 1 as a percent that a small or nearly full share does not hide:
/// `0.3%` (not `0%`), `<0.1%`, `42%`, `99.9%` (not `100%` until it is).
pub fn percent(share: f64) -> String {
    let points = share * 100.0;
    if points <= 0.0 {
        "0%".to_owned()
    } else if points < 0.1 {
        "<0.1%".to_owned()
    } else if points < 9.95 {
        format!("{}%", short_number(points))
    } else if (99.5..100.0).contains(&points) {
        format!("{:.1}%", (points * 10.0).floor() / 10.0)
    } else {
        format!("{points:.0}%")
    }
}

/// A wait, rounded up so it is never shorter than said: `42 s`, `3 min`, `2 h`.
pub fn wait(ms: u64) -> String {
    let seconds = ms.div_ceil(1000).max(1);
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7_199 => format!("{} min", seconds.div_ceil(60)),
        _ => format!("{} h", thousands(seconds.div_ceil(3600))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_725), "12,725");
        assert_eq!(thousands(1_500_000_000), "1,500,000,000");
        assert_eq!(money(11_700, "USD"), "117.00 USD");
        assert_eq!(money(1_234_505, "EUR"), "12,345.05 EUR");
    }

    #[test]
    fn a_value_reads_the_same_in_every_form() {
        let (bytes, prompts) = (Unit::of("bytes"), Unit::of("prompts"));
        assert_eq!(bytes.value(512), "512 B");
        assert_eq!(bytes.value(0), "0 B");
        assert_eq!(bytes.value(1_234_567), "1.2 MB");
        assert_eq!(bytes.value(999_999), "1.0 MB");
        assert_eq!(bytes.value(92_800_000), "92.8 MB");
        assert_eq!(bytes.value(1_500_000_000), "1.5 GB");
        assert_eq!(prompts.value(12_725), "12,725");
        // A tooltip says the unit once: never "92.8 MB bytes" or "0 B bytes".
        assert_eq!(bytes.phrase(92_800_000), "92.8 MB");
        assert_eq!(bytes.phrase(0), "0 B");
        assert_eq!(prompts.phrase(12_725), "12,725 prompts");
        assert_eq!(Unit::Count("").phrase(3), "3");
        assert_eq!((bytes.word(), prompts.word()), ("", "prompts"));
    }

    #[test]
    fn axis_labels_use_the_same_units_with_a_space() {
        let bytes = Unit::Bytes;
        assert_eq!(bytes.short(0), "0");
        assert_eq!(bytes.short(100_000_000), "100 MB");
        assert_eq!(bytes.short(2_500_000_000), "2.5 GB");
        assert_eq!(bytes.short(5_000_000_000), "5 GB");
        assert_eq!(bytes.short(999_400_000), "999 MB");
        assert_eq!(bytes.short(999_600_000), "1 GB");
        let runs = Unit::Count("runs");
        assert_eq!(runs.short(0), "0");
        assert_eq!(runs.short(999), "999");
        assert_eq!(runs.short(1_260), "1.3k");
        assert_eq!(runs.short(12_725), "13k");
        for value in [1, 9, 99_999, 999_999_999, u64::MAX] {
            assert!(runs.short(value).len() <= 4, "{}", runs.short(value));
            assert!(bytes.short(value).len() <= 6, "{}", bytes.short(value));
        }
    }

    #[test]
    fn bar_labels_of_bytes_are_numbers_in_the_axis_unit() {
        let bytes = Unit::Bytes;
        assert_eq!(bytes.bar(92_800_000, 100_000_000), "93", "93 MB under an axis of 100 MB");
        assert_eq!(bytes.bar(3_712_800_000, 5_000_000_000), "3.7");
        assert_eq!(bytes.bar(666_900_000, 5_000_000_000), "0.7");
        assert_eq!(bytes.bar(21_000, 5_000_000_000), "<0.1", "a non-zero bar never reads 0");
        assert_eq!(bytes.bar(0, 5_000_000_000), "0");
        assert_eq!(Unit::Count("prompts").bar(17_478, 20_000), "17k");
        for value in [1, 999, 4_999_999_999] {
            assert!(bytes.bar(value, 5_000_000_000).len() <= 4);
        }
    }

    #[test]
    fn small_and_nearly_full_shares_stay_visible() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.003), "0.3%", "30 of 10,000");
        assert_eq!(percent(0.0004), "<0.1%");
        assert_eq!(percent(0.05), "5%");
        assert_eq!(percent(0.0251), "2.5%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.3333), "33%");
        assert_eq!(percent(0.9997), "99.9%", "not full until it is");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(1.2), "120%");
    }

    #[test]
    fn labels_metrics_from_their_names() {
        assert_eq!(metric_label("prompts"), "Prompts");
        assert_eq!(metric_label("e2e_runs"), "E2E runs");
        assert_eq!(metric_label("bytes_out"), "Bytes out");
    }

    #[test]
    fn waits_round_up_and_never_say_zero() {
        assert_eq!(wait(0), "1 s");
        assert_eq!(wait(41_001), "42 s");
        assert_eq!(wait(119_000), "119 s");
        assert_eq!(wait(121_000), "3 min");
        assert_eq!(wait(7_200_000), "2 h");
    }
}
