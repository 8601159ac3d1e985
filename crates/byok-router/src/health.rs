//! Provider health per user and key: a circuit breaker for each of a user's
//! keys (a provider may hold several), fed by every call and every key test.
//! Time is passed in, so the state machine is deterministic and tests drive
//! it with a fake clock.
//!
//! One user's broken key never affects another user, nor the user's other
//! keys for the same provider: there is no shared, provider-wide state.
//! Breakers are kept per user, so a request touches only its own user's
//! entries (constant cost however many users there are).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use byok_core::{ProviderKind, UserId};
use serde::Serialize;

/// What a call (or a key test) ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It worked, this fast.
    Success {
        /// Time to the answer (or first byte).
        latency: Duration,
    },
    /// A failure another attempt may not repeat: rate limit, overload, 5xx,
    /// timeout, transport. The provider's retry delay, when it gave one,
    /// lengthens the cooldown.
    Failure {
        /// The provider's requested delay.
        retry_after: Option<Duration>,
    },
    /// The provider rejected the key: skip it until it is replaced or a test
    /// passes.
    KeyRejected,
    /// The provider (or this key's quota) is rate-limited: a failure that
    /// opens the circuit at once when the provider says how long to wait,
    /// and marks it as rate-limited (so the gateway can answer `429` with
    /// the wait, not an outage).
    RateLimited {
        /// The provider's requested delay.
        retry_after: Option<Duration>,
    },
}

/// Breaker tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Consecutive failures that open the circuit.
    pub consecutive_failures: u32,
    /// How many recent outcomes the error rate is computed over.
    pub window: usize,
    /// Fewest outcomes in the window before the error rate counts.
    pub min_calls: usize,
    /// Error rate, in percent, that opens the circuit.
    pub failure_rate_percent: u32,
    /// First cooldown; doubles on each reopening, up to `max_cooldown`.
    pub base_cooldown: Duration,
    /// Longest cooldown.
    pub max_cooldown: Duration,
    /// How long a half-open probe may run before another is allowed (a hung
    /// probe must not keep the circuit half-open for ever).
    pub probe_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            window: 20,
            min_calls: 10,
            failure_rate_percent: 50,
            base_cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(300),
            probe_timeout: Duration::from_secs(60),
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Circuit {
    /// Calls flow.
    Closed,
    /// Calls are refused until the cooldown ends.
    Open {
        /// Milliseconds until a probe is allowed.
        remaining_ms: u64,
    },
    /// The cooldown ended: one probe may go through.
    HalfOpen,
}

/// Admission for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Go ahead as the half-open probe; its outcome decides the circuit.
    Probe,
    /// Do not call: the circuit is open, a probe is in flight, or the key
    /// was rejected.
    Denied,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_started: Option<Instant> },
}

#[derive(Debug)]
struct Breaker {
    state: State,
    openings: u32,
    consecutive_failures: u32,
    recent: VecDeque<bool>,
    key_rejected: bool,
    /// Whether the last failure was a rate limit.
    rate_limited: bool,
    latency_ms: Option<u64>,
    /// When the breaker last saw a call or an outcome.
    last_seen: Option<Instant>,
}

impl Breaker {
    fn new() -> Self {
        Self {
            state: State::Closed,
            openings: 0,
            consecutive_failures: 0,
            recent: VecDeque::new(),
            key_rejected: false,
            rate_limited: false,
            latency_ms: None,
            last_seen: None,
        }
    }

    /// Moves an expired open circuit to half-open.
    fn tick(&mut self, now: Instant) {
        if let State::Open { until } = self.state
            && now >= until
        {
            self.state = State::HalfOpen {
                probe_started: None,
            };
        }
    }

    fn error_rate_percent(&self) -> u32 {
        let failures = self.recent.iter().filter(|ok| !**ok).count();
        u32::try_from(failures * 100 / self.recent.len().max(1)).unwrap_or(100)
    }

    fn open(&mut self, config: &HealthConfig, now: Instant, retry_after: Option<Duration>) {
        let factor = 1u32 << self.openings.min(16);
        let cooldown = config
            .base_cooldown
            .saturating_mul(factor)
            .min(config.max_cooldown);
        let cooldown = cooldown.max(retry_after.unwrap_or_default());
        self.openings = self.openings.saturating_add(1);
        self.state = State::Open {
            until: now + cooldown,
        };
    }
}

