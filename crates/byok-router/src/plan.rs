//! Route planning: given a user's keys, a task, the request's size, health
//! and preferences, an ordered list of candidates — cheapest estimated cost
//! first among healthy providers with working keys — and why every other
//! option was left out.

use std::fmt;
use std::fmt::Write as _;

use byok_core::{Capability, KeyStatus, ProviderKind, Unsupported};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{HealthSnapshot, Money, PriceCatalog, Task};

/// A key the user has, and what its last test said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// The provider.
    pub provider: ProviderKind,
    /// The last test's result; `None` when untested.
    pub status: Option<KeyStatus>,
}

/// A user's routing preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    /// Providers to try first, in this order, whatever they cost.
    pub preferred: Vec<ProviderKind>,
    /// Providers never to use.
    pub excluded: Vec<ProviderKind>,
    /// The most one request may be estimated to cost.
    pub max_cost: Option<Money>,
}

/// What to plan for.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// The task; its policy names the candidate models.
    pub task: &'a Task,
    /// Instead of the task's policy: exactly this model id, on whichever of
    /// the user's providers serve it.
    pub model: Option<&'a str>,
    /// The user's keys.
    pub keys: &'a [KeyInfo],
    /// Estimated input tokens.
    pub input_tokens: u64,
    /// The output budget (max output tokens).
    pub max_output_tokens: u64,
    /// Whether `max_output_tokens` is only a ceiling: a model with a lower
    /// output limit is planned (and priced) at its own limit, not skipped.
    pub output_ceiling: bool,
    /// The user's preferences.
    pub preferences: &'a Preferences,
    /// When the request is made (prices can depend on the hour).
    pub at: DateTime<Utc>,
    /// What the model must be able to do (tools, vision, ...).
    pub needs: &'a [Capability],
    /// Providers whose adapter cannot carry a field of the request, and which field.
    pub refused: &'a [(ProviderKind, Unsupported)],
}

/// Why a candidate is where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rank {
    /// A preferred provider, in the user's order.
    Preferred,
    /// Ordered by estimated cost.
    Cost,
}

/// One provider and model to try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The provider.
    pub provider: ProviderKind,
    /// The model id.
    pub model: String,
    /// What the request is estimated to cost here.
    pub estimated_cost: Money,
    /// The model's quality tier.
    pub tier: u8,
    /// Whether this call would be the half-open circuit's probe.
    pub probe: bool,
    /// Why it is where it is.
    pub rank: Rank,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} estimated {}",
            self.provider, self.model, self.estimated_cost
        )?;
        match self.rank {
            Rank::Preferred => f.write_str(" (preferred provider)")?,
            Rank::Cost => f.write_str(" (ordered by cost)")?,
        }
        if self.probe {
            f.write_str(", probing a recovering provider")?;
        }
        Ok(())
    }
}

/// Why an option was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum SkipReason {
    /// The user has no key for the provider.
    NoKey,
    /// The key was rejected (by a test or a call).
    KeyInvalid,
    /// The key is accepted but its settings keep it from serving (its last
    /// test says how to fix them).
    KeyMisconfigured,
    /// The key's account is out of credit.
    NoCredit,
    /// The circuit is open after recent failures.
    CircuitOpen {
        /// Milliseconds until a probe is allowed.
        remaining_ms: u64,
    },
    /// The provider asked to wait (rate limited) and the wait is not over.
    RateLimited {
        /// Milliseconds until it may be called again.
        remaining_ms: u64,
    },
    /// The user excluded the provider.
    Excluded,
    /// The token the request came with may not use this model.
    NotInTokenScope,
    /// The estimate is above the user's maximum.
    OverBudget {
        /// The estimate.
        estimated_cost: Money,
    },
    /// The request does not fit the model's context window.
    ContextTooSmall {
        /// The window, in tokens.
        context_window: u64,
    },
    /// The catalog has no price for the model.
    Unpriced,
    /// The model lacks a capability the request uses.
    Lacks {
        /// The capability.
        capability: Capability,
    },
    /// The provider cannot carry a field of the request.
    Refuses {
        /// The field and why.
        #[serde(flatten)]
        unsupported: Unsupported,
    },
    /// The provider has shut the model down.
    Retired {
        /// The day it stopped.
        shutdown_date: chrono::NaiveDate,
    },
    /// The request's output limit is above the model's.
    OutputTooLarge {
        /// The model's most output tokens.
        max_output: u64,
    },
}

