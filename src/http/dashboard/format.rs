//! How the dashboard writes numbers, sizes, money, dates and metric names for people. Pure
//! functions over plain values; no HTML is written here (the maud templates escape what they return).

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

/// Bytes in decimal units with one decimal: `1500000000` as `1.5 GB`.
pub fn human_bytes(bytes: u64) -> String {
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 999.95 && unit < BYTE_UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", BYTE_UNITS[unit])
}

/// A metric's value as people read it: bytes in human units, counts with separators.
pub fn metric_value(unit: &str, value: u64) -> String {
    if unit == "bytes" { human_bytes(value) } else { thousands(value) }
}

/// A short label for a chart (at most 5 characters): `12.7k`, `1.5GB`.
pub fn compact(unit: &str, value: u64) -> String {
    if value == 0 {
        return "0".to_owned();
    }
    let (units, step): (&[&str], f64) =
        if unit == "bytes" { (&BYTE_UNITS, 1000.0) } else { (&["", "k", "M", "G", "T", "P", "E"], 1000.0) };
    let mut scaled = value as f64;
    let mut index = 0;
    while scaled >= 999.5 && index < units.len() - 1 {
        scaled /= step;
        index += 1;
    }
    let number = if index == 0 || scaled >= 9.95 { format!("{scaled:.0}") } else { format!("{scaled:.1}") };
    format!("{number}{}", units[index])
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

/// Cents as a plain amount: `11700` as `117.00` (the config names no currency).
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", thousands(cents / 100), cents % 100)
}

/// Unix milliseconds as `2026-11-03 14:22 UTC`.
pub fn utc_minute(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms).unwrap_or_default().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A share from 0 to 1 as a whole percent (`0.5` as `50%`), with `<1%` for small non-zero ones.
pub fn percent(share: f64) -> String {
    if share > 0.0 && share < 0.005 { "<1%".to_owned() } else { format!("{:.0}%", share * 100.0) }
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
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(human_bytes(999_999), "1.0 MB");
        assert_eq!(metric_value("bytes", 2_000), "2.0 kB");
        assert_eq!(metric_value("prompts", 2_000), "2,000");
        assert_eq!(money(11_700), "117.00");
        assert_eq!(money(1_234_505), "12,345.05");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.001), "<1%");
    }

    #[test]
    fn compact_labels_stay_short() {
        assert_eq!(compact("prompts", 0), "0");
        assert_eq!(compact("prompts", 999), "999");
        assert_eq!(compact("prompts", 12_725), "13k");
        assert_eq!(compact("prompts", 1_260), "1.3k");
        assert_eq!(compact("bytes", 1_500_000_000), "1.5GB");
        assert_eq!(compact("bytes", 999_400_000), "999MB");
        for value in [0, 9, 99_999, 999_999_999, u64::MAX] {
            assert!(compact("runs", value).len() <= 5, "{}", compact("runs", value));
            assert!(compact("bytes", value).len() <= 5, "{}", compact("bytes", value));
        }
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
