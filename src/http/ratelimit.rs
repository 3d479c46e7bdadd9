//! The RateLimit headers of draft-ietf-httpapi-ratelimit-headers-10, from the domain's quotas:
//! `RateLimit-Policy: "prompts";q=30` (`;w=60` for a rolling window) and
//! `RateLimit: "prompts";r=18;t=86400`. Structured-field lists (RFC 9651), one item per
//! quota the request touched; none for an unlimited metric.

use crate::domain::quota::Quota;
use ::http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write;

pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// `name` as an sf-string. Metric and feature names are validated by the config, but a
/// quote or backslash would still come out escaped.
fn sf_string(out: &mut String, name: &str) {
    out.push('"');
    for character in name.chars() {
        if matches!(character, '"' | '\\') {
            out.push('\\');
        }
        out.push(character);
    }
    out.push('"');
}

/// The two header values for `quotas`, or `None` when there are none.
pub fn values(quotas: &[Quota]) -> Option<(String, String)> {
    if quotas.is_empty() {
        return None;
    }
    let (mut policy, mut state) = (String::new(), String::new());
    for quota in quotas {
        if !policy.is_empty() {
            policy.push_str(", ");
            state.push_str(", ");
        }
        sf_string(&mut policy, &quota.name);
        write!(policy, ";q={}", quota.limit).expect("formatting into a String cannot fail");
        if let Some(window_secs) = quota.window_secs {
            write!(policy, ";w={window_secs}").expect("formatting into a String cannot fail");
        }
        sf_string(&mut state, &quota.name);
        write!(state, ";r={};t={}", quota.remaining, quota.resets_in_secs)
            .expect("formatting into a String cannot fail");
    }
    Some((policy, state))
}

/// The headers as (name, value) pairs, as an idempotent answer keeps them.
pub fn pairs(quotas: &[Quota]) -> Vec<(String, String)> {
    match values(quotas) {
        Some((policy, state)) => {
            vec![(RATELIMIT_POLICY.as_str().to_owned(), policy), (RATELIMIT.as_str().to_owned(), state)]
        }
        None => Vec::new(),
    }
}

/// Adds the headers of `quotas` to `headers`.
pub fn insert(headers: &mut HeaderMap, quotas: &[Quota]) {
    if let Some((policy, state)) = values(quotas)
        && let (Ok(policy), Ok(state)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&state))
    {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(name: &str, window_secs: Option<u32>) -> Quota {
        Quota { name: name.into(), limit: 30, window_secs, remaining: 18, resets_in_secs: 60 }
    }

    #[test]
    fn a_monthly_quota_has_no_window_and_a_rolling_one_has() {
        let (policy, state) = values(&[quota("prompts", None), quota("snapshots", Some(60))]).unwrap();
        assert_eq!(policy, r#""prompts";q=30, "snapshots";q=30;w=60"#);
        assert_eq!(state, r#""prompts";r=18;t=60, "snapshots";r=18;t=60"#);
        assert_eq!(values(&[]), None);
        assert!(pairs(&[]).is_empty());
    }

    #[test]
    fn names_are_escaped_as_sf_strings() {
        let (policy, _) = values(&[quota(r#"a"b\c"#, None)]).unwrap();
        assert_eq!(policy, r#""a\"b\\c";q=30"#);
    }
}
