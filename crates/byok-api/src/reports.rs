//! What the user sees of routing, health and spend: the route chain per
//! task, the status of each provider, and usage with savings against the
//! baseline model. No HTTP types.

use std::collections::BTreeMap;
use std::time::Instant;

use byok_core::{KeyStatus, ProviderKind, Usage, UserId};
use byok_router::{Circuit, KeyInfo, Money, Preferences, RouteRequest, Task};
use byok_store::keys;
use byok_store::usage::{self, UsageRecord};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ServiceError;
use crate::gateway::Gateway;
use crate::service::{Principal, RequestContext};

/// One link of a route chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChainLink {
    /// The provider.
    #[schema(value_type = String)]
    pub provider: ProviderKind,
    /// The model.
    pub model: String,
    /// Input price that applies now, USD per 1M tokens.
    pub input_usd_per_million: String,
    /// Output price that applies now, USD per 1M tokens.
    pub output_usd_per_million: String,
    /// Cache reads, USD per 1M tokens, now.
    pub cached_input_usd_per_million: String,
    /// Cache writes (five-minute; Anthropic), USD per 1M tokens, now.
    pub cache_write_usd_per_million: String,
    /// When other prices apply: off-peak hours, prompt-size tiers.
    pub price_rules: Vec<String>,
    /// The day the provider retires the model, if announced.
    pub shutdown_date: Option<String>,
    /// The provider's circuit for this user.
    #[schema(value_type = Object)]
    pub circuit: Circuit,
    /// What the model can do beyond plain text (`tools`, `parallel_tools`,
    /// `vision`, `json_object`, `json_schema`, `reasoning`).
    #[schema(value_type = Vec<String>)]
    pub capabilities: Vec<byok_core::Capability>,
}

/// The chain for one task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskRoute {
    /// The task.
    pub task: String,
    /// Providers in the order they would be tried now (first serves).
    pub chain: Vec<ChainLink>,
    /// Options left out, and why.
    pub skipped: Vec<String>,
}

/// The body of `GET …/services`: one chain per task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Services {
    /// The chains, one per task.
    pub tasks: Vec<TaskRoute>,
}

/// One provider's status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderStatus {
    /// The provider.
    #[schema(value_type = String)]
    pub provider: ProviderKind,
    /// Whether the user saved a key.
    pub configured: bool,
    /// Whether it can serve now: configured, not rejected, circuit not open.
    pub working: bool,
    /// The masked key.
    pub masked_key: Option<String>,
    /// The last key test.
    #[schema(value_type = Option<String>)]
    pub last_test_status: Option<KeyStatus>,
    /// When it ran.
    pub last_tested_at: Option<DateTime<Utc>>,
    /// The circuit.
    #[schema(value_type = Object)]
    pub circuit: Circuit,
    /// Failures among recent calls, in percent.
    pub error_rate_percent: u32,
    /// Recent calls counted.
    pub recent_calls: usize,
    /// Smoothed latency of recent successes.
    pub latency_ms: Option<u64>,
}

/// The status page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Status {
    /// Providers with a key.
    pub configured: usize,
    /// Providers that can serve now.
    pub working: usize,
    /// Spend since the start of the month (UTC), in USD.
    pub spend_this_month_usd: String,
    /// Every provider.
    pub providers: Vec<ProviderStatus>,
    /// Models in the user's routes that their provider retires within 30
    /// days (or has retired), in words.
    pub retiring: Vec<String>,
    /// The user's budgets, with what is spent and reserved in each one's
    /// current period.
    pub budgets: Vec<crate::service::BudgetView>,
}

/// Totals for one group of usage records.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct UsageTotals {
    /// Requests answered.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Spend, USD: exact and estimated costs together.
    pub cost_usd: String,
    /// Of `cost_usd`, what came from the providers' own token counts.
    pub exact_cost_usd: String,
    /// Of `cost_usd`, what byok estimated (the provider reported no usage).
    pub estimated_cost_usd: String,
    /// Requests whose cost is unknown (a model without a price); not in `cost_usd`.
    pub unknown_cost_requests: u64,
    /// What the same traffic would have cost on the baseline model, USD.
    pub baseline_cost_usd: String,
    #[serde(skip)]
    cost_pico: u64,
    #[serde(skip)]
    estimated_pico: u64,
    #[serde(skip)]
    baseline_pico: u64,
}

