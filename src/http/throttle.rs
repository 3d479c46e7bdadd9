//! Failed-authentication throttling: each client address may fail `max_failures_per_minute`
//! times in a fixed one-minute window; past that its failures are answered 429 with
//! `Retry-After` instead of 401, so guessing keys costs a minute per batch. A request with a
//! valid key never reaches this. Memory is bounded: at most `MAX_CLIENTS` addresses are
//! remembered, expired windows are dropped first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

const WINDOW_MS: i64 = 60_000;

/// Addresses remembered at once (about 40 bytes each).
const MAX_CLIENTS: usize = 16_384;

/// What to answer a failed authentication with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the allowance: the usual 401.
    Unauthorized,
    /// Past it: 429, retry after this many seconds.
    Throttled { retry_after_secs: u64 },
}

#[derive(Clone, Copy)]
struct Window {
    started_ms: i64,
    failures: u32,
}

pub struct FailureThrottle {
    max_per_minute: u32,
    clients: Mutex<HashMap<IpAddr, Window>>,
}

/// The key a client is counted under: an IPv6 client usually holds a whole /64, so it is
/// counted as one; an IPv4 address (or an IPv4-mapped IPv6 one) as itself.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0))
            }
        },
    }
}

impl FailureThrottle {
    pub fn new(max_per_minute: u32) -> FailureThrottle {
        FailureThrottle { max_per_minute, clients: Mutex::default() }
    }

    /// Counts one failed authentication from `ip` at `now_ms` and says how to answer it.
    pub fn fail(&self, ip: IpAddr, now_ms: i64) -> Verdict {
        // A poisoned lock only means a panic mid-update of plain counters.
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let key = client_key(ip);
        if !clients.contains_key(&key) && clients.len() >= MAX_CLIENTS {
            clients.retain(|_, window| now_ms - window.started_ms < WINDOW_MS);
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients.iter().min_by_key(|(_, window)| window.started_ms).map(|(ip, _)| *ip)
            {
                clients.remove(&oldest);
            }
        }
        let window = clients.entry(key).or_insert(Window { started_ms: now_ms, failures: 0 });
        if now_ms - window.started_ms >= WINDOW_MS || now_ms < window.started_ms {
            *window = Window { started_ms: now_ms, failures: 0 };
        }
        window.failures = window.failures.saturating_add(1);
        if window.failures <= self.max_per_minute {
            Verdict::Unauthorized
        } else {
            let left_ms = (window.started_ms + WINDOW_MS - now_ms).max(1);
            Verdict::Throttled { retry_after_secs: (left_ms as u64).div_ceil(1000) }
        }
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.clients.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn throttles_past_the_allowance_until_the_window_ends() {
        let throttle = FailureThrottle::new(3);
        for _ in 0..3 {
            assert_eq!(throttle.fail(ip("10.0.0.1"), 1_000), Verdict::Unauthorized);
        }
        assert_eq!(throttle.fail(ip("10.0.0.1"), 1_000), Verdict::Throttled { retry_after_secs: 60 });
        assert_eq!(throttle.fail(ip("10.0.0.1"), 40_500), Verdict::Throttled { retry_after_secs: 21 });
        assert_eq!(throttle.fail(ip("10.0.0.2"), 40_500), Verdict::Unauthorized, "another client is not affected");
        assert_eq!(throttle.fail(ip("10.0.0.1"), 61_000), Verdict::Unauthorized, "a new window");
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_prefix() {
        let throttle = FailureThrottle::new(1);
        assert_eq!(throttle.fail(ip("2001:db8:1:2::1"), 0), Verdict::Unauthorized);
        assert!(matches!(throttle.fail(ip("2001:db8:1:2::ffff"), 0), Verdict::Throttled { .. }));
        assert_eq!(throttle.fail(ip("2001:db8:1:3::1"), 0), Verdict::Unauthorized);
        assert!(matches!(throttle.fail(ip("::ffff:10.0.0.1"), 0), Verdict::Unauthorized));
        assert!(matches!(throttle.fail(ip("10.0.0.1"), 0), Verdict::Throttled { .. }), "mapped v4 is v4");
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let throttle = FailureThrottle::new(1);
        for n in 0..(MAX_CLIENTS as u32 + 500) {
            throttle.fail(IpAddr::V4(n.into()), 0);
        }
        assert_eq!(throttle.remembered(), MAX_CLIENTS);
        // Once windows expire, new addresses replace them instead of growing the map.
        for n in 0..100u32 {
            throttle.fail(IpAddr::V4((u32::MAX - n).into()), WINDOW_MS);
        }
        assert!(throttle.remembered() <= MAX_CLIENTS);
        assert_eq!(throttle.fail(IpAddr::V4(u32::MAX.into()), WINDOW_MS), Verdict::Throttled { retry_after_secs: 60 });
    }
}
