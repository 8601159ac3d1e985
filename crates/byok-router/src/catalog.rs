//! The price catalog and routing policy: a versioned TOML file compiled into
//! the crate (`prices.toml`), which operators extend or override with their
//! own file.

use std::collections::BTreeMap;

use byok_core::{Capability, ProviderKind, Usage};
use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use serde::Deserialize;

use crate::{Money, Rate, RouteError, Task};

/// The catalog shipped with this version of byok.
pub const BUILTIN_CATALOG: &str = include_str!("../prices.toml");

/// Prices that apply off-peak (DeepSeek).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffPeak {
    /// Input, per 1M tokens.
    pub input: Rate,
    /// Cached input, per 1M tokens.
    pub cached_input: Option<Rate>,
    /// Output, per 1M tokens.
    pub output: Rate,
}

/// Prices that replace the base rates for a whole request whose input is
/// above a size (Gemini 2.5 Pro above 200K tokens, Anthropic long context).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    /// The tier applies when the request's input tokens are above this.
    pub above_input_tokens: u64,
    /// Input, per 1M tokens.
    pub input: Rate,
    /// Cached input, per 1M tokens; the tier's input price when absent.
    pub cached_input: Option<Rate>,
    /// Cache writes, per 1M tokens; the tier's input price when absent.
    pub cache_write: Option<Rate>,
    /// One-hour cache writes, per 1M tokens; `cache_write` when absent.
    pub cache_write_1h: Option<Rate>,
    /// Output, per 1M tokens.
    pub output: Rate,
}

/// The rates that apply to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// Input, per 1M tokens.
    pub input: Rate,
    /// Cache reads, per 1M tokens.
    pub cached_input: Rate,
    /// Five-minute cache writes, per 1M tokens.
    pub cache_write: Rate,
    /// One-hour cache writes, per 1M tokens.
    pub cache_write_1h: Rate,
    /// Output, per 1M tokens.
    pub output: Rate,
    /// Whether off-peak prices apply.
    pub off_peak: bool,
    /// The prompt-size tier that applies (its threshold), if any.
    pub tier_above: Option<u64>,
}

/// One model's prices and traits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// The provider that serves it.
    pub provider: ProviderKind,
    /// The provider's model id.
    pub model: String,
    /// Input, per 1M tokens.
    pub input: Rate,
    /// Cached input (cache reads), per 1M tokens; input price when absent.
    pub cached_input: Option<Rate>,
    /// Cache writes, per 1M tokens (Anthropic's five-minute writes); input
    /// price when absent.
    pub cache_write: Option<Rate>,
    /// One-hour cache writes, per 1M tokens (Anthropic); `cache_write` when absent.
    pub cache_write_1h: Option<Rate>,
    /// Output (reasoning included), per 1M tokens.
    pub output: Rate,
    /// Prices during the provider's off-peak hours, if it has them.
    pub off_peak: Option<OffPeak>,
    /// Higher prices for requests with a large prompt, lowest threshold first.
    #[serde(default)]
    pub tiers: Vec<PriceTier>,
    /// The day the provider stops serving the model, where announced
    /// (`YYYY-MM-DD`): the planner never routes to it from that day on.
    pub shutdown_date: Option<chrono::NaiveDate>,
    /// Largest prompt plus output, in tokens.
    pub context_window: u64,
    /// Most output tokens per answer, where the provider states it.
    #[serde(default)]
    pub max_output: Option<u64>,
    /// What the model can do beyond plain text chat: `tools`,
    /// `parallel_tools`, `vision`, `json_object`, `json_schema`,
    /// `reasoning`. A request using one is routed only to models listing it.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// The tasks it is good for.
    pub tasks: Vec<Task>,
    /// Quality tier: 1 basic, 2 strong, 3 frontier.
    pub tier: u8,
    /// When the price was read.
    pub as_of: String,
    /// Where the price was read.
    pub source: String,
}

/// When a provider's peak prices apply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeakSchedule {
    /// Days with peak hours (`mon` ... `sun`).
    pub days: Vec<String>,
    /// Peak windows in UTC, `HH:MM-HH:MM`.
    pub hours_utc: Vec<String>,
}