/// What the planner needs to know about one provider of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProviderHealth {
    /// The circuit.
    pub circuit: Circuit,
    /// Whether the provider rejected the key since it was saved or last passed a test.
    pub key_rejected: bool,
    /// Whether the last failure was a rate limit (an open circuit then means
    /// "wait", not "down").
    pub rate_limited: bool,
    /// Failures among recent calls, in percent.
    pub error_rate_percent: u32,
    /// Recent calls counted.
    pub recent_calls: usize,
    /// Smoothed latency of recent successes.
    pub latency_ms: Option<u64>,
}

impl ProviderHealth {
    /// Health of a provider never called: closed, unknown latency.
    pub const UNKNOWN: Self = Self {
        circuit: Circuit::Closed,
        key_rejected: false,
        rate_limited: false,
        error_rate_percent: 0,
        recent_calls: 0,
        latency_ms: None,
    };

    /// Whether the planner may put this provider in a plan.
    #[must_use]
    pub fn usable(&self) -> bool {
        !self.key_rejected && !matches!(self.circuit, Circuit::Open { .. })
    }
}

/// A user's providers' health at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HealthSnapshot {
    /// By provider; a provider never called is [`ProviderHealth::UNKNOWN`].
    pub providers: BTreeMap<ProviderKind, ProviderHealth>,
}

impl HealthSnapshot {
    /// The health of `provider`.
    #[must_use]
    pub fn get(&self, provider: ProviderKind) -> ProviderHealth {
        self.providers
            .get(&provider)
            .copied()
            .unwrap_or(ProviderHealth::UNKNOWN)
    }
}

/// Circuit breakers for every key of every user. A key is named by its
/// provider and its id; callers that keep one key per provider may use the
/// provider-level methods ([`HealthTracker::admit`], [`HealthTracker::record`],
/// [`HealthTracker::reset`]), which use the key id `""`.
#[derive(Debug)]
pub struct HealthTracker {
    config: HealthConfig,
    breakers: Mutex<HashMap<UserId, UserBreakers>>,
}

/// One user's breakers, by provider and key id.
type UserBreakers = HashMap<(ProviderKind, Box<str>), Breaker>;

impl Default for HealthTracker {
    fn default() -> Self {
        Self::new(HealthConfig::default())
    }
}

impl Breaker {
    fn health(&mut self, now: Instant) -> ProviderHealth {
        self.tick(now);
        let circuit = match self.state {
            State::Closed => Circuit::Closed,
            State::HalfOpen { .. } => Circuit::HalfOpen,
            State::Open { until } => Circuit::Open {
                remaining_ms: u64::try_from(until.duration_since(now).as_millis())
                    .unwrap_or(u64::MAX),
            },
        };
        ProviderHealth {
            circuit,
            key_rejected: self.key_rejected,
            rate_limited: self.rate_limited,
            error_rate_percent: self.error_rate_percent(),
            recent_calls: self.recent.len(),
            latency_ms: self.latency_ms,
        }
    }
}

