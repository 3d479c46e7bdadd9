//! Query parameters the routes share (`period`, `metric`, counts, `before`): each parsed by
//! one function, with one refusal message, on the JSON API and the dashboard alike.

use super::error::ApiError;
use crate::domain::Rules;
use crate::domain::period::Period;
use std::collections::HashMap;

/// Query parameters as given, by name.
pub type Params = HashMap<String, String>;

/// `period` as YYYY-MM; the current month when absent.
pub fn period_param(params: &Params, now_ms: i64) -> Result<Period, ApiError> {
    parse_period(params.get("period").map(String::as_str), now_ms)
}

/// A period as YYYY-MM, or the current month for `None`.
pub fn parse_period(text: Option<&str>, now_ms: i64) -> Result<Period, ApiError> {
    let current = Period::of_unix_ms(now_ms);
    match text {
        Some(text) => {
            text.parse().map_err(|error| ApiError::invalid(format!("{error}; pick a month such as {current}")))
        }
        None => Ok(current),
    }
}

/// `metric`, which must be configured; the catalog's first metric when absent.
pub fn metric_param(rules: &Rules, params: &Params) -> Result<String, ApiError> {
    match params.get("metric") {
        Some(metric) => {
            crate::app::check_metric(rules, metric)?;
            Ok(metric.clone())
        }
        None => Ok(rules.catalog.metrics().next().map(|metric| metric.name.clone()).unwrap_or_default()),
    }
}

/// A whole-number parameter within `min..=max`, `default` when absent.
pub fn count_param(params: &Params, name: &str, default: u32, min: u32, max: u32) -> Result<u32, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(default);
    };
    match text.parse::<u32>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(ApiError::invalid(format!("{name} must be a whole number from {min} to {max}, got {text:?}"))),
    }
}

/// `before`, the id a page of newest-first rows starts below (`what` names the rows' id, e.g.
/// "an audit row id"); `None` when absent.
pub fn before_param(params: &Params, what: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = params.get("before") else {
        return Ok(None);
    };
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(Some(id)),
        _ => Err(ApiError::invalid(format!("before must be {what} (a positive whole number), got {text:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn before_is_a_positive_id_or_absent() {
        assert_eq!(before_param(&params(&[]), "an audit row id").unwrap(), None);
        assert_eq!(before_param(&params(&[("before", "42")]), "an audit row id").unwrap(), Some(42));
        for bad in ["0", "-3", "x"] {
            let error = before_param(&params(&[("before", bad)]), "a delivery id").unwrap_err();
            assert!(error.message().starts_with("before must be a delivery id"), "{}", error.message());
        }
    }

    #[test]
    fn a_bad_period_suggests_the_current_month() {
        let error = period_param(&params(&[("period", "2026-13")]), 1_790_000_000_000).unwrap_err();
        assert!(error.message().ends_with("pick a month such as 2026-09"), "{}", error.message());
        assert_eq!(parse_period(None, 1_790_000_000_000).unwrap().to_string(), "2026-09");
    }
}