impl UsageTotals {
    fn add(&mut self, record: &UsageRecord, baseline_pico: u64) {
        let tokens = |n: i64| u64::try_from(n).unwrap_or(0);
        self.requests += 1;
        self.input_tokens += tokens(record.input_tokens);
        self.output_tokens += tokens(record.output_tokens);
        let cost = exact_cost(record);
        self.cost_pico += cost;
        match record.cost_source {
            byok_core::CostSource::Estimated => self.estimated_pico += cost,
            byok_core::CostSource::Unknown => self.unknown_cost_requests += 1,
            byok_core::CostSource::Exact => {}
        }
        self.baseline_pico += baseline_pico;
        self.cost_usd = Money::from_picodollars(self.cost_pico).to_usd_string();
        self.exact_cost_usd =
            Money::from_picodollars(self.cost_pico - self.estimated_pico).to_usd_string();
        self.estimated_cost_usd = Money::from_picodollars(self.estimated_pico).to_usd_string();
        self.baseline_cost_usd = Money::from_picodollars(self.baseline_pico).to_usd_string();
    }
}

/// A record's cost in picodollars: exact when recorded so, else from the
/// rounded micro-dollar figure (records from before the exact column).
fn exact_cost(record: &UsageRecord) -> u64 {
    let whole = |n: i64| u64::try_from(n).unwrap_or(0);
    record
        .cost_picodollars
        .map(whole)
        .or_else(|| {
            record
                .cost_micro_usd
                .map(|m| whole(m).saturating_mul(1_000_000))
        })
        .unwrap_or(0)
}

/// A usage row grouped by key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageGroup {
    /// The day (`YYYY-MM-DD`, UTC), when grouped by day.
    pub day: Option<String>,
    /// The provider, when grouped by provider.
    #[schema(value_type = Option<String>)]
    pub provider: Option<ProviderKind>,
    /// The model, when grouped by model.
    pub model: Option<String>,
    /// The totals.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// The usage report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageReport {
    /// Start of the period (inclusive).
    pub from: DateTime<Utc>,
    /// End of the period (exclusive).
    pub to: DateTime<Utc>,
    /// The model savings are measured against (`provider:model`).
    pub baseline_model: Option<String>,
    /// Everything.
    pub total: UsageTotals,
    /// Baseline cost minus actual cost, USD (negative when byok cost more).
    pub savings_usd: String,
    /// Savings as a percentage of the baseline cost, one decimal.
    pub savings_percent: String,
    /// By provider.
    pub by_provider: Vec<UsageGroup>,
    /// By provider and model.
    pub by_model: Vec<UsageGroup>,
    /// By day and provider.
    pub by_day: Vec<UsageGroup>,
}

/// The first instant of `at`'s month (UTC).
fn month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

/// Parses `YYYY-MM-DD` (midnight UTC) or RFC 3339.
///
/// # Errors
/// [`ServiceError::Invalid`].
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, ServiceError> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day
            .and_hms_opt(0, 0, 0)
            .map_or_else(Utc::now, |t| t.and_utc()));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ServiceError::invalid(
                "invalid_time",
                "from and to must be YYYY-MM-DD or RFC 3339 times",
            )
        })
}

/// Every model in the routing policy that its provider retires within
/// [`byok_router::check::RETIREMENT_WARNING_DAYS`] of `today` (or has):
/// provider, model, date, days left (≤ 0 once retired); sorted, once each.
pub(crate) fn retiring_models(
    catalog: &byok_router::PriceCatalog,
    today: NaiveDate,
) -> Vec<(ProviderKind, String, NaiveDate, i64)> {
    let mut retiring: Vec<(ProviderKind, String, NaiveDate, i64)> = catalog
        .tasks()
        .flat_map(|t| catalog.candidates(t))
        .filter_map(|r| {
            let date = catalog.get(r.provider, &r.model)?.shutdown_date?;
            let days = (date - today).num_days();
            (days <= byok_router::check::RETIREMENT_WARNING_DAYS)
                .then(|| (r.provider, r.model.clone(), date, days))
        })
        .collect();
    retiring.sort();
    retiring.dedup();
    retiring
}

