//! Refusing clients that keep presenting bad tokens.
//!
//! A fixed window per client address: after `max_failures` refused
//! authentications within `window`, that address gets `429` with
//! `Retry-After` until the window ends, before any database work. A small
//! counter map is all this needs; keyed GCRA limiters (governor) count every
//! request and cannot be asked "is this key blocked?" without spending a cell.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before expired windows are swept.
const SWEEP_AT: usize = 10_000;

/// Failed-authentication limits per client address.
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthThrottle {
    /// At most `max_failures` refused authentications per address per `window`.
    #[must_use]
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must wait, if it is over the limit at `now`.
    pub(crate) fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().ok()?;
        let (start, count) = failures.get(&ip)?;
        let ends = *start + self.window;
        (*count >= self.max_failures && now < ends).then(|| ends - now)
    }

    /// Counts a refused authentication from `ip` at `now`.
    pub(crate) fn record_failure(&self, ip: IpAddr, now: Instant) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, (start, _)| now < *start + self.window);
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now >= entry.0 + self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

impl Default for AuthThrottle {
    /// 30 refused authentications per address per minute.
    fn default() -> Self {
        Self::new(30, Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let throttle = AuthThrottle::new(3, Duration::from_secs(60));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(throttle.blocked(ip, t0), None, "failure {i}");
            throttle.record_failure(ip, t0);
        }
        assert_eq!(
            throttle.blocked(ip, t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(
            throttle.blocked(other, t0),
            None,
            "other addresses are unaffected"
        );
        assert_eq!(
            throttle.blocked(ip, t0 + Duration::from_secs(60)),
            None,
            "the window ended"
        );
        throttle.record_failure(ip, t0 + Duration::from_secs(61));
        assert_eq!(
            throttle.blocked(ip, t0 + Duration::from_secs(61)),
            None,
            "a new window starts at one"
        );
    }
}