impl SkipReason {
    /// Whether the request itself, not the provider's state, rules the
    /// option out: another moment would not change it.
    #[must_use]
    pub fn is_request_mismatch(&self) -> bool {
        matches!(
            self,
            Self::Lacks { .. } | Self::Refuses { .. } | Self::OutputTooLarge { .. }
        )
    }
}

/// An option left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The provider.
    pub provider: ProviderKind,
    /// The model id.
    pub model: String,
    /// Why.
    #[serde(flatten)]
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} skipped: ", self.provider, self.model)?;
        match &self.reason {
            SkipReason::NoKey => f.write_str("no key for this provider"),
            SkipReason::KeyInvalid => f.write_str("the key was rejected"),
            SkipReason::KeyMisconfigured => {
                f.write_str("the key's settings keep it from serving; test it for the fix")
            }
            SkipReason::NoCredit => f.write_str("the account is out of credit"),
            SkipReason::CircuitOpen { remaining_ms } => write!(
                f,
                "recent failures; retried in {} s",
                remaining_ms.div_ceil(1000)
            ),
            SkipReason::RateLimited { remaining_ms } => write!(
                f,
                "rate limited by the provider; retried in {} s",
                remaining_ms.div_ceil(1000)
            ),
            SkipReason::Excluded => f.write_str("excluded by preference"),
            SkipReason::NotInTokenScope => f.write_str("not allowed for this token"),
            SkipReason::OverBudget { estimated_cost } => {
                write!(f, "estimated {estimated_cost}, over the maximum")
            }
            SkipReason::ContextTooSmall { context_window } => {
                write!(f, "request exceeds its {context_window}-token context")
            }
            SkipReason::Unpriced => f.write_str("no price in the catalog"),
            SkipReason::Lacks { capability } => {
                write!(f, "the model has no {capability} capability")
            }
            SkipReason::Refuses { unsupported } => write!(f, "cannot carry {unsupported}"),
            SkipReason::Retired { shutdown_date } => {
                write!(f, "the provider shut the model down on {shutdown_date}")
            }
            SkipReason::OutputTooLarge { max_output } => {
                write!(
                    f,
                    "the output limit is above the model's {max_output} tokens"
                )
            }
        }
    }
}

/// An ordered plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoutePlan {
    /// What to try, in order.
    pub candidates: Vec<Candidate>,
    /// What was left out, and why.
    pub skipped: Vec<Skipped>,
}

impl RoutePlan {
    /// One line per candidate and per skipped option.
    #[must_use]
    pub fn explain(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.candidates.iter().enumerate() {
            let _ = writeln!(out, "{}. {c}", i + 1);
        }
        for s in &self.skipped {
            let _ = writeln!(out, "-  {s}");
        }
        out
    }
}

/// Plans routes over a price catalog. Pure and synchronous: no I/O, no clock.
#[derive(Debug, Clone)]
pub struct RoutePlanner {
    catalog: PriceCatalog,
}

impl RoutePlanner {
    /// A planner over `catalog`.
    #[must_use]
    pub fn new(catalog: PriceCatalog) -> Self {
        Self { catalog }
    }

    /// The catalog.
    #[must_use]
    pub fn catalog(&self) -> &PriceCatalog {
        &self.catalog
    }