/// Models in the routes of `providers` that retire within
/// [`byok_router::check::RETIREMENT_WARNING_DAYS`] of `today` (or have), in words.
fn retiring_routes(
    catalog: &byok_router::PriceCatalog,
    providers: &[ProviderKind],
    today: NaiveDate,
) -> Vec<String> {
    retiring_models(catalog, today)
        .into_iter()
        .filter(|(provider, ..)| providers.contains(provider))
        .map(|(provider, model, date, days)| {
            if days <= 0 {
                format!("{provider}:{model} was retired on {date}; byok no longer routes to it")
            } else {
                format!("{provider}:{model} is retired on {date}, in {days} days")
            }
        })
        .collect()
}

/// When a model's other prices apply, in words.
fn price_rules(
    catalog: &byok_router::PriceCatalog,
    price: &byok_router::ModelPrice,
    off_peak_now: bool,
) -> Vec<String> {
    let mut rules = Vec::new();
    if let (Some(off), Some(schedule)) = (&price.off_peak, catalog.peak_schedule(price.provider)) {
        let peak = format!(
            "peak {} {} UTC",
            schedule.days.join(","),
            schedule.hours_utc.join(", ")
        );
        rules.push(if off_peak_now {
            format!(
                "off-peak prices now; {peak}: ${} in / ${} out per 1M",
                price.input, price.output
            )
        } else {
            format!(
                "peak prices now ({peak}); off-peak: ${} in / ${} out per 1M",
                off.input, off.output
            )
        });
    }
    for tier in &price.tiers {
        rules.push(format!(
            "prompts above {} tokens: ${} in / ${} out per 1M for the whole request",
            tier.above_input_tokens, tier.input, tier.output
        ));
    }
    if let Some(one_hour) = price.cache_write_1h {
        rules.push(format!("one-hour cache writes: ${one_hour} per 1M"));
    }
    rules
}

/// One answered request in the per-request log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestEntry {
    /// The record's id (pass it as `before` for the next page).
    pub id: i64,
    /// When it finished.
    pub at: DateTime<Utc>,
    /// The door it came through: `chat` (Chat Completions), `messages`
    /// (Anthropic's Messages), `responses` (OpenAI's Responses) or `embeddings`.
    pub door: String,
    /// The task it was routed for.
    pub task: String,
    /// The provider that answered.
    #[schema(value_type = String)]
    pub provider: ProviderKind,
    /// The model that answered (its catalog row when priced).
    pub model: String,
    /// Input tokens, cached ones and cache writes included.
    pub input_tokens: i64,
    /// Cache reads.
    pub cached_input_tokens: i64,
    /// Cache writes, and of those one-hour ones.
    pub cache_write_tokens: i64,
    /// One-hour cache writes.
    pub cache_write_1h_tokens: i64,
    /// Output tokens, reasoning included.
    pub output_tokens: i64,
    /// Reasoning tokens.
    pub reasoning_tokens: i64,
    /// Cost in USD; `None` when unknown.
    pub cost_usd: Option<String>,
    /// `exact`, `estimated` or `unknown`.
    pub cost_source: String,
    /// End to end, in milliseconds.
    pub latency_ms: i64,
    /// Providers tried.
    pub attempts: i32,
    /// `success`, `partial` (a stream cut by its provider) or `cancelled`.
    pub outcome: String,
    /// The request id.
    pub request_id: Option<String>,
}

/// A page of the per-request log, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestLog {
    /// The requests.
    pub requests: Vec<RequestEntry>,
    /// Pass as `before` for the next (older) page; `None` on the last.
    pub next_before: Option<i64>,
}

/// Most entries on one page of the request log.
pub const MAX_LOG_PAGE: i64 = 500;

/// What `record`'s traffic would have cost on `baseline`, in picodollars.
/// Embeddings are not comparable with a chat baseline: they count as they are.
fn baseline_cost(
    catalog: &byok_router::PriceCatalog,
    baseline: Option<&byok_router::ModelRef>,
    record: &UsageRecord,
    actual: u64,
) -> u64 {
    let Some(model) = baseline.filter(|_| record.task != Task::EMBEDDINGS) else {
        return actual;
    };
    let tokens = |n: i64| u64::try_from(n).unwrap_or(0);
    let usage = Usage {
        input_tokens: tokens(record.input_tokens),
        cached_input_tokens: tokens(record.cached_input_tokens),
        output_tokens: tokens(record.output_tokens),
        reasoning_tokens: tokens(record.reasoning_tokens),
        cache_write_tokens: tokens(record.cache_write_tokens),
        cache_write_1h_tokens: tokens(record.cache_write_1h_tokens),
    };
    catalog
        .cost(model.provider, &model.model, &usage, record.created_at)
        .map_or(actual, Money::picodollars)
}

