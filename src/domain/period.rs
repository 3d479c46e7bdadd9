//! The accounting period: a UTC calendar month written `YYYY-MM`. Counters roll over at the
//! first instant of each month. Pure date arithmetic; no clock reads here.

use chrono::{DateTime, Datelike, Utc};
use std::fmt;
use std::str::FromStr;

/// A UTC month. Ordered chronologically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: i32,
    month: u32, // 1..=12
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("period must be YYYY-MM with a month from 01 to 12, got {0:?}")]
pub struct ParsePeriodError(pub String);

impl Period {
    pub fn new(year: i32, month: u32) -> Option<Period> {
        ((1..=12).contains(&month) && (1970..=9999).contains(&year)).then_some(Period { year, month })
    }

    /// The month that holds the instant `unix_ms` (milliseconds since the epoch, UTC).
    pub fn of_unix_ms(unix_ms: i64) -> Period {
        let instant = DateTime::<Utc>::from_timestamp_millis(unix_ms).unwrap_or(DateTime::UNIX_EPOCH);
        Period::of(instant)
    }

    pub fn of(instant: DateTime<Utc>) -> Period {
        Period { year: instant.year().clamp(1970, 9999), month: instant.month() }
    }

    /// The period `months` months before this one (0 is this one).
    pub fn months_before(self, months: u32) -> Period {
        let index = self.index() - i64::from(months);
        Period::from_index(index.max(0))
    }

    /// The oldest period kept when `retention_months` periods are kept, this one included.
    pub fn oldest_kept(self, retention_months: u32) -> Period {
        self.months_before(retention_months.saturating_sub(1))
    }

    /// The first millisecond of the month, UTC.
    pub fn start_unix_ms(self) -> i64 {
        chrono::NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map_or(0, |start| start.and_utc().timestamp_millis())
    }

    /// The first millisecond after the month, UTC: when its counters stop counting.
    pub fn end_unix_ms(self) -> i64 {
        match self {
            Period { year: 9999, month: 12 } => 253_402_300_800_000,
            _ => Period::from_index(self.index() + 1).start_unix_ms(),
        }
    }

    fn index(self) -> i64 {
        i64::from(self.year - 1970) * 12 + i64::from(self.month - 1)
    }

    fn from_index(index: i64) -> Period {
        let year = 1970 + (index / 12) as i32;
        let month = (index % 12) as u32 + 1;
        Period { year: year.min(9999), month }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Period {
    type Err = ParsePeriodError;

    fn from_str(text: &str) -> Result<Period, ParsePeriodError> {
        let error = || ParsePeriodError(text.chars().take(32).collect());
        let bytes = text.as_bytes();
        if bytes.len() != 7
            || bytes[4] != b'-'
            || !text[..4].bytes().chain(text[5..].bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(error());
        }
        let year: i32 = text[..4].parse().map_err(|_| error())?;
        let month: u32 = text[5..].parse().map_err(|_| error())?;
        Period::new(year, month).ok_or_else(error)
    }
}

impl serde::Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_ends_where_the_next_begins() {
        let november = Period::new(2026, 11).unwrap();
        assert_eq!(november.end_unix_ms(), Period::new(2026, 12).unwrap().start_unix_ms());
        let december = Period::new(2026, 12).unwrap();
        assert_eq!(december.end_unix_ms(), Period::new(2027, 1).unwrap().start_unix_ms());
        let last = Period::new(9999, 12).unwrap();
        assert_eq!(last.end_unix_ms() - last.start_unix_ms(), 31 * 86_400_000);
    }

    #[test]
    fn parses_and_prints_year_month() {
        let period: Period = "2026-11".parse().unwrap();
        assert_eq!(period.to_string(), "2026-11");
        assert_eq!(Period::new(2026, 1).unwrap().to_string(), "2026-01");
    }

    #[test]
    fn refuses_malformed_periods() {
        for bad in ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "2026-1a", "", "２０２６-11", "1969-12"] {
            assert!(bad.parse::<Period>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn month_starts_at_the_first_utc_millisecond() {
        // 2026-11-01T00:00:00Z is 1_793_491_200_000 ms.
        assert_eq!(Period::of_unix_ms(1_793_491_200_000).to_string(), "2026-11");
        assert_eq!(Period::of_unix_ms(1_793_491_199_999).to_string(), "2026-10");
        assert_eq!("2026-11".parse::<Period>().unwrap().start_unix_ms(), 1_793_491_200_000);
    }

    #[test]
    fn counts_months_back_across_years() {
        let period: Period = "2026-02".parse().unwrap();
        assert_eq!(period.months_before(2).to_string(), "2025-12");
        assert_eq!(period.oldest_kept(12).to_string(), "2025-03");
        assert_eq!(period.oldest_kept(1), period);
        assert!("2025-12".parse::<Period>().unwrap() < period);
    }
}