    /// Plans `request` given `health`.
    #[must_use]
    pub fn plan(&self, request: &RouteRequest<'_>, health: &HealthSnapshot) -> RoutePlan {
        let mut plan = RoutePlan::default();
        let options: Vec<(ProviderKind, &str)> = match request.model {
            Some(model) => self
                .catalog
                .models()
                .filter(|m| m.model == model)
                .map(|m| (m.provider, m.model.as_str()))
                .collect(),
            None => self
                .catalog
                .candidates(request.task)
                .iter()
                .map(|r| (r.provider, r.model.as_str()))
                .collect(),
        };
        let mut seen_provider = Vec::with_capacity(options.len());
        for (provider, model) in options {
            // One model per provider: the policy's first for that provider.
            if seen_provider.contains(&provider) {
                continue;
            }
            let skip = |reason| Skipped {
                provider,
                model: model.to_owned(),
                reason,
            };
            let Some(key) = request.keys.iter().find(|k| k.provider == provider) else {
                plan.skipped.push(skip(SkipReason::NoKey));
                continue;
            };
            match self.evaluate(request, health, provider, model, *key) {
                Ok(candidate) => {
                    seen_provider.push(provider);
                    plan.candidates.push(candidate);
                }
                Err(reason) => {
                    // A model that cannot do this request (or is retired) leaves
                    // the provider's next model in the policy to be tried; any
                    // other reason rules the provider out.
                    if !reason.is_request_mismatch()
                        && !matches!(reason, SkipReason::Retired { .. })
                    {
                        seen_provider.push(provider);
                    }
                    plan.skipped.push(skip(reason));
                }
            }
        }
        let preference = |p: ProviderKind| {
            request
                .preferences
                .preferred
                .iter()
                .position(|x| *x == p)
                .unwrap_or(usize::MAX)
        };
        plan.candidates.sort_by(|a, b| {
            preference(a.provider)
                .cmp(&preference(b.provider))
                .then(a.estimated_cost.cmp(&b.estimated_cost))
                .then(b.tier.cmp(&a.tier))
                .then(a.provider.cmp(&b.provider))
        });
        plan
    }