/// Baseline minus actual, in dollars and as a percentage of the baseline
/// (one decimal, truncated), both possibly negative.
fn savings(total: &UsageTotals) -> (String, String) {
    let savings = i128::from(total.baseline_pico) - i128::from(total.cost_pico);
    let sign = if savings < 0 { "-" } else { "" };
    let amount = Money::from_picodollars(u64::try_from(savings.abs()).unwrap_or(u64::MAX));
    let dollars = format!("{sign}{}", amount.to_usd_string());
    let permille = if total.baseline_pico == 0 {
        0
    } else {
        savings.abs() * 1000 / i128::from(total.baseline_pico)
    };
    (
        dollars,
        format!("{sign}{}.{}", permille / 10, permille % 10),
    )
}

impl Gateway {
    async fn key_infos(&self, user: &UserId) -> Result<Vec<keys::StoredKey>, ServiceError> {
        let u = user.clone();
        Ok(self
            .keys()
            .store()
            .run(move |c| keys::list_for_user(c, &u))
            .await?)
    }

    /// One page of the user's answered requests, newest first, with
    /// `from <= time < to` (default: the last 24 hours).
    ///
    /// # Errors
    /// [`ServiceError::UserNotFound`] unless `principal` may act on `user`;
    /// `invalid_limit` outside 1 to [`MAX_LOG_PAGE`].
    pub async fn requests(
        &self,
        principal: &Principal,
        user: &UserId,
        (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
        before: Option<i64>,
        limit: Option<i64>,
        ctx: &RequestContext,
    ) -> Result<RequestLog, ServiceError> {
        self.keys()
            .authorize(principal, user, &[byok_store::tokens::Door::Reports], ctx)
            .await?;
        let limit = limit.unwrap_or(50);
        if !(1..=MAX_LOG_PAGE).contains(&limit) {
            return Err(ServiceError::invalid(
                "invalid_limit",
                "limit is a number from 1 to 500",
            ));
        }
        let to = to.unwrap_or_else(Utc::now);
        let from = from.unwrap_or_else(|| to - chrono::Duration::hours(24));
        let u = user.clone();
        let page = self
            .keys()
            .store()
            .run(move |c| usage::page_for_user(c, &u, from, to, before, limit))
            .await?;
        let next_before = (i64::try_from(page.len()).unwrap_or(i64::MAX) == limit)
            .then(|| page.last().map(|(id, _)| *id))
            .flatten();
        let requests = page
            .into_iter()
            .map(|(id, r)| RequestEntry {
                id,
                at: r.created_at,
                door: r.door.clone(),
                task: r.task.clone(),
                provider: r.provider,
                model: r.model.clone(),
                input_tokens: r.input_tokens,
                cached_input_tokens: r.cached_input_tokens,
                cache_write_tokens: r.cache_write_tokens,
                cache_write_1h_tokens: r.cache_write_1h_tokens,
                output_tokens: r.output_tokens,
                reasoning_tokens: r.reasoning_tokens,
                cost_usd: (r.cost_source != byok_core::CostSource::Unknown)
                    .then(|| Money::from_picodollars(exact_cost(&r)).to_usd_string()),
                cost_source: r.cost_source.as_str().to_owned(),
                latency_ms: r.latency_ms,
                attempts: r.attempts,
                outcome: r.outcome.clone(),
                request_id: r.request_id.clone(),
            })
            .collect();
        Ok(RequestLog {
            requests,
            next_before,
        })
    }

    /// For each task, the chain of providers and models the router would use now.
    ///
    /// # Errors
    /// [`ServiceError::UserNotFound`] unless `principal` may act on `user`.
    pub async fn services(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<Vec<TaskRoute>, ServiceError> {
        self.keys()
            .authorize(principal, user, &[byok_store::tokens::Door::Reports], ctx)
            .await?;
        let stored = self.key_infos(user).await?;
        let infos: Vec<KeyInfo> = stored
            .iter()
            .map(|k| KeyInfo {
                provider: k.provider,
                status: k.last_test.as_ref().map(|t| t.status),
            })
            .collect();
        let health = self.health().snapshot_keys(
            user,
            stored
                .iter()
                .filter(|k| k.enabled)
                .map(|k| (k.provider, k.id.as_str())),
            Instant::now(),
        );
        let catalog = self.planner().catalog();
        let preferences = Preferences::default();
        let at = Utc::now();
        Ok(catalog
            .tasks()
            .map(|task: &Task| {
                let plan = self.planner().plan(
                    &RouteRequest {
                        task,
                        model: None,
                        keys: &infos,
                        input_tokens: 1_000,
                        max_output_tokens: 500,
                        output_ceiling: false,
                        preferences: &preferences,
                        at,
                        needs: &[],
                        refused: &[],
                    },
                    &health,
                );
                TaskRoute {
                    task: task.to_string(),
                    chain: plan
                        .candidates
                        .iter()
                        .filter_map(|c| {
                            let price = catalog.get(c.provider, &c.model)?;
                            let now = catalog.rates(price, 0, at);
                            Some(ChainLink {
                                provider: c.provider,
                                model: c.model.clone(),
                                input_usd_per_million: now.input.to_string(),
                                output_usd_per_million: now.output.to_string(),
                                cached_input_usd_per_million: now.cached_input.to_string(),
                                cache_write_usd_per_million: now.cache_write.to_string(),
                                price_rules: price_rules(catalog, price, now.off_peak),
                                shutdown_date: price.shutdown_date.map(|d| d.to_string()),
                                circuit: health.get(c.provider).circuit,
                                capabilities: price.capabilities.clone(),
                            })
                        })
                        .collect(),
                    skipped: plan.skipped.iter().map(ToString::to_string).collect(),
                }
            })
            .collect())
    }

    /// Configured and working providers, each key's last test, circuits,
    /// error rates, latency, and spend this month.
    ///
    /// # Errors
    /// As [`Gateway::services`].
    pub async fn status(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<Status, ServiceError> {
        self.keys()
            .authorize(principal, user, &[byok_store::tokens::Door::Reports], ctx)
            .await?;
        let stored = self.key_infos(user).await?;
        let health = self.health().snapshot_keys(
            user,
            stored
                .iter()
                .filter(|k| k.enabled)
                .map(|k| (k.provider, k.id.as_str())),
            Instant::now(),
        );
        let providers: Vec<ProviderStatus> = ProviderKind::ALL
            .iter()
            .map(|provider| {
                let key = stored.iter().find(|k| k.provider == *provider);
                let state = health.get(*provider);
                let test = key.and_then(|k| k.last_test.as_ref());
                let test_ok = !matches!(
                    test.map(|t| t.status),
                    Some(KeyStatus::Invalid | KeyStatus::NoCredit)
                );
                ProviderStatus {
                    provider: *provider,
                    configured: key.is_some(),
                    working: key.is_some() && test_ok && state.usable(),
                    masked_key: key.map(|k| k.masked_key.to_string()),
                    last_test_status: test.map(|t| t.status),
                    last_tested_at: test.map(|t| t.at),
                    circuit: state.circuit,
                    error_rate_percent: state.error_rate_percent,
                    recent_calls: state.recent_calls,
                    latency_ms: state.latency_ms,
                }
            })
            .collect();
        let now = Utc::now();
        let u = user.clone();
        let from = month_start(now);
        let records = self
            .keys()
            .store()
            .run(move |c| usage::list_for_user(c, &u, from, now))
            .await?;
        let spend: u64 = records.iter().map(exact_cost).sum();
        let configured: Vec<ProviderKind> = providers
            .iter()
            .filter(|p| p.configured)
            .map(|p| p.provider)
            .collect();
        let retiring = retiring_routes(
            self.planner().catalog(),
            &configured,
            Utc::now().date_naive(),
        );
        let budgets = self.keys().budget_states(user).await?;
        Ok(Status {
            configured: providers.iter().filter(|p| p.configured).count(),
            working: providers.iter().filter(|p| p.working).count(),
            spend_this_month_usd: Money::from_picodollars(spend).to_usd_string(),
            providers,
            retiring,
            budgets,
        })
    }

    /// Requests, tokens and spend by provider, model and day, with what the
    /// same traffic would have cost on the baseline model (`baseline`, or
    /// the operator's).
    ///
    /// # Errors
    /// As [`Gateway::services`].
    pub async fn usage(
        &self,
        principal: &Principal,
        user: &UserId,
        (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
        baseline: Option<byok_router::ModelRef>,
        ctx: &RequestContext,
    ) -> Result<UsageReport, ServiceError> {
        self.keys()
            .authorize(principal, user, &[byok_store::tokens::Door::Reports], ctx)
            .await?;
        if let Some(chosen) = &baseline
            && self
                .planner()
                .catalog()
                .get(chosen.provider, &chosen.model)
                .is_none()
        {
            return Err(ServiceError::Invalid {
                code: "unknown_baseline",
                message: "the baseline must be a model of the price catalog",
            });
        }
        let to = to.unwrap_or_else(Utc::now);
        let from = from.unwrap_or_else(|| month_start(to));
        let u = user.clone();
        let records = self
            .keys()
            .store()
            .run(move |c| usage::list_for_user(c, &u, from, to))
            .await?;
        let catalog = self.planner().catalog();
        let baseline = baseline.or_else(|| catalog.baseline().cloned());
        let mut total = UsageTotals::default();
        let mut by_provider: BTreeMap<ProviderKind, UsageTotals> = BTreeMap::new();
        let mut by_model: BTreeMap<(ProviderKind, String), UsageTotals> = BTreeMap::new();
        let mut by_day: BTreeMap<(String, ProviderKind), UsageTotals> = BTreeMap::new();
        for record in &records {
            let actual = exact_cost(record);
            let baseline_pico = baseline_cost(catalog, baseline.as_ref(), record, actual);
            total.add(record, baseline_pico);
            by_provider
                .entry(record.provider)
                .or_default()
                .add(record, baseline_pico);
            by_model
                .entry((record.provider, record.model.clone()))
                .or_default()
                .add(record, baseline_pico);
            let day = record.created_at.format("%Y-%m-%d").to_string();
            by_day
                .entry((day, record.provider))
                .or_default()
                .add(record, baseline_pico);
        }
        let (savings_usd, savings_percent) = savings(&total);
        Ok(UsageReport {
            from,
            to,
            baseline_model: baseline.map(|b| b.to_string()),
            savings_usd,
            savings_percent,
            by_provider: by_provider
                .into_iter()
                .map(|(provider, totals)| UsageGroup {
                    day: None,
                    provider: Some(provider),
                    model: None,
                    totals,
                })
                .collect(),
            by_model: by_model
                .into_iter()
                .map(|((provider, model), totals)| UsageGroup {
                    day: None,
                    provider: Some(provider),
                    model: Some(model),
                    totals,
                })
                .collect(),
            by_day: by_day
                .into_iter()
                .map(|((day, provider), totals)| UsageGroup {
                    day: Some(day),
                    provider: Some(provider),
                    model: None,
                    totals,
                })
                .collect(),
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_retiring_soon_or_already_are_named_for_configured_providers_only() {
        let catalog = byok_router::PriceCatalog::builtin();
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        assert!(retiring_routes(&catalog, &[ProviderKind::OpenAi], day("2026-11-30")).is_empty());
        // gpt-4o-mini (general) and gpt-4.1-mini (code) retire on 2027-01-14.
        let soon = retiring_routes(&catalog, &[ProviderKind::OpenAi], day("2026-12-20"));
        assert_eq!(
            soon,
            [
                "openai:gpt-4.1-mini is retired on 2027-01-14, in 25 days",
                "openai:gpt-4o-mini is retired on 2027-01-14, in 25 days",
            ]
        );
        let past = retiring_routes(&catalog, &[ProviderKind::OpenAi], day("2027-01-14"));
        assert!(past[0].contains("was retired on 2027-01-14"), "{past:?}");
        assert!(retiring_routes(&catalog, &[ProviderKind::DeepSeek], day("2027-01-14")).is_empty());
    }
}
