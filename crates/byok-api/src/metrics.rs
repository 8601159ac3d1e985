//! Prometheus metrics of the gateway, through the maintained
//! `prometheus-client` crate: requests by provider and outcome, fallbacks,
//! circuit openings, latency histograms and spend. No user ids in labels.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use byok_core::ProviderKind;
use byok_router::Money;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Attempt {
    provider: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Provider {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CircuitState {
    provider: String,
    state: String,
}

/// Labels of `byok_key_open_failures_total`: the master key id a stored key
/// names, and whether this server holds that id. No user, no provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KeyOpenFailure {
    pub(crate) master_key_id: String,
    pub(crate) missing_here: String,
}

/// Stored keys that did not open, by the master key id they name; shared by
/// the key service (which counts) and the metrics registry (which reports).
pub(crate) type KeyOpenFailures = Family<KeyOpenFailure, Counter>;

fn latency_histogram() -> Histogram {
    Histogram::new([0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    circuits: Family<CircuitState, prometheus_client::metrics::gauge::Gauge>,
    attempts: Family<Attempt, Counter>,
    fallbacks: Counter,
    openings: Family<Provider, Counter>,
    latency: Family<Provider, Histogram, fn() -> Histogram>,
    spend: Family<Provider, Counter<f64, AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("byok");
        let attempts = Family::<Attempt, Counter>::default();
        let fallbacks = Counter::default();
        let openings = Family::<Provider, Counter>::default();
        let latency = Family::<Provider, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let spend = Family::<Provider, Counter<f64, AtomicU64>>::default();
        let circuits = Family::<CircuitState, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "circuits",
            "Circuit breakers (one per user and provider) open or half-open now, by provider",
            circuits.clone(),
        );
        registry.register(
            "gateway_attempts",
            "Provider calls by provider and outcome (success or an error code)",
            attempts.clone(),
        );
        registry.register(
            "gateway_fallbacks",
            "Requests answered by a provider other than the first tried",
            fallbacks.clone(),
        );
        registry.register(
            "circuit_openings",
            "Circuit breakers opened, by provider",
            openings.clone(),
        );
        registry.register(
            "gateway_latency_seconds",
            "Time to a provider's answer (or first streamed chunk)",
            latency.clone(),
        );
        registry.register(
            "spend_usd",
            "Spend on answered requests, in US dollars, by provider",
            spend.clone(),
        );
        Self {
            registry,
            circuits,
            attempts,
            fallbacks,
            openings,
            latency,
            spend,
        }
    }
}

impl Metrics {
    /// Adds the usage writer's metrics.
    pub(crate) fn register_usage(&mut self, stats: &crate::usage::UsageStats) {
        self.registry.register(
            "usage_records_unwritten",
            "Usage records queued or retried, not yet in the database",
            stats.unwritten.clone(),
        );
        self.registry.register(
            "usage_records_written",
            "Usage records written to the database",
            stats.written.clone(),
        );
        self.registry.register(
            "usage_records_dropped",
            "Usage records dropped: the database was away and the memory bound reached",
            stats.dropped.clone(),
        );
    }

    /// Adds the key service's count of stored keys that did not open.
    pub(crate) fn register_key_open_failures(&mut self, failures: &KeyOpenFailures) {
        self.registry.register(
            "key_open_failures",
            "Stored keys that did not open, by the master key id they were sealed with and whether this server lacks that id",
            failures.clone(),
        );
    }

    pub(crate) fn attempt(&self, provider: ProviderKind, outcome: &str) {
        self.attempts
            .get_or_create(&Attempt {
                provider: provider.as_str().to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn fallback(&self) {
        self.fallbacks.inc();
    }

    pub(crate) fn opened(&self, provider: ProviderKind) {
        self.openings
            .get_or_create(&Provider {
                provider: provider.as_str().to_owned(),
            })
            .inc();
    }

    pub(crate) fn answered(&self, provider: ProviderKind, latency: Duration, cost: Money) {
        let label = Provider {
            provider: provider.as_str().to_owned(),
        };
        self.latency
            .get_or_create(&label)
            .observe(latency.as_secs_f64());
        // Display only: the exact figures live in the usage records.
        self.spent(provider, cost);
    }

    pub(crate) fn spent(&self, provider: ProviderKind, cost: Money) {
        #[expect(clippy::cast_precision_loss, reason = "a metric, not an account")]
        self.spend
            .get_or_create(&Provider {
                provider: provider.as_str().to_owned(),
            })
            .inc_by(cost.picodollars() as f64 / 1e12);
    }

    /// Sets the circuit gauge from the tracker's state now.
    pub(crate) fn observe_circuits(&self, health: &byok_router::HealthTracker) {
        for provider in ProviderKind::ALL {
            for state in ["open", "half_open"] {
                self.circuits
                    .get_or_create(&CircuitState {
                        provider: provider.as_str().to_owned(),
                        state: state.to_owned(),
                    })
                    .set(0);
            }
        }
        for (provider, (open, half_open)) in health.circuit_counts(std::time::Instant::now()) {
            for (state, count) in [("open", open), ("half_open", half_open)] {
                self.circuits
                    .get_or_create(&CircuitState {
                        provider: provider.as_str().to_owned(),
                        state: state.to_owned(),
                    })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
    }

    /// The text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics could not be encoded");
        }
        out
    }
}