    /// One option: a candidate, or why it is left out.
    fn evaluate(
        &self,
        request: &RouteRequest<'_>,
        health: &HealthSnapshot,
        provider: ProviderKind,
        model: &str,
        key: KeyInfo,
    ) -> Result<Candidate, SkipReason> {
        if request.preferences.excluded.contains(&provider) {
            return Err(SkipReason::Excluded);
        }
        if let Some((_, unsupported)) = request.refused.iter().find(|(p, _)| *p == provider) {
            return Err(SkipReason::Refuses {
                unsupported: unsupported.clone(),
            });
        }
        if let Some(price) = self.catalog.get(provider, model) {
            if let Some(shutdown_date) = price.shutdown_date
                && request.at.date_naive() >= shutdown_date
            {
                return Err(SkipReason::Retired { shutdown_date });
            }
            if let Some(capability) = request
                .needs
                .iter()
                .find(|c| !price.capabilities.contains(c))
            {
                return Err(SkipReason::Lacks {
                    capability: *capability,
                });
            }
            if let Some(max_output) = price.max_output
                && request.max_output_tokens > max_output
                && !request.output_ceiling
            {
                return Err(SkipReason::OutputTooLarge { max_output });
            }
        }
        match key.status {
            Some(KeyStatus::Invalid) => return Err(SkipReason::KeyInvalid),
            Some(KeyStatus::Misconfigured) => return Err(SkipReason::KeyMisconfigured),
            Some(KeyStatus::NoCredit) => return Err(SkipReason::NoCredit),
            _ => {}
        }
        let state = health.get(provider);
        if state.key_rejected {
            return Err(SkipReason::KeyInvalid);
        }
        if let crate::Circuit::Open { remaining_ms } = state.circuit {
            return Err(if state.rate_limited {
                SkipReason::RateLimited { remaining_ms }
            } else {
                SkipReason::CircuitOpen { remaining_ms }
            });
        }
        let price = self
            .catalog
            .get(provider, model)
            .ok_or(SkipReason::Unpriced)?;
        let max_output_tokens = match price.max_output {
            Some(most) if request.output_ceiling => request.max_output_tokens.min(most),
            _ => request.max_output_tokens,
        };
        if request.input_tokens.saturating_add(max_output_tokens) > price.context_window {
            return Err(SkipReason::ContextTooSmall {
                context_window: price.context_window,
            });
        }
        let estimated_cost = self
            .catalog
            .estimate(
                provider,
                model,
                request.input_tokens,
                max_output_tokens,
                request.at,
            )
            .map_err(|_| SkipReason::Unpriced)?;
        if request
            .preferences
            .max_cost
            .is_some_and(|max| estimated_cost > max)
        {
            return Err(SkipReason::OverBudget { estimated_cost });
        }
        let preferred = request.preferences.preferred.contains(&provider);
        Ok(Candidate {
            provider,
            model: model.to_owned(),
            estimated_cost,
            tier: price.tier,
            probe: matches!(state.circuit, crate::Circuit::HalfOpen),
            rank: if preferred {
                Rank::Preferred
            } else {
                Rank::Cost
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use byok_core::UserId;
    use chrono::TimeZone;

    use super::*;
    use crate::{HealthTracker, Outcome};

    fn all_keys() -> Vec<KeyInfo> {
        ProviderKind::ALL
            .iter()
            .map(|p| KeyInfo {
                provider: *p,
                status: Some(KeyStatus::Valid),
            })
            .collect()
    }

    fn monday_peak() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap()
    }

    fn plan_for(
        keys: &[KeyInfo],
        prefs: &Preferences,
        health: &HealthSnapshot,
        task: &str,
    ) -> RoutePlan {
        let planner = RoutePlanner::new(PriceCatalog::builtin());
        let task = Task::new(task).unwrap();
        let request = RouteRequest {
            task: &task,
            model: None,
            keys,
            input_tokens: 1_000,
            max_output_tokens: 500,
            output_ceiling: false,
            preferences: prefs,
            at: monday_peak(),
            needs: &[],
            refused: &[],
        };
        planner.plan(&request, health)
    }

    fn order(plan: &RoutePlan) -> Vec<String> {
        plan.candidates
            .iter()
            .map(|c| format!("{}:{}", c.provider, c.model))
            .collect()
    }

    #[test]
    fn a_provider_s_next_model_serves_what_its_first_cannot_and_retired_models_never_do() {
        let catalog = PriceCatalog::builtin()
            .with_overrides(
                r#"
                [[models]]
                provider = "openai"
                model = "gpt-old"
                input = "0.01"
                output = "0.01"
                context_window = 100000
                capabilities = ["tools", "reasoning"]
                tasks = ["general"]
                tier = 1
                shutdown_date = "2026-11-01"
                as_of = "2026-11-01"
                source = "test"
                [policy.general]
                candidates = ["openai:gpt-old", "openai:gpt-4o-mini", "openai:gpt-5-mini"]
                "#,
            )
            .unwrap();
        let planner = RoutePlanner::new(catalog);
        let task = Task::general();
        let keys = [KeyInfo {
            provider: ProviderKind::OpenAi,
            status: None,
        }];
        let prefs = Preferences::default();
        let plan = |needs: &[Capability]| {
            planner.plan(
                &RouteRequest {
                    task: &task,
                    model: None,
                    keys: &keys,
                    input_tokens: 1_000,
                    max_output_tokens: 500,
                    output_ceiling: false,
                    preferences: &prefs,
                    at: monday_peak(),
                    needs,
                    refused: &[],
                },
                &HealthSnapshot::default(),
            )
        };
        // gpt-old is past its shutdown: the next model serves plain text.
        let text_only = plan(&[]);
        assert_eq!(order(&text_only), ["openai:gpt-4o-mini"]);
        assert!(matches!(
            text_only.skipped[0].reason,
            SkipReason::Retired { .. }
        ));
        // gpt-4o-mini does not reason: gpt-5-mini does.
        let reasoning = plan(&[Capability::Reasoning]);
        assert_eq!(order(&reasoning), ["openai:gpt-5-mini"]);
        assert_eq!(
            reasoning.skipped[1].reason,
            SkipReason::Lacks {
                capability: Capability::Reasoning
            }
        );
    }

    #[test]
    fn cheapest_first_with_every_provider() {
        let plan = plan_for(
            &all_keys(),
            &Preferences::default(),
            &HealthSnapshot::default(),
            "general",
        );
        // 1,000 in + 500 out: gemini-2.5-flash-lite 0.0003, gpt-4o-mini 0.00045 (openai, tie-broken by
        // provider order with azure), deepseek-flash 0.0009, claude-haiku-4-5 0.0035.
        assert_eq!(
            order(&plan),
            [
                "gemini:gemini-2.5-flash-lite",
                "openai:gpt-4o-mini",
                "azure_openai:gpt-4o-mini",
                "deepseek:deepseek-flash",
                "anthropic:claude-haiku-4-5"
            ]
        );
        assert_eq!(plan.candidates[0].estimated_cost.to_usd_string(), "0.0003");
        assert!(plan.skipped.is_empty());
        assert!(
            plan.explain()
                .starts_with("1. gemini:gemini-2.5-flash-lite estimated $0.0003 (ordered by cost)")
        );
    }

    #[test]
    fn missing_invalid_excluded_open_and_over_budget_are_explained() {
        let keys = [
            KeyInfo {
                provider: ProviderKind::OpenAi,
                status: Some(KeyStatus::Invalid),
            },
            KeyInfo {
                provider: ProviderKind::DeepSeek,
                status: None,
            },
            KeyInfo {
                provider: ProviderKind::Anthropic,
                status: Some(KeyStatus::Valid),
            },
            KeyInfo {
                provider: ProviderKind::Gemini,
                status: Some(KeyStatus::NoCredit),
            },
        ];
        let tracker = HealthTracker::default();
        let user = UserId::parse("alice").unwrap();
        let now = Instant::now();
        for _ in 0..3 {
            tracker.record(
                &user,
                ProviderKind::DeepSeek,
                Outcome::Failure { retry_after: None },
                now,
            );
        }
        let prefs = Preferences {
            max_cost: Some(Money::from_picodollars(1_000_000_000)),
            ..Preferences::default()
        };
        let plan = plan_for(
            &keys,
            &prefs,
            &tracker.snapshot(&user, now + Duration::from_secs(1)),
            "general",
        );
        assert!(plan.candidates.is_empty());
        let reasons: Vec<String> = plan.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            [
                "openai:gpt-4o-mini skipped: the key was rejected",
                "deepseek:deepseek-flash skipped: recent failures; retried in 29 s",
                "anthropic:claude-haiku-4-5 skipped: estimated $0.0035, over the maximum",
                "gemini:gemini-2.5-flash-lite skipped: the account is out of credit",
                "azure_openai:gpt-4o-mini skipped: no key for this provider",
            ]
        );
    }

    #[test]
    fn preferred_providers_come_first_and_excluded_never() {
        let prefs = Preferences {
            preferred: vec![ProviderKind::Anthropic],
            excluded: vec![ProviderKind::Gemini],
            max_cost: None,
        };
        let plan = plan_for(&all_keys(), &prefs, &HealthSnapshot::default(), "general");
        assert_eq!(plan.candidates[0].provider, ProviderKind::Anthropic);
        assert_eq!(plan.candidates[0].rank, Rank::Preferred);
        assert!(
            plan.candidates
                .iter()
                .all(|c| c.provider != ProviderKind::Gemini)
        );
        assert_eq!(plan.skipped[0].reason, SkipReason::Excluded);
    }

    #[test]
    fn a_pinned_model_goes_to_the_providers_that_serve_it() {
        let planner = RoutePlanner::new(PriceCatalog::builtin());
        let task = Task::general();
        let keys = all_keys();
        let prefs = Preferences::default();
        let request = RouteRequest {
            task: &task,
            model: Some("gpt-4o-mini"),
            keys: &keys,
            input_tokens: 10,
            max_output_tokens: 10,
            output_ceiling: false,
            preferences: &prefs,
            at: monday_peak(),
            needs: &[],
            refused: &[],
        };
        let plan = planner.plan(&request, &HealthSnapshot::default());
        let providers: Vec<_> = plan.candidates.iter().map(|c| c.provider).collect();
        assert_eq!(providers, [ProviderKind::OpenAi, ProviderKind::AzureOpenAi]);
    }

    #[test]
    fn requests_beyond_the_context_window_are_skipped() {
        let planner = RoutePlanner::new(PriceCatalog::builtin());
        let task = Task::general();
        let keys = all_keys();
        let prefs = Preferences::default();
        let request = RouteRequest {
            task: &task,
            model: None,
            keys: &keys,
            input_tokens: 500_000,
            max_output_tokens: 1_000,
            output_ceiling: false,
            preferences: &prefs,
            at: monday_peak(),
            needs: &[],
            refused: &[],
        };
        let plan = planner.plan(&request, &HealthSnapshot::default());
        assert_eq!(
            order(&plan),
            ["gemini:gemini-2.5-flash-lite", "deepseek:deepseek-flash"]
        );
        assert!(plan.skipped.iter().any(|s| matches!(
            s.reason,
            SkipReason::ContextTooSmall {
                context_window: 128_000
            }
        )));
    }
}
