//! Fixed-window limits: refused authentications per client address, key
//! tests per user.
//!
//! After `max` events within `window`, the key gets `429` with
//! `Retry-After` until the window ends, before any database or provider work. A small
//! counter map is all this needs; keyed GCRA limiters (governor) count every
//! request and cannot be asked "is this key blocked?" without spending a cell.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before expired windows are swept.
const SWEEP_AT: usize = 10_000;

/// At most `max` events per key per fixed `window`.
#[derive(Debug)]
pub struct FixedWindow<K> {
    max: u32,
    window: Duration,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Hash + Eq> FixedWindow<K> {
    /// At most `max` events per key per `window`.
    #[must_use]
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` must wait, if it is over the limit at `now`.
    pub(crate) fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let counts = self.counts.lock().ok()?;
        let (start, count) = counts.get(key)?;
        let ends = *start + self.window;
        (*count >= self.max && now < ends).then(|| ends - now)
    }

    /// Counts one event for `key` at `now`.
    pub(crate) fn record(&self, key: K, now: Instant) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        if counts.len() >= SWEEP_AT {
            counts.retain(|_, (start, _)| now < *start + self.window);
            // Still full of live windows (a flood from many addresses): start
            // over rather than grow without bound.
            if counts.len() >= SWEEP_AT {
                counts.clear();
            }
        }
        let entry = counts.entry(key).or_insert((now, 0));
        if now >= entry.0 + self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// Counts one event unless `key` is already over the limit; returns the
    /// wait when it is.
    pub(crate) fn try_acquire(&self, key: K, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.blocked(&key, now) {
            return Err(wait);
        }
        self.record(key, now);
        Ok(())
    }
}

/// Refused authentications per client address.
pub type AuthThrottle = FixedWindow<IpAddr>;

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
            assert_eq!(throttle.blocked(&ip, t0), None, "failure {i}");
            throttle.record(ip, t0);
        }
        assert_eq!(
            throttle.blocked(&ip, t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(
            throttle.blocked(&other, t0),
            None,
            "other addresses are unaffected"
        );
        assert_eq!(
            throttle.blocked(&ip, t0 + Duration::from_secs(60)),
            None,
            "the window ended"
        );
        throttle.record(ip, t0 + Duration::from_secs(61));
        assert_eq!(
            throttle.blocked(&ip, t0 + Duration::from_secs(61)),
            None,
            "a new window starts at one"
        );
    }
}