impl PeakSchedule {
    /// Whether peak prices apply at `at`.
    #[must_use]
    pub fn is_peak(&self, at: DateTime<Utc>) -> bool {
        let day = match at.weekday() {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        };
        if !self.days.iter().any(|d| d == day) {
            return false;
        }
        let minute = at.hour() * 60 + at.minute();
        self.hours_utc
            .iter()
            .filter_map(|w| parse_window(w))
            .any(|(from, to)| (from..to).contains(&minute))
    }
}

fn parse_window(text: &str) -> Option<(u32, u32)> {
    let (from, to) = text.split_once('-')?;
    let minutes = |t: &str| {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60).then_some(h * 60 + m)
    };
    Some((minutes(from)?, minutes(to)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyEntry {
    candidates: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Baseline {
    model: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: Option<String>,
    #[serde(default)]
    peak: BTreeMap<ProviderKind, PeakSchedule>,
    #[serde(default)]
    models: Vec<ModelPrice>,
    #[serde(default)]
    policy: BTreeMap<Task, PolicyEntry>,
    baseline: Option<Baseline>,
}

/// A model as the policy names it: provider and model id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelRef {
    /// The provider.
    pub provider: ProviderKind,
    /// The model id.
    pub model: String,
}

impl ModelRef {
    /// Parses `provider:model`.
    ///
    /// # Errors
    /// [`RouteError::BadModelRef`].
    pub fn parse(text: &str) -> Result<Self, RouteError> {
        let bad = || RouteError::BadModelRef(text.to_owned());
        let (provider, model) = text.split_once(':').ok_or_else(bad)?;
        let provider = provider.parse().map_err(|_| bad())?;
        if model.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            provider,
            model: model.to_owned(),
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.provider, self.model)
    }
}

/// Prices, peak schedules, the routing policy and the savings baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceCatalog {
    version: String,
    models: BTreeMap<(ProviderKind, String), ModelPrice>,
    peak: BTreeMap<ProviderKind, PeakSchedule>,
    policy: BTreeMap<Task, Vec<ModelRef>>,
    baseline: Option<ModelRef>,
}