impl HealthTracker {
    /// A tracker with `config`.
    #[must_use]
    pub fn new(config: HealthConfig) -> Self {
        Self {
            config,
            breakers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, UserBreakers>> {
        self.breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with<T>(
        &self,
        user: &UserId,
        provider: ProviderKind,
        key: &str,
        f: impl FnOnce(&mut Breaker) -> T,
    ) -> T {
        let mut breakers = self.lock();
        let keys = match breakers.get_mut(user) {
            Some(keys) => keys,
            None => breakers.entry(user.clone()).or_default(),
        };
        let breaker = keys
            .entry((provider, Box::from(key)))
            .or_insert_with(Breaker::new);
        f(breaker)
    }

    /// Whether a call to `provider` for `user` may go ahead at `now` (the
    /// provider-level key `""`).
    pub fn admit(&self, user: &UserId, provider: ProviderKind, now: Instant) -> Admission {
        self.admit_key(user, provider, "", now)
    }

    /// Whether a call with `user`'s key `key` for `provider` may go ahead at `now`.
    pub fn admit_key(
        &self,
        user: &UserId,
        provider: ProviderKind,
        key: &str,
        now: Instant,
    ) -> Admission {
        let probe_timeout = self.config.probe_timeout;
        self.with(user, provider, key, |b| {
            b.tick(now);
            b.last_seen = Some(now);
            if b.key_rejected {
                return Admission::Denied;
            }
            match &mut b.state {
                State::Closed => Admission::Allowed,
                State::Open { .. } => Admission::Denied,
                State::HalfOpen { probe_started } => match probe_started {
                    Some(started) if now.duration_since(*started) < probe_timeout => {
                        Admission::Denied
                    }
                    _ => {
                        *probe_started = Some(now);
                        Admission::Probe
                    }
                },
            }
        })
    }

    /// Records how a call ended (the provider-level key `""`). Returns
    /// whether this outcome opened the circuit (for metrics).
    pub fn record(
        &self,
        user: &UserId,
        provider: ProviderKind,
        outcome: Outcome,
        now: Instant,
    ) -> bool {
        self.record_key(user, provider, "", outcome, now)
    }

    /// Records how a call with `user`'s key `key` ended. Returns whether
    /// this outcome opened the key's circuit (for metrics).
    pub fn record_key(
        &self,
        user: &UserId,
        provider: ProviderKind,
        key: &str,
        outcome: Outcome,
        now: Instant,
    ) -> bool {
        let config = self.config;
        self.with(user, provider, key, |b| {
            b.tick(now);
            b.last_seen = Some(now);
            let ok = matches!(outcome, Outcome::Success { .. });
            b.recent.push_back(ok);
            while b.recent.len() > config.window {
                b.recent.pop_front();
            }
            match outcome {
                Outcome::Success { latency } => {
                    let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
                    b.latency_ms = Some(b.latency_ms.map_or(ms, |old| (old * 4 + ms) / 5));
                    b.consecutive_failures = 0;
                    b.key_rejected = false;
                    b.rate_limited = false;
                    if !matches!(b.state, State::Closed) {
                        b.state = State::Closed;
                        b.openings = 0;
                        b.recent.clear();
                    }
                }
                Outcome::KeyRejected => b.key_rejected = true,
                Outcome::Failure { retry_after } | Outcome::RateLimited { retry_after } => {
                    b.rate_limited = matches!(outcome, Outcome::RateLimited { .. });
                    b.consecutive_failures = b.consecutive_failures.saturating_add(1);
                    let trip = match b.state {
                        State::HalfOpen { .. } => true, // the probe failed
                        State::Open { .. } => false,
                        State::Closed => {
                            b.consecutive_failures >= config.consecutive_failures
                                || (b.recent.len() >= config.min_calls
                                    && b.error_rate_percent() >= config.failure_rate_percent)
                                || retry_after.is_some()
                        }
                    };
                    if trip {
                        match (outcome, retry_after) {
                            // A rate limit with a stated wait: closed again
                            // exactly when the provider said, not later.
                            (Outcome::RateLimited { .. }, Some(wait)) => {
                                b.openings = b.openings.saturating_add(1);
                                b.state = State::Open { until: now + wait };
                            }
                            _ => b.open(&config, now, retry_after),
                        }
                    }
                    return trip;
                }
            }
            false
        })
    }

    /// Forgets `user`'s history with `provider` (the provider-level key `""`).
    pub fn reset(&self, user: &UserId, provider: ProviderKind) {
        self.reset_key(user, provider, "");
    }

    /// Forgets `user`'s history with key `key` (its secret was replaced).
    pub fn reset_key(&self, user: &UserId, provider: ProviderKind, key: &str) {
        let mut breakers = self.lock();
        if let Some(keys) = breakers.get_mut(user) {
            keys.remove(&(provider, Box::from(key)));
            if keys.is_empty() {
                breakers.remove(user);
            }
        }
    }

    /// Forgets everything about `user` (deleted).
    pub fn forget_user(&self, user: &UserId) {
        self.lock().remove(user);
    }

    /// Drops the breakers of users not called for `idle` whose circuits are
    /// all closed and whose keys were not rejected (nothing to remember: a
    /// new breaker starts the same). Returns how many users were dropped.
    /// Run it now and then, off the request path: the map then holds only
    /// users active recently or with something worth remembering.
    pub fn evict_idle(&self, now: Instant, idle: Duration) -> usize {
        let mut breakers = self.lock();
        let before = breakers.len();
        breakers.retain(|_, keys| {
            keys.values_mut().any(|b| {
                b.tick(now);
                b.key_rejected
                    || !matches!(b.state, State::Closed)
                    || b.last_seen.is_some_and(|at| now.duration_since(at) < idle)
            })
        });
        before - breakers.len()
    }

    /// Users the tracker holds breakers for.
    #[must_use]
    pub fn users(&self) -> usize {
        self.lock().len()
    }

    /// How many circuits are open and half-open now, by provider, over all
    /// users and keys (for a gauge; no user ids leave the tracker).
    pub fn circuit_counts(
        &self,
        now: Instant,
    ) -> std::collections::BTreeMap<ProviderKind, (usize, usize)> {
        let mut breakers = self.lock();
        let mut counts = std::collections::BTreeMap::new();
        for ((provider, _), breaker) in breakers.values_mut().flat_map(HashMap::iter_mut) {
            breaker.tick(now);
            let entry: &mut (usize, usize) = counts.entry(*provider).or_default();
            match breaker.state {
                State::Open { .. } => entry.0 += 1,
                State::HalfOpen { .. } => entry.1 += 1,
                State::Closed => {}
            }
        }
        counts
    }

    /// The health of each of `user`'s keys in `keys` (provider, key id), in order.
    pub fn key_health<'k>(
        &self,
        user: &UserId,
        keys: impl IntoIterator<Item = (ProviderKind, &'k str)>,
        now: Instant,
    ) -> Vec<ProviderHealth> {
        let mut breakers = self.lock();
        let mut known = breakers.get_mut(user);
        keys.into_iter()
            .map(|(provider, key)| {
                known
                    .as_deref_mut()
                    .and_then(|k| k.get_mut(&(provider, Box::from(key))))
                    .map_or(ProviderHealth::UNKNOWN, |b| b.health(now))
            })
            .collect()
    }

    /// `user`'s providers' health at `now`, over the keys `keys` (provider,
    /// key id; a key never called is healthy): a provider is as healthy as
    /// its best key — usable while any of its keys is.
    pub fn snapshot_keys<'k>(
        &self,
        user: &UserId,
        keys: impl IntoIterator<Item = (ProviderKind, &'k str)> + Clone,
        now: Instant,
    ) -> HealthSnapshot {
        let healths = self.key_health(user, keys.clone(), now);
        let mut providers: BTreeMap<ProviderKind, ProviderHealth> = BTreeMap::new();
        for ((provider, _), health) in keys.into_iter().zip(healths) {
            providers
                .entry(provider)
                .and_modify(|best| {
                    if !best.usable() && health.usable() {
                        *best = health;
                    }
                })
                .or_insert(health);
        }
        HealthSnapshot { providers }
    }

    /// `user`'s providers' health at `now`, over the keys called so far.
    pub fn snapshot(&self, user: &UserId, now: Instant) -> HealthSnapshot {
        let known: Vec<(ProviderKind, Box<str>)> = self
            .lock()
            .get(user)
            .map(|keys| keys.keys().cloned().collect())
            .unwrap_or_default();
        self.snapshot_keys(user, known.iter().map(|(p, k)| (*p, &**k)), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserId {
        UserId::parse("alice").unwrap()
    }

    const FAIL: Outcome = Outcome::Failure { retry_after: None };
    const OK: Outcome = Outcome::Success {
        latency: Duration::from_millis(100),
    };
    const P: ProviderKind = ProviderKind::OpenAi;

    #[test]
    fn opens_after_consecutive_failures_then_probes_then_closes() {
        let tracker = HealthTracker::default();
        let t0 = Instant::now();
        let user = alice();
        for _ in 0..2 {
            tracker.record(&user, P, FAIL, t0);
        }
        assert_eq!(tracker.admit(&user, P, t0), Admission::Allowed);
        tracker.record(&user, P, FAIL, t0);
        assert_eq!(tracker.admit(&user, P, t0), Admission::Denied);
        assert_eq!(
            tracker
                .snapshot(&user, t0 + Duration::from_secs(10))
                .get(P)
                .circuit,
            Circuit::Open {
                remaining_ms: 20_000
            }
        );
        // Cooldown over: exactly one probe.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(tracker.admit(&user, P, t1), Admission::Probe);
        assert_eq!(tracker.admit(&user, P, t1), Admission::Denied);
        tracker.record(&user, P, OK, t1);
        assert_eq!(tracker.admit(&user, P, t1), Admission::Allowed);
        assert_eq!(tracker.snapshot(&user, t1).get(P).circuit, Circuit::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_for_longer_and_a_hung_probe_times_out() {
        let tracker = HealthTracker::default();
        let user = alice();
        let t0 = Instant::now();
        for _ in 0..3 {
            tracker.record(&user, P, FAIL, t0);
        }
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(tracker.admit(&user, P, t1), Admission::Probe);
        tracker.record(&user, P, FAIL, t1);
        // Second opening: 60 s.
        assert_eq!(
            tracker.admit(&user, P, t1 + Duration::from_secs(59)),
            Admission::Denied
        );
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(tracker.admit(&user, P, t2), Admission::Probe);
        // The probe hangs: after the probe timeout another one may go.
        assert_eq!(
            tracker.admit(&user, P, t2 + Duration::from_secs(59)),
            Admission::Denied
        );
        assert_eq!(
            tracker.admit(&user, P, t2 + Duration::from_secs(60)),
            Admission::Probe
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let tracker = HealthTracker::default();
        let user = alice();
        let t0 = Instant::now();
        tracker.record(
            &user,
            P,
            Outcome::Failure {
                retry_after: Some(Duration::from_secs(90)),
            },
            t0,
        );
        assert_eq!(
            tracker.admit(&user, P, t0 + Duration::from_secs(89)),
            Admission::Denied
        );
        assert_eq!(
            tracker.admit(&user, P, t0 + Duration::from_secs(90)),
            Admission::Probe
        );
    }

    #[test]
    fn a_high_error_rate_opens_even_without_a_streak() {
        let tracker = HealthTracker::default();
        let user = alice();
        let t0 = Instant::now();
        for i in 0..10 {
            tracker.record(&user, P, if i % 2 == 1 { FAIL } else { OK }, t0);
        }
        assert!(matches!(
            tracker.snapshot(&user, t0).get(P).circuit,
            Circuit::Open { .. }
        ));
    }

    #[test]
    fn a_rejected_key_is_skipped_until_a_success_or_reset_and_only_for_that_user() {
        let tracker = HealthTracker::default();
        let (alice, bob) = (alice(), UserId::parse("bob").unwrap());
        let t0 = Instant::now();
        tracker.record(&alice, P, Outcome::KeyRejected, t0);
        assert_eq!(tracker.admit(&alice, P, t0), Admission::Denied);
        assert!(!tracker.snapshot(&alice, t0).get(P).usable());
        assert_eq!(
            tracker.admit(&bob, P, t0),
            Admission::Allowed,
            "bob's key is his own"
        );
        assert!(tracker.snapshot(&bob, t0).get(P).usable());
        tracker.reset(&alice, P);
        assert_eq!(tracker.admit(&alice, P, t0), Admission::Allowed);
    }

    #[test]
    fn each_key_has_its_own_breaker_and_a_provider_is_usable_while_any_key_is() {
        let tracker = HealthTracker::default();
        let user = alice();
        let t0 = Instant::now();
        tracker.record_key(&user, P, "k1", Outcome::KeyRejected, t0);
        assert_eq!(tracker.admit_key(&user, P, "k1", t0), Admission::Denied);
        // Only k1 known: the provider looks unusable; with k2 (never called) it is usable.
        assert!(!tracker.snapshot(&user, t0).get(P).usable());
        let both = tracker.snapshot_keys(&user, [(P, "k1"), (P, "k2")], t0);
        assert!(both.get(P).usable());
        assert_eq!(tracker.admit_key(&user, P, "k2", t0), Admission::Allowed);
        for _ in 0..3 {
            tracker.record_key(&user, P, "k2", FAIL, t0);
        }
        let both = tracker.snapshot_keys(&user, [(P, "k1"), (P, "k2")], t0);
        assert!(!both.get(P).usable(), "every key is out");
        tracker.reset_key(&user, P, "k1");
        assert!(
            tracker
                .snapshot_keys(&user, [(P, "k1"), (P, "k2")], t0)
                .get(P)
                .usable()
        );
        tracker.forget_user(&user);
        assert!(tracker.snapshot(&user, t0).providers.is_empty());
    }

    #[test]
    fn a_rate_limit_waits_exactly_as_long_as_the_provider_said() {
        let tracker = HealthTracker::default();
        let user = alice();
        let t0 = Instant::now();
        tracker.record(
            &user,
            P,
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            },
            t0,
        );
        let health = tracker.snapshot(&user, t0 + Duration::from_secs(2)).get(P);
        assert!(health.rate_limited);
        assert_eq!(
            health.circuit,
            Circuit::Open {
                remaining_ms: 5_000
            }
        );
        assert_eq!(
            tracker.admit(&user, P, t0 + Duration::from_secs(7)),
            Admission::Probe
        );
    }

    #[test]
    fn idle_healthy_users_are_evicted_and_troubled_ones_kept() {
        let tracker = HealthTracker::default();
        let t0 = Instant::now();
        let (alice, bob) = (alice(), UserId::parse("bob").unwrap());
        tracker.record(&alice, P, OK, t0);
        tracker.record(&bob, P, Outcome::KeyRejected, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(tracker.evict_idle(later, Duration::from_secs(600)), 1);
        assert_eq!(tracker.users(), 1, "bob's rejected key is remembered");
        assert!(!tracker.snapshot(&bob, later).get(P).usable());
    }
}
