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

/// One key's window: when it started, its count, when the key was last seen.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
    seen: Instant,
}

/// At most `max` events per key per fixed `window`.
#[derive(Debug)]
pub struct FixedWindow<K> {
    max: u32,
    window: Duration,
    counts: Mutex<HashMap<K, Window>>,
    /// Counts of ended windows swept from the map before anyone asked for
    /// them (bounded: beyond the cap they are added to the last entry).
    swept: Mutex<Vec<u32>>,
}

impl<K: Hash + Eq> FixedWindow<K> {
    /// At most `max` events per key per `window`.
    #[must_use]
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            counts: Mutex::new(HashMap::new()),
            swept: Mutex::new(Vec::new()),
        }
    }

    /// Removes the windows that have ended by `now` and returns their
    /// counts (and those of windows swept earlier), for keys whose window
    /// held more than one event: what a periodic summary records, so a key
    /// that never comes back still has its window counted.
    pub(crate) fn drain_ended(&self, now: Instant) -> Vec<u32> {
        let mut ended = self
            .swept
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        if let Ok(mut counts) = self.counts.lock() {
            counts.retain(|_, w| {
                let live = now < w.start + self.window;
                if !live {
                    ended.push(w.count);
                }
                live
            });
        }
        ended.retain(|&n| n > 1);
        ended
    }

    fn keep_swept(&self, count: u32) {
        const CAP: usize = 10_000;
        if count <= 1 {
            return;
        }
        if let Ok(mut swept) = self.swept.lock() {
            if swept.len() < CAP {
                swept.push(count);
            } else if let Some(last) = swept.last_mut() {
                *last = last.saturating_add(count);
            }
        }
    }

    /// How long `key` must wait, if it is over the limit at `now`.
    pub(crate) fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let mut counts = self.counts.lock().ok()?;
        let window = counts.get_mut(key)?;
        window.seen = now;
        let ends = window.start + self.window;
        (window.count >= self.max && now < ends).then(|| ends - now)
    }

    /// Counts one event for `key` at `now`; returns the count in its window.
    pub(crate) fn record(&self, key: K, now: Instant) -> u32
    where
        K: Clone,
    {
        self.record_rolling(key, now).0
    }

    /// As [`Self::record`], and when this event starts a new window for a
    /// key seen before, the count of the window that ended.
    pub(crate) fn record_rolling(&self, key: K, now: Instant) -> (u32, Option<u32>)
    where
        K: Clone,
    {
        let Ok(mut counts) = self.counts.lock() else {
            return (0, None);
        };
        if counts.len() >= SWEEP_AT && !counts.contains_key(&key) {
            counts.retain(|_, w| {
                let live = now < w.start + self.window;
                if !live {
                    self.keep_swept(w.count);
                }
                live
            });
            // Still full of live windows (a flood from many addresses): drop
            // the tenth least recently seen, so a churn of fresh addresses
            // never lifts the block of one that keeps trying, and the cost is
            // one pass per thousand new addresses.
            if counts.len() >= SWEEP_AT {
                let mut seen: Vec<(Instant, K)> =
                    counts.iter().map(|(k, w)| (w.seen, k.clone())).collect();
                let cut = SWEEP_AT / 10;
                seen.select_nth_unstable_by_key(cut, |(at, _)| *at);
                for (_, idle) in seen.into_iter().take(cut) {
                    if let Some(dropped) = counts.remove(&idle) {
                        self.keep_swept(dropped.count);
                    }
                }
            }
        }
        let entry = counts.entry(key).or_insert(Window {
            start: now,
            count: 0,
            seen: now,
        });
        let mut ended = None;
        if now >= entry.start + self.window {
            ended = Some(entry.count);
            entry.start = now;
            entry.count = 0;
        }
        entry.seen = now;
        entry.count = entry.count.saturating_add(1);
        (entry.count, ended)
    }

    /// The length of a window.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// The most events a key may have in a window.
    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// Counts one event unless `key` is already over the limit; returns the
    /// wait when it is.
    pub(crate) fn try_acquire(&self, key: K, now: Instant) -> Result<(), Duration>
    where
        K: Clone,
    {
        if let Some(wait) = self.blocked(&key, now) {
            return Err(wait);
        }
        self.record(key, now);
        Ok(())
    }
}

/// Refused authentications per client address (IPv6 by /64: one host
/// usually holds a whole /64, so counting single addresses would let it
/// rotate through billions).
pub type AuthThrottle = FixedWindow<IpAddr>;

/// The key an address is counted under: IPv4 as it is, IPv6 by its /64.
#[must_use]
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                IpAddr::V4(v4)
            } else {
                IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())
            }
        }
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
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn a_churn_of_fresh_addresses_never_lifts_a_block() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60));
        let attacker: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        throttle.record(attacker, t0);
        throttle.record(attacker, t0);
        // Far more fresh addresses than the map holds, while the attacker
        // keeps trying now and then.
        let mut at = t0;
        for i in 0..(u32::try_from(SWEEP_AT).unwrap() * 2) {
            at += Duration::from_micros(1);
            let fresh = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            throttle.record(fresh, at);
            if i % 1000 == 0 {
                assert!(throttle.blocked(&attacker, at).is_some(), "lifted at {i}");
            }
        }
        assert!(throttle.blocked(&attacker, at).is_some());
        assert!(throttle.counts.lock().unwrap().len() <= SWEEP_AT);
    }

    #[test]
    fn ended_windows_are_drained_once_with_their_counts() {
        let throttle = AuthThrottle::new(3, Duration::from_secs(60));
        let (flood, once): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant::now();
        for _ in 0..50 {
            throttle.record(flood, t0);
        }
        throttle.record(once, t0);
        assert!(
            throttle
                .drain_ended(t0 + Duration::from_secs(59))
                .is_empty(),
            "still open"
        );
        // A single refusal already has its own row; only the flood is summed.
        assert_eq!(throttle.drain_ended(t0 + Duration::from_secs(60)), vec![50]);
        assert!(
            throttle
                .drain_ended(t0 + Duration::from_secs(61))
                .is_empty(),
            "once"
        );
        assert_eq!(throttle.blocked(&flood, t0 + Duration::from_secs(61)), None);
    }

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
        assert_eq!(
            throttle.record_rolling(ip, t0 + Duration::from_secs(61)),
            (1, Some(3)),
            "a new window, and the total of the one that ended"
        );
        assert_eq!(
            throttle.record_rolling(ip, t0 + Duration::from_secs(62)),
            (2, None)
        );
        assert_eq!(
            throttle.blocked(&ip, t0 + Duration::from_secs(61)),
            None,
            "a new window starts at one"
        );
    }
}