impl PriceCatalog {
    /// The catalog compiled into this version of byok.
    ///
    /// # Panics
    /// Never: a test checks that the built-in file parses.
    #[must_use]
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_CATALOG)
            .unwrap_or_else(|e| unreachable!("the built-in catalog parses: {e}"))
    }

    /// Parses a catalog file and checks it: every policy candidate must be
    /// priced, and so must the baseline.
    ///
    /// # Errors
    /// [`RouteError::Catalog`] with the parser's position, or the first
    /// inconsistency.
    pub fn parse(text: &str) -> Result<Self, RouteError> {
        let file: CatalogFile =
            toml::from_str(text).map_err(|e| RouteError::Catalog(e.to_string()))?;
        let mut catalog = Self {
            version: file.version.unwrap_or_else(|| "unversioned".to_owned()),
            models: BTreeMap::new(),
            peak: file.peak,
            policy: BTreeMap::new(),
            baseline: None,
        };
        catalog.absorb(file.models, file.policy, file.baseline)?;
        catalog.check()?;
        Ok(catalog)
    }

    /// This catalog with `overrides` applied: models with the same provider
    /// and id are replaced, new ones added; a task's policy, the peak
    /// schedules and the baseline are replaced when the override names them.
    ///
    /// # Errors
    /// As [`PriceCatalog::parse`].
    pub fn with_overrides(mut self, overrides: &str) -> Result<Self, RouteError> {
        let file: CatalogFile =
            toml::from_str(overrides).map_err(|e| RouteError::Catalog(e.to_string()))?;
        if let Some(version) = file.version {
            self.version = format!("{}+{version}", self.version);
        }
        self.peak.extend(file.peak);
        self.absorb(file.models, file.policy, file.baseline)?;
        self.check()?;
        Ok(self)
    }

    fn absorb(
        &mut self,
        models: Vec<ModelPrice>,
        policy: BTreeMap<Task, PolicyEntry>,
        baseline: Option<Baseline>,
    ) -> Result<(), RouteError> {
        for model in models {
            self.models
                .insert((model.provider, model.model.clone()), model);
        }
        for (task, entry) in policy {
            let refs = entry
                .candidates
                .iter()
                .map(|c| ModelRef::parse(c))
                .collect::<Result<_, _>>()?;
            self.policy.insert(task, refs);
        }
        if let Some(baseline) = baseline {
            self.baseline = Some(ModelRef::parse(&baseline.model)?);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), RouteError> {
        for candidates in self.policy.values() {
            for candidate in candidates {
                if self.get(candidate.provider, &candidate.model).is_none() {
                    return Err(RouteError::Catalog(format!(
                        "policy names {candidate}, which has no price"
                    )));
                }
            }
        }
        if let Some(baseline) = &self.baseline
            && self.get(baseline.provider, &baseline.model).is_none()
        {
            return Err(RouteError::Catalog(format!(
                "baseline {baseline} has no price"
            )));
        }
        for model in self.models.values() {
            if !(1..=3).contains(&model.tier) {
                return Err(RouteError::Catalog(format!(
                    "{}:{} has tier {}, not 1 to 3",
                    model.provider, model.model, model.tier
                )));
            }
        }
        Ok(())
    }

    /// The catalog's version (`2026-11-27`, or `builtin+override`).
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The prices of `provider`'s `model`.
    #[must_use]
    pub fn get(&self, provider: ProviderKind, model: &str) -> Option<&ModelPrice> {
        self.models.get(&(provider, model.to_owned()))
    }

    /// Every priced model.
    pub fn models(&self) -> impl Iterator<Item = &ModelPrice> {
        self.models.values()
    }

    /// The models the policy names for `task`, in order.
    #[must_use]
    pub fn candidates(&self, task: &Task) -> &[ModelRef] {
        self.policy.get(task).map_or(&[], Vec::as_slice)
    }

    /// The tasks the policy knows.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.policy.keys()
    }

    /// The model savings are measured against.
    #[must_use]
    pub fn baseline(&self) -> Option<&ModelRef> {
        self.baseline.as_ref()
    }

    /// Replaces the baseline.
    ///
    /// # Errors
    /// [`RouteError::Unpriced`] when the model has no price.
    pub fn with_baseline(mut self, baseline: ModelRef) -> Result<Self, RouteError> {
        if self.get(baseline.provider, &baseline.model).is_none() {
            return Err(RouteError::Unpriced(baseline.to_string()));
        }
        self.baseline = Some(baseline);
        Ok(self)
    }

    /// The rates for a request of `input_tokens` on `price` at `at`: the
    /// prompt-size tier it falls in, or off-peak rates when the provider is
    /// off-peak, or the base rates.
    #[must_use]
    pub fn rates(&self, price: &ModelPrice, input_tokens: u64, at: DateTime<Utc>) -> Rates {
        let tier = price
            .tiers
            .iter()
            .filter(|t| input_tokens > t.above_input_tokens)
            .max_by_key(|t| t.above_input_tokens);
        if let Some(tier) = tier {
            let write = tier.cache_write.unwrap_or(tier.input);
            return Rates {
                input: tier.input,
                cached_input: tier.cached_input.unwrap_or(tier.input),
                cache_write: write,
                cache_write_1h: tier.cache_write_1h.unwrap_or(write),
                output: tier.output,
                off_peak: false,
                tier_above: Some(tier.above_input_tokens),
            };
        }
        let write = price.cache_write.unwrap_or(price.input);
        let base = Rates {
            input: price.input,
            cached_input: price.cached_input.unwrap_or(price.input),
            cache_write: write,
            cache_write_1h: price.cache_write_1h.unwrap_or(write),
            output: price.output,
            off_peak: false,
            tier_above: None,
        };
        match (&price.off_peak, self.peak.get(&price.provider)) {
            (Some(off), Some(schedule)) if !schedule.is_peak(at) => Rates {
                input: off.input,
                cached_input: off.cached_input.unwrap_or(off.input),
                output: off.output,
                off_peak: true,
                ..base
            },
            _ => base,
        }
    }

    /// When `provider`'s peak prices apply, if it has off-peak prices.
    #[must_use]
    pub fn peak_schedule(&self, provider: ProviderKind) -> Option<&PeakSchedule> {
        self.peak.get(&provider)
    }

    /// What `usage` cost on `provider`'s `model` at `at`, following the
    /// normalised accounting of [`Usage`]: cached input and cache writes at
    /// their own rates, the rest of the input at the input rate, all output
    /// (reasoning included) at the output rate.
    ///
    /// # Errors
    /// [`RouteError::Unpriced`]: a model without a price is never free.
    pub fn cost(
        &self,
        provider: ProviderKind,
        model: &str,
        usage: &Usage,
        at: DateTime<Utc>,
    ) -> Result<Money, RouteError> {
        let price = self
            .get(provider, model)
            .ok_or_else(|| RouteError::Unpriced(format!("{provider}:{model}")))?;
        let rates = self.rates(price, usage.input_tokens, at);
        let cached_tokens = usage.cached_input_tokens.min(usage.input_tokens);
        let write_tokens = usage
            .cache_write_tokens
            .min(usage.input_tokens - cached_tokens);
        let write_1h = usage.cache_write_1h_tokens.min(write_tokens);
        let plain = usage.input_tokens - cached_tokens - write_tokens;
        Ok(rates.input.cost(plain)
            + rates.cached_input.cost(cached_tokens)
            + rates.cache_write.cost(write_tokens - write_1h)
            + rates.cache_write_1h.cost(write_1h)
            + rates.output.cost(usage.output_tokens))
    }

    /// What a request of `input_tokens` in and `output_tokens` out would
    /// cost, with no cache hits.
    ///
    /// # Errors
    /// [`RouteError::Unpriced`].
    pub fn estimate(
        &self,
        provider: ProviderKind,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
        at: DateTime<Utc>,
    ) -> Result<Money, RouteError> {
        let usage = Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        };
        self.cost(provider, model, &usage, at)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    #[test]
    fn the_builtin_catalog_parses_and_prices_every_policy_candidate() {
        let catalog = PriceCatalog::builtin();
        assert_eq!(catalog.version(), "2026-11-30");
        for task in ["general", "code", "reasoning", "embeddings"] {
            assert!(
                !catalog.candidates(&Task::new(task).unwrap()).is_empty(),
                "{task}"
            );
        }
        assert_eq!(catalog.baseline().unwrap().to_string(), "openai:gpt-5.4");
        assert_eq!(
            catalog
                .get(ProviderKind::OpenAi, "gpt-4o-mini")
                .unwrap()
                .input
                .to_string(),
            "0.15"
        );
    }

    #[test]
    fn costs_follow_each_providers_accounting() {
        let catalog = PriceCatalog::builtin();
        let monday_peak = at(2026, 11, 23, 2);
        // OpenAI gpt-4o-mini: 1,000 input of which 400 cached, 500 output of which 200 reasoning.
        let usage = Usage {
            input_tokens: 1_000,
            cached_input_tokens: 400,
            output_tokens: 500,
            reasoning_tokens: 200,
            ..Usage::default()
        };
        let cost = catalog
            .cost(ProviderKind::OpenAi, "gpt-4o-mini", &usage, monday_peak)
            .unwrap();
        // 600 x 0.15 + 400 x 0.075 + 500 x 0.60 micro-dollars per million tokens, in picodollars:
        assert_eq!(
            cost.picodollars(),
            600 * 150_000 + 400 * 75_000 + 500 * 600_000
        );
        // Anthropic: cache writes at their own rate.
        let usage = Usage {
            input_tokens: 1_114,
            cached_input_tokens: 1_000,
            cache_write_tokens: 100,
            output_tokens: 5,
            ..Usage::default()
        };
        let cost = catalog
            .cost(
                ProviderKind::Anthropic,
                "claude-sonnet-4-6",
                &usage,
                monday_peak,
            )
            .unwrap();
        assert_eq!(
            cost.picodollars(),
            14 * 3_000_000 + 1_000 * 300_000 + 100 * 3_750_000 + 5 * 15_000_000
        );
    }

    #[test]
    fn a_large_prompt_bills_the_whole_request_at_its_tier() {
        let catalog = PriceCatalog::builtin();
        let cost = |input_tokens| {
            catalog
                .cost(
                    ProviderKind::Gemini,
                    "gemini-2.5-pro",
                    &Usage {
                        input_tokens,
                        cached_input_tokens: 1_000,
                        output_tokens: 1_000,
                        ..Usage::default()
                    },
                    at(2026, 11, 23, 2),
                )
                .unwrap()
                .picodollars()
        };
        // At 200,000 input tokens: 199,000 x 1.25 + 1,000 x 0.125 + 1,000 x 10.00 per million.
        assert_eq!(
            cost(200_000),
            199_000 * 1_250_000 + 1_000 * 125_000 + 1_000 * 10_000_000
        );
        // One more token: the whole request at 2.50 / 0.25 / 15.00.
        assert_eq!(
            cost(200_001),
            199_001 * 2_500_000 + 1_000 * 250_000 + 1_000 * 15_000_000
        );
    }

    #[test]
    fn one_hour_cache_writes_have_their_own_rate() {
        let catalog = PriceCatalog::builtin();
        let usage = Usage {
            input_tokens: 1_000,
            cache_write_tokens: 1_000,
            cache_write_1h_tokens: 250,
            ..Usage::default()
        };
        let cost = catalog
            .cost(
                ProviderKind::Anthropic,
                "claude-sonnet-4-6",
                &usage,
                at(2026, 11, 23, 2),
            )
            .unwrap();
        assert_eq!(cost.picodollars(), 750 * 3_750_000 + 250 * 6_000_000);
    }

    #[test]
    fn deepseek_is_half_price_off_peak() {
        let catalog = PriceCatalog::builtin();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            ..Usage::default()
        };
        let peak = catalog
            .cost(
                ProviderKind::DeepSeek,
                "deepseek-flash",
                &usage,
                at(2026, 11, 23, 2),
            )
            .unwrap();
        let evening = catalog
            .cost(
                ProviderKind::DeepSeek,
                "deepseek-flash",
                &usage,
                at(2026, 11, 23, 12),
            )
            .unwrap();
        let saturday = catalog
            .cost(
                ProviderKind::DeepSeek,
                "deepseek-flash",
                &usage,
                at(2026, 11, 28, 2),
            )
            .unwrap();
        assert_eq!(peak.to_usd_string(), "1.5");
        assert_eq!(evening.to_usd_string(), "0.75");
        assert_eq!(saturday, evening);
    }

    #[test]
    fn an_unpriced_model_is_an_error_not_free() {
        let catalog = PriceCatalog::builtin();
        let err = catalog
            .estimate(ProviderKind::OpenAi, "gpt-99", 10, 10, Utc::now())
            .unwrap_err();
        assert!(matches!(err, RouteError::Unpriced(ref m) if m == "openai:gpt-99"));
    }

    #[test]
    fn overrides_replace_and_extend_with_clear_errors() {
        let catalog = PriceCatalog::builtin()
            .with_overrides(
                r#"
                version = "acme-1"
                [[models]]
                provider = "openai"
                model = "gpt-4o-mini"
                input = "0.10"
                output = "0.40"
                context_window = 128000
                tasks = ["general"]
                tier = 1
                as_of = "2026-12-01"
                source = "negotiated"
                [policy.general]
                candidates = ["openai:gpt-4o-mini"]
                "#,
            )
            .unwrap();
        assert_eq!(catalog.version(), "2026-11-30+acme-1");
        assert_eq!(
            catalog
                .get(ProviderKind::OpenAi, "gpt-4o-mini")
                .unwrap()
                .input
                .to_string(),
            "0.1"
        );
        assert_eq!(catalog.candidates(&Task::new("general").unwrap()).len(), 1);
        assert_eq!(
            catalog.candidates(&Task::new("code").unwrap()).len(),
            5,
            "other tasks are kept"
        );

        for (bad, expected) in [
            (
                "[policy.general]\ncandidates = [\"openai:gpt-99\"]",
                "has no price",
            ),
            (
                "[policy.general]\ncandidates = [\"nobody:x\"]",
                "provider:model",
            ),
            (
                "[[models]]\nprovider = \"openai\"\nmodel = \"x\"\ninput = \"1.2345678\"\noutput = \"1\"\ncontext_window = 1\ntasks = []\ntier = 1\nas_of = \"\"\nsource = \"\"",
                "price",
            ),
            ("bogus = 1", "unknown field"),
        ] {
            let err = PriceCatalog::builtin()
                .with_overrides(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
